"""The two written-down interfaces between the MUC service and what it hosts.

* :class:`RoomHost` is all a :class:`~xmppd.muc.room.Room` may use of the
  service: its domain, its module host (hooks and iq handlers), sending,
  the admin list, the per-occupant rate limit, and the
  callbacks through which the service stores, forgets or removes rooms.
* :class:`MUCContext` is all a MUC feature module may use of it (as
  ``self.server``; ``self.config`` is the ``[muc]`` section).

Both are small on purpose: a room or a module can be tested with a fake
that provides just these names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from twisted.words.xish import domish

if TYPE_CHECKING:
    from xmppd.module import ModuleHost
    from xmppd.muc.config import RoomConfig
    from xmppd.muc.room import Room
    from xmppd.ratelimit import TokenBucket
    from xmppd.storage.rooms import RoomStore


class RoomHost(Protocol):
    """What a room may use of the MUC service."""

    #: The service's domain: a room's JID is ``name@domain``.
    domain: str
    #: The MUC :class:`~xmppd.module.ModuleHost`: the room fires its hooks
    #: and answers iqs with its handlers (``Scope.ROOM``).
    modules: ModuleHost

    def send(self, stanza: domish.Element) -> None:
        """Send a stanza (addressed) to the router."""

    def is_admin(self, bare: str) -> bool:
        """True for service administrators (owners of every room)."""

    def message_bucket(self) -> TokenBucket:
        """A new per-occupant message rate limit."""

    def room_changed(self, room: Room) -> None:
        """The room's stored state changed (affiliations, subject): save it if persistent."""

    def room_configured(self, room: Room, old: RoomConfig) -> None:
        """A new configuration is in force: store, delete or forget the room."""

    def room_emptied(self, room: Room) -> None:
        """The last occupant left (a temporary room goes away)."""

    def room_destroyed(self, room: Room) -> None:
        """The room was destroyed: forget it and delete it from storage."""


@dataclass
class MUCContext:
    """What MUC feature modules may use of the running MUC service."""

    #: The service's domain.
    domain: str
    #: The reactor (its clock for time stamps and back-offs).
    reactor: Any
    #: The rooms by name (read-only for modules; a live view).
    rooms: Mapping[str, Room]
    #: True for service administrators (bare JID string).
    is_admin: Callable[[str], bool]
    #: The room store, or None when nothing is stored.
    store: RoomStore | None
    #: Queue a storage write: ``write(room name, function, *args)`` calls
    #: ``function(*args)`` after the writes queued before it (a failure is
    #: logged with the room's name).
    write: Callable[..., None]
    #: The MUC :class:`~xmppd.module.ModuleHost` (set once it is built).
    modules: ModuleHost | None = None
