"""Conversation logs (XEP-0045 10.2 ``muc#roomconfig_enablelogging``).

* The ``enablelogging`` configuration field.
* While it is on, every groupchat message and subject change the room
  broadcasts is appended to the room's log in the database (``muc_log``:
  time stamp, nick, the stanza as broadcast; see
  :class:`xmppd.storage.rooms.RoomStore`). Nothing is logged when the
  service has no database.

(The room core announces logging to joiners and on change, 170/171.)
"""

from __future__ import annotations

import datetime

from twisted.words.xish import domish

from xmppd.module import Point, hook
from xmppd.muc.config import ConfigField, boolean_field
from xmppd.muc.feature import MUCModule
from xmppd.muc.occupant import Occupant
from xmppd.muc.room import Room
from xmppd.stanza import serialize

FIELD = boolean_field("enablelogging", "Log the conversation", 170, "logging")


class ConversationLog(MUCModule):
    """Records the conversation of rooms with logging on."""

    name = "logging"

    @hook(Point.ROOM_CONFIG_FORM)
    def fields(self, room: Room, fields: list[ConfigField]) -> None:
        """The enablelogging field."""
        fields.append(FIELD)

    @hook(Point.ROOM_MESSAGE)
    def record(self, room: Room, occupant: Occupant, message: domish.Element) -> None:
        """Append a broadcast message to the room's log (rooms with logging on)."""
        store = self.server.store
        if not room.config.logging or store is None:
            return
        stamp = datetime.datetime.fromtimestamp(self.server.reactor.seconds(), datetime.UTC)
        self.server.write(
            room.name,
            store.append_log,
            self.server.domain,
            room.name,
            stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            occupant.nick,
            serialize(message),
        )
