"""SASL2 (XEP-0388) framing and Bind 2 (XEP-0386) helpers for client streams.

SASL2 runs the very same mechanism exchanges as RFC 6120 SASL
(:mod:`xmppd.c2s.sasl`); only the XML around the payloads differs:

* the offer: ``<authentication xmlns='urn:xmpp:sasl:2'>`` with the
  ``<mechanism/>`` list and an ``<inline/>`` of what the client may ask for
  in the same round trip (Bind 2, XEP-0198 resumption, FAST tokens);
* ``<authenticate mechanism=…>`` with an optional ``<initial-response/>``
  and ``<user-agent id=UUID>`` (``<software/>``, ``<device/>``), then
  ``<challenge/>``/``<response/>``, ``<abort/>``;
* ``<success>`` with ``<additional-data/>`` (e.g. SCRAM's server-final) and
  ``<authorization-identifier/>`` (the full JID when a resource was bound
  inline, else the bare JID), followed by the stream features without a
  stream restart; ``<failure>`` with the RFC 6120 condition (in the
  ``urn:ietf:params:xml:ns:xmpp-sasl`` namespace) and an optional
  ``<text/>``.

This module parses and builds those elements; the negotiator
(:mod:`xmppd.c2s.negotiation`) runs the exchange and the inline requests.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from twisted.words.xish import domish

from xmppd import errors
from xmppd.c2s import bind as bind_mod
from xmppd.c2s import sasl

NS_SASL2 = "urn:xmpp:sasl:2"
NS_BIND2 = "urn:xmpp:bind:0"

#: The longest part of a Bind 2 ``<tag/>`` kept in the resource.
MAX_TAG = 32
#: Length of the user-agent software and device names kept.
MAX_AGENT_TEXT = 128


@dataclass
class Authenticate:
    """A client's SASL2 ``<authenticate/>``, parsed and checked."""

    element: domish.Element
    mechanism: str
    #: The decoded initial response (None when there is none).
    initial: bytes | None
    #: The ``<user-agent id=…/>`` (a UUID, normalised), or None.
    agent_id: str | None = None
    software: str | None = None
    device: str | None = None
    #: The exchange once it started, for the inline handlers (FAST reads it).
    exchange: Any = None
    #: Inline elements: (namespace, name) -> element, first of each.
    inline: dict[tuple[str | None, str], domish.Element] = field(default_factory=dict)

    def child(self, namespace: str, name: str) -> domish.Element | None:
        """The first inline child with that namespace and name, or None."""
        return self.inline.get((namespace, name))


def _text(element: domish.Element | None, limit: int) -> str | None:
    if element is None:
        return None
    text = str(element).strip()
    return text[:limit] or None


def parse_authenticate(element: domish.Element) -> Authenticate:
    """Parse ``<authenticate/>``; SASLFailure for a malformed one.

    A missing mechanism gets ``invalid-mechanism`` (as legacy SASL), a
    ``<user-agent/>`` whose id is not a UUID ``malformed-request``
    (XEP-0388 §2.3), bad base64 ``incorrect-encoding``.
    """
    mechanism = element.getAttribute("mechanism") or ""
    if not mechanism:
        raise sasl.SASLFailure("invalid-mechanism", "no mechanism given")
    initial = None
    request = Authenticate(element, mechanism, None)
    for child in element.elements():
        if child.uri == NS_SASL2 and child.name == "initial-response":
            initial = sasl.decode_payload(str(child))
            if initial is None:
                initial = b""  # an empty <initial-response/> is an empty response
        elif child.uri == NS_SASL2 and child.name == "user-agent":
            agent_id = child.getAttribute("id")
            if agent_id is not None:
                try:
                    request.agent_id = str(uuid.UUID(agent_id))
                except ValueError:
                    raise sasl.SASLFailure(
                        "malformed-request", "the user-agent id must be a UUID") from None
            for part in child.elements():
                if part.name == "software":
                    request.software = _text(part, MAX_AGENT_TEXT)
                elif part.name == "device":
                    request.device = _text(part, MAX_AGENT_TEXT)
        elif child.uri != NS_SASL2:
            request.inline.setdefault((child.uri, child.name), child)
    request.initial = initial
    return request


def payload_of(element: domish.Element) -> bytes | None:
    """The decoded payload of a ``<response/>`` (SASLFailure for bad base64)."""
    return sasl.decode_payload(str(element))


def challenge(data: bytes) -> domish.Element:
    """``<challenge/>`` with a payload."""
    element = domish.Element((NS_SASL2, "challenge"))
    element.addContent(sasl.encode_payload(data))
    return element


def failure(reason: sasl.SASLFailure) -> domish.Element:
    """``<failure/>`` with the RFC 6120 condition and optional text."""
    element = domish.Element((NS_SASL2, "failure"))
    element.addElement((sasl.NS_SASL, reason.condition))
    if reason.text:
        element.addElement("text", content=reason.text)
    return element


def success(identifier: str, data: bytes | None) -> domish.Element:
    """``<success/>`` with additional data (if any) and the authorization identifier."""
    element = domish.Element((NS_SASL2, "success"))
    if data is not None:
        element.addElement("additional-data", content=sasl.encode_payload(data))
    element.addElement("authorization-identifier", content=identifier)
    return element


def offer(mechanisms: list[str], inline: list[domish.Element],
          bind_features: list[str] | None) -> domish.Element:
    """``<authentication/>``: the mechanisms and what can be done inline.

    ``bind_features`` None: no Bind 2 offer; else the ``<feature var/>``
    values of Bind 2's own ``<inline/>``.
    """
    element = domish.Element((NS_SASL2, "authentication"))
    for name in mechanisms:
        element.addElement("mechanism", content=name)
    if inline or bind_features is not None:
        holder = element.addElement("inline")
        if bind_features is not None:
            bind = holder.addElement((NS_BIND2, "bind"))
            if bind_features:
                features = bind.addElement("inline")
                for var in bind_features:
                    features.addElement("feature")["var"] = var
        for child in inline:
            holder.addChild(child)
    return element


def bind2_resource(bind: domish.Element, username: str, agent_id: str | None) -> str:
    """The resource for a Bind 2 request: the tag (a hint) and a part of the server's.

    The server generates the resource (XEP-0386 §3): ``TAG.XXXXXXXX``. With
    a user-agent id the second part is derived from the account and that id,
    so a reconnecting device gets its resource again (and replaces its old
    session, as Prosody does); without one it is random. A missing or
    invalid tag becomes ``xmppd``.
    """
    tag = None
    for child in bind.elements():
        if child.uri == NS_BIND2 and child.name == "tag":
            tag = str(child).strip()[:MAX_TAG]
    try:
        prefix = bind_mod.prepare_resource(tag) if tag else "xmppd"
    except errors.StanzaError:
        prefix = "xmppd"
    if "/" in prefix:
        prefix = "xmppd"
    if agent_id is None:
        suffix = secrets.token_hex(4)
    else:
        suffix = hashlib.sha256(f"{username}\0{agent_id}".encode()).hexdigest()[:8]
    return f"{prefix}.{suffix}"
