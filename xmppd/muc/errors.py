"""Stanza errors of the MUC service.

Room code raises :class:`MUCError`; the service turns it into an error reply
with :func:`error_reply`. Every error carries the legacy ``code`` attribute
that XEP-0045's examples show, and ``by`` names the room (or the service)
that generated it. Error replies never echo the offending stanza's children:
a join presence may carry the room password.
"""

from __future__ import annotations

from twisted.words.xish import domish

from xmppd.router import must_not_answer

NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

#: condition -> (default error type, legacy code)
CONDITIONS: dict[str, tuple[str, str]] = {
    "bad-request": ("modify", "400"),
    "conflict": ("cancel", "409"),
    "feature-not-implemented": ("cancel", "501"),
    "forbidden": ("auth", "403"),
    "gone": ("cancel", "302"),
    "internal-server-error": ("wait", "500"),
    "item-not-found": ("cancel", "404"),
    "jid-malformed": ("modify", "400"),
    "not-acceptable": ("modify", "406"),
    "not-allowed": ("cancel", "405"),
    "not-authorized": ("auth", "401"),
    "policy-violation": ("modify", "406"),
    "recipient-unavailable": ("wait", "404"),
    "registration-required": ("auth", "407"),
    "resource-constraint": ("wait", "500"),
    "service-unavailable": ("cancel", "503"),
    "undefined-condition": ("cancel", "500"),
    "unexpected-request": ("wait", "400"),
}


class MUCError(Exception):
    """A stanza error to answer a request with (condition per RFC 6120 8.3.3)."""

    def __init__(self, condition: str, text: str | None = None, *, error_type: str | None = None):
        super().__init__(condition if text is None else f"{condition}: {text}")
        default_type, code = CONDITIONS.get(condition, ("cancel", "500"))
        self.condition = condition
        self.text = text
        self.error_type = error_type or default_type
        self.code = code

    def element(self, by: str | None = None) -> domish.Element:
        """The ``<error/>`` element for this error."""
        error = domish.Element((None, "error"))
        error["type"] = self.error_type
        error["code"] = self.code
        if by:
            error["by"] = by
        error.addElement((NS_STANZAS, self.condition))
        if self.text:
            error.addElement((NS_STANZAS, "text"), content=self.text)
        return error


def error_reply(
    stanza: domish.Element, error: MUCError, by: str | None = None
) -> domish.Element | None:
    """The error reply to ``stanza`` (None when no reply is allowed)."""
    if must_not_answer(stanza) or not stanza.getAttribute("from"):
        return None
    reply = domish.Element((None, stanza.name))
    reply["type"] = "error"
    reply["to"] = stanza["from"]
    if stanza.getAttribute("to"):
        reply["from"] = stanza["to"]
    if stanza.getAttribute("id") is not None:
        reply["id"] = stanza["id"]
    reply.addChild(error.element(by))
    return reply
