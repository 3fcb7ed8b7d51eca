"""xmppd.reload: which changes a reload applies, and how they are named."""

from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from tests.support import make_test_certificate, make_test_config
from tests.test_s2s_e2e import TwoServers
from tests.test_server_e2e import element, next_stanza
from tests.test_service import fingerprint_of, write_config
from xmppd.config import load_config
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


def peer_fingerprint(stream):
    """The SHA-256 of the certificate the other end of an S2S stream presented."""
    from cryptography.hazmat.primitives import hashes

    return stream.transport.getPeerCertificate().to_cryptography().fingerprint(
        hashes.SHA256()).hex()


class S2SCertificateReloadTests(TwoServers):
    """A reload with a new certificate reaches S2S: new streams in both directions
    present it (as TLS server and as TLS client), open ones keep theirs."""

    def config_for(self, domain, address, **s2s):
        if domain != "a.example":
            return super().config_for(domain, address, **s2s)
        # a.example reads a file, so that it can be reloaded.
        self.folder = Path(self.mktemp()).resolve()
        self.folder.mkdir()
        self.a_path = self.folder / "a.toml"
        self.a_served = ("a.example", "conference.a.example", "pubsub.a.example")
        self.a_listen = f"tcp:0:interface={address}"
        cert, key = make_test_certificate(self, self.a_served)
        self.write_a(cert, key)
        return load_config(self.a_path)

    def write_a(self, cert, key):
        write_config(self.a_path, cert, key,
                     server={"domain": "a.example", "data_dir": str(self.folder / "data"),
                             "control_socket": ""},
                     muc={"domain": self.a_served[1]}, pubsub={"domain": self.a_served[2]},
                     c2s={"listen": self.a_listen, "require_encryption": False},
                     http={"listen": ""}, s2s={"enabled": True, "listen": self.a_listen},
                     log={"level": "warn"})

    def incoming_from(self, server, domain):
        [stream] = [s for s in server.server.s2s.incoming if domain in s.authenticated]
        return stream

    @defer.inlineCallbacks
    def test_new_streams_get_the_new_certificate(self):
        from xmppd import tls

        old = fingerprint_of(self.a.config.tls.certificate)
        self.alice.send(element("<message to='bob@b.example' type='chat' id='m1'>"
                                "<body>before</body></message>"))
        yield next_stanza(self.bob, lambda s: s.name == "message")
        a_out = self.a.server.s2s.links[("a.example", "b.example")].stream
        self.assertEqual(peer_fingerprint(self.incoming_from(self.b, "a.example")), old)

        new_folder = Path(self.mktemp()).resolve()
        new_folder.mkdir()
        new_cert, new_key = new_folder / "new.crt", new_folder / "new.key"
        tls.ensure_certificate(new_cert, new_key, list(self.a_served))
        new = fingerprint_of(new_cert)
        self.assertNotEqual(new, old)
        self.write_a(new_cert, new_key)
        result = self.a.server.reload()
        self.assertIsNone(result.rejected)
        self.assertTrue(result.new_certificate)

        # A new incoming stream to a.example (b.example -> conference.a.example): a
        # presents the new certificate as TLS server. Its answer goes out on a new
        # outgoing stream (conference.a.example -> b.example): the new certificate
        # as TLS client.
        self.bob.send(element("<iq to='conference.a.example' type='get' id='d1'>"
                              "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"))
        answer = yield next_stanza(self.bob, lambda s: s.name == "iq" and s["id"] == "d1")
        self.assertEqual(answer["type"], "result")
        b_out = self.b.server.s2s.links[("b.example", "conference.a.example")].stream
        self.assertEqual(peer_fingerprint(b_out), new)
        self.assertEqual(peer_fingerprint(self.incoming_from(self.b, "conference.a.example")),
                         new)

        # The stream opened before the reload keeps its certificate, and still serves.
        self.assertIs(self.a.server.s2s.links[("a.example", "b.example")].stream, a_out)
        self.assertEqual(peer_fingerprint(self.incoming_from(self.b, "a.example")), old)
        self.alice.send(element("<message to='bob@b.example' type='chat' id='m2'>"
                                "<body>after</body></message>"))
        got = yield next_stanza(self.bob, lambda s: s.name == "message")
        self.assertEqual(str(got.body), "after")

    def test_rejected_certificate_leaves_s2s_alone(self):
        manager = self.a.server.s2s
        before = (manager.server_tls_options, manager.client_tls_options)
        paths = self.a.server.tls_paths
        other_cert, _ = make_test_certificate(self, ("elsewhere.example",))
        self.write_a(other_cert, paths[1])  # a certificate that is not the key's
        result = self.a.server.reload()
        self.assertIn("does not belong to", result.rejected)
        self.assertEqual((manager.server_tls_options, manager.client_tls_options), before)
        self.assertEqual(self.a.server.tls_paths, paths)
