"""Occupant identifiers (XEP-0421): one stable, opaque id per user and room.

Every presence about an occupant and every message an occupant sends
through the room (groupchat, subject changes, private messages) carries
``<occupant-id xmlns='urn:xmpp:occupant-id:0' id='…'/>``. The id is the
base64 of HMAC-SHA256 over the room's JID and the user's real bare JID,
keyed with a secret of the MUC service: the same for a user in a room
across rejoins, nick changes and restarts, different in another room, and
not reversible to the JID. The secret is made once and kept in the
database (``service_secrets``, see :class:`xmppd.storage.rooms.RoomStore`);
a service without a database uses one made at start-up. Any
``<occupant-id/>`` a client put in its stanza is removed first, so nobody
can forge another's. Rooms advertise ``urn:xmpp:occupant-id:0``.

The room core hands the stanzas over at ``Point.ROOM_PRESENCE`` and
``Point.ROOM_RELAY``, before any recipient gets them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

from twisted.words.xish import domish

from xmppd.logs import logger
from xmppd.module import Point, Scope, hook
from xmppd.muc.feature import MUCModule
from xmppd.muc.occupant import Occupant
from xmppd.muc.room import Room

log = logger(__name__)

NS_OCCUPANT_ID = "urn:xmpp:occupant-id:0"
#: The name of the service's secret in the store.
SECRET_NAME = "occupant-id"


#: Occupant ids kept at most (then forgotten all at once and computed again).
MAX_KEPT_IDS = 10_000


class OccupantId(MUCModule):
    """Stamps room stanzas with the sender's occupant id (XEP-0421)."""

    name = "occupant-id"
    features = {Scope.ROOM: [NS_OCCUPANT_ID]}

    def __init__(self, server: Any, settings: Any = None) -> None:
        super().__init__(server, settings)
        self.secret = base64.b64encode(os.urandom(32)).decode()
        self._ids: dict[tuple[str, str, str], str] = {}

    def startService(self) -> None:  # noqa: N802 (Twisted API)
        """Read the service's secret (stored first if there is none yet)."""
        super().startService()
        store = self.server.store
        if store is None:
            return
        d = store.secret(self.server.domain, SECRET_NAME, self.secret)
        d.addCallback(self._use_secret)
        d.addErrback(lambda f: log.failure("could not read the occupant-id secret", f))

    def _use_secret(self, secret: str) -> None:
        self.secret = secret

    def occupant_id(self, room: Room, bare: str) -> str:
        """The occupant id of the user ``bare`` in ``room`` (an HMAC, kept once computed)."""
        key = (self.secret, room.jid, bare)
        found = self._ids.get(key)
        if found is None:
            message = f"{room.jid}\0{bare}".encode()
            digest = hmac.new(self.secret.encode(), message, hashlib.sha256).digest()
            found = base64.b64encode(digest).decode()
            if len(self._ids) >= MAX_KEPT_IDS:
                self._ids.clear()
            self._ids[key] = found
        return found

    @hook(Point.ROOM_PRESENCE)
    def stamp_presence(self, room: Room, occupant: Occupant, presence: domish.Element) -> None:
        """Replace any occupant id in a presence about ``occupant`` with the real one."""
        self._stamp(room, occupant, presence)

    @hook(Point.ROOM_RELAY)
    def stamp_message(self, room: Room, occupant: Occupant, message: domish.Element) -> None:
        """Replace any occupant id in a relayed message with the sender's."""
        self._stamp(room, occupant, message)

    @hook(Point.ROOM_SUBJECT)
    def stamp_subject(self, room: Room, message: domish.Element) -> None:
        """The subject sent to a joiner carries its setter's occupant id."""
        if room.subject and room.subject_by:
            self._stamp_as(room, room.subject_by, message)

    def _stamp(self, room: Room, occupant: Occupant, stanza: domish.Element) -> None:
        self._stamp_as(room, occupant.bare, stanza)

    def _stamp_as(self, room: Room, bare: str, stanza: domish.Element) -> None:
        stanza.children = [c for c in stanza.children if not _is_occupant_id(c)]
        stanza.addElement((NS_OCCUPANT_ID, "occupant-id"))["id"] = self.occupant_id(room, bare)


def _is_occupant_id(node: Any) -> bool:
    return (
        isinstance(node, domish.Element)
        and node.name == "occupant-id"
        and node.uri == NS_OCCUPANT_ID
    )
