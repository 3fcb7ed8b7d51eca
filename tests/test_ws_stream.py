"""WebSocket framing (RFC 7395): one element per message, self-contained output."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.words.xish import domish

from tests.c2s_fakes import FakeAccounts, FakeSessionManager, factory_config
from xmppd.auth import make_portal
from xmppd.c2s.xmlparser import StreamParseError
from xmppd.config import LimitSettings
from xmppd.stanza import remember_xml
from xmppd.ws.stream import (
    NS_FRAMING,
    MessageParser,
    WebSocketC2SFactory,
    client_address,
    parse_message,
    serialize,
    stream_header,
)

LIMITS = LimitSettings(max_stanza_size=4096)


class ParseMessageTests(unittest.TestCase):
    """Exactly one whole element, or the right stream error condition."""

    def condition(self, payload: bytes) -> str:
        with self.assertRaises(StreamParseError) as caught:
            parse_message(payload, LIMITS)
        return caught.exception.condition

    def test_one_element(self):
        element = parse_message(b" <message xmlns='jabber:client' to='a@b'><body>hi</body>"
                                b"</message>\n", LIMITS)
        self.assertEqual((element.uri, element.name, element["to"], str(element.body)),
                         ("jabber:client", "message", "a@b", "hi"))

    def test_no_xmlns_is_jabber_client(self):
        self.assertEqual(parse_message(b"<presence/>", LIMITS).uri, "jabber:client")

    def test_open_and_close(self):
        element = parse_message(f"<open xmlns='{NS_FRAMING}' to='localhost' version='1.0' "
                                "xml:lang='de'/>".encode(), LIMITS)
        self.assertEqual((element.uri, element.name), (NS_FRAMING, "open"))
        header = stream_header(element)
        self.assertEqual((header.uri, header.name, header.defaultUri),
                         ("http://etherx.jabber.org/streams", "stream", "jabber:client"))
        self.assertEqual((header["to"], header["version"]), ("localhost", "1.0"))
        self.assertEqual(header[("http://www.w3.org/XML/1998/namespace", "lang")], "de")

    def test_not_one_element(self):
        for payload in (b"", b"   ", b"<a/><b/>", b"<a/>text", b"text<a/>", b"<a>",
                        b"<a></b>", b"</stream:stream>", b"<a/></stream:stream><b/>",
                        b"<a/></stream:stream>", b"<![CDATA[", b"<?xml version='1.0'?><a/>",
                        b"\xff<a/>"):
            self.assertEqual(self.condition(payload), "not-well-formed", payload)

    def test_restricted_xml(self):
        for payload in (b"<!-- c --><a/>", b"<a><?pi x?></a>", b"<a>&ent;</a>"):
            self.assertEqual(self.condition(payload), "restricted-xml", payload)

    def test_limits(self):
        self.assertEqual(self.condition(b"<a>" + b"x" * 4096 + b"</a>"), "policy-violation")
        self.assertEqual(self.condition(b"<a>" * 70 + b"</a>" * 70), "policy-violation")


class MessageParserTests(unittest.TestCase):
    """One parser for all of a connection's messages, each still judged on its own."""

    def test_messages_one_after_another(self):
        messages = MessageParser(LIMITS)
        first = messages.parse(b"<message to='a@b'><body>one</body></message>")
        second = messages.parse(b" <iq xmlns='jabber:client' type='get' id='2'/> ")
        third = messages.parse(f"<close xmlns='{NS_FRAMING}'/>".encode())
        self.assertEqual([(e.uri, e.name) for e in (first, second, third)],
                         [("jabber:client", "message"), ("jabber:client", "iq"),
                          (NS_FRAMING, "close")])
        self.assertEqual(str(first.body), "one")
        self.assertIsNone(first.parent)

    def test_a_prefix_declared_in_one_message_is_not_known_in_the_next(self):
        messages = MessageParser(LIMITS)
        messages.parse(b"<x:a xmlns:x='urn:x'/>")
        with self.assertRaises(StreamParseError) as caught:
            messages.parse(b"<x:b/>")
        self.assertEqual(caught.exception.condition, "not-well-formed")

    def test_each_bad_message_after_good_ones(self):
        bad = [b"", b"<a/><b/>", b"<a>", b"</stream:stream>", b"text", b"<a/>text",
               b"<?xml version='1.0'?><a/>"]
        for payload in bad:
            messages = MessageParser(LIMITS)
            messages.parse(b"<presence/>")
            with self.assertRaises(StreamParseError) as caught:
                messages.parse(payload)
            self.assertEqual(caught.exception.condition, "not-well-formed", payload)

    def test_the_size_limit_is_per_message(self):
        messages = MessageParser(LIMITS)
        for _ in range(5):  # 5 x 1000 bytes in all: more than the limit, fine
            messages.parse(b"<a>" + b"x" * 1000 + b"</a>")
        with self.assertRaises(StreamParseError) as caught:
            messages.parse(b"<a>" + b"x" * 4096 + b"</a>")
        self.assertEqual(caught.exception.condition, "policy-violation")


class SerializeTests(unittest.TestCase):
    """Every message declares its namespaces on its element."""

    def test_stanzas_are_jabber_client(self):
        for uri in ("jabber:client", "jabber:server", "jabber:component:accept", None):
            message = domish.Element((uri, "message"))
            message["to"] = "a@b"
            message.addElement("body", content="hi")
            self.assertEqual(serialize(message),
                             "<message xmlns='jabber:client' to='a@b'><body>hi</body></message>")

    def test_children_keep_their_namespaces(self):
        message = domish.Element(("jabber:server", "message"))
        message["to"] = "a@b"
        message.addElement("body", content="a & b")
        message.addElement(("urn:xmpp:receipts", "request"))
        stamp = message.addElement(("urn:xmpp:sid:0", "stanza-id"))
        stamp["by"] = "a'b"
        self.assertEqual(serialize(message),
                         "<message xmlns='jabber:client' to='a@b'><body>a &amp; b</body>"
                         "<request xmlns='urn:xmpp:receipts'/>"
                         "<stanza-id xmlns='urn:xmpp:sid:0' by='a&apos;b'/></message>")

    def test_a_stanza_noted_by_the_archive_is_not_serialised_again(self):
        message = domish.Element(("jabber:client", "message"))
        message["to"] = "a@b"
        message.addElement("body", content="hi")
        remember_xml(message, "<message xmlns='jabber:client' to='a@b'><body>hi</body>"
                              "<noted/></message>")
        self.assertIn("<noted/>", serialize(message))
        message["type"] = "chat"  # changed since: serialised afresh
        self.assertEqual(serialize(message), "<message xmlns='jabber:client' to='a@b' "
                                             "type='chat'><body>hi</body></message>")

    def test_stream_elements_declare_the_prefix(self):
        features = domish.Element(("http://etherx.jabber.org/streams", "features"))
        features.addElement(("urn:ietf:params:xml:ns:xmpp-bind", "bind"))
        self.assertEqual(serialize(features),
                         "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>"
                         "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>")

    def test_other_namespaces(self):
        self.assertEqual(serialize(domish.Element(("urn:xmpp:sm:3", "r"))),
                         "<r xmlns='urn:xmpp:sm:3'/>")


class FakeWebSocket:
    """What the stream's transport needs of autobahn's protocol."""

    STATE_OPEN, STATE_CLOSING = 3, 2

    def __init__(self):
        self.messages: list[str] = []
        self.closed: int | None = None
        self.state = self.STATE_OPEN

    def sendMessage(self, data, isBinary=False):  # noqa: N802, N803
        assert self.state == self.STATE_OPEN, "autobahn raises Disconnected"
        self.messages.append(data.decode())

    def sendClose(self, code):  # noqa: N802
        self.closed = code
        self.state = self.STATE_CLOSING


class StreamTests(unittest.TestCase):
    """A WebSocketStream on a fake WebSocket: open, features, errors, close."""

    def setUp(self):
        from xmppd.ws.stream import MessageTransport

        self.clock = Clock()
        accounts = FakeAccounts({})
        self.factory = WebSocketC2SFactory(
            factory_config({"domain": "localhost"}), session_manager=FakeSessionManager(),
            accounts=accounts, portal=make_portal(accounts), tls_options=object(),
            reactor=self.clock)
        self.ws = FakeWebSocket()
        self.stream = self.factory.buildProtocol(None)
        self.stream.authenticator.tls_active = True
        self.stream.makeConnection(MessageTransport(self.ws, client_address("::1", 4)))

    def send(self, text: str):
        self.stream.message_received(text.encode())

    def test_open_gets_open_and_features_without_starttls(self):
        self.send(f"<open xmlns='{NS_FRAMING}' to='localhost' version='1.0'/>")
        opening, features = self.ws.messages
        self.assertTrue(opening.startswith(f"<open xmlns='{NS_FRAMING}' id='"), opening)
        self.assertIn(" from='localhost' version='1.0' xml:lang='en'/>", opening)
        self.assertIn("<mechanisms", features)
        self.assertNotIn("starttls", features)
        self.assertIsNone(self.factory.tls_options)
        self.assertTrue(self.factory.require_encryption)

    def test_silent_stream_frees_its_parser(self):
        """The factory's hibernation sweep drops the message parser; the next message works."""
        self.send(f"<open xmlns='{NS_FRAMING}' to='localhost' version='1.0'/>")
        self.assertIsNotNone(self.stream._messages._parser)
        self.factory.hibernate_quiet_streams()  # data came since the last sweep: kept
        self.assertIsNotNone(self.stream._messages._parser)
        self.factory.hibernate_quiet_streams()
        self.assertIsNone(self.stream._messages._parser)
        self.send(f"<open xmlns='{NS_FRAMING}' to='localhost' version='1.0'/>")
        self.assertEqual(self.stream.end_reason, "bad-format")  # parsed: a second open

    def test_second_open_is_bad_format(self):
        self.send(f"<open xmlns='{NS_FRAMING}' to='localhost' version='1.0'/>")
        self.send(f"<open xmlns='{NS_FRAMING}' to='localhost' version='1.0'/>")
        self.assertIn("<bad-format", self.ws.messages[-2])
        self.assertEqual(self.ws.messages[-1], f"<close xmlns='{NS_FRAMING}'/>")
        self.assertEqual(self.ws.closed, 1000)

    def test_open_in_the_wrong_namespace(self):
        self.send("<open to='localhost' version='1.0'/>")
        opening, error, closing = self.ws.messages
        self.assertTrue(opening.startswith("<open "))
        self.assertEqual(error, "<stream:error xmlns:stream='http://etherx.jabber.org/streams'>"
                         "<invalid-namespace xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                         "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>&lt;open/&gt; is "
                         f"in {NS_FRAMING}</text></stream:error>")
        self.assertEqual(closing, f"<close xmlns='{NS_FRAMING}'/>")

    def test_unknown_framing_element(self):
        self.send(f"<open xmlns='{NS_FRAMING}' to='localhost' version='1.0'/>")
        self.send(f"<other xmlns='{NS_FRAMING}'/>")
        self.assertIn("<unsupported-stanza-type", self.ws.messages[-2])

    def test_close_answered_and_nothing_after(self):
        self.send(f"<open xmlns='{NS_FRAMING}' to='localhost' version='1.0'/>")
        self.send(f"<close xmlns='{NS_FRAMING}'/>")
        self.assertEqual(self.ws.messages[-1], f"<close xmlns='{NS_FRAMING}'/>")
        self.assertEqual((self.stream.end_reason, self.ws.closed), ("client-closed", 1000))
        count = len(self.ws.messages)
        self.send("<presence/>")
        self.stream.send("<late/>")
        self.assertEqual(len(self.ws.messages), count)

    def test_nothing_written_once_the_websocket_closes(self):
        self.send(f"<open xmlns='{NS_FRAMING}' to='localhost' version='1.0'/>")
        self.ws.state = self.ws.STATE_CLOSING  # the client's close frame arrived
        self.stream.write_stanza(domish.Element(("jabber:client", "message")))
        self.stream.close_stream()
        self.assertEqual(len(self.ws.messages), 2)
        self.assertIsNone(self.ws.closed)

    def test_peer_address(self):
        self.assertEqual(self.stream.peer_host, "::1")
        self.assertEqual(self.stream.peer_address, "::1:4")
