"""xmppd.modules: the module list, and switching modules off with [modules] disabled."""

from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from tests.sm_fakes import error_condition
from tests.test_sm_iq import DISCO_INFO, IQTestCase, iq
from xmppd.config import ConfigError, config_from_dict
from xmppd.module import Scope
from xmppd.modules import BY_NAME, MODULES, enabled_modules


class ModuleListTests(unittest.TestCase):
    """Every module has a unique name; disabled ones are left out."""

    def test_names(self):
        self.assertEqual(len(BY_NAME), len(MODULES))
        self.assertIn("version", BY_NAME)

    def test_enabled_modules(self):
        config = config_from_dict({"modules": {"disabled": ["version", "time"]}}, Path("."))
        names = [cls.name for cls in enabled_modules(config)]
        self.assertNotIn("version", names)
        self.assertNotIn("time", names)
        self.assertIn("disco", names)

    def test_unknown_module_name(self):
        with self.assertRaises(ConfigError) as caught:
            config_from_dict({"modules": {"disabled": ["versoin"]}}, Path("."))
        self.assertIn("modules.disabled: no module is called 'versoin'", str(caught.exception))

    def test_disabling_register_closes_registration(self):
        config = config_from_dict({"registration": {"enabled": True},
                                   "modules": {"disabled": ["register"]}}, Path("."))
        self.assertFalse(config.registration_enabled)


class DisabledVersionTests(IQTestCase):
    """With version switched off, disco no longer lists it and the iq is refused."""

    def make_manager(self, **sections):
        sections.setdefault("modules", {"disabled": ["version"]})
        return super().make_manager(**sections)

    @defer.inlineCallbacks
    def test_gone_from_disco_and_refused(self):
        reply = yield self.asks(iq("localhost", DISCO_INFO))
        features = {f["var"] for f in reply.query.elements() if f.name == "feature"}
        self.assertNotIn("jabber:iq:version", features)
        self.assertIn("urn:xmpp:ping", features)
        reply = yield self.asks(iq("localhost", "<query xmlns='jabber:iq:version'/>"))
        self.assertEqual(error_condition(reply), "service-unavailable")


class MUCModuleSwitchTests(unittest.TestCase):
    """MUC modules are switched off as ``muc.NAME``; access guards cannot be."""

    def test_names_and_essential_modules(self):
        from xmppd.modules import enabled_muc_modules

        config = config_from_dict({"modules": {"disabled": ["muc.history", "version"]}},
                                  Path("."))
        names = [cls.name for cls in enabled_muc_modules(config)]
        self.assertNotIn("history", names)
        self.assertIn("invitations", names)
        for essential in ("muc.password", "muc.members-only", "muc.owner", "muc.muc"):
            with self.assertRaises(ConfigError) as caught:
                config_from_dict({"modules": {"disabled": [essential]}}, Path("."))
            self.assertIn(f"{essential!r} cannot be switched off", str(caught.exception))

    def test_room_without_history(self):
        from tests.muc_fakes import JULIET, ROMEO, ROOM, MUCHarness
        from xmppd.muc.features import MUC_MODULES

        for modules, replayed in ((MUC_MODULES, 1),
                                  ([m for m in MUC_MODULES if m.name != "history"], 0)):
            h = MUCHarness(self, modules=modules)
            h.create(ROMEO, "Romeo")
            h.send(ROMEO, f"<message to='{ROOM}' type='groupchat'><body>hi</body></message>")
            stanzas = h.join(JULIET, "Juliet")
            history = [s for s in stanzas if s.name == "message" and s.body is not None]
            self.assertEqual(len(history), replayed, [s.toXml() for s in stanzas])
            features = h.service.modules.features(Scope.MUC_SERVICE)
            self.assertIn("http://jabber.org/protocol/muc", features)
