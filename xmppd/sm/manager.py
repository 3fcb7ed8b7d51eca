"""The session manager: the local domain's users, their resources and state.

The router hands every stanza addressed to the local domain to
:meth:`SessionManager.send`. The manager finds out whether it comes from one
of its own bound resources (then RFC 6121's outbound rules apply first, e.g.
presence broadcast and subscription bookkeeping) and then applies the inbound
rules for the addressee: delivery to sessions (RFC 6121 8.5), offline
storage, presence and subscription processing, server iq handlers.

The message path is synchronous and costs a couple of dict lookups. Anything
that needs the database runs through the addressee's (or sender's) serial
queue, which keeps each user's stanzas in order.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from xmppd.addresses import JID_ERRORS, parse_jid, stanza_domain
from xmppd.config import Config
from xmppd.errors import bounce
from xmppd.logs import logger
from xmppd.module import ModuleHost, Point, ServerContext
from xmppd.modules import enabled_modules
from xmppd.sm.iq import IQHandler
from xmppd.sm.messages import MessageHandler
from xmppd.sm.presence import PresenceHandler
from xmppd.sm.queue import SerialQueues
from xmppd.sm.requests import PendingRequests
from xmppd.sm.session import Session
from xmppd.sm.subscriptions import SubscriptionHandler
from xmppd.stanza import describe
from xmppd.storage.accounts import AccountStore
from xmppd.storage.roster import RosterItem, RosterStore, removal_element

log = logger(__name__)

_DELIVER_POINTS = {
    "message": Point.DELIVER_MESSAGE,
    "presence": Point.DELIVER_PRESENCE,
    "iq": Point.DELIVER_IQ,
}


class SessionManager(service.Service):
    """Serves the local domain: sessions, presence, rosters, messages, server iqs."""

    def __init__(
        self,
        config: Config,
        *,
        router: Any,
        database: Any,
        accounts: Any = None,
        reactor: Any = None,
        disco_items: Iterable[str] = (),
    ):
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.config = config
        self.domain = config.domain
        self.router = router
        self.database = database
        self.accounts = accounts if accounts is not None else AccountStore(database)
        self.roster_store = RosterStore(database)
        self.reactor = reactor
        self.disco_items = tuple(disco_items)
        self.server_jid = jid.JID(self.domain)
        self.queues = SerialQueues()
        self._users: dict[str, dict[str, Session]] = {}
        self._rosters: dict[str, dict[str, RosterItem]] = {}
        self._roster_versions: dict[str, int] = {}
        self._inflight: set[defer.Deferred] = set()
        self._idle_waiters: list[defer.Deferred] = []
        self._push_counter = 0
        #: The server's own iq requests awaiting their answers.
        self.requests = PendingRequests(self)
        self.messages = MessageHandler(self)
        self.presence = PresenceHandler(self)
        self.subscriptions = SubscriptionHandler(self)
        self.iq = IQHandler(self)
        context = ServerContext(
            domain=self.domain, reactor=reactor, router=router, database=database,
            accounts=self.accounts, sessions=self,
        )
        self.modules = ModuleHost(context, enabled_modules(config), config.settings_for)
        context.modules = self.modules

    # -- service ---------------------------------------------------------

    def startService(self) -> None:
        """Start the modules and serve the local domain."""
        super().startService()
        self.modules.startService()
        self.router.register(self.domain, self)

    def stopService(self):
        """Stop serving the domain; fires once pending processing is done."""
        super().stopService()
        self.router.unregister(self.domain, self)
        self.requests.cancel_all()
        self.modules.fire(Point.STOPPING)
        d = self.wait_idle()
        d.addCallback(lambda _: self.modules.stopService())
        return d

    # -- sessions --------------------------------------------------------

    def bind(self, connection: Any, username: str, resource: str | None) -> Session:
        """Bind a resource for a connection and return its new :class:`Session`.

        A missing or invalid resource is replaced by a generated one (RFC 6120
        7.7.2.2 lets the server pick). If the full JID is taken, the older
        session is closed with the stream error ``conflict``.
        """
        address = None
        if resource:
            try:
                address = jid.JID(tuple=(username, self.domain, resource))
            except JID_ERRORS:
                address = None
        if address is None or not address.resource:
            taken = self._users.get(username) or {}
            while address is None or not address.resource or address.resource in taken:
                generated = "xmppd-" + secrets.token_hex(6)
                address = jid.JID(tuple=(username, self.domain, generated))
        username = address.user
        sessions = self._users.setdefault(username, {})
        old = sessions.get(address.resource)
        if old is not None:
            log.info("resource conflict for {jid}: closing the older session", jid=old.full)
            self._forget(old)
            sessions = self._users.setdefault(username, {})
            try:
                old.close("conflict")
            except Exception:
                log.failure("closing the session of {jid} failed", jid=old.full)
            self._gone(old)
        session = Session(self, address, connection)
        sessions[address.resource] = session
        log.debug("bound {jid}", jid=session.full)
        self.modules.fire(Point.SESSION_BOUND, session)
        return session

    def unbind(self, session: Session, interrupted: bool = False) -> None:
        """Forget a session whose stream ended; broadcast unavailable if it was available.

        ``interrupted``: the connection went away without a closed stream;
        a module may then keep the session (``Point.SESSION_INTERRUPTED``).
        """
        if not session.bound:
            return
        if interrupted and self.modules.has_hooks(Point.SESSION_INTERRUPTED) and \
                self.modules.fire(Point.SESSION_INTERRUPTED, session):
            return
        if self.modules.has_hooks(Point.SESSION_CLOSING) and self.modules.fire(
                Point.SESSION_CLOSING, session):
            # A module handed on stanzas it held for the session (its logout,
            # say): they are processed in the user's queue, as it still is.
            session.detach()
            self.run(session.username, None, self._unbind_now, session)
            return
        self._unbind_now(session)

    def _unbind_now(self, session: Session) -> None:
        if session.bound:
            self._forget(session)
            self._gone(session)

    def _forget(self, state: Session) -> None:
        state.bound = False
        sessions = self._users.get(state.username)
        if sessions is not None and sessions.get(state.resource) is state:
            del sessions[state.resource]
            if not sessions:
                del self._users[state.username]
        self.requests.session_gone(state.full)

    def _gone(self, state: Session) -> None:
        self.run(state.username, None, self._session_ended, state)

    @defer.inlineCallbacks
    def _session_ended(self, state: Session):
        yield self.presence.session_ended(state)
        yield self.modules.fire_async(Point.SESSION_ENDED, state)

    def stream_features(self) -> list[tuple[str, str]]:
        """Stream features the enabled modules offer after authentication (ns, name)."""
        return self.modules.stream_features()

    def let_idle(self, session: Session) -> bool:
        """True when a silent client is not to be pinged (a module says it sleeps)."""
        return self.modules.has_hooks(Point.SESSION_IDLE) and self.modules.fire(
            Point.SESSION_IDLE, session)

    def nonza_handler(self, namespace: str | None, name: str, before_bind: bool = False) -> Any:
        """The module handler of a client's top-level non-stanza element, or None."""
        return self.modules.nonza_handler(namespace, name, before_bind)

    # -- lookups used by the handlers ---------------------------------------

    def state_for(self, address: jid.JID | None) -> Session | None:
        """The bound resource with that full JID, if any."""
        if address is None or address.resource is None or address.host != self.domain:
            return None
        sessions = self._users.get(address.user)
        if sessions is None:
            return None
        return sessions.get(address.resource)

    def all_sessions(self) -> list[Session]:
        """Every bound session of every user."""
        return [s for sessions in self._users.values() for s in sessions.values()]

    def sessions_of(self, username: str) -> list[Session]:
        """All bound resources of a user."""
        sessions = self._users.get(username)
        return list(sessions.values()) if sessions else []

    def available_of(self, username: str) -> list[Session]:
        """The user's available resources (those that sent available presence)."""
        sessions = self._users.get(username)
        if not sessions:
            return []
        return [s for s in sessions.values() if s.available]

    def is_online(self, username: str) -> bool:
        """True if the user has at least one bound resource."""
        return username in self._users

    def user_exists(self, username: str) -> defer.Deferred:
        """Fire with True if the account exists (no query when it is online)."""
        if username in self._users:
            return defer.succeed(True)
        return self.accounts.exists(username)

    def services(self) -> list[str]:
        """The server's disco#items: configured items plus routed subdomains (MUC, components)."""
        found = list(self.disco_items)
        suffix = "." + self.domain
        for domain in getattr(self.router, "routes", {}):
            if isinstance(domain, str) and domain.endswith(suffix) and domain not in found:
                found.append(domain)
        return sorted(found)

    def may_see_account(self, username: str | None, sender: jid.JID) -> defer.Deferred:
        """Fire with True if the sender is the account or a contact subscribed to its presence.

        False for accounts that do not exist (without saying so).
        """
        if not username:
            return defer.succeed(False)
        if sender.host == self.domain and sender.user == username:
            return defer.succeed(True)

        @defer.inlineCallbacks
        def check():
            exists = yield self.user_exists(username)
            if not exists:
                return False
            roster = yield self.get_roster(username)
            item = roster.get(sender.userhost())
            return item is not None and item.subscribed_from

        return check()

    def is_local(self, address: jid.JID) -> bool:
        """True if the JID is in the local domain."""
        return address.host == self.domain

    # -- delivery ----------------------------------------------------------

    def deliver(self, state: Session, stanza: domish.Element) -> None:
        """Write a stanza to one session (errors are logged, not raised).

        Modules hooked at the "about to deliver" points may drop it.
        """
        if not state.bound:
            return
        point = _DELIVER_POINTS.get(stanza.name)
        if point is not None and self.modules.has_hooks(point) and self.modules.fire(
            point, state, stanza
        ):
            return
        try:
            state.write(stanza)
        except Exception:
            log.failure("delivering to {jid} failed", jid=state.full)

    def route(self, stanza: domish.Element) -> None:
        """Send a stanza the session manager generated towards its 'to'.

        Local addressees are handled here directly with inbound rules only;
        anything else goes to the router.
        """
        to = stanza.getAttribute("to")
        try:
            if stanza.name == "presence" and self.modules.has_hooks(
                Point.ROUTE_PRESENCE
            ) and self.modules.fire(Point.ROUTE_PRESENCE, stanza):
                return
            if to is not None and stanza_domain(to) == self.domain:
                self._dispatch(stanza, outbound=False)
            else:
                self.router.route(stanza)
        except Exception:
            log.failure("routing {xml} failed", xml=describe(stanza))

    def reply_error(self, stanza: domish.Element, condition: str, text: str | None = None) -> None:
        """Answer a stanza with a stanza error (never an error or iq result)."""
        reply = bounce(stanza, condition, text)
        if reply is not None:
            sender = reply.getAttribute("from")
            if sender is not None and parse_jid(sender) is None:
                reply["from"] = self.domain
            self.route(reply)

    def next_id(self, prefix: str = "xmppd") -> str:
        """A fresh id for a stanza the server sends."""
        self._push_counter += 1
        return f"{prefix}-{self._push_counter}"

    # -- iq requests of the server's own -----------------------------------------

    def request(self, stanza: domish.Element, timeout: float = 30.0) -> defer.Deferred:
        """Send an iq get/set and fire with its answer (see :class:`PendingRequests`)."""
        return self.requests.send(stanza, timeout)

    def answer(self, stanza: domish.Element, sender: jid.JID, recipient: jid.JID | None) -> bool:
        """Hand an iq result/error to the request it answers; False if it answers none."""
        return self.requests.answer(stanza, sender, recipient)

    # -- entry points --------------------------------------------------------

    def send(self, stanza: domish.Element) -> None:
        """Handle a stanza the router delivers to the local domain."""
        try:
            self._dispatch(stanza, outbound=True)
        except Exception:
            log.failure("handling {xml} failed", xml=describe(stanza))
            self.reply_error(stanza, "internal-server-error")

    def undelivered(self, username: str, stanza: domish.Element) -> defer.Deferred:
        """A chat/normal message no session takes: offer it to the modules (offline storage).

        Runs in the user's queue. A message for an account that does not
        exist, or one no module took, is answered ``service-unavailable``
        (RFC 6121 8.5.2.2.1).
        """

        @defer.inlineCallbacks
        def offer():
            exists = yield self.user_exists(username)
            taken = exists and (
                yield self.modules.fire_async(Point.MESSAGE_UNDELIVERED, username, stanza)
            )
            if not taken:
                self.reply_error(stanza, "service-unavailable")

        return offer()

    def from_client(self, session: Session, stanza: domish.Element) -> None:
        """A stanza a local client sent (through :meth:`Session.receive`).

        Modules hooked at ``CLIENT_STANZA`` see it first. Presence to other
        domains (MUC rooms, remote contacts) is tracked as directed presence
        and subscription requests to remote contacts update the sender's
        roster; everything else is routed (stanzas for the local domain come
        back through :meth:`send`, where the same rules apply).
        """
        try:
            if self.modules.has_hooks(Point.CLIENT_STANZA) and self.modules.fire(
                Point.CLIENT_STANZA, session, stanza
            ):
                return
            to = stanza.getAttribute("to")
            if stanza.name == "presence" and to and stanza_domain(to) != self.domain:
                recipient = parse_jid(to)
                if session.bound and recipient is not None and recipient.host != self.domain:
                    self.presence.from_session(session, stanza, recipient)
                    return
            self.router.route(stanza)
        except Exception:
            log.failure("handling {xml} from a client failed", xml=describe(stanza))
            self.reply_error(stanza, "internal-server-error")

    def _dispatch(self, stanza: domish.Element, outbound: bool) -> None:
        sender_attr = stanza.getAttribute("from")
        sender = parse_jid(sender_attr)
        if sender is None and sender_attr is None and not outbound:
            sender = self.server_jid  # a reply of ours to a stanza that had no 'to'
        if sender is None:
            log.debug("dropping a stanza without a valid 'from': {xml}", xml=describe(stanza))
            return
        to = stanza.getAttribute("to")
        recipient = None
        if to is not None:
            recipient = parse_jid(to)
            if recipient is None:
                self.reply_error(stanza, "jid-malformed")
                return
            if recipient.host != self.domain:
                self.reply_error(stanza, "remote-server-not-found")
                return
        name = stanza.name
        state = self.state_for(sender) if outbound and name == "presence" else None
        if state is None and recipient is not None and recipient.user and self.modules.has_hooks(
            Point.INBOUND_STANZA
        ) and self.modules.fire(Point.INBOUND_STANZA, stanza, sender, recipient):
            return
        if name == "message":
            self.messages.handle(stanza, sender, recipient)
        elif name == "presence":
            if state is not None:
                self.presence.from_session(state, stanza, recipient)
            else:
                self.presence.inbound(stanza, sender, recipient)
        elif name == "iq":
            self.iq.handle(stanza, sender, recipient)
        else:
            log.debug("dropping a non-stanza element {name}", name=name)

    # -- asynchronous work -----------------------------------------------------

    def run(
        self,
        username: str,
        stanza: domish.Element | None,
        function: Callable[..., Any],
        *args: Any,
    ) -> defer.Deferred:
        """Run function(*args) in the user's serial queue, guarded.

        A failure is logged and, if a stanza is given, answered with
        ``internal-server-error``.
        """
        return self.guard(self.queues.run(username, function, *args), stanza)

    def guard(self, d: defer.Deferred, stanza: domish.Element | None) -> defer.Deferred:
        """Track an asynchronous operation and turn its failure into a logged error."""
        if d.called and not d.paused and not isinstance(d.result, Failure):
            return d  # finished, and well: nothing to track or catch
        d.addErrback(self._failed, stanza)
        if not d.called:
            self._inflight.add(d)
            d.addBoth(self._untrack, d)
        return d

    def _failed(self, failure: Failure, stanza: domish.Element | None) -> None:
        log.failure("processing a stanza failed", failure)
        if stanza is not None:
            self.reply_error(stanza, "internal-server-error")

    def _untrack(self, result: Any, d: defer.Deferred) -> Any:
        self._inflight.discard(d)
        if not self._inflight and self._idle_waiters:
            self.reactor.callLater(0, self._check_idle)
        return result

    def _check_idle(self) -> None:
        if self._inflight:
            return
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def wait_idle(self) -> defer.Deferred:
        """Fire once no asynchronous stanza processing is pending (tests, shutdown)."""
        if not self._inflight:
            return defer.succeed(None)
        waiter: defer.Deferred = defer.Deferred()
        self._idle_waiters.append(waiter)
        return waiter

    # -- rosters (cached while the user is online) -------------------------------

    def get_roster(self, username: str) -> defer.Deferred:
        """Fire with the user's roster: contact bare JID -> RosterItem."""
        cached = self._rosters.get(username)
        if cached is not None:
            return defer.succeed(cached)

        def loaded(items: dict[str, RosterItem]) -> dict[str, RosterItem]:
            if username in self._users:
                return self._rosters.setdefault(username, items)
            return items

        return self.roster_store.items(username).addCallback(loaded)

    def cached_roster(self, username: str) -> dict[str, RosterItem] | None:
        """The user's roster if it is in memory (the user is online and it was read), else None."""
        return self._rosters.get(username)

    def get_roster_item(self, username: str, contact: str) -> defer.Deferred:
        """Fire with one item of the user's roster, or None: cached, else one row read."""
        cached = self._rosters.get(username)
        if cached is not None:
            return defer.succeed(cached.get(contact))
        return self.roster_store.item(username, contact)

    def get_roster_version(self, username: str) -> defer.Deferred:
        """Fire with the user's roster version, an int (RFC 6121 2.6)."""
        cached = self._roster_versions.get(username)
        if cached is not None:
            return defer.succeed(cached)

        def loaded(version: int) -> int:
            if username in self._users:
                return self._roster_versions.setdefault(username, version)
            return version

        return self.roster_store.version(username).addCallback(loaded)

    def drop_roster_cache(self, username: str) -> None:
        """Forget the cached roster of a user who has no session left."""
        if username not in self._users:
            self._rosters.pop(username, None)
            self._roster_versions.pop(username, None)

    def _roster_changed(self, username: str, version: int | None) -> None:
        if version is None:
            self._roster_versions.pop(username, None)  # read it again when needed
        elif username in self._roster_versions:
            self._roster_versions[username] = version

    @defer.inlineCallbacks
    def save_roster_item(self, username: str, roster: dict[str, RosterItem], item: RosterItem):
        """Store a changed item and push it, with the new version, to the interested resources."""
        version = yield self.roster_store.save(username, item)
        self._roster_changed(username, version)
        roster[item.contact] = item
        cached = self._rosters.get(username)
        if cached is not None and cached is not roster:
            cached[item.contact] = item
        self.push_roster(username, item.to_element(), version)

    @defer.inlineCallbacks
    def remove_roster_item(self, username: str, roster: dict[str, RosterItem], contact: str):
        """Delete an item and push the removal (with the new version) to interested resources."""
        version = yield self.roster_store.remove(username, contact)
        self._roster_changed(username, version)
        roster.pop(contact, None)
        cached = self._rosters.get(username)
        if cached is not None:
            cached.pop(contact, None)
        if version is None:
            version = yield self.get_roster_version(username)
        self.push_roster(username, removal_element(contact), version)

    def push_roster(self, username: str, item: domish.Element, version: int | None) -> None:
        """Send a roster push with one item (and ``ver``, if given) to each interested resource."""
        for state in self.sessions_of(username):
            if not state.interested:
                continue
            push = domish.Element((None, "iq"))
            push["type"] = "set"
            push["id"] = self.next_id("push")
            push["to"] = state.full
            query = push.addElement(("jabber:iq:roster", "query"))
            if version is not None:
                query["ver"] = str(version)
            query.addChild(item)
            self.deliver(state, push)
