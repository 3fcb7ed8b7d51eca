"""The S2S manager: the router's default route, and every S2S stream of the server.

Outgoing: one :class:`Link` per (local domain, remote domain). The first
stanza for a remote domain creates it: the :class:`~xmppd.s2s.resolver.Resolver`
says where to connect, the targets are tried in order (the next one also when
a connection closes before the peer's stream header, e.g. a failed direct TLS
handshake), and the stream negotiates (:mod:`xmppd.s2s.stream`). Meanwhile
stanzas wait in the link's queue (at most ``max_queue``); once the stream is
authenticated they are sent in order. When it cannot be set up every queued stanza is bounced —
``remote-server-not-found`` when DNS has no server for the domain or every
target refused the connection, ``remote-server-timeout`` otherwise (no
answer within ``connect_timeout``, negotiation or authentication failed) —
except error stanzas, which are never answered.

Incoming: :meth:`S2SManager.factory` accepts other servers' streams (at most
``max_incoming`` at once); their stanzas go to the router. Dialback keys
they present are checked through our own outgoing link to the domain they
claim (``db:verify``), which needs only an encrypted stream, not an
authenticated one, so two servers verifying each other never wait on each
other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from OpenSSL import SSL
from twisted.application import service
from twisted.internet import defer, endpoints, error, protocol, ssl
from twisted.python import failure
from twisted.words.xish import domish

from xmppd.addresses import normalised_domain
from xmppd.errors import bounce
from xmppd.logs import logger
from xmppd.ratelimit import TokenBucket
from xmppd.s2s.certificates import ClientTLSCreator, certificate_problem, load_trust_roots
from xmppd.s2s.dialback import DialbackRefused
from xmppd.s2s.resolver import NoSuchServer, Resolver, Target
from xmppd.s2s.status import S2SConnection, connection_status
from xmppd.s2s.stream import S2SStream
from xmppd.stanza import describe

log = logger(__name__)

#: Seconds the shut-down waits for S2S connections to close before dropping them.
SHUTDOWN_GRACE = 2.0

#: The ALPN protocol of XMPP server-to-server streams (XEP-0368).
ALPN_S2S = b"xmpp-server"

NOT_FOUND_ERRORS = (error.ConnectionRefusedError, error.DNSLookupError, error.NoRouteError,
                    NoSuchServer)


@dataclass
class Link:
    """The outgoing connection for one (local, remote) domain pair, and its queue."""

    local: str
    remote: str
    stream: S2SStream | None = None
    queue: list[domish.Element] = field(default_factory=list)
    #: Dialback verifications waiting for the stream: (stream id, key, Deferred).
    verifies: list[tuple[str, str, defer.Deferred]] = field(default_factory=list)
    ready: bool = False
    failed: bool = False
    timer: Any = None
    #: The connection attempt in progress (a Deferred), if any.
    connecting: Any = None
    #: The targets not tried yet.
    targets: list[Target] = field(default_factory=list)


class _OutgoingFactory(protocol.ClientFactory):
    """Builds the one stream of a connection attempt."""

    def __init__(self, stream: S2SStream):
        self.stream = stream

    def buildProtocol(self, addr: Any) -> S2SStream:
        """The stream made for this attempt."""
        return self.stream


class _IncomingFactory(protocol.ServerFactory):
    """Accepts other servers' streams (up to ``max_incoming``); ``direct_tls``: TLS
    from the first byte (XEP-0368)."""

    def __init__(self, manager: S2SManager, direct_tls: bool = False):
        self.manager = manager
        self.direct_tls = direct_tls

    def buildProtocol(self, addr: Any) -> S2SStream | None:
        """A receiving stream, or None (connection closed) beyond the limit."""
        if len(self.manager.incoming) >= self.manager.settings.max_incoming:
            log.warn("refusing an S2S connection from {addr}: max_incoming reached", addr=addr)
            return None
        return S2SStream(self.manager, initiating=False, direct_tls=self.direct_tls)


class S2SManager(service.Service):
    """Federation: outgoing links by domain pair, incoming streams, dialback.

    ``served``: the domains we host; ``secret``: the dialback secret;
    ``server_tls_options``/``client_tls_options``: pyOpenSSL context
    factories (None: no TLS); ``roots``: trusted authorities for remote
    certificates; ``resolver``: a :class:`~xmppd.s2s.resolver.Resolver`.
    """

    def __init__(self, settings: Any, limits: Any, router: Any, served: tuple[str, ...],
                 secret: str, *, reactor: Any, server_tls_options: Any = None,
                 client_tls_options: Any = None, roots: list | None = None,
                 resolver: Resolver | None = None):
        self.settings = settings
        self.limits = limits
        self.router = router
        self.served = frozenset(served)
        self.secret = secret
        self.reactor = reactor
        self.server_tls_options = server_tls_options
        self.client_tls_options = client_tls_options
        self._roots = list(roots) if roots is not None else None
        self.resolver = resolver or Resolver(settings.routes, reactor=reactor)
        self.links: dict[tuple[str, str], Link] = {}
        self.incoming: set[S2SStream] = set()
        self.outgoing: set[S2SStream] = set()
        #: Read-rate buckets shared by the streams of one remote domain.
        self.domain_buckets: dict[str, TokenBucket] = {}
        self.domain_stanza_buckets: dict[str, TokenBucket] = {}

    # -- policy ------------------------------------------------------------------

    @property
    def can_tls(self) -> bool:
        """Whether we have a certificate to do TLS with."""
        return self.server_tls_options is not None and self.client_tls_options is not None

    def requires_tls(self, remote: str | None) -> bool:
        """Whether streams with that domain must be encrypted."""
        return self.settings.require_encryption and remote not in self.settings.insecure_domains

    def dialback_allowed(self, remote: str | None) -> bool:
        """Whether that domain may authenticate by dialback."""
        return self.settings.allow_dialback and remote not in self.settings.trusted_domains

    def check_certificate(self, transport: Any, domain: str | None) -> str | None:
        """Why the TLS peer's certificate is not valid for ``domain`` (None: it is)."""
        if domain is None:
            return "no domain"
        try:
            leaf = transport.getPeerCertificate()
        except Exception:
            leaf = None
        if leaf is None:
            return "no certificate"
        chain = [leaf.to_cryptography()]
        try:
            presented = transport.getHandle().get_peer_cert_chain() or []
            chain += [c.to_cryptography() for c in presented]
            chain = [chain[0]] + [c for c in chain[1:] if c != chain[0]]
        except Exception:
            pass
        return certificate_problem(chain, domain, self.roots)

    @property
    def roots(self) -> list:
        """The trusted authorities (``ca_file`` or the system's, read on first use)."""
        if self._roots is None:
            self._roots = load_trust_roots(self.settings.ca_file)
        return self._roots

    # -- the router's default route ----------------------------------------------

    def send(self, stanza: domish.Element) -> None:
        """Send a stanza to another server (queued while its link is set up)."""
        to, sender = stanza.getAttribute("to"), stanza.getAttribute("from")
        remote = normalised_domain(to) if to else None
        local = normalised_domain(sender) if sender else None
        if remote is None:
            self._bounce(stanza, "jid-malformed")
            return
        if local not in self.served:
            log.warn("not sending a stanza from a domain we do not serve: {xml}",
                     xml=describe(stanza))
            return
        link = self.links.get((local, remote))
        if link is not None and link.ready and link.stream is not None \
                and not link.stream.closing:
            link.stream.send_stanza(stanza)
            return
        if link is not None and len(link.queue) >= self.settings.max_queue:
            self._bounce(stanza, "resource-constraint", "too many stanzas waiting for "
                         f"the connection to {remote}")
            return
        if link is None:
            link = self._link(local, remote, first=stanza)
        else:
            link.queue.append(stanza)

    def _bounce(self, stanza: domish.Element, condition: str, text: str | None = None) -> None:
        reply = bounce(stanza, condition, text)
        if reply is not None:
            self.router.route(reply)

    # -- outgoing links ----------------------------------------------------------

    def _link(self, local: str, remote: str, first: domish.Element | None = None,
              verify: tuple[str, str, defer.Deferred] | None = None) -> Link:
        """The link for a domain pair; a new one starts connecting (with ``first`` queued)."""
        link = self.links.get((local, remote))
        if link is None:
            link = Link(local, remote, queue=[first] if first is not None else [],
                        verifies=[verify] if verify is not None else [])
            self.links[(local, remote)] = link
            link.timer = self.reactor.callLater(self.settings.connect_timeout,
                                                self._timed_out, link)
            self._connect(link)
        return link

    def _connect(self, link: Link) -> None:
        d = self.resolver.resolve(link.remote)
        d.addCallbacks(lambda targets: self._try(link, list(targets), None),
                       lambda reason: self._give_up(link, self._condition(reason),
                                                    reason.getErrorMessage()))
        d.addErrback(lambda f: log.failure("S2S connection to {remote}", f, remote=link.remote))

    @staticmethod
    def _condition(reason: failure.Failure) -> str:
        if reason.check(*NOT_FOUND_ERRORS):
            return "remote-server-not-found"
        return "remote-server-timeout"

    def _try(self, link: Link, targets: list[Target], last: failure.Failure | None) -> None:
        if link.failed:
            return
        if not targets:
            condition = self._condition(last) if last is not None else "remote-server-not-found"
            self._give_up(link, condition, last.getErrorMessage() if last else "no target")
            return
        target = targets.pop(0)
        link.targets = targets
        try:
            endpoint = self._endpoint(link, target)
        except Exception as e:
            self._try(link, targets, failure.Failure(e))
            return
        stream = S2SStream(self, initiating=True, local=link.local, remote=link.remote,
                           direct_tls=target.direct_tls)
        link.stream = stream
        d = link.connecting = endpoint.connect(_OutgoingFactory(stream))

        def connected(result: Any) -> None:
            link.connecting = None

        def failed(reason: failure.Failure) -> None:
            link.connecting = None
            if reason.check(defer.CancelledError):
                return  # we gave up on this link
            if link.stream is stream:
                link.stream = None
            log.info("S2S {remote}: cannot connect to {target}: {why}", remote=link.remote,
                     target=target.endpoint or f"{target.host}:{target.port}",
                     why=reason.getErrorMessage())
            self._try(link, targets, reason)

        d.addCallbacks(connected, failed)

    def _endpoint(self, link: Link, target: Target) -> Any:
        if target.endpoint is not None:
            return endpoints.clientFromString(self.reactor, target.endpoint)
        endpoint = endpoints.HostnameEndpoint(self.reactor, target.host, target.port,
                                              timeout=self.settings.connect_timeout)
        if target.direct_tls:
            if not self.can_tls:
                raise error.ConnectError(string="no certificate for direct TLS")
            return endpoints.wrapClientTLS(
                ClientTLSCreator(self.client_tls_options, link.remote, alpn=(ALPN_S2S,)),
                endpoint)
        return endpoint

    def _timed_out(self, link: Link) -> None:
        link.timer = None
        if not link.ready and not link.failed:
            self._give_up(link, "remote-server-timeout",
                          f"not connected within {self.settings.connect_timeout:g} s")

    def _give_up(self, link: Link, condition: str, why: str) -> None:
        """The link failed: bounce its queue, fail its verifications, forget it."""
        if link.failed:
            return
        link.failed = True
        if self.links.get((link.local, link.remote)) is link:
            del self.links[(link.local, link.remote)]
        if link.timer is not None and link.timer.active():
            link.timer.cancel()
        log.info("S2S {local} -> {remote} failed ({condition}): {why}; bouncing {count} "
                 "stanzas", local=link.local, remote=link.remote, condition=condition,
                 why=why, count=len(link.queue))
        queue, link.queue = link.queue, []
        for stanza in queue:
            self._bounce(stanza, condition)
        verifies, link.verifies = link.verifies, []
        for _sid, _key, d in verifies:
            d.errback(DialbackRefused(condition, why))
        if link.connecting is not None:
            link.connecting.cancel()
        stream = link.stream
        if stream is not None and stream.transport is not None and not stream.closing:
            stream.close()

    # -- callbacks from streams ---------------------------------------------------

    def stream_opened(self, stream: S2SStream) -> None:
        """A stream's connection is up."""
        (self.outgoing if stream.initiating else self.incoming).add(stream)

    def stream_closed(self, stream: S2SStream) -> None:
        """A stream's connection is gone."""
        self.incoming.discard(stream)
        self.outgoing.discard(stream)
        self._forget_bucket(stream)
        if not stream.initiating:
            return
        link = self.links.get((stream.local, stream.remote))
        if link is None or link.stream is not stream:
            return
        if link.ready:
            del self.links[(link.local, link.remote)]
            link.stream = None
            if link.queue:  # raced with the close: try again with what is left
                queue = link.queue
                link.queue = []
                for stanza in queue:
                    self.send(stanza)
        elif stream.sid is None and link.targets and not link.failed:
            # Closed before the peer's stream header (a direct TLS handshake that
            # failed, a port that is not XMPP): the next target (XEP-0368).
            log.info("S2S {remote}: connection closed before the stream started; trying "
                     "the next target", remote=link.remote)
            link.stream = None
            self._try(link, link.targets, failure.Failure(
                error.ConnectionClosed("closed before the stream started")))
        else:
            self._give_up(link, stream.end_reason if stream.end_reason in (
                "remote-server-not-found", "remote-server-timeout") else
                "remote-server-timeout", "connection closed during negotiation")

    def outgoing_failed(self, stream: S2SStream, condition: str, why: str) -> None:
        """An initiating stream could not authenticate."""
        link = self.links.get((stream.local, stream.remote))
        if link is not None and link.stream is stream:
            self._give_up(link, condition, why)

    def stream_can_verify(self, stream: S2SStream) -> None:
        """An initiating stream is encrypted: send the dialback verifications waiting."""
        link = self.links.get((stream.local, stream.remote))
        if link is None or link.stream is not stream:
            return
        verifies, link.verifies = link.verifies, []
        for sid, key, d in verifies:
            stream.verify(sid, key).chainDeferred(d)

    def outgoing_ready(self, stream: S2SStream) -> None:
        """An initiating stream authenticated: send what waited."""
        link = self.links.get((stream.local, stream.remote))
        if link is None or link.stream is not stream:
            stream.close()
            return
        link.ready = True
        if link.timer is not None and link.timer.active():
            link.timer.cancel()
        link.timer = None
        queue, link.queue = link.queue, []
        for stanza in queue:
            stream.send_stanza(stanza)

    def verify_dialback(self, local: str, remote: str, stream_id: str,
                        key: str) -> defer.Deferred:
        """Ask ``remote``'s authoritative server whether ``key`` is valid (fires a bool)."""
        d: defer.Deferred = defer.Deferred()
        link = self.links.get((local, remote))
        if link is None:
            self._link(local, remote, verify=(stream_id, key, d))
            return d
        stream = link.stream
        if stream is not None and stream.can_verify:
            return stream.verify(stream_id, key)
        if len(link.verifies) >= self.settings.max_queue:
            return defer.fail(DialbackRefused("resource-constraint", "too many verifications"))
        link.verifies.append((stream_id, key, d))
        return d

    def incoming_stanza(self, stream: S2SStream, stanza: domish.Element) -> None:
        """A stanza from an authenticated remote server: route it."""
        self.router.route(stanza)

    # -- incoming ---------------------------------------------------------------

    def factory(self, direct_tls: bool = False) -> protocol.ServerFactory:
        """The listener's factory for other servers' connections (``direct_tls``:
        XEP-0368, TLS from the first byte; needs a certificate)."""
        if direct_tls and not self.can_tls:
            raise ValueError("direct TLS needs a certificate")
        return _IncomingFactory(self, direct_tls)

    # -- limits per remote domain ----------------------------------------------------

    def incoming_limit_reached(self, stream: S2SStream, remote: str) -> bool:
        """Whether ``remote`` has ``max_incoming_per_domain`` other authenticated streams."""
        others = sum(1 for s in self.incoming if s is not stream and remote in s.authenticated)
        return others >= self.settings.max_incoming_per_domain

    def read_bucket(self, remote: str) -> TokenBucket | None:
        """The read-rate bucket all the authenticated streams of ``remote`` share
        (None: ``domain_read_rate`` is 0). Forgotten with its domain's last stream."""
        settings = self.settings
        return _shared_bucket(self.domain_buckets, remote, settings.domain_read_rate,
                              settings.domain_read_burst, self.reactor)

    def stanza_bucket(self, remote: str) -> TokenBucket | None:
        """The stanza-rate bucket all the authenticated streams of ``remote`` share
        (None: ``domain_stanza_rate`` is 0). Forgotten with its domain's last stream."""
        settings = self.settings
        return _shared_bucket(self.domain_stanza_buckets, remote, settings.domain_stanza_rate,
                              settings.domain_stanza_burst, self.reactor)

    def _forget_bucket(self, stream: S2SStream) -> None:
        streams = self.incoming | self.outgoing
        for attribute, buckets in (("domain_bucket", self.domain_buckets),
                                   ("domain_stanza_bucket", self.domain_stanza_buckets)):
            bucket = getattr(stream, attribute)
            if bucket is None or any(getattr(s, attribute) is bucket for s in streams):
                continue
            for domain, known in list(buckets.items()):
                if known is bucket:
                    del buckets[domain]

    # -- operations -------------------------------------------------------------

    def connections(self) -> list[S2SConnection]:
        """Every S2S stream's state (direction, domains, TLS, authentication, age, stanzas)."""
        now = self.reactor.seconds()
        return sorted((connection_status(s, now) for s in self.outgoing | self.incoming),
                      key=S2SConnection.sort_key)

    def replace_tls(self, server_tls_options: Any, client_tls_options: Any) -> None:
        """Use another certificate from now on (a reload): streams that start TLS
        later (either direction) get it; open streams keep theirs."""
        self.server_tls_options = server_tls_options
        self.client_tls_options = client_tls_options

    def stopService(self) -> Any:
        """Close every S2S stream (``system-shutdown``), bounce what still waits.

        Fires once the connections are gone, at most ``SHUTDOWN_GRACE``
        seconds later (the rest are dropped).
        """
        for link in list(self.links.values()):
            if not link.ready:
                self._give_up(link, "remote-server-timeout", "shutting down")
        for stream in list(self.outgoing | self.incoming):
            stream.stream_error("system-shutdown")
        self.resolver.close()
        super().stopService()
        done: defer.Deferred = defer.Deferred()
        deadline = self.reactor.seconds() + SHUTDOWN_GRACE

        def check() -> None:
            streams = self.outgoing | self.incoming
            if streams and self.reactor.seconds() >= deadline:
                for stream in streams:
                    stream._abort()
                streams = set()
            if streams:
                self.reactor.callLater(0.02, check)
            else:
                done.callback(None)

        check()
        return done


def _shared_bucket(buckets: dict[str, TokenBucket], remote: str, rate: float, burst: float,
                   clock: Any) -> TokenBucket | None:
    """``remote``'s bucket in ``buckets``, made on first use; None when ``rate`` is 0."""
    if not rate:
        return None
    bucket = buckets.get(remote)
    if bucket is None:
        bucket = buckets[remote] = TokenBucket(rate, burst, clock)
    return bucket


def server_tls_options(options: Any) -> Any:
    """The server-side context factory, asking the peer for its certificate.

    The peer's certificate is requested but not required, and not verified
    by OpenSSL: :meth:`S2SManager.check_certificate` decides after the
    handshake whether it allows SASL EXTERNAL.
    """
    context = options.getContext()
    context.set_verify(SSL.VERIFY_PEER, lambda conn, cert, errno, depth, ok: True)
    # OpenSSL refuses to resume sessions on a context that asks for peer
    # certificates unless it has a session id context.
    context.set_session_id(b"xmppd-s2s")
    context.set_alpn_select_callback(select_alpn)
    return options


def select_alpn(connection: Any, offered: list[bytes]) -> Any:
    """ALPN on S2S: ``xmpp-server`` if offered (XEP-0368), else no protocol.

    Twisted's own callback answers a peer offering protocols it does not
    know (after STARTTLS it knows none) with an empty name, which OpenSSL
    turns into an ``internal error`` alert: Prosody offers ``xmpp-server``.
    """
    return ALPN_S2S if ALPN_S2S in offered else SSL.NO_OVERLAPPING_PROTOCOLS


def client_tls_options(private_key: Any, chain: list) -> ssl.CertificateOptions:
    """The client-side context factory: presents our certificate, verifies later."""
    from OpenSSL import crypto

    return ssl.CertificateOptions(
        privateKey=crypto.PKey.from_cryptography_key(private_key),
        certificate=crypto.X509.from_cryptography(chain[0]),
        extraCertChain=[crypto.X509.from_cryptography(c) for c in chain[1:]],
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        verify=False,
    )
