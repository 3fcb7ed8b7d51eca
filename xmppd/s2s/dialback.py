"""Server Dialback keys (XEP-0185, as XEP-0220 uses them).

A key is ``HMAC-SHA256(SHA256(secret) in hex, "Receiving Originating StreamID")``
in hex: the originating server sends it on its stream to the receiving
server, which asks the originating domain's authoritative server whether it
is valid for that stream id. Only a server knowing the secret can answer.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

NS_DIALBACK = "jabber:server:dialback"
NS_DIALBACK_FEATURE = "urn:xmpp:features:dialback"


class DialbackRefused(Exception):
    """A dialback key was not confirmed; ``condition`` is the stanza error to report."""

    def __init__(self, condition: str, text: str = ""):
        super().__init__(condition, text)
        self.condition = condition
        self.text = text



def dialback_key(secret: str, receiving: str, originating: str, stream_id: str) -> str:
    """The dialback key for a stream id between two domains (XEP-0185 section 3)."""
    hashed = hashlib.sha256(secret.encode()).hexdigest().encode()
    text = f"{receiving} {originating} {stream_id}".encode()
    return hmac.new(hashed, text, hashlib.sha256).hexdigest()


def key_is_valid(secret: str, receiving: str, originating: str, stream_id: str,
                 key: str) -> bool:
    """Whether a key received in a ``db:verify`` is the one we would have sent."""
    expected = dialback_key(secret, receiving, originating, stream_id)
    return hmac.compare_digest(expected, key.strip().lower())


def load_secret(configured: str, data_dir: Path) -> str:
    """The configured secret, else the one kept in ``data_dir/s2s_secret`` (made once)."""
    if configured:
        return configured
    path = data_dir / "s2s_secret"
    try:
        stored = path.read_text().strip()
    except FileNotFoundError:
        stored = ""
    if stored:
        return stored
    secret = secrets.token_hex(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(secret + "\n")
    return secret
