"""End-to-end tests of the whole server over loopback, restarts included."""

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest
from twisted.words.xish import domish

from tests.support import make_test_config, start_server
from xmppd.testing.scansion.client import ScansionClient
from xmppd.testing.scansion.parser import ClientAccount


@defer.inlineCallbacks
def login(server, username, password="pw", resource="res", host="127.0.0.1"):
    """A connected, authenticated, bound client (STARTTLS and SCRAM)."""
    client = ScansionClient(ClientAccount(username, f"{username}@localhost", password, resource))
    yield client.connect(host, server.port, timeout=5)
    return client


@defer.inlineCallbacks
def next_stanza(client, wanted, timeout=5.0):
    """The first queued stanza for which wanted(stanza) is true; fails on timeout."""
    deadline = reactor.seconds() + timeout
    while True:
        while client.queue:
            stanza = client.queue.popleft()
            if wanted(stanza):
                return stanza
        remaining = deadline - reactor.seconds()
        if remaining <= 0 or not (yield client.wait_for_stanza(remaining)):
            raise AssertionError("no matching stanza arrived")


def element(xml):
    """Parse one stanza written in the jabber:client namespace."""
    from twisted.words.xish.domish import elementStream

    found = []
    stream = elementStream()
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = found.append
    stream.DocumentEndEvent = lambda: None
    stream.parse(f"<s xmlns='jabber:client'>{xml}</s>".encode())
    return found[0]


class RestartTests(unittest.TestCase):
    """What the server stores survives a restart."""

    timeout = 30

    @defer.inlineCallbacks
    def test_offline_message_survives_restart(self):
        config = make_test_config(self, c2s={"require_encryption": True})
        first = start_server(self, config)
        yield first.create_user("romeo", "pw")
        yield first.create_user("juliet", "pw")
        romeo = yield login(first, "romeo")
        romeo.send(element(
            "<message to='juliet@localhost' type='chat' id='late'>"
            "<body>wait for me</body></message>"
        ))
        yield romeo.disconnect()
        yield first.server.session_manager.wait_idle()
        yield first.server.stopService()

        second = start_server(self, config)
        juliet = yield login(second, "juliet")
        juliet.send(element("<presence/>"))
        message = yield next_stanza(juliet, lambda s: s.name == "message")
        self.assertEqual(message["id"], "late")
        self.assertEqual(message["from"], "romeo@localhost/res")
        self.assertEqual(str(message.body), "wait for me")
        delay = next(c for c in message.elements() if c.name == "delay")
        self.assertEqual(delay.uri, "urn:xmpp:delay")
        self.assertEqual(delay["from"], "localhost")
        self.assertRegex(delay["stamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        yield juliet.disconnect()


class RawClient(protocol.Protocol):
    """A client that writes raw bytes and collects what comes back."""

    def __init__(self):
        self.received = b""
        self.closed = defer.Deferred()

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.closed.callback(self.received)


class IsolationTests(unittest.TestCase):
    """A misbehaving client never disturbs the others."""

    timeout = 30

    @defer.inlineCallbacks
    def test_malformed_xml_gets_not_well_formed_and_others_carry_on(self):
        server = start_server(self)
        yield server.create_user("romeo", "pw")
        yield server.create_user("juliet", "pw")
        romeo = yield login(server, "romeo")
        juliet = yield login(server, "juliet")
        juliet.send(element("<presence/>"))

        bad = RawClient()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", server.port), bad)
        bad.transport.write(
            b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
            b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
            b"<message><body>unclosed</message>"
        )
        received = yield bad.closed
        self.assertIn(b"<not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", received)
        self.assertTrue(received.endswith(b"</stream:stream>"))

        romeo.send(element(
            "<message to='juliet@localhost/res' type='chat'><body>still here</body></message>"
        ))
        message = yield next_stanza(juliet, lambda s: s.name == "message")
        self.assertEqual(str(message.body), "still here")
        yield romeo.disconnect()
        yield juliet.disconnect()

    @defer.inlineCallbacks
    def test_same_full_jid_replaces_the_older_session(self):
        server = start_server(self)
        yield server.create_user("romeo", "pw")
        old = yield login(server, "romeo", resource="phone")
        new = yield login(server, "romeo", resource="phone")
        yield old.disconnect(timeout=2)
        self.assertIn("conflict", old.close_reason)
        self.assertTrue(new.connected)
        new.send(element("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"))
        reply = yield next_stanza(new, lambda s: s.name == "iq")
        self.assertEqual(reply["type"], "result")
        yield new.disconnect()


class MUCPresenceTests(unittest.TestCase):
    """Directed presence to a room is withdrawn when the client goes away."""

    timeout = 30

    @defer.inlineCallbacks
    def test_disconnect_leaves_the_room(self):
        server = start_server(self)
        yield server.create_user("romeo", "pw")
        yield server.create_user("juliet", "pw")
        romeo = yield login(server, "romeo")
        juliet = yield login(server, "juliet")
        join = "<presence to='room@conference.localhost/{}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        romeo.send(element(join.format("Romeo")))
        yield next_stanza(romeo, lambda s: s.name == "message")  # the subject: joined
        romeo.send(element(
            "<iq type='set' id='c' to='room@conference.localhost'>"
            "<query xmlns='http://jabber.org/protocol/muc#owner'>"
            "<x xmlns='jabber:x:data' type='submit'/></query></iq>"
        ))
        yield next_stanza(romeo, lambda s: s.name == "iq" and s["type"] == "result")
        juliet.send(element(join.format("Juliet")))
        yield next_stanza(romeo, lambda s: s.name == "presence"
                          and s["from"] == "room@conference.localhost/Juliet")
        juliet.stream.transport.abortConnection()  # no goodbye at all
        gone = yield next_stanza(romeo, lambda s: s.name == "presence"
                                 and s["from"] == "room@conference.localhost/Juliet")
        self.assertEqual(gone["type"], "unavailable")
        yield romeo.disconnect()


class ElementHelperTests(unittest.TestCase):
    """The test helper parses stanzas as a client stream would."""

    def test_element(self):
        parsed = element("<message to='a@b'><body>x</body></message>")
        self.assertIsInstance(parsed, domish.Element)
        self.assertEqual(
            (parsed.uri, parsed.name, parsed["to"]), ("jabber:client", "message", "a@b")
        )


class DualStackTests(unittest.TestCase):
    """The default kind of listener, ``tcp:PORT``, takes clients over IPv6 and IPv4."""

    @defer.inlineCallbacks
    def test_login_over_ipv6_and_ipv4(self):
        from tests.test_listeners import NO_IPV6

        if NO_IPV6:
            raise unittest.SkipTest(NO_IPV6)
        live = start_server(self, c2s={"listen": "tcp:0"})
        self.assertEqual(len(live.server.ports["c2s"]), 2)
        yield live.create_user("romeo", "pw")
        for host in ("::1", "127.0.0.1"):
            client = yield login(live, "romeo", host=host)
            client.send(element("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>"))
            reply = yield next_stanza(client, lambda stanza: stanza.name == "iq")
            self.assertEqual((reply["id"], reply["type"]), ("p1", "result"))
            yield client.disconnect()
