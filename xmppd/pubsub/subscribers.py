"""The subscriber use cases of XEP-0060 (§5.6-5.7, §6.1-6.3): subscribe,
unsubscribe, subscription options, and an entity's own subscriptions and
affiliations.

:class:`SubscriberOperations` is mixed into :class:`~xmppd.pubsub.engine.PubSub`:
its methods use the engine's rules (access, limits), store and last items.
"""

from __future__ import annotations

import uuid

from twisted.internet import defer
from twisted.words.xish import domish
from wokkel import data_form

from xmppd.errors import StanzaError
from xmppd.pubsub import NS_PUBSUB, NS_SUBSCRIBE_OPTIONS
from xmppd.pubsub.model import Node, Outcome, Subscription, policy_local, pubsub_element
from xmppd.pubsub.protocol import pubsub_error, subscription_element


class SubscriberOperations:
    """XEP-0060 §5-6, for :class:`~xmppd.pubsub.engine.PubSub` (see the module docstring)."""

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
        payload = pubsub_element()
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
        payload = pubsub_element()
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


def _listing(name: str, nodes: dict[str, Node], wanted: str | None,
             ) -> tuple[domish.Element, domish.Element, list[Node]]:
    """A ``<pubsub><NAME [node]/></pubsub>`` result and the nodes it is about."""
    payload = pubsub_element()
    listing = payload.addElement(name)
    if wanted is not None:
        listing["node"] = wanted
    chosen = [node for node in nodes.values() if wanted is None or node.name == wanted]
    return payload, listing, chosen


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
