"""Client-side SCRAM (RFC 5802, RFC 7677 for SHA-256) for the load generator.

The expensive step of SCRAM is PBKDF2 (the salted password, thousands of
HMAC rounds). A server keeps one salt and iteration count per account, so
:class:`ScramCache` keeps the salted password per (mechanism, account,
password, salt, iterations): a run pays PBKDF2 once per account, every later
login of that account only a few HMACs. With a cache file the keys also
survive from one generator process to the next (the driver passes one file
for a whole comparison, and the ``register`` workload fills it), so the
measured runs pay no PBKDF2 at all. A server restarted on the same accounts
keeps its salts; a new salt is simply a cache miss.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-1": "sha1"}
GS2_HEADER = b"n,,"


class ScramError(Exception):
    """The server's SCRAM messages were malformed or its signature wrong."""


def _attributes(message: bytes) -> dict[str, bytes]:
    """``a=1,b=2`` as a dict (values may contain '=', base64 padding)."""
    out = {}
    for part in message.split(b","):
        if len(part) >= 2 and part[1:2] == b"=":
            out[part[:1].decode()] = part[2:]
    return out


def saslname(username: str) -> str:
    """RFC 5802 escaping of '=' and ',' in a user name."""
    return username.replace("=", "=3D").replace(",", "=2C")


class ScramCache:
    """Salted passwords by (mechanism, account, password, salt, iterations); counts its work."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else None
        self.keys: dict[str, bytes] = {}
        self.computed = 0
        self.hits = 0
        self.loaded = 0
        if self.path is not None and self.path.exists():
            try:
                raw = json.loads(self.path.read_text())
                self.keys = {k: base64.b64decode(v) for k, v in raw.items()}
                self.loaded = len(self.keys)
            except (OSError, ValueError):
                self.keys = {}

    @staticmethod
    def key(mechanism: str, username: str, password: str, salt: bytes, iterations: int) -> str:
        """The cache key (the password is in it as a digest, not in clear)."""
        digest = hashlib.sha256(password.encode()).hexdigest()[:16]
        return f"{mechanism}|{username}|{digest}|{base64.b64encode(salt).decode()}|{iterations}"

    def salted_password(
        self, mechanism: str, username: str, password: str, salt: bytes, iterations: int
    ) -> bytes:
        """PBKDF2 of the password, computed at most once per key."""
        key = self.key(mechanism, username, password, salt, iterations)
        found = self.keys.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.computed += 1
        salted = hashlib.pbkdf2_hmac(HASHES[mechanism], password.encode(), salt, iterations)
        self.keys[key] = salted
        return salted

    def save(self) -> None:
        """Write the cache file (if any) atomically."""
        if self.path is None or not self.computed:
            return
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({k: base64.b64encode(v).decode()
                                   for k, v in self.keys.items()}))
        tmp.replace(self.path)

    def figures(self) -> dict[str, int]:
        """For the JSON line: PBKDF2 computations, cache hits, keys loaded from the file."""
        return {"scram_pbkdf2_computed": self.computed, "scram_cache_hits": self.hits,
                "scram_cache_loaded": self.loaded}


#: The generator process's cache (loadgen replaces it when given a file).
CACHE = ScramCache()


class ScramClient:
    """One SCRAM exchange, client side, without channel binding (gs2 header ``n,,``)."""

    def __init__(self, mechanism: str, username: str, password: str,
                 cache: ScramCache | None = None):
        if mechanism not in HASHES:
            raise ValueError(f"not a SCRAM mechanism: {mechanism}")
        self.mechanism = mechanism
        self.hash = HASHES[mechanism]
        self.username = username
        self.password = password
        self.cache = cache if cache is not None else CACHE
        self.nonce = base64.b64encode(secrets.token_bytes(18)).decode().encode()
        self.client_first_bare = b"n=" + saslname(username).encode() + b",r=" + self.nonce
        self.server_signature = b""

    def _hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, self.hash).digest()

    def first(self) -> bytes:
        """The client-first message."""
        return GS2_HEADER + self.client_first_bare

    def final(self, server_first: bytes) -> bytes:
        """The client-final message (with the proof) for the server-first message."""
        attrs = _attributes(server_first)
        nonce, salt, count = attrs.get("r"), attrs.get("s"), attrs.get("i")
        if nonce is None or salt is None or count is None or not nonce.startswith(self.nonce):
            raise ScramError(f"bad server-first message: {server_first[:200]!r}")
        try:
            iterations = int(count)
            salt_bytes = base64.b64decode(salt, validate=True)
        except ValueError:
            raise ScramError(f"bad server-first message: {server_first[:200]!r}") from None
        salted = self.cache.salted_password(self.mechanism, self.username, self.password,
                                            salt_bytes, iterations)
        client_key = self._hmac(salted, b"Client Key")
        stored_key = hashlib.new(self.hash, client_key).digest()
        without_proof = b"c=" + base64.b64encode(GS2_HEADER) + b",r=" + nonce
        auth_message = self.client_first_bare + b"," + server_first + b"," + without_proof
        signature = self._hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = self._hmac(salted, b"Server Key")
        self.server_signature = self._hmac(server_key, auth_message)
        return without_proof + b",p=" + base64.b64encode(proof)

    def verify(self, server_final: bytes) -> None:
        """Check the server's signature (``v=``); ScramError if wrong or an ``e=`` error."""
        attrs = _attributes(server_final)
        if "e" in attrs:
            raise ScramError(f"server error: {attrs['e'].decode(errors='replace')}")
        verifier = attrs.get("v")
        if verifier is None or not hmac.compare_digest(
            base64.b64decode(verifier), self.server_signature
        ):
            raise ScramError("wrong server signature")
