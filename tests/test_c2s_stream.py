"""xmppd.c2s.stream: one client connection: output, restricted XML, limits, timeouts."""

from __future__ import annotations

from twisted.trial import unittest
from twisted.words.xish import domish

from tests.c2s_fakes import (
    DOMAIN,
    NS_STREAMS,
    Client,
    make_factory,
    stream_error_condition,
)
from xmppd.c2s.negotiation import C2SAuthenticator


def elements(events):
    return [e for e in events if isinstance(e, domish.Element)]


class SessionOverStreamTests(unittest.TestCase):
    """A bound Session delivering to, and closing, its client stream."""

    def setUp(self):
        self.factory = make_factory()
        self.client = Client(self.factory)
        self.client.login()
        [self.session] = self.factory.session_manager.sessions.values()

    def test_deliver(self):
        message = domish.Element((None, "message"))
        message["to"] = self.session.jid.full()
        message.addElement("body", content="hello")
        self.session.deliver(message)
        events = self.client.read()
        self.assertEqual(events[0].uri, "jabber:client")
        self.assertEqual(str(events[0].body), "hello")
        self.assertEqual(self.client.transport.value(), b"")

    def test_deliver_does_not_mutate(self):
        message = domish.Element(("jabber:client", "message"))
        message.addElement("body", content="x")
        before = message.toXml()
        self.session.deliver(message)
        self.session.deliver(message)
        self.assertEqual(message.toXml(), before)
        self.assertEqual(len(self.client.read()), 2)

    def test_written_stanza_is_released(self):
        """Once written, a built stanza is no reference cycle (xmppd.stanza.release)."""
        message = domish.Element((None, "message"))
        body = message.addElement("body", content="hello")
        self.session.deliver(message)
        self.assertIsNone(body.parent)
        self.assertEqual(str(self.client.read()[0].body), "hello")

    def test_features_are_released(self):
        """The features tree built for the stream is no reference cycle once written."""
        built = []
        real = C2SAuthenticator.features
        self.patch(C2SAuthenticator, "features",
                   lambda negotiator: built.append(real(negotiator)) or built[-1])
        other = Client(make_factory())  # a factory that has written no features yet
        events = other.header()
        self.assertEqual(events[1].name, "features")
        [features] = built
        self.assertTrue(list(features.elements()))
        for child in features.elements():
            self.assertIsNone(child.parent)

    def test_deliver_component_namespace(self):
        """Stanzas built in another stanza namespace reach the client as jabber:client."""
        message = domish.Element(("jabber:component:accept", "message"))
        message.addElement("body", content="x")
        self.session.deliver(message)
        raw = self.client.transport.value()
        self.assertNotIn(b"jabber:component:accept", raw)
        events = self.client.read()
        self.assertEqual(events[0].uri, "jabber:client")
        self.assertEqual(events[0].body.uri, "jabber:client")

    def test_close(self):
        self.session.close("system-shutdown", "bye")
        events = self.client.read()
        self.assertEqual(stream_error_condition(events), "system-shutdown")
        self.assertEqual(events[-1], ("end",))
        self.assertTrue(self.client.closed)

    def test_deliver_after_close_is_dropped(self):
        self.session.close("conflict")
        self.client.read()
        self.session.deliver(domish.Element((None, "message")))
        self.assertEqual(self.client.transport.value(), b"")

    def test_factory_close_all(self):
        other = Client(self.factory)
        other.header()
        self.factory.close_all("system-shutdown")
        self.assertEqual(stream_error_condition(self.client.read()), "system-shutdown")
        self.assertEqual(stream_error_condition(other.read()), "system-shutdown")


class RestrictedXMLTests(unittest.TestCase):
    """RFC 6120 11: restricted XML, well-formedness and limits."""

    def setUp(self):
        self.factory = make_factory(max_stanza_size=4096, max_depth=10)
        self.client = Client(self.factory)

    def assertStreamError(self, events, condition):
        self.assertEqual(stream_error_condition(events), condition)
        self.assertEqual(events[-1], ("end",))
        self.assertTrue(self.client.closed)

    def test_comment(self):
        self.client.header()
        self.assertStreamError(self.client.send("<!-- hello -->"), "restricted-xml")

    def test_comment_inside_stanza(self):
        self.client.login()
        self.assertStreamError(self.client.send("<message><!-- x --></message>"), "restricted-xml")

    def test_processing_instruction(self):
        self.client.header()
        self.assertStreamError(self.client.send("<?foo bar?>"), "restricted-xml")

    def test_doctype(self):
        events = self.client.send(
            "<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY x 'y'>]>"
            f"<stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAMS}' to='{DOMAIN}'"
            " version='1.0'>"
        )
        self.assertStreamError(events, "restricted-xml")
        self.assertEqual(events[0][0], "header")

    def test_entity_reference(self):
        self.client.login()
        self.assertStreamError(
            self.client.send("<message><body>&xxe;</body></message>"), "restricted-xml"
        )

    def test_predefined_entities_allowed(self):
        self.client.login()
        self.client.send("<message to='b@example.org'><body>&lt;&amp;&#65;</body></message>")
        self.assertEqual(str(self.factory.session_manager.router.routed[0].body), "<&A")

    def test_not_well_formed(self):
        self.client.header()
        self.assertStreamError(self.client.send("<message><body></message>"), "not-well-formed")

    def test_not_well_formed_before_header(self):
        events = self.client.send("<<<<")
        self.assertStreamError(events, "not-well-formed")
        self.assertEqual(events[0][0], "header")

    def test_invalid_utf8(self):
        self.client.login()
        self.assertStreamError(
            self.client.send(b"<message><body>\xff\xfe</body></message>"), "not-well-formed"
        )

    def test_unsupported_encoding(self):
        events = self.client.send(
            "<?xml version='1.0' encoding='ISO-8859-1'?>"
            f"<stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAMS}'>"
        )
        self.assertStreamError(events, "unsupported-encoding")

    def test_undeclared_prefix(self):
        self.client.header()
        self.assertStreamError(self.client.send("<foo:bar/>"), "not-well-formed")

    def test_stanza_size_cap(self):
        self.client.login()
        events = self.client.send("<message><body>" + "x" * 5000 + "</body></message>")
        self.assertStreamError(events, "policy-violation")
        self.assertEqual(self.factory.session_manager.router.routed, [])

    def test_stanza_size_cap_across_chunks(self):
        self.client.login()
        self.client.send("<message><body>")
        for _ in range(4):
            events = self.client.send("x" * 1000)
            self.assertFalse(self.client.closed)
        events = self.client.send("x" * 1000)
        self.assertStreamError(events, "policy-violation")

    def test_unfinished_tag_is_bounded(self):
        self.client.login()
        self.client.send("<message to='")
        events = []
        for _ in range(5):
            events += self.client.send("a" * 1000)
        self.assertStreamError(events, "policy-violation")

    def test_many_small_stanzas_are_fine(self):
        self.client.login()
        for _ in range(20):
            self.client.send("<presence><status>" + "s" * 400 + "</status></presence>")
        self.assertFalse(self.client.closed)
        self.assertEqual(len(self.factory.session_manager.router.routed), 20)

    def test_long_keepalive_stream_is_fine(self):
        self.client.login()
        for _ in range(100):
            self.client.send(" " * 100)
        self.assertFalse(self.client.closed)

    def test_depth_cap(self):
        self.client.login()
        events = self.client.send("<message>" + "<x>" * 20)
        self.assertStreamError(events, "policy-violation")

    def test_depth_within_cap(self):
        self.client.login()
        self.client.send("<message>" + "<x>" * 5 + "</x>" * 5 + "</message>")
        self.assertFalse(self.client.closed)

    def test_data_after_error_is_ignored(self):
        self.client.header()
        self.client.send("<!-- x -->")
        self.assertEqual(self.client.send("<presence/>"), [])

    def test_one_bad_client_does_not_disturb_another(self):
        good = Client(self.factory)
        good.login()
        self.client.header()
        self.client.send("<message><</message>")
        self.assertTrue(self.client.closed)
        good.send("<message to='bob@example.org'/>")
        self.assertFalse(good.closed)
        self.assertEqual(len(self.factory.session_manager.router.routed), 1)


class TimeoutTests(unittest.TestCase):
    """Unfinished negotiations and lingering closes are bounded in time."""

    def test_negotiation_timeout(self):
        factory = make_factory(negotiation_timeout=30)
        client = Client(factory)
        client.header()
        factory.reactor.advance(31)
        self.assertEqual(stream_error_condition(client.read()), "connection-timeout")

    def test_no_timeout_once_bound(self):
        factory = make_factory(negotiation_timeout=30)
        client = Client(factory)
        client.login()
        factory.reactor.advance(300)
        self.assertFalse(client.closed)

    def test_abort_after_close_timeout(self):
        factory = make_factory(close_timeout=5)
        client = Client(factory)
        client.send("<<")
        self.assertFalse(client.transport.aborted)
        factory.reactor.advance(6)
        self.assertTrue(client.transport.aborted)

    def test_timers_cancelled_on_connection_lost(self):
        factory = make_factory()
        client = Client(factory)
        client.send("<<")
        client.lose()
        self.assertEqual(factory.reactor.getDelayedCalls(), [])




class KeepaliveTests(unittest.TestCase):
    """TCP keepalive on client sockets (xmppd.c2s.stream.keepalive)."""

    def test_socket_options(self):
        import socket

        from xmppd.c2s.stream import keepalive

        class Transport:
            def __init__(self):
                self.sock = socket.socket()
                self.alive = False

            def setTcpKeepAlive(self, on):  # noqa: N802 - Twisted's API
                self.alive = on
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, int(on))

            def getHandle(self):  # noqa: N802 - Twisted's API
                return self.sock

        transport = Transport()
        self.addCleanup(transport.sock.close)
        keepalive(transport, 300)
        self.assertTrue(transport.alive)
        if hasattr(socket, "TCP_KEEPIDLE"):
            self.assertEqual(
                transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE), 300)
            self.assertEqual(
                transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT), 4)
        off = Transport()
        self.addCleanup(off.sock.close)
        keepalive(off, 0)
        self.assertFalse(off.alive)
        keepalive(object(), 300)  # not a TCP transport: nothing happens


def sweeps(clock):
    """The hibernation sweeps scheduled on a clock."""
    return [c for c in clock.getDelayedCalls() if "LoopingCall" in repr(c.func)]


class HibernationTests(unittest.TestCase):
    """Silent streams between stanzas free their parsers; data wakes them unchanged."""

    def setUp(self):
        self.factory = make_factory(hibernate_after=30)
        self.factory.doStart()
        self.addCleanup(self.factory.doStop)
        self.clock = self.factory.reactor
        self.client = Client(self.factory)
        self.client.login()

    def test_silent_stream_hibernates_and_wakes(self):
        stream = self.client.proto.stream
        self.clock.advance(30)  # the first sweep: data came since the start
        self.assertFalse(stream.hibernating)
        self.clock.advance(30)  # the second: silent for a whole period
        self.assertTrue(stream.hibernating)
        self.client.send("<message to='bob@localhost'><body>after</body></message>")
        [routed] = self.factory.session_manager.router.routed
        self.assertEqual((routed.name, str(routed.body)), ("message", "after"))
        self.assertFalse(stream.hibernating)
        self.assertEqual(self.client.send("</stream:stream>")[-1], ("end",))

    def test_data_keeps_it_awake(self):
        stream = self.client.proto.stream
        for _ in range(4):
            self.clock.advance(30)
            self.client.send(" ")  # a whitespace keepalive each period
        self.assertFalse(stream.hibernating)

    def test_half_a_stanza_is_kept(self):
        stream = self.client.proto.stream
        self.client.send("<message to='bob@localhost'><bo")
        self.clock.advance(60)
        self.assertFalse(stream.hibernating)
        self.client.send("dy>late</body></message>")
        [routed] = self.factory.session_manager.router.routed
        self.assertEqual(str(routed.body), "late")

    def test_off(self):
        factory = make_factory(hibernate_after=0)
        factory.doStart()
        self.addCleanup(factory.doStop)
        client = Client(factory)
        client.login()
        factory.reactor.advance(3600)
        self.assertFalse(client.proto.stream.hibernating)
        self.assertEqual(sweeps(factory.reactor), [])

    def test_memory_handed_back_when_many_hibernate_at_once(self):
        from xmppd import gcpolicy
        from xmppd.c2s import factory as factory_module

        trims = []
        self.patch(gcpolicy, "return_free_memory", lambda: trims.append(True))
        self.patch(factory_module, "TRIM_AFTER", 3)
        for resource in ("phone", "laptop"):
            Client(self.factory).login(resource)
        self.clock.advance(30)
        self.assertEqual(trims, [])  # everyone spoke during the first period
        self.clock.advance(30)
        self.assertEqual(trims, [True])  # three parsers freed in one sweep
        self.clock.advance(30)
        self.assertEqual(trims, [True])  # nothing more freed: no trim
        self.client.send(" ")
        self.clock.advance(60)
        self.assertEqual(trims, [True])  # one parser: below the threshold

    def test_sweep_stops_with_the_factory(self):
        self.factory.doStop()
        self.factory.doStart()  # started again: one sweep, not two
        self.assertEqual(len(sweeps(self.clock)), 1)
