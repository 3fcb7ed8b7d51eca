"""XMPP over WebSocket (RFC 7395) end to end: autobahn's client against a live server."""

from __future__ import annotations

import base64
import json

import scramp
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, endpoints, protocol, reactor, ssl
from twisted.trial import unittest
from twisted.words.xish import domish

from tests.http_support import LiveServerMixin, raw_http, request, traffic_log
from tests.test_c2s_e2e import TestClient
from xmppd.ws.stream import NS_FRAMING
from xmppd.ws.websocket import normalized_origin, origin_allowed

NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_STREAMS = "http://etherx.jabber.org/streams"
NS_SM = "urn:xmpp:sm:3"
TIMEOUT = 10
OPEN = f"<open xmlns='{NS_FRAMING}' to='localhost' version='1.0'/>"


def parse(text: str) -> domish.Element:
    """A message's one element; the message must declare all its namespaces itself."""
    found: list[domish.Element] = []
    stream = domish.elementStream()
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = found.append
    stream.DocumentEndEvent = lambda: None
    stream.parse(b"<w>" + text.encode() + b"</w>")
    assert len(found) == 1, text
    return found[0]


class _Handshake(protocol.Protocol):
    def __init__(self, data: bytes):
        self.data = data
        self.received = b""
        self.done: defer.Deferred = defer.Deferred()

    def connectionMade(self):  # noqa: N802
        self.transport.write(self.data)

    def dataReceived(self, data):  # noqa: N802
        self.received += data
        if b"\r\n\r\n" in self.received and not self.done.called:
            self.done.callback(self.received.split(b"\r\n\r\n")[0])
            self.transport.abortConnection()

    def connectionLost(self, reason):  # noqa: N802
        if not self.done.called:
            self.done.callback(self.received)


@defer.inlineCallbacks
def handshake(port: int, data: bytes):
    """Send an upgrade request; fire with the response's head (then hang up)."""
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    client = yield endpoints.connectProtocol(endpoint, _Handshake(data))
    return (yield client.done.addTimeout(TIMEOUT, reactor))


class WSClient(WebSocketClientProtocol):
    """A test client: each message parsed into an element, in a queue."""

    def __init__(self):
        super().__init__()
        self.messages: defer.DeferredQueue = defer.DeferredQueue()
        self.opened: defer.Deferred = defer.Deferred()
        self.closed: defer.Deferred = defer.Deferred()
        self.raw: list[str] = []

    def onOpen(self):  # noqa: N802
        self.opened.callback(self)

    def onMessage(self, payload, isBinary):  # noqa: N802, N803
        self.raw.append(payload.decode())
        self.messages.put(payload.decode())

    def onClose(self, wasClean, code, reason):  # noqa: N802, N803
        if not self.opened.called:
            self.opened.errback(ConnectionError(reason))
        self.closed.callback((wasClean, code))

    def send(self, text: str) -> None:
        self.sendMessage(text.encode())

    @defer.inlineCallbacks
    def next(self):
        text = yield self.messages.get().addTimeout(TIMEOUT, reactor)
        return parse(text)

    @defer.inlineCallbacks
    def open_stream(self):
        """Send ``<open/>``; fire with the features (after checking the server's open)."""
        self.send(OPEN)
        opening = yield self.next()
        assert (opening.uri, opening.name) == (NS_FRAMING, "open"), opening.toXml()
        assert opening["from"] == "localhost" and opening["version"] == "1.0"
        features = yield self.next()
        assert (features.uri, features.name) == (NS_STREAMS, "features"), features.toXml()
        return features

    @defer.inlineCallbacks
    def scram(self, username, password):
        client = scramp.ScramClient(["SCRAM-SHA-256"], username, password)
        first = base64.b64encode(client.get_client_first().encode()).decode()
        self.send(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{first}</auth>")
        challenge = yield self.next()
        if challenge.name != "challenge":
            return challenge
        client.set_server_first(base64.b64decode(str(challenge)).decode())
        final = base64.b64encode(client.get_client_final().encode()).decode()
        self.send(f"<response xmlns='{NS_SASL}'>{final}</response>")
        result = yield self.next()
        if result.name == "success":
            client.set_server_final(base64.b64decode(str(result)).decode())
        return result

    @defer.inlineCallbacks
    def bind(self, resource):
        self.send(f"<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='{NS_BIND}'>"
                  f"<resource>{resource}</resource></bind></iq>")
        reply = yield self.next()
        assert reply["type"] == "result", reply.toXml()
        return str(reply.bind.jid)


class WebSocketTests(LiveServerMixin, unittest.TestCase):
    """A live server with its HTTP listener; clients over WebSocket and TCP."""

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.server = yield self.start()


    @defer.inlineCallbacks
    def connect(self, server=None, protocols=("xmpp",), origin=None, headers=None):
        server = server or self.server
        port = server.port_of("http")
        factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}/xmpp-websocket",
                                         protocols=list(protocols), origin=origin,
                                         headers=headers)
        factory.protocol = WSClient
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        client = yield endpoint.connect(factory)

        def close():
            if client.transport is not None and client.transport.connected:
                client.transport.abortConnection()
            return client.closed

        self.addCleanup(close)
        yield client.opened
        return client

    @defer.inlineCallbacks
    def login(self, username="alice", password="wonderland", resource="ws"):
        client = yield self.connect()
        features = yield client.open_stream()
        self.assertIn("SCRAM-SHA-256", [str(m) for m in features.mechanisms.elements()])
        result = yield client.scram(username, password)
        self.assertEqual(result.name, "success", result.toXml())
        features = yield client.open_stream()
        self.assertIsNotNone(features.bind)
        full = yield client.bind(resource)
        return client, full

    @defer.inlineCallbacks
    def expect_stream_error(self, client, condition):
        """The next messages: a stream error with the condition, <close/>, then the close."""
        element = yield client.next()
        if element.name == "open":
            element = yield client.next()
        self.assertEqual((element.uri, element.name), (NS_STREAMS, "error"), element.toXml())
        self.assertEqual([c.name for c in element.elements()][0], condition)
        closing = yield client.next()
        self.assertEqual((closing.uri, closing.name), (NS_FRAMING, "close"))
        yield client.closed.addTimeout(TIMEOUT, reactor)
        return element

    # -- the stream ----------------------------------------------------------------

    @defer.inlineCallbacks
    def test_open_features_scram_restart_bind(self):
        client, full = yield self.login()
        self.assertEqual(full, "alice@localhost/ws")
        self.assertEqual(client.websocket_protocol_in_use, "xmpp")
        # The server's open and features declare their namespaces on themselves.
        self.assertTrue(client.raw[0].startswith(f"<open xmlns='{NS_FRAMING}'"), client.raw[0])
        self.assertIn(f"<stream:features xmlns:stream='{NS_STREAMS}'>", client.raw[1])
        self.assertNotIn("starttls", client.raw[1])
        client.send("<iq xmlns='jabber:client' type='get' id='p1'>"
                    "<ping xmlns='urn:xmpp:ping'/></iq>")
        reply = yield client.next()
        self.assertEqual((reply.uri, reply["type"], reply["id"]), ("jabber:client", "result", "p1"))
        self.assertTrue(client.raw[-1].startswith("<iq xmlns='jabber:client'"), client.raw[-1])

    @defer.inlineCallbacks
    def test_plain_over_loopback(self):
        client = yield self.connect()
        features = yield client.open_stream()
        self.assertIn("PLAIN", [str(m) for m in features.mechanisms.elements()])
        payload = base64.b64encode(b"\0alice\0wonderland").decode()
        client.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{payload}</auth>")
        result = yield client.next()
        self.assertEqual(result.name, "success")

    @defer.inlineCallbacks
    def test_no_credentials_when_plain_ws_is_not_secure(self):
        server = yield self.start(websocket={"secure_from_trusted": False})
        client = yield self.connect(server)
        features = yield client.open_stream()
        self.assertIsNone(features.mechanisms)
        self.assertIsNone(features.starttls)
        payload = base64.b64encode(b"\0alice\0wonderland").decode()
        client.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{payload}</auth>")
        result = yield client.next()
        self.assertEqual((result.name, result.firstChildElement().name),
                         ("failure", "encryption-required"))

    @defer.inlineCallbacks
    def test_wss_on_the_tls_listener(self):
        server = yield self.start(http={"listen": "", "tls_listen": "tcp:0:interface=127.0.0.1"},
                                  websocket={"secure_from_trusted": False})
        port = server.port_of("https")
        factory = WebSocketClientFactory(f"wss://localhost:{port}/xmpp-websocket",
                                         protocols=["xmpp"])
        factory.protocol = WSClient
        trust = ssl.Certificate.loadPEM(server.config.tls.certificate.read_bytes())
        endpoint = endpoints.wrapClientTLS(
            ssl.optionsForClientTLS("localhost", trustRoot=trust),
            endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port))
        client = yield endpoint.connect(factory)
        self.addCleanup(lambda: client.transport.abortConnection() or client.closed)
        yield client.opened
        features = yield client.open_stream()
        mechanisms = [str(m) for m in features.mechanisms.elements()]
        self.assertIn("SCRAM-SHA-256", mechanisms)
        self.assertFalse([m for m in mechanisms if m.endswith("-PLUS")])
        result = yield client.scram("alice", "wonderland")
        self.assertEqual(result.name, "success")

    @defer.inlineCallbacks
    def test_proxy_saying_plain_http_is_not_secure(self):
        client = yield self.connect(headers={"X-Forwarded-Proto": "http"})
        features = yield client.open_stream()
        self.assertIsNone(features.mechanisms)

    @defer.inlineCallbacks
    def test_messages_between_websocket_and_tcp_clients(self):
        ws, ws_jid = yield self.login()
        tcp, tcp_jid = yield self.tcp_login()
        ws.send(f"<message xmlns='jabber:client' to='{tcp_jid}' id='m1' type='chat'>"
                "<body>from the browser</body></message>")
        message = yield tcp.next()
        while message.name != "message":
            message = yield tcp.next()
        self.assertEqual((message["from"], str(message.body)), (ws_jid, "from the browser"))
        tcp.send(f"<message to='{ws_jid}' id='m2' type='chat'><body>from TCP</body></message>")
        message = yield ws.next()
        while message.name != "message":
            message = yield ws.next()
        self.assertEqual((message.uri, message["from"], str(message.body)),
                         ("jabber:client", tcp_jid, "from TCP"))

    @defer.inlineCallbacks
    def test_client_close_is_answered(self):
        client, _ = yield self.login()
        client.send(f"<close xmlns='{NS_FRAMING}'/>")
        closing = yield client.next()
        self.assertEqual((closing.uri, closing.name), (NS_FRAMING, "close"))
        was_clean, code = yield client.closed.addTimeout(TIMEOUT, reactor)
        self.assertEqual((was_clean, code), (True, 1000))
        yield self.assertFalse(self.server.server.websocket_c2s.streams)

    @defer.inlineCallbacks
    def test_server_close_at_shutdown(self):
        client, _ = yield self.login()
        self.server.server.websocket_c2s.close_all("system-shutdown")
        yield self.expect_stream_error(client, "system-shutdown")

    @defer.inlineCallbacks
    def test_debug_traffic_log_redacts_credentials(self):
        lines = traffic_log(self)
        client = yield self.connect()
        yield client.open_stream()
        payload = base64.b64encode(b"\0alice\0wonderland").decode()
        client.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{payload}</auth>")
        yield client.next()
        text = "\n".join(lines)
        self.assertIn("ws 127.0.0.1:", text)
        self.assertIn("recv: <open xmlns=", text)
        self.assertIn(">[redacted]</auth>", text)
        self.assertNotIn(payload, text)

    # -- refusals ------------------------------------------------------------------

    def upgrade(self, port, protocol="xmpp", origin=None, path="/xmpp-websocket"):
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                 "Sec-WebSocket-Version: 13"]
        if protocol is not None:
            lines.append(f"Sec-WebSocket-Protocol: {protocol}")
        if origin is not None:
            lines.append(f"Origin: {origin}")
        return handshake(port, ("\r\n".join(lines) + "\r\n\r\n").encode())

    @defer.inlineCallbacks
    def test_subprotocol_required(self):
        from twisted.logger import globalLogPublisher

        from xmppd import logs

        self.addCleanup(logs.set_level, logs.current_level())
        logs.set_level("info")
        logged = []

        def observe(event):
            if event.get("log_namespace") == "xmppd.http.access":
                logged.append(event["code"])

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        port = self.server.port_of("http")
        for offered in (None, "chat", "chat, mqtt"):
            reply = yield self.upgrade(port, offered)
            self.assertTrue(reply.startswith(b"HTTP/1.1 400"), (offered, reply[:80]))
        reply = yield self.upgrade(port, "chat, xmpp")
        self.assertTrue(reply.startswith(b"HTTP/1.1 101"), reply[:80])
        self.assertIn(b"Sec-WebSocket-Protocol: xmpp", reply)
        with self.assertRaises(ConnectionError):
            yield self.connect(protocols=("chat",))
        self.assertEqual(logged, [400, 400, 400, 101, 400])

    @defer.inlineCallbacks
    def test_origins(self):
        server = yield self.start(websocket={"allowed_origins": ["https://chat.example.org",
                                                                 "https://*.example.net"]})
        port = server.port_of("http")
        for origin, code in (("https://chat.example.org", b"101"),
                             ("https://chat.example.org:443", b"101"),
                             ("https://app.example.net", b"101"),
                             (None, b"101"),
                             ("https://evil.example.com", b"403"),
                             ("http://chat.example.org", b"403"),
                             ("https://chat.example.org:8443", b"403")):
            reply = yield self.upgrade(port, origin=origin)
            self.assertTrue(reply.startswith(b"HTTP/1.1 " + code), (origin, reply[:80]))
        with self.assertRaises(ConnectionError):
            yield self.connect(server, origin="https://evil.example.com")
        client = yield self.connect(server, origin="https://chat.example.org")
        yield client.open_stream()

    def test_origin_matching(self):
        self.assertEqual(normalized_origin("HTTPS://Chat.Example.org:443"),
                         "https://chat.example.org")
        self.assertEqual(normalized_origin("http://x.org:8080"), "http://x.org:8080")
        self.assertIsNone(normalized_origin("null"))
        self.assertTrue(origin_allowed("https://x.org", ()))
        self.assertFalse(origin_allowed("null", ("https://x.org",)))
        self.assertFalse(origin_allowed("https://x.org.evil.com", ("https://x.org",)))

    @defer.inlineCallbacks
    def test_not_an_upgrade(self):
        port = self.server.port_of("http")
        reply = yield raw_http(port, b"GET /xmpp-websocket HTTP/1.1\r\nHost: x\r\n"
                                     b"Connection: close\r\n\r\n")
        self.assertTrue(reply.startswith(b"HTTP/1.1 426"), reply[:80])

    # -- framing errors ------------------------------------------------------------

    @defer.inlineCallbacks
    def test_malformed_message(self):
        client = yield self.connect()
        yield client.open_stream()
        client.send("<message xmlns='jabber:client'><body>half")
        yield self.expect_stream_error(client, "not-well-formed")

    @defer.inlineCallbacks
    def test_two_elements_in_one_message(self):
        client, _ = yield self.login()
        client.send("<presence xmlns='jabber:client'/><presence xmlns='jabber:client'/>")
        yield self.expect_stream_error(client, "not-well-formed")

    @defer.inlineCallbacks
    def test_stanza_too_large(self):
        client, _ = yield self.login()
        size = self.server.config.limits.max_stanza_size
        client.send("<message xmlns='jabber:client' to='bob@localhost'><body>"
                    + "x" * size + "</body></message>")
        yield self.expect_stream_error(client, "policy-violation")
        # Beyond twice the limit autobahn refuses to buffer it: close 1009.
        client = yield self.connect()
        yield client.open_stream()
        client.send("<message xmlns='jabber:client'><body>" + "x" * 2 * size + "</body></message>")
        was_clean, code = yield client.closed.addTimeout(TIMEOUT, reactor)
        self.assertEqual(code, 1009)

    @defer.inlineCallbacks
    def test_binary_message(self):
        client = yield self.connect()
        yield client.open_stream()
        client.sendMessage(b"<presence xmlns='jabber:client'/>", isBinary=True)
        yield self.expect_stream_error(client, "bad-format")

    @defer.inlineCallbacks
    def test_stanza_before_open(self):
        client = yield self.connect()
        client.send("<presence xmlns='jabber:client'/>")
        yield self.expect_stream_error(client, "bad-format")

    @defer.inlineCallbacks
    def test_wrong_host(self):
        client = yield self.connect()
        client.send(f"<open xmlns='{NS_FRAMING}' to='elsewhere.example' version='1.0'/>")
        yield self.expect_stream_error(client, "host-unknown")

    # -- shared limits ---------------------------------------------------------------

    @defer.inlineCallbacks
    def test_connections_per_address_count_tcp_and_websocket(self):
        server = yield self.start(limits={"max_connections_per_ip": 1})
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", server.port)
        tcp = yield endpoints.connectProtocol(endpoint, TestClient())
        self.addCleanup(lambda: tcp.transport.abortConnection() or tcp.closed)
        yield tcp.open_stream()
        client = yield self.connect(server)
        client.send(OPEN)
        yield self.expect_stream_error(client, "policy-violation")
        # Behind a trusted proxy (loopback), the forwarded address counts.
        first = yield self.connect(server, headers={"X-Forwarded-For": "192.0.2.1"})
        yield first.open_stream()
        second = yield self.connect(server, headers={"X-Forwarded-For": "192.0.2.2"})
        yield second.open_stream()
        third = yield self.connect(server, headers={"X-Forwarded-For": "192.0.2.1"})
        third.send(OPEN)
        yield self.expect_stream_error(third, "policy-violation")

    @defer.inlineCallbacks
    def test_negotiation_timeout(self):
        server = yield self.start(limits={"negotiation_timeout": 0.2})
        client = yield self.connect(server)
        yield client.open_stream()
        yield self.expect_stream_error(client, "connection-timeout")

    @defer.inlineCallbacks
    def test_keepalive_pings_drop_a_silent_client(self):
        server = yield self.start(websocket={"ping_interval": 1, "ping_timeout": 1})
        client = yield self.connect(server)
        yield client.open_stream()
        pings = []
        client.onPing = pings.append  # never answered with a pong
        was_clean, code = yield client.closed.addTimeout(TIMEOUT, reactor)
        self.assertTrue(pings)
        self.assertFalse(server.server.websocket_c2s.streams)

    @defer.inlineCallbacks
    def test_pings_answered_keep_the_connection(self):
        server = yield self.start(websocket={"ping_interval": 1, "ping_timeout": 1})
        client = yield self.connect(server)
        yield client.open_stream()
        pings = defer.DeferredQueue()
        answer = client.onPing

        def on_ping(payload):
            answer(payload)
            pings.put(payload)

        client.onPing = on_ping
        for _ in range(2):  # the second comes only if the first's pong was taken
            yield pings.get().addTimeout(TIMEOUT, reactor)
        client.send("<iq xmlns='jabber:client' type='get' id='r1'>"
                    "<query xmlns='jabber:iq:register'/></iq>")
        reply = yield client.next()
        self.assertEqual(reply["id"], "r1")

    def test_autobahn_options_follow_the_settings(self):
        factory = self.server.server.websocket
        limit = self.server.config.limits.max_stanza_size
        self.assertEqual((factory.autoPingInterval, factory.autoPingTimeout), (30, 30))
        self.assertEqual(factory.maxMessagePayloadSize, 2 * limit)
        self.assertFalse(factory.webStatus)

    @defer.inlineCallbacks
    def test_join_a_room(self):
        client, full = yield self.login()
        room = "lobby@" + self.server.config.muc.domain
        client.send(f"<presence xmlns='jabber:client' to='{room}/alice'>"
                    "<x xmlns='http://jabber.org/protocol/muc'/></presence>")
        presence = yield client.next()
        while presence.name != "presence":
            presence = yield client.next()
        self.assertEqual((presence.uri, presence["from"]), ("jabber:client", f"{room}/alice"))
        codes = [status["code"] for x in presence.elements("http://jabber.org/protocol/muc#user",
                                                           "x")
                 for status in x.elements("http://jabber.org/protocol/muc#user", "status")]
        self.assertIn("110", codes)

    # -- stream management -----------------------------------------------------------

    @defer.inlineCallbacks
    def test_sm_resume_after_the_socket_drops(self):
        client, full = yield self.login()
        client.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
        enabled = yield client.next()
        self.assertEqual((enabled.uri, enabled.name), (NS_SM, "enabled"))
        previd = enabled["id"]
        tcp, tcp_jid = yield self.tcp_login()
        client.transport.abortConnection()
        yield client.closed
        tcp.send(f"<message to='{full}' id='m1' type='chat'><body>while away</body></message>")
        again = yield self.connect()
        yield again.open_stream()
        result = yield again.scram("alice", "wonderland")
        self.assertEqual(result.name, "success")
        yield again.open_stream()
        again.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='0'/>")
        resumed = yield again.next()
        self.assertEqual((resumed.uri, resumed.name), (NS_SM, "resumed"), resumed.toXml())
        bodies = []
        while "while away" not in bodies:
            element = yield again.next()
            if element.name == "message":
                bodies.append(str(element.body))
        again.send("<iq xmlns='jabber:client' type='get' id='p2'>"
                   "<ping xmlns='urn:xmpp:ping'/></iq>")
        reply = yield again.next()
        while reply.name != "iq":
            reply = yield again.next()
        self.assertEqual((reply["type"], reply["to"]), ("result", full))

    # -- discovery --------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_host_meta_lists_the_websocket(self):
        port = self.server.port_of("http")
        reply = yield request("GET", f"http://127.0.0.1:{port}/.well-known/host-meta.json")
        self.assertEqual(json.loads(reply.body)["links"], [
            {"rel": "urn:xmpp:alt-connections:websocket",
             "href": f"ws://localhost:{port}/xmpp-websocket"},
            {"rel": "urn:xmpp:alt-connections:xbosh",
             "href": f"http://localhost:{port}/http-bind"}])

    @defer.inlineCallbacks
    def test_off_when_path_is_empty(self):
        server = yield self.start(websocket={"path": ""}, bosh={"path": ""})
        port = server.port_of("http")
        reply = yield request("GET", f"http://127.0.0.1:{port}/.well-known/host-meta.json")
        self.assertEqual(json.loads(reply.body)["links"], [])
        reply = yield self.upgrade(port)
        self.assertTrue(reply.startswith(b"HTTP/1.1 404"), reply[:80])
