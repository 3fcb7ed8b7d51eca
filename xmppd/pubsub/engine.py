"""The publish-subscribe engine (XEP-0060): one set of rules for every service.

:class:`PubSub` serves any number of pubsub services, each named by its
address (a user's bare JID for PEP, the component's domain for the
standalone service). What differs between kinds of service is a
:class:`Policy`: who is a node's owner, who may create nodes, which access
models exist and how ``presence``/``roster`` access is decided, and who is
notified besides explicit subscribers (PEP's contacts with ``+notify``
caps).

Requests of one service run one at a time (a serial queue per service), so
a service's nodes never change under a request. A service is loaded from
the database on first use (its nodes, affiliations, subscriptions and each
node's last item) and kept in memory, a bounded number of services at a
time; every change is written through before it is answered.

The rules follow XEP-0060 (sections cited at each operation); where it
leaves a choice, Prosody's mod_pubsub/mod_pep behaviour:

* retrieving items or subscribing: outcasts get ``forbidden``; owners,
  publishers and members are always allowed; otherwise the access model
  decides (``presence``: ``not-authorized`` + ``presence-subscription-required``;
  ``roster``: ``not-authorized`` + ``not-in-roster-group``; ``whitelist``:
  ``not-allowed`` + ``closed-node``);
* publishing: per ``publish_model`` (``publishers``: owners and publishers;
  ``subscribers``: those plus subscribers; ``open``: anyone but outcasts),
  else ``forbidden``; a publish to a missing node creates it when the policy
  auto-creates and the publisher may create nodes, with its
  ``publish-options`` as configuration; on an existing node the options are
  preconditions (``conflict`` + ``precondition-not-met``);
* limits: one item's payload (``not-acceptable`` + ``payload-too-big``),
  items per node (the oldest go), nodes per owner and subscriptions per
  node (``not-allowed`` + ``max-nodes-exceeded`` / ``too-many-subscriptions``).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import defer
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from xmppd.errors import StanzaError
from xmppd.pubsub import (
    NS_PUBSUB,
    NS_PUBSUB_EVENT,
)
from xmppd.pubsub.model import (
    Item,
    Node,
    Outcome,
    Policy,
    Subscription,
    node_bytes,
    pubsub_element,
)
from xmppd.pubsub.nodeconfig import (
    NodeConfig,
    check_preconditions,
    read_preconditions,
    with_preconditions,
)
from xmppd.pubsub.owner import OwnerOperations
from xmppd.pubsub.protocol import (
    Request,
    parse_request,
    pubsub_error,
)
from xmppd.pubsub.store import PubSubStore
from xmppd.pubsub.subscribers import SubscriberOperations
from xmppd.sm.queue import SerialQueues
from xmppd.sm.stanzas import child_elements

#: Most item ids one request may name.
MAX_IDS = 256
#: Longest item id or node name accepted.
MAX_NAME = 1024
#: Bytes the loaded services may hold in memory (their nodes' last items
#: mostly: an avatar's data node keeps tens of KiB); the least recently
#: used services are dropped beyond it (they are reloaded on demand).
CACHE_BYTES = 64 * 1024 * 1024


class PubSub(SubscriberOperations, OwnerOperations):
    """The pubsub engine: every service's nodes and the XEP-0060 operations."""

    def __init__(self, database: Any, settings: Any, *, cache_size: int = 10000,
                 cache_bytes: int = CACHE_BYTES):
        self.store = PubSubStore(database)
        self.settings = settings
        self.queues = SerialQueues()
        self._services: OrderedDict[str, dict[str, Node]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_bytes = cache_bytes
        #: Service -> the bytes it counts for (see CACHE_BYTES); their sum.
        self._bytes: dict[str, int] = {}
        self.cached_bytes = 0

    # -- the iq entry point -------------------------------------------------------------

    def handle(self, policy: Policy, service: str, sender: jid.JID, kind: str,
               pubsub: domish.Element) -> defer.Deferred:
        """Serve a pubsub iq (get/set) to a service; fires with an :class:`Outcome`.

        Fails with :class:`~xmppd.errors.StanzaError` for a refused request.
        """
        try:
            request = parse_request(kind, pubsub)
        except StanzaError:
            return defer.fail()
        method = getattr(self, "_" + request.verb.replace("-", "_"))
        return self.queues.run(service, self._run, method, policy, service, sender, request)

    @defer.inlineCallbacks
    def _run(self, method: Callable, policy: Policy, service: str, sender: jid.JID,
             request: Request):
        nodes = yield self.load(service)
        outcome = yield method(policy, service, nodes, sender, request)
        return outcome

    # -- the service cache --------------------------------------------------------------

    def nodes(self, service: str) -> defer.Deferred:
        """Fire with the service's nodes (name -> :class:`Node`; do not change them)."""
        return self.queues.run(service, self.load, service)

    def run(self, service: str, function: Callable, *args: Any) -> defer.Deferred:
        """Run ``function(nodes, *args)`` in the service's queue, its nodes loaded.

        For operations of other modules (e.g. a publish on the owner's behalf).
        """
        return self.queues.run(service, self._with_nodes, service, function, args)

    @defer.inlineCallbacks
    def _with_nodes(self, service: str, function: Callable, args: tuple):
        nodes = yield self.load(service)
        result = yield function(nodes, *args)
        return result

    @defer.inlineCallbacks
    def load(self, service: str):
        """Fire with the service's nodes, loading them if needed (call in its queue)."""
        nodes = self._services.get(service)
        if nodes is not None:
            self._services.move_to_end(service)
            return nodes
        stored = yield self.store.load(service)
        nodes = {}
        for name, config in stored.nodes:
            nodes[name] = Node(name, NodeConfig.from_json(config, NodeConfig()))
        for name, entity, affiliation in stored.affiliations:
            if name in nodes:
                nodes[name].affiliations[entity] = affiliation
        for name, entity, subid, deliver in stored.subscriptions:
            if name in nodes:
                nodes[name].subscriptions[entity] = Subscription(entity, subid, bool(deliver))
        for name, item_id, publisher, xml in stored.last_items:
            if name in nodes:
                nodes[name].last = Item(item_id, publisher, xml)
        self._services[service] = nodes
        self._adjust(service, sum(node_bytes(node) for node in nodes.values()))
        self._evict(keep=service)
        return nodes

    def _adjust(self, service: str, delta: int) -> None:
        """Count ``delta`` more bytes for a loaded service."""
        if service in self._services and delta:
            self._bytes[service] = self._bytes.get(service, 0) + delta
            self.cached_bytes += delta

    def _evict(self, keep: str | None = None) -> None:
        """Drop least recently used services beyond the count and byte bounds."""
        while len(self._services) > 1 and (len(self._services) > self._cache_size
                                           or self.cached_bytes > self._cache_bytes):
            oldest = next(iter(self._services))
            if oldest == keep or self.queues.busy(oldest):
                break
            self.forget(oldest)

    def _set_last(self, service: str, node: Node, item: Item | None) -> None:
        """Make ``item`` the node's last one, counting the bytes it holds."""
        before = node_bytes(node)
        node.last = item
        self._adjust(service, node_bytes(node) - before)

    def forget(self, service: str) -> None:
        """Drop a service from memory (reloaded on demand; or its account was deleted)."""
        self._services.pop(service, None)
        self.cached_bytes -= self._bytes.pop(service, 0)

    def forget_subscriber(self, bare: str) -> None:
        """Drop a deleted account's subscriptions and affiliations from the loaded services.

        Their rows went with the account (``ON DELETE CASCADE``, and the
        trigger of :func:`~xmppd.pubsub.store.account_cleanup`).
        """
        for nodes in self._services.values():
            for node in nodes.values():
                for key in [k for k in node.subscriptions if k.split("/", 1)[0] == bare]:
                    del node.subscriptions[key]
                node.affiliations.pop(bare, None)

    # -- rules shared by the operations ----------------------------------------------------

    def affiliation(self, policy: Policy, service: str, node: Node | None, bare: str) -> str:
        """The entity's affiliation with a node."""
        if bare == policy.owner(service) or policy.is_admin(bare):
            return "owner"
        if node is None:
            return "none"
        return node.affiliations.get(bare, "none")

    @defer.inlineCallbacks
    def check_access(self, policy: Policy, service: str, node: Node, requester: jid.JID):
        """Raise unless the requester may retrieve the node's items and subscribe."""
        bare = requester.userhost()
        affiliation = self.affiliation(policy, service, node, bare)
        if affiliation == "outcast":
            raise StanzaError("forbidden")
        if affiliation in ("owner", "publisher", "member"):
            return
        model = node.config.access_model
        if model == "open":
            return
        if model == "presence":
            allowed = yield policy.has_presence_access(service, bare)
            if not allowed:
                raise pubsub_error("not-authorized", "presence-subscription-required")
            return
        if model == "roster":
            allowed = yield policy.in_roster_groups(service, bare,
                                                    node.config.roster_groups_allowed)
            if not allowed:
                raise pubsub_error("not-authorized", "not-in-roster-group")
            return
        raise pubsub_error("not-allowed", "closed-node")

    def may_access(self, policy: Policy, service: str, node: Node,
                   requester: jid.JID) -> defer.Deferred:
        """Fire with True if the requester may retrieve the node's items."""
        d = self.check_access(policy, service, node, requester)
        d.addCallbacks(lambda _: True, lambda failure: failure.trap(StanzaError) and False)
        return d

    @defer.inlineCallbacks
    def visible_nodes(self, policy: Policy, service: str, requester: jid.JID):
        """Fire with the service's nodes whose items the requester may retrieve."""
        nodes = yield self.nodes(service)
        visible = []
        for node in list(nodes.values()):
            allowed = yield self.may_access(policy, service, node, requester)
            if allowed:
                visible.append(node)
        return visible

    def _node(self, nodes: dict[str, Node], name: str) -> Node:
        node = nodes.get(name)
        if node is None:
            raise StanzaError("item-not-found", f"no node {name!r}")
        return node

    def _owner_only(self, policy: Policy, service: str, node: Node | None,
                    requester: jid.JID) -> None:
        if self.affiliation(policy, service, node, requester.userhost()) != "owner":
            raise StanzaError("forbidden")

    def _check_config(self, policy: Policy, config: NodeConfig) -> None:
        if config.access_model not in policy.access_models:
            raise StanzaError("not-acceptable", f"access model {config.access_model!r} is not "
                              "available on this service")

    def _check_max_items(self, before: NodeConfig, after: NodeConfig) -> None:
        """A requested ``max_items`` above the service's maximum: ``not-acceptable``.

        As Prosody; a default above the maximum (``[pubsub] max_items`` set
        low) is capped by :meth:`NodeConfig.item_limit` instead.
        """
        if after.max_items != before.max_items and after.max_items is not None and \
                after.max_items > self.settings.max_items:
            raise StanzaError("not-acceptable", f"pubsub#max_items is at most "
                              f"{self.settings.max_items} here ('max')")

    def _count_owned(self, policy: Policy, service: str, nodes: dict[str, Node],
                     creator: str) -> int:
        if policy.owner(service) is not None:
            return len(nodes)
        return sum(1 for node in nodes.values() if node.affiliations.get(creator) == "owner")

    @defer.inlineCallbacks
    def _create_node(self, policy: Policy, service: str, nodes: dict[str, Node], name: str,
                     config: NodeConfig, creator: jid.JID):
        if len(name) > MAX_NAME:
            raise StanzaError("not-acceptable", "the node name is too long")
        self._check_config(policy, config)
        if self._count_owned(policy, service, nodes, creator.userhost()) >= \
                self.settings.max_nodes:
            raise pubsub_error("not-allowed", "max-nodes-exceeded",
                               f"at most {self.settings.max_nodes} nodes per owner")
        owner = None if policy.owner(service) is not None else creator.userhost()
        yield self.store.create_node(service, name, policy.account(service), config.to_json(),
                                     owner)
        node = Node(name, config)
        if owner is not None:
            node.affiliations[owner] = "owner"
        nodes[name] = node
        self._adjust(service, node_bytes(node))
        return node

    # -- notifications -----------------------------------------------------------------------

    @defer.inlineCallbacks
    def recipients(self, policy: Policy, service: str, node: Node):
        """The JIDs to notify of a node's events: explicit subscribers, then implicit ones."""
        targets = [sub.jid for sub in node.subscriptions.values() if sub.deliver]
        explicit = set(targets)
        implicit = yield policy.implicit_recipients(service, node)
        for address in implicit:
            if address not in explicit and address.split("/", 1)[0] not in explicit:
                targets.append(address)
                explicit.add(address)
        return targets

    def event_message(self, service: str, node: Node, to: str, event: domish.Element,
                      ) -> domish.Element:
        """A notification message carrying an ``<event/>`` (shared, not copied)."""
        message = domish.Element((None, "message"))
        message["from"] = service
        message["to"] = to
        if node.config.notification_type == "headline":
            message["type"] = "headline"
        message["id"] = uuid.uuid4().hex
        message.children.append(event)
        return message

    def items_event(self, policy: Policy, node: Node, item: Item) -> domish.Element:
        """``<event><items node><item …/></items></event>`` for a published item."""
        event = domish.Element((NS_PUBSUB_EVENT, "event"))
        items = event.addElement("items")
        items["node"] = node.name
        items.addChild(item.element(NS_PUBSUB_EVENT, node.config.deliver_payloads,
                                    policy.show_publisher(node)))
        return event

    @defer.inlineCallbacks
    def notify(self, policy: Policy, service: str, node: Node, event: domish.Element,
               only: Iterable[str] | None = None):
        """Send an event to the node's recipients (or just to ``only``)."""
        if not node.config.deliver_notifications:
            return
        targets = list(only) if only is not None else (
            yield self.recipients(policy, service, node))
        for target in targets:
            policy.send(self.event_message(service, node, target, event))

    def send_last(self, policy: Policy, service: str, node: Node, to: str) -> None:
        """Send the node's last item to one entity (on subscription or presence)."""
        if node.last is None or not node.config.deliver_notifications:
            return
        policy.send(self.event_message(service, node, to,
                                       self.items_event(policy, node, node.last)))

    @defer.inlineCallbacks
    def _items(self, policy, service, nodes, sender, request):
        """§6.5: retrieve all items, the newest ``max_items``, or some by id."""
        name = request.required_node()
        node = self._node(nodes, name)
        yield self.check_access(policy, service, node, sender)
        items = yield self.get_items(service, node, request.max_items(),
                                     request.item_ids() or None)
        payload = pubsub_element()
        listing = payload.addElement("items")
        listing["node"] = name
        publisher = policy.show_publisher(node)
        for item in items:
            listing.addChild(item.element(NS_PUBSUB, True, publisher))
        return Outcome(payload)

    @defer.inlineCallbacks
    def get_items(self, service: str, node: Node, limit: int | None = None,
                  ids: list[str] | None = None):
        """Fire with a node's items (oldest first): the newest ``limit``, or those ``ids``."""
        if ids is not None and len(ids) > MAX_IDS:
            raise StanzaError("not-acceptable", f"at most {MAX_IDS} item ids per request")
        if not node.config.persist_items:
            last = [node.last] if node.last is not None else []
            if ids is not None:
                last = [item for item in last if item.id in ids]
            return last
        if limit is not None:
            # No node keeps more; and a client's huge max_items must fit SQLite's integers.
            limit = min(limit, self.settings.max_items)
        rows = yield self.store.items(service, node.name, limit, ids)
        return [Item(*row) for row in rows]

    # -- publisher use cases (XEP-0060 §7) --------------------------------------------------

    @defer.inlineCallbacks
    def _publish(self, policy, service, nodes, sender, request):
        """§7.1: publish one item (creating the node if the policy says so)."""
        name = request.required_node()
        items = request.items()
        if not items:
            raise pubsub_error("bad-request", "item-required")
        if len(items) > 1:
            raise StanzaError("bad-request", "one item per publish request")
        item = items[0]
        payloads = child_elements(item)
        if len(payloads) > 1:
            raise pubsub_error("bad-request", "invalid-payload")
        payload = payloads[0] if payloads else None
        options = request.publish_options()
        wanted = read_preconditions(options) if options is not None else {}
        item_id = yield self.publish(policy, service, nodes, sender, name, payload,
                                     item.getAttribute("id"), wanted)
        result = pubsub_element()
        publish = result.addElement("publish")
        publish["node"] = name
        publish.addElement("item")["id"] = item_id
        return Outcome(result)

    @defer.inlineCallbacks
    def publish(self, policy: Policy, service: str, nodes: dict[str, Node], publisher: jid.JID,
                name: str, payload: domish.Element | None, item_id: str | None = None,
                wanted: dict[str, Any] | None = None):
        """Publish an item (the rules of §7.1); fires with its id. Run in the service's queue."""
        wanted = wanted or {}
        xml = payload.toXml() if payload is not None else ""
        if len(xml.encode("utf-8")) > self.settings.max_item_size:
            raise pubsub_error("not-acceptable", "payload-too-big",
                               f"items are limited to {self.settings.max_item_size} bytes")
        if item_id is not None and (not item_id or len(item_id) > MAX_NAME):
            raise StanzaError("bad-request", "unusable item id")
        node = nodes.get(name)
        if node is None:
            if not policy.autocreate or not policy.may_create(service, publisher):
                raise StanzaError("item-not-found", f"no node {name!r}")
            default = policy.default_config(service, name)
            config = with_preconditions(default, wanted)
            self._check_max_items(default, config)
            _check_payload(config, payload)  # before the node exists: a refusal leaves none
            node = yield self._create_node(policy, service, nodes, name, config, publisher)
        else:
            check_preconditions(node.config, wanted, self.settings.max_items)
        bare = publisher.userhost()
        affiliation = self.affiliation(policy, service, node, bare)
        model = node.config.publish_model
        allowed = affiliation in ("owner", "publisher") or (
            model == "open" and affiliation != "outcast") or (
            model == "subscribers" and affiliation != "outcast" and any(
                sub.jid.split("/", 1)[0] == bare for sub in node.subscriptions.values()))
        if not allowed:
            raise StanzaError("forbidden", "you may not publish to this node")
        _check_payload(node.config, payload)
        item = Item(item_id or uuid.uuid4().hex, bare, xml)
        if node.config.persist_items:
            yield self.store.publish(service, name, item.id, bare, xml,
                                     node.config.item_limit(self.settings.max_items))
        self._set_last(service, node, item)
        yield self.notify(policy, service, node, self.items_event(policy, node, item))
        policy.published(service, node, item)
        return item.id

    @defer.inlineCallbacks
    def _retract(self, policy, service, nodes, sender, request):
        """§7.2: delete items, notifying subscribers when asked to or configured so."""
        name = request.required_node()
        ids = request.item_ids()
        if not ids:
            raise pubsub_error("bad-request", "item-required")
        node = self._node(nodes, name)
        if self.affiliation(policy, service, node, sender.userhost()) not in (
                "owner", "publisher"):
            raise StanzaError("forbidden")
        yield self.retract(policy, service, node, ids, request.flag("notify"))
        return Outcome()

    @defer.inlineCallbacks
    def retract(self, policy: Policy, service: str, node: Node, ids: list[str],
                notify: bool | None = None):
        """Delete items by id (``item-not-found`` if none existed) and notify."""
        if len(ids) > MAX_IDS:
            raise StanzaError("not-acceptable", f"at most {MAX_IDS} item ids per request")
        if node.config.persist_items:
            gone = yield self.store.retract(service, node.name, ids)
        else:
            gone = [node.last.id] if node.last is not None and node.last.id in ids else []
        if not gone:
            raise StanzaError("item-not-found", "no such item")
        if node.last is not None and node.last.id in gone:
            self._set_last(service, node, None)
            if node.config.persist_items:
                rows = yield self.store.items(service, node.name, 1)
                self._set_last(service, node, Item(*rows[-1]) if rows else None)
        if notify if notify is not None else node.config.notify_retract:
            event = domish.Element((NS_PUBSUB_EVENT, "event"))
            items = event.addElement("items")
            items["node"] = node.name
            for item_id in gone:
                items.addElement("retract")["id"] = item_id
            yield self.notify(policy, service, node, event)
        policy.retracted(service, node, gone)


def _check_payload(config: NodeConfig, payload: domish.Element | None) -> None:
    """``payload-required`` for an item without one where payloads are kept or sent."""
    if payload is None and (config.deliver_payloads or config.persist_items):
        raise pubsub_error("bad-request", "payload-required")
