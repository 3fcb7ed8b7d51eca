"""The pubsub engine's data: items, subscriptions, nodes, outcomes, and the policy.

A :class:`Policy` says what differs between kinds of pubsub service (PEP,
the standalone service); the engine (:mod:`xmppd.pubsub.engine`) keeps
:class:`Node` objects in memory and answers with :class:`Outcome`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from xmppd.pubsub import NS_PUBSUB
from xmppd.pubsub.nodeconfig import NodeConfig
from xmppd.sm.stanzas import child_elements, deserialise

#: What one node counts for in the engine's cache besides its last item.
NODE_BYTES = 512


@dataclass
class Item:
    """A published item: its id, publisher (bare JID) and payload XML."""

    id: str
    publisher: str
    xml: str

    def payload(self) -> domish.Element | None:
        """The payload element (parsed anew: elements are not shared)."""
        if not self.xml:
            return None
        wrapper = deserialise(f"<item>{self.xml}</item>")
        children = child_elements(wrapper) if wrapper is not None else []
        return children[0] if children else None

    def element(self, uri: str, with_payload: bool, publisher: bool) -> domish.Element:
        """``<item id=…>payload</item>`` in a namespace."""
        element = domish.Element((uri, "item"))
        element["id"] = self.id
        if publisher and self.publisher:
            element["publisher"] = self.publisher
        if with_payload:
            payload = self.payload()
            if payload is not None:
                element.addChild(payload)
        return element


@dataclass
class Subscription:
    """One entity's subscription to a node (a JID, full or bare, as subscribed)."""

    jid: str
    subid: str
    deliver: bool = True


@dataclass
class Node:
    """A node as the engine keeps it in memory."""

    name: str
    config: NodeConfig
    affiliations: dict[str, str] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    last: Item | None = None


@dataclass
class Outcome:
    """What a request produced: the result payload, then what to send after the reply."""

    payload: domish.Element | None = None
    after: list[Callable[[], None]] = field(default_factory=list)


class Policy:
    """What differs between kinds of pubsub service (override in subclasses).

    ``service`` arguments are the service's address as a string.
    """

    #: The access models nodes of this service may use.
    access_models: tuple[str, ...] = ("open", "whitelist")
    #: Whether a publish to a missing node creates it.
    autocreate: bool = True

    def default_config(self, service: str, node: str | None = None) -> NodeConfig:
        """The configuration of a new node (of that name, when it is known)."""
        return NodeConfig()

    def owner(self, service: str) -> str | None:
        """The bare JID owning every node of the service (PEP), else None."""
        return None

    def account(self, service: str) -> str | None:
        """The local username whose data the service's nodes are (PEP), else None."""
        return None

    def is_admin(self, bare: str) -> bool:
        """True for entities that own every node (service administrators)."""
        return False

    def may_create(self, service: str, requester: jid.JID) -> bool:
        """Whether the requester may create nodes."""
        return False

    def show_publisher(self, node: Node) -> bool:
        """Whether items show their publisher."""
        return node.config.itemreply == "publisher"

    def has_presence_access(self, service: str, requester: str) -> Any:
        """(Deferred) True if the bare JID may see the owner's presence."""
        return False

    def in_roster_groups(self, service: str, requester: str, groups: Iterable[str]) -> Any:
        """(Deferred) True if the bare JID is in one of the owner's roster groups."""
        return False

    def implicit_recipients(self, service: str, node: Node) -> Any:
        """(Deferred) Full JIDs to notify besides explicit subscribers."""
        return []

    def send(self, stanza: domish.Element) -> None:
        """Send a notification (addressed)."""
        raise NotImplementedError

    def published(self, service: str, node: Node, item: Item) -> None:
        """An item was published (after it was stored and notified)."""

    def retracted(self, service: str, node: Node, ids: list[str] | None) -> None:
        """Items were retracted (``None``: the node was purged)."""

    def node_deleted(self, service: str, node: Node) -> None:
        """A node was deleted."""


def policy_local(policy: Policy, address: jid.JID) -> bool:
    """True when the address is a local account (its subscriptions go with the account)."""
    local = getattr(policy, "local_domain", None)
    return bool(address.user) and address.host == local


def node_bytes(node: Node) -> int:
    """What a node counts for in the cache (see ``engine.CACHE_BYTES``)."""
    return NODE_BYTES + (len(node.last.xml) if node.last is not None else 0)


def pubsub_element(uri: str = NS_PUBSUB) -> domish.Element:
    """An empty ``<pubsub/>`` (result payload) in a namespace."""
    return domish.Element((uri, "pubsub"))
