"""S2S streams: parsing, limits, output and the receiving side (a server connects to us)."""

from twisted.trial import unittest

from tests.s2s_fakes import FakeManager, TLSStringTransport
from xmppd.s2s.dialback import dialback_key
from xmppd.s2s.stream import S2SStream
from xmppd.s2s.wire import NS_CLIENT

HEADER = ("<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
          "xmlns:db='jabber:server:dialback' version='1.0'{attrs}>")


def header(**attrs):
    """A stream header with these attributes (from_ for 'from')."""
    text = "".join(f" {k.rstrip('_')}='{v}'" for k, v in attrs.items())
    return HEADER.format(attrs=text)


class Receiving:
    """A remote server (a.example) connects to us (b.example): set-up and helpers."""

    def setUp(self):
        self.manager = FakeManager()
        self.transport = TLSStringTransport()
        self.stream = S2SStream(self.manager, initiating=False)
        self.stream.makeConnection(self.transport)

    def feed(self, text):
        self.stream.dataReceived(text.encode())
        return self.transport.take()

    def negotiate_tls(self):
        out = self.feed(header(from_="a.example", to="b.example"))
        self.assertIn("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>", out)
        self.assertEqual(self.feed("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
                         "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.assertIs(self.transport.tls_started, self.manager.server_tls_options)
        return self.feed(header(from_="a.example", to="b.example"))

    def dialback(self, valid=True):
        self.negotiate_tls()
        self.feed("<db:result from='a.example' to='b.example'>KEY</db:result>")
        local, remote, sid, key, d = self.manager.verifications[-1]
        self.assertEqual((local, remote, sid, key), ("b.example", "a.example", self.stream.sid,
                                                     "KEY"))
        d.callback(valid)
        return self.transport.take()

    def assert_stream_error(self, out, condition):
        self.assertIn(f"<stream:error><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>",
                      out)
        self.assertTrue(out.endswith("</stream:stream>"), out)
        self.assertTrue(self.transport.disconnecting)


class ReceivingTests(Receiving, unittest.TestCase):
    """A remote server (a.example) connects to us (b.example)."""

    def test_header_for_a_domain_we_do_not_serve(self):
        self.assert_stream_error(self.feed(header(from_="a.example", to="c.example")),
                                 "host-unknown")

    def test_header_without_to(self):
        self.assert_stream_error(self.feed(header(from_="a.example")), "host-unknown")

    def test_header_without_from_gets_no_sasl_external(self):
        self.manager.certificate_problems["a.example"] = None
        self.assertIn("<starttls", self.feed(header(to="b.example")))
        self.feed("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        out = self.feed(header(to="b.example"))
        self.assertNotIn("EXTERNAL", out)
        self.assertIn("urn:xmpp:features:dialback", out)

    def test_header_with_a_bad_from(self):
        self.assert_stream_error(self.feed(header(from_="a@@b", to="b.example")),
                                 "invalid-from")

    def test_header_from_a_domain_we_serve(self):
        self.assert_stream_error(self.feed(header(from_="conference.b.example", to="b.example")),
                                 "invalid-from")

    def test_dialback_for_a_domain_we_serve(self):
        self.negotiate_tls()
        out = self.feed("<db:result from='b.example' to='b.example'>KEY</db:result>")
        self.assert_stream_error(out, "invalid-from")
        self.assertEqual(self.manager.verifications, [])

    def test_idle_stream_is_closed(self):
        self.dialback()
        self.manager.reactor.advance(self.manager.settings.idle_timeout - 1)
        self.feed("<message from='x@a.example' to='y@b.example'/>")  # activity
        self.manager.reactor.advance(self.manager.settings.idle_timeout - 1)
        self.assertFalse(self.transport.disconnecting)
        self.manager.reactor.advance(2)
        self.assertEqual(self.transport.take(), "</stream:stream>")
        self.assertTrue(self.transport.disconnecting)

    def test_header_from_a_user_jid(self):
        self.assert_stream_error(self.feed(header(from_="eve@a.example", to="b.example")),
                                 "invalid-from")

    def test_wrong_stream_namespace(self):
        out = self.feed("<stream:stream xmlns='jabber:client' "
                        "xmlns:stream='http://etherx.jabber.org/streams' to='b.example' "
                        "from='a.example' version='1.0'>")
        self.assert_stream_error(out, "invalid-namespace")

    def test_answer_header_and_features(self):
        out = self.feed(header(from_="a.example", to="b.example"))
        self.assertIn("from='b.example' to='a.example' id='", out)
        self.assertIn(f"id='{self.stream.sid}'", out)
        # TLS is required: nothing else is offered before it.
        self.assertIn("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
                      "<required/></starttls></stream:features>", out)

    def test_dialback_before_tls_is_refused(self):
        self.feed(header(from_="a.example", to="b.example"))
        out = self.feed("<db:result from='a.example' to='b.example'>KEY</db:result>")
        self.assert_stream_error(out, "policy-violation")
        self.assertEqual(self.manager.verifications, [])

    def test_stanza_before_authentication(self):
        self.negotiate_tls()
        out = self.feed("<message from='x@a.example' to='y@b.example'><body>hi</body></message>")
        self.assert_stream_error(out, "not-authorized")
        self.assertEqual(self.manager.stanzas, [])

    def test_features_after_tls_offer_dialback_not_external_for_self_signed(self):
        out = self.negotiate_tls()
        self.assertIn("<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>", out)
        self.assertNotIn("EXTERNAL", out)
        self.assertNotIn("starttls", out)

    def test_dialback_valid_then_stanzas(self):
        out = self.dialback(valid=True)
        self.assertEqual(out, "<db:result from='b.example' to='a.example' type='valid'/>")
        self.feed("<message from='x@a.example/r' to='y@b.example' type='chat'>"
                  "<body>hi</body></message>")
        [stanza] = self.manager.stanzas
        # Routed inside the server as client stanzas are.
        self.assertEqual((stanza.uri, stanza.body.uri, str(stanza.body)),
                         (NS_CLIENT, NS_CLIENT, "hi"))
        self.assertEqual(stanza["from"], "x@a.example/r")

    def test_dialback_invalid_closes(self):
        out = self.dialback(valid=False)
        self.assertIn("<db:result from='b.example' to='a.example' type='invalid'/>", out)
        self.assert_stream_error(out, "not-authorized")

    def test_dialback_verification_failure_is_a_result_error(self):
        self.negotiate_tls()
        self.feed("<db:result from='a.example' to='b.example'>KEY</db:result>")
        from xmppd.s2s.dialback import DialbackRefused

        self.manager.verifications[-1][-1].errback(DialbackRefused("remote-server-not-found"))
        out = self.transport.take()
        self.assertIn("type='error'><error type='cancel'><remote-server-not-found", out)
        self.assertFalse(self.transport.disconnecting)

    def test_dialback_refused_for_a_trusted_domain(self):
        self.manager.settings = self.manager.settings.__class__(trusted_domains=("a.example",))
        out = self.negotiate_tls()
        self.assertNotIn("urn:xmpp:features:dialback", out)
        out = self.feed("<db:result from='a.example' to='b.example'>KEY</db:result>")
        self.assertIn("type='error'><error type='cancel'><not-authorized", out)
        self.assertEqual(self.manager.verifications, [])

    def test_stanza_from_an_unauthenticated_domain(self):
        self.dialback()
        out = self.feed("<message from='x@c.example' to='y@b.example'/>")
        self.assert_stream_error(out, "invalid-from")
        self.assertEqual(self.manager.stanzas, [])

    def test_stanza_to_a_domain_we_do_not_serve(self):
        self.dialback()
        out = self.feed("<message from='x@a.example' to='y@c.example'/>")
        self.assert_stream_error(out, "host-unknown")

    def test_stanza_without_addresses(self):
        self.dialback()
        out = self.feed("<message to='y@b.example'/>")
        self.assert_stream_error(out, "improper-addressing")

    def test_to_another_served_domain_is_fine(self):
        self.dialback()
        self.feed("<presence from='x@a.example/r' to='room@conference.b.example/x'/>")
        self.assertEqual(len(self.manager.stanzas), 1)

    def test_db_verify_is_answered_from_our_secret(self):
        self.negotiate_tls()
        key = dialback_key("s3cret", "a.example", "b.example", "ID7")
        out = self.feed(f"<db:verify from='a.example' to='b.example' id='ID7'>{key}</db:verify>")
        self.assertEqual(out, "<db:verify from='b.example' to='a.example' id='ID7' "
                              "type='valid'/>")
        out = self.feed("<db:verify from='a.example' to='b.example' id='ID7'>00</db:verify>")
        self.assertIn("type='invalid'", out)

    def test_sasl_external_with_a_valid_certificate(self):
        self.manager.certificate_problems["a.example"] = None
        out = self.negotiate_tls()
        self.assertIn("<mechanism>EXTERNAL</mechanism>", out)
        # The authorization identity must be the header's domain.
        out = self.feed("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>"
                        "Yy5leGFtcGxl</auth>")  # c.example
        self.assertIn("<invalid-authzid/>", out)
        out = self.feed("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>"
                        "=</auth>")
        self.assertEqual(out, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
        out = self.feed(header(from_="a.example", to="b.example"))
        self.assertIn("<stream:features/>", out)
        self.feed("<message from='x@a.example' to='y@b.example'/>")
        self.assertEqual(len(self.manager.stanzas), 1)
        self.assertEqual(self.stream.auth_method, "EXTERNAL")

    def test_sasl_external_without_a_valid_certificate(self):
        self.negotiate_tls()
        out = self.feed("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>"
                        "=</auth>")
        self.assertIn("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>", out)
        self.assertEqual(self.stream.authenticated, set())

    def test_garbage(self):
        self.feed(header(from_="a.example", to="b.example"))
        self.assert_stream_error(self.feed("<<<not xml"), "not-well-formed")

    def test_oversized_stanza(self):
        self.feed(header(from_="a.example", to="b.example"))
        out = self.feed("<message>" + "x" * (self.manager.limits.max_stanza_size + 10))
        self.assert_stream_error(out, "policy-violation")

    def test_tls_never_completed_times_out(self):
        self.feed(header(from_="a.example", to="b.example"))
        self.manager.reactor.advance(self.manager.settings.connect_timeout + 1)
        self.assert_stream_error(self.transport.take(), "connection-timeout")

    def test_flood_is_read_more_slowly(self):
        self.manager.settings = self.manager.settings.__class__(read_rate=1000, read_burst=2000)
        self.stream = S2SStream(self.manager, initiating=False)
        self.transport = TLSStringTransport()
        self.stream.makeConnection(self.transport)
        self.dialback()
        stanza = ("<message from='x@a.example' to='y@b.example'><body>" + "x" * 900
                  + "</body></message>")
        self.feed(stanza * 3)
        self.assertEqual(self.transport.producerState, "paused")
        self.assertEqual(len(self.manager.stanzas), 3)  # nothing is dropped
        self.manager.reactor.advance(3)
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(self.stream.read_pauses, 1)

    def test_unknown_element(self):
        self.feed(header(from_="a.example", to="b.example"))
        self.assert_stream_error(self.feed("<foo xmlns='urn:x'/>"), "unsupported-stanza-type")


class DirectTLSReceivingTests(unittest.TestCase):
    """A stream accepted on the direct TLS listener (XEP-0368): TLS from the first byte."""

    def setUp(self):
        self.manager = FakeManager()
        self.transport = TLSStringTransport()
        self.stream = S2SStream(self.manager, initiating=False, direct_tls=True)
        self.stream.makeConnection(self.transport)

    def feed(self, text):
        self.stream.dataReceived(text.encode())
        return self.transport.take()

    def test_tls_starts_at_once_and_starttls_is_not_offered(self):
        self.assertIs(self.transport.tls_started, self.manager.server_tls_options)
        self.assertEqual(self.transport.value(), b"")  # nothing written before the peer's header
        out = self.feed(header(from_="a.example", to="b.example"))
        self.assertNotIn("starttls", out)
        self.assertIn("<dialback xmlns='urn:xmpp:features:dialback'>", out)

    def test_sasl_external_without_starttls(self):
        self.manager.certificate_problems["a.example"] = None
        out = self.feed(header(from_="a.example", to="b.example"))
        self.assertIn("<mechanism>EXTERNAL</mechanism>", out)
        out = self.feed("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>"
                        "=</auth>")
        self.assertEqual(out, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
        self.assertEqual(self.stream.authenticated, {"a.example"})

    def test_dialback_without_starttls(self):
        self.feed(header(from_="a.example", to="b.example"))
        self.feed("<db:result from='a.example' to='b.example'>KEY</db:result>")
        self.manager.verifications[-1][-1].callback(True)
        self.assertIn("type='valid'", self.transport.take())
        self.feed("<message from='x@a.example' to='y@b.example'/>")
        self.assertEqual(len(self.manager.stanzas), 1)


class RemoteDomainLimitTests(Receiving, unittest.TestCase):
    """Limits per remote domain: connections at once, and a read rate they share."""

    def test_dialback_for_a_full_domain_is_a_conflict(self):
        self.negotiate_tls()
        self.manager.full_domains.add("a.example")
        out = self.feed("<db:result from='a.example' to='b.example'>KEY</db:result>")
        self.assert_stream_error(out, "conflict")
        self.assertEqual(self.manager.verifications, [])
        self.assertEqual(self.stream.authenticated, set())

    def test_domain_filled_up_while_verifying(self):
        self.negotiate_tls()
        self.feed("<db:result from='a.example' to='b.example'>KEY</db:result>")
        self.manager.full_domains.add("a.example")
        self.manager.verifications[-1][-1].callback(True)
        out = self.transport.take()
        self.assertNotIn("type='valid'", out)
        self.assert_stream_error(out, "conflict")
        self.assertEqual(self.stream.authenticated, set())

    def test_sasl_external_for_a_full_domain_is_a_conflict(self):
        self.manager.certificate_problems["a.example"] = None
        self.negotiate_tls()
        self.manager.full_domains.add("a.example")
        out = self.feed("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>"
                        "=</auth>")
        self.assertNotIn("<success", out)
        self.assert_stream_error(out, "conflict")

    def test_reads_count_against_the_domain_bucket(self):
        from xmppd.ratelimit import TokenBucket

        # The connection's own limit (1 MiB/s) is far away; the domain's is not.
        bucket = self.manager.buckets["a.example"] = TokenBucket(1000, 2000,
                                                                 self.manager.reactor)
        self.dialback()
        self.assertIs(self.stream.domain_bucket, bucket)
        stanza = ("<message from='x@a.example' to='y@b.example'><body>" + "x" * 900
                  + "</body></message>")
        self.feed(stanza * 6)  # ~5800 bytes: ~3.8 s of debt
        self.assertEqual(self.transport.producerState, "paused")
        self.assertEqual(len(self.manager.stanzas), 6)  # nothing is dropped
        self.manager.reactor.advance(1)
        self.assertEqual(self.transport.producerState, "paused")  # still in debt
        self.manager.reactor.advance(3)
        self.assertEqual(self.transport.producerState, "producing")

    def test_stanzas_count_against_the_domain_stanza_bucket(self):
        """Many small stanzas: under the byte rates, over the domain's stanza rate."""
        from xmppd.ratelimit import TokenBucket

        bucket = self.manager.stanza_buckets["a.example"] = TokenBucket(
            10, 20, self.manager.reactor)
        self.dialback()
        self.assertIs(self.stream.domain_stanza_bucket, bucket)
        self.feed("<message from='x@a.example' to='y@b.example'/>" * 10)
        self.assertEqual(self.transport.producerState, "producing")  # within the burst
        self.feed("<message from='x@a.example' to='y@b.example'/>" * 40)  # 30 over: 3 s
        self.assertEqual(self.transport.producerState, "paused")
        self.assertEqual(len(self.manager.stanzas), 50)  # nothing is dropped
        self.manager.reactor.advance(2)
        self.assertEqual(self.transport.producerState, "paused")
        self.manager.reactor.advance(1.5)
        self.assertEqual(self.transport.producerState, "producing")

    def test_bytes_before_authentication_do_not_count(self):
        from xmppd.ratelimit import TokenBucket

        bucket = self.manager.buckets["a.example"] = TokenBucket(1000, 2000,
                                                                 self.manager.reactor)
        self.negotiate_tls()
        self.assertIsNone(self.stream.domain_bucket)
        self.assertEqual(bucket.tokens, 2000)
