"""One BOSH session (XEP-0124/0206): request ids, held requests, timers, the stream.

A :class:`BoshSession` carries one :class:`BoshStream` — the c2s stream
with the element framing of :class:`~xmppd.ws.stream.ElementFramedStream`
(so the same authenticator, limits, guard, session manager and stream
management as TCP and WebSocket) — over a series of HTTP requests:

* requests are processed in ``rid`` order: a request ahead of a missing
  one waits for it (up to ``requests`` rids ahead of the last processed
  one; further is ``item-not-found``); a rid already processed gets its
  cached response again (the last ``requests`` responses are kept, or with
  acknowledgements the ones the client has not acknowledged), else
  ``item-not-found``;
* processed requests are *held* until there is something to send; they
  are answered oldest first, each with everything queued for the client
  (one body), an empty body after ``wait`` seconds, or at once when more
  than ``hold`` are held;
* with no request held for ``inactivity`` seconds (or a ``pause``) the
  session is dropped like a broken TCP connection (a stream-management
  session stays resumable);
* the client's ``type='terminate'`` closes the stream after the body's
  stanzas; a stream error from the c2s machinery ends the session with
  ``type='terminate' condition='remote-stream-error'`` and the
  ``<stream:error/>`` inside.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from twisted.internet import error
from twisted.python import failure
from twisted.words.xish import domish

from xmppd.bosh.body import NS_XML, Body, render_body
from xmppd.c2s.stream import NS_CLIENT, _new_stream_id
from xmppd.logs import logger
from xmppd.stanza import NS_STREAMS
from xmppd.ws.stream import ElementFramedStream, WebSocketC2SFactory

log = logger(__name__)

#: Stream end reasons that are no error (the session ends with a plain terminate).
_CLEAN_ENDS = (None, "closed", "client-closed")


class BoshStream(ElementFramedStream):
    """A client stream carried by BOSH bodies: no header or footer on the wire."""

    def sendHeader(self) -> None:
        """A fresh stream id (the ``authid``): the body attributes stand for the header."""
        self.sid = _new_stream_id()
        self._headerSent = True

    def sendFooter(self) -> None:
        """Nothing to write: the session's terminate body ends the stream."""
        self._footer_sent = True


class BoshC2SFactory(WebSocketC2SFactory):
    """The c2s factory of BOSH streams: no STARTTLS, credentials only when encrypted."""

    protocol = BoshStream


class BoshTransport:
    """What a :class:`BoshStream` writes to: its session's queue for the client."""

    disconnecting = False

    def __init__(self, session: BoshSession, peer: Any):
        self.session = session
        self.peer = peer

    def write(self, data: bytes) -> None:
        """Queue one element (serialised) for the next response."""
        if not self.disconnecting:
            self.session.queue(data)

    def writeSequence(self, data: list[bytes]) -> None:  # noqa: N802 - Twisted's API
        """Queue the pieces as one element."""
        self.write(b"".join(data))

    def loseConnection(self) -> None:  # noqa: N802 - Twisted's API
        """The stream ended: the session answers with a terminate body."""
        if not self.disconnecting:
            self.disconnecting = True
            self.session.stream_ended()

    abortConnection = loseConnection  # noqa: N815 - Twisted's API

    def getPeer(self) -> Any:  # noqa: N802 - Twisted's API
        """The client's address (forwarded behind a trusted proxy)."""
        return self.peer

    def getHost(self) -> Any:  # noqa: N802 - Twisted's API
        """Our address: not meaningful for HTTP requests; the client's is given."""
        return self.peer

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's API
        """Nothing to pause: requests are bounded by the HTTP listener."""

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted's API
        """Nothing to resume."""

    def stopProducing(self) -> None:  # noqa: N802 - Twisted's API
        """End the session."""
        self.loseConnection()


class Held:
    """A processed request waiting for its response (``request`` None: its HTTP
    connection is gone, the response is only cached)."""

    def __init__(self, rid: int, request: Any, empty: bool, arrived: float):
        self.rid = rid
        self.request = request
        self.empty = empty
        self.arrived = arrived
        self.timer: Any = None


class BoshSession:
    """One BOSH session: its parameters, its requests and its client stream.

    ``endpoint`` delivers responses (``deliver(request, data)``), forgets
    ended sessions (``forget(session)``) and has the ``reactor``.
    """

    def __init__(self, endpoint: Any, sid: str, *, rid: int, to: str, lang: str | None,
                 wait: int, hold: int, requests: int, inactivity: int, polling: int,
                 maxpause: int, acks: bool, address: str, version: str | None = "1.0",
                 sender: str | None = None):
        self.endpoint = endpoint
        self.reactor = endpoint.reactor
        self.sid = sid
        self.to = to
        self.lang = lang
        self.wait = wait
        self.hold = hold
        self.requests = requests
        self.inactivity = inactivity
        self.polling = polling
        self.maxpause = maxpause
        self.acks = acks
        self.address = address
        #: The client's ``xmpp:version`` (the stream header's ``version``).
        self.version = version
        #: The creation request's ``from`` (the client's JID, as a stream header's).
        self.sender = sender
        self.stream: BoshStream | None = None
        #: The highest rid processed (every lower one was too).
        self.last_rid = rid - 1
        self.held: list[Held] = []
        #: Requests ahead of a missing rid: rid -> (request, body).
        self.waiting: dict[int, tuple[Any, Body]] = {}
        #: The last responses by rid, for retransmission.
        self.responses: OrderedDict[int, bytes] = OrderedDict()
        self.outgoing: list[bytes] = []
        self.processing = False
        self.ended = False
        #: The terminate body the session ended with (for a request that came too late).
        self.final: bytes | None = None
        #: Whether the client still has to learn of the end: the server ended
        #: the session with a condition or with stanzas queued, and no held
        #: request took the final body.
        self.final_unheard = False
        self._inactivity_timer: Any = None
        self._pause: int | None = None
        #: When the last empty request of a polling session came, if it got an empty answer.
        self._idle_poll: float | None = None

    # -- the stream ----------------------------------------------------------------

    def attach(self, stream: BoshStream, peer: Any) -> None:
        """Connect the client stream (its ``connectionMade`` runs now)."""
        self.stream = stream
        stream.makeConnection(BoshTransport(self, peer))

    def header(self) -> domish.Element:
        """The stream header a session creation or restart stands for (XEP-0206)."""
        root = domish.Element((NS_STREAMS, "stream"), defaultUri=NS_CLIENT)
        root["to"] = self.to
        if self.version is not None:
            root["version"] = self.version
        if self.sender:
            root["from"] = self.sender
        if self.lang:
            root[(NS_XML, "lang")] = self.lang
        return root

    def queue(self, data: bytes) -> None:
        """An element for the client: sent with the next response."""
        self.outgoing.append(data)
        if self.stream is None or not self.stream.closing:
            self.flush()  # a closing stream's last words go with the terminate body

    # -- requests ------------------------------------------------------------------

    def start(self, request: Any, body: Body, attributes: list[tuple[str, str]]) -> None:
        """The session creation request: open the stream, answer with ``attributes``."""
        self.last_rid += 1
        held = self._hold(self.last_rid, request, True)
        self.processing = True
        try:
            self.stream.open_stream(self.header())
        finally:
            self.processing = False
        if self.ended:
            return
        attributes.insert(len(attributes) - 3, ("authid", self.stream.sid or ""))
        if self.acks:
            attributes.append(("ack", str(held.rid)))
        self._answer(held, self._take(), attributes, ack=False)
        self._settle()

    def handle(self, request: Any, body: Body) -> None:
        """A request of this session (its ``sid`` matched)."""
        rid = body.number("rid")
        if rid is None:
            self.terminate("bad-request", request)
            return
        ack = body.number("ack")
        if self.acks and ack is not None:
            for old in [r for r in self.responses if r <= ack]:
                del self.responses[old]
        if rid <= self.last_rid:
            self._repeated(rid, request)
            return
        if rid > self.last_rid + self.requests:
            self.terminate("item-not-found", request)
            return
        if rid in self.waiting:
            self._finish_stale(self.waiting[rid][0])
            self.waiting[rid] = (request, body)
            return
        extra = 1 if body.get("type") == "terminate" or body.get("pause") is not None else 0
        if len(self.held) + len(self.waiting) + 1 > self.requests + extra:
            self.terminate("policy-violation", request)
            return
        if rid != self.last_rid + 1:
            self.waiting[rid] = (request, body)
            return
        self._process(rid, request, body)
        while not self.ended and self.last_rid + 1 in self.waiting:
            request, body = self.waiting.pop(self.last_rid + 1)
            self._process(self.last_rid + 1, request, body)

    def _repeated(self, rid: int, request: Any) -> None:
        cached = self.responses.get(rid)
        if cached is not None:
            self.endpoint.deliver(request, cached)
            return
        for held in self.held:
            if held.rid == rid:  # the client lost the connection of a held request
                self._finish_stale(held.request)
                held.request = request
                self._watch(held)
                return
        self.terminate("item-not-found", request)

    def _finish_stale(self, request: Any) -> None:
        if request is not None:
            self.endpoint.deliver(request, render_body([]))

    def _process(self, rid: int, request: Any, body: Body) -> None:
        self.last_rid = rid
        self._cancel_inactivity()
        stream = self.stream
        stream._heard_from_peer()
        terminate = body.get("type") == "terminate"
        pause = body.number("pause") if body.get("pause") is not None else None
        empty = not body.children and not body.is_restart and not terminate
        if body.get("pause") is not None and (pause is None or pause > self.maxpause):
            self.terminate("policy-violation", request)
            return
        now = self.reactor.seconds()
        if (self.hold == 0 and empty and pause is None and self._idle_poll is not None
                and now - self._idle_poll < self.polling):
            self.terminate("policy-violation", request)
            return
        self._hold(rid, request, empty)
        self.processing = True
        try:
            if body.is_restart:
                stream.open_stream(self.header())
            for element in body.children:
                if self.ended:
                    break
                stream.element_received(element)
            if terminate and not self.ended:
                stream.client_closed()
        finally:
            self.processing = False
        if self.ended:
            return
        if pause is not None:
            self._pause = pause
            for held in list(self.held):
                self._answer(held, self._take())
        self.flush()

    def _hold(self, rid: int, request: Any, empty: bool) -> Held:
        held = Held(rid, request, empty, self.reactor.seconds())
        self.held.append(held)
        if self.wait:
            held.timer = self.reactor.callLater(self.wait, self._waited, held)
        self._watch(held)
        return held

    def _watch(self, held: Held) -> None:
        request = held.request

        def gone(reason: failure.Failure) -> None:
            if held.request is request:
                held.request = None
                if held in self.held and not self.ended:
                    self._answer(held, [])  # cached for a retransmission
                    self._settle()

        finished = getattr(request, "notifyFinish", None)
        if finished is not None:
            finished().addErrback(gone)

    def _waited(self, held: Held) -> None:
        held.timer = None
        if held in self.held and not self.ended:
            self._answer(held, self._take())
            self._settle()

    # -- responses -------------------------------------------------------------------

    def _take(self) -> list[bytes]:
        payload, self.outgoing = self.outgoing, []
        return payload

    def flush(self) -> None:
        """Answer held requests: the oldest gets what is queued; keep at most ``hold``."""
        if self.ended or self.processing:
            return
        while self.outgoing and self.held:
            self._answer(self.held[0], self._take())
        while len(self.held) > self.hold:
            self._answer(self.held[0], [])
        self._settle()

    def _settle(self) -> None:
        if not self.held and not self.ended and self._inactivity_timer is None:
            period, self._pause = (self._pause or self.inactivity), None
            self._inactivity_timer = self.reactor.callLater(period, self._inactive)

    def _answer(self, held: Held, payload: list[bytes],
                attributes: list[tuple[str, str]] | None = None, ack: bool = True) -> None:
        self.held.remove(held)
        if held.timer is not None and held.timer.active():
            held.timer.cancel()
        held.timer = None
        attributes = list(attributes or [])
        if ack and self.acks and self.last_rid != held.rid:
            attributes.append(("ack", str(self.last_rid)))
        data = render_body(attributes, payload)
        if self.hold == 0 and held.empty:
            self._idle_poll = held.arrived if not payload else None
        self.responses[held.rid] = data
        keep = self.requests
        while len(self.responses) > keep and not self.acks:
            self.responses.popitem(last=False)
        while len(self.responses) > max(keep, 64):
            self.responses.popitem(last=False)  # acks: unacknowledged ones, bounded
        if held.request is not None:
            self.endpoint.deliver(held.request, data)

    # -- the end -------------------------------------------------------------------

    def stream_ended(self) -> None:
        """The c2s stream closed (the client's terminate, a stream error, a shutdown)."""
        if self.ended:
            return
        stream = self.stream
        reason = stream.end_reason if stream is not None else None
        attributes = [("type", "terminate")]
        if reason not in _CLEAN_ENDS:
            attributes.append(("condition", "remote-stream-error"))
        self._end(attributes, self._take(), None)
        if stream is not None:
            stream.connection_dropped(failure.Failure(error.ConnectionDone()))

    def terminate(self, condition: str, request: Any = None) -> None:
        """End the session with a terminal binding condition (XEP-0124 section 17)."""
        if self.ended:
            if request is not None:
                self.endpoint.deliver(request, render_body(
                    [("type", "terminate"), ("condition", condition)]))
            return
        log.info("BOSH session {sid} from {address} ends: {condition}", sid=self.sid[:8],
                 address=self.address, condition=condition)
        stream = self.stream
        if stream is not None and not stream.closing:
            stream.end_reason = condition
        self._end([("type", "terminate"), ("condition", condition)], [], request)
        if stream is not None:
            stream.connection_dropped(failure.Failure(error.ConnectionDone()))

    def drop(self) -> None:
        """End the session as a broken connection (a stream-management session stays resumable)."""
        if self.ended:
            return
        self._end([("type", "terminate")], [], None)
        if self.stream is not None:
            self.stream.connection_dropped(failure.Failure(error.ConnectionLost()))

    def _inactive(self) -> None:
        self._inactivity_timer = None
        if not self.held and not self.ended:
            log.info("BOSH session {sid} from {address} inactive: dropped", sid=self.sid[:8],
                     address=self.address)
            self.drop()

    def _cancel_inactivity(self) -> None:
        if self._inactivity_timer is not None and self._inactivity_timer.active():
            self._inactivity_timer.cancel()
        self._inactivity_timer = None

    def _end(self, attributes: list[tuple[str, str]], payload: list[bytes],
             request: Any) -> None:
        self.ended = True
        self._cancel_inactivity()
        final = self.final = render_body(attributes, payload)
        plain = render_body(attributes)
        first = True
        heard = request is not None
        for held in self.held:
            if held.timer is not None and held.timer.active():
                held.timer.cancel()
            if held.request is not None:
                self.endpoint.deliver(held.request, final if first else plain)
                heard = heard or first
            first = False
        self.final_unheard = not heard and (
            bool(payload) or any(name == "condition" for name, _ in attributes))
        self.held = []
        for waiting, _ in self.waiting.values():
            self.endpoint.deliver(waiting, plain)
        self.waiting = {}
        if request is not None:
            self.endpoint.deliver(request, final if first else plain)
        self.endpoint.forget(self)
