"""Server-wide abuse limits for client streams, shared by every c2s listener.

:class:`ClientGuard` keeps the state that must span connections:

* open connections per source address (``max_connections_per_ip``);
* sessions (bound or being bound) per account (``max_sessions_per_account``);
* failed SASL attempts per account and per source address, with exponential
  back-off (:class:`xmppd.ratelimit.Backoff`): while an account or address is
  backing off, its authentication attempts get ``temporary-auth-failure``.

A limit of 0 means "no limit". Only usernames and addresses are logged,
never secrets.
"""

from __future__ import annotations

from typing import Any

from xmppd.logs import logger
from xmppd.ratelimit import Backoff

log = logger(__name__)


class ClientGuard:
    """Connection, session and authentication limits shared across streams."""

    def __init__(
        self,
        clock: Any,
        *,
        max_connections_per_ip: int = 0,
        max_sessions_per_account: int = 0,
        auth_backoff_after: int = 3,
        auth_backoff: float = 2.0,
        auth_backoff_max: float = 300.0,
    ):
        self.clock = clock
        self.max_connections_per_ip = max_connections_per_ip
        self.max_sessions_per_account = max_sessions_per_account
        #: Failed authentications since start-up (for the metrics).
        self.failed_logins = 0
        self.connections: dict[str, int] = {}
        self.sessions: dict[str, dict[Any, str | None]] = {}
        self.auth_accounts = Backoff(
            clock, threshold=auth_backoff_after, base=auth_backoff, maximum=auth_backoff_max
        )
        self.auth_addresses = Backoff(
            clock, threshold=auth_backoff_after, base=auth_backoff, maximum=auth_backoff_max
        )

    @classmethod
    def from_limits(cls, clock: Any, limits: Any) -> ClientGuard:
        """A guard with the cross-connection limits of a ``[limits]`` section."""
        return cls(
            clock,
            max_connections_per_ip=limits.max_connections_per_ip,
            max_sessions_per_account=limits.max_sessions_per_account,
            auth_backoff_after=limits.auth_backoff_after,
            auth_backoff=limits.auth_backoff,
            auth_backoff_max=limits.auth_backoff_max,
        )

    # -- connections per address ------------------------------------------

    def connection_opened(self, host: str | None) -> bool:
        """Count a new connection; False if it exceeds the per-address limit.

        Every call must be matched by :meth:`connection_closed`, refused
        connections included.
        """
        if host is None:
            return True
        count = self.connections.get(host, 0) + 1
        self.connections[host] = count
        limit = self.max_connections_per_ip
        return not (limit and count > limit)

    def connection_closed(self, host: str | None) -> None:
        """Forget one connection from ``host``."""
        if host is None or host not in self.connections:
            return
        count = self.connections[host] - 1
        if count > 0:
            self.connections[host] = count
        else:
            del self.connections[host]

    # -- sessions per account -------------------------------------------------

    def reserve_session(self, username: str, owner: Any, resource: str | None) -> bool:
        """Reserve a session slot for ``owner`` (a stream) binding ``resource``.

        Binding a resource the account already has replaces that session, so
        it needs no new slot. False when the account has no slot left.
        """
        owners = self.sessions.setdefault(username, {})
        limit = self.max_sessions_per_account
        if limit and owner not in owners:
            others = [r for o, r in owners.items() if resource is None or r != resource]
            if len(others) >= limit:
                if not owners:
                    del self.sessions[username]
                return False
        owners[owner] = resource
        return True

    def session_bound(self, username: str, owner: Any, resource: str) -> None:
        """Record the resource a reserved slot ended up with."""
        self.sessions.setdefault(username, {})[owner] = resource

    def release_session(self, username: str | None, owner: Any) -> None:
        """Free ``owner``'s slot (idempotent)."""
        owners = self.sessions.get(username) if username is not None else None
        if owners is None:
            return
        owners.pop(owner, None)
        if not owners:
            del self.sessions[username]

    def session_count(self, username: str) -> int:
        """Sessions bound or being bound for an account."""
        return len(self.sessions.get(username, {}))

    # -- authentication back-off ------------------------------------------------

    def auth_delay(self, username: str | None, host: str | None) -> float:
        """Seconds before this account / address may try to authenticate again."""
        delays = [0.0]
        if username is not None:
            delays.append(self.auth_accounts.delay(username))
        if host is not None:
            delays.append(self.auth_addresses.delay(host))
        return max(delays)

    def auth_failed(self, username: str | None, host: str | None) -> None:
        """Record a failed authentication (wrong credentials)."""
        self.failed_logins += 1
        account_delay = self.auth_accounts.failed(username) if username is not None else 0.0
        address_delay = self.auth_addresses.failed(host) if host is not None else 0.0
        delay = max(account_delay, address_delay)
        if delay:
            log.info(
                "authentication failures for {username} from {host}: "
                "further attempts wait {delay:.0f} s",
                username=username or "(unknown)",
                host=host or "?",
                delay=delay,
            )

    def auth_succeeded(self, username: str) -> None:
        """The account authenticated: forget its failures (not the address's)."""
        self.auth_accounts.forget(username)
