"""IQ routing for the local domain: to sessions, or to the modules' handlers.

An iq get/set for a full JID goes to that resource (RFC 6120 10.5.3.1);
for the server or a user's bare JID, to the module that registered a
handler for its payload in that scope (:class:`~xmppd.module.ModuleHost`),
with no 'to' meaning the sender's own account (RFC 6120 10.3.3), falling
back to the server scope. Nobody handles it: ``service-unavailable``, in
this one place (``bad-request`` when only the other iq type is handled).
Results and errors go first to the request of the server's own they
answer (:meth:`~xmppd.sm.manager.SessionManager.request`); others addressed
to the server or a bare JID are dropped (RFC 6120 8.2.3, 8.3.1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from xmppd.errors import NS_STANZAS, StanzaError
from xmppd.module import IQRequest, Scope
from xmppd.sm.stanzas import child_elements

if TYPE_CHECKING:
    from xmppd.sm.manager import SessionManager


def error_from_reply(stanza: domish.Element) -> StanzaError:
    """The :class:`StanzaError` an error reply carries (condition, type, text).

    ``undefined-condition`` when the reply names no defined condition.
    """
    condition, kind, text = "undefined-condition", None, None
    for child in stanza.elements():
        if child.name != "error":
            continue
        kind = child.getAttribute("type")
        for detail in child.elements():
            if detail.uri != NS_STANZAS:
                continue
            if detail.name == "text":
                text = str(detail)
            else:
                condition = detail.name
        break
    return StanzaError(condition, text, type=kind)


class IQHandler:
    """Routes iqs for the local domain to sessions or module handlers."""

    def __init__(self, manager: SessionManager):
        self.manager = manager

    def handle(self, stanza: domish.Element, sender: jid.JID, recipient: jid.JID | None) -> None:
        """Deliver, answer or refuse an iq addressed to the local domain."""
        manager = self.manager
        kind = stanza.getAttribute("type")
        to_resource = recipient is not None and recipient.user and recipient.resource is not None
        if kind == "result" or kind == "error":
            if manager.answer(stanza, sender, recipient):
                return
            if to_resource:
                state = manager.state_for(recipient)
                if state is not None:
                    manager.deliver(state, stanza)
            return
        if kind != "get" and kind != "set":
            manager.reply_error(stanza, "bad-request", "iq type must be get, set, result or error")
            return
        if to_resource:
            state = manager.state_for(recipient)
            if state is not None:
                manager.deliver(state, stanza)
            else:
                manager.reply_error(stanza, "service-unavailable")
            return
        children = child_elements(stanza)
        if len(children) != 1:
            manager.reply_error(stanza, "bad-request", "an iq get/set has exactly one child")
            return
        payload = children[0]
        modules = manager.modules
        if recipient is None:
            if sender.host != manager.domain or not sender.user:
                manager.reply_error(stanza, "service-unavailable")
                return
            scope, account = Scope.ACCOUNT, sender.user
            handler = modules.iq_handler(kind, payload, scope)
            if handler is None and not modules.handles(payload, scope):
                scope, account = Scope.SERVER, None
                handler = modules.iq_handler(kind, payload, scope)
        elif recipient.user:
            scope, account = Scope.ACCOUNT, recipient.user
            handler = modules.iq_handler(kind, payload, scope)
        else:
            scope, account = Scope.SERVER, None
            handler = modules.iq_handler(kind, payload, scope)
        if handler is None:
            condition = "bad-request" if modules.handles(payload, scope) else "service-unavailable"
            manager.reply_error(stanza, condition)
            return
        request = IQRequest(stanza, sender, recipient, payload, scope, account)
        manager.guard(modules.answer_iq(handler, request, manager.route), None)
