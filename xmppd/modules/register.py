"""In-band registration (XEP-0077) for logged-in users: password change, removal.

Creating accounts before authentication is a stream feature of the client
connection (:mod:`xmppd.c2s.registration`), offered when ``[registration]
enabled`` is true and this module is not disabled. Changing one's password
and cancelling one's account are always open to a logged-in user.
"""

from dataclasses import dataclass

from twisted.internet import defer
from twisted.words.xish import domish

from xmppd.config import setting
from xmppd.errors import StanzaError
from xmppd.logs import logger
from xmppd.module import ALREADY_ANSWERED, IQRequest, Module, Point, Scope, iq_handler
from xmppd.sm.stanzas import presence, result_for
from xmppd.storage.accounts import (
    AccountError,
    InvalidPassword,
    InvalidUsername,
    NoSuchAccount,
    prepare_username,
)

log = logger(__name__)

NS_REGISTER = "jabber:iq:register"


@dataclass(frozen=True)
class RegistrationSettings:
    """``[registration]``: in-band account creation."""

    enabled: bool = setting(False, "in-band registration (XEP-0077): anyone who can connect "
                            "may create an account", live=True)


class Register(Module):
    """jabber:iq:register for authenticated users (XEP-0077 3.2, 3.3)."""

    name = "register"
    section = "registration"
    settings = RegistrationSettings

    def disco_features(self, scope: Scope) -> list[str]:
        """jabber:iq:register on the server while account creation is open."""
        if scope is Scope.SERVER and self.config.enabled:
            return [NS_REGISTER]
        return []

    @iq_handler("get", NS_REGISTER, "query", Scope.SERVER)
    def form(self, request: IQRequest) -> domish.Element:
        """A logged-in user's registration: already registered, as whom."""
        sender = self._local_user(request)
        element = domish.Element((NS_REGISTER, "query"))
        element.addElement("registered")
        element.addElement("username", content=sender.user)
        element.addElement("password")
        return element

    @iq_handler("set", NS_REGISTER, "query", Scope.SERVER)
    def change(self, request: IQRequest) -> defer.Deferred | None:
        """Change one's own password, or cancel one's account."""
        sender = self._local_user(request)
        fields = {c.name: c for c in request.payload.elements() if c.uri == NS_REGISTER}
        if "remove" in fields:
            sessions = self.server.sessions
            return sessions.queues.run(sender.user, self._remove_account, request)
        username = fields.get("username")
        password = fields.get("password")
        if username is None or password is None or not str(password):
            raise StanzaError("bad-request", "username and password are required")
        try:
            same_user = prepare_username(str(username).strip()) == sender.user
        except InvalidUsername:
            same_user = False
        if not same_user:
            raise StanzaError("not-allowed", "you can only change your own password")
        return self._change_password(sender.user, str(password))

    def _local_user(self, request: IQRequest):
        sender = request.sender
        if sender.host != self.server.domain or not sender.user:
            raise StanzaError("not-allowed")
        return sender

    @defer.inlineCallbacks
    def _change_password(self, user: str, password: str):
        try:
            yield self.server.accounts.set_password(user, password)
        except InvalidPassword as e:
            raise StanzaError("not-acceptable", str(e)) from None
        except NoSuchAccount:
            raise StanzaError("item-not-found") from None
        log.info("{user} changed their password", user=user)

    @defer.inlineCallbacks
    def _remove_account(self, request: IQRequest):
        """Cancel the account: presence and subscriptions wound down, sessions closed.

        The result goes straight to the requesting resource before its
        stream is closed (so it is sent here, not by the iq boundary).
        """
        manager = self.server.sessions
        sender = request.sender
        user = sender.user
        states = manager.sessions_of(user)
        for state in states:
            manager._forget(state)
        for state in states:
            if state.available or state.directed:
                yield manager.presence.broadcast_unavailable(
                    state, presence(state.full, kind="unavailable"), echo=False
                )
        yield manager.subscriptions.cancel_all(user, sender.userhost())
        try:
            yield self.server.accounts.delete(user)
        except AccountError:
            log.info("account {user} was already gone", user=user)
        manager.drop_roster_cache(user)
        self.server.modules.fire(Point.ACCOUNT_DELETED, user)
        log.info("account {user} removed in-band", user=user)
        reply = result_for(request.stanza)
        for state in states:
            if state.full == sender.full():
                try:
                    state.write(reply)
                except Exception:
                    log.failure("sending the removal result to {jid} failed", jid=state.full)
        for state in states:
            try:
                state.close("not-authorized")
            except Exception:
                log.failure("closing the session of {jid} failed", jid=state.full)
        return ALREADY_ANSWERED
