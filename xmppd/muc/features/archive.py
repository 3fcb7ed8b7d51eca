"""Room archives: XEP-0313 on the room JID, XEP-0359 stanza ids by the room.

* The switch is XEP-0045's ``muc#roomconfig_enablelogging`` (the
  ``logging`` setting): the conversation log *is* the archive. Prosody's
  ``muc#roomconfig_enablearchiving`` is read as an alias on submit (not
  shown in the form); when both are submitted, the one whose value changed
  wins. A room that becomes persistent is archived unless its owner
  changed the switch in the same form (a client submitting the whole form
  sends the switch's shown value back: that does not count as a choice).
  Temporary rooms are not archived unless an owner turns it on. The core
  announces the switch with 170/171 as before.
* Every groupchat message with a body and every subject change the room
  relays (but those with an XEP-0334 ``<no-store/>`` or
  ``<no-permanent-store/>`` hint) gets ``<stanza-id xmlns='urn:xmpp:sid:0' by='room@service'/>``
  at ``Point.ROOM_RELAY``, before any occupant (the sender's reflection
  too) gets it; any stanza-id a client put in with the room as ``by`` is
  removed from every relayed message first. Rooms without archiving stamp
  them too (as Prosody advertises ``urn:xmpp:sid:0`` on every room): the
  id names the message in the room's history, for moderation (XEP-0425).
* While archiving is on, those messages are archived (``mam_archive``,
  owner the room's JID, ``with`` the occupant's room JID, direction in),
  as broadcast: without 'to', without client muc#user elements (the room
  core drops them), with the stanza-id whose id is the archive id. The
  write is queued (``MUCContext.write``), never awaited by the broadcast.
  Private messages are never archived.
* Queries to the room JID (``urn:xmpp:mam:2``: the form, queries with
  the #extended fields and RSM, ``<metadata/>``), as Prosody: outcasts,
  and non-members of members-only rooms, get ``forbidden``; anyone else
  may query (occupant or not); rooms with archiving off answer from what
  their archive holds (Prosody does not refuse them either). Results come
  from the room JID; forwarded messages are from the occupant's room JID
  and never carry real JIDs in rooms that are not non-anonymous.
* The join history of archived rooms comes from the archive: the history
  module's in-memory list is filled from it before the service takes any
  stanza (:meth:`RoomArchive.rooms_loaded`), and again when archiving is
  switched on or ``historylength`` grows; from then on it is the archive's
  newest messages with a body (what the history module keeps as they are
  broadcast). So the join stays synchronous: history after the
  self-presence, before the subject, and no live message overtakes it.
* A room that goes away (destroyed, or a temporary room that empties)
  loses its archive. ``[muc] archive_max_messages`` caps each archive
  (trimmed every tenth of the cap's messages and by a background job),
  ``archive_expire_after`` expires old messages in the background.
* Disco on rooms: ``urn:xmpp:sid:0`` always, ``urn:xmpp:mam:2`` and
  ``urn:xmpp:mam:2#extended`` while archiving is on.

Rows of the old ``muc_log`` table moved to the archive in migration 7
(:mod:`xmppd.storage.schema`).
"""

from __future__ import annotations

import functools
from typing import Any

from twisted.internet import defer, task
from twisted.python.failure import Failure
from twisted.words.xish import domish

from xmppd.addresses import parse_jid
from xmppd.errors import StanzaError
from xmppd.logs import logger
from xmppd.mam.query import (
    NS_MAM,
    NS_MAM_EXTENDED,
    fin_element,
    metadata_element,
    parse_query,
    query_form,
    result_messages,
    run_query,
)
from xmppd.mam.store import INCOMING, ArchiveStore, new_archive_id
from xmppd.module import Point, Scope, hook, iq_handler
from xmppd.muc.affiliations import NONE, OUTCAST
from xmppd.muc.config import ConfigField, ConfigSubmission, RoomConfig, boolean_field
from xmppd.muc.feature import MUCModule, MUCRequest
from xmppd.muc.features.history import NS_SID, HistoryEntry, room_stanza_id
from xmppd.muc.occupant import Occupant
from xmppd.muc.room import Room
from xmppd.muc.stanzas import NS_MUC_USER, child
from xmppd.sm.stanzas import NS_CLIENT, child_elements, deserialise, serialise

log = logger(__name__)

FIELD = boolean_field("enablelogging", "Archive the conversation (message archive)", 170,
                      "logging")
#: Prosody's name for the same switch: read on submit, not shown.
ALIAS = ConfigField("enablearchiving", "Enable archiving?", 171, "boolean", in_form=False)

#: Seconds between two runs of the background clean-up (cap and expiry).
CLEANUP_INTERVAL = 600.0
NS_HINTS = "urn:xmpp:hints"
#: Messages one expiry transaction deletes at most.
EXPIRE_BATCH = 1000


class RoomArchive(MUCModule):
    """Archives the conversation of rooms with archiving on and answers MAM queries."""

    name = "archive"

    def __init__(self, server: Any, settings: Any = None) -> None:
        super().__init__(server, settings)
        #: The archive table, or None when the service has no database.
        self.archive: ArchiveStore | None = None
        self._cleanup: task.LoopingCall | None = None

    # ------------------------------------------------------------ lifecycle

    def startService(self) -> None:  # noqa: N802 (Twisted API)
        """Open the archive and start the background clean-up."""
        super().startService()
        store = self.server.store
        if store is None:
            return
        self.archive = ArchiveStore(store.db)
        self._cleanup = task.LoopingCall(self.clean_up)
        self._cleanup.clock = self.server.reactor
        self._cleanup.start(CLEANUP_INTERVAL, now=False).addErrback(
            lambda f: log.failure("room archive clean-up stopped", f))

    def stopService(self) -> None:  # noqa: N802 (Twisted API)
        """Stop the background clean-up."""
        if self._cleanup is not None and self._cleanup.running:
            self._cleanup.stop()
        self._cleanup = None
        super().stopService()

    def rooms_loaded(self) -> defer.Deferred | None:
        """Fill the join history of every archived room from its archive."""
        if self.archive is None:
            return None
        loads = []
        for room in list(self.server.rooms.values()):
            if room.config.logging:
                d = self.load_history(room)
                d.addErrback(lambda f, jid=room.jid: log.failure(
                    "could not read the history of {room}", f, room=jid))
                loads.append(d)
        return defer.DeferredList(loads)

    # ------------------------------------------------------------ configuration

    def disco_features(self, scope: Scope, target: Room | None = None) -> list[str]:
        """Stanza ids on every room; MAM on rooms with archiving on."""
        if scope is not Scope.ROOM:
            return []
        features = [NS_SID]
        if target is not None and target.config.logging and self.archive is not None:
            features += [NS_MAM, NS_MAM_EXTENDED]
        return features

    @hook(Point.ROOM_CONFIG_FORM)
    def fields(self, room: Room, fields: list[ConfigField]) -> None:
        """The enablelogging field, and enablearchiving read as its alias."""
        fields.extend((FIELD, ALIAS))

    @hook(Point.ROOM_CONFIG_SUBMITTED)
    def submitted(self, room: Room, submission: ConfigSubmission) -> None:
        """Resolve the alias; a room becoming persistent is archived by default."""
        old = submission.old
        values = submission.values
        chosen = [values[name] for name in ("enablelogging", "enablearchiving")
                  if name in values and values[name] != old.logging]
        logging = chosen[0] if chosen else old.logging
        if not chosen and submission.config.persistent and not old.persistent:
            logging = True
        submission.config = submission.config.replace(logging=logging)

    @hook(Point.ROOM_CONFIG_CHANGED)
    def config_changed(self, room: Room, old: RoomConfig) -> None:
        """Archiving switched on, or a longer history: fill the history from the archive."""
        new = room.config
        if new.logging and (not old.logging or new.history_length > old.history_length):
            self.load_history(room).addErrback(
                lambda f: log.failure("could not read the history of {room}", f, room=room.jid))

    # ------------------------------------------------------------ the message path

    @hook(Point.ROOM_RELAY)
    def stamp(self, room: Room, occupant: Occupant, message: domish.Element) -> None:
        """Drop stanza-ids claiming to be the room's; stamp the room's on groupchat messages."""
        strip_stanza_ids(message, room.jid)
        if message.getAttribute("type") != "groupchat":
            return
        if child(message, "body") is None and child(message, "subject") is None:
            return
        if any(c.uri == NS_HINTS and c.name in ("no-store", "no-permanent-store")
               for c in message.elements()):
            return  # XEP-0334: neither archived nor a message one can refer to
        add_stanza_id(message, room.jid, self.new_id())

    def new_id(self) -> str:
        """Draw a room stanza-id (from the archive's sequence: the id gives the row's place)."""
        now = self.server.reactor.seconds()
        return self.archive.new_id(now) if self.archive is not None else new_archive_id(now)

    @hook(Point.ROOM_MESSAGE)
    def record(self, room: Room, occupant: Occupant, message: domish.Element) -> None:
        """Archive a broadcast message (rooms with archiving on)."""
        self.archive_message(room, message, room.occupant_jid(occupant.nick))

    def archive_message(self, room: Room, message: domish.Element, with_jid: str) -> None:
        """Queue a broadcast message (with the room's stanza-id) for the room's archive.

        Nothing happens for rooms with archiving off, without a database,
        or for a message without the room's stanza-id.
        """
        archive_id = room_stanza_id(message, room.jid)
        if not room.config.logging or self.archive is None or archive_id is None:
            return
        stored = _without_to(message)
        append = functools.partial(
            self.archive.append, room.jid, stamp=self.server.reactor.seconds(),
            with_jid=with_jid, direction=INCOMING, stanza=stored, archive_id=archive_id)
        self.server.write(room.name, append)
        state = room.data.setdefault(self.name, {"since_trim": 0})
        state["since_trim"] += 1
        if state["since_trim"] >= max(self.config.archive_max_messages // 10, 1):
            state["since_trim"] = 0
            self.server.write(room.name, self.archive.trim, room.jid,
                              self.config.archive_max_messages)

    def lookup(self, room: Room, stanza_id: str) -> defer.Deferred:
        """The archived message with this id (after the queued writes); fires with it or None."""
        if self.archive is None:
            return defer.succeed(None)
        return self._after_writes(room, self.archive.get, room.jid, stanza_id)

    def _after_writes(self, room: Room, function: Any, *args: Any) -> defer.Deferred:
        """``function(*args)`` once the room's queued writes are done; fires with its result."""
        found: defer.Deferred = defer.Deferred()

        def run() -> defer.Deferred:
            d = defer.maybeDeferred(function, *args)
            d.addBoth(_pass_to, found)
            return d

        self.server.write(room.name, run)
        return found

    def replace(self, room: Room, stanza_id: str, stanza: domish.Element) -> None:
        """Queue replacing an archived message's XML (a tombstone)."""
        if self.archive is not None:
            self.server.write(room.name, self.archive.replace, room.jid, stanza_id,
                              _without_to(stanza))

    @hook(Point.ROOM_DESTROYED)
    def destroyed(self, room: Room) -> None:
        """A room that is gone loses its archive."""
        if self.archive is not None:
            self.server.write(room.name, self.archive.delete_owner, room.jid)

    # ------------------------------------------------------------ history on join

    @defer.inlineCallbacks
    def load_history(self, room: Room):
        """Fill the room's join history with the newest archived messages with a body."""
        history_module = self.server.modules.get("history") if self.server.modules else None
        length = room.config.history_length
        if history_module is None or self.archive is None or length <= 0:
            return
        found: list[HistoryEntry] = []
        before = None
        while len(found) < length:
            page = yield self.archive.query(room.jid, before=before, limit=length * 2 + 10,
                                            reverse=True)
            for item in reversed(page.items):
                stanza = deserialise(item.stanza)
                if stanza is None or child(stanza, "body") is None:
                    continue
                _in_client_namespace(stanza)
                if room_stanza_id(stanza, room.jid) is None:  # rows from the old log
                    add_stanza_id(stanza, room.jid, item.id)
                found.append(HistoryEntry(stanza, item.stamp, item.id))
                if len(found) == length:
                    break
            if page.complete or not page.items:
                break
            before = page.first
        found.reverse()
        history_module.history(room).merge_older(found)

    # ------------------------------------------------------------ queries

    def _may_query(self, request: MUCRequest) -> Room:
        room = request.room
        affiliation = room.affiliation_of(request.sender.userhost())
        if affiliation == OUTCAST:
            raise StanzaError("forbidden", "you are banned from this room", type="auth")
        if room.config.members_only and affiliation == NONE:
            raise StanzaError("forbidden", "the archive of a members-only room is for members",
                              type="auth")
        if self.archive is None:
            raise StanzaError("service-unavailable", "this service keeps no archives")
        return room

    @iq_handler("get", NS_MAM, "query", Scope.ROOM)
    def form(self, request: MUCRequest) -> domish.Element:
        """The query form (XEP-0313 §4.1.5)."""
        self._may_query(request)
        return query_form()

    @iq_handler("set", NS_MAM, "query", Scope.ROOM)
    def query(self, request: MUCRequest) -> defer.Deferred:
        """Send one page of the room's archive, then the ``<fin/>``."""
        room = self._may_query(request)
        parsed = parse_query(request.payload)
        requester = request.sender.full()

        def answer(page):
            hide = not room.config.non_anonymous
            for message in result_messages(page, parsed, requester, room.jid):
                _tidy_forwarded(message, hide)
                room.send(message)
            return fin_element(page)

        # After the room's queued writes: what it broadcast (and tombstoned) is there.
        d = self._after_writes(room, run_query, self.archive, room.jid, parsed)
        return d.addCallback(answer)

    @iq_handler("get", NS_MAM, "metadata", Scope.ROOM)
    def metadata(self, request: MUCRequest) -> defer.Deferred:
        """The first and last message of the room's archive (XEP-0313 §6)."""
        room = self._may_query(request)
        d = self._after_writes(room, self.archive.metadata, room.jid)
        return d.addCallback(metadata_element)

    # ------------------------------------------------------------ clean-up

    @defer.inlineCallbacks
    def clean_up(self):
        """Trim every archived room to the cap and expire old messages (the background job)."""
        if self.archive is None:
            return
        for room in list(self.server.rooms.values()):
            if room.config.logging:
                yield self.archive.trim(room.jid, self.config.archive_max_messages)
        expire_after = self.config.archive_expire_after
        if expire_after > 0:
            before = self.server.reactor.seconds() - expire_after
            while True:
                count = yield self.archive.expire(before, EXPIRE_BATCH, personal=False)
                if count < EXPIRE_BATCH:
                    break
            # What joiners are sent must not outlive the archive it comes from.
            history_module = self.server.modules.get("history") if self.server.modules else None
            if history_module is not None:
                for room in list(self.server.rooms.values()):
                    if room.config.logging:
                        history_module.history(room).forget_before(before)


def strip_stanza_ids(message: domish.Element, room_jid: str) -> None:
    """Remove every ``<stanza-id/>`` whose ``by`` is the room (however it is spelled)."""
    def claims_room(node: Any) -> bool:
        if not isinstance(node, domish.Element) or node.name != "stanza-id" or node.uri != NS_SID:
            return False
        by = node.getAttribute("by") or ""
        address = parse_jid(by)
        return by == room_jid or (address is not None and address.full() == room_jid)

    message.children = [c for c in message.children if not claims_room(c)]


def add_stanza_id(message: domish.Element, room_jid: str, stanza_id: str) -> None:
    """Add the room's ``<stanza-id/>``."""
    element = message.addElement((NS_SID, "stanza-id"))
    element["by"] = room_jid
    element["id"] = stanza_id


def _without_to(message: domish.Element) -> str:
    """The stored form of a message: in jabber:client, without 'to'."""
    attributes = dict(message.attributes)
    attributes.pop("to", None)
    copy = domish.Element((message.uri, message.name), message.defaultUri, attributes)
    copy.children = list(message.children)
    return serialise(copy)


def _in_client_namespace(element: domish.Element) -> None:
    """Put a stored stanza's elements without a namespace in jabber:client."""
    if not element.uri:
        element.uri = NS_CLIENT
    if not element.defaultUri:
        element.defaultUri = NS_CLIENT
    for node in element.children:
        if isinstance(node, domish.Element):
            _in_client_namespace(node)


def _tidy_forwarded(result: domish.Element, hide_jids: bool) -> None:
    """The forwarded message of a result: all in jabber:client (rows of the old
    log had no namespace); without muc#user elements when real JIDs are hidden."""
    for element in result.elements(NS_MAM, "result"):
        for forwarded in child_elements(element):
            for original in child_elements(forwarded):
                if original.name != "message":
                    continue
                _in_client_namespace(original)
                if hide_jids:
                    original.children = [
                        c for c in original.children
                        if not (isinstance(c, domish.Element) and c.uri == NS_MUC_USER)]


def _pass_to(result: Any, target: defer.Deferred) -> None:
    if isinstance(result, Failure):
        target.errback(result)
    else:
        target.callback(result)
