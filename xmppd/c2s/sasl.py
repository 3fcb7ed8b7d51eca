"""SASL for client streams (RFC 6120 section 6): SCRAM-SHA-256(-PLUS), SCRAM-SHA-1(-PLUS), PLAIN.

The mechanisms here know nothing about XML: the stream hands them decoded
payloads (``bytes``, or ``None`` when the client sent no initial response)
and gets back a Deferred firing with :class:`Challenge` or :class:`Success`,
or failing with :class:`SASLFailure` whose ``condition`` is the RFC 6120
failure condition to report.

Authentication goes through the ``twisted.cred`` portal of
:mod:`xmppd.auth`. SCRAM runs the exchange with the ``scramp`` package over the
keys from the account store; for an unknown (or unusable) username the
exchange runs with fake keys derived deterministically from the username, so
the client cannot tell a missing account from a wrong password.

Payloads and passwords are never logged.

A *gate* (``gate(username)``, given to :meth:`SASLServer.start`) is called as
soon as an exchange knows which account is being tried, before any
credential is checked; it refuses by raising :class:`SASLFailure` (the
server's back-off after failed attempts uses it). Each exchange keeps that
username in ``username_tried`` (None while unknown or not a valid username).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import scramp
from twisted.cred import credentials
from twisted.cred import error as cred_error
from twisted.internet import defer
from twisted.words.protocols.jabber import jid

from xmppd.addresses import JID_ERRORS
from xmppd.auth import IAccount, ScramVerified
from xmppd.logs import logger
from xmppd.storage.accounts import SCRAM_ITERATIONS, InvalidUsername, prepare_username

NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"

SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1")
#: With channel binding (RFC 5802 §6), offered on TLS when the connection
#: gives binding data (:mod:`xmppd.c2s.channel_binding`).
PLUS_MECHANISMS = ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS")
PLAIN = "PLAIN"
ALL_MECHANISMS = (*SCRAM_MECHANISMS, PLAIN)

_HASHES = {"SCRAM-SHA-256": hashlib.sha256, "SCRAM-SHA-1": hashlib.sha1}

log = logger(__name__)

Gate = Callable[[str | None], None]


def _open_gate(username: str | None) -> None:
    """The default gate: every attempt may proceed."""


class SASLFailure(Exception):
    """The exchange failed; ``condition`` is the RFC 6120 6.5 failure condition."""

    def __init__(self, condition: str, text: str | None = None):
        super().__init__(condition, text)
        self.condition = condition
        self.text = text


@dataclass(frozen=True)
class Challenge:
    """The server needs another response from the client."""

    data: bytes


@dataclass(frozen=True)
class Success:
    """The client is authenticated as ``username``; ``data`` is extra success data."""

    username: str
    data: bytes | None = None


def decode_payload(text: str) -> bytes | None:
    """Decode the base64 text of an auth/response element.

    An empty element means "no data" (``None``); a single ``=`` means
    empty data (RFC 6120 6.4.2). Bad base64 fails with ``incorrect-encoding``.
    """
    text = text.strip()
    if not text:
        return None
    if text == "=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SASLFailure("incorrect-encoding") from None


def encode_payload(data: bytes | None) -> str:
    """Base64 text for a challenge or success element ('=' for empty data)."""
    if data is None:
        return ""
    if not data:
        return "="
    return base64.b64encode(data).decode("ascii")


def decode_utf8(data: bytes) -> str:
    """A SASL payload as text (``malformed-request`` when it is not UTF-8)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SASLFailure("malformed-request", "the payload is not UTF-8") from None


def _check_authzid(authzid: str, username: str | None, domain: str) -> None:
    """An authorization identity must be empty or the user's own bare JID."""
    if not authzid:
        return
    try:
        requested = jid.JID(authzid)
    except JID_ERRORS:
        raise SASLFailure("invalid-authzid") from None
    if (
        username is None
        or requested.resource is not None
        or requested.user != username
        or requested.host != domain
    ):
        raise SASLFailure("invalid-authzid")


def username_from_authcid(authcid: str, domain: str) -> str | None:
    """The normalised username for an authentication identity, or None."""
    if "@" in authcid:
        # Tolerate clients that send their bare JID as authcid.
        local, _, host = authcid.rpartition("@")
        try:
            if jid.JID(host).host != domain:
                return None
        except JID_ERRORS:
            return None
        authcid = local
    try:
        return prepare_username(authcid)
    except InvalidUsername:
        return None


@defer.inlineCallbacks
def login(portal: Any, creds: Any):
    """Log in through the portal; fire with the username or fail with SASLFailure."""
    try:
        _iface, avatar, _logout = yield portal.login(creds, None, IAccount)
    except cred_error.UnauthorizedLogin:
        raise SASLFailure("not-authorized") from None
    except Exception:
        log.failure("portal login failed")
        raise SASLFailure("temporary-auth-failure") from None
    return avatar.username


class PlainMechanism:
    """SASL PLAIN (RFC 4616), checked through the portal."""

    name = PLAIN

    def __init__(self, portal: Any, domain: str, gate: Gate = _open_gate):
        self.portal = portal
        self.domain = domain
        self.gate = gate
        self.username_tried: str | None = None
        self._done = False

    def step(self, response: bytes | None) -> defer.Deferred:
        """Process the client's (initial) response."""
        return defer.maybeDeferred(self._step, response)

    def _step(self, response: bytes | None):
        if self._done:
            raise SASLFailure("malformed-request", "the exchange is over")
        if response is None:
            # No initial response: ask for it with an empty challenge.
            return Challenge(b"")
        self._done = True
        parts = response.split(b"\0")
        if len(parts) != 3:
            raise SASLFailure("malformed-request", "PLAIN needs authzid NUL authcid NUL password")
        authzid, authcid, password = (decode_utf8(p) for p in parts)
        if not authcid or not password:
            raise SASLFailure("malformed-request", "empty authcid or password")
        username = username_from_authcid(authcid, self.domain)
        self.username_tried = username
        self.gate(username)
        _check_authzid(authzid, username, self.domain)
        if username is None:
            raise SASLFailure("not-authorized")
        d = login(self.portal, credentials.UsernamePassword(username, password))
        d.addCallback(Success)
        return d


class _OriginalGs2Header:
    """Stands in for scramp's gs2 header when the client sent an authzid.

    scramp only accepts an empty authzid; we check the authzid ourselves,
    hand scramp the header without it, and give it back the header the client
    really used for the channel-binding comparison in client-final. If a
    future scramp ignores this attribute, the proof check fails: a safe
    failure (``not-authorized``).
    """

    def __init__(self, raw: bytes):
        self.raw = raw

    def make_cbind_input(self, channel_binding: Any) -> bytes:
        return self.raw


def _unescape_saslname(value: str) -> str:
    """Undo RFC 5802 saslname escaping (=2C, =3D)."""
    index = value.find("=")
    while index != -1:
        if value[index : index + 3] not in ("=2C", "=3D"):
            raise SASLFailure("malformed-request", "bad escape in SCRAM name")
        index = value.find("=", index + 3)
    return value.replace("=2C", ",").replace("=3D", "=")


class ScramMechanism:
    """SCRAM-SHA-256 / SCRAM-SHA-1 (RFC 5802, RFC 7677) over stored keys, with -PLUS.

    ``bindings`` (type -> data) are the connection's channel bindings: a
    -PLUS exchange must use one of them (``p=TYPE``), and a plain one whose
    client says it could bind but thinks we cannot (``y``) is refused while
    we can (a downgrade, RFC 5802 §6). scramp does not know
    ``tls-exporter``: the exchange runs through scramp as a plain one, with
    the gs2 header and binding data compared in client-final (the same way
    as an authzid, :class:`_OriginalGs2Header`).
    """

    def __init__(
        self,
        name: str,
        accounts: Any,
        portal: Any,
        domain: str,
        secret: bytes,
        gate: Gate = _open_gate,
        bindings: dict[str, bytes] | None = None,
    ):
        base = name.removesuffix("-PLUS")
        if base not in _HASHES:
            raise ValueError(f"not a SCRAM mechanism: {name}")
        self.plus = base != name
        self.bindings = bindings or {}
        if self.plus and not self.bindings:
            raise ValueError(f"{name} needs channel binding data")
        self.name = name
        #: The hash's mechanism name: the stored keys are the same for -PLUS.
        self.base = base
        self.gate = gate
        self.username_tried: str | None = None
        self.accounts = accounts
        self.portal = portal
        self.domain = domain
        self.secret = secret
        self._state = "start"
        self._server: Any = None
        self._username: str | None = None
        self._known = False

    def step(self, response: bytes | None) -> defer.Deferred:
        """Process the client's next message."""
        state = self._state
        if state == "start":
            if response is None:
                self._state = "first"
                return defer.succeed(Challenge(b""))
            return self._client_first(response)
        if state == "first":
            if response is None:
                return defer.fail(SASLFailure("malformed-request", "client-first missing"))
            return self._client_first(response)
        if state == "final":
            return self._client_final(response or b"")
        return defer.fail(SASLFailure("malformed-request", "the exchange is over"))

    def fake_keys(self, name: str) -> tuple[bytes, bytes, bytes, int]:
        """Deterministic per-username keys for accounts that do not exist (same for -PLUS)."""
        digest = _HASHES[self.base]().digest_size

        def derive(label: str) -> bytes:
            message = f"{self.base}\0{label}\0{name}".encode()
            return hmac.new(self.secret, message, hashlib.sha256).digest()

        salt = derive("salt")
        return salt, derive("stored")[:digest], derive("server")[:digest], SCRAM_ITERATIONS

    @defer.inlineCallbacks
    def _client_first(self, response: bytes):
        self._state = "busy"
        message = decode_utf8(response)
        try:
            flag, authzid_field, bare = message.split(",", 2)
        except ValueError:
            raise SASLFailure("malformed-request", "bad SCRAM client-first") from None
        binding = None
        if self.plus:
            cb_type = flag[2:] if flag.startswith("p=") else None
            if cb_type is None:
                raise SASLFailure("malformed-request", f"{self.name} needs channel binding")
            binding = self.bindings.get(cb_type)
            if binding is None:
                raise SASLFailure("malformed-request",
                                  f"channel binding type {cb_type} is not offered")
        elif flag not in ("n", "y"):
            # 'p=...' asks for channel binding, which the plain mechanisms lack.
            raise SASLFailure("malformed-request", "channel binding needs a -PLUS mechanism")
        elif flag == "y" and self.bindings:
            # The client could bind and thinks we cannot: someone removed
            # -PLUS from our offer (RFC 5802 §6).
            raise SASLFailure("not-authorized")
        if authzid_field and not authzid_field.startswith("a="):
            raise SASLFailure("malformed-request", "bad SCRAM authzid")
        authzid = _unescape_saslname(authzid_field[2:]) if authzid_field else ""
        first = bare.split(",", 1)[0]
        if not first.startswith("n="):
            raise SASLFailure("malformed-request", "bad SCRAM client-first")
        authcid = _unescape_saslname(first[2:])
        username = username_from_authcid(authcid, self.domain) if authcid else None
        self.username_tried = username
        self.gate(username)
        _check_authzid(authzid, username, self.domain)

        keys = None
        if username is not None:
            keys = yield self.accounts.scram_keys(username, self.base)
        if keys is None:
            auth_info = self.fake_keys(authcid)
        else:
            auth_info = keys.as_auth_info()
            self._known = True
        self._username = username

        server = scramp.ScramMechanism(self.base).make_server(lambda _name: auth_info)
        try:
            server.set_client_first(f"{'n' if binding is not None else flag},,{bare}")
            if authzid_field or binding is not None:
                server.gs2_header = _OriginalGs2Header(
                    f"{flag},{authzid_field},".encode() + (binding or b""))
            server_first = server.get_server_first()
        except scramp.ScramException:
            raise SASLFailure("malformed-request", "bad SCRAM client-first") from None
        self._server = server
        self._state = "final"
        return Challenge(server_first.encode("utf-8"))

    @defer.inlineCallbacks
    def _client_final(self, response: bytes):
        self._state = "done"
        message = decode_utf8(response)
        try:
            self._server.set_client_final(message)
        except scramp.ScramException as e:
            reason = getattr(getattr(e, "server_error", None), "value", None)
            if reason in ("invalid-proof", "channel-bindings-dont-match"):
                raise SASLFailure("not-authorized") from None
            raise SASLFailure("malformed-request", "bad SCRAM client-final") from None
        if not self._known or self._username is None:
            raise SASLFailure("not-authorized")
        server_final = self._server.get_server_final()
        username = yield login(self.portal, ScramVerified(self._username))
        return Success(username, server_final.encode("utf-8"))


class SASLServer:
    """The SASL mechanisms a server offers and the exchanges it starts."""

    def __init__(
        self,
        *,
        accounts: Any,
        portal: Any,
        domain: str,
        allow_plain_without_tls: bool = True,
        secret: bytes | None = None,
    ):
        self.accounts = accounts
        self.portal = portal
        self.domain = domain
        self.allow_plain_without_tls = allow_plain_without_tls
        self.secret = secret if secret is not None else os.urandom(32)

    def offered(self, secure: bool, bindings: dict[str, bytes] | None = None) -> list[str]:
        """Mechanism names to advertise on a stream (TLS on or not, its channel bindings)."""
        plus = list(PLUS_MECHANISMS) if bindings else []
        if secure or self.allow_plain_without_tls:
            return [*plus, *ALL_MECHANISMS]
        return [*plus, *SCRAM_MECHANISMS]

    def start(
        self, name: str, secure: bool, gate: Gate = _open_gate,
        bindings: dict[str, bytes] | None = None,
    ) -> PlainMechanism | ScramMechanism:
        """A fresh exchange for a mechanism; SASLFailure if it is not offered.

        ``gate(username)`` is called once the exchange knows the username;
        ``bindings`` are the connection's channel bindings (type -> data).
        """
        if name not in ALL_MECHANISMS and not (name in PLUS_MECHANISMS and bindings):
            raise SASLFailure("invalid-mechanism")
        if name not in self.offered(secure, bindings):
            raise SASLFailure("mechanism-too-weak")
        if name == PLAIN:
            return PlainMechanism(self.portal, self.domain, gate)
        return ScramMechanism(name, self.accounts, self.portal, self.domain, self.secret, gate,
                              bindings)
