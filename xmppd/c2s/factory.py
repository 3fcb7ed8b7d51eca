"""The server factory for client streams, with its configuration and limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import task
from twisted.words.protocols.jabber import jid, xmlstream
from twisted.words.xish import domish

from xmppd import gcpolicy
from xmppd.c2s import sasl
from xmppd.c2s.guard import ClientGuard
from xmppd.c2s.negotiation import C2SAuthenticator
from xmppd.c2s.stream import C2SStream
from xmppd.config import Config, LimitSettings
from xmppd.stanza import release

#: Parsers freed in one sweep from which the memory is handed back to the system.
TRIM_AFTER = 64

#: Stream states whose features :meth:`C2SFactory.features_text` keeps (a
#: handful occur: before and after TLS, authenticated, bound).
MAX_FEATURE_STATES = 32


class C2SFactory(xmlstream.XmlStreamServerFactory):
    """Server factory for client streams.

    Reads its settings from ``config`` (the whole server
    :class:`~xmppd.config.Config`: the domain, ``[c2s]``, ``[limits]``,
    whether registration is open), so that a reload swaps one object.
    Besides the config: ``guard`` holds the limits shared across listeners
    (a fresh one without connection or session limits by default);
    ``max_pending`` bounds the stanzas queued behind an unfinished
    asynchronous step; ``close_timeout`` is how long a closing stream may
    linger; ``allow_plain_without_tls`` offers PLAIN before TLS when
    encryption is not required (else PLAIN there gets
    ``mechanism-too-weak``); ``router`` defaults to
    ``session_manager.router``.
    """

    protocol = C2SStream
    noisy = False

    def __init__(
        self,
        config: Config,
        *,
        session_manager: Any,
        accounts: Any,
        portal: Any,
        tls_options: Any,
        direct_tls: bool = False,
        reactor: Any = None,
        router: Any = None,
        guard: ClientGuard | None = None,
        allow_plain_without_tls: bool = True,
        max_pending: int = 32,
        close_timeout: float = 10.0,
    ):
        super().__init__(lambda: C2SAuthenticator(self))
        if direct_tls and tls_options is None:
            raise ValueError("direct TLS needs tls_options")
        if reactor is None:
            from twisted.internet import reactor
        self.config = config
        self.domain = jid.JID(config.domain).host
        self.session_manager = session_manager
        self.accounts = accounts
        self.portal = portal
        self.tls_options = tls_options
        self.direct_tls = direct_tls
        self.reactor = reactor
        self._router = router
        self.max_pending = max_pending
        self.close_timeout = close_timeout
        self.guard = guard if guard is not None else ClientGuard(reactor)
        self.sasl = sasl.SASLServer(
            accounts=accounts,
            portal=portal,
            domain=self.domain,
            allow_plain_without_tls=allow_plain_without_tls,
        )
        self.streams: set[C2SStream] = set()
        #: Stream features as text, per stream state (:meth:`features_text`).
        self._features: dict[tuple, str] = {}
        self._features_for: tuple[Any, Any] | None = None
        #: How often reading was paused by the read-rate limit (all streams).
        self.read_pauses = 0
        self._sweep: task.LoopingCall | None = None

    def startFactory(self) -> None:
        """Start the sweep that lets silent streams free their parsers (``hibernate_after``)."""
        interval = self.limits.hibernate_after
        if interval and self._sweep is None:
            self._sweep = task.LoopingCall(self.hibernate_quiet_streams)
            self._sweep.clock = self.reactor
            self._sweep.start(interval, now=False)

    def stopFactory(self) -> None:
        """Stop the sweep (the last listener of this factory stopped)."""
        if self._sweep is not None and self._sweep.running:
            self._sweep.stop()
        self._sweep = None

    def hibernate_quiet_streams(self) -> None:
        """Every stream that received nothing since the last sweep frees its parser.

        A stream is therefore silent for between one and two
        ``hibernate_after`` periods before it gives its parser back. When
        many did at once (:data:`TRIM_AFTER`), the freed memory is handed
        back to the system (:func:`xmppd.gcpolicy.return_free_memory`).
        """
        freed = 0
        for xs in self.streams:
            freed += xs.hibernate_if_quiet()
        if freed >= TRIM_AFTER:
            gcpolicy.return_free_memory()

    def features_text(self, state: tuple, build: Callable[[], domish.Element],
                      render: Callable[[domish.Element], str]) -> str:
        """The stream features for streams in ``state``, as text, built once.

        Every stream in the same state (its kind, which says how it writes
        an element, TLS or not, its channel binding types, registration
        offered, authenticated, bound) gets the same features until the
        configuration or the certificate is replaced (a reload), which
        starts the cache again.
        """
        if (self._features_for is None or self._features_for[0] is not self.config
                or self._features_for[1] is not self.tls_options):
            self._features_for = (self.config, self.tls_options)
            self._features.clear()
        text = self._features.get(state)
        if text is None:
            element = build()
            text = render(element)
            release(element)
            if len(self._features) < MAX_FEATURE_STATES:
                self._features[state] = text
        return text

    @property
    def limits(self) -> LimitSettings:
        """The ``[limits]`` in force (0 turns a timeout, rate or count off)."""
        return self.config.limits

    @property
    def require_encryption(self) -> bool:
        """Refuse authentication before TLS (``c2s.require_encryption``)."""
        return self.config.c2s.require_encryption

    @property
    def registration_enabled(self) -> bool:
        """Offer account creation before authentication (XEP-0077)."""
        return self.config.registration_enabled

    @property
    def router(self) -> Any:
        """Where stanzas from bound clients go."""
        if self._router is not None:
            return self._router
        return self.session_manager.router

    def buildProtocol(self, addr: Any) -> C2SStream:
        """A new client stream with its own authenticator."""
        xs = self.protocol(self.authenticatorFactory(), self)
        self.installBootstraps(xs)
        return xs

    def close_all(self, condition: str = "system-shutdown", text: str | None = None) -> None:
        """Close every open client stream with a stream error."""
        for xs in list(self.streams):
            xs.stream_error(condition, text)
