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

vCard avatars (XEP-0153) need nothing more: the photo is in the vCard and
the hash in presence is the clients' business. The vCards are in the
module's own table and are deleted with the account.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from twisted.internet import defer
from twisted.words.xish import domish

from xmppd.config import setting
from xmppd.errors import StanzaError
from xmppd.module import IQRequest, Module, Scope, iq_handler
from xmppd.sm.stanzas import deserialise

NS_VCARD = "vcard-temp"

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
    """``[vcard]``: how large a stored vCard may be."""

    max_size: int = setting(
        131072, "bytes of one user's vCard (serialised XML); a larger set gets "
        "`not-acceptable`", minimum=1024, live=True)


class VCard(Module):
    """vcard-temp get and set on behalf of accounts."""

    name = "vcard"
    features = {Scope.SERVER: [NS_VCARD], Scope.ACCOUNT: [NS_VCARD]}
    schema = SCHEMA
    settings = VCardSettings

    @iq_handler("get", NS_VCARD, "vCard", Scope.ACCOUNT)
    @defer.inlineCallbacks
    def get(self, request: IQRequest):
        """The account's vCard, to anyone; an empty one if none is stored."""
        rows = yield self.server.database.query(
            "SELECT vcard FROM vcards WHERE username = ?", request.account)
        stored = deserialise(rows[0][0]) if rows else None
        if stored is None or stored.uri != NS_VCARD or stored.name != "vCard":
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
        return self.server.database.run(_store, request.account, xml).addCallback(
            lambda _: None)

    @iq_handler("get", NS_VCARD, "vCard", Scope.SERVER)
    def server_get(self, request: IQRequest) -> None:
        """The server has no vCard."""
        raise StanzaError("item-not-found")

    @iq_handler("set", NS_VCARD, "vCard", Scope.SERVER)
    def server_set(self, request: IQRequest) -> None:
        """Nobody sets the server's vCard."""
        raise StanzaError("forbidden")


def _store(cursor: sqlite3.Cursor, username: str, xml: str) -> None:
    cursor.execute(
        "INSERT INTO vcards (username, vcard) "
        "SELECT username, ? FROM accounts WHERE username = ? "
        "ON CONFLICT(username) DO UPDATE SET vcard = excluded.vcard",
        (xml, username),
    )
