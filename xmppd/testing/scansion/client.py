"""The XMPP client that plays one ``[Client]`` of a script.

It connects over TCP, opens a stream to the JID's domain, negotiates STARTTLS
when offered (accepting any certificate: test servers use self-signed ones),
authenticates with SCRAM-SHA-256, SCRAM-SHA-1 or PLAIN (in that order of
preference), binds a resource (and opens a session when the server requires
one) and sends no initial presence.  Afterwards every stanza it receives is
appended to :attr:`ScansionClient.queue`, except the answers to its own
:meth:`ScansionClient.round_trip` pings.
"""

from __future__ import annotations

from base64 import b64decode
from collections import deque

import scramp
from twisted.internet import defer, error, protocol, ssl
from twisted.internet.interfaces import IReactorTCP
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import client as jabber_client
from twisted.words.protocols.jabber import sasl, sasl_mechanisms, xmlstream
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from xmppd.logs import logger
from xmppd.testing.scansion.parser import ClientAccount

NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
NS_PING = "urn:xmpp:ping"
ROUND_TRIP_ID = "scansion-settle-"
SCRAM_PREFERENCE = ("SCRAM-SHA-256", "SCRAM-SHA-1")

log = logger(__name__)


class ConnectError(Exception):
    """Connecting, authenticating or binding failed."""


class ScramMechanism:
    """Client side of SCRAM (RFC 5802/7677) on top of :mod:`scramp`.

    Follows Twisted's ``ISASLMechanism`` shape (``name``,
    ``getInitialResponse``, ``getResponse``) so the Twisted SASL initializer
    can drive it; :meth:`verify_success` checks the server signature.
    """

    def __init__(self, name: str, username: str, password: str) -> None:
        self.name = name
        self._client = scramp.ScramClient([name], username, password)
        self._verified = False

    def getInitialResponse(self) -> bytes:  # noqa: N802 (Twisted interface)
        """Return the client-first message."""
        return self._client.get_client_first().encode("utf-8")

    def getResponse(self, challenge: bytes) -> bytes:  # noqa: N802 (Twisted interface)
        """Answer the server-first message (or accept a server-final one)."""
        text = challenge.decode("utf-8")
        if text.startswith("v=") or text.startswith("e="):
            self.verify_success(challenge)
            return b""
        self._client.set_server_first(text)
        return self._client.get_client_final().encode("utf-8")

    def verify_success(self, data: bytes) -> None:
        """Check the server-final message; raise ``ScramException`` if wrong."""
        if self._verified and not data:
            return
        self._client.set_server_final(data.decode("utf-8"))
        self._verified = True


class ScansionSASLInitializer(sasl.SASLInitiatingInitializer):
    """SASL initializer choosing SCRAM-SHA-256, SCRAM-SHA-1, then PLAIN."""

    def setMechanism(self) -> None:  # noqa: N802 (Twisted override)
        """Pick the best mechanism offered by the server."""
        authenticator = self.xmlstream.authenticator
        offered = sasl.get_mechanisms(self.xmlstream)
        username = authenticator.jid.user
        password = authenticator.password
        for name in SCRAM_PREFERENCE:
            if name in offered:
                self.mechanism = ScramMechanism(name, username, password)
                return
        if "PLAIN" in offered:
            self.mechanism = sasl_mechanisms.Plain(None, username, password)
            return
        raise sasl.SASLNoAcceptableMechanism(f"offered: {', '.join(offered) or 'none'}")

    def onSuccess(self, success: domish.Element) -> None:  # noqa: N802 (Twisted override)
        """Verify the SCRAM server signature, then restart the stream."""
        if isinstance(self.mechanism, ScramMechanism):
            try:
                data = b64decode(str(success).strip() or "")
                self.mechanism.verify_success(data)
            except Exception as exc:  # noqa: BLE001 - any failure means a bad server proof
                self.xmlstream.removeObserver("/challenge", self.onChallenge)
                self.xmlstream.removeObserver("/failure", self.onFailure)
                self._deferred.errback(sasl.SASLAuthError(f"bad SCRAM server signature: {exc}"))
                return
        super().onSuccess(success)


class RequiredSessionInitializer(jabber_client.SessionInitializer):
    """Open a session only if the server offers it without ``<optional/>``."""

    def initialize(self) -> defer.Deferred | None:
        """Skip the (deprecated) session step when it is optional."""
        feature = self.xmlstream.features.get((NS_SESSION, "session"))
        if feature is None:
            return None
        if any(child.name == "optional" for child in feature.elements()):
            return None
        return self.start()


class ScansionAuthenticator(xmlstream.ConnectAuthenticator):
    """Stream initialisation for a script client: TLS, SASL, bind, session."""

    namespace = "jabber:client"

    def __init__(self, jid: JID, password: str) -> None:
        xmlstream.ConnectAuthenticator.__init__(self, jid.host)
        self.jid = jid
        self.password = password

    def associateWithStream(self, xs: xmlstream.XmlStream) -> None:  # noqa: N802
        """Install the initializers on a new stream."""
        xmlstream.ConnectAuthenticator.associateWithStream(self, xs)
        xs.initializers = [
            jabber_client.CheckVersionInitializer(xs),
            xmlstream.TLSInitiatingInitializer(
                xs, required=False, configurationForTLS=ssl.CertificateOptions()
            ),
            ScansionSASLInitializer(xs, required=True),
            jabber_client.BindInitializer(xs, required=True),
            RequiredSessionInitializer(xs, required=False),
        ]


class _ClientFactory(protocol.ClientFactory):
    """Builds the stream for one connection attempt and reports failures."""

    def __init__(self, owner: ScansionClient) -> None:
        self.owner = owner

    def buildProtocol(self, addr: object) -> xmlstream.XmlStream:  # noqa: N802
        """Create the XML stream and hook it to the owning client."""
        return self.owner._build_stream()

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:  # noqa: N802
        """Report a TCP connection failure."""
        self.owner._init_failed(reason)


class ScansionClient:
    """One script client: connects, queues received stanzas, sends stanzas."""

    def __init__(self, account: ClientAccount, reactor: IReactorTCP | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.account = account
        self.reactor = reactor
        self.queue: deque[domish.Element] = deque()
        self.full_jid: JID | None = None
        self.connected = False
        self.close_reason: str | None = None
        self.stream: xmlstream.XmlStream | None = None
        self._connector = None
        self._connect_deferred: defer.Deferred | None = None
        self._timeout_call = None
        self._waiters: list[tuple[defer.Deferred, object]] = []
        self._closed_waiters: list[defer.Deferred] = []
        self._transport_open = False
        self._aborted = False
        self._round_trips: dict[str, tuple[defer.Deferred, object]] = {}
        self._round_trip_count = 0

    # -- connecting -------------------------------------------------------

    def connect(self, host: str, port: int, timeout: float = 5.0) -> defer.Deferred:
        """Connect and initialise the stream; fires with the bound full JID.

        Errbacks with :class:`ConnectError` when TCP, TLS, SASL or bind fails
        or when it takes longer than ``timeout`` seconds.
        """
        if self._connect_deferred is not None or self.connected:
            return defer.fail(ConnectError(f"{self.account.name} is already connected"))
        self.close_reason = None
        self._aborted = False
        self.queue.clear()
        self._connect_deferred = defer.Deferred()
        factory = _ClientFactory(self)
        self._connector = self.reactor.connectTCP(host, port, factory, timeout=timeout)
        self._timeout_call = self.reactor.callLater(timeout, self._connect_timed_out, timeout)
        return self._connect_deferred

    def _build_stream(self) -> xmlstream.XmlStream:
        """Create the XmlStream with our authenticator and observers."""
        resource = self.account.resource
        jid = JID(f"{self.account.jid}/{resource}" if resource else self.account.jid)
        authenticator = ScansionAuthenticator(jid, self.account.password)
        xs = xmlstream.XmlStream(authenticator)
        xs.addObserver(xmlstream.STREAM_CONNECTED_EVENT, self._on_connected)
        xs.addObserver(xmlstream.STREAM_AUTHD_EVENT, self._on_authenticated)
        xs.addObserver(xmlstream.INIT_FAILED_EVENT, self._init_failed)
        xs.addObserver(xmlstream.STREAM_ERROR_EVENT, self._on_stream_error)
        xs.addObserver(xmlstream.STREAM_END_EVENT, self._on_connection_lost)
        self.stream = xs
        return xs

    def _on_connected(self, xs: xmlstream.XmlStream) -> None:
        """The TCP connection is up."""
        self._transport_open = True

    def _on_authenticated(self, xs: xmlstream.XmlStream) -> None:
        """Stream initialised: start queueing stanzas."""
        self.full_jid = xs.authenticator.jid
        self.connected = True
        xs.addObserver("/*", self._on_element)
        self._finish_connect(self.full_jid)

    def _init_failed(self, reason: Failure) -> None:
        """TCP, TLS, SASL or bind failed."""
        message = _failure_text(reason)
        self._finish_connect(Failure(ConnectError(message)))
        self._abort_transport()

    def _connect_timed_out(self, timeout: float) -> None:
        """The whole connection set-up took too long."""
        self._timeout_call = None
        self._finish_connect(
            Failure(ConnectError(f"connection not established within {timeout:g} s"))
        )
        self._stop_connecting()
        self._abort_transport()

    def _stop_connecting(self) -> None:
        """Give up a TCP connection attempt that has not succeeded yet."""
        if self._connector is None or self._transport_open:
            return
        try:
            self._connector.stopConnecting()
        except error.NotConnectingError:
            pass

    def _finish_connect(self, result: object) -> None:
        """Fire the connect deferred once."""
        if self._timeout_call is not None and self._timeout_call.active():
            self._timeout_call.cancel()
        self._timeout_call = None
        deferred, self._connect_deferred = self._connect_deferred, None
        if deferred is None:
            return
        if isinstance(result, Failure):
            deferred.errback(result)
        else:
            deferred.callback(result)

    # -- receiving --------------------------------------------------------

    def _on_element(self, element: domish.Element) -> None:
        """Queue a received stanza (or any other top-level element)."""
        if element.uri == xmlstream.NS_STREAMS and element.name == "error":
            # Stream errors are reported through _on_stream_error.
            return
        if self._is_round_trip_answer(element):
            self._finish_round_trip(element["id"], True)
            return
        self.queue.append(element)
        self._wake_waiters(True)

    def _on_stream_error(self, reason: Failure) -> None:
        """Remember a stream error; the stream closes itself afterwards."""
        self.close_reason = f"stream error: {_failure_text(reason)}"
        self._finish_connect(Failure(ConnectError(self.close_reason)))

    def _on_connection_lost(self, reason: object) -> None:
        """The connection closed: wake everybody who waits."""
        self.connected = False
        self._transport_open = False
        if self.close_reason is None:
            self.close_reason = "the server closed the connection"
        self._finish_connect(Failure(ConnectError(f"connection lost: {self.close_reason}")))
        self._wake_waiters(False)
        for iq_id in list(self._round_trips):
            self._finish_round_trip(iq_id, False)
        closed, self._closed_waiters = self._closed_waiters, []
        for deferred in closed:
            deferred.callback(True)

    def _wake_waiters(self, value: bool) -> None:
        """Fire the pending :meth:`wait_for_stanza` deferreds."""
        waiters, self._waiters = self._waiters, []
        for deferred, call in waiters:
            if call.active():
                call.cancel()
            deferred.callback(value)

    def wait_for_stanza(self, timeout: float) -> defer.Deferred:
        """Fire with True once the queue is not empty, False on timeout or close."""
        if self.queue:
            return defer.succeed(True)
        if not self.connected:
            return defer.succeed(False)
        deferred: defer.Deferred = defer.Deferred()

        def expire() -> None:
            self._waiters = [(d, c) for d, c in self._waiters if d is not deferred]
            deferred.callback(False)

        call = self.reactor.callLater(max(timeout, 0.0), expire)
        self._waiters.append((deferred, call))
        return deferred

    # -- sending and closing ---------------------------------------------

    def send(self, element: domish.Element) -> None:
        """Send a stanza in the stream's default namespace."""
        if not self.connected or self.stream is None:
            raise ConnectError(f"{self.account.name} is not connected")
        self.stream.send(element)

    def round_trip(self, timeout: float) -> defer.Deferred:
        """Ping the server (XEP-0199) and wait for its answer.

        Sends ``<iq type='get' to=DOMAIN id='scansion-settle-N'><ping/></iq>``
        and fires with True when the server answers it (a result or an
        error: either proves that the server has processed every stanza this
        client sent before), False on timeout or when the connection closes.
        The answer is never put in :attr:`queue`; every stanza that arrived
        before it is there.
        """
        if not self.connected or self.stream is None:
            return defer.succeed(False)
        self._round_trip_count += 1
        iq_id = f"{ROUND_TRIP_ID}{self._round_trip_count}"
        iq = domish.Element((None, "iq"))
        iq["type"] = "get"
        iq["id"] = iq_id
        iq["to"] = self.account.domain
        iq.addElement((NS_PING, "ping"))
        deferred: defer.Deferred = defer.Deferred()
        call = self.reactor.callLater(max(timeout, 0.0), self._finish_round_trip, iq_id, False)
        self._round_trips[iq_id] = (deferred, call)
        self.stream.send(iq)
        return deferred

    def _is_round_trip_answer(self, element: domish.Element) -> bool:
        """True for the result or error answering one of our pending pings."""
        return (
            element.name == "iq"
            and element.getAttribute("type") in ("result", "error")
            and element.getAttribute("id") in self._round_trips
        )

    def _finish_round_trip(self, iq_id: str, answered: bool) -> None:
        """Fire a pending :meth:`round_trip` once."""
        pending = self._round_trips.pop(iq_id, None)
        if pending is None:
            return
        deferred, call = pending
        if call.active():
            call.cancel()
        deferred.callback(answered)

    def answer_pings(self) -> None:
        """Answer XEP-0199 pings from now on, as a live client would (off by default).

        Scripts never enable it: a script lists the stanzas its clients send.
        """

        def pong(iq: domish.Element) -> None:
            reply = domish.Element((None, "iq"))
            reply["type"] = "result"
            reply["id"] = iq.getAttribute("id", "")
            if iq.getAttribute("from"):
                reply["to"] = iq["from"]
            self.stream.send(reply)

        self.stream.addObserver("/iq[@type='get']/ping[@xmlns='urn:xmpp:ping']", pong)

    def disconnect(self, timeout: float = 5.0) -> defer.Deferred:
        """Send ``</stream:stream>`` and wait for the connection to close.

        Fires with True if the server closed the stream within ``timeout``
        seconds; otherwise the connection is aborted and it fires with False.
        """
        if self._connect_deferred is not None:
            self._finish_connect(Failure(ConnectError("disconnected while connecting")))
            self._stop_connecting()
        if not self._transport_open or self.stream is None:
            return defer.succeed(True)
        self.connected = False
        deferred: defer.Deferred = defer.Deferred()
        self._closed_waiters.append(deferred)
        if self._aborted:
            # Already dropped: just wait for connectionLost.
            return deferred
        try:
            self.stream.sendFooter()
        except Exception:  # noqa: BLE001 - the transport may already be gone
            log.failure("sending the stream footer failed")
        call = self.reactor.callLater(timeout, self._abort_transport)

        def done(value: bool) -> bool:
            if call.active():
                call.cancel()
                return True
            return False

        deferred.addCallback(done)
        return deferred

    def _abort_transport(self) -> None:
        """Drop the TCP connection at once."""
        if self.stream is not None and self.stream.transport is not None and self._transport_open:
            self._aborted = True
            self.stream.transport.abortConnection()


def _failure_text(reason: Failure) -> str:
    """Describe a failure in one line."""
    value = reason.value if isinstance(reason, Failure) else reason
    text = str(value) or type(value).__name__
    if type(value).__name__ not in text:
        text = f"{type(value).__name__}: {text}"
    return text
