"""Discussion history of a room, replayed to joiners with XEP-0203 delays."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from twisted.words.xish import domish

from xmppd.muc.config import DEFAULT_HISTORY_LENGTH

NS_DELAY = "urn:xmpp:delay"


def format_stamp(seconds: float) -> str:
    """XEP-0082 DateTime (UTC) of a POSIX timestamp."""
    moment = datetime.fromtimestamp(seconds, UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text: str) -> float | None:
    """POSIX time of an XEP-0082 DateTime, or None when it does not parse."""
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass
class HistoryEntry:
    """One groupchat message as broadcast (without 'to') and when it was sent."""

    stanza: domish.Element
    stamp: float


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

    def add(self, stanza: domish.Element, stamp: float) -> None:
        """Remember a broadcast message."""
        if self._entries.maxlen:
            self._entries.append(HistoryEntry(stanza, stamp))

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()

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
            stanza = delayed(entry.stanza, room_jid, entry.stamp)
            if request.maxchars is not None:
                chars += len(stanza.toXml())
                if chars > request.maxchars:
                    break
            selected.append(stanza)
        selected.reverse()
        return selected


def delayed(stanza: domish.Element, room_jid: str, stamp: float) -> domish.Element:
    """A shallow copy of ``stanza`` with an XEP-0203 ``<delay/>`` from the room."""
    copy = domish.Element((stanza.uri, stanza.name), stanza.defaultUri, dict(stanza.attributes))
    copy.children = list(stanza.children)
    delay = domish.Element((NS_DELAY, "delay"))
    delay["from"] = room_jid
    delay["stamp"] = format_stamp(stamp)
    copy.children.append(delay)
    return copy
