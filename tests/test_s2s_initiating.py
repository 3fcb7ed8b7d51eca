"""The initiating side of S2S streams (we connect), over fake transports."""

from twisted.trial import unittest

from tests.s2s_fakes import FakeManager, TLSStringTransport
from tests.test_s2s_stream import header
from xmppd.s2s.dialback import dialback_key
from xmppd.s2s.stream import S2SStream


class InitiatingTests(unittest.TestCase):
    """We (a.example) connect to a remote server (b.example)."""

    def setUp(self):
        self.manager = FakeManager(served=("a.example",))
        self.transport = TLSStringTransport()
        self.stream = S2SStream(self.manager, initiating=True, local="a.example",
                                remote="b.example")
        self.stream.makeConnection(self.transport)

    def feed(self, text):
        self.stream.dataReceived(text.encode())
        return self.transport.take()

    def through_tls(self):
        self.assertIn("from='a.example' to='b.example'", self.transport.take())
        out = self.feed(header(from_="b.example", to="a.example", id="S1") +
                        "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
                        "<required/></starttls></stream:features>")
        self.assertEqual(out, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        out = self.feed("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        started = self.transport.tls_started
        self.assertIs(started.options, self.manager.client_tls_options)
        self.assertEqual(started.server_name, "b.example")  # SNI
        self.assertIn("<stream:stream", out)  # restarted

    def test_dialback_after_tls(self):
        self.through_tls()
        out = self.feed(header(from_="b.example", to="a.example", id="S2") +
                        "<stream:features><dialback xmlns='urn:xmpp:features:dialback'/>"
                        "</stream:features>")
        key = dialback_key("s3cret", "b.example", "a.example", "S2")
        self.assertEqual(out, f"<db:result from='a.example' to='b.example'>{key}</db:result>")
        self.assertIn(("can_verify", self.stream), self.manager.events)
        self.feed("<db:result from='b.example' to='a.example' type='valid'/>")
        self.assertIn(("ready", self.stream), self.manager.events)
        self.assertEqual(self.stream.auth_method, "dialback")

    def test_dialback_refused(self):
        self.through_tls()
        self.feed(header(from_="b.example", to="a.example", id="S2") +
                  "<stream:features><dialback xmlns='urn:xmpp:features:dialback'/>"
                  "</stream:features>")
        self.feed("<db:result from='b.example' to='a.example' type='invalid'/>")
        self.assertIn(("failed", "remote-server-timeout"), self.manager.events)
        self.assertTrue(self.transport.disconnecting)

    def test_no_tls_offered_when_required(self):
        self.feed(header(from_="b.example", to="a.example", id="S1") +
                  "<stream:features><dialback xmlns='urn:xmpp:features:dialback'/>"
                  "</stream:features>")
        self.assertIn(("failed", "remote-server-timeout"), self.manager.events)
        self.assertNotIn("db:result", self.transport.value().decode())

    def test_sasl_external_when_offered(self):
        self.through_tls()
        out = self.feed(header(from_="b.example", to="a.example", id="S2") +
                        "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                        "<mechanism>EXTERNAL</mechanism></mechanisms>"
                        "<dialback xmlns='urn:xmpp:features:dialback'/></stream:features>")
        self.assertEqual(out, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                              "mechanism='EXTERNAL'>YS5leGFtcGxl</auth>")
        out = self.feed("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
        self.assertIn("<stream:stream", out)
        self.feed(header(from_="b.example", to="a.example", id="S3") + "<stream:features/>")
        self.assertIn(("ready", self.stream), self.manager.events)
        self.assertEqual(self.stream.auth_method, "EXTERNAL")

    def test_sasl_failure_falls_back_to_dialback(self):
        self.through_tls()
        self.feed(header(from_="b.example", to="a.example", id="S2") +
                  "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                  "<mechanism>EXTERNAL</mechanism></mechanisms>"
                  "<dialback xmlns='urn:xmpp:features:dialback'/></stream:features>")
        out = self.feed("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/>"
                        "</failure>")
        self.assertIn("<db:result from='a.example' to='b.example'>", out)

    def test_trusted_domain_needs_a_valid_certificate(self):
        self.manager.settings = self.manager.settings.__class__(trusted_domains=("b.example",))
        self.through_tls()
        self.feed(header(from_="b.example", to="a.example", id="S2") +
                  "<stream:features><dialback xmlns='urn:xmpp:features:dialback'/>"
                  "</stream:features>")
        self.assertIn(("failed", "remote-server-timeout"), self.manager.events)

    def test_verify_requests_and_answers(self):
        self.through_tls()
        self.feed(header(from_="b.example", to="a.example", id="S2") +
                  "<stream:features><dialback xmlns='urn:xmpp:features:dialback'/>"
                  "</stream:features>")
        d = self.stream.verify("THEIRID", "K1")
        self.assertEqual(self.transport.take(),
                         "<db:verify from='a.example' to='b.example' id='THEIRID'>K1</db:verify>")
        results = []
        d.addCallback(results.append)
        self.feed("<db:verify from='b.example' to='a.example' id='OTHER' type='valid'/>")
        self.assertEqual(results, [])  # not ours: ignored
        self.feed("<db:verify from='b.example' to='a.example' id='THEIRID' type='invalid'/>")
        self.assertEqual(results, [False])

    def test_header_without_id(self):
        self.transport.take()
        out = self.feed(header(from_="b.example", to="a.example"))
        self.assertIn("<invalid-id", out)

    def test_stanzas_are_written_in_jabber_server(self):
        from tests.test_server_e2e import element

        self.transport.take()
        self.stream.send_stanza(element("<message from='x@a.example' to='y@b.example'>"
                                        "<body>a &amp; b</body><x xmlns='urn:y'/></message>"))
        self.assertEqual(self.transport.take(),
                         "<message from='x@a.example' to='y@b.example'><body>a &amp; b</body>"
                         "<x xmlns='urn:y'/></message>")
