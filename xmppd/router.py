"""The router: one per process, it delivers every stanza by destination domain.

Destinations are objects with a ``send(stanza)`` method:

* the local host's session manager and, through wokkel's
  ``InternalComponent``, the MUC service;
* external components (XEP-0114), whose streams wokkel's component server
  factory registers with :meth:`Router.addRoute`;
* later, other servers (S2S) as the default route (key ``None``).

A stanza for a domain nobody serves is answered with
``remote-server-not-found``. Stanzas pass through as ``domish.Element``
objects: nothing is serialised or re-parsed on the way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.words.protocols.jabber import error
from twisted.words.xish import domish
from wokkel import component

from xmppd.addresses import normalised_domain, stanza_domain
from xmppd.errors import bounce
from xmppd.logs import logger
from xmppd.stanza import describe

log = logger(__name__)


class Router(component.Router):
    """Routes stanzas between the server's parts by the domain of 'to'.

    Keeps wokkel's ``addRoute``/``removeRoute`` protocol so that wokkel's
    ``InternalComponent`` and component server factory plug in unchanged.
    """

    def __init__(self) -> None:
        super().__init__()
        self._observers: dict[int, Callable[[domish.Element], None]] = {}

    def register(self, domain: str, destination: Any) -> None:
        """Serve a domain with an object that has ``send(stanza)``."""
        self.routes[domain] = destination

    def unregister(self, domain: str, destination: Any) -> None:
        """Stop serving a domain with that destination (no-op otherwise)."""
        if self.routes.get(domain) is destination:
            del self.routes[domain]

    def serves(self, domain: str) -> bool:
        """True if a destination is registered for exactly that domain."""
        return domain in self.routes

    def addRoute(self, destination: str, xs: Any) -> None:
        """Register a component stream; stanzas it sends are routed onward.

        A component may only send from its own domain (or subdomains of it):
        a stanza with a foreign 'from' closes the stream with ``invalid-from``.
        """

        def from_component(stanza: domish.Element) -> None:
            sender = stanza.getAttribute("from")
            if not sender:
                domain = None
            else:
                # Fast path: an already-normalised 'from' in the component's
                # domain (the MUC sends one per occupant per message).
                domain = stanza_domain(sender)
                if domain != destination and not domain.endswith("." + destination):
                    domain = normalised_domain(sender)
            if domain != destination and not (domain or "").endswith("." + destination):
                log.warn(
                    "component {component} sent a stanza from {sender!r}: closing it",
                    component=destination,
                    sender=sender,
                )
                send_error = getattr(xs, "sendStreamError", None)
                if send_error is not None:
                    send_error(error.StreamError("invalid-from"))
                return
            self.route(stanza)

        self.routes[destination] = xs
        self._observers[id(xs)] = from_component
        xs.addObserver("/*", from_component)

    def inbound(self, xs: Any) -> Callable[[domish.Element], None] | None:
        """What a registered component stream's stanzas go through (None: not registered).

        An in-process component (the MUC service) may call it directly
        instead of dispatching each stanza through its XML pipe's observers:
        the same checks and routing, without Twisted's per-stanza event
        dispatch.
        """
        return self._observers.get(id(xs))

    def removeRoute(self, destination: str, xs: Any) -> None:
        """Unregister a component stream (on disconnect)."""
        observer = self._observers.pop(id(xs), None)
        if observer is not None:
            xs.removeObserver("/*", observer)
        if self.routes.get(destination) is xs:
            del self.routes[destination]

    def route(self, stanza: domish.Element) -> None:
        """Deliver a stanza to the destination serving its 'to' domain.

        A stanza without 'to' is for the sender's own account and goes to
        the sender's domain (RFC 6120 10.3).
        """
        address = stanza.getAttribute("to") or stanza.getAttribute("from")
        if not address:
            log.warn("dropping a stanza with neither 'to' nor 'from': {xml}", xml=describe(stanza))
            return
        routes = self.routes
        destination = routes.get(stanza_domain(address))
        if destination is None:
            domain = normalised_domain(address)
            if domain is None:
                self._answer(stanza, "jid-malformed")
                return
            destination = routes.get(domain) or routes.get(None)
            if destination is None:
                self._answer(stanza, "remote-server-not-found")
                return
        destination.send(stanza)

    def _answer(self, stanza: domish.Element, condition: str) -> None:
        reply = bounce(stanza, condition)
        if reply is not None:
            if reply.getAttribute("from") and normalised_domain(reply["from"]) is None:
                del reply.attributes["from"]
            self.route(reply)
