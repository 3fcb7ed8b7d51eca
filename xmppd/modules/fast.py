"""FAST (XEP-0484): tokens for a one-round-trip login over SASL2, with the HT mechanisms.

* **offer**: SASL2's ``<inline/>`` lists ``<fast xmlns='urn:xmpp:fast:0'>``
  with the hashed-token mechanisms (draft-schmaus-kitten-sasl-ht) the
  connection can run: ``HT-SHA-256-EXPR`` (``tls-exporter``, TLS 1.3),
  ``HT-SHA-256-ENDP`` (``tls-server-end-point``), ``HT-SHA-256-UNIQ``
  (``tls-unique``: never, the server offers no such binding) and
  ``HT-SHA-256-NONE`` (no channel binding).
* **issue**: a client that authenticated (any mechanism) and says who it is
  (``<user-agent id=UUID/>``) asks with ``<request-token mechanism=…/>``
  inside ``<authenticate/>``; ``<success/>`` carries ``<token token=…
  expiry=…/>``, valid ``[fast] token_lifetime`` seconds for that mechanism
  and that user agent only. Other tokens of that user agent that were not
  used for this login go; at most ``[fast] max_tokens`` per account are kept
  (the oldest go).
* **use**: ``<authenticate mechanism='HT-SHA-256-…'>`` with the initial
  response ``username NUL HMAC-SHA-256(token, "Initiator" || cb-data)`` and
  ``<fast xmlns='urn:xmpp:fast:0' count=N/>`` (``count`` optional, from
  0); the success's additional
  data is ``HMAC-SHA-256(token, "Responder" || cb-data)``. A token of
  another mechanism or user agent, a wrong one: ``not-authorized``; an
  expired one: ``credentials-expired``; a ``count`` not above the last one
  seen for the token (a replay): ``not-authorized``. A use makes the older
  tokens of that user agent invalid; a token is rotated (a new one in
  ``<success/>``) when a quarter of its lifetime is left, the old one stays
  valid until the new one is used.
* **invalidate**: ``<fast invalidate='true'/>`` ends the token used to log in.
* **storage**: the table ``fast_tokens`` (migration 9), which keeps the
  SHA-256 of each token, never the token. Tokens are longer than SHA-256's
  block, so HMAC keyed with the token is HMAC keyed with its hash
  (RFC 2104 §2): the server checks logins from the hash alone. Tokens go
  with the account, and when its password changes
  (:class:`~xmppd.storage.accounts.AccountStore`); ``xmppdctl fast list``
  and ``xmppdctl fast revoke`` show and end them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.words.xish import domish

from xmppd.auth import ScramVerified
from xmppd.c2s import sasl
from xmppd.c2s.channel_binding import TLS_EXPORTER, TLS_SERVER_END_POINT
from xmppd.config import setting
from xmppd.datetimes import format_stamp
from xmppd.logs import logger
from xmppd.module import Inline, InlineResult, Module, inline_handler

log = logger(__name__)

NS_FAST = "urn:xmpp:fast:0"
TLS_UNIQUE = "tls-unique"
#: Mechanism -> the channel binding type it needs (None: no binding), preferred first.
MECHANISMS = {
    "HT-SHA-256-EXPR": TLS_EXPORTER,
    "HT-SHA-256-UNIQ": TLS_UNIQUE,
    "HT-SHA-256-ENDP": TLS_SERVER_END_POINT,
    "HT-SHA-256-NONE": None,
}
#: Characters of a token (base64url): 96 bytes, more than SHA-256's 64-byte block.
TOKEN_BYTES = 72


@dataclass
class FastSettings:
    """``[fast]``: FAST tokens (XEP-0484)."""

    token_lifetime: float = setting(
        21 * 86400.0, "seconds a FAST token (XEP-0484) stays valid", positive=True, live=True)
    max_tokens: int = setting(
        16, "FAST tokens kept per account (the oldest go)", minimum=1, live=True)


@dataclass(frozen=True)
class StoredToken:
    """A token's row: what the server knows of it (never the token itself)."""

    id: int
    username: str
    agent: str
    mechanism: str
    key: bytes
    issued: float
    expiry: float
    count: int
    software: str | None
    device: str | None


def token_key(token: str) -> bytes:
    """What is stored of a token: its SHA-256 (HMAC's own key for a key this long)."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def hashed_token(key: bytes, label: bytes, cb_data: bytes) -> bytes:
    """HMAC-SHA-256(token, label || cb-data), from the stored key."""
    return hmac.new(key, label + cb_data, hashlib.sha256).digest()


_COLUMNS = "id, username, agent, mechanism, token_key, issued, expiry, count, software, device"


def _row(row: tuple) -> StoredToken:
    values = list(row)
    values[4] = bytes(values[4])
    return StoredToken(*values)


class FastTokenStore:
    """The ``fast_tokens`` table."""

    def __init__(self, database: Any):
        self.db = database

    @defer.inlineCallbacks
    def tokens(self, username: str, agent: str | None = None):
        """Fire with an account's tokens (of one user agent), newest first."""
        sql = f"SELECT {_COLUMNS} FROM fast_tokens WHERE username = ?"
        params: list[Any] = [username]
        if agent is not None:
            sql += " AND agent = ?"
            params.append(agent)
        rows = yield self.db.query(sql + " ORDER BY issued DESC, id DESC", *params)
        return [_row(row) for row in rows]

    def issue(self, username: str, agent: str, mechanism: str, key: bytes, now: float,
              expiry: float, keep: int | None, limit: int, software: str | None = None,
              device: str | None = None) -> defer.Deferred:
        """Store a new token; the agent's others go but ``keep``; at most ``limit`` per account."""

        def work(cursor):
            cursor.execute("DELETE FROM fast_tokens WHERE username = ? AND expiry <= ?",
                           (username, now))
            cursor.execute("DELETE FROM fast_tokens WHERE username = ? AND agent = ? AND id != ?",
                           (username, agent, -1 if keep is None else keep))
            cursor.execute(
                "INSERT INTO fast_tokens (username, agent, mechanism, token_key, issued, expiry, "
                "count, software, device) VALUES (?, ?, ?, ?, ?, ?, -1, ?, ?)",
                (username, agent, mechanism, key, now, expiry, software, device))
            cursor.execute(
                "DELETE FROM fast_tokens WHERE username = ? AND id NOT IN (SELECT id FROM "
                "fast_tokens WHERE username = ? ORDER BY issued DESC, id DESC LIMIT ?)",
                (username, username, limit))

        return self.db.run(work)

    def used(self, token: StoredToken, count: int) -> defer.Deferred:
        """A token was used (with that count): the agent's older tokens go."""

        def work(cursor):
            cursor.execute("UPDATE fast_tokens SET count = ? WHERE id = ?", (count, token.id))
            cursor.execute(
                "DELETE FROM fast_tokens WHERE username = ? AND agent = ? AND expiry < ?",
                (token.username, token.agent, token.expiry))

        return self.db.run(work)

    def revoke(self, username: str, agent: str | None = None,
               token_id: int | None = None) -> defer.Deferred:
        """Delete an account's tokens (of one user agent, or one token); fire with how many."""

        def work(cursor):
            sql = "DELETE FROM fast_tokens WHERE username = ?"
            params: list[Any] = [username]
            if agent is not None:
                sql += " AND agent = ?"
                params.append(agent)
            if token_id is not None:
                sql += " AND id = ?"
                params.append(token_id)
            cursor.execute(sql, params)
            return cursor.rowcount

        return self.db.run(work)


class HashedTokenExchange:
    """One HT-SHA-256-* exchange (draft-schmaus-kitten-sasl-ht), a single round trip."""

    def __init__(self, module: FastTokens, negotiator: Any, name: str, gate: sasl.Gate):
        self.module = module
        self.name = name
        self.gate = gate
        self.portal = negotiator.factory.portal
        self.domain = negotiator.factory.domain
        request = negotiator.sasl2
        self.agent = request.agent_id
        self.fast = request.child(NS_FAST, "fast")
        cb_type = MECHANISMS[name]
        self.cb_data = b"" if cb_type is None else negotiator.channel_bindings()[cb_type]
        self.username_tried: str | None = None
        #: The token that logged the client in (after success).
        self.token: StoredToken | None = None
        self._started = False

    def step(self, response: bytes | None) -> defer.Deferred:
        """Check the client's hashed token; Success carries the server's."""
        if response is None and not self._started:
            self._started = True
            return defer.succeed(sasl.Challenge(b""))
        self._started = True
        return self._check(response or b"")

    def _count(self) -> int | None:
        text = self.fast.getAttribute("count") if self.fast is not None else None
        if text is None:
            return None
        if not text.isdigit() or len(text) > 18:
            raise sasl.SASLFailure("malformed-request", "count must be a positive integer")
        return int(text)

    @defer.inlineCallbacks
    def _check(self, response: bytes):
        authcid, separator, proof = response.partition(b"\0")
        if not separator or not authcid:
            raise sasl.SASLFailure("malformed-request", "expected username NUL hashed token")
        username = sasl.username_from_authcid(sasl.decode_utf8(authcid), self.domain)
        self.username_tried = username
        self.gate(username)
        count = self._count()
        if username is None or self.agent is None:
            raise sasl.SASLFailure("not-authorized")
        now = self.module.now()
        expected = hashed_token
        for token in (yield self.module.store.tokens(username, self.agent)):
            if not hmac.compare_digest(expected(token.key, b"Initiator", self.cb_data), proof):
                continue
            if token.mechanism != self.name:
                raise sasl.SASLFailure("not-authorized", "the token is for another mechanism")
            if token.expiry <= now:
                raise sasl.SASLFailure("credentials-expired", "the token expired")
            if count is not None and count <= token.count:
                raise sasl.SASLFailure("not-authorized", "the token count was seen already")
            yield self.module.store.used(token, token.count if count is None else count)
            self.token = token
            name = yield sasl.login(self.portal, ScramVerified(username))
            return sasl.Success(name, expected(token.key, b"Responder", self.cb_data))
        raise sasl.SASLFailure("not-authorized")


class FastTokens(Module):
    """XEP-0484: issues, checks, rotates and invalidates FAST tokens."""

    name = "fast"
    settings = FastSettings

    def __init__(self, server, settings=None):
        super().__init__(server, settings)
        self.store = FastTokenStore(server.database)

    def now(self) -> float:
        """The server clock."""
        return self.server.reactor.seconds()

    # -- the offer and the mechanisms ----------------------------------------------

    def sasl2_mechanisms(self, negotiator: Any) -> list[str]:
        """The HT mechanisms whose channel binding this connection has."""
        bindings = negotiator.channel_bindings()
        return [name for name, cb_type in MECHANISMS.items()
                if cb_type is None or cb_type in bindings]

    def sasl2_features(self, negotiator: Any) -> list[domish.Element]:
        """``<fast/>`` with the mechanisms, in SASL2's ``<inline/>``."""
        fast = domish.Element((NS_FAST, "fast"))
        for name in self.sasl2_mechanisms(negotiator):
            fast.addElement("mechanism", content=name)
        return [fast]

    def sasl2_exchange(self, negotiator: Any, mechanism: str,
                       gate: sasl.Gate) -> HashedTokenExchange:
        """A hashed-token exchange for this stream."""
        return HashedTokenExchange(self, negotiator, mechanism, gate)

    # -- inline requests ---------------------------------------------------------------

    @inline_handler(Inline.SASL2, NS_FAST, "fast", priority=10)
    def fast(self, negotiator: Any, element: domish.Element):
        """After a token login: invalidate it if asked, else rotate it when it gets old."""
        exchange = negotiator.sasl2.exchange
        token = getattr(exchange, "token", None) if isinstance(
            exchange, HashedTokenExchange) else None
        if token is None:
            return None
        if element.getAttribute("invalidate") in ("1", "true"):
            exchange.token = None
            log.info("{username}: FAST token invalidated by the client", username=token.username)
            return self.store.revoke(token.username, token_id=token.id).addCallback(
                lambda _: None)
        if negotiator.sasl2.child(NS_FAST, "request-token") is not None:
            return None  # a new one is on its way
        if token.expiry - self.now() < self.config.token_lifetime / 4:
            return self._issue(negotiator, token.mechanism)
        return None

    @inline_handler(Inline.SASL2, NS_FAST, "request-token", priority=10)
    def request_token(self, negotiator: Any, element: domish.Element):
        """``<request-token mechanism=…/>``: a new token in ``<success/>``."""
        mechanism = element.getAttribute("mechanism")
        if mechanism not in self.sasl2_mechanisms(negotiator):
            log.info("{username} asked for a FAST token for {mechanism}, not offered here",
                     username=negotiator.username, mechanism=mechanism)
            return None
        if negotiator.sasl2.agent_id is None:
            log.info("{username} asked for a FAST token without a user-agent id",
                     username=negotiator.username)
            return None
        return self._issue(negotiator, mechanism)

    @defer.inlineCallbacks
    def _issue(self, negotiator: Any, mechanism: str):
        request = negotiator.sasl2
        exchange = request.exchange
        used = getattr(exchange, "token", None) if isinstance(
            exchange, HashedTokenExchange) else None
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = self.now()
        expiry = now + self.config.token_lifetime
        yield self.store.issue(
            negotiator.username, request.agent_id, mechanism, token_key(token), now, expiry,
            keep=used.id if used is not None else None, limit=self.config.max_tokens,
            software=request.software, device=request.device)
        log.info("{username}: FAST token issued for {mechanism}",
                 username=negotiator.username, mechanism=mechanism)
        element = domish.Element((NS_FAST, "token"))
        element["token"] = token
        element["expiry"] = format_stamp(expiry)
        return InlineResult(element)
