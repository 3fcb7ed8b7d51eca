"""Personal message archives (XEP-0313 ``urn:xmpp:mam:2``) with stanza ids (XEP-0359).

**What is archived**: the messages :func:`xmppd.mam.policy.archivable`
accepts (chat and normal with content; never groupchat, headline, error,
``<no-store/>``, carbons), if the owner's preferences (XEP-0313 §7) allow
it for the other party. Both directions, once each:

* *outgoing*, at ``Point.CLIENT_STANZA`` (priority 50: after blocking's
  refusal at 100, before carbons at 0), in the sender's archive (direction
  ``out``, ``with`` = the 'to', or the own bare JID without one);
* *incoming*, in the recipient's archive (direction ``in``, ``with`` = the
  'from'): at ``Point.LOCAL_MESSAGE`` (priority 50, before carbons) when
  the user has sessions, else at ``Point.MESSAGE_UNDELIVERED`` (priority
  10, before offline storage), which only fires for existing accounts. A
  message to an unavailable full JID falls back to the bare JID and meets
  ``LOCAL_MESSAGE`` once; a message already stamped at ``LOCAL_MESSAGE``
  (sessions, none available) is not archived again when it goes to
  offline storage. A message to oneself is archived twice, ``out`` and
  ``in``, as Prosody does (it passes both paths).

**Stanza ids**: the archive id is drawn at once (the write comes later);
any ``<stanza-id/>`` whose ``by`` is the archive's JID is removed from
incoming and outgoing messages first (``<origin-id/>`` stays). An incoming
message is stamped ``<stanza-id by='user@domain' id=…/>`` before delivery,
received carbons and offline storage. An outgoing one is stamped for the
sender's sent carbons only (when there are any): the stamp is taken off again at
``CLIENT_STANZA`` priority -100, after carbons copied the stanza (the copy
has its own children list), so the routed message does not carry it.

**Writing**: rows go through an :class:`~xmppd.mam.writer.ArchiveWriter`
(one transaction per 0.1 s of rows); the XML is serialised once per message
(the stored form holds no stanza-id, so a message between two local users
serves both archives), and the recipient's streams write that same text
with the stanza-id spliced in (:func:`~xmppd.stanza.remember_xml`). A query
flushes the writer first, so it sees every message archived before it.

**Protocol** (the account's own resources only; anyone else's request for
an archive gets ``forbidden``): query set (results, then the iq result
with ``<fin/>``; queries of one session run one after another), query get
(the form), ``<metadata/>``, ``<prefs/>`` get/set (stored in
``mam_prefs``; every stored preference is kept in memory, loaded at
start-up). A session that queried its archive before its first available
presence does not get offline messages pushed (Prosody's
``message/offline/broadcast``): they stay stored, and it has them from the
archive.

**Preferences** ``roster`` need the roster: while the user is online it is
cached by the session manager (loaded at bind for such users); for users
without a session the decision waits for it at ``MESSAGE_UNDELIVERED``.
In the short window after a bind before the roster is loaded, a message is
archived (rather lost from the archive than from the roster).

**Retention**: ``[mam] expire_after`` seconds (0: forever), deleted in
batches by a background job every ``maintenance_interval`` seconds, which
also trims each archive written to since the last run to ``max_messages``
(oldest first): an archive may exceed the cap by what arrives between two
runs.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from twisted.internet import defer, task
from twisted.words.xish import domish

from xmppd.config import setting
from xmppd.errors import StanzaError
from xmppd.logs import logger
from xmppd.mam.policy import (
    NS_SID,
    add_stanza_id,
    examine,
    stanza_id_of,
    stanza_id_xml,
    strip_stanza_ids,
)
from xmppd.mam.query import (
    NS_MAM,
    NS_MAM_EXTENDED,
    Preferences,
    fin_element,
    metadata_element,
    parse_query,
    query_form,
    result_messages,
    run_query,
)
from xmppd.mam.store import INCOMING, OUTGOING, ArchiveStore
from xmppd.mam.writer import ArchiveWriter
from xmppd.module import ALREADY_ANSWERED, IQRequest, Module, Point, Scope, hook, iq_handler
from xmppd.sm.queue import SerialQueues
from xmppd.sm.session import Session
from xmppd.sm.stanzas import result_for, serialise
from xmppd.stanza import remember_xml, remembered_xml

log = logger(__name__)

PREFS_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS mam_prefs (
        username TEXT PRIMARY KEY REFERENCES accounts(username) ON DELETE CASCADE,
        prefs TEXT NOT NULL
    )
    """,
)

DEFAULTS = ("always", "roster", "never")
#: Rows one expiry transaction deletes at most.
EXPIRE_BATCH = 1000


@dataclass(frozen=True)
class MAMSettings:
    """``[mam]``: personal message archives (XEP-0313)."""

    default_page_size: int = setting(
        20, "archive results per page when a query gives no RSM `max`", minimum=1, live=True)
    max_page_size: int = setting(
        50, "the most archive results one page holds (a larger `max` is lowered)",
        minimum=1, live=True)
    expire_after: float = setting(
        604800.0, "seconds messages stay in personal archives (a week); 0 keeps them forever",
        minimum=0)
    max_messages: int = setting(
        100000, "messages one personal archive keeps; the oldest beyond it are deleted "
        "(checked in the background)", minimum=1, live=True)
    default: str = setting(
        "always", "archiving preference of users who set none: `always`, `roster` or `never`",
        choices=DEFAULTS, live=True)


class MessageArchive(Module):
    """XEP-0313 personal archives: archiving on the message path, queries, preferences."""

    name = "mam"
    features = {Scope.ACCOUNT: [NS_MAM, NS_MAM_EXTENDED, NS_SID]}
    schema = PREFS_SCHEMA  # (the archive table is the core schema's: migration 7)
    settings = MAMSettings
    #: Seconds between two runs of expiry and trimming.
    maintenance_interval = 600.0

    def __init__(self, server, settings=None):
        super().__init__(server, settings)
        if self.config is None:
            self.config = MAMSettings()
        self.store = ArchiveStore(server.database)
        self.writer = ArchiveWriter(server.database, server.reactor)
        #: Username -> stored preferences (users without a row use the default).
        self.prefs: dict[str, Preferences] = {}
        #: Sessions that queried their archive before being available.
        self.synced: set[Session] = set()
        #: Owners (bare JID, username) archived to since the last trim.
        self.touched: dict[str, str] = {}
        self.maintenance: task.LoopingCall | None = None
        self._queries = SerialQueues()
        self._outgoing: tuple | None = None
        self._examined: tuple | None = None
        self._maintaining = False

    # -- service ------------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802 - Twisted's API
        """Load the stored preferences and start the background expiry."""
        super().startService()
        d = self.server.database.query("SELECT username, prefs FROM mam_prefs")
        d.addCallback(self._loaded)
        self.server.sessions.guard(d, None)
        self.start_maintenance(self.server.reactor)

    def stopService(self):  # noqa: N802 - Twisted's API
        """Stop the background job and write what is still buffered."""
        super().stopService()
        if self.maintenance is not None and self.maintenance.running:
            self.maintenance.stop()
        return self.writer.flush()

    def start_maintenance(self, clock) -> task.LoopingCall:
        """(Re)start the expiry and trimming job on a clock (tests pass a ``Clock``)."""
        if self.maintenance is not None and self.maintenance.running:
            self.maintenance.stop()
        self.maintenance = task.LoopingCall(self.maintain)
        self.maintenance.clock = clock
        self.maintenance.start(self.maintenance_interval, now=False).addErrback(
            lambda f: log.failure("archive maintenance stopped", f))
        return self.maintenance

    def _loaded(self, rows: list[tuple[str, str]]) -> None:
        for username, data in rows:
            prefs = _prefs_from_json(data)
            if prefs is not None:
                self.prefs.setdefault(username, prefs)

    # -- the message path -------------------------------------------------------------

    def _serialised(self, stanza: domish.Element) -> str:
        # The sender's hook and the recipient's store the same text: it is
        # noted on the stanza, which also spares the recipient's stream.
        xml = remembered_xml(stanza)
        if xml is None:
            xml = serialise(stanza)
            remember_xml(stanza, xml)
        return xml

    def _worth(self, stanza: domish.Element, bare: str) -> bool:
        """Strip stanza-ids claiming to be ``bare``'s; whether the message is archivable.

        The look at the message depends on its type and children only, so
        it is kept for the next hook that sees the same children: the
        recipient's after the sender's, and every occupant's copy of a room
        message (the copies share their children).
        """
        children = stanza.children
        kind = stanza.attributes.get("type")
        cached = self._examined
        # The same children, item for item (elements compare by identity).
        if cached is not None and cached[1] == kind and cached[0] == children:
            worth, stamped = cached[2]
        else:
            worth, stamped = examine(stanza)
            self._examined = (list(children), kind, (worth, stamped))
        if stamped and strip_stanza_ids(stanza, bare):
            worth, stamped = examine(stanza)
            self._examined = (list(stanza.children), kind, (worth, stamped))
        return worth

    def _append(self, username: str, bare: str, other: str, direction: str,
                stanza: domish.Element, xml: str | None = None) -> str:
        if xml is None:
            xml = self._serialised(stanza)
        archive_id = self.writer.add(bare, username, other, direction, xml,
                                     self.server.reactor.seconds())
        self.touched[bare] = username
        return archive_id

    @hook(Point.CLIENT_STANZA, priority=50)
    def outgoing(self, session: Session, stanza: domish.Element) -> None:
        """Archive a message a client sends; stamp it for the sent carbons."""
        self._outgoing = None
        if stanza.name != "message":
            return
        bare = session.bare
        if not self._worth(stanza, bare):
            return
        other = stanza.getAttribute("to") or bare
        if self.decide(session.username, other) is False:
            return
        archive_id = self._append(session.username, bare, other, OUTGOING, stanza)
        carbons = self.server.modules.get("carbons")
        if carbons is not None and carbons.copies_sent(session):
            self._outgoing = (stanza, stanza.children)
            add_stanza_id(stanza, bare, archive_id)

    @hook(Point.CLIENT_STANZA, priority=-100)
    def unstamp(self, session: Session, stanza: domish.Element) -> None:
        """Take the sender's stanza-id off again before the message is routed (privacy)."""
        pending = self._outgoing
        if pending is not None and pending[0] is stanza:
            self._outgoing = None
            stanza.children = pending[1]

    @hook(Point.LOCAL_MESSAGE, priority=50)
    def incoming(self, username: str, targets: list, stanza: domish.Element) -> None:
        """Archive and stamp a message for a user with sessions, before delivery and carbons."""
        bare = f"{username}@{self.server.domain}"
        if not self._worth(stanza, bare):
            return
        other = stanza.getAttribute("from") or self.server.domain
        if self.decide(username, other) is False:
            return  # None (roster not loaded yet): archived, see the module docstring
        xml = self._serialised(stanza)
        archive_id = self._append(username, bare, other, INCOMING, stanza, xml)
        add_stanza_id(stanza, bare, archive_id)
        # What the recipient's streams will write: the stored text, stamped.
        end = "</" + stanza.name + ">"
        if xml.endswith(end):
            remember_xml(stanza, xml[:-len(end)] + stanza_id_xml(bare, archive_id) + end)

    @hook(Point.MESSAGE_UNDELIVERED, priority=10)
    def undelivered(self, username: str, stanza: domish.Element):
        """Archive and stamp a message going to offline storage, if not done yet."""
        bare = f"{username}@{self.server.domain}"
        if stanza_id_of(stanza, bare) is not None:  # archived at LOCAL_MESSAGE
            return self._offline_missing()
        if not self._worth(stanza, bare):
            return False
        other = stanza.getAttribute("from") or self.server.domain
        decision = self.decide(username, other)
        if decision is not None:
            return self._archive_undelivered(decision, username, bare, other, stanza)
        d = self.server.sessions.get_roster(username)
        d.addCallback(lambda roster: other.split("/", 1)[0] in roster)
        d.addCallback(self._archive_undelivered, username, bare, other, stanza)
        return d

    def _archive_undelivered(self, archive: bool, username: str, bare: str, other: str,
                             stanza: domish.Element) -> bool:
        if not archive:
            return False
        archive_id = self._append(username, bare, other, INCOMING, stanza)
        add_stanza_id(stanza, bare, archive_id)
        return self._offline_missing()

    def _offline_missing(self) -> bool:
        # Without offline storage an archived message counts as kept (no bounce), as Prosody.
        return self.server.modules.get("offline") is None

    # -- preferences ------------------------------------------------------------------

    def preferences(self, username: str) -> Preferences:
        """The user's preferences (the configured default when none are stored)."""
        prefs = self.prefs.get(username)
        return prefs if prefs is not None else Preferences(self.config.default)

    def decide(self, username: str, other: str) -> bool | None:
        """Whether a message with ``other`` goes into the user's archive.

        None when it depends on the roster and the roster is not in memory.
        """
        prefs = self.prefs.get(username)
        if prefs is None:
            default = self.config.default
            if default != "roster":
                return default == "always"
        else:
            rule = prefs.rule_for(other)
            if rule is not None:
                return rule
            if prefs.default != "roster":
                return prefs.default == "always"
        roster = self._cached_roster(username)
        if roster is None:
            return None
        return other.split("/", 1)[0] in roster

    def _cached_roster(self, username: str) -> dict | None:
        found: list = []
        d = self.server.sessions.get_roster(username)
        d.addCallbacks(found.append, lambda f: log.failure("loading a roster failed", f))
        return found[0] if found else None

    @hook(Point.SESSION_BOUND)
    def bound(self, state: Session) -> None:
        """Load the roster of a user whose preference is ``roster`` (it is then cached)."""
        if self.preferences(state.username).default == "roster":
            self._cached_roster(state.username)

    @iq_handler("get", NS_MAM, "prefs", Scope.ACCOUNT)
    def get_prefs(self, request: IQRequest) -> domish.Element:
        """The user's archiving preferences."""
        _owner_only(request)
        return self.preferences(request.account).to_element()

    @iq_handler("set", NS_MAM, "prefs", Scope.ACCOUNT)
    @defer.inlineCallbacks
    def set_prefs(self, request: IQRequest):
        """Store new preferences; the result holds them as stored."""
        _owner_only(request)
        username = request.account
        prefs = Preferences.from_element(request.payload, self.preferences(username))
        stored = yield self.server.database.run(_store_prefs, username, _prefs_to_json(prefs))
        if not stored:
            raise StanzaError("item-not-found", "no such account")
        self.prefs[username] = prefs
        if prefs.default == "roster" and self.server.sessions.is_online(username):
            self._cached_roster(username)
        return prefs.to_element()

    @hook(Point.ACCOUNT_DELETED)
    def account_deleted(self, username: str) -> None:
        """Forget a deleted account's preferences (its rows went with it)."""
        self.prefs.pop(username, None)
        self.touched.pop(f"{username}@{self.server.domain}", None)

    # -- queries ----------------------------------------------------------------------

    @iq_handler("get", NS_MAM, "query", Scope.ACCOUNT)
    def get_form(self, request: IQRequest) -> domish.Element:
        """The query form's fields (XEP-0313 §4.1.5)."""
        _owner_only(request)
        return query_form()

    @iq_handler("get", NS_MAM, "metadata", Scope.ACCOUNT)
    def get_metadata(self, request: IQRequest):
        """The archive's first and last message (XEP-0313 §6)."""
        _owner_only(request)
        self.writer.flush()
        d = self.store.metadata(request.sender.userhost())
        return d.addCallback(metadata_element)

    @iq_handler("set", NS_MAM, "query", Scope.ACCOUNT)
    def query(self, request: IQRequest):
        """Run a query: result messages to the requester, then the iq result with <fin/>."""
        _owner_only(request)
        parsed = parse_query(request.payload, default_max=self.config.default_page_size,
                             max_max=self.config.max_page_size)
        state = self.server.sessions.state_for(request.sender)
        if state is not None and not state.available:
            self.synced.add(state)
        return self._queries.run(request.sender.full(), self._answer, request, parsed, state)

    @defer.inlineCallbacks
    def _answer(self, request: IQRequest, parsed, state: Session | None):
        self.writer.flush()
        page = yield run_query(self.store, request.sender.userhost(), parsed)
        sessions = self.server.sessions
        for message in result_messages(page, parsed, request.sender.full()):
            if state is not None:
                sessions.deliver(state, message)
            else:
                sessions.route(message)
        reply = result_for(request.stanza)
        # Pages taken backwards carry no RSM index, as from Prosody: slixmpp's
        # iterator (1.17) takes "index + items == count" for the end of the
        # result set whichever way it pages, and would stop after one page.
        reply.addChild(fin_element(page, with_index=not parsed.reverse))
        sessions.route(reply)
        return ALREADY_ANSWERED

    @hook(Point.SESSION_AVAILABLE, priority=10)
    def available(self, state: Session) -> bool:
        """Keep offline messages stored for a session that synced from the archive first."""
        return state in self.synced

    @hook(Point.SESSION_ENDED)
    def session_ended(self, state: Session) -> None:
        """Forget the session."""
        self.synced.discard(state)

    # -- retention --------------------------------------------------------------------

    @defer.inlineCallbacks
    def maintain(self):
        """Expire old messages (in batches) and trim archives over ``max_messages``."""
        if self._maintaining:
            return
        self._maintaining = True
        try:
            yield self.writer.flush()
            expire_after = self.config.expire_after
            if expire_after > 0:
                before = self.maintenance.clock.seconds() - expire_after
                total = 0
                while True:
                    count = yield self.store.expire(before, EXPIRE_BATCH, personal=True)
                    total += count
                    if count < EXPIRE_BATCH:
                        break
                if total:
                    log.info("expired {count} archived messages", count=total)
            touched, self.touched = self.touched, {}
            keep = self.config.max_messages
            for owner in touched:
                count = yield self.store.trim(owner, keep)
                if count:
                    log.info("archive of {owner} over {keep} messages: deleted the oldest "
                             "{count}", owner=owner, keep=keep, count=count)
        except Exception:
            log.failure("archive maintenance failed")
        finally:
            self._maintaining = False


def _owner_only(request: IQRequest) -> None:
    if not request.from_owner or (
            request.recipient is not None and request.recipient.resource is not None):
        raise StanzaError("forbidden", "only the account itself may use its archive")


def _prefs_to_json(prefs: Preferences) -> str:
    return json.dumps({"default": prefs.default, "always": sorted(prefs.always),
                       "never": sorted(prefs.never)})


def _prefs_from_json(data: str) -> Preferences | None:
    try:
        value = json.loads(data)
        default = value["default"]
        if default not in DEFAULTS:
            return None
        return Preferences(default, set(value["always"]), set(value["never"]))
    except (ValueError, KeyError, TypeError):
        log.warn("ignoring unreadable archiving preferences")
        return None


def _store_prefs(cursor: sqlite3.Cursor, username: str, data: str) -> bool:
    cursor.execute(
        "INSERT INTO mam_prefs (username, prefs) SELECT username, ? FROM accounts "
        "WHERE username = ? ON CONFLICT(username) DO UPDATE SET prefs = excluded.prefs",
        (data, username))
    return cursor.rowcount > 0

