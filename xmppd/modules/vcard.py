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
* Like Prosody, any ``vcard-temp:x:update`` element the client put in is
  removed and replaced by the server's: the server knows the stored vCard,
  and one authority for the hash avoids contacts seeing a stale one.
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
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import sqlite3
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.words.xish import domish

from xmppd.config import setting
from xmppd.errors import StanzaError
from xmppd.logs import logger
from xmppd.module import IQRequest, Module, Point, Scope, hook, iq_handler
from xmppd.sm.stanzas import deserialise

log = logger(__name__)

NS_VCARD = "vcard-temp"
NS_VCARD_UPDATE = "vcard-temp:x:update"

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
        #: Accounts whose hash is loading -> their stanzas held meanwhile.
        self._held: dict[str, list[tuple[Any, domish.Element]]] = {}

    @iq_handler("get", NS_VCARD, "vCard", Scope.ACCOUNT)
    @defer.inlineCallbacks
    def get(self, request: IQRequest):
        """The account's vCard, to anyone; an empty one if none is stored."""
        stored = yield self._stored(request.account)
        if stored is None:
            return domish.Element((NS_VCARD, "vCard"))
        return stored

    @iq_handler("set", NS_VCARD, "vCard", Scope.ACCOUNT)
    def set(self, request: IQRequest) -> defer.Deferred:
        """Replace the account's vCard: only from the account itself."""
        if not request.from_owner:
            raise StanzaError("forbidden")
        xml = request.payload.toXml()
        if len(xml.encode("utf-8")) > self.config.max_size:
            raise StanzaError("not-acceptable",
                              f"the vCard is larger than {self.config.max_size} bytes")
        account = request.account
        sha1_hex = photo_hash(request.payload)

        def stored(_: Any) -> None:
            self.set_photo_hash(account, sha1_hex)

        return self.server.database.run(_store, account, xml).addCallback(stored)

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

    @hook(Point.SESSION_BOUND)
    def _session_bound(self, session: Any) -> None:
        if self.config.presence_hash:
            self._load(session.username)

    @hook(Point.SESSION_ENDED)
    def _session_ended(self, session: Any) -> None:
        if not self.server.sessions.is_online(session.username):
            self._hashes.pop(session.username, None)

    @hook(Point.CLIENT_STANZA, priority=1000)
    def _client_stanza(self, session: Any, stanza: domish.Element) -> bool:
        """Add the avatar hash to available presence; hold stanzas while it loads."""
        username = session.username
        held = self._held.get(username)
        if held is not None:
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

        def loaded(vcard: domish.Element | None) -> None:
            self._loaded(username, photo_hash(vcard))

        def failed(failure: Failure) -> None:
            log.failure("loading the vCard photo hash of {user} failed", failure,
                        user=username)
            self._loaded(username, None)

        d = self._stored(username)
        d.addCallbacks(loaded, failed)
        d.addCallback(lambda _: self._release(username))
        self.server.sessions.guard(d, None)

    def _loaded(self, username: str, sha1_hex: str | None) -> None:
        # A set_photo_hash while loading is newer than what was read.
        if self.server.sessions.is_online(username):
            self._hashes.setdefault(username, sha1_hex)

    def _release(self, username: str) -> None:
        """Hand the stanzas held during the load on, in order."""
        held = self._held.pop(username, [])
        for session, stanza in held:
            if stanza.name == "presence" and not session.bound:
                continue  # its session ended meanwhile: its presence went with it
            self.server.sessions.from_client(session, stanza)


def _store(cursor: sqlite3.Cursor, username: str, xml: str) -> None:
    cursor.execute(
        "INSERT INTO vcards (username, vcard) "
        "SELECT username, ? FROM accounts WHERE username = ? "
        "ON CONFLICT(username) DO UPDATE SET vcard = excluded.vcard",
        (xml, username),
    )
