"""A small fake XMPP server for the scansion runner's own tests.

It listens on 127.0.0.1 (port 0) and speaks just enough XMPP: stream header
and features, optional STARTTLS (with a self-signed certificate made on the
fly), SASL PLAIN / SCRAM-SHA-1 / SCRAM-SHA-256 (server side from ``scramp``),
resource binding, then hands every stanza to a responder.

The default responder routes stanzas addressed to a connected client (bare or
full JID) to it, with ``from`` stamped, and echoes anything addressed to
``echo@DOMAIN`` (or ``echo@DOMAIN/...``) back to the sender, with ``from``
and ``to`` swapped; every child of an echoed stanza is copied.  An echoed
message whose body is ``twice`` is sent back twice.  A stanza addressed to
``drop@DOMAIN`` makes the server close the sender's connection.  A ping
(XEP-0199) to the domain gets its empty result, as the runner's strict order
needs.
"""

from __future__ import annotations

from base64 import b64decode, b64encode
from collections.abc import Callable

import scramp
from twisted.internet import defer, protocol, ssl
from twisted.words.protocols.jabber import xmlstream
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_CLIENT = "jabber:client"
NS_PING = "urn:xmpp:ping"

Responder = Callable[["FakeServer", "FakeSession", domish.Element], None]

_CERTIFICATE: ssl.PrivateCertificate | None = None


def server_certificate() -> ssl.PrivateCertificate:
    """A self-signed certificate for ``localhost``, made once per process."""
    global _CERTIFICATE
    if _CERTIFICATE is None:
        key = ssl.KeyPair.generate(size=2048)
        _CERTIFICATE = key.selfSignedCert(1, CN="localhost")
    return _CERTIFICATE


class FakeSession:
    """One client connection of the fake server."""

    def __init__(self, server: FakeServer, xs: xmlstream.XmlStream) -> None:
        self.server = server
        self.xs = xs
        self.secured = False
        self.username: str | None = None
        self.jid: JID | None = None
        self.scram: object | None = None
        self.scram_user: str | None = None
        self.received: list[domish.Element] = []

    def send(self, element: domish.Element) -> None:
        """Send a stanza to this client."""
        self.xs.send(element)


class FakeServerStream(xmlstream.XmlStream):
    """Server-side stream that answers the client's stream end with its own."""

    def onDocumentEnd(self) -> None:  # noqa: N802 (Twisted override)
        """Close politely: send the footer, then drop the connection."""
        if self.authenticator.server.close_on_footer:
            self.sendFooter()
            self.transport.loseConnection()


class FakeAuthenticator(xmlstream.ListenAuthenticator):
    """Runs the receiving side of stream negotiation for one connection."""

    namespace = NS_CLIENT

    def __init__(self, server: FakeServer) -> None:
        super().__init__()
        self.server = server
        self.session: FakeSession | None = None

    def associateWithStream(self, xs: xmlstream.XmlStream) -> None:  # noqa: N802
        """Install the negotiation observers (they survive stream restarts)."""
        super().associateWithStream(xs)
        self.session = FakeSession(self.server, xs)
        xs.addObserver(f"/starttls[@xmlns='{NS_TLS}']", self.on_starttls)
        xs.addObserver(f"/auth[@xmlns='{NS_SASL}']", self.on_auth)
        xs.addObserver(f"/response[@xmlns='{NS_SASL}']", self.on_response)
        xs.addObserver("/iq", self.on_iq)
        xs.addObserver("/message", self.on_stanza)
        xs.addObserver("/presence", self.on_stanza)
        xs.addObserver(xmlstream.STREAM_CONNECTED_EVENT, self.on_connected)
        xs.addObserver(xmlstream.STREAM_END_EVENT, self.on_closed)

    def on_connected(self, xs: xmlstream.XmlStream) -> None:
        """Track the open connection."""
        self.server.connections.append(self.session)

    def on_closed(self, reason: object) -> None:
        """Forget the connection and wake whoever waits for it to close."""
        if self.session in self.server.connections:
            self.server.connections.remove(self.session)
        if self.session in self.server.sessions:
            self.server.sessions.remove(self.session)
        self.server._connection_closed()

    def streamStarted(self, rootElement: domish.Element) -> None:  # noqa: N802, N803
        """Answer the stream header and offer the features of this stage."""
        super().streamStarted(rootElement)
        self.xmlstream.thisEntity = JID(self.server.domain)
        self.xmlstream.sendHeader()
        features = domish.Element((xmlstream.NS_STREAMS, "features"))
        session = self.session
        if self.server.tls and not session.secured:
            starttls = features.addElement((NS_TLS, "starttls"))
            starttls.addElement("required")
        elif session.username is None:
            mechanisms = features.addElement((NS_SASL, "mechanisms"))
            for name in self.server.mechanisms:
                mechanisms.addElement("mechanism", content=name)
        else:
            features.addElement((NS_BIND, "bind"))
        self.xmlstream.send(features)

    def on_starttls(self, element: domish.Element) -> None:
        """Proceed with TLS and restart the stream."""
        self.xmlstream.send(domish.Element((NS_TLS, "proceed")))
        self.xmlstream.transport.startTLS(server_certificate().options())
        self.session.secured = True
        self.xmlstream.reset()

    def sasl_failure(self, condition: str = "not-authorized") -> None:
        """Reject the authentication attempt."""
        failure = domish.Element((NS_SASL, "failure"))
        failure.addElement(condition)
        self.xmlstream.send(failure)

    def sasl_success(self, username: str, data: str | None = None) -> None:
        """Accept the authentication and restart the stream."""
        success = domish.Element((NS_SASL, "success"))
        if data:
            success.addContent(b64encode(data.encode("utf-8")).decode("ascii"))
        self.xmlstream.send(success)
        self.session.username = username
        self.xmlstream.reset()

    def on_auth(self, element: domish.Element) -> None:
        """Handle ``<auth/>`` for PLAIN and SCRAM."""
        mechanism = element.getAttribute("mechanism")
        self.server.used_mechanisms.append(mechanism)
        payload = b64decode(str(element).strip() or "")
        if mechanism not in self.server.mechanisms:
            self.sasl_failure("invalid-mechanism")
        elif mechanism == "PLAIN":
            _authzid, username, password = payload.decode("utf-8").split("\0")
            if self.server.accounts.get(username) == password:
                self.sasl_success(username)
            else:
                self.sasl_failure()
        else:
            scram_mechanism = scramp.ScramMechanism(mechanism)

            def auth_info(username: str) -> tuple:
                if username not in self.server.accounts:
                    raise scramp.ScramException("unknown user")
                self.session.scram_user = username
                return scram_mechanism.make_auth_info(self.server.accounts[username])

            server = scram_mechanism.make_server(auth_info)
            try:
                server.set_client_first(payload.decode("utf-8"))
            except scramp.ScramException:
                self.sasl_failure()
                return
            self.session.scram = server
            challenge = domish.Element((NS_SASL, "challenge"))
            challenge.addContent(
                b64encode(server.get_server_first().encode("utf-8")).decode("ascii")
            )
            self.xmlstream.send(challenge)

    def on_response(self, element: domish.Element) -> None:
        """Second SCRAM round: check the proof and send the signature."""
        server = self.session.scram
        if server is None:
            self.sasl_failure("malformed-request")
            return
        try:
            server.set_client_final(b64decode(str(element).strip()).decode("utf-8"))
        except scramp.ScramException:
            self.sasl_failure()
            return
        self.sasl_success(self.session.scram_user, server.get_server_final())

    def on_iq(self, element: domish.Element) -> None:
        """Bind a resource, or pass other iqs to the responder."""
        bind = next((child for child in element.elements() if child.uri == NS_BIND), None)
        if bind is None:
            self.on_stanza(element)
            return
        element.handled = True
        resource = next((str(c) for c in bind.elements() if c.name == "resource"), "")
        resource = resource or f"fake{len(self.server.sessions) + 1}"
        self.session.jid = JID(tuple=(self.session.username, self.server.domain, resource))
        self.server.sessions.append(self.session)
        result = domish.Element((NS_CLIENT, "iq"))
        result["type"] = "result"
        result["id"] = element.getAttribute("id", "")
        result.addElement((NS_BIND, "bind")).addElement("jid", content=self.session.jid.full())
        self.xmlstream.send(result)

    def on_stanza(self, element: domish.Element) -> None:
        """A stanza from a bound client: stamp ``from``, give it to the responder."""
        if getattr(element, "handled", False) or self.session.jid is None:
            return
        element["from"] = self.session.jid.full()
        self.session.received.append(element)
        self.server.responder(self.server, self.session, element)


class _FakeFactory(protocol.ServerFactory):
    """Builds one stream per accepted connection."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server

    def buildProtocol(self, addr: object) -> FakeServerStream:  # noqa: N802
        """A new server stream with its own authenticator."""
        return FakeServerStream(FakeAuthenticator(self.server))


def route_or_echo(server: FakeServer, session: FakeSession, stanza: domish.Element) -> None:
    """Default responder: deliver to a connected client, or echo from ``echo@``."""
    to = stanza.getAttribute("to")
    if is_server_ping(server, stanza):
        result = domish.Element((NS_CLIENT, "iq"))
        result["type"] = "result"
        result["id"] = stanza.getAttribute("id", "")
        result["from"] = server.domain
        result["to"] = session.jid.full()
        session.send(result)
        return
    if not to:
        return
    target = JID(to)
    if target.user == "drop":
        session.xs.transport.loseConnection()
        return
    if target.user == "echo":
        reply = domish.Element((NS_CLIENT, stanza.name))
        for key, value in stanza.attributes.items():
            reply[key] = value
        reply["from"] = to
        reply["to"] = session.jid.full()
        for child in stanza.children:
            reply.addChild(child)
        times = 2 if stanza.name == "message" and str(stanza.body or "") == "twice" else 1
        for _ in range(times):
            session.send(reply)
        return
    for other in server.find(target):
        other.send(stanza)


def is_server_ping(server: FakeServer, stanza: domish.Element) -> bool:
    """True for an XEP-0199 ping addressed to the server's domain."""
    return (
        stanza.name == "iq"
        and stanza.getAttribute("type") == "get"
        and stanza.getAttribute("to") == server.domain
        and any(child.uri == NS_PING and child.name == "ping" for child in stanza.elements())
    )


class SilentServer:
    """Accepts TCP connections and never says a word (for connect timeouts)."""

    def __init__(self) -> None:
        self.transports: list[object] = []
        self.port = 0
        self._listening = None

    def start(self, reactor: object) -> int:
        """Listen on 127.0.0.1, port 0; return the port number."""
        owner = self

        class Silent(protocol.Protocol):
            def connectionMade(self) -> None:  # noqa: N802
                owner.transports.append(self.transport)

        self._listening = reactor.listenTCP(
            0, protocol.Factory.forProtocol(Silent), interface="127.0.0.1"
        )
        self.port = self._listening.getHost().port
        return self.port

    def stop(self) -> defer.Deferred:
        """Stop listening and drop the connections."""
        for transport in self.transports:
            transport.abortConnection()
        return defer.maybeDeferred(self._listening.stopListening)


class FakeServer:
    """A tiny XMPP server on 127.0.0.1 for the runner's tests."""

    def __init__(
        self,
        accounts: dict[str, str] | None = None,
        *,
        domain: str = "localhost",
        mechanisms: tuple[str, ...] = ("PLAIN",),
        tls: bool = False,
        responder: Responder = route_or_echo,
        close_on_footer: bool = True,
    ) -> None:
        self.accounts = dict(accounts or {"user": "password", "user2": "password"})
        self.domain = domain
        self.mechanisms = mechanisms
        self.tls = tls
        self.responder = responder
        self.close_on_footer = close_on_footer
        self.connections: list[FakeSession] = []
        self.sessions: list[FakeSession] = []
        self.used_mechanisms: list[str] = []
        self.port: int = 0
        self._listening = None
        self._close_waiters: list[defer.Deferred] = []

    def start(self, reactor: object | None = None) -> int:
        """Listen on 127.0.0.1, port 0; return the port number."""
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self._listening = reactor.listenTCP(0, _FakeFactory(self), interface="127.0.0.1")
        self.port = self._listening.getHost().port
        return self.port

    def find(self, target: JID) -> list[FakeSession]:
        """Bound sessions addressed by a bare or full JID."""
        return [
            session
            for session in self.sessions
            if session.jid is not None
            and (
                session.jid == target
                or (not target.resource and session.jid.userhostJID() == target)
            )
        ]

    def _connection_closed(self) -> None:
        """Wake :meth:`stop` when the last connection went away."""
        if not self.connections:
            waiters, self._close_waiters = self._close_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def stop(self) -> defer.Deferred:
        """Stop listening and drop every connection; fires once all are closed."""
        stopped = defer.maybeDeferred(self._listening.stopListening) if self._listening else None
        self._listening = None
        waits = [stopped] if stopped is not None else []
        if self.connections:
            waiter: defer.Deferred = defer.Deferred()
            self._close_waiters.append(waiter)
            waits.append(waiter)
            for session in list(self.connections):
                session.xs.transport.abortConnection()
        return defer.gatherResults(waits)
