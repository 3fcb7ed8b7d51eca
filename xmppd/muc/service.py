"""The MUC service: a wokkel InternalComponent that serves one conference domain.

Stanzas for the domain reach :meth:`MUCService.receive` through the
component's XML pipe; they are processed one at a time (a stanza the
service's own output causes, such as a bounce, waits in the queue until the
current one is done, so room state is never changed re-entrantly).

The room core (:class:`~xmppd.muc.room.Room`) keeps occupants, roles,
affiliations and broadcasts; every feature is a MUC module
(:mod:`xmppd.muc.features`) in the service's own
:class:`~xmppd.module.ModuleHost`: iqs to the service (``Scope.MUC_SERVICE``)
and to rooms (``Scope.ROOM``) go to their handlers, and rooms fire their
hooks. The service creates and forgets rooms, keeps persistent ones in the
database, and turns :class:`~xmppd.errors.StanzaError` into error replies.
Rooms see it only as a :class:`~xmppd.muc.host.RoomHost`, modules as a
:class:`~xmppd.muc.host.MUCContext`.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.words.protocols.jabber import jid
from twisted.words.protocols.jabber.xmlstream import XMPPHandler
from twisted.words.xish import domish
from wokkel.component import InternalComponent

from xmppd.addresses import parse_jid
from xmppd.errors import StanzaError, error_reply, must_not_answer
from xmppd.logs import logger
from xmppd.module import ModuleHost, Point, Scope
from xmppd.muc.affiliations import OWNER
from xmppd.muc.config import RoomConfig
from xmppd.muc.feature import MUCRequest, answer
from xmppd.muc.features import MUC_MODULES
from xmppd.muc.host import MUCContext
from xmppd.muc.room import Room
from xmppd.muc.stanzas import resourceprep_nick
from xmppd.ratelimit import Backoff, TokenBucket
from xmppd.storage.rooms import RoomRecord, RoomStore

if TYPE_CHECKING:
    from xmppd.config import MUCSettings

log = logger(__name__)

CREATE_ROOMS_POLICIES = ("anyone", "local", "admins")


class _StanzaHandler(XMPPHandler):
    """Feeds every stanza arriving on the component's pipe to the service."""

    def connectionInitialized(self) -> None:  # noqa: N802 (Twisted API)
        self.xmlstream.addObserver("/*", self.parent.receive)


class _RoomHost:
    """The service as its rooms see it (:class:`~xmppd.muc.host.RoomHost`)."""

    def __init__(self, service: MUCService) -> None:
        self._service = service
        self.domain = service.domain
        self.modules = service.modules

    def send(self, stanza: domish.Element) -> None:
        """Send a stanza to the router."""
        self._service.send(stanza)

    def is_admin(self, bare: str) -> bool:
        """True for service administrators."""
        return self._service.is_admin(bare)

    def message_bucket(self) -> TokenBucket:
        """A per-occupant bucket with the service's rate and burst."""
        service = self._service
        return TokenBucket(service.message_rate, service.message_burst, service.reactor)

    def room_changed(self, room: Room) -> None:
        """Store the room (if persistent)."""
        self._service.room_changed(room)

    def room_configured(self, room: Room, old: RoomConfig) -> None:
        """Store, delete or forget the room after a configuration change."""
        self._service.room_configured(room, old)

    def room_emptied(self, room: Room) -> None:
        """A temporary room goes away."""
        self._service.room_emptied(room)

    def room_destroyed(self, room: Room) -> None:
        """Forget the room and delete it from storage."""
        self._service.room_destroyed(room)


class MUCService(InternalComponent):
    """Multi-user chat (XEP-0045) for one domain, e.g. ``conference.localhost``.

    Built from the ``[muc]`` section whole (:class:`~xmppd.config.MUCSettings`:
    the domain, the ``create_rooms`` policy, the abuse limits) plus what
    comes from elsewhere: the router, the server's domain (for the
    ``local`` policy), the database (None: nothing is stored), the service
    administrators (owners of every room) and the reactor.

    Abuse limits (issue 6), all on the reactor's clock: each occupant may
    send ``message_burst`` messages at once and ``message_rate`` a second
    after that (wait, resource-constraint beyond); the back-off against
    guessing room passwords is the password module's
    (:mod:`xmppd.muc.features.password`).
    """

    def __init__(
        self,
        settings: MUCSettings,
        *,
        router: Any,
        server_domain: str,
        database: Any,
        admins: Iterable[str] = (),
        reactor: Any = None,
        modules: Iterable[type] = MUC_MODULES,
    ) -> None:
        if not settings.domain:
            raise ValueError("the MUC service needs a domain")
        InternalComponent.__init__(self, router, settings.domain)
        if settings.create_rooms not in CREATE_ROOMS_POLICIES:
            raise ValueError(f"create_rooms must be one of {CREATE_ROOMS_POLICIES}")
        if settings.message_rate <= 0 or settings.message_burst < 1:
            raise ValueError("message_rate must be positive and message_burst at least 1")
        if reactor is None:
            from twisted.internet import reactor
        #: The ``[muc]`` section in force (reload replaces its live keys).
        self.settings = settings
        self.domain = settings.domain
        self.server_domain = server_domain
        self.admins = frozenset(jid.JID(a).userhost() for a in admins)
        self.reactor = reactor
        self.store = RoomStore(database) if database is not None else None
        self.message_rate = settings.message_rate
        self.message_burst = settings.message_burst
        self.rooms: dict[str, Room] = {}
        #: What the MUC feature modules may use of the service.
        self.context = MUCContext(
            domain=self.domain,
            reactor=reactor,
            rooms=self.rooms,
            is_admin=self.is_admin,
            store=self.store,
            write=self._write,
        )
        #: The MUC feature modules: their iq handlers, hooks and disco entries.
        self.modules = ModuleHost(self.context, modules, lambda cls: self.settings)
        self.context.modules = self.modules
        #: What the rooms may use of the service.
        self.room_host = _RoomHost(self)
        self.ready: defer.Deferred = defer.Deferred()
        self._queue: deque[domish.Element] = deque()
        self._busy = False
        self._loaded = False
        #: The router's entry for this service's stanzas (Router.inbound), while started.
        self._inbound: Callable[[domish.Element], None] | None = None
        self._writes: defer.Deferred = defer.succeed(None)
        _StanzaHandler().setHandlerParent(self)

    @property
    def password_backoff(self) -> Backoff:
        """The password module's back-off table (wrong room passwords), for inspection."""
        return self.modules["password"].backoff

    @property
    def create_rooms(self) -> str:
        """Who may create rooms (``anyone``, ``local``, ``admins``)."""
        return self.settings.create_rooms

    def reload(self, settings: MUCSettings, admins: Iterable[str]) -> None:
        """Apply a reloaded ``[muc]`` section's live keys and the new admins.

        Keys that need a restart (the domain, the abuse limits) keep their
        running values.
        """
        live = {
            f.name: getattr(settings, f.name)
            for f in dataclasses.fields(settings)
            if f.metadata.get("live")
        }
        self.settings = dataclasses.replace(self.settings, **live)
        for module in self.modules.modules.values():
            module.config = self.settings
        self.admins = frozenset(jid.JID(a).userhost() for a in admins)

    # ------------------------------------------------------------- lifecycle

    def startService(self) -> None:  # noqa: N802 (Twisted API)
        """Register with the router and load the persistent rooms."""
        InternalComponent.startService(self)
        self._inbound = self._router.inbound(self._pipe.sink)
        if not self.modules.running:
            self.modules.startService()
        if self._loaded:
            return
        if self.store is None:
            self._finish_loading()
            return
        d = self.store.load(self.domain)
        d.addCallback(self._rooms_loaded)
        d.addErrback(lambda f: log.failure("could not load the persistent rooms", f))
        d.addCallback(lambda _: self._prepare_rooms())
        d.addBoth(lambda _: self._finish_loading())

    def stopService(self) -> defer.Deferred:  # noqa: N802 (Twisted API)
        """Unregister from the router; fires when pending room writes are done."""
        InternalComponent.stopService(self)
        self._inbound = None
        if self.modules.running:
            self.modules.stopService()
        return self.flush()

    def _rooms_loaded(self, records: list[RoomRecord]) -> None:
        for record in records:
            room = Room(self.room_host, record.name, RoomConfig.from_dict(record.config))
            room.subject = record.subject or ""
            room.subject_from = record.subject_from
            room.subject_by = record.subject_by
            for bare, affiliation, reason, nick in record.affiliations:
                room.affiliations.set(bare, affiliation, reason, nick)
            self.rooms[record.name] = room
        log.info(
            "loaded {count} persistent rooms of {domain}", count=len(records), domain=self.domain
        )

    def _prepare_rooms(self) -> defer.Deferred:
        """Let the modules prepare the loaded rooms (the archive's join history)."""
        waits = []
        for module in self.modules.modules.values():
            prepare = getattr(module, "rooms_loaded", None)
            if prepare is None:
                continue
            d = defer.maybeDeferred(prepare)
            d.addErrback(lambda f, name=module.name: log.failure(
                "module {name} could not prepare the rooms", f, name=name))
            waits.append(d)
        return defer.DeferredList(waits)

    def _finish_loading(self) -> None:
        self._loaded = True
        if self._queue and not self._busy:
            self._drain()
        if not self.ready.called:
            self.ready.callback(None)

    def flush(self) -> defer.Deferred:
        """A Deferred that fires when every room write queued so far is done."""
        done: defer.Deferred = defer.Deferred()

        def fire(result: Any) -> Any:
            done.callback(None)
            return result

        self._writes.addBoth(fire)
        return done

    # ------------------------------------------------------------- helpers for rooms

    def send(self, obj: domish.Element) -> None:
        """Send a stanza to the router (dropped, with a log line, when stopped)."""
        if self.xmlstream is None:
            log.warn("MUC service stopped: dropping a {name}", name=getattr(obj, "name", "?"))
            return
        self._inbound(obj)  # straight to the router (see Router.inbound)

    def is_admin(self, bare: str) -> bool:
        """True for the service administrators (owners of every room)."""
        return bare in self.admins

    def may_create(self, sender: jid.JID) -> bool:
        """Whether the ``create_rooms`` policy lets this user create rooms."""
        bare = sender.userhost()
        if self.create_rooms == "anyone" or self.is_admin(bare):
            return True
        if self.create_rooms == "local":
            return sender.user is not None and sender.host == self.server_domain
        return False

    def room_changed(self, room: Room) -> None:
        """Persist a room's state (for persistent rooms)."""
        if room.config.persistent and not room.destroyed and self.store is not None:
            self._write(room.name, self.store.save, self.domain, room.name, room.to_record())

    def room_configured(self, room: Room, old: RoomConfig) -> None:
        """After a configuration change: store, forget, or remove the room."""
        if room.config.persistent:
            self.room_changed(room)
        else:
            if old.persistent and self.store is not None:
                self._write(room.name, self.store.delete, self.domain, room.name)
            if not room.occupants:
                self._forget(room)

    def room_emptied(self, room: Room) -> None:
        """The last occupant left: temporary rooms vanish."""
        if not room.config.persistent:
            room.destroyed = True
            self._forget(room)

    def room_destroyed(self, room: Room) -> None:
        """The room was destroyed by an owner (or a cancelled creation)."""
        self._forget(room)
        if self.store is not None and room.config.persistent:
            self._write(room.name, self.store.delete, self.domain, room.name)

    def _forget(self, room: Room) -> None:
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
            log.debug("room {room} removed", room=room.jid)
            self.modules.fire(Point.ROOM_DESTROYED, room)

    def _write(self, room: str, function: Any, *args: Any) -> None:
        def run(_: Any) -> Any:
            return function(*args)

        def failed(failure: Any) -> None:
            log.failure("could not store room {room}", failure, room=room)

        self._writes.addCallback(run)
        self._writes.addErrback(failed)

    # --------------------------------------------------------------- dispatch

    def receive(self, stanza: domish.Element) -> None:
        """Take a stanza from the router; stanzas are processed one at a time."""
        self._queue.append(stanza)
        if self._busy or not self._loaded:
            return
        self._drain()

    def _drain(self) -> None:
        self._busy = True
        try:
            while self._queue:
                stanza = self._queue.popleft()
                try:
                    self._process(stanza)
                except Exception:
                    log.failure("error while processing a {name}", name=stanza.name)
                    error = StanzaError("internal-server-error")
                    reply = self._error_reply(stanza, error, self.domain)
                    if reply is not None:
                        self.send(reply)
        finally:
            self._busy = False

    def _process(self, stanza: domish.Element) -> None:
        if stanza.name not in ("presence", "message", "iq"):
            return
        by = self.domain
        try:
            sender = parse_jid(stanza.getAttribute("from"))
            target = parse_jid(stanza.getAttribute("to") or self.domain)
            if sender is None or target is None:
                if stanza.getAttribute("to"):
                    stanza["to"] = self.domain  # answer from an address the router accepts
                raise StanzaError("jid-malformed") from None
            if target.user is None:
                self._service_stanza(stanza, sender, target)
            else:
                by = target.userhost()
                self._room_stanza(stanza, sender, target)
        except StanzaError as exc:
            reply = self._error_reply(stanza, exc, by)
            if reply is not None:
                self.send(reply)

    @staticmethod
    def _error_reply(stanza: domish.Element, exc: StanzaError, by: str) -> domish.Element | None:
        """The reply for a StanzaError: ``by`` the room (or the service) unless it says."""
        if not stanza.getAttribute("from"):
            return None
        if exc.by is None:
            exc.by = by
        return error_reply(stanza, exc)

    def _room_stanza(self, stanza: domish.Element, sender: jid.JID, target: jid.JID) -> None:
        name = target.user
        nick = target.resource
        room = self.rooms.get(name)
        if room is None:
            if stanza.name == "presence":
                kind = stanza.getAttribute("type")
                if kind is None:
                    self._create_room(stanza, sender, name, nick)
                elif kind == "probe":
                    raise StanzaError("item-not-found", "no such room")
                return
            if must_not_answer(stanza):
                return
            raise StanzaError("item-not-found", "no such room")
        if stanza.name == "presence":
            room.handle_presence(stanza, sender, nick)
        elif stanza.name == "message":
            room.handle_message(stanza, sender, nick)
        else:
            room.handle_iq(stanza, sender, nick)

    def _create_room(
        self, stanza: domish.Element, sender: jid.JID, name: str, nick: str | None
    ) -> None:
        if nick is None:
            raise StanzaError("jid-malformed", "a nickname is required to join")
        nick = resourceprep_nick(nick)
        if not self.may_create(sender):
            raise StanzaError("not-allowed", "you may not create rooms here")
        room = Room(self.room_host, name, locked=True)
        room.affiliations.set(sender.userhost(), OWNER)
        self.rooms[name] = room
        try:
            room.join(stanza, sender, nick, created=True)
        except BaseException:
            self._forget(room)
            raise
        log.info("room {room} created", room=room.jid)

    # ------------------------------------------------------- the service itself

    def _service_stanza(self, stanza: domish.Element, sender: jid.JID, target: jid.JID) -> None:
        if stanza.name == "presence" or must_not_answer(stanza):
            return
        if stanza.name == "iq":
            query = stanza.firstChildElement()
            kind = stanza.getAttribute("type")
            handler = None
            if query is not None and kind in ("get", "set"):
                handler = self.modules.iq_handler(kind, query, Scope.MUC_SERVICE)
            if handler is not None:
                request = MUCRequest(stanza, sender, target, query, Scope.MUC_SERVICE, None)
                answer(self.modules, handler, request, self.send, self.domain, self.domain)
                return
        raise StanzaError("service-unavailable")
