"""Private XML storage (XEP-0049): any XML a user keeps on the server for itself.

* ``set`` from one of the account's own resources (no 'to', or 'to' its
  bare JID): the ``<query/>`` holds exactly one element, stored whole per
  (user, namespace, element name), replacing what was stored; an element
  without children deletes the entry (as Prosody's mod_private does).
* ``get``: the ``<query/>`` holds one empty element naming what to fetch;
  the result holds the stored element, or that empty element when nothing
  is stored.
* Anyone else gets ``forbidden`` (XEP-0049 prefers it to
  ``service-unavailable``). No child or more than one: ``bad-request``
  (XEP-0049's "Bad Format", which RFC 6120 has no condition for). A child
  in a reserved namespace (``jabber:client``, ``jabber:server``,
  ``jabber:iq:private``, or none): ``not-acceptable`` (XEP-0049 §3).
* Limits: an element over ``[private] max_item_size`` bytes, or a new
  entry beyond ``max_items`` per user, get ``not-acceptable`` with a text:
  the request does not meet the server's criteria and retrying it will not
  help (``resource-constraint`` is a temporary, ``wait`` condition).

Entries live in the module's own table and are deleted with the account.

Other modules may keep some elements elsewhere: a get fires
``Point.PRIVATE_GET`` and a set ``Point.PRIVATE_SET`` (after the access and
namespace checks, before this module's table and limits); a hook that
returns True has answered (the ``bookmarks`` module keeps
``storage:bookmarks`` as PEP items, XEP-0411).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from twisted.internet import defer
from twisted.words.xish import domish

from xmppd.config import setting
from xmppd.errors import StanzaError
from xmppd.module import IQRequest, Module, Point, Scope, iq_handler
from xmppd.sm.stanzas import child_elements, deserialise

NS_PRIVATE = "jabber:iq:private"
#: Namespaces a stored element may not be in (XEP-0049 §3 reserves these).
RESERVED = frozenset({"", "jabber:client", "jabber:server", NS_PRIVATE})

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS private_storage (
        username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        xml TEXT NOT NULL,
        PRIMARY KEY (username, namespace, name)
    )
    """,
)


@dataclass(frozen=True)
class PrivateSettings:
    """``[private]``: how much private XML (XEP-0049) a user may keep."""

    max_item_size: int = setting(
        65536, "bytes of one stored private XML element (XEP-0049)", minimum=1, live=True)
    max_items: int = setting(
        64, "private XML elements one user may keep (XEP-0049)", minimum=1, live=True)


class PrivateStorage(Module):
    """jabber:iq:private get/set for an account's own resources."""

    name = "private"
    features = {Scope.SERVER: [NS_PRIVATE]}
    schema = SCHEMA
    settings = PrivateSettings

    @iq_handler("get", NS_PRIVATE, "query", Scope.ACCOUNT)
    @defer.inlineCallbacks
    def retrieve(self, request: IQRequest):
        """The stored element, or the requested empty element when there is none."""
        wanted = _the_child(request)
        query = domish.Element((NS_PRIVATE, "query"))
        handled = yield self.server.modules.fire_async(
            Point.PRIVATE_GET, request.account, wanted, query)
        if handled:
            return query
        rows = yield self.server.database.query(
            "SELECT xml FROM private_storage WHERE username = ? AND namespace = ? "
            "AND name = ?", request.account, wanted.uri, wanted.name)
        stored = _parse(rows[0][0]) if rows else None
        if stored is None:
            stored = domish.Element((wanted.uri, wanted.name))
        query.addChild(stored)
        return query

    @iq_handler("set", NS_PRIVATE, "query", Scope.ACCOUNT)
    @defer.inlineCallbacks
    def store(self, request: IQRequest):
        """Store (or, for an element without children, delete) one element."""
        element = _the_child(request)
        handled = yield self.server.modules.fire_async(Point.PRIVATE_SET, request.account, element)
        if handled:
            return None
        if not element.children:
            yield self.server.database.execute(
                "DELETE FROM private_storage WHERE username = ? AND namespace = ? "
                "AND name = ?", request.account, element.uri, element.name)
            return None
        xml = element.toXml()
        if len(xml.encode("utf-8")) > self.config.max_item_size:
            raise StanzaError("not-acceptable",
                              f"stored elements are limited to {self.config.max_item_size} bytes")
        stored = yield self.server.database.run(
            _store, request.account, element.uri, element.name, xml, self.config.max_items)
        if not stored:
            raise StanzaError("not-acceptable",
                              f"at most {self.config.max_items} elements can be stored")
        return None


def _the_child(request: IQRequest) -> domish.Element:
    """The one element in the query, after the access and namespace checks."""
    if not request.from_owner:
        raise StanzaError("forbidden")
    children = child_elements(request.payload)
    if len(children) != 1:
        raise StanzaError("bad-request", "the query must hold exactly one element")
    child = children[0]
    if (child.uri or "") in RESERVED:
        raise StanzaError("not-acceptable", "reserved namespace")
    return child


def _parse(xml: str) -> domish.Element | None:
    """A stored element back (None if the row is unusable).

    It is parsed inside a wrapper: a root element's own text would be lost.
    """
    wrapper = deserialise(f"<stored>{xml}</stored>")
    children = child_elements(wrapper) if wrapper is not None else []
    return children[0] if len(children) == 1 else None


def _store(cursor: sqlite3.Cursor, username: str, namespace: str, name: str, xml: str,
           max_items: int) -> bool:
    """Insert or replace one entry; False when a new one would exceed max_items."""
    cursor.execute(
        "SELECT COUNT(*) FROM private_storage WHERE username = ? "
        "AND NOT (namespace = ? AND name = ?)", (username, namespace, name))
    if cursor.fetchone()[0] >= max_items:
        return False
    cursor.execute(
        "INSERT INTO private_storage (username, namespace, name, xml) "
        "SELECT username, ?, ?, ? FROM accounts WHERE username = ? "
        "ON CONFLICT(username, namespace, name) DO UPDATE SET xml = excluded.xml",
        (namespace, name, xml, username),
    )
    return True
