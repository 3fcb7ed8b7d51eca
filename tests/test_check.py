"""xmppd.check: the DNS SRV report of ``xmppdctl check --dns`` (a fake resolver), the listeners."""

from twisted.internet import defer
from twisted.names import dns
from twisted.names import error as dns_error
from twisted.trial import unittest

from tests.support import make_test_config
from xmppd import check


def srv(name, target, port, priority=0, weight=0):
    return dns.RRHeader(name, dns.SRV, payload=dns.Record_SRV(priority, weight, port, target))


class FakeResolver:
    """Answers from a table of SRV name -> records, or an exception; records the names asked."""

    def __init__(self, table):
        self.table = table
        self.asked = []

    def lookupService(self, name):  # noqa: N802 - twisted.names' API
        self.asked.append(name)
        answer = self.table.get(name)
        if isinstance(answer, Exception):
            return defer.fail(answer)
        if answer is None:
            return defer.fail(dns_error.DNSNameError(name))
        return defer.succeed((answer, [], []))


class DNSCheckTests(unittest.TestCase):
    def config(self, s2s_enabled=True):
        return make_test_config(self, server={"domain": "example.org"},
                                muc={"domain": "rooms.example.org"},
                                s2s={"enabled": s2s_enabled})

    @defer.inlineCallbacks
    def test_records_found_missing_refused_and_failed(self):
        resolver = FakeResolver({
            "_xmpp-client._tcp.example.org": [
                srv("_xmpp-client._tcp.example.org", "b.example.org", 5222, 10, 5),
                srv("_xmpp-client._tcp.example.org", "a.example.org", 5222, 5, 0)],
            "_xmpps-client._tcp.example.org": [
                srv("_xmpps-client._tcp.example.org", b"", 0)],
            "_xmpp-server._tcp.example.org": [
                srv("_xmpp-server._tcp.example.org", "a.example.org", 5269)],
            "_xmpps-server._tcp.rooms.example.org": dns_error.DNSServerError("broken"),
        })
        findings = yield check.check_dns(self.config(), resolver)
        by_subject = {f.subject: f for f in findings}
        client = by_subject["dns _xmpp-client._tcp.example.org"]
        self.assertEqual(client.level, check.OK)
        self.assertTrue(client.message.startswith(
            "a.example.org:5222 (priority 5, weight 0), b.example.org:5222 (priority 10"),
            client.message)
        refused = by_subject["dns _xmpps-client._tcp.example.org"]
        self.assertEqual((refused.level, refused.message.startswith("'.'")), (check.NOTE, True))
        self.assertEqual(by_subject["dns _xmpp-server._tcp.example.org"].level, check.OK)
        missing = by_subject["dns _xmpps-server._tcp.example.org"]
        self.assertEqual(missing.level, check.NOTE)
        self.assertIn("fallback is example.org:5269", missing.message)
        self.assertEqual(by_subject["dns _xmpps-server._tcp.rooms.example.org"].level, check.WARN)
        # Clients only log in at the server's own domain.
        self.assertNotIn("dns _xmpp-client._tcp.rooms.example.org", by_subject)
        self.assertIn("dns _xmpp-server._tcp.rooms.example.org", by_subject)
        self.assertFalse(any(f.level == check.FAIL for f in findings))

    @defer.inlineCallbacks
    def test_without_federation_only_the_client_records(self):
        resolver = FakeResolver({})
        yield check.check_dns(self.config(s2s_enabled=False), resolver)
        self.assertEqual(resolver.asked, ["_xmpp-client._tcp.example.org",
                                          "_xmpps-client._tcp.example.org"])


class CommandTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_check_dns_lists_the_records(self):
        import argparse
        from pathlib import Path

        from xmppd.cli import run_check

        folder = Path(self.mktemp())
        folder.mkdir()
        path = folder / "xmppd.toml"
        path.write_text('[server]\ndomain = "example.org"\ndata_dir = "data"\n'
                        '[c2s]\nlisten = "tcp:0"\ndirect_tls_listen = ""\n'
                        '[components]\nlisten = ""\n[http]\nlisten = ""\n'
                        '[s2s]\nenabled = false\n')
        lines = []
        resolver = FakeResolver({"_xmpp-client._tcp.example.org": [
            srv("_xmpp-client._tcp.example.org", "xmpp.example.org", 5222)]})
        code = yield run_check(argparse.Namespace(config=str(path), dns=True), lines.append,
                               resolver=resolver)
        self.assertEqual(code, 0, lines)
        self.assertIn("ok    dns _xmpp-client._tcp.example.org: xmpp.example.org:5222 "
                      "(priority 0, weight 0) (clients, STARTTLS (RFC 6120))", lines)


class ControlSocketCheckTests(unittest.TestCase):
    """``check`` warns about a control socket path the server could not bind."""

    def test_too_long_a_path(self):
        config = make_test_config(self, server={"control_socket": "/tmp/" + "x" * 110})
        [finding] = check.check_control_socket(config)
        self.assertEqual((finding.level, finding.subject), (check.WARN, "server.control_socket"))
        self.assertIn("is longer than 107 bytes", finding.message)
        fine = make_test_config(self, server={"control_socket": "/tmp/xmppd.sock"})
        self.assertEqual(check.check_control_socket(fine), [])
        off = make_test_config(self)
        self.assertIsNone(off.control_socket)
        self.assertEqual(check.check_control_socket(off), [])


class ListenerTests(unittest.TestCase):
    """The listeners ``xmppdctl check`` tries to bind."""

    def test_s2s_listeners(self):
        config = make_test_config(self, s2s={"enabled": True, "listen": "tcp:5269",
                                             "direct_tls_listen": "tcp:5270"})
        found = check.listeners(config)
        self.assertIn(("s2s.listen", "tcp:5269"), found)
        self.assertIn(("s2s.direct_tls_listen", "tcp:5270"), found)
        config = make_test_config(self, s2s={"enabled": False, "direct_tls_listen": "tcp:5270"})
        self.assertEqual([key for key, _ in check.listeners(config) if key.startswith("s2s")],
                         [])
