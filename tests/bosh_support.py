"""Test helpers for BOSH (XEP-0124/0206): a fake-clock endpoint and body parsing."""

from __future__ import annotations

import base64
import io
from typing import Any

import scramp
from twisted.internet import defer, error, reactor
from twisted.internet.task import Clock
from twisted.python import failure, log
from twisted.web import client, server
from twisted.web.http_headers import Headers
from twisted.web.test.requesthelper import DummyRequest
from twisted.words.xish import domish

from tests.c2s_fakes import FakeAccounts, FakeSessionManager, factory_config
from tests.http_support import Reply
from xmppd.auth import make_portal
from xmppd.bosh.body import NS_HTTPBIND
from xmppd.bosh.resource import BoshEndpoint, BoshResource
from xmppd.bosh.session import BoshC2SFactory
from xmppd.sections import BoshSettings

DOMAIN = "example.org"
NS_XBOSH = "urn:xmpp:xbosh"
EMPTY = f"<body xmlns='{NS_HTTPBIND}'/>"


def parse_response(data: bytes) -> domish.Element:
    """A response ``<body/>`` as an element (its children parsed too)."""
    found: list[domish.Element] = []
    stream = domish.elementStream()
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = found.append
    stream.DocumentEndEvent = lambda: None
    stream.parse(b"<w>" + data + b"</w>")
    assert len(found) == 1, data
    return found[0]


class BoshRequest(DummyRequest):
    """A POST (or other method) to the endpoint, from ``ip``."""

    _disconnected = False

    def __init__(self, data: bytes, method: bytes = b"POST", ip: str = "127.0.0.1",
                 secure: bool = True):
        super().__init__([b""])
        self.method = method
        self.content = io.BytesIO(data)
        self._ip = ip
        self._secure = secure

    def client_ip(self) -> str:
        return self._ip

    def is_secure_origin(self) -> bool:
        return self._secure

    def isSecure(self) -> bool:  # noqa: N802
        return False

    @property
    def text(self) -> str:
        """What was written (the whole response body)."""
        return b"".join(self.written).decode()

    @property
    def body(self) -> domish.Element:
        """The response body parsed."""
        return parse_response(b"".join(self.written))

    def drop(self) -> None:
        """The client's HTTP connection goes away before the response."""
        self._disconnected = True
        self.processingFailed(failure.Failure(error.ConnectionLost()))


class Harness:
    """An endpoint over fakes and a fake clock; ``post`` sends a body."""

    def __init__(self, limits: dict[str, Any] | None = None, **settings: Any):
        self.clock = Clock()
        self.accounts = FakeAccounts({"alice": "secret"})
        self.manager = FakeSessionManager(DOMAIN)
        self.c2s = BoshC2SFactory(
            factory_config({"domain": DOMAIN, "negotiation_timeout": 0, **(limits or {})}),
            session_manager=self.manager, accounts=self.accounts,
            portal=make_portal(self.accounts), tls_options=None, reactor=self.clock)
        self.endpoint = BoshEndpoint(BoshSettings(**settings), reactor=self.clock)
        self.endpoint.use(self.c2s)
        self.resource = BoshResource(self.endpoint)

    def post(self, text: str, **kwargs: Any) -> BoshRequest:
        """One request; its response may come later (``request.finished``)."""
        request = BoshRequest(text.encode(), **kwargs)
        result = self.resource.render(request)
        if result is not server.NOT_DONE_YET:
            request.write(result)
            request.finish()
        return request

    def body(self, rid: int, sid: str, inner: str = "", **attributes: str) -> BoshRequest:
        """A body of a session with these children and attributes."""
        extra = "".join(f" {k.replace('_', ':')}='{v}'" for k, v in attributes.items())
        return self.post(f"<body xmlns='{NS_HTTPBIND}' xmlns:xmpp='{NS_XBOSH}' rid='{rid}' "
                         f"sid='{sid}'{extra}>{inner}</body>")

    def create(self, rid: int = 100, hold: int = 1, wait: int = 60, **kwargs: Any
               ) -> tuple[str, BoshRequest]:
        """A session creation request; the new sid and its (answered) request."""
        extra = "".join(f" {k}='{v}'" for k, v in kwargs.pop("attributes", {}).items())
        request = self.post(
            f"<body xmlns='{NS_HTTPBIND}' xmlns:xmpp='{NS_XBOSH}' content='text/xml; "
            f"charset=utf-8' hold='{hold}' rid='{rid}' to='{DOMAIN}' ver='1.6' wait='{wait}' "
            f"xml:lang='en' xmpp:version='1.0'{extra}/>", **kwargs)
        assert request.finished, "a creation request is answered at once"
        return request.body.getAttribute("sid"), request


TIMEOUT = 10


class BoshClient:
    """A test BOSH client over real HTTP (twisted.web's Agent, persistent connections).

    :meth:`send` posts a body with the next rid (and returns its parsed
    response); the elements of every response go to a queue that
    :meth:`next` reads. :meth:`start_polling` keeps one empty request
    waiting at the server (as browser clients do once logged in).
    """

    def __init__(self, url: str, headers: dict[str, str] | None = None):
        self.url = url
        self.headers = headers or {}
        self.pool = client.HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = 4
        self.agent = client.Agent(reactor, pool=self.pool)
        self.rid = 1000
        self.sid: str | None = None
        self.created: domish.Element | None = None
        self.elements: defer.DeferredQueue = defer.DeferredQueue()
        self.bodies: list[domish.Element] = []
        self.polling = False
        self.in_flight = 0
        self.pending: set[Any] = set()

    def close(self) -> Any:
        """Stop polling, drop the requests in flight, close the pooled connections."""
        self.polling = False
        for d in list(self.pending):
            d.addErrback(lambda _: None)
            d.cancel()
        return self.pool.closeCachedConnections()

    def post_raw(self, data: bytes, headers: dict[str, str] | None = None) -> Any:
        """POST bytes; fires with a :class:`tests.http_support.Reply`."""
        raw = Headers({k: [v] for k, v in {"Content-Type": "text/xml; charset=utf-8",
                                             **self.headers, **(headers or {})}.items()})
        d = self.agent.request(b"POST", self.url.encode(), raw,
                               client.FileBodyProducer(io.BytesIO(data)))
        self.pending.add(d)

        def done(result: Any) -> Any:
            self.pending.discard(d)
            return result

        d.addBoth(done)

        def read(response: Any) -> Any:
            return client.readBody(response).addCallback(
                lambda body: Reply(response.code, response.headers, body))

        return d.addCallback(read)

    def post(self, inner: str = "", **attributes: str) -> Any:
        """A body with the next rid (and the sid): fires with the parsed response body."""
        self.rid += 1
        attributes = {"rid": str(self.rid), **attributes}
        if self.sid is not None:
            attributes["sid"] = self.sid
        text = "".join(f" {k.replace('_', ':')}='{v}'" for k, v in attributes.items())
        data = (f"<body xmlns='{NS_HTTPBIND}' xmlns:xmpp='{NS_XBOSH}'{text}>{inner}"
                "</body>").encode()
        self.in_flight += 1

        def got(reply: Any) -> domish.Element:
            self.in_flight -= 1
            assert reply.code == 200, (reply.code, reply.body)
            assert reply.header("content-type") == "text/xml; charset=utf-8"
            body = parse_response(reply.body)
            self.bodies.append(body)
            for child in body.elements():
                self.elements.put(child)
            if self.polling and body.getAttribute("type") != "terminate":
                self._poll()
            return body

        return self.post_raw(data).addCallback(got).addTimeout(TIMEOUT * 2, reactor)

    def _poll(self) -> None:
        if self.polling and self.in_flight == 0:
            self.post()

    def create(self, to: str = "localhost", **attributes: str) -> Any:
        """The session creation request: fires with the response (the features inside,
        not queued)."""
        defaults = {"to": to, "wait": "60", "hold": "1", "ver": "1.6", "xmpp_version": "1.0",
                    "xml:lang": "en"}

        def created(body: domish.Element) -> domish.Element:
            self.sid = body.getAttribute("sid")
            self.created = body
            self.elements = defer.DeferredQueue()  # the features: in the body returned
            return body

        return self.post(**{**defaults, **attributes}).addCallback(created)

    def send(self, inner: str, **attributes: str) -> Any:
        """Post elements; fires with the response body (while polling: at once, with None,
        since the request may stay held; what comes back is read with :meth:`next`)."""
        d = self.post(inner, **attributes)
        if not self.polling:
            return d
        d.addErrback(log.err)  # trial reports it
        return defer.succeed(None)

    def start_polling(self) -> None:
        """Keep an empty request waiting at the server from now on."""
        self.polling = True
        self._poll()

    def next(self) -> Any:
        """The next element the server sent."""
        return self.elements.get().addTimeout(TIMEOUT, reactor)

    def scram(self, username: str, password: str, mechanism: str = "SCRAM-SHA-1") -> Any:
        """A whole SCRAM exchange (each step's answer comes with its own request)."""
        @defer.inlineCallbacks
        def run() -> Any:
            client = scramp.ScramClient([mechanism], username, password)
            first = base64.b64encode(client.get_client_first().encode()).decode()
            yield self.send(f"<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{first}</auth>")
            challenge = yield self.next()
            if challenge.name != "challenge":
                return challenge
            client.set_server_first(base64.b64decode(str(challenge)).decode())
            final = base64.b64encode(client.get_client_final().encode()).decode()
            yield self.send(f"<response xmlns='{NS_SASL}'>{final}</response>")
            result = yield self.next()
            if result.name == "success":
                client.set_server_final(base64.b64decode(str(result)).decode())
            return result

        return run()


NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
