"""vcard-temp (XEP-0054): one vCard per account, public, kept whole.

Prosody's mod_vcard is the behavioural reference:

* A get to a user's bare JID, from anyone, returns the stored vCard (vCards
  are public); a get without 'to' returns the sender's own. When none is
  stored the answer is an empty ``<vCard xmlns='vcard-temp'/>`` (XEP-0054
  §3.1 allows it or ``item-not-found``; Prosody's mod_vcard says
  ``item-not-found``, but clients such as slixmpp's XEP-0153 avatar code
  read the own vCard before changing it and give up on an error).
* A set is only for the account's own resources (no 'to', or the own bare
  JID); anyone else gets ``forbidden``. The ``<vCard/>`` is stored as it
  came (serialised XML), replacing the previous one; the answer is empty.
* The server has no vCard: a get to the domain gets ``item-not-found`` and a
  set ``forbidden``, as from Prosody.
* ``[vcard] max_size`` bounds the serialised vCard; a larger one gets
  ``not-acceptable`` (a permanent policy refusal, not the temporary
  shortage ``resource-constraint`` stands for). Whole stanzas are also
  bounded by ``[limits] max_stanza_size``.

The vCards are in the module's own table and are deleted with the account.

vCard-based avatars (XEP-0153), as Prosody 0.12's mod_vcard_legacy does:

* Every available presence a local client sends (no 'type': broadcast,
  directed, to a MUC room, so the room reflects it too) gets
  ``<x xmlns='vcard-temp:x:update'><photo>SHA1</photo></x>``, SHA1 being the
  lowercase hex SHA-1 of the decoded ``PHOTO/BINVAL`` of the stored vCard;
  ``<photo/>`` empty when there is no photo, no vCard, or the BINVAL is not
  base64 (whitespace in it is allowed, anything else makes it "no photo").
  The stanza is changed in place at ``Point.CLIENT_STANZA``, so the kept
  presence (``session.presence``, probe answers) carries it too.
* A ``vcard-temp:x:update`` element the client put in is removed and
  replaced by the server's (the server knows the avatar; one authority for
  the hash avoids contacts seeing a stale one: XEP-0398 §4 allows it),
  except one with an empty ``<photo/>``: XEP-0398 §4 says the client's
  "no avatar" is left untouched (Prosody leaves any ``<photo/>`` alone).
  (Prosody leaves ``<photo/>`` out when there is no avatar; XEP-0153 says an
  empty ``<photo/>`` means "no avatar" and a missing one "not ready", and
  the server is ready, so it is sent empty here.)
* Like Prosody, presence of any other type (unavailable, subscriptions,
  probes, errors) and non-presence stanzas are left alone.
* Like Prosody, a changed hash (a vCard set with another photo,
  :meth:`VCard.set_photo_hash`) does not resend presence: the next
  presence the client sends carries it (XEP-0153 clients send presence
  after publishing a vCard).
* The hash of each online account is kept in memory. The account's first
  bound resource starts loading it (``Point.SESSION_BOUND``); until it is
  loaded every stanza the account's sessions send is held, in order, and
  then handed on again, so the first presence already has the right hash
  and nothing sent after it overtakes it (a login's bind, roster get and
  presence are round trips: the hold is almost never used). At most
  ``[vcard] max_held`` stanzas are held per account; more get
  ``resource-constraint``. The hash is forgotten when the account's last
  session ends.
* ``[vcard] presence_hash = false`` switches the element off (live).

Conversion between PEP avatars and the vCard (XEP-0398), when the ``pep``
module is enabled; the account's disco#info then carries
``urn:xmpp:pep-vcard-conversion:0``. Prosody 0.12's mod_vcard_legacy is the
reference where the XEPs leave a choice:

* **PEP to vCard.** A vCard get merges the account's PEP data into the
  stored vCard when it is read (nothing is copied, so nothing goes stale):
  when the ``urn:xmpp:avatar:metadata`` node has an item, it decides the
  PHOTO and any stored PHOTO is left out. Its first ``<info/>`` without a
  'url' (XEP-0398 §3.1) names, by its 'id', the ``urn:xmpp:avatar:data``
  item whose base64 becomes ``PHOTO/BINVAL``, with the info's 'type' as
  ``TYPE``; the data must decode and hash to that id (§3.1's SHOULD),
  else no PHOTO. Only 'url' infos: ``TYPE`` + ``EXTVAL``, as Prosody.
  An empty ``<metadata/>`` (avatar disabled, XEP-0084 §4.5): no PHOTO. As
  in Prosody, the asker must be allowed to read the nodes (their access
  model); a stranger reading a presence-only avatar gets no PHOTO. When
  no vCard is stored, the PEP nickname (XEP-0172,
  ``http://jabber.org/protocol/nick``) is the ``NICKNAME`` (Prosody does
  this when there is no vCard4). With no metadata item (never published,
  purged, the node deleted, or ``pep`` disabled) the stored PHOTO shows.
* The presence hash follows: publishing metadata makes the chosen info's
  'id' (a SHA-1 in hex; anything else counts as no avatar) the hash at
  once (``Point.PEP_PUBLISHED``); a retraction, purge or deletion of
  metadata items recomputes it (``Point.PEP_RETRACTED``); at login it is
  read from the metadata's last item, or the stored vCard without one.
* **vCard to PEP** (§3.2). A vCard set from the owner first empties both
  avatar nodes without notifications (Prosody purges them on every set),
  then, when the PHOTO has a BINVAL that decodes, publishes the data
  (``<data xmlns='urn:xmpp:avatar:data'>`` with the base64, item id the
  SHA-1 hex of the bytes) and then the metadata (one ``<info/>`` with
  'bytes', 'id', 'type' — the vCard's ``TYPE``, else read from the image's
  signature, else left out as Prosody does — and 'width'/'height' only
  when the image's own PNG, GIF or JPEG header says them). Contacts with
  ``+notify`` caps get the notifications. A node the conversion creates is
  ``access_model=open`` (Prosody's defaults for these nodes; an existing
  node keeps its configuration: they are defaults, not preconditions).
  A set without a usable photo (none, EXTVAL only, bad base64) leaves both
  nodes empty: the avatar is gone from PEP and the presence hash, as in
  Prosody. Only then is the vCard stored; a failed publish fails the set.
* A photo whose data item would exceed ``[pubsub] max_item_size`` makes
  the set fail with ``not-acceptable`` before anything changes.
* **No loops**: the conversion's own retractions and publications do not
  go back through the PEP hooks (the set puts the hash itself), and the
  PEP-to-vCard direction writes nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import sqlite3
from collections import Counter
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from xmppd.avatars import (
    NS_AVATAR_DATA,
    NS_AVATAR_METADATA,
    SHA1_HEX,
    avatar_items,
    chosen_info,
    decode_base64,
    metadata_hash,
)
from xmppd.config import setting
from xmppd.errors import StanzaError
from xmppd.logs import logger
from xmppd.module import IQRequest, Module, Point, Scope, hook, iq_handler
from xmppd.pubsub.engine import MAX_IDS
from xmppd.sm.stanzas import deserialise

log = logger(__name__)

NS_VCARD = "vcard-temp"
NS_VCARD_UPDATE = "vcard-temp:x:update"
#: XEP-0398's disco feature on accounts.
NS_CONVERSION = "urn:xmpp:pep-vcard-conversion:0"
#: XEP-0172's PEP node (and payload namespace).
NS_NICK = "http://jabber.org/protocol/nick"
#: The configuration of avatar nodes the conversion creates (Prosody's).
AVATAR_NODE_OPTIONS = {"access_model": "open"}


SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS vcards (
        username TEXT PRIMARY KEY REFERENCES accounts(username) ON DELETE CASCADE,
        vcard TEXT NOT NULL
    )
    """,
)


@dataclass(frozen=True)
class VCardSettings:
    """``[vcard]``: how large a stored vCard may be; the avatar hash in presence."""

    max_size: int = setting(
        131072, "bytes of one user's vCard (serialised XML); a larger set gets "
        "`not-acceptable`", minimum=1024, live=True)
    presence_hash: bool = setting(
        True, "add the vCard photo's SHA-1 to users' available presence "
        "(XEP-0153 `vcard-temp:x:update`)", live=True)
    max_held: int = setting(
        64, "stanzas of one account held while its photo hash loads at login; "
        "more get `resource-constraint`", minimum=1, live=True)


def photo_hash(vcard: domish.Element | None) -> str | None:
    """The lowercase hex SHA-1 of a vCard's decoded ``PHOTO/BINVAL``.

    None when there is no vCard, no photo, an empty BINVAL or one that is
    not base64 (whitespace, as in line-wrapped base64, is ignored).
    """
    if vcard is None:
        return None
    for photo in vcard.elements(NS_VCARD, "PHOTO"):
        for binval in photo.elements(NS_VCARD, "BINVAL"):
            text = "".join(str(binval).split())
            if not text:
                return None
            try:
                data = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                return None
            return hashlib.sha1(data).hexdigest() if data else None
    return None


def vcard_photo(vcard: domish.Element) -> tuple[bytes, str | None] | None:
    """(bytes, TYPE or None) of a vCard's ``PHOTO/BINVAL``; None without usable data."""
    for photo in vcard.elements(NS_VCARD, "PHOTO"):
        binval = next(photo.elements(NS_VCARD, "BINVAL"), None)
        if binval is None:
            return None
        data = decode_base64(str(binval))
        if not data:
            return None
        kind = next(photo.elements(NS_VCARD, "TYPE"), None)
        return data, (str(kind).strip() or None) if kind is not None else None
    return None


def update_element(sha1_hex: str | None) -> domish.Element:
    """``<x xmlns='vcard-temp:x:update'><photo>SHA1</photo></x>`` (empty photo for None)."""
    x = domish.Element((NS_VCARD_UPDATE, "x"))
    photo = x.addElement("photo")
    if sha1_hex:
        photo.addContent(sha1_hex)
    return x


class VCard(Module):
    """vcard-temp get and set on behalf of accounts; the avatar hash in their presence."""

    name = "vcard"
    features = {Scope.SERVER: [NS_VCARD], Scope.ACCOUNT: [NS_VCARD]}
    schema = SCHEMA
    settings = VCardSettings

    def __init__(self, server: Any, settings: Any = None):
        super().__init__(server, settings)
        #: Online accounts' photo hashes (None: no photo), once loaded.
        self._hashes: dict[str, str | None] = {}
        #: How often each online account's hash was set (a recomputation
        #: started before a change must not undo it).
        self._changes: Counter[str] = Counter()
        #: Accounts whose hash is loading -> their stanzas held meanwhile.
        self._held: dict[str, list[tuple[Any, domish.Element]]] = {}
        #: The session whose held stanzas are handed on as its stream ends.
        self._flushing: Any = None
        #: Accounts whose vCard set is publishing to PEP (the loop guard).
        self._converting: Counter[str] = Counter()

    def _pep(self) -> Any:
        """The enabled ``pep`` module, or None (no conversion then)."""
        modules = self.server.modules
        return modules.get("pep") if modules is not None else None

    def disco_features(self, scope: Scope, target: Any = None) -> list[str]:
        """vcard-temp; on accounts also XEP-0398's conversion when PEP is enabled."""
        features = list(self.features.get(scope, ()))
        if scope is Scope.ACCOUNT and self._pep() is not None:
            features.append(NS_CONVERSION)
        return features

    @iq_handler("get", NS_VCARD, "vCard", Scope.ACCOUNT)
    @defer.inlineCallbacks
    def get(self, request: IQRequest):
        """The account's vCard, to anyone, with its PEP avatar and nickname merged in.

        An empty one if none is stored (and PEP adds nothing).
        """
        stored = yield self._stored(request.account)
        vcard = stored if stored is not None else domish.Element((NS_VCARD, "vCard"))
        pep = self._pep()
        if pep is not None and stored is None:
            exists = yield self.server.sessions.user_exists(request.account)
            if not exists:
                pep = None  # no PEP service to read (nor to load into its cache)
        if pep is not None:
            nick, photo = yield self._pep_view(pep, request.account, request.sender,
                                               want_nick=stored is None)
            if nick:
                vcard.addElement("NICKNAME", content=nick)
            if photo is not _KEEP:
                for child in list(vcard.elements(NS_VCARD, "PHOTO")):
                    vcard.children.remove(child)
                if photo is not None:
                    vcard.addChild(photo)
        return vcard

    @iq_handler("set", NS_VCARD, "vCard", Scope.ACCOUNT)
    @defer.inlineCallbacks
    def set(self, request: IQRequest):
        """Replace the account's vCard (only from the account itself); its photo goes to PEP."""
        if not request.from_owner:
            raise StanzaError("forbidden")
        xml = request.payload.toXml()
        if len(xml.encode("utf-8")) > self.config.max_size:
            raise StanzaError("not-acceptable",
                              f"the vCard is larger than {self.config.max_size} bytes")
        account = request.account
        sha1_hex = photo_hash(request.payload)
        pep = self._pep()
        if pep is not None:
            yield self._publish_avatar(pep, account, vcard_photo(request.payload))
        yield self.server.database.run(_store, account, xml)
        self.set_photo_hash(account, sha1_hex)

    @iq_handler("get", NS_VCARD, "vCard", Scope.SERVER)
    def server_get(self, request: IQRequest) -> None:
        """The server has no vCard."""
        raise StanzaError("item-not-found")

    @iq_handler("set", NS_VCARD, "vCard", Scope.SERVER)
    def server_set(self, request: IQRequest) -> None:
        """Nobody sets the server's vCard."""
        raise StanzaError("forbidden")

    def _stored(self, username: str) -> defer.Deferred:
        """Fire with the account's stored vCard element, or None."""

        def element(rows: list) -> domish.Element | None:
            stored = deserialise(rows[0][0]) if rows else None
            if stored is None or stored.uri != NS_VCARD or stored.name != "vCard":
                return None
            return stored

        return self.server.database.query(
            "SELECT vcard FROM vcards WHERE username = ?", username).addCallback(element)

    # -- conversion with PEP (XEP-0398) ------------------------------------------------

    def _pep_view(self, pep: Any, username: str, requester: jid.JID,
                  want_nick: bool) -> defer.Deferred:
        """Fire with (nickname or None, PHOTO element, None for none, or ``_KEEP``).

        ``_KEEP``: the metadata node has no item, the stored PHOTO stands.
        Read in the PEP service's queue, as the requester may see it.
        """
        service = pep.service_of(username)
        engine, policy = pep.engine, pep.policy

        @defer.inlineCallbacks
        def read(nodes: dict):
            nick = None
            node = nodes.get(NS_NICK)
            if want_nick and node is not None and node.last is not None:
                allowed = yield engine.may_access(policy, service, node, requester)
                payload = node.last.payload() if allowed else None
                if payload is not None and (payload.uri, payload.name) == (NS_NICK, "nick"):
                    nick = str(payload).strip() or None
            node = nodes.get(NS_AVATAR_METADATA)
            if node is None or node.last is None:
                return nick, _KEEP
            allowed = yield engine.may_access(policy, service, node, requester)
            info = chosen_info(node.last.payload()) if allowed else None
            if info is None:
                return nick, None
            photo = domish.Element((NS_VCARD, "PHOTO"))
            if info.getAttribute("type"):
                photo.addElement("TYPE", content=info["type"])
            if info.getAttribute("url"):
                photo.addElement("EXTVAL", content=info["url"])
                return nick, photo
            binval = yield self._avatar_data(pep, service, nodes, requester, info["id"])
            if binval is None:
                return nick, None
            photo.addElement("BINVAL", content=binval)
            return nick, photo

        return engine.run(service, read)

    @defer.inlineCallbacks
    def _avatar_data(self, pep: Any, service: str, nodes: dict, requester: jid.JID,
                     item_id: str):
        """The base64 of the data item ``item_id``, if it is there and hashes to the id."""
        node = nodes.get(NS_AVATAR_DATA)
        if node is None or not SHA1_HEX.fullmatch(item_id):
            return None
        allowed = yield pep.engine.may_access(pep.policy, service, node, requester)
        if not allowed:
            return None
        items = yield pep.engine.get_items(service, node, None, [item_id])
        payload = items[-1].payload() if items else None
        if payload is None or (payload.uri, payload.name) != (NS_AVATAR_DATA, "data"):
            return None
        data = decode_base64(str(payload))
        if not data or hashlib.sha1(data).hexdigest() != item_id.lower():
            return None
        return base64.b64encode(data).decode("ascii")

    @defer.inlineCallbacks
    def _publish_avatar(self, pep: Any, username: str, photo: tuple[bytes, str | None] | None):
        """Empty the avatar nodes, then publish the vCard's photo (if any) to them."""
        items = None
        if photo is not None:
            sha1_hex, data, metadata = avatar_items(*photo)
            limit = pep.limits.max_item_size
            if len(data.toXml().encode("utf-8")) > limit:
                raise StanzaError("not-acceptable", f"the photo is too large to publish as "
                                  f"an avatar (items are limited to {limit} bytes)")
            items = ((NS_AVATAR_DATA, data), (NS_AVATAR_METADATA, metadata))
        service = pep.service_of(username)
        engine, policy = pep.engine, pep.policy

        @defer.inlineCallbacks
        def convert(nodes: dict):
            for name in (NS_AVATAR_METADATA, NS_AVATAR_DATA):
                node = nodes.get(name)
                if node is None:
                    continue
                stored = yield engine.get_items(service, node)
                ids = [item.id for item in stored]
                for start in range(0, len(ids), MAX_IDS):
                    yield engine.retract(policy, service, node, ids[start:start + MAX_IDS],
                                         notify=False)
            for name, payload in items or ():
                options = None if name in nodes else dict(AVATAR_NODE_OPTIONS)
                yield engine.publish(policy, service, nodes, jid.JID(service), name, payload,
                                     sha1_hex, options)

        self._converting[username] += 1
        try:
            yield engine.run(service, convert)
        finally:
            self._converting[username] -= 1
            if not self._converting[username]:
                del self._converting[username]

    @hook(Point.PEP_PUBLISHED)
    def _pep_published(self, username: str, node: str, item: Any) -> None:
        """New avatar metadata: its id is the presence hash from now on."""
        if node != NS_AVATAR_METADATA or username in self._converting:
            return
        self.set_photo_hash(username, metadata_hash(item.payload()))

    @hook(Point.PEP_RETRACTED)
    def _pep_retracted(self, username: str, node: str, ids: Any) -> None:
        """Metadata items went: the hash is what is left (recomputed)."""
        if node != NS_AVATAR_METADATA or username in self._converting:
            return
        if username not in self._hashes:
            return  # offline, or loading (the load reads what is left)
        changes = self._changes[username]

        def computed(sha1_hex: str | None) -> None:
            if self._changes.get(username, 0) == changes:
                self.set_photo_hash(username, sha1_hex)

        d = self._current_hash(username)
        d.addCallback(computed)
        self.server.sessions.guard(d, None)

    @defer.inlineCallbacks
    def _current_hash(self, username: str):
        """The account's avatar hash: the PEP metadata's last item, else the stored vCard."""
        pep = self._pep()
        if pep is not None:

            def last(nodes: dict) -> tuple[bool, str | None]:
                node = nodes.get(NS_AVATAR_METADATA)
                if node is None or node.last is None:
                    return False, None
                return True, metadata_hash(node.last.payload())

            found, sha1_hex = yield pep.engine.run(pep.service_of(username), last)
            if found:
                return sha1_hex
        stored = yield self._stored(username)
        return photo_hash(stored)

    # -- the avatar hash in presence (XEP-0153) ------------------------------------

    def set_photo_hash(self, username: str, sha1_hex: str | None) -> None:
        """Make ``sha1_hex`` (lowercase hex SHA-1, None: no photo) the account's avatar hash.

        For the vCard set and for other avatar sources (XEP-0398). Only kept
        while the account is online (it is loaded at the next login
        otherwise); presence is not resent (as in Prosody): the account's
        next available presence carries it.
        """
        if sha1_hex is not None:
            sha1_hex = sha1_hex.lower() or None
        if username in self._hashes or username in self._held or (
                self.server.sessions.is_online(username)):
            self._hashes[username] = sha1_hex
            self._changes[username] += 1

    @hook(Point.SESSION_BOUND)
    def _session_bound(self, session: Any) -> None:
        if self.config.presence_hash:
            self._load(session.username)

    @hook(Point.SESSION_ENDED)
    def _session_ended(self, session: Any) -> None:
        if not self.server.sessions.is_online(session.username):
            self._hashes.pop(session.username, None)
            self._changes.pop(session.username, None)

    @hook(Point.CLIENT_STANZA, priority=1000)
    def _client_stanza(self, session: Any, stanza: domish.Element) -> bool:
        """Add the avatar hash to available presence; hold stanzas while it loads."""
        username = session.username
        held = self._held.get(username)
        if held is not None:
            if session is self._flushing:
                return False  # handed on as its stream ends, the hash unknown yet
            return self._hold(held, session, stanza)
        if stanza.name != "presence" or stanza.getAttribute("type") is not None:
            return False
        if not self.config.presence_hash:
            return False
        if username not in self._hashes:
            self._load(username)  # not loaded at bind (switched on since)
            held = self._held.get(username)
            if held is not None:
                return self._hold(held, session, stanza)
        children = stanza.children
        for index in range(len(children) - 1, -1, -1):
            child = children[index]
            if isinstance(child, domish.Element) and child.name == "x" and (
                    child.uri == NS_VCARD_UPDATE):
                if _empty_photo(child):
                    return False  # the client's "no avatar" (XEP-0398 §4)
                del children[index]
        stanza.addChild(update_element(self._hashes.get(username)))
        return False

    def _hold(self, held: list, session: Any, stanza: domish.Element) -> bool:
        if len(held) >= self.config.max_held:
            self.server.sessions.reply_error(
                stanza, "resource-constraint", "too many stanzas while the session starts")
        else:
            held.append((session, stanza))
        return True

    def _load(self, username: str) -> None:
        """Start loading an account's photo hash (once); its stanzas are held meanwhile."""
        if username in self._hashes or username in self._held:
            return
        self._held[username] = []

        def loaded(sha1_hex: str | None) -> None:
            self._loaded(username, sha1_hex)

        def failed(failure: Failure) -> None:
            log.failure("loading the vCard photo hash of {user} failed", failure,
                        user=username)
            self._loaded(username, None)

        d = self._current_hash(username)
        d.addCallbacks(loaded, failed)
        d.addCallback(lambda _: self._release(username))
        self.server.sessions.guard(d, None)

    def _loaded(self, username: str, sha1_hex: str | None) -> None:
        # A set_photo_hash while loading is newer than what was read.
        if self.server.sessions.is_online(username):
            self._hashes.setdefault(username, sha1_hex)

    @hook(Point.SESSION_CLOSING)
    def _closing(self, session: Any) -> bool:
        """A stream ends while its stanzas are held: hand them on now, in order.

        Its logout presence (with its status) must go out before the
        unavailable presence the server sends for the lost stream; the
        session manager unbinds the session after them.
        """
        held = self._held.get(session.username)
        if not held:
            return False
        mine = [stanza for owner, stanza in held if owner is session]
        if not mine:
            return False
        held[:] = [(owner, stanza) for owner, stanza in held if owner is not session]
        self._flushing = session
        try:
            for stanza in mine:
                self.server.sessions.from_client(session, stanza)
        finally:
            self._flushing = None
        return True

    def _release(self, username: str) -> None:
        """Hand the stanzas held during the load on, in order."""
        held = self._held.pop(username, [])
        for session, stanza in held:
            if stanza.name == "presence" and not session.bound:
                continue  # its session ended meanwhile: its presence went with it
            self.server.sessions.from_client(session, stanza)


#: ``_pep_view``'s "no PEP avatar: the stored PHOTO stands".
_KEEP = object()


def _empty_photo(update: domish.Element) -> bool:
    """True for ``<x xmlns='vcard-temp:x:update'><photo/></x>`` (an empty photo in it)."""
    return any(not str(photo).strip() for photo in update.elements(NS_VCARD_UPDATE, "photo"))


def _store(cursor: sqlite3.Cursor, username: str, xml: str) -> None:
    cursor.execute(
        "INSERT INTO vcards (username, vcard) "
        "SELECT username, ? FROM accounts WHERE username = ? "
        "ON CONFLICT(username) DO UPDATE SET vcard = excluded.vcard",
        (xml, username),
    )
