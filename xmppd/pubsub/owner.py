"""The owner use cases of XEP-0060 (§8): create, configure, delete, purge, and
the owners' view and management of subscriptions and affiliations.

:class:`OwnerOperations` is mixed into :class:`~xmppd.pubsub.engine.PubSub`:
its methods use the engine's rules (affiliations, access, limits), store
and notifications.
"""

from __future__ import annotations

import uuid

from twisted.internet import defer
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from xmppd.addresses import parse_jid
from xmppd.errors import StanzaError
from xmppd.pubsub import NS_PUBSUB_EVENT, NS_PUBSUB_OWNER
from xmppd.pubsub.model import (
    Node,
    Outcome,
    Policy,
    Subscription,
    node_bytes,
    policy_local,
    pubsub_element,
)
from xmppd.pubsub.nodeconfig import NodeConfig, apply_form, config_form
from xmppd.pubsub.protocol import pubsub_error, subscription_element
from xmppd.sm.stanzas import child_elements

#: Affiliations a node's owner can hand out (XEP-0060 §4.1).
AFFILIATIONS = ("owner", "publisher", "member", "outcast", "none")


class OwnerOperations:
    """XEP-0060 §8, for :class:`~xmppd.pubsub.engine.PubSub` (see the module docstring)."""

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
        payload = pubsub_element()
        payload.addElement("create")["node"] = name
        return Outcome(payload)

    def _configure_get(self, policy, service, nodes, sender, request):
        """§8.2: the node's configuration form, for owners."""
        name = request.required_node()
        node = self._node(nodes, name)
        self._owner_only(policy, service, node, sender)
        payload = pubsub_element(NS_PUBSUB_OWNER)
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
        payload = pubsub_element(NS_PUBSUB_OWNER)
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
            self._adjust(service, -node_bytes(node))
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
        payload = pubsub_element(NS_PUBSUB_OWNER)
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
        payload = pubsub_element(NS_PUBSUB_OWNER)
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


def _entity(element: domish.Element) -> jid.JID:
    address = parse_jid(element.getAttribute("jid") or "")
    if address is None:
        raise StanzaError("jid-malformed", "missing or invalid jid")
    return address
