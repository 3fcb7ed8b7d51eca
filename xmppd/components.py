"""External components (XEP-0114, "jabber:component:accept").

Built on wokkel's component server: :class:`ComponentServerFactory` accepts
component streams, checks the handshake against the secret configured for
the domain the component asks for, and registers the stream with the
:class:`~xmppd.router.Router` while it is connected. Differences from
wokkel's stock factory:

* one secret per component domain, and only configured domains may connect
  (``host-unknown`` otherwise);
* a second connection for a domain that is already connected gets
  ``conflict``;
* the handshake digest is compared in constant time;
* stanzas from the server side are written in the component namespace, and
  stanzas from the component may only come from its own domain (the router
  checks that).
"""

from __future__ import annotations

import hmac

from twisted.words.protocols.jabber import error, xmlstream
from twisted.words.xish import domish
from wokkel import component

from xmppd.addresses import normalised_domain
from xmppd.logs import logger
from xmppd.stanza import serialize

log = logger(__name__)

NS_COMPONENT_ACCEPT = "jabber:component:accept"


class ComponentAuthenticator(component.ListenComponentAuthenticator):
    """Accepts a component for a configured domain with that domain's secret."""

    def __init__(self, secrets: dict[str, str], router):
        super().__init__(secret=None)
        self.secrets = secrets
        self.router = router

    def streamStarted(self, rootElement):
        """Check the requested domain before answering the stream header."""
        requested = rootElement.getAttribute("to")
        if requested is not None and normalised_domain(requested) not in self.secrets:
            xmlstream.ListenAuthenticator.streamStarted(self, rootElement)
            self.xmlstream.sendStreamError(error.StreamError("host-unknown"))
            return
        super().streamStarted(rootElement)

    def onHandshake(self, handshake):
        """Verify the handshake digest (constant time), then authenticate."""
        xs = self.xmlstream
        domain = xs.thisEntity.host
        expected = xmlstream.hashPassword(xs.sid, self.secrets[domain])
        if not hmac.compare_digest(handshake.strip().lower(), expected):
            log.warn("component {domain}: handshake failed", domain=domain)
            xs.sendStreamError(error.StreamError("not-authorized", text="Invalid handshake"))
            return
        if self.router.serves(domain):
            log.warn("component {domain}: already connected; refusing another", domain=domain)
            xs.sendStreamError(error.StreamError("conflict"))
            return
        xs.send("<handshake/>")
        log.info("component {domain} connected", domain=domain)
        xs.dispatch(xs, xmlstream.STREAM_AUTHD_EVENT)


class ComponentStream(xmlstream.XmlStream):
    """A component stream that writes stanzas in the component namespace."""

    def send(self, obj):
        """Send a stanza (serialised without its jabber:client namespace) or raw data."""
        if isinstance(obj, domish.Element):
            obj = serialize(obj)
        super().send(obj)


class ComponentServerFactory(component.XMPPComponentServerFactory):
    """Listens for external components and routes their domains to them."""

    protocol = ComponentStream
    noisy = False

    def __init__(self, router, secrets: dict[str, str]):
        super().__init__(router)
        self.authenticatorFactory = lambda: ComponentAuthenticator(secrets, router)

    def onError(self, reason):
        """Log a component stream that failed to parse."""
        log.failure("component stream error", reason)

    def connectionLost(self, destination, xs, reason):
        """Unregister the component when its stream ends."""
        log.info("component {domain} disconnected", domain=destination)
        self.router.removeRoute(destination, xs)
