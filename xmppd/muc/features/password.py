"""Password-protected rooms (XEP-0045 7.2.6, 10.2): the room secret.

* Two configuration fields: ``passwordprotectedroom`` (shown on while the
  room has a secret; off removes it, on needs one) and ``roomsecret``.
* A join to a protected room without the right ``<password/>`` is refused
  ``not-authorized`` (401, by the room); nobody is exempt (as Prosody:
  owners too), only the creator's first join predates the secret.
* Guessing is throttled per room and user: after ``password_max_failures``
  wrong passwords within ``password_failure_window`` seconds, that user's
  joins are refused ``resource-constraint`` (wait) for
  ``password_backoff`` seconds, doubling per further failure up to
  ``password_backoff_max`` (see :class:`xmppd.ratelimit.Backoff`). A
  destroyed room's record does not pass to a new room of the same name.
  The log names the user and the room, never the password tried.
* Disco: ``muc_passwordprotected`` or ``muc_unsecured``.
"""

from __future__ import annotations

import hmac
import itertools
from typing import Any

from xmppd.errors import StanzaError
from xmppd.logs import logger
from xmppd.module import Point, Scope, hook
from xmppd.muc.config import ConfigField, ConfigSubmission, read_secret
from xmppd.muc.feature import MUCModule
from xmppd.muc.room import JoinAttempt, Room
from xmppd.muc.stanzas import NS_MUC, child
from xmppd.ratelimit import Backoff

log = logger(__name__)

FIELDS = (
    ConfigField("passwordprotectedroom", "Password protected", 80, "boolean",
                show=lambda c: c.password_protected),
    ConfigField("roomsecret", "Password", 90, "text-private", "password", read=read_secret),
)


class Password(MUCModule):
    """The room secret and the back-off against guessing it."""

    name = "password"
    #: Switched off, rooms configured closed would let anyone in.
    essential = True

    def __init__(self, server: Any, settings: Any = None):
        super().__init__(server, settings)
        #: Wrong passwords per (room name, room incarnation, user).
        self.backoff = Backoff(
            server.reactor,
            threshold=settings.password_max_failures,
            base=settings.password_backoff,
            maximum=settings.password_backoff_max,
            window=settings.password_failure_window,
            max_keys=10_000,
        )
        self._incarnations = itertools.count(1)

    def disco_features(self, scope: Scope, target: Room | None = None) -> list[str]:
        """muc_passwordprotected or muc_unsecured."""
        if scope is not Scope.ROOM or target is None:
            return []
        return ["muc_passwordprotected" if target.config.password else "muc_unsecured"]

    @hook(Point.ROOM_CONFIG_FORM)
    def fields(self, room: Room, fields: list[ConfigField]) -> None:
        """passwordprotectedroom and roomsecret."""
        fields.extend(FIELDS)

    @hook(Point.ROOM_CONFIG_SUBMITTED)
    def protection(self, room: Room, submission: ConfigSubmission) -> None:
        """passwordprotectedroom off removes the secret; on needs one."""
        if "passwordprotectedroom" not in submission.values:
            return
        if not submission.values["passwordprotectedroom"]:
            submission.config = submission.config.replace(password="")
        elif not submission.config.password:
            raise StanzaError("not-acceptable", "a password-protected room needs a password")

    @hook(Point.ROOM_JOIN_CHECK, priority=10)
    def check(self, room: Room, attempt: JoinAttempt) -> None:
        """Raise not-authorized for a wrong password, resource-constraint while throttled."""
        secret = room.config.password
        if not secret:
            return
        bare = attempt.bare
        key = (room.name, self._incarnation(room), bare)
        wait = self.backoff.delay(key)
        if wait > 0:
            log.info(
                "room {room}: join by {user} refused, password attempts blocked for {wait:.0f} s",
                room=room.jid,
                user=bare,
                wait=wait,
            )
            raise StanzaError("resource-constraint", "too many wrong passwords, try again later")
        muc_x = attempt.muc_x
        given = child(muc_x, "password", NS_MUC) if muc_x is not None else None
        if given is not None and hmac.compare_digest(
            str(given).encode("utf-8"), secret.encode("utf-8")
        ):
            self.backoff.forget(key)
            return
        if given is not None:
            blocked = self.backoff.failed(key)
            log.info("room {room}: wrong password from {user}", room=room.jid, user=bare)
            if blocked:
                log.warn(
                    "room {room}: password attempts by {user} blocked for {wait:.0f} s",
                    room=room.jid,
                    user=bare,
                    wait=blocked,
                )
        raise StanzaError("not-authorized", "a password is required")

    def _incarnation(self, room: Room) -> int:
        """Tells a room apart from an earlier room of the same name."""
        return room.data.setdefault(self.name, next(self._incarnations))
