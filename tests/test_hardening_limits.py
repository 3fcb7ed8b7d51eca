"""Unit tests of the client stream limits (issue 6), over fakes and a fake clock.

Each limit is hit and must end in the right stream (or stanza) error; data
that is merely fast must be delayed, never dropped.
"""

from __future__ import annotations

from twisted.internet import task
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

import xmppd  # noqa: F401  (compat shim first)
from tests.c2s_fakes import (
    DOMAIN,
    NS_BIND,
    NS_STREAMS,
    Client,
    FakeAccounts,
    TLSStringTransport,
    make_factory,
    stanza_error_condition,
    stream_error_condition,
)
from xmppd.c2s.guard import ClientGuard
from xmppd.c2s.xmlparser import RestrictedElementStream, StreamParseError
from xmppd.ratelimit import Backoff, TokenBucket

NS_PING = "urn:xmpp:ping"


class StreamErrorAssertions:
    def assertStreamError(self, client, events, condition):
        self.assertEqual(stream_error_condition(events), condition, events)
        self.assertEqual(events[-1], ("end",))
        self.assertTrue(client.closed)


class ParserLimitTests(StreamErrorAssertions, unittest.TestCase):
    """Size, depth, attribute and element caps, counted as bytes arrive."""

    def setUp(self):
        self.factory = make_factory(
            max_stanza_size=4096, max_depth=8, max_attributes=10, max_elements=50
        )
        self.client = Client(self.factory)

    def routed(self):
        return self.factory.session_manager.router.routed

    def test_too_many_attributes(self):
        self.client.login()
        attributes = " ".join(f"a{i}='x'" for i in range(11))
        events = self.client.send(f"<message {attributes}/>")
        self.assertStreamError(self.client, events, "policy-violation")
        self.assertEqual(self.routed(), [])

    def test_attributes_at_the_limit(self):
        self.client.login()
        attributes = " ".join(f"a{i}='x'" for i in range(10))
        self.client.send(f"<message to='b@{DOMAIN}'><x {attributes}/></message>")
        self.assertFalse(self.client.closed)
        self.assertEqual(len(self.routed()), 1)

    def test_namespace_declarations_count_as_attributes(self):
        self.client.login()
        declarations = " ".join(f"xmlns:p{i}='urn:x:{i}'" for i in range(11))
        events = self.client.send(f"<message {declarations}/>")
        self.assertStreamError(self.client, events, "policy-violation")

    def test_too_many_attributes_on_the_stream_header(self):
        attributes = " ".join(f"a{i}='x'" for i in range(11))
        events = self.client.header(extra=" " + attributes)
        self.assertStreamError(self.client, events, "policy-violation")

    def test_too_many_elements(self):
        self.client.login()
        events = self.client.send("<message>" + "<a/>" * 60 + "</message>")
        self.assertStreamError(self.client, events, "policy-violation")
        self.assertEqual(self.routed(), [])

    def test_element_count_is_per_stanza(self):
        self.client.login()
        for _ in range(5):
            self.client.send(f"<message to='b@{DOMAIN}'>" + "<a/>" * 40 + "</message>")
        self.assertFalse(self.client.closed)
        self.assertEqual(len(self.routed()), 5)

    def test_depth(self):
        self.client.login()
        events = self.client.send("<message>" + "<x>" * 8)
        self.assertStreamError(self.client, events, "policy-violation")

    def test_never_ending_attribute_value(self):
        self.client.login()
        events = self.client.send("<message to='")
        for _ in range(10):
            if self.client.closed:
                break
            events += self.client.send("a" * 1000)
        self.assertStreamError(self.client, events, "policy-violation")
        # The parser buffered no more than the cap plus one read.
        parser = self.client.proto.stream
        self.assertLessEqual(parser.fed - parser.mark, 4096 + 1000)

    def test_never_ending_start_tag(self):
        self.client.login()
        events = self.client.send("<message")
        for i in range(1000):
            if self.client.closed:
                break
            events += self.client.send(f" a{i}='b'")
        # Cut off by the size cap long before the tag (or the attribute
        # count) completes.
        self.assertStreamError(self.client, events, "policy-violation")
        parser = self.client.proto.stream
        self.assertLessEqual(parser.fed - parser.mark, 4096 + 20)

    def test_huge_text_node(self):
        self.client.login()
        events = self.client.send("<message><body>")
        for _ in range(10):
            if self.client.closed:
                break
            events += self.client.send("y" * 1000)
        self.assertStreamError(self.client, events, "policy-violation")
        self.assertEqual(self.routed(), [])

    def test_never_ending_stream_header(self):
        events = self.client.send(
            f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            f"xmlns:stream='{NS_STREAMS}' to='{DOMAIN}' version='1.0' x='"
        )
        for _ in range(10):
            if self.client.closed:
                break
            events += self.client.send("z" * 1000)
        self.assertStreamError(self.client, events, "policy-violation")

    def test_stanza_exactly_under_the_cap_passes(self):
        self.client.login()
        head, tail = f"<message to='b@{DOMAIN}'><body>", "</body></message>"
        body = "x" * (4096 - len(head) - len(tail))
        self.client.send(head + body + tail)
        self.assertFalse(self.client.closed)
        self.assertEqual(len(str(self.routed()[0].body)), len(body))

    def test_parser_counts_bytes_not_characters(self):
        parser = RestrictedElementStream(max_stanza_size=4096)
        parser.DocumentStartEvent = lambda root: None
        parser.ElementEvent = lambda element: None
        parser.DocumentEndEvent = lambda: None
        parser.parse(b"<s xmlns='jabber:client'><message><body>")
        with self.assertRaises(StreamParseError) as raised:
            for _ in range(3):
                parser.parse("\u20ac".encode() * 600)  # 1800 bytes, 600 characters
        self.assertEqual(raised.exception.condition, "policy-violation")


class RestrictedXMLTests(StreamErrorAssertions, unittest.TestCase):
    """RFC 6120 section 11, each case ending in the right stream error."""

    def setUp(self):
        self.factory = make_factory()
        self.client = Client(self.factory)

    def test_entity_declaration_in_internal_subset(self):
        events = self.client.send(
            "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
            "<!ENTITY lol2 '&lol;&lol;&lol;&lol;'>]><lolz>&lol2;</lolz>"
        )
        self.assertStreamError(self.client, events, "restricted-xml")

    def test_external_entity(self):
        events = self.client.send(
            "<?xml version='1.0'?><!DOCTYPE x SYSTEM 'file:///etc/passwd'><x/>"
        )
        self.assertStreamError(self.client, events, "restricted-xml")

    def test_doctype_after_header_is_not_well_formed(self):
        self.client.header()
        events = self.client.send("<!DOCTYPE x>")
        self.assertIn(stream_error_condition(events), ("restricted-xml", "not-well-formed"))
        self.assertTrue(self.client.closed)

    def test_processing_instruction_inside_stanza(self):
        self.client.login()
        events = self.client.send("<message><?evil x?></message>")
        self.assertStreamError(self.client, events, "restricted-xml")

    def test_comment_before_header(self):
        events = self.client.send("<?xml version='1.0'?><!-- hi -->")
        self.assertStreamError(self.client, events, "restricted-xml")

    def test_cdata_section_is_allowed_text(self):
        # CDATA sections are plain XML (not restricted by RFC 6120): content.
        self.client.login()
        self.client.send(f"<message to='b@{DOMAIN}'><body><![CDATA[<x>]]></body></message>")
        self.assertEqual(str(self.factory.session_manager.router.routed[0].body), "<x>")

    def test_control_character(self):
        self.client.login()
        events = self.client.send(b"<message><body>a\x01b</body></message>")
        self.assertStreamError(self.client, events, "not-well-formed")

    def test_character_reference_to_illegal_character(self):
        self.client.login()
        events = self.client.send("<message><body>&#1;</body></message>")
        self.assertStreamError(self.client, events, "not-well-formed")

    def test_nul_byte(self):
        self.client.header()
        events = self.client.send(b"<presence>\x00</presence>")
        self.assertStreamError(self.client, events, "not-well-formed")

    def test_overlong_utf8(self):
        self.client.login()
        events = self.client.send(b"<message><body>\xc0\xaf</body></message>")
        self.assertStreamError(self.client, events, "not-well-formed")

    def test_utf16_surrogate_in_utf8(self):
        self.client.login()
        events = self.client.send(b"<message><body>\xed\xa0\x80</body></message>")
        self.assertStreamError(self.client, events, "not-well-formed")

    def test_utf8_split_across_reads_is_fine(self):
        self.client.login()
        data = f"<message to='b@{DOMAIN}'><body>\u00e9t\u00e9</body></message>".encode()
        cut = data.index(b"\xc3") + 1
        self.client.send(data[:cut])
        self.client.send(data[cut:])
        self.assertFalse(self.client.closed)
        self.assertEqual(
            str(self.factory.session_manager.router.routed[0].body), "\u00e9t\u00e9"
        )


class NegotiationTimeoutTests(StreamErrorAssertions, unittest.TestCase):
    """A connection must authenticate and bind within negotiation_timeout."""

    def test_default_is_thirty_seconds(self):
        factory = make_factory()
        self.assertEqual(factory.limits.negotiation_timeout, 30)
        client = Client(factory)
        client.header()
        factory.reactor.advance(29)
        self.assertFalse(client.closed)
        factory.reactor.advance(2)
        self.assertStreamError(client, client.read(), "connection-timeout")

    def test_silent_connection(self):
        factory = make_factory(negotiation_timeout=5)
        client = Client(factory)
        factory.reactor.advance(6)
        self.assertStreamError(client, client.read(), "connection-timeout")

    def test_authenticated_but_unbound(self):
        factory = make_factory(negotiation_timeout=5)
        client = Client(factory)
        client.header()
        client.auth_plain()
        client.header()
        factory.reactor.advance(6)
        self.assertStreamError(client, client.read(), "connection-timeout")

    def test_zero_turns_it_off(self):
        factory = make_factory(negotiation_timeout=0)
        client = Client(factory)
        client.header()
        factory.reactor.advance(10_000)
        self.assertFalse(client.closed)


class IdleTimeoutTests(StreamErrorAssertions, unittest.TestCase):
    """Once bound: ping a silent client, drop it if it stays silent."""

    def setUp(self):
        self.factory = make_factory(idle_timeout=100, ping_timeout=20)
        self.reactor = self.factory.reactor
        self.client = Client(self.factory)
        self.full = self.client.login()
        self.client.read()

    def ping(self):
        events = self.client.read()
        self.assertEqual(len(events), 1, events)
        iq = events[0]
        self.assertEqual(
            (iq.name, iq["type"], iq["from"], iq["to"]), ("iq", "get", DOMAIN, self.full)
        )
        self.assertEqual((iq.ping.uri, iq.ping.name), (NS_PING, "ping"))
        return iq

    def test_silent_client_is_pinged_then_dropped(self):
        self.reactor.advance(99)
        self.assertEqual(self.client.read(), [])
        self.reactor.advance(2)
        self.ping()
        self.assertFalse(self.client.closed)
        self.reactor.advance(21)
        self.assertStreamError(self.client, self.client.read(), "connection-timeout")

    def test_answered_ping_keeps_the_session(self):
        for _ in range(5):
            self.reactor.advance(101)
            iq = self.ping()
            self.client.send(f"<iq type='result' id='{iq['id']}' to='{DOMAIN}'/>")
            self.reactor.advance(30)
            self.assertFalse(self.client.closed)
        # The answer is the server's own: not routed anywhere.
        self.assertEqual(self.factory.session_manager.router.routed, [])

    def test_error_answer_also_counts(self):
        self.reactor.advance(101)
        iq = self.ping()
        self.client.send(
            f"<iq type='error' id='{iq['id']}' to='{DOMAIN}'><error type='cancel'>"
            "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
        self.reactor.advance(30)
        self.assertFalse(self.client.closed)
        self.assertEqual(self.factory.session_manager.router.routed, [])

    def test_whitespace_keepalive_resets_the_idle_timer(self):
        for _ in range(10):
            self.reactor.advance(90)
            self.client.send(" ")
        self.assertEqual(self.client.read(), [])
        self.assertFalse(self.client.closed)

    def test_traffic_resets_the_idle_timer(self):
        for _ in range(10):
            self.reactor.advance(90)
            self.client.send(f"<message to='b@{DOMAIN}'/>")
        self.assertFalse(self.client.closed)
        self.assertEqual(len(self.factory.session_manager.router.routed), 10)

    def test_other_iq_results_are_still_routed(self):
        self.reactor.advance(101)
        self.ping()
        self.client.send(f"<iq type='result' id='other' to='b@{DOMAIN}/x'/>")
        self.assertEqual(len(self.factory.session_manager.router.routed), 1)

    def test_timers_cancelled_on_close(self):
        self.client.lose()
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_a_sleeping_client_is_not_pinged(self):
        """A client that said it is inactive (XEP-0352) is left alone while it sleeps."""
        self.factory.session_manager.sleeping = True
        self.reactor.advance(1000)
        self.assertEqual(self.client.read(), [])
        self.assertFalse(self.client.closed)
        self.factory.session_manager.sleeping = False  # awake again: pinged as usual
        self.reactor.advance(100)
        self.ping()
        self.reactor.advance(21)
        self.assertStreamError(self.client, self.client.read(), "connection-timeout")

    def test_zero_ping_timeout_drops_at_idle(self):
        factory = make_factory(idle_timeout=50, ping_timeout=0)
        client = Client(factory)
        client.login()
        factory.reactor.advance(51)
        self.assertStreamError(client, client.read(), "connection-timeout")

    def test_zero_idle_timeout_turns_it_off(self):
        factory = make_factory(idle_timeout=0)
        client = Client(factory)
        client.login()
        factory.reactor.advance(100_000)
        self.assertFalse(client.closed)


class ConnectionsPerAddressTests(StreamErrorAssertions, unittest.TestCase):
    """max_connections_per_ip: the connection over the limit gets policy-violation."""

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.guard = ClientGuard(self.reactor, max_connections_per_ip=3)
        self.factory = make_factory(reactor=self.reactor, guard=self.guard)

    def test_limit(self):
        clients = [Client(self.factory, "198.51.100.7") for _ in range(3)]
        for client in clients:
            self.assertFalse(client.closed)
        extra = Client(self.factory, "198.51.100.7")
        events = extra.read()
        self.assertEqual(events[0][0], "header")
        self.assertStreamError(extra, events, "policy-violation")
        # Another address is not affected; the first three still work.
        other = Client(self.factory, "198.51.100.8")
        self.assertFalse(other.closed)
        clients[0].login()
        self.assertFalse(clients[0].closed)

    def test_slot_freed_on_disconnect(self):
        clients = [Client(self.factory, "198.51.100.7") for _ in range(3)]
        refused = Client(self.factory, "198.51.100.7")
        refused.lose()
        clients[0].lose()
        self.assertEqual(self.guard.connections["198.51.100.7"], 2)
        again = Client(self.factory, "198.51.100.7")
        self.assertFalse(again.closed)
        for client in [*clients[1:], again]:
            client.lose()
        self.assertEqual(self.guard.connections, {})

    def test_shared_across_factories(self):
        direct = make_factory(reactor=self.reactor, guard=self.guard, direct_tls=True)
        Client(self.factory, "198.51.100.7")
        Client(self.factory, "198.51.100.7")
        Client(direct, "198.51.100.7")
        refused = Client(direct, "198.51.100.7")
        # On a direct-TLS port the refusal goes out after TLS has started.
        self.assertIsNotNone(refused.transport.tls_started_with)
        self.assertStreamError(refused, refused.read(), "policy-violation")


class SessionsPerAccountTests(unittest.TestCase):
    """max_sessions_per_account: bind answers resource-constraint (RFC 6120 7.6.2.1)."""

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.guard = ClientGuard(self.reactor, max_sessions_per_account=2)
        self.factory = make_factory(
            reactor=self.reactor,
            guard=self.guard,
            accounts=FakeAccounts({"alice": "secret", "bob": "secret"}),
        )

    def bind(self, client, resource, username="alice"):
        client.header()
        client.auth_plain(username)
        client.header()
        resource_xml = f"<resource>{resource}</resource>" if resource else ""
        events = client.send(
            f"<iq type='set' id='b'><bind xmlns='{NS_BIND}'>{resource_xml}</bind></iq>"
        )
        return events[0] if events else None

    def test_limit(self):
        for resource in ("one", "two"):
            reply = self.bind(Client(self.factory), resource)
            self.assertEqual(reply["type"], "result")
        third = Client(self.factory)
        reply = self.bind(third, "three")
        self.assertEqual(reply["type"], "error")
        self.assertEqual(stanza_error_condition(reply), "resource-constraint")
        self.assertEqual(reply.error["type"], "wait")
        # The stream stays open (the client may retry later or close).
        self.assertFalse(third.closed)
        # Another account is not affected.
        self.assertEqual(self.bind(Client(self.factory), "one", "bob")["type"], "result")

    def test_generated_resource_counts(self):
        self.bind(Client(self.factory), None)
        self.bind(Client(self.factory), None)
        reply = self.bind(Client(self.factory), None)
        self.assertEqual(stanza_error_condition(reply), "resource-constraint")

    def test_replacing_a_resource_needs_no_new_slot(self):
        first = Client(self.factory)
        self.bind(first, "one")
        self.bind(Client(self.factory), "two")
        reply = self.bind(Client(self.factory), "one")
        self.assertEqual(reply["type"], "result")
        self.assertTrue(first.closed)  # conflict
        first.lose()
        self.assertEqual(self.guard.session_count("alice"), 2)

    def test_slot_freed_when_a_session_ends(self):
        first = Client(self.factory)
        self.bind(first, "one")
        self.bind(Client(self.factory), "two")
        first.lose()
        self.assertEqual(self.bind(Client(self.factory), "three")["type"], "result")

    def test_slot_freed_when_the_session_manager_refuses(self):
        from twisted.words.protocols.jabber import error

        self.factory.session_manager.fail_with = error.StanzaError("not-allowed")
        reply = self.bind(Client(self.factory), "one")
        self.assertEqual(stanza_error_condition(reply), "not-allowed")
        self.assertEqual(self.guard.session_count("alice"), 0)

    def test_pending_bind_holds_a_slot(self):
        self.factory.session_manager.make_pending = True
        first = Client(self.factory)
        self.bind(first, "one")
        pending = self.factory.session_manager.pending
        self.factory.session_manager.make_pending = False
        self.bind(Client(self.factory), "two")
        reply = self.bind(Client(self.factory), "three")
        self.assertEqual(stanza_error_condition(reply), "resource-constraint")
        pending.callback(None)
        self.assertEqual(self.guard.session_count("alice"), 2)

    def test_connection_lost_during_pending_bind_frees_the_slot(self):
        self.factory.session_manager.make_pending = True
        first = Client(self.factory)
        self.bind(first, "one")
        pending = self.factory.session_manager.pending
        first.lose()
        pending.callback(None)
        self.assertEqual(self.guard.session_count("alice"), 0)


class ReadRateTests(unittest.TestCase):
    """The token bucket pauses reading; every byte is still delivered."""

    def setUp(self):
        self.factory = make_factory(read_rate=1000, read_burst=2000)
        self.reactor = self.factory.reactor
        self.client = Client(self.factory)
        self.client.login()
        self.transport = self.client.transport
        self.routed = self.factory.session_manager.router.routed
        self.reactor.advance(10)  # refill after the login

    def message(self, i):
        return f"<message to='b@{DOMAIN}' id='m{i}'><body>{'x' * 150}</body></message>"

    def test_fast_sender_is_paused_and_everything_arrives(self):
        data = "".join(self.message(i) for i in range(60)).encode()  # ~12 KB
        sent = 0
        while sent < len(data):
            if self.transport.producerState == "paused":
                # A paused transport delivers nothing: let the clock run.
                self.reactor.advance(0.5)
                continue
            self.client.send(data[sent : sent + 1500])
            sent += 1500
        self.assertGreater(self.client.proto.read_pauses, 0)
        self.reactor.advance(100)
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual([m["id"] for m in self.routed], [f"m{i}" for i in range(60)])
        self.assertFalse(self.client.closed)

    def test_data_is_never_dropped_while_paused(self):
        # Even bytes that arrive while paused (e.g. the rest of a TLS read)
        # are parsed and delivered.
        self.client.send(self.message(0) * 1 + self.message(1) * 15)
        self.assertEqual(self.transport.producerState, "paused")
        self.client.send(self.message(2))
        self.assertEqual(len(self.routed), 17)

    def test_pause_lasts_until_the_debt_is_paid(self):
        self.client.send(b"<presence/>" + b" " * 4989)  # 5000 bytes: 3000 over
        self.assertEqual(self.transport.producerState, "paused")
        self.reactor.advance(2.9)
        self.assertEqual(self.transport.producerState, "paused")
        self.reactor.advance(0.2)
        self.assertEqual(self.transport.producerState, "producing")

    def test_slow_sender_is_never_paused(self):
        for i in range(50):
            self.client.send(self.message(i))
            self.reactor.advance(1)
        self.assertEqual(self.client.proto.read_pauses, 0)
        self.assertEqual(len(self.routed), 50)

    def test_close_while_paused(self):
        self.client.send(b" " * 5000)
        self.assertEqual(self.transport.producerState, "paused")
        self.client.send("</stream:stream>")
        # Reading resumes so that the close can complete; no timer left behind.
        self.assertEqual(self.transport.producerState, "producing")
        self.client.lose()
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_zero_rate_turns_it_off(self):
        factory = make_factory(read_rate=0)
        client = Client(factory)
        client.login()
        client.send(b" " * 1_000_000)
        self.assertEqual(client.transport.producerState, "producing")


class TokenBucketTests(unittest.TestCase):
    def test_bucket(self):
        clock = task.Clock()
        bucket = TokenBucket(100, 300, clock)
        self.assertEqual(bucket.consume(300), 0.0)
        self.assertAlmostEqual(bucket.consume(50), 0.5)
        clock.advance(0.5)
        self.assertEqual(bucket.wait(), 0.0)
        clock.advance(100)
        self.assertEqual(bucket.wait(), 0.0)
        self.assertEqual(bucket.tokens, 300)  # never more than the burst

    def test_invalid(self):
        self.assertRaises(ValueError, TokenBucket, 0, 10, task.Clock())
        self.assertRaises(ValueError, TokenBucket, 10, 0, task.Clock())


class BackoffTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.backoff = Backoff(self.clock, threshold=3, base=2, maximum=60)

    def test_exponential(self):
        delays = [self.backoff.failed("k") for _ in range(9)]
        self.assertEqual(delays, [0, 0, 2, 4, 8, 16, 32, 60, 60])
        self.assertEqual(self.backoff.delay("k"), 60)
        self.clock.advance(59)
        self.assertEqual(self.backoff.delay("k"), 1)
        self.clock.advance(1)
        self.assertEqual(self.backoff.delay("k"), 0)
        self.assertEqual(self.backoff.failures("k"), 9)

    def test_forgotten_after_quiet_period(self):
        for _ in range(4):
            self.backoff.failed("k")
        self.clock.advance(4 + 60)
        self.assertEqual(self.backoff.failures("k"), 0)
        self.assertEqual(self.backoff.failed("k"), 0)

    def test_keys_are_independent(self):
        for _ in range(3):
            self.backoff.failed("a")
        self.assertEqual(self.backoff.delay("a"), 2)
        self.assertEqual(self.backoff.delay("b"), 0)

    def test_forget(self):
        for _ in range(5):
            self.backoff.failed("a")
        self.backoff.forget("a")
        self.assertEqual(self.backoff.delay("a"), 0)

    def test_memory_is_bounded(self):
        backoff = Backoff(self.clock, threshold=3, base=2, maximum=60, max_keys=100)
        for i in range(1000):
            backoff.failed(f"user{i}")
        self.assertEqual(len(backoff), 100)
        self.assertEqual(backoff.failures("user999"), 1)
        self.assertEqual(backoff.failures("user0"), 0)

    def test_expired_entries_are_pruned(self):
        for i in range(50):
            self.backoff.failed(f"user{i}")
        self.clock.advance(61)
        self.backoff.failed("late")
        self.assertEqual(len(self.backoff), 1)


class ClientGuardTests(unittest.TestCase):
    def test_unlimited_by_default(self):
        guard = ClientGuard(task.Clock())
        self.assertTrue(all(guard.connection_opened("h") for _ in range(1000)))
        self.assertTrue(all(guard.reserve_session("u", object(), None) for _ in range(1000)))

    def test_unknown_address_is_not_limited(self):
        guard = ClientGuard(task.Clock(), max_connections_per_ip=1)
        self.assertTrue(guard.connection_opened(None))
        self.assertTrue(guard.connection_opened(None))
        guard.connection_closed(None)
        self.assertEqual(guard.connections, {})

    def test_refused_session_leaves_no_state(self):
        guard = ClientGuard(task.Clock(), max_sessions_per_account=1)
        owner = object()
        self.assertTrue(guard.reserve_session("u", owner, "a"))
        self.assertFalse(guard.reserve_session("u", object(), "b"))
        guard.release_session("u", owner)
        self.assertEqual(guard.sessions, {})



class HalfClosingTransport(TLSStringTransport):
    """A TCP-like transport that can close its write side only."""

    def __init__(self):
        super().__init__()
        self.write_closed = False

    def loseWriteConnection(self):
        self.write_closed = True


class GracefulCloseTests(unittest.TestCase):
    """On plain TCP the server half-closes, so its stream error is not reset away."""

    def connect(self, transport, **settings):
        factory = make_factory(close_timeout=5, **settings)
        proto = factory.buildProtocol(None)
        proto.makeConnection(transport)
        return factory, proto

    def test_half_close_then_abort(self):
        transport = HalfClosingTransport()
        factory, proto = self.connect(transport)
        proto.dataReceived(b"<<")
        self.assertIn(b"not-well-formed", transport.value())
        self.assertTrue(transport.write_closed)
        self.assertFalse(transport.disconnecting)
        # What the client still sends is read and dropped.
        written = transport.value()
        proto.dataReceived(b"x" * 100_000)
        self.assertEqual(transport.value(), written)
        factory.reactor.advance(6)
        self.assertTrue(transport.aborted)

    def test_tls_closes_fully(self):
        transport = HalfClosingTransport()
        transport.TLS = True  # startTLS'd: TLS waits for close_notify itself
        factory, proto = self.connect(transport)
        proto.dataReceived(b"<<")
        self.assertFalse(transport.write_closed)
        self.assertTrue(transport.disconnecting)

    def test_without_close_timeout_closes_fully(self):
        transport = HalfClosingTransport()
        factory = make_factory(close_timeout=0)
        proto = factory.buildProtocol(None)
        proto.makeConnection(transport)
        proto.dataReceived(b"<<")
        self.assertFalse(transport.write_closed)
        self.assertTrue(transport.disconnecting)
