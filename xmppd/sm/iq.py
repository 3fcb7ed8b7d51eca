"""IQ handling: delivery to full JIDs and the server's own iq handlers.

Handled by the server itself: service discovery (XEP-0030) for the server and
on behalf of users' bare JIDs, software version (XEP-0092), ping (XEP-0199),
entity time (XEP-0202), in-band password change and account removal
(XEP-0077, authenticated users only, when registration is enabled) and the
roster (RFC 6121 section 2, delegated to :mod:`xmppd.sm.roster`).
Anything else gets ``service-unavailable``; results and errors addressed to
the server or a bare JID are dropped (RFC 6120 8.2.3, 8.3.1).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish
from wokkel import disco

import xmppd
from xmppd.logs import logger
from xmppd.sm.stanzas import child_elements, presence, result_for
from xmppd.storage.accounts import (
    AccountError,
    InvalidPassword,
    InvalidUsername,
    NoSuchAccount,
    prepare_username,
)
from xmppd.storage.roster import NS_ROSTER

if TYPE_CHECKING:
    from xmppd.sm.manager import SessionManager

log = logger(__name__)

NS_DISCO_INFO = disco.NS_DISCO_INFO
NS_DISCO_ITEMS = disco.NS_DISCO_ITEMS
NS_VERSION = "jabber:iq:version"
NS_PING = "urn:xmpp:ping"
NS_TIME = "urn:xmpp:time"
NS_REGISTER = "jabber:iq:register"
FEATURE_MSGOFFLINE = "msgoffline"

DISCO_INFO = (NS_DISCO_INFO, "query")
DISCO_ITEMS = (NS_DISCO_ITEMS, "query")
ROSTER = (NS_ROSTER, "query")
VERSION = (NS_VERSION, "query")
PING = (NS_PING, "ping")
TIME = (NS_TIME, "time")
REGISTER = (NS_REGISTER, "query")


class IQHandler:
    """Routes iqs for the local domain and answers those for the server."""

    def __init__(self, manager: SessionManager):
        self.manager = manager
        self._server = {
            DISCO_INFO: self._server_info,
            DISCO_ITEMS: self._server_items,
            VERSION: self._version,
            PING: self._ping,
            TIME: self._time,
            REGISTER: self._register,
        }
        self._get_only = {DISCO_INFO, DISCO_ITEMS, VERSION, PING, TIME}

    def server_features(self) -> list[str]:
        """The features the server advertises in disco#info."""
        features = [
            NS_DISCO_INFO,
            NS_DISCO_ITEMS,
            NS_ROSTER,
            NS_VERSION,
            NS_PING,
            NS_TIME,
            FEATURE_MSGOFFLINE,
        ]
        if self.manager.registration_enabled:
            features.append(NS_REGISTER)
        return features

    def handle(self, stanza: domish.Element, sender: jid.JID, recipient: jid.JID | None) -> None:
        """Deliver, answer or refuse an iq addressed to the local domain."""
        manager = self.manager
        kind = stanza.getAttribute("type")
        if kind == "result" or kind == "error":
            if recipient is not None and recipient.user and recipient.resource is not None:
                state = manager.state_for(recipient)
                if state is not None:
                    manager.deliver(state, stanza)
            return
        if kind != "get" and kind != "set":
            manager.reply_error(stanza, "bad-request", "iq type must be get, set, result or error")
            return
        if recipient is not None and recipient.user and recipient.resource is not None:
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
        child = children[0]
        key = (child.uri, child.name)
        if kind == "set" and key in self._get_only:
            manager.reply_error(stanza, "bad-request")
            return
        local_user = sender.host == manager.domain and bool(sender.user)
        if recipient is None:
            # No 'to': processed on behalf of the sender's account (RFC 6120 10.3.3).
            if not local_user:
                manager.reply_error(stanza, "service-unavailable")
            elif key == ROSTER:
                manager.roster.handle(stanza, sender, child)
            elif key in (DISCO_INFO, DISCO_ITEMS):
                self._for_account(stanza, sender, sender, child)
            elif key in self._server:
                self._server[key](stanza, sender, child)
            else:
                manager.reply_error(stanza, "service-unavailable")
        elif not recipient.user:
            handler = self._server.get(key)
            if handler is None:
                manager.reply_error(stanza, "service-unavailable")
            else:
                handler(stanza, sender, child)
        elif key == ROSTER:
            if local_user and recipient.user == sender.user:
                manager.roster.handle(stanza, sender, child)
            else:
                manager.reply_error(stanza, "forbidden")
        elif key in (DISCO_INFO, DISCO_ITEMS, PING):
            self._for_account(stanza, sender, recipient, child)
        else:
            manager.reply_error(stanza, "service-unavailable")

    # -- the server's own handlers ---------------------------------------------

    def _server_info(self, stanza: domish.Element, sender: jid.JID, query: domish.Element) -> None:
        if query.getAttribute("node"):
            self.manager.reply_error(stanza, "item-not-found")
            return
        info = disco.DiscoInfo()
        info.append(disco.DiscoIdentity("server", "im", "xmppd"))
        for feature in self.server_features():
            info.append(disco.DiscoFeature(feature))
        self._answer(stanza, info.toElement())

    def _server_items(self, stanza: domish.Element, sender: jid.JID, query: domish.Element) -> None:
        if query.getAttribute("node"):
            self.manager.reply_error(stanza, "item-not-found")
            return
        items = disco.DiscoItems()
        for address in self.manager.services():
            items.append(disco.DiscoItem(jid.JID(address)))
        self._answer(stanza, items.toElement())

    def _version(self, stanza: domish.Element, sender: jid.JID, query: domish.Element) -> None:
        element = domish.Element((NS_VERSION, "query"))
        element.addElement("name", content="xmppd")
        element.addElement("version", content=xmppd.__version__)
        self._answer(stanza, element)

    def _ping(self, stanza: domish.Element, sender: jid.JID, child: domish.Element) -> None:
        self._answer(stanza, None)

    def _time(self, stanza: domish.Element, sender: jid.JID, child: domish.Element) -> None:
        now = datetime.fromtimestamp(self.manager.reactor.seconds(), UTC)
        element = domish.Element((NS_TIME, "time"))
        element.addElement("tzo", content="+00:00")
        element.addElement("utc", content=now.strftime("%Y-%m-%dT%H:%M:%SZ"))
        self._answer(stanza, element)

    def _answer(self, stanza: domish.Element, payload: domish.Element | None) -> None:
        reply = result_for(stanza)
        if payload is not None:
            reply.addChild(payload)
        self.manager.route(reply)

    # -- on behalf of a user's bare JID --------------------------------------------

    def _for_account(
        self,
        stanza: domish.Element,
        sender: jid.JID,
        account: jid.JID,
        child: domish.Element,
    ) -> None:
        d = self._answer_for_account(stanza, sender, account, child)
        self.manager.guard(d, stanza)

    @defer.inlineCallbacks
    def _answer_for_account(
        self, stanza: domish.Element, sender: jid.JID, account: jid.JID, child: domish.Element
    ):
        manager = self.manager
        user = account.user
        allowed = sender.host == manager.domain and sender.user == user
        if not allowed:
            exists = yield manager.user_exists(user)
            if exists:
                roster = yield manager.get_roster(user)
                item = roster.get(sender.userhost())
                allowed = item is not None and item.subscribed_from
        if not allowed:
            manager.reply_error(stanza, "service-unavailable")
            return
        key = (child.uri, child.name)
        if key == PING:
            self._answer(stanza, None)
        elif child.getAttribute("node"):
            manager.reply_error(stanza, "item-not-found")
        elif key == DISCO_INFO:
            info = disco.DiscoInfo()
            info.append(disco.DiscoIdentity("account", "registered"))
            info.append(disco.DiscoFeature(NS_DISCO_INFO))
            info.append(disco.DiscoFeature(NS_DISCO_ITEMS))
            self._answer(stanza, info.toElement())
        else:
            self._answer(stanza, disco.DiscoItems().toElement())

    # -- in-band registration for authenticated users (XEP-0077) ---------------------

    def _register(self, stanza: domish.Element, sender: jid.JID, query: domish.Element) -> None:
        # Password change and account removal are always open to a logged-in
        # user; registration.enabled only governs creating accounts (c2s).
        manager = self.manager
        if sender.host != manager.domain or not sender.user:
            manager.reply_error(stanza, "not-allowed")
            return
        if stanza.getAttribute("type") == "get":
            element = domish.Element((NS_REGISTER, "query"))
            element.addElement("registered")
            element.addElement("username", content=sender.user)
            element.addElement("password")
            self._answer(stanza, element)
            return
        fields = {child.name: child for child in query.elements() if child.uri == NS_REGISTER}
        if "remove" in fields:
            manager.run(sender.user, stanza, self._remove_account, stanza, sender)
            return
        username = fields.get("username")
        password = fields.get("password")
        if username is None or password is None or not str(password):
            manager.reply_error(stanza, "bad-request", "username and password are required")
            return
        try:
            same_user = prepare_username(str(username).strip()) == sender.user
        except InvalidUsername:
            same_user = False
        if not same_user:
            manager.reply_error(stanza, "not-allowed", "you can only change your own password")
            return
        manager.guard(self._change_password(stanza, sender, str(password)), stanza)

    @defer.inlineCallbacks
    def _change_password(self, stanza: domish.Element, sender: jid.JID, password: str):
        try:
            yield self.manager.accounts.set_password(sender.user, password)
        except InvalidPassword as e:
            self.manager.reply_error(stanza, "not-acceptable", str(e))
            return
        except NoSuchAccount:
            self.manager.reply_error(stanza, "item-not-found")
            return
        log.info("{user} changed their password", user=sender.user)
        self._answer(stanza, None)

    @defer.inlineCallbacks
    def _remove_account(self, stanza: domish.Element, sender: jid.JID):
        """Cancel the account: presence and subscriptions wound down, sessions closed."""
        manager = self.manager
        user = sender.user
        owner = sender.userhost()
        states = manager.sessions_of(user)
        for state in states:
            manager._detach(state)
        for state in states:
            if state.available or state.directed:
                yield manager.presence.broadcast_unavailable(
                    state, presence(state.full, kind="unavailable"), echo=False
                )
        yield manager.subscriptions.cancel_all(user, owner)
        try:
            yield manager.accounts.delete(user)
        except AccountError:
            log.info("account {user} was already gone", user=user)
        manager.drop_roster_cache(user)
        log.info("account {user} removed in-band", user=user)
        reply = result_for(stanza)
        for state in states:
            if state.full == sender.full():
                try:
                    state.session.send(reply)
                except Exception:
                    log.failure("sending the removal result to {jid} failed", jid=state.full)
        for state in states:
            try:
                state.session.close("not-authorized")
            except Exception:
                log.failure("closing the session of {jid} failed", jid=state.full)
