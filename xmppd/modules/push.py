"""Push Notifications (XEP-0357, ``urn:xmpp:push:0``): wake a sleeping app through its app server.

A mobile client registers its app server (a pubsub service, e.g. a
component of this server or, with federation, Conversations' or Monal's)
with ``<iq type='set'><enable xmlns='urn:xmpp:push:0' jid='APP SERVER'
node='NODE'>`` and optionally an XEP-0004 ``publish-options`` form (the
device token and secret the app server wants back); ``<disable jid=...
[node=...]/>`` removes one registration or every one with that app server.
Only the account's own resources may do either (others get
``service-unavailable``, as for every per-account setting); a missing or
malformed ``jid`` gets ``bad-request`` / ``jid-malformed``; a form larger
than 4 KiB or one more registration than ``[push] max_registrations``
gets ``not-acceptable``. Registrations are stored and go with the account;
the account's disco#info lists ``urn:xmpp:push:0``.

**When the server pushes**: when something important reaches a user none
of whose sessions is awake — there is none, or each is detached from its
connection or told the server it is inactive (XEP-0352, the ``csi``
module): a message with a body or other content a person waits for (the
``csi`` module's rules: a call, an invitation, an encrypted message, a
groupchat message that mentions the user's nick), also when it goes to
offline storage; and a subscription request. Chat states, receipts and
headlines never wake anybody.

**What is pushed**: to each registration, an iq set from the user's bare
JID to the app server: ``<pubsub><publish node=NODE><item><notification
xmlns='urn:xmpp:push:0'>`` with the ``urn:xmpp:push:summary`` form:
``message-count`` (messages pushed since a session of the user was last
awake), ``pending-subscription-count`` for subscription requests, and,
only when configured (``[push] include_sender`` / ``include_body``, off
by default as in Prosody's mod_cloud_notify, so no content leaves for a
third party), ``last-message-sender`` and ``last-message-body``; then the
registration's ``<publish-options/>``.

**Once per burst**: the first notification for a user goes at once;
what follows within ``[push] burst_window`` seconds is merged into one
more at the end of the window, with the latest count (a phone is woken
once for a flood of messages). Counting and merging start again when a
session of the user is awake.

**Failures**: an error reply or no answer within 30 s counts as a failure
of that registration; the notification is tried again after
``[push] retry_delay`` seconds (doubling); after ``[push] max_failures``
failures in a row the registration is removed (the client registers again
at its next login), and logged. A success resets the count.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from xmppd.addresses import parse_jid
from xmppd.config import setting
from xmppd.errors import StanzaError
from xmppd.logs import logger
from xmppd.module import IQRequest, Module, Point, Scope, hook, iq_handler
from xmppd.modules.csi import NS_CARBONS, mentions, message_is_important
from xmppd.sm.session import Session
from xmppd.sm.stanzas import deserialise
from xmppd.stanza import serialize

log = logger(__name__)

NS_PUSH = "urn:xmpp:push:0"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_DATA = "jabber:x:data"
SUMMARY = "urn:xmpp:push:summary"
PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
#: Largest publish-options form kept with a registration (serialised).
MAX_OPTIONS_BYTES = 4096

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS push_registrations (
        account TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
        service TEXT NOT NULL,
        node TEXT NOT NULL,
        options TEXT,
        PRIMARY KEY (account, service, node)
    )
    """,
)


@dataclass
class PushSettings:
    """``[push]``: push notifications (XEP-0357)."""

    include_body: bool = setting(
        False, "send the message body to the app server (a third party)", live=True)
    include_sender: bool = setting(
        False, "send the sender's JID to the app server", live=True)
    max_registrations: int = setting(
        10, "app server registrations (devices) per account", minimum=1, live=True)
    max_failures: int = setting(
        3, "failed notifications in a row before a registration is removed", minimum=1,
        live=True)
    retry_delay: float = setting(
        10.0, "seconds before a failed notification is tried again (doubling)", positive=True,
        live=True)
    burst_window: float = setting(
        30.0, "seconds during which further notifications for a user are merged into one",
        minimum=0, live=True)


@dataclass
class Registration:
    """One app server registration: where to publish and what to add."""

    service: str
    node: str
    options: str | None = None
    failures: int = field(default=0, compare=False)


@dataclass
class Summary:
    """What one notification says (the ``urn:xmpp:push:summary`` form's values)."""

    messages: int = 0
    subscriptions: int = 0
    sender: str | None = None
    body: str | None = None


@dataclass
class Burst:
    """When a user's last notification went, and the merged one waiting for the window's end."""

    sent: float
    pending: Summary | None = None
    call: Any = None


class PushNotifications(Module):
    """Registrations of app servers, and the notifications sent to them."""

    name = "push"
    features = {Scope.ACCOUNT: [NS_PUSH]}
    schema = SCHEMA
    settings = PushSettings

    def __init__(self, server, settings=None):
        super().__init__(server, settings)
        #: Username -> (service, node) -> registration (users with any).
        self.registrations: dict[str, dict[tuple[str, str], Registration]] = {}
        #: Username -> messages pushed since one of its sessions was awake.
        self.unread: dict[str, int] = {}
        #: Username -> its notifications' burst (while it sleeps).
        self.bursts: dict[str, Burst] = {}
        #: Messages pushed on their way to a session (not pushed again if it
        #: never takes them and they go to offline storage).
        self._pushed: weakref.WeakSet[domish.Element] = weakref.WeakSet()

    def startService(self) -> None:  # noqa: N802 - Twisted's API
        """Load every stored registration (queued after the table's creation)."""
        super().startService()
        d = self.server.database.query(
            "SELECT account, service, node, options FROM push_registrations")
        d.addCallback(self._loaded)
        self.server.sessions.guard(d, None)

    def _loaded(self, rows: list[tuple[str, str, str, str | None]]) -> None:
        for account, service, node, options in rows:
            self.registrations.setdefault(account, {})[(service, node)] = Registration(
                service, node, options)

    # -- the protocol ------------------------------------------------------------------

    @iq_handler("set", NS_PUSH, "enable", Scope.ACCOUNT)
    def enable(self, request: IQRequest):
        """Store a registration (replacing the options of the same app server and node)."""
        _owner_only(request)
        service, node = _target(request.payload, node_required=True)
        options = _options(request.payload)
        user = request.account
        current = self.registrations.get(user, {})
        if (service, node) not in current and len(current) >= self.config.max_registrations:
            raise StanzaError("not-acceptable", "too many push registrations; disable one first")
        d = self.server.database.execute(
            "INSERT OR REPLACE INTO push_registrations (account, service, node, options) "
            "SELECT username, ?, ?, ? FROM accounts WHERE username = ?",
            service, node, options, user)
        d.addCallback(lambda _: self.registrations.setdefault(user, {}).__setitem__(
            (service, node), Registration(service, node, options)))
        return d.addCallback(lambda _: None)

    @iq_handler("set", NS_PUSH, "disable", Scope.ACCOUNT)
    def disable(self, request: IQRequest):
        """Remove one registration (with ``node``) or all with that app server."""
        _owner_only(request)
        service, node = _target(request.payload, node_required=False)
        return self._remove(request.account, service, node).addCallback(lambda _: None)

    def _remove(self, user: str, service: str, node: str | None) -> defer.Deferred:
        current = self.registrations.get(user, {})
        for key in [k for k in current if k[0] == service and node in (None, k[1])]:
            del current[key]
        if not current:
            self.registrations.pop(user, None)
        if node is None:
            return self.server.database.execute(
                "DELETE FROM push_registrations WHERE account = ? AND service = ?", user, service)
        return self.server.database.execute(
            "DELETE FROM push_registrations WHERE account = ? AND service = ? AND node = ?",
            user, service, node)

    @hook(Point.ACCOUNT_DELETED)
    def account_deleted(self, username: str) -> None:
        """The rows went with the account; forget the memory of them."""
        self.registrations.pop(username, None)
        self._awake(username)

    # -- when to push ------------------------------------------------------------------

    def asleep(self, username: str) -> bool:
        """True when none of the user's sessions is awake (connected and active)."""
        csi = self.server.modules.get("csi")
        for session in self.server.sessions.sessions_of(username):
            if session.closed:
                continue
            if csi is None or not csi.is_inactive(session):
                return False
        return True

    @hook(Point.LOCAL_MESSAGE, priority=-50)
    def message(self, username: str, targets: list[Session], stanza: domish.Element) -> None:
        """A message reaches sessions of a user with registrations: push if all sleep."""
        if username not in self.registrations or not targets:
            return  # (no session takes it: MESSAGE_UNDELIVERED is next)
        if self.asleep(username) and self._important(username, targets, stanza):
            self._message_summary(username, stanza)
            self._pushed.add(stanza)

    @hook(Point.MESSAGE_UNDELIVERED, priority=50)
    def undelivered(self, username: str, stanza: domish.Element) -> None:
        """A message goes to offline storage: push it (storing goes on).

        Not again when it was pushed on its way to a detached session
        whose time ran out (stream management hands its unacknowledged
        messages to offline storage).
        """
        if stanza in self._pushed:
            return
        if username in self.registrations and self._important(username, [], stanza):
            self._message_summary(username, stanza)

    @hook(Point.INBOUND_STANZA, priority=-50)
    def inbound(self, stanza: domish.Element, sender: jid.JID, recipient: jid.JID) -> None:
        """A subscription request for a user with registrations who sleeps."""
        if stanza.name != "presence" or stanza.getAttribute("type") != "subscribe":
            return
        user = recipient.user
        if user in self.registrations and self.asleep(user):
            self.notify(user, Summary(messages=self.unread.get(user, 0), subscriptions=1,
                                      sender=sender.userhost()))

    @hook(Point.SESSION_BOUND)
    def session_bound(self, session: Session) -> None:
        """A session of the user is awake: the count starts again."""
        self._awake(session.username)

    @hook(Point.CLIENT_STANZA, priority=90)
    def client_stanza(self, session: Session, stanza: domish.Element) -> None:
        """The user is using a client: the count starts again."""
        if self.unread and session.username in self.unread:
            self._awake(session.username)

    def _awake(self, username: str) -> None:
        self.unread.pop(username, None)
        burst = self.bursts.pop(username, None)
        if burst is not None and burst.call is not None and burst.call.active():
            burst.call.cancel()

    def _important(self, username: str, targets: list[Session], stanza: domish.Element) -> bool:
        if stanza.getAttribute("type") == "error":
            return False  # a bounce of the user's own message wakes nobody
        csi = self.server.modules.get("csi")

        def mentioned(message: domish.Element, body: str) -> bool:
            if csi is not None:  # it knows the users' nicks in their rooms
                return any(csi.mentioned(session, message, body) for session in targets)
            return any(mentions(body, None, session.bare) for session in targets)

        return message_is_important(stanza, mentioned)

    def _message_summary(self, username: str, stanza: domish.Element) -> None:
        count = self.unread.get(username, 0) + 1
        self.unread[username] = count
        message = _unwrapped(stanza)
        body = next((str(c) for c in message.elements() if c.name == "body"), None)
        self.notify(username, Summary(messages=count, sender=message.getAttribute("from"),
                                      body=body))

    # -- pushing -----------------------------------------------------------------------

    def notify(self, username: str, summary: Summary) -> None:
        """Notify the user's registrations, once per burst.

        The first notification goes at once; what comes within
        ``[push] burst_window`` seconds after it is merged into one more
        notification at the end of the window (with the latest count).
        """
        now = self.server.reactor.seconds()
        window = self.config.burst_window
        burst = self.bursts.get(username)
        if burst is None or (burst.call is None and now - burst.sent >= window):
            self.bursts[username] = Burst(now)
            self._notify_now(username, summary)
            return
        burst.pending = summary  # the merged one says the latest
        if burst.call is None:
            burst.call = self.server.reactor.callLater(
                max(0.0, burst.sent + window - now), self._end_of_burst, username)

    def _end_of_burst(self, username: str) -> None:
        burst = self.bursts.get(username)
        if burst is None or burst.pending is None:
            return
        summary, burst.pending, burst.call = burst.pending, None, None
        burst.sent = self.server.reactor.seconds()
        self._notify_now(username, summary)

    def _notify_now(self, username: str, summary: Summary) -> None:
        for registration in list(self.registrations.get(username, {}).values()):
            self._send(username, registration, summary, self.config.retry_delay)

    def notification(self, username: str, registration: Registration,
                     summary: Summary) -> domish.Element:
        """The publish iq for one registration."""
        settings = self.config
        iq = domish.Element((None, "iq"))
        iq["type"] = "set"
        iq["from"] = f"{username}@{self.server.domain}"
        iq["to"] = registration.service
        pubsub = iq.addElement((NS_PUBSUB, "pubsub"))
        publish = pubsub.addElement("publish")
        publish["node"] = registration.node
        form = publish.addElement("item").addElement((NS_PUSH, "notification")).addElement(
            (NS_DATA, "x"))
        form["type"] = "submit"
        values = [("FORM_TYPE", SUMMARY), ("message-count", str(summary.messages))]
        if summary.subscriptions:
            values.append(("pending-subscription-count", str(summary.subscriptions)))
        if settings.include_sender and summary.sender:
            values.append(("last-message-sender", summary.sender))
        if settings.include_body and summary.body is not None:
            values.append(("last-message-body", summary.body))
        for var, value in values:
            field_element = form.addElement("field")
            field_element["var"] = var
            field_element.addElement("value", content=value)
        if registration.options:
            options = deserialise(registration.options)
            if options is not None:
                pubsub.addElement("publish-options").addChild(options)
        return iq

    def _send(self, username: str, registration: Registration, summary: Summary,
              delay: float) -> None:
        d = self.server.sessions.request(self.notification(username, registration, summary))
        d.addCallbacks(lambda _: setattr(registration, "failures", 0),
                       lambda f: self._failed(username, registration, summary, delay, f))

    def _failed(self, username: str, registration: Registration, summary: Summary,
                delay: float, reason: Any) -> None:
        current = self.registrations.get(username, {}).get(
            (registration.service, registration.node))
        if current is not registration:
            return  # disabled or replaced meanwhile
        registration.failures += 1
        if registration.failures >= self.config.max_failures:
            log.info("push: removing {user}'s registration with {service} after {n} failures "
                     "({why})", user=username, service=registration.service,
                     n=registration.failures, why=reason.getErrorMessage())
            self.server.sessions.guard(
                self._remove(username, registration.service, registration.node), None)
            return
        self.server.reactor.callLater(delay, self._retry, username, registration, summary,
                                      delay * 2)

    def _retry(self, username: str, registration: Registration, summary: Summary,
               delay: float) -> None:
        if self.registrations.get(username, {}).get(
                (registration.service, registration.node)) is registration:
            self._send(username, registration, summary, delay)


def _owner_only(request: IQRequest) -> None:
    if not request.from_owner:
        raise StanzaError("service-unavailable")


def _target(payload: domish.Element, node_required: bool) -> tuple[str, str | None]:
    service = payload.getAttribute("jid")
    if not service:
        raise StanzaError("bad-request", "the app server's 'jid' is missing")
    address = parse_jid(service)
    if address is None:
        raise StanzaError("jid-malformed", "the app server's 'jid' is not a JID")
    node = payload.getAttribute("node")
    if node_required and not node:
        raise StanzaError("bad-request", "the 'node' is missing")
    return address.full(), node


def _options(payload: domish.Element) -> str | None:
    for form in payload.elements(NS_DATA, "x"):
        if form.getAttribute("type") != "submit":
            raise StanzaError("bad-request", "publish-options are a form of type 'submit'")
        options = serialize(form)
        if len(options.encode("utf-8")) > MAX_OPTIONS_BYTES:
            raise StanzaError("not-acceptable", "the publish-options form is too large")
        return options
    return None


def _unwrapped(stanza: domish.Element) -> domish.Element:
    """The message itself, or the one a received carbon carries."""
    for child in stanza.elements(NS_CARBONS, "received"):
        for forwarded in child.elements():
            for message in forwarded.elements():
                if message.name == "message":
                    return message
    return stanza
