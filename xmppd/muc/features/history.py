"""Discussion history of a room, replayed to joiners with XEP-0203 delays (XEP-0045 7.2.13).

* The room keeps its last ``historylength`` groupchat messages with a body
  (the configuration field; 0-100, default 20).
* A joiner gets them after its self-presence and before the subject, each
  with a ``<delay/>`` from the room, limited by its ``<history/>``
  (``maxchars``, ``maxstanzas``, ``seconds``, ``since``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from twisted.words.xish import domish

from xmppd.datetimes import parse_stamp as _parse_stamp
from xmppd.module import Point, hook
from xmppd.muc.config import (
    DEFAULT_HISTORY_LENGTH,
    MAX_HISTORY_LENGTH,
    ConfigField,
    RoomConfig,
    read_int,
    read_text,
)
from xmppd.muc.feature import MUCModule
from xmppd.muc.occupant import Occupant
from xmppd.muc.room import Room
from xmppd.muc.stanzas import NS_MUC, child
from xmppd.sm.stanzas import add_delay

NS_SID = "urn:xmpp:sid:0"


def parse_stamp(text: str) -> float | None:
    """POSIX time of a history request's ``since`` (a zone-less one read as UTC)."""
    return _parse_stamp(text, zone_required=False)


@dataclass
class HistoryEntry:
    """One groupchat message as broadcast (without 'to') and when it was sent."""

    stanza: domish.Element
    stamp: float
    #: The room's stanza-id on it (XEP-0359), if any.
    stanza_id: str | None = None


@dataclass
class HistoryRequest:
    """The limits a joiner asked for in ``<history/>`` (None: no limit)."""

    maxchars: int | None = None
    maxstanzas: int | None = None
    seconds: int | None = None
    since: float | None = None

    @classmethod
    def from_element(cls, element: domish.Element | None) -> HistoryRequest:
        """Parse a ``<history/>`` element; bad values are ignored."""
        request = cls()
        if element is None:
            return request
        for name in ("maxchars", "maxstanzas", "seconds"):
            value = element.getAttribute(name)
            if value is None:
                continue
            try:
                number = int(value)
            except ValueError:
                continue
            if number >= 0:
                setattr(request, name, number)
        since = element.getAttribute("since")
        if since:
            request.since = parse_stamp(since)
        return request


class History:
    """The last ``length`` groupchat messages of a room."""

    def __init__(self, length: int = DEFAULT_HISTORY_LENGTH) -> None:
        self._entries: deque[HistoryEntry] = deque(maxlen=max(length, 0))

    def resize(self, length: int) -> None:
        """Keep at most ``length`` messages from now on (dropping the oldest)."""
        if length != self._entries.maxlen:
            self._entries = deque(self._entries, maxlen=max(length, 0))

    def add(self, stanza: domish.Element, stamp: float, stanza_id: str | None = None) -> None:
        """Remember a broadcast message (``stanza_id``: the room's stanza-id on it)."""
        if self._entries.maxlen:
            self._entries.append(HistoryEntry(stanza, stamp, stanza_id))

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()

    def merge_older(self, older: list[HistoryEntry]) -> None:
        """Put messages read from an archive (oldest first) before the ones kept.

        A message already kept (the same room stanza-id) is not doubled;
        beyond the length the oldest go.
        """
        kept = {entry.stanza_id for entry in self._entries} - {None}
        merged = [e for e in older if e.stanza_id is None or e.stanza_id not in kept]
        self._entries = deque([*merged, *self._entries], maxlen=self._entries.maxlen)

    def forget_before(self, stamp: float) -> int:
        """Forget the messages older than ``stamp`` (expired from the archive); how many."""
        count = 0
        while self._entries and self._entries[0].stamp < stamp:
            self._entries.popleft()
            count += 1
        return count

    def find(self, stanza_id: str) -> HistoryEntry | None:
        """The kept message with this room stanza-id (XEP-0359), or None."""
        for entry in self._entries:
            if entry.stanza_id == stanza_id:
                return entry
        return None

    def remove(self, stanza_id: str) -> bool:
        """Forget the message with this room stanza-id; True if it was kept."""
        entry = self.find(stanza_id)
        if entry is None:
            return False
        self._entries.remove(entry)
        return True

    def __len__(self) -> int:
        return len(self._entries)

    def select(self, request: HistoryRequest, now: float, room_jid: str) -> list[domish.Element]:
        """The delayed copies of the messages the request allows, oldest first."""
        selected: list[domish.Element] = []
        chars = 0
        for entry in reversed(self._entries):
            if request.maxstanzas is not None and len(selected) >= request.maxstanzas:
                break
            if request.seconds is not None and now - entry.stamp > request.seconds:
                break
            if request.since is not None and entry.stamp <= request.since:
                break
            stanza = add_delay(entry.stanza, room_jid, entry.stamp)
            if request.maxchars is not None:
                chars += len(stanza.toXml())
                if chars > request.maxchars:
                    break
            selected.append(stanza)
        selected.reverse()
        return selected


def room_stanza_id(stanza: domish.Element, room_jid: str) -> str | None:
    """The id of the ``<stanza-id xmlns='urn:xmpp:sid:0'/>`` by the room on a message."""
    for element in stanza.elements(NS_SID, "stanza-id"):
        if element.getAttribute("by") == room_jid:
            return element.getAttribute("id")
    return None


def _read_length(var: str, values: list[str]) -> int:
    value = read_text(var, values)
    return DEFAULT_HISTORY_LENGTH if value == "" else read_int(var, value, 0, MAX_HISTORY_LENGTH)


FIELD = ConfigField(
    "historylength", f"Number of messages kept as history (0-{MAX_HISTORY_LENGTH})", 160,
    attribute="history_length", show=lambda c: str(c.history_length), read=_read_length,
)


class RoomHistory(MUCModule):
    """Keeps each room's recent messages and replays them to joiners."""

    name = "history"

    def history(self, room: Room) -> History:
        """The room's history (created with the configured length)."""
        history = room.data.get(self.name)
        if history is None:
            history = room.data[self.name] = History(room.config.history_length)
        return history

    @hook(Point.ROOM_CONFIG_FORM)
    def fields(self, room: Room, fields: list[ConfigField]) -> None:
        """The historylength field."""
        fields.append(FIELD)

    @hook(Point.ROOM_CONFIG_CHANGED)
    def resize(self, room: Room, old: RoomConfig) -> None:
        """Keep the configured number of messages from now on."""
        self.history(room).resize(room.config.history_length)

    @hook(Point.ROOM_MESSAGE)
    def remember(self, room: Room, occupant: Occupant, message: domish.Element) -> None:
        """Keep a broadcast message that has a body (not a bare subject change)."""
        if child(message, "body") is not None:
            self.history(room).add(message, self.server.reactor.seconds(),
                                   room_stanza_id(message, room.jid))

    @hook(Point.ROOM_JOINED)
    def replay(
        self, room: Room, occupant: Occupant, full: str, muc_x: domish.Element | None
    ) -> None:
        """Send the joining session the history its ``<history/>`` asks for."""
        history = room.data.get(self.name)
        if not history:
            return
        request = HistoryRequest.from_element(
            child(muc_x, "history", NS_MUC) if muc_x is not None else None
        )
        for message in history.select(request, self.server.reactor.seconds(), room.jid):
            room.send_to(message, full)
