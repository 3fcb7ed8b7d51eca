"""Pre-authentication in-band registration (XEP-0077) on client streams.

Before SASL, a client may ask for the registration form (``iq get``) and
create an account (``iq set`` with username and password). Account changes
after authentication (password change, removal) belong to the session
manager, not here.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish

from xmppd.c2s.bind import error_reply, payload
from xmppd.logs import logger
from xmppd.storage.accounts import AccountExists, InvalidPassword, InvalidUsername

NS_REGISTER = "jabber:iq:register"
NS_REGISTER_FEATURE = "http://jabber.org/features/iq-register"

INSTRUCTIONS = "Choose a username and password to register with this server."

log = logger(__name__)


def is_register_request(iq: domish.Element) -> bool:
    """True for an iq get/set whose payload is a jabber:iq:register query."""
    if iq.getAttribute("type") not in ("get", "set"):
        return False
    child = payload(iq)
    return child is not None and child.uri == NS_REGISTER and child.name == "query"


def _field(query: domish.Element, name: str) -> str | None:
    for child in query.elements():
        if child.uri == NS_REGISTER and child.name == name:
            return str(child)
    return None


class PreAuthRegistration:
    """Answers registration iqs on one unauthenticated stream.

    ``max_accounts`` bounds how many accounts one stream may create.
    """

    def __init__(self, accounts: Any, max_accounts: int = 1):
        self.accounts = accounts
        self.max_accounts = max_accounts
        self.created = 0

    def handle(self, iq: domish.Element) -> defer.Deferred:
        """Fire with the reply iq for a registration request."""
        if not iq.getAttribute("id"):
            return defer.succeed(error_reply(iq, "bad-request", "iq needs an id"))
        if iq.getAttribute("type") == "get":
            return defer.succeed(self.form(iq))
        return self._register(iq)

    def form(self, iq: domish.Element) -> domish.Element:
        """The registration form: instructions, username and password fields."""
        reply = xmlstream.toResponse(iq, "result")
        query = reply.addElement((NS_REGISTER, "query"))
        query.addElement("instructions", content=INSTRUCTIONS)
        query.addElement("username")
        query.addElement("password")
        return reply

    @defer.inlineCallbacks
    def _register(self, iq: domish.Element):
        query = payload(iq)
        if _field(query, "remove") is not None:
            return error_reply(iq, "not-allowed", "log in to remove an account")
        username = _field(query, "username")
        password = _field(query, "password")
        if not username or not password:
            return error_reply(iq, "bad-request", "username and password are required")
        if self.created >= self.max_accounts:
            return error_reply(iq, "not-allowed", "one account per connection")
        try:
            yield self.accounts.create(username, password)
        except AccountExists:
            return error_reply(iq, "conflict", "that username is taken")
        except InvalidUsername:
            return error_reply(iq, "not-acceptable", "invalid username")
        except InvalidPassword as e:
            return error_reply(iq, "not-acceptable", str(e))
        self.created += 1
        log.info("registered account {username}", username=username)
        return xmlstream.toResponse(iq, "result")
