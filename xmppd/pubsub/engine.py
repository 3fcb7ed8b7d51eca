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
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish
from wokkel import data_form

from xmppd.errors import StanzaError
from xmppd.pubsub import (
    NS_PUBSUB,
    NS_PUBSUB_EVENT,
    NS_PUBSUB_OWNER,
    NS_SUBSCRIBE_OPTIONS,
)
from xmppd.pubsub.nodeconfig import (
    NodeConfig,
    apply_form,
    check_preconditions,
    config_form,
    read_preconditions,
    with_preconditions,
)
from xmppd.pubsub.protocol import (
    Request,
    parse_request,
    pubsub_error,
    subscription_element,
)
from xmppd.pubsub.store import PubSubStore
from xmppd.sm.queue import SerialQueues
from xmppd.sm.stanzas import child_elements, deserialise

#: Affiliations a node's owner can hand out (XEP-0060 §4.1).
AFFILIATIONS = ("owner", "publisher", "member", "outcast", "none")
#: Most item ids one request may name.
MAX_IDS = 256
#: Longest item id or node name accepted.
MAX_NAME = 1024
#: Bytes the loaded services may hold in memory (their nodes' last items
#: mostly: an avatar's data node keeps tens of KiB); the least recently
#: used services are dropped beyond it (they are reloaded on demand).
CACHE_BYTES = 64 * 1024 * 1024
#: What one node counts for besides its last item.
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


class PubSub:
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
        self._adjust(service, sum(_node_bytes(node) for node in nodes.values()))
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
        before = _node_bytes(node)
        node.last = item
        self._adjust(service, _node_bytes(node) - before)

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
        self._adjust(service, _node_bytes(node))
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

    # -- entity use cases (XEP-0060 §6) -------------------------------------------------------

    @defer.inlineCallbacks
    def _subscribe(self, policy, service, nodes, sender, request):
        """§6.1: subscribe a JID of the requester's to a node."""
        name = request.required_node()
        subscriber = request.jid()
        if subscriber.userhost() != sender.userhost():
            raise pubsub_error("bad-request", "invalid-jid")
        node = self._node(nodes, name)
        yield self.check_access(policy, service, node, sender)
        deliver = _read_deliver(request.subscribe_options())
        address = subscriber.full()
        existing = node.subscriptions.get(address)
        if existing is None:
            if len(node.subscriptions) >= self.settings.max_subscriptions:
                raise pubsub_error("not-allowed", "too-many-subscriptions")
            existing = Subscription(address, uuid.uuid4().hex, deliver)
        existing.deliver = deliver
        account = subscriber.user if policy_local(policy, subscriber) else None
        yield self.store.subscribe(service, name, address, existing.subid, deliver, account)
        node.subscriptions[address] = existing
        payload = _pubsub()
        payload.addChild(subscription_element(NS_PUBSUB, name, address, "subscribed",
                                              existing.subid))
        outcome = Outcome(payload)
        if node.config.send_last_published_item != "never" and node.last is not None:
            outcome.after.append(lambda: self.send_last(policy, service, node, address))
        return outcome

    @defer.inlineCallbacks
    def _unsubscribe(self, policy, service, nodes, sender, request):
        """§6.2: end a subscription of the requester's."""
        name = request.required_node()
        subscriber = request.jid()
        if subscriber.userhost() != sender.userhost():
            raise StanzaError("forbidden", "that subscription is not yours")
        node = self._node(nodes, name)
        address = subscriber.full()
        if address not in node.subscriptions:
            raise pubsub_error("unexpected-request", "not-subscribed", type="cancel")
        yield self.store.unsubscribe(service, name, address)
        del node.subscriptions[address]
        return Outcome()

    def _subscription_of(self, nodes, sender, request) -> tuple[Node, Subscription]:
        name = request.required_node()
        subscriber = request.jid()
        if subscriber.userhost() != sender.userhost():
            raise StanzaError("forbidden", "that subscription is not yours")
        node = self._node(nodes, name)
        subscription = node.subscriptions.get(subscriber.full())
        if subscription is None:
            raise pubsub_error("unexpected-request", "not-subscribed", type="cancel")
        return node, subscription

    def _options_get(self, policy, service, nodes, sender, request):
        """§6.3: a subscription's options form."""
        node, subscription = self._subscription_of(nodes, sender, request)
        form = data_form.Form("form", formNamespace=NS_SUBSCRIBE_OPTIONS)
        form.addField(data_form.Field("boolean", var="pubsub#deliver",
                                      label="Receive notifications",
                                      value="1" if subscription.deliver else "0"))
        payload = _pubsub()
        options = payload.addElement("options")
        options["node"] = node.name
        options["jid"] = subscription.jid
        options.addChild(form.toElement())
        return Outcome(payload)

    @defer.inlineCallbacks
    def _options_set(self, policy, service, nodes, sender, request):
        """§6.3.5: change a subscription's options (``pubsub#deliver``)."""
        node, subscription = self._subscription_of(nodes, sender, request)
        form = request.subscribe_options()
        if form is None:
            raise pubsub_error("bad-request", "invalid-options", "no options form")
        if form.formType == "cancel":
            return Outcome()
        deliver = _read_deliver(form)
        account = sender.user if policy_local(policy, sender) else None
        yield self.store.subscribe(service, node.name, subscription.jid, subscription.subid,
                                   deliver, account)
        subscription.deliver = deliver
        return Outcome()

    def _subscriptions(self, policy, service, nodes, sender, request):
        """§5.6: the requester's subscriptions (on one node, or all)."""
        bare = sender.userhost()
        payload, listing, chosen = _listing("subscriptions", nodes, request.node)
        for node in chosen:
            for sub in node.subscriptions.values():
                if sub.jid.split("/", 1)[0] == bare:
                    listing.addChild(subscription_element(NS_PUBSUB, node.name, sub.jid,
                                                          "subscribed", sub.subid))
        return Outcome(payload)

    def _affiliations(self, policy, service, nodes, sender, request):
        """§5.7: the requester's affiliations (on one node, or all)."""
        bare = sender.userhost()
        payload, listing, chosen = _listing("affiliations", nodes, request.node)
        for node in chosen:
            affiliation = self.affiliation(policy, service, node, bare)
            if affiliation != "none":
                element = listing.addElement("affiliation")
                element["node"] = node.name
                element["affiliation"] = affiliation
        return Outcome(payload)

    @defer.inlineCallbacks
    def _items(self, policy, service, nodes, sender, request):
        """§6.5: retrieve all items, the newest ``max_items``, or some by id."""
        name = request.required_node()
        node = self._node(nodes, name)
        yield self.check_access(policy, service, node, sender)
        items = yield self.get_items(service, node, request.max_items(),
                                     request.item_ids() or None)
        payload = _pubsub()
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
        result = _pubsub()
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

    # -- owner use cases (XEP-0060 §8) -------------------------------------------------------

    @defer.inlineCallbacks
    def _create(self, policy, service, nodes, sender, request):
        """§8.1: create a node (an instant node without a name), maybe configured."""
        if not policy.may_create(service, sender):
            raise StanzaError("forbidden", "you may not create nodes here")
        name = request.node
        instant = name is None
        if instant:
            name = uuid.uuid4().hex
        if name in nodes:
            raise StanzaError("conflict", f"the node {name!r} exists")
        default = config = policy.default_config(service, name)
        form = request.config_form()
        if form is not None and form.formType == "submit":
            config = apply_form(config, form)
            self._check_max_items(default, config)
        yield self._create_node(policy, service, nodes, name, config, sender)
        if not instant:
            return Outcome()
        payload = _pubsub()
        payload.addElement("create")["node"] = name
        return Outcome(payload)

    def _configure_get(self, policy, service, nodes, sender, request):
        """§8.2: the node's configuration form, for owners."""
        name = request.required_node()
        node = self._node(nodes, name)
        self._owner_only(policy, service, node, sender)
        payload = _pubsub(NS_PUBSUB_OWNER)
        configure = payload.addElement("configure")
        configure["node"] = name
        configure.addChild(config_form(node.config).toElement())
        return Outcome(payload)

    @defer.inlineCallbacks
    def _configure_set(self, policy, service, nodes, sender, request):
        """§8.2.4: apply a submitted configuration form."""
        name = request.required_node()
        node = self._node(nodes, name)
        self._owner_only(policy, service, node, sender)
        form = request.config_form()
        if form is None:
            raise StanzaError("bad-request", "no configuration form")
        if form.formType == "cancel":
            return Outcome()
        config = apply_form(node.config, form)
        self._check_max_items(node.config, config)
        yield self.configure(policy, service, node, config)
        return Outcome()

    @defer.inlineCallbacks
    def configure(self, policy: Policy, service: str, node: Node, config: NodeConfig):
        """Put a new configuration in force: store it, trim items, drop lost access."""
        self._check_config(policy, config)
        old = node.config
        yield self.store.configure(service, node.name, config.to_json())
        node.config = config
        limit = config.item_limit(self.settings.max_items) if config.persist_items else 0
        if limit < old.item_limit(self.settings.max_items) or not config.persist_items:
            yield self.store.trim(service, node.name, limit)
        if old.access_model != config.access_model or \
                old.roster_groups_allowed != config.roster_groups_allowed:
            for sub in list(node.subscriptions.values()):
                allowed = yield self.may_access(policy, service, node, jid.JID(sub.jid))
                if not allowed:
                    yield self.store.unsubscribe(service, node.name, sub.jid)
                    node.subscriptions.pop(sub.jid, None)
        if config.notify_config:
            event = domish.Element((NS_PUBSUB_EVENT, "event"))
            configuration = event.addElement("configuration")
            configuration["node"] = node.name
            if config.deliver_payloads:
                # §8.2.5.4: a payload node's notification carries the configuration.
                configuration.addChild(config_form(config, "result").toElement())
            yield self.notify(policy, service, node, event)

    def _default(self, policy, service, nodes, sender, request):
        """§8.3: the default node configuration."""
        payload = _pubsub(NS_PUBSUB_OWNER)
        default = payload.addElement("default")
        default.addChild(config_form(policy.default_config(service)).toElement())
        return Outcome(payload)

    @defer.inlineCallbacks
    def _delete(self, policy, service, nodes, sender, request):
        """§8.4: delete a node (with an optional redirect), notifying subscribers."""
        name = request.required_node()
        node = self._node(nodes, name)
        self._owner_only(policy, service, node, sender)
        redirect = None
        for child in child_elements(request.element):
            if child.name == "redirect" and child.getAttribute("uri"):
                redirect = child["uri"]
        yield self.delete(policy, service, nodes, node, redirect)
        return Outcome()

    @defer.inlineCallbacks
    def delete(self, policy: Policy, service: str, nodes: dict[str, Node], node: Node,
               redirect: str | None = None):
        """Delete a node and tell its recipients (when ``notify_delete``)."""
        targets = yield self.recipients(policy, service, node)
        yield self.store.delete_node(service, node.name)
        if nodes.pop(node.name, None) is not None:
            self._adjust(service, -_node_bytes(node))
        if node.config.notify_delete:
            event = domish.Element((NS_PUBSUB_EVENT, "event"))
            deleted = event.addElement("delete")
            deleted["node"] = node.name
            if redirect is not None:
                deleted.addElement("redirect")["uri"] = redirect
            yield self.notify(policy, service, node, event, only=targets)
        policy.node_deleted(service, node)

    @defer.inlineCallbacks
    def _purge(self, policy, service, nodes, sender, request):
        """§8.5: delete every item of a node."""
        name = request.required_node()
        node = self._node(nodes, name)
        self._owner_only(policy, service, node, sender)
        yield self.store.trim(service, name, 0)
        self._set_last(service, node, None)
        if node.config.notify_retract:
            event = domish.Element((NS_PUBSUB_EVENT, "event"))
            event.addElement("purge")["node"] = name
            yield self.notify(policy, service, node, event)
        policy.retracted(service, node, None)
        return Outcome()

    def _owner_subscriptions_get(self, policy, service, nodes, sender, request):
        """§8.8.1: every subscription of a node, for owners."""
        name = request.required_node()
        node = self._node(nodes, name)
        self._owner_only(policy, service, node, sender)
        payload = _pubsub(NS_PUBSUB_OWNER)
        listing = payload.addElement("subscriptions")
        listing["node"] = name
        for sub in node.subscriptions.values():
            listing.addChild(subscription_element(NS_PUBSUB_OWNER, None, sub.jid, "subscribed",
                                                  sub.subid))
        return Outcome(payload)

    @defer.inlineCallbacks
    def _owner_subscriptions_set(self, policy, service, nodes, sender, request):
        """§8.8.2: owners add (``subscribed``) or remove (``none``) subscriptions."""
        name = request.required_node()
        node = self._node(nodes, name)
        self._owner_only(policy, service, node, sender)
        changes = []
        for child in child_elements(request.element):
            if child.name != "subscription":
                continue
            address = _entity(child)
            state = child.getAttribute("subscription")
            if state not in ("subscribed", "none"):
                raise StanzaError("bad-request", f"unsupported subscription state {state!r}")
            changes.append((address, state))
        for address, state in changes:
            key = address.full()
            if state == "none":
                if key in node.subscriptions:
                    yield self.store.unsubscribe(service, name, key)
                    del node.subscriptions[key]
                continue
            existing = node.subscriptions.get(key)
            if existing is None:
                if len(node.subscriptions) >= self.settings.max_subscriptions:
                    raise pubsub_error("not-allowed", "too-many-subscriptions")
                existing = Subscription(key, uuid.uuid4().hex)
            account = address.user if policy_local(policy, address) else None
            yield self.store.subscribe(service, name, key, existing.subid, existing.deliver,
                                       account)
            node.subscriptions[key] = existing
        return Outcome()

    def _owner_affiliations_get(self, policy, service, nodes, sender, request):
        """§8.9.1: every affiliation with a node, for owners."""
        name = request.required_node()
        node = self._node(nodes, name)
        self._owner_only(policy, service, node, sender)
        payload = _pubsub(NS_PUBSUB_OWNER)
        listing = payload.addElement("affiliations")
        listing["node"] = name
        owner = policy.owner(service)
        entries = dict(node.affiliations)
        if owner is not None:
            entries[owner] = "owner"
        for entity, affiliation in entries.items():
            element = listing.addElement("affiliation")
            element["jid"] = entity
            element["affiliation"] = affiliation
        return Outcome(payload)

    @defer.inlineCallbacks
    def _owner_affiliations_set(self, policy, service, nodes, sender, request):
        """§8.9.2: owners change affiliations; an outcast loses its subscriptions."""
        name = request.required_node()
        node = self._node(nodes, name)
        self._owner_only(policy, service, node, sender)
        fixed_owner = policy.owner(service)
        changes = {}
        unchanged = set()
        for child in child_elements(request.element):
            if child.name != "affiliation":
                continue
            entity = _entity(child).userhost()
            if entity in changes or entity in unchanged:
                raise StanzaError("bad-request", f"{entity} is listed twice")
            affiliation = child.getAttribute("affiliation")
            if affiliation is None:
                unchanged.add(entity)  # §8.9.2.1: no 'affiliation', no change
                continue
            if affiliation not in AFFILIATIONS:
                raise StanzaError("not-acceptable", f"unsupported affiliation {affiliation!r}")
            if entity == fixed_owner or (fixed_owner is not None and affiliation == "owner"):
                raise StanzaError("not-acceptable", "the owner of a personal node is fixed")
            changes[entity] = affiliation
        owners = {e for e, a in node.affiliations.items() if a == "owner"}
        owners = {e for e in owners if changes.get(e, "owner") == "owner"} | {
            e for e, a in changes.items() if a == "owner"}
        if fixed_owner is None and not owners:
            raise StanzaError("not-acceptable", "a node needs an owner")
        for entity, affiliation in changes.items():
            yield self.store.set_affiliation(service, name, entity, affiliation)
            if affiliation == "none":
                node.affiliations.pop(entity, None)
            else:
                node.affiliations[entity] = affiliation
            if affiliation == "outcast":
                for sub in list(node.subscriptions.values()):
                    if sub.jid.split("/", 1)[0] == entity:
                        yield self.store.unsubscribe(service, name, sub.jid)
                        del node.subscriptions[sub.jid]
        return Outcome()


def policy_local(policy: Policy, address: jid.JID) -> bool:
    """True when the address is a local account (its subscriptions go with the account)."""
    local = getattr(policy, "local_domain", None)
    return bool(address.user) and address.host == local


def _check_payload(config: NodeConfig, payload: domish.Element | None) -> None:
    """``payload-required`` for an item without one where payloads are kept or sent."""
    if payload is None and (config.deliver_payloads or config.persist_items):
        raise pubsub_error("bad-request", "payload-required")


def _node_bytes(node: Node) -> int:
    """What a node counts for in the cache (see CACHE_BYTES)."""
    return NODE_BYTES + (len(node.last.xml) if node.last is not None else 0)


def _pubsub(uri: str = NS_PUBSUB) -> domish.Element:
    return domish.Element((uri, "pubsub"))


def _listing(name: str, nodes: dict[str, Node], wanted: str | None,
             ) -> tuple[domish.Element, domish.Element, list[Node]]:
    """A ``<pubsub><NAME [node]/></pubsub>`` result and the nodes it is about."""
    payload = _pubsub()
    listing = payload.addElement(name)
    if wanted is not None:
        listing["node"] = wanted
    chosen = [node for node in nodes.values() if wanted is None or node.name == wanted]
    return payload, listing, chosen


def _entity(element: domish.Element) -> jid.JID:
    from xmppd.addresses import parse_jid

    address = parse_jid(element.getAttribute("jid") or "")
    if address is None:
        raise StanzaError("jid-malformed", "missing or invalid jid")
    return address


def _read_deliver(form: data_form.Form | None) -> bool:
    """``pubsub#deliver`` of a subscribe options form (default: deliver)."""
    if form is None or form.formType == "cancel":
        return True
    field = form.fields.get("pubsub#deliver")
    if field is None or not field.values:
        return True
    value = str(field.values[0])
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise pubsub_error("bad-request", "invalid-options", "pubsub#deliver is a boolean")
