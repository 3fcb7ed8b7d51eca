"""Bookmarks: PEP native bookmarks (XEP-0402) kept in step with the older ways (XEP-0411).

XEP-0402 itself is plain PEP: a client publishes one item per room to the
account's ``urn:xmpp:bookmarks:1`` node (item id = the room's JID, payload
``<conference xmlns='urn:xmpp:bookmarks:1'/>``) with the publish-options
``persist_items=true``, ``max_items=max``, ``send_last_published_item=never``
and ``access_model=whitelist``. This module adds the compatibility, as
Prosody 0.12's mod_bookmarks does, with that node as the one source of truth:

* **Private XML** (XEP-0049, ``<storage xmlns='storage:bookmarks'/>``): a set
  is turned into XEP-0402 items — each ``<conference/>`` published when new
  or changed, the items of rooms no longer in the set retracted — and is not
  kept as private XML; a get returns the storage built from the items
  (``Point.PRIVATE_SET`` / ``Point.PRIVATE_GET`` of the ``private`` module).
* **XEP-0048 over PEP**: the ``storage:bookmarks`` node holds one item,
  ``current``, with the whole storage. A client's publish there is turned
  into XEP-0402 items the same way; every change of the XEP-0402 node (by a
  client, or by a conversion) rewrites ``current`` when the storage it
  shows changed, so XEP-0048 clients with ``storage:bookmarks+notify`` are
  notified (Prosody broadcasts the same).
* Both nodes are ``whitelist`` (only the owner): they start so whoever
  creates them (the module registers their defaults with PEP,
  ``PEP.node_defaults``, so a legacy client publishing without
  publish-options cannot make its bookmarks readable by contacts), the
  XEP-0402 node's options are put back when a conversion finds them changed
  (Prosody overrides them too), and an existing legacy node is made
  ``whitelist`` when a resource of the account first binds.
* On that first bind, bookmarks kept as private XML before this module ran
  and a legacy item published before it are merged into the XEP-0402 node
  (nothing removed), and the private XML is deleted (Prosody's migration).
  An account without bookmarks gets no node.

Conversion (XEP-0402 §5.3): the room JID is the item id; ``name``,
``autojoin`` (written ``true``, or left out when false), ``<nick/>`` and
``<password/>`` carry over; a legacy ``<conference/>``'s children of other
namespaces are the XEP-0402 ``<extensions/>`` and back. XEP-0048's
``<url/>`` bookmarks have no XEP-0402 form and are dropped (Prosody too).

Limits: one account keeps at most ``[pubsub] max_items`` bookmarks (what the
node's ``max_items=max`` means); a private XML set with more rooms, or with
a room whose item would pass ``[pubsub] max_item_size``, gets
``not-acceptable`` and changes nothing; a ``<conference/>`` without a valid
``jid`` gets ``bad-request``. A legacy PEP publish cannot be refused (it is
converted after it was stored): when it cannot be converted, ``current`` is
rewritten from the XEP-0402 items, which tells the client what is kept.

The loop guard: every conversion runs inside the account's PEP service
queue (:meth:`xmppd.pubsub.engine.PubSub.run`), where no other request of
that account runs, with the account marked as converting; the
``PEP_PUBLISHED``/``PEP_RETRACTED`` hooks ignore the events of a marked
account, so a conversion's own publishes and retracts never start the
reverse conversion. Events of clients' requests queue one conversion after
the request, which reads the nodes' state as it is then.

Disco (the account's bare JID, where Prosody puts them):
``urn:xmpp:bookmarks:1#compat``, ``urn:xmpp:bookmarks:1#compat-pep`` and
XEP-0411's ``urn:xmpp:bookmarks-conversion:0``. The bookmarks are PEP items
(and, before migration, private XML rows): they go with the account.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from xmppd.addresses import parse_jid
from xmppd.errors import StanzaError
from xmppd.logs import logger
from xmppd.module import Module, Point, Scope, hook
from xmppd.pubsub.engine import MAX_IDS, Item, Node
from xmppd.sm.stanzas import child_elements, deserialise

log = logger(__name__)

NS_BOOKMARKS = "urn:xmpp:bookmarks:1"
NS_LEGACY = "storage:bookmarks"
#: XEP-0411's feature (Prosody advertises it with XEP-0402's).
NS_CONVERSION = "urn:xmpp:bookmarks-conversion:0"
#: The id of the legacy node's one item (XEP-0048 §3).
LEGACY_ITEM = "current"

#: XEP-0402's node configuration (its publish-options).
BOOKMARKS_OPTIONS = {"persist_items": True, "max_items": None,
                     "send_last_published_item": "never", "access_model": "whitelist"}
#: The legacy node's (XEP-0048 §3 asks for persistent and whitelist).
LEGACY_OPTIONS = {"persist_items": True, "max_items": 1, "access_model": "whitelist"}


@dataclass(frozen=True)
class Bookmark:
    """One room bookmark, as both formats carry it (extensions as XML strings)."""

    jid: str
    name: str | None = None
    autojoin: bool = False
    nick: str | None = None
    password: str | None = None
    extensions: tuple[str, ...] = ()

    def pep_payload(self) -> domish.Element:
        """The XEP-0402 ``<conference/>`` (the item id is the room's JID)."""
        conference = domish.Element((NS_BOOKMARKS, "conference"))
        self._fill(conference)
        if self.extensions:
            holder = conference.addElement("extensions")
            for xml in self.extensions:
                _add_xml(holder, xml)
        return conference

    def legacy_element(self) -> domish.Element:
        """The XEP-0048 ``<conference jid=…/>``."""
        conference = domish.Element((NS_LEGACY, "conference"))
        conference["jid"] = self.jid
        self._fill(conference)
        for xml in self.extensions:
            _add_xml(conference, xml)
        return conference

    def _fill(self, conference: domish.Element) -> None:
        if self.name is not None:
            conference["name"] = self.name
        if self.autojoin:
            conference["autojoin"] = "true"
        if self.nick is not None:
            conference.addElement("nick", content=self.nick)
        if self.password is not None:
            conference.addElement("password", content=self.password)


def _add_xml(parent: domish.Element, xml: str) -> None:
    """Add an element kept as XML (parsed in a wrapper: a root's own text would be lost)."""
    wrapper = deserialise(f"<kept>{xml}</kept>")
    for element in child_elements(wrapper) if wrapper is not None else []:
        parent.addChild(element)


def _boolean(value: str | None) -> bool:
    return value in ("true", "1")


def _text(conference: domish.Element, name: str) -> str | None:
    for child in child_elements(conference):
        if child.name == name and child.uri == conference.uri:
            return str(child)
    return None


def from_pep_item(item: Item) -> Bookmark:
    """A XEP-0402 item's bookmark (just its JID when the payload is not a conference)."""
    conference = item.payload()
    if conference is None or (conference.uri, conference.name) != (NS_BOOKMARKS, "conference"):
        return Bookmark(item.id)
    extensions: list[str] = []
    for child in child_elements(conference):
        if child.name == "extensions" and child.uri == NS_BOOKMARKS:
            extensions.extend(element.toXml() for element in child_elements(child))
    return Bookmark(item.id, conference.getAttribute("name"),
                    _boolean(conference.getAttribute("autojoin")),
                    _text(conference, "nick"), _text(conference, "password"), tuple(extensions))


def from_legacy(storage: domish.Element, strict: bool) -> dict[str, Bookmark]:
    """The bookmarks of a XEP-0048 ``<storage/>`` by room JID (the last of a JID wins).

    ``strict``: a conference without a valid JID is ``bad-request`` (else skipped).
    """
    bookmarks: dict[str, Bookmark] = {}
    for conference in child_elements(storage):
        if (conference.uri, conference.name) != (NS_LEGACY, "conference"):
            continue  # <url/> bookmarks have no XEP-0402 form
        room = parse_jid(conference.getAttribute("jid"))
        if room is None:
            if strict:
                raise StanzaError("bad-request", "a conference bookmark needs a valid jid")
            continue
        extensions = tuple(child.toXml() for child in child_elements(conference)
                           if child.uri != NS_LEGACY)
        bookmark = Bookmark(room.full(), conference.getAttribute("name"),
                            _boolean(conference.getAttribute("autojoin")),
                            _text(conference, "nick"), _text(conference, "password"), extensions)
        bookmarks.pop(bookmark.jid, None)
        bookmarks[bookmark.jid] = bookmark
    return bookmarks


def legacy_storage(bookmarks: Iterable[Bookmark]) -> domish.Element:
    """A XEP-0048 ``<storage/>`` holding the bookmarks."""
    storage = domish.Element((NS_LEGACY, "storage"))
    for bookmark in bookmarks:
        storage.addChild(bookmark.legacy_element())
    return storage


def _legacy_of(node: Node | None) -> domish.Element | None:
    """The storage in a legacy node's last item, if it holds one."""
    payload = node.last.payload() if node is not None and node.last is not None else None
    if payload is None or (payload.uri, payload.name) != (NS_LEGACY, "storage"):
        return None
    return payload


class Bookmarks(Module):
    """XEP-0411 conversion between private XML, XEP-0048 PEP and XEP-0402 bookmarks."""

    name = "bookmarks"
    features = {Scope.ACCOUNT: [NS_BOOKMARKS + "#compat", NS_BOOKMARKS + "#compat-pep",
                                NS_CONVERSION]}

    def __init__(self, server: Any, settings: Any = None):
        super().__init__(server, settings)
        #: Accounts a conversion is running for (the loop guard).
        self._converting: set[str] = set()
        #: Accounts whose legacy node and old bookmarks were seen to since start.
        self._prepared: set[str] = set()

    def startService(self) -> None:  # noqa: N802 - Twisted's API
        """New bookmark nodes start private, whoever creates them."""
        super().startService()
        if self.pep is not None:
            self.pep.node_defaults[NS_LEGACY] = LEGACY_OPTIONS
            self.pep.node_defaults[NS_BOOKMARKS] = BOOKMARKS_OPTIONS

    def disco_features(self, scope: Scope, target: Any = None) -> Iterable[str]:
        """The compat features, while PEP is there to convert to."""
        return self.features.get(scope, ()) if self.pep is not None else ()

    @property
    def pep(self) -> Any:
        """The PEP module (this module's dependency)."""
        return self.server.modules.get("pep")

    @property
    def max_bookmarks(self) -> int:
        """``[pubsub] max_items``: what the node's ``max_items=max`` keeps."""
        return self.pep.limits.max_items

    # -- running a conversion in the account's PEP queue --------------------------------

    def _convert(self, username: str, function: Any, *args: Any) -> defer.Deferred:
        """Run ``function(username, nodes, *args)`` in the account's queue, marked."""
        pep = self.pep
        if pep is None:
            return defer.fail(StanzaError("service-unavailable"))

        @defer.inlineCallbacks
        def marked(nodes):
            self._converting.add(username)
            try:
                result = yield function(username, nodes, *args)
            finally:
                self._converting.discard(username)
            return result

        return pep.engine.run(pep.service_of(username), marked)

    def _later(self, username: str, function: Any, *args: Any) -> None:
        """Queue a conversion after the current request (tracked; failures logged)."""
        self.server.sessions.guard(self._convert(username, function, *args), None)

    @defer.inlineCallbacks
    def _bookmarks(self, username: str, nodes: dict[str, Node]):
        """The XEP-0402 bookmarks by room JID, oldest first."""
        node = nodes.get(NS_BOOKMARKS)
        if node is None:
            return {}
        pep = self.pep
        items = yield pep.engine.get_items(pep.service_of(username), node)
        return {item.id: from_pep_item(item) for item in items}

    @defer.inlineCallbacks
    def _configure(self, username: str, node: Node, options: dict[str, Any]):
        """Put a node's options back when a client changed them."""
        wanted = dataclasses.replace(node.config, **options)
        if wanted != node.config:
            pep = self.pep
            log.info("resetting the options of {user}'s {node} node", user=username,
                     node=node.name)
            yield pep.engine.configure(pep.policy, pep.service_of(username), node, wanted)

    @defer.inlineCallbacks
    def _publish(self, username: str, nodes: dict[str, Node], node: str,
                 payload: domish.Element, item_id: str, options: dict[str, Any]):
        pep = self.pep
        service = pep.service_of(username)
        yield pep.engine.publish(pep.policy, service, nodes, jid.JID(service), node, payload,
                                 item_id, options)

    @defer.inlineCallbacks
    def _store(self, username: str, nodes: dict[str, Node], wanted: dict[str, Bookmark],
               synchronise: bool):
        """Make the XEP-0402 node hold the wanted bookmarks (and, synchronising, only them)."""
        current = yield self._bookmarks(username, nodes)
        kept = len(wanted) if synchronise else len(current.keys() | wanted.keys())
        if kept > self.max_bookmarks:
            raise StanzaError("not-acceptable",
                              f"at most {self.max_bookmarks} bookmarks can be stored")
        changed = {room: bookmark.pep_payload() for room, bookmark in wanted.items()
                   if current.get(room) != bookmark}
        limit = self.pep.limits.max_item_size
        for payload in changed.values():
            if len(payload.toXml().encode("utf-8")) > limit:
                raise StanzaError("not-acceptable", f"a bookmark is limited to {limit} bytes")
        node = nodes.get(NS_BOOKMARKS)
        if node is not None and (changed or synchronise):
            yield self._configure(username, node, BOOKMARKS_OPTIONS)
        for room, payload in changed.items():
            yield self._publish(username, nodes, NS_BOOKMARKS, payload, room, BOOKMARKS_OPTIONS)
        removed = [room for room in current if room not in wanted] if synchronise else []
        pep = self.pep
        for start in range(0, len(removed), MAX_IDS):
            yield pep.engine.retract(pep.policy, pep.service_of(username), nodes[NS_BOOKMARKS],
                                     removed[start:start + MAX_IDS])
        return bool(changed or removed)

    @defer.inlineCallbacks
    def _write_legacy(self, username: str, nodes: dict[str, Node]):
        """Rewrite the legacy node's ``current`` when the storage it shows changed."""
        bookmarks = yield self._bookmarks(username, nodes)
        node = nodes.get(NS_LEGACY)
        shown = _legacy_of(node)
        if node is not None:
            yield self._configure(username, node, LEGACY_OPTIONS)
            if shown is not None and from_legacy(shown, False) == bookmarks:
                return
        try:
            yield self._publish(username, nodes, NS_LEGACY,
                                legacy_storage(bookmarks.values()), LEGACY_ITEM, LEGACY_OPTIONS)
        except StanzaError as err:
            log.warn("{user}'s legacy bookmarks could not be written: {err}", user=username,
                     err=err.condition)

    # -- private XML (XEP-0049) -------------------------------------------------------------

    @hook(Point.PRIVATE_GET)
    def private_get(self, username: str, wanted: domish.Element, query: domish.Element):
        """``storage:bookmarks`` is built from the XEP-0402 items."""
        if (wanted.uri, wanted.name) != (NS_LEGACY, "storage") or self.pep is None:
            return None

        @defer.inlineCallbacks
        def build(username, nodes):
            bookmarks = yield self._bookmarks(username, nodes)
            query.addChild(legacy_storage(bookmarks.values()))
            return True

        return self._convert(username, build)

    @hook(Point.PRIVATE_SET)
    def private_set(self, username: str, element: domish.Element):
        """``storage:bookmarks`` is stored as XEP-0402 items (not as private XML)."""
        if (element.uri, element.name) != (NS_LEGACY, "storage") or self.pep is None:
            return None
        wanted = from_legacy(element, strict=True)

        @defer.inlineCallbacks
        def store(username, nodes):
            changed = yield self._store(username, nodes, wanted, synchronise=True)
            if changed or NS_LEGACY not in nodes:
                yield self._write_legacy(username, nodes)
            return True

        return self._convert(username, store)

    # -- PEP events ----------------------------------------------------------------------------

    @hook(Point.PEP_PUBLISHED)
    def published(self, username: str, node: str, item: Item) -> None:
        """A client's publish to either node: convert to the other, after its request."""
        if username in self._converting:
            return
        if node == NS_BOOKMARKS:
            self._later(username, self._write_legacy)
        elif node == NS_LEGACY:
            self._later(username, self._from_legacy_node)

    @hook(Point.PEP_RETRACTED)
    def retracted(self, username: str, node: str, ids: list[str] | None) -> None:
        """A client removed XEP-0402 items (or purged or deleted the node): rewrite legacy.

        Retracting or purging the legacy item removes no bookmark (XEP-0048
        clients store an empty ``<storage/>`` for that); deleting the legacy
        node makes the next bind create it again.
        """
        if username in self._converting:
            return
        if node == NS_BOOKMARKS:
            self._later(username, self._write_legacy)
        elif node == NS_LEGACY and ids is None:
            self._prepared.discard(username)

    @defer.inlineCallbacks
    def _from_legacy_node(self, username: str, nodes: dict[str, Node]):
        """Convert the legacy node's storage; if it cannot be, show what is kept."""
        storage = _legacy_of(nodes.get(NS_LEGACY))
        if storage is not None:
            try:
                yield self._store(username, nodes, from_legacy(storage, False), True)
            except StanzaError as err:
                log.info("{user}'s legacy PEP bookmarks were not converted: {err}",
                         user=username, err=err.text or err.condition)
        yield self._write_legacy(username, nodes)

    # -- the first bind: the legacy node and migration --------------------------------------

    @hook(Point.SESSION_BOUND)
    def session_bound(self, session: Any) -> None:
        """Once per account and start: make the legacy node safe, migrate old bookmarks."""
        username = session.username
        if username in self._prepared or self.pep is None:
            return
        self._prepared.add(username)
        self.server.sessions.guard(self._prepare_if_needed(username), None)

    @defer.inlineCallbacks
    def _prepare_if_needed(self, username: str):
        """One query first: most accounts have nothing to migrate or make private."""
        checks = ["EXISTS (SELECT 1 FROM pubsub_nodes WHERE service = ? AND node IN (?, ?))"]
        params = [self.pep.service_of(username), NS_LEGACY, NS_BOOKMARKS]
        if self.server.modules.get("private") is not None:
            checks.append("EXISTS (SELECT 1 FROM private_storage WHERE username = ? "
                          "AND namespace = ? AND name = 'storage')")
            params += [username, NS_LEGACY]
        rows = yield self.server.database.query("SELECT " + " OR ".join(checks), *params)
        if rows and rows[0][0]:
            yield self._convert(username, self._prepare)

    @defer.inlineCallbacks
    def _prepare(self, username: str, nodes: dict[str, Node]):
        rows = []
        if self.server.modules.get("private") is not None:
            rows = yield self.server.database.query(
                "SELECT xml FROM private_storage WHERE username = ? AND namespace = ? "
                "AND name = ?", username, NS_LEGACY, "storage")
        old: dict[str, Bookmark] = {}
        for row in rows:
            wrapper = deserialise(f"<stored>{row[0]}</stored>")
            for storage in child_elements(wrapper) if wrapper is not None else []:
                old.update(from_legacy(storage, False))
        storage = _legacy_of(nodes.get(NS_LEGACY))
        if storage is not None:
            old.update(from_legacy(storage, False))
        if old:
            try:
                yield self._store(username, nodes, old, synchronise=False)
            except StanzaError as err:
                log.warn("{user}'s old bookmarks could not be migrated: {err}",
                         user=username, err=err.text or err.condition)
                return
        if rows:
            yield self.server.database.execute(
                "DELETE FROM private_storage WHERE username = ? AND namespace = ? "
                "AND name = ?", username, NS_LEGACY, "storage")
        if old or NS_BOOKMARKS in nodes or NS_LEGACY in nodes:
            # An account without bookmarks gets no node: the defaults above
            # make the legacy node private when a client first publishes.
            yield self._write_legacy(username, nodes)

    @hook(Point.ACCOUNT_DELETED)
    def account_deleted(self, username: str) -> None:
        """The items and rows went with the account; a new one is prepared anew."""
        self._prepared.discard(username)
