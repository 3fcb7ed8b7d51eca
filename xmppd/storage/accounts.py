"""User accounts: passwords are kept only as SCRAM salted keys.

For each account the store keeps, per SCRAM mechanism (RFC 5802, RFC 7677),
the salt, the iteration count, StoredKey and ServerKey. That is enough to run
a SCRAM exchange and to verify a PLAIN password, and never enough to log in
as the user if the database leaks.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

import scramp
from twisted.internet import defer, threads
from twisted.words.protocols.jabber import xmpp_stringprep

from xmppd.storage.database import Database

SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1")
SCRAM_ITERATIONS = 10000
MAX_PASSWORD_LENGTH = 1024


class AccountError(Exception):
    """Base class of account store errors; str() is a message for users."""


class AccountExists(AccountError):
    """The username is taken."""


class NoSuchAccount(AccountError):
    """There is no account with that username."""


class InvalidUsername(AccountError):
    """The username is not a valid JID local part."""


class InvalidPassword(AccountError):
    """The password is empty, too long, or not allowed by SASLprep."""


@dataclass(frozen=True)
class ScramKeys:
    """What a SCRAM server needs for one account and mechanism."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def as_auth_info(self) -> tuple[bytes, bytes, bytes, int]:
        """The tuple scramp's server expects from its auth function."""
        return (self.salt, self.stored_key, self.server_key, self.iterations)


def prepare_username(username: str) -> str:
    """Normalise a username with nodeprep; raise InvalidUsername if it fails."""
    try:
        prepped = xmpp_stringprep.nodeprep.prepare(username)
    except (UnicodeError, ValueError):
        raise InvalidUsername(f"invalid username {username!r}") from None
    if not prepped or len(prepped.encode("utf-8")) > 1023:
        raise InvalidUsername(f"invalid username {username!r}")
    return prepped


def derive_keys(password: str, iterations: int = SCRAM_ITERATIONS) -> dict[str, ScramKeys]:
    """Derive fresh salted keys for every mechanism (CPU-bound: call in a thread)."""
    if not password or len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidPassword("the password must be 1 to 1024 characters long")
    keys = {}
    for name in SCRAM_MECHANISMS:
        try:
            salt, stored, server, count = scramp.ScramMechanism(name).make_auth_info(
                password, iteration_count=iterations
            )
        except scramp.ScramException:
            raise InvalidPassword("the password contains characters SASLprep forbids") from None
        keys[name] = ScramKeys(salt, count, stored, server)
    return keys


def password_matches(password: str, mechanism: str, keys: ScramKeys) -> bool:
    """Check a clear-text password (from SASL PLAIN) against stored keys."""
    try:
        _, stored, _, _ = scramp.ScramMechanism(mechanism).make_auth_info(
            password, iteration_count=keys.iterations, salt=keys.salt
        )
    except scramp.ScramException:
        return False
    return hmac.compare_digest(stored, keys.stored_key)


class AccountStore:
    """Accounts in the SQLite database."""

    def __init__(self, database: Database):
        self.db = database

    @defer.inlineCallbacks
    def create(self, username: str, password: str):
        """Create an account; AccountExists if the name is taken."""
        username = prepare_username(username)
        keys = yield threads.deferToThread(derive_keys, password)
        created = yield self.db.run(_insert_account, username, keys)
        if not created:
            raise AccountExists(f"account {username!r} already exists")

    @defer.inlineCallbacks
    def set_password(self, username: str, password: str):
        """Replace an account's password (its FAST tokens go); NoSuchAccount if there is none."""
        username = prepare_username(username)
        keys = yield threads.deferToThread(derive_keys, password)
        updated = yield self.db.run(_replace_keys, username, keys)
        if not updated:
            raise NoSuchAccount(f"no account {username!r}")

    @defer.inlineCallbacks
    def delete(self, username: str):
        """Delete an account and everything stored for it (roster, offline...)."""
        username = prepare_username(username)
        deleted = yield self.db.run(_delete_account, username)
        if not deleted:
            raise NoSuchAccount(f"no account {username!r}")

    @defer.inlineCallbacks
    def exists(self, username: str):
        """Fire with True if the (already normalised) account exists."""
        rows = yield self.db.query("SELECT 1 FROM accounts WHERE username = ?", username)
        return bool(rows)

    @defer.inlineCallbacks
    def usernames(self):
        """Fire with every username, sorted."""
        rows = yield self.db.query("SELECT username FROM accounts ORDER BY username")
        return [row[0] for row in rows]

    @defer.inlineCallbacks
    def scram_keys(self, username: str, mechanism: str):
        """Fire with the ScramKeys for a mechanism, or None if no such account."""
        rows = yield self.db.query(
            "SELECT salt, iterations, stored_key, server_key FROM scram_keys "
            "WHERE username = ? AND mechanism = ?",
            username,
            mechanism,
        )
        if not rows:
            return None
        salt, iterations, stored, server = rows[0]
        return ScramKeys(bytes(salt), iterations, bytes(stored), bytes(server))

    @defer.inlineCallbacks
    def check_password(self, username: str, password: str):
        """Fire with True if the password is right for that account."""
        try:
            username = prepare_username(username)
        except InvalidUsername:
            return False
        keys = yield self.scram_keys(username, SCRAM_MECHANISMS[0])
        if keys is None:
            return False
        result = yield threads.deferToThread(password_matches, password, SCRAM_MECHANISMS[0], keys)
        return result


def _write_keys(cursor, username: str, keys: dict[str, ScramKeys]) -> None:
    cursor.execute("DELETE FROM scram_keys WHERE username = ?", (username,))
    cursor.executemany(
        "INSERT INTO scram_keys (username, mechanism, salt, iterations, stored_key, server_key) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (username, name, k.salt, k.iterations, k.stored_key, k.server_key)
            for name, k in keys.items()
        ],
    )


def _insert_account(cursor, username: str, keys: dict[str, ScramKeys]) -> bool:
    cursor.execute(
        "INSERT OR IGNORE INTO accounts (username, created) VALUES (?, ?)",
        (username, time.time()),
    )
    if cursor.rowcount == 0:
        return False
    _write_keys(cursor, username, keys)
    return True


def _replace_keys(cursor, username: str, keys: dict[str, ScramKeys]) -> bool:
    if cursor.execute("SELECT 1 FROM accounts WHERE username = ?", (username,)).fetchone() is None:
        return False
    _write_keys(cursor, username, keys)
    # A new password ends the FAST tokens (XEP-0484) issued under the old one.
    cursor.execute("DELETE FROM fast_tokens WHERE username = ?", (username,))
    return True


def _delete_account(cursor, username: str) -> bool:
    cursor.execute("DELETE FROM accounts WHERE username = ?", (username,))
    return cursor.rowcount > 0
