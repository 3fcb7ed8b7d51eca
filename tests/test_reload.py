"""xmppd.reload: which changes a reload applies, and how they are named."""

from pathlib import Path

from twisted.trial import unittest

from tests.support import make_test_config
from xmppd.reload import config_changes, merged_config


class ReloadPlanTests(unittest.TestCase):
    """Which changed keys a reload applies and which need a restart."""

    def test_changes_and_merge(self):
        old = make_test_config(self)
        new = make_test_config(
            self,
            server={"domain": "example.org", "admins": ["boss@example.org"]},
            log={"level": "debug"},
            muc={"create_rooms": "admins", "domain": "rooms.example.org"},
            registration={"enabled": True},
            c2s={"listen": "tcp:5999"},
            components={"secrets": {"gw.example.org": "very secret"}},
        )
        changes = {c.key: c for c in config_changes(old, new)}
        live = sorted(k for k, c in changes.items() if c.live)
        # (each test config has its own copy of the certificate: tls.* differ too)
        self.assertEqual(live, ["log.level", "muc.create_rooms", "registration.enabled",
                                "server.admins", "tls.certificate", "tls.key"])
        self.assertIn("server.domain", changes)
        self.assertIn("c2s.listen", changes)
        self.assertIn("muc.domain", changes)
        self.assertIn("server.data_dir", changes)  # a different temp folder
        self.assertFalse(changes["server.domain"].live)
        self.assertEqual(changes["log.level"].describe(), "log.level: 'warn' -> 'debug'")
        self.assertEqual(changes["components.secrets"].describe(), "components.secrets: changed")
        self.assertNotIn("very secret", changes["components.secrets"].describe())

        merged = merged_config(old, list(changes.values()), Path("/x.toml"))
        self.assertEqual(merged.log_level, "debug")
        self.assertEqual(merged.muc.create_rooms, "admins")
        self.assertEqual(merged.admins, ("boss@example.org",))
        self.assertTrue(merged.registration_enabled)
        self.assertEqual(merged.domain, old.domain)
        self.assertEqual(merged.c2s.listen, old.c2s.listen)
        self.assertEqual(merged.muc.domain, old.muc.domain)
        self.assertEqual(merged.data_dir, old.data_dir)
        self.assertEqual(merged.path, Path("/x.toml"))
        # What was not applied is reported again next time.
        again = {c.key for c in config_changes(merged, new) if not c.live}
        self.assertIn("server.domain", again)
        self.assertFalse([c for c in config_changes(merged, new) if c.live])

    def test_no_changes(self):
        config = make_test_config(self)
        self.assertEqual(config_changes(config, config), [])
