"""Stanza errors: one exception type and one rule for the error reply.

Handlers anywhere in the server (session manager modules, the MUC service,
its rooms) raise :class:`StanzaError`; one boundary per service catches it
and answers with :func:`error_reply`. Anything else a handler raises is a
bug: the boundary logs it and answers ``internal-server-error``.

The rule for what an error reply carries (RFC 6120 8.3.1 lets the server
choose): the original stanza's name, ``id`` and type ``error``, its
addresses swapped, and the ``<error/>`` element with the legacy ``code``
attribute and, where the error says so, ``by``. **Never the original
payload**: a join presence carries the room password, a registration or
configuration form a password or room secret, a message its private text,
and none of them may travel back through another hop or into a log.
Stanzas that must not be answered (errors, iq results) get no reply.
"""

from __future__ import annotations

from twisted.words.protocols.jabber import error
from twisted.words.xish import domish

NS_STANZAS = error.NS_XMPP_STANZAS

#: Conditions Twisted's table lacks or types differently from RFC 6120 8.3.3.
_TYPES = {"gone": "cancel", "policy-violation": "modify", "undefined-condition": "cancel"}
_CODES = {"policy-violation": "406"}


def must_not_answer(stanza: domish.Element) -> bool:
    """True for stanzas that must never get an error reply (RFC 6120 8.3.1)."""
    kind = stanza.getAttribute("type")
    if kind == "error":
        return True
    return stanza.name == "iq" and kind == "result"


class StanzaError(error.StanzaError):
    """A stanza error to answer a request with (RFC 6120 8.3).

    ``by`` names the entity that generated the error (XEP-0045 rooms set
    it); ``type`` defaults to the condition's type from RFC 6120.
    """

    def __init__(
        self,
        condition: str,
        text: str | None = None,
        *,
        type: str | None = None,  # noqa: A002 - Twisted's name for it
        by: str | None = None,
        app_condition: domish.Element | None = None,
    ):
        super().__init__(
            condition, type=type or _TYPES.get(condition), text=text, appCondition=app_condition
        )
        if self.code is None:
            self.code = _CODES.get(condition)
        self.by = by
        self.args = (condition if text is None else f"{condition}: {text}",)

    def __str__(self) -> str:
        return self.args[0]

    @property
    def error_type(self) -> str:
        """The error type (``cancel``, ``modify``, ``auth``, ``wait``)."""
        return self.type

    def getElement(self) -> domish.Element:  # noqa: N802 - Twisted's API
        """The ``<error/>`` element, with ``by`` when set."""
        element = super().getElement()
        if self.by:
            element["by"] = self.by
        return element

    element = getElement

    def reply_to(self, stanza: domish.Element) -> domish.Element | None:
        """The error reply to ``stanza`` (None when no reply is allowed)."""
        return error_reply(stanza, self)

    toResponse = reply_to  # noqa: N815 - Twisted's name; echoes nothing either


def error_reply(stanza: domish.Element, err: StanzaError) -> domish.Element | None:
    """The error reply to a stanza by the module rule: never its payload.

    None for stanzas that must not be answered. A stanza without 'from' (a
    client's, before it is bound) gets a reply without 'to'.
    """
    if must_not_answer(stanza):
        return None
    reply = domish.Element((None, stanza.name))
    reply["type"] = "error"
    sender = stanza.getAttribute("from")
    if sender:
        reply["to"] = sender
    to = stanza.getAttribute("to")
    if to:
        reply["from"] = to
    stanza_id = stanza.getAttribute("id")
    if stanza_id is not None:
        reply["id"] = stanza_id
    reply.addChild(err.getElement())
    return reply


def bounce(
    stanza: domish.Element, condition: str, text: str | None = None
) -> domish.Element | None:
    """The error reply to route back for a condition (see :func:`error_reply`).

    None also for a stanza without 'from': there is nobody to route it to.
    """
    if not stanza.getAttribute("from"):
        return None
    return error_reply(stanza, StanzaError(condition, text))
