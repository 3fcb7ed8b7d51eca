"""A service at a domain of its own that answers iqs: the base of pubsub and upload.

A :class:`DomainService` is a router destination (like the session
manager and the MUC service): it registers its domain on start, and every
stanza for the domain reaches :meth:`DomainService.send`. What every such
service does alike lives here:

* only iq ``get``/``set`` addressed to the domain itself are requests:
  one to a JID of the domain with a user or resource part gets
  ``service-unavailable``; one without exactly one payload ``bad-request``;
  a message gets ``service-unavailable``; results, errors and presence
  are dropped (nothing to answer);
* the request goes to :meth:`DomainService.handle_iq` (the subclass's):
  its Deferred's result becomes the iq result (a payload element, None
  for an empty result, or an :class:`Answer` with actions to run after the
  reply is sent); a :class:`~xmppd.errors.StanzaError` becomes the error
  reply; anything else is logged and answered ``internal-server-error``;
  a request it does not handle (it returns None) gets
  ``service-unavailable``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from xmppd.addresses import parse_jid
from xmppd.errors import StanzaError, error_reply, must_not_answer
from xmppd.logs import logger
from xmppd.sm.stanzas import child_elements, result_for
from xmppd.stanza import describe

log = logger(__name__)


@dataclass(frozen=True)
class Answer:
    """An iq result's payload (or None) and what to do once the result is sent."""

    payload: domish.Element | None
    after: Sequence[Callable[[], Any]] = ()


class DomainService(service.Service):
    """A router destination for one domain that answers iq requests (see the module)."""

    #: What the logs call the service's failures ("a pubsub request failed").
    kind = "service"

    def __init__(self, domain: str, router: Any):
        self.domain = domain
        self.router = router

    def startService(self) -> None:  # noqa: N802 - Twisted's API
        """Serve the domain."""
        super().startService()
        self.router.register(self.domain, self)

    def stopService(self):  # noqa: N802 - Twisted's API
        """Stop serving the domain."""
        self.router.unregister(self.domain, self)
        return super().stopService()

    def route(self, stanza: domish.Element) -> None:
        """Send a stanza out through the router."""
        self.router.route(stanza)

    def handle_iq(self, kind: str, sender: jid.JID, payload: domish.Element,
                  stanza: domish.Element) -> defer.Deferred | None:
        """Answer a request (the subclass's): a Deferred of its result, or None if not ours."""
        return None

    def send(self, stanza: domish.Element) -> None:
        """A stanza for the domain (or one of its JIDs), from the router."""
        try:
            self._receive(stanza)
        except Exception:
            log.failure("handling {xml} failed", xml=describe(stanza))
            self.refuse(stanza, StanzaError("internal-server-error"))

    def refuse(self, stanza: domish.Element, error: StanzaError) -> None:
        """Answer a stanza with an error (unless it must not be answered)."""
        if must_not_answer(stanza):
            return
        reply = error_reply(stanza, error)
        if reply is not None:
            self.route(reply)

    def _receive(self, stanza: domish.Element) -> None:
        if stanza.name != "iq":
            if stanza.name == "message":
                self.refuse(stanza, StanzaError("service-unavailable"))
            return
        kind = stanza.getAttribute("type")
        if kind not in ("get", "set"):
            return
        sender = parse_jid(stanza.getAttribute("from") or "")
        if sender is None:
            return
        recipient = parse_jid(stanza.getAttribute("to") or "")
        if recipient is None or recipient.user or recipient.resource:
            self.refuse(stanza, StanzaError("service-unavailable"))
            return
        children = child_elements(stanza)
        if len(children) != 1:
            self.refuse(stanza, StanzaError("bad-request"))
            return
        d = self.handle_iq(kind, sender, children[0], stanza)
        if d is None:
            self.refuse(stanza, StanzaError("service-unavailable"))
            return
        d.addCallbacks(self._answer, self._failed, callbackArgs=(stanza,), errbackArgs=(stanza,))

    def _answer(self, result: Any, stanza: domish.Element) -> None:
        answer = result if isinstance(result, Answer) else Answer(result)
        reply = result_for(stanza)
        if answer.payload is not None:
            reply.addChild(answer.payload)
        self.route(reply)
        for action in answer.after:
            action()

    def _failed(self, failure: Any, stanza: domish.Element) -> None:
        if failure.check(StanzaError):
            self.refuse(stanza, failure.value)
        else:
            log.failure("a {kind} request failed", failure, kind=self.kind)
            self.refuse(stanza, StanzaError("internal-server-error"))
