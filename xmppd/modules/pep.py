"""Personal Eventing Protocol (XEP-0163): every account is a pubsub service.

The account's bare JID is a pubsub service (:mod:`xmppd.pubsub.engine`)
whose nodes the account owns:

* **Nodes** are created by the owner, explicitly or by publishing to a new
  node (with ``publish-options`` as its configuration, XEP-0060 §7.1.5 —
  how OMEMO makes its device list and bundles ``open``); nobody else may
  create or publish (``forbidden``). Defaults, as Prosody's mod_pep:
  ``access_model=presence``, ``max_items=1``, items kept,
  ``send_last_published_item=on_sub_and_presence``, headline notifications.
  ``[pubsub] max_items`` is what ``max`` means; ``[pubsub] max_nodes``
  bounds the nodes of one account and ``max_item_size`` one item.
* **Access** (XEP-0060 §4.5): ``open`` — anyone, on any server; ``presence``
  — the owner and contacts with a subscription to the owner's presence;
  ``roster`` — contacts in the allowed roster groups; ``whitelist`` — the
  owner and the entities it affiliated (XEP-0223's private storage).
* **Notifications** (XEP-0163 §4): a publish goes to explicit subscribers
  and to every available resource, of the owner and of its contacts allowed
  by the access model, whose entity capabilities (XEP-0115, the ``caps``
  module) include ``NODE+notify``. When a resource's capabilities become
  known, it is sent the last item of each node it newly shows interest in,
  of its own account and of the contacts whose presence it receives
  (``send_last_published_item=on_sub_and_presence``).
* **Discovery**: the account's disco#info carries ``pubsub``/``pep`` and
  the pubsub features; disco#items lists the nodes the asker may access.

Remote contacts (federation) are notified the same way: the ``caps`` module
follows the caps in the presence their resources send to the account's bare
JID (asking them across S2S), and ``Point.REMOTE_CAPS`` tells this module
when a remote resource's interests are known, so it is sent the last items
it newly wants, once per account (those it may not see yet follow when the
account's presence goes to it: the account approved its subscription). The
account's nodes, items, affiliations and subscriptions are deleted with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from twisted.internet import defer
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish
from wokkel import disco

from xmppd.errors import StanzaError
from xmppd.logs import logger
from xmppd.module import ALREADY_ANSWERED, IQRequest, Module, Point, Scope, hook, iq_handler
from xmppd.pubsub import NS_PUBSUB, NS_PUBSUB_OWNER
from xmppd.pubsub.engine import Item, Node, Outcome, Policy, PubSub
from xmppd.pubsub.nodeconfig import NodeConfig, meta_data_form
from xmppd.pubsub.store import SCHEMA, account_cleanup
from xmppd.sm.stanzas import result_for

log = logger(__name__)

#: XEP-0060 features (``pubsub#…``) of PEP services.
PEP_FEATURES = (
    "access-open", "access-presence", "access-roster", "access-whitelist", "auto-create",
    "auto-subscribe", "config-node", "config-node-max", "create-and-configure",
    "create-nodes", "delete-items", "delete-nodes", "filtered-notifications",
    "item-ids", "last-published", "manage-subscriptions", "member-affiliation",
    "meta-data", "modify-affiliations", "outcast-affiliation", "persistent-items",
    "presence-notifications", "publish", "publish-options", "publisher-affiliation",
    "purge-nodes", "retract-items", "retrieve-affiliations", "retrieve-default",
    "retrieve-items", "retrieve-subscriptions", "subscribe", "subscription-options",
)

PEP_DEFAULTS = NodeConfig(
    access_model="presence", max_items=1, persist_items=True,
    send_last_published_item="on_sub_and_presence", notification_type="headline",
)


class PEPPolicy(Policy):
    """The rules of a PEP service: the account owns everything, contacts by roster."""

    access_models = ("open", "presence", "roster", "whitelist")
    autocreate = True

    def __init__(self, module: PEP):
        self.module = module
        self.local_domain = module.server.domain

    def default_config(self, service: str, node: str | None = None) -> NodeConfig:
        """Prosody's PEP defaults (see the module docstring), or a node's own.

        Modules register defaults for the nodes they know
        (``PEP.node_defaults``): e.g. the XEP-0048 bookmarks node is
        ``whitelist`` from its first publish, whatever the client sends.
        """
        options = self.module.node_defaults.get(node) if node is not None else None
        return dataclasses.replace(PEP_DEFAULTS, **options) if options else PEP_DEFAULTS

    def owner(self, service: str) -> str:
        """The account's bare JID owns every node."""
        return service

    def account(self, service: str) -> str:
        """The account's username."""
        return service.split("@", 1)[0]

    def may_create(self, service: str, requester: jid.JID) -> bool:
        """Only the owner creates nodes."""
        return requester.userhost() == service

    @defer.inlineCallbacks
    def _item(self, service: str, bare: str):
        roster = yield self.module.server.sessions.get_roster(self.account(service))
        return roster.get(bare)

    @defer.inlineCallbacks
    def has_presence_access(self, service: str, requester: str):
        """A contact with a subscription to the owner's presence."""
        item = yield self._item(service, requester)
        return item is not None and item.subscribed_from

    @defer.inlineCallbacks
    def in_roster_groups(self, service: str, requester: str, groups: Iterable[str]):
        """A contact (with presence subscription) in one of the groups."""
        item = yield self._item(service, requester)
        return item is not None and bool(set(item.groups) & set(groups))

    @defer.inlineCallbacks
    def implicit_recipients(self, service: str, node: Node):
        """Available resources with ``NODE+notify`` caps the access model lets in."""
        caps = self.module.server.modules.get("caps")
        if caps is None or not node.config.deliver_notifications:
            return []
        sessions = self.module.server.sessions
        account = self.account(service)
        wanted = node.name
        targets = [s.full for s in sessions.available_of(account) if caps.wants(s.full, wanted)]
        model = node.config.access_model
        roster = yield sessions.get_roster(account)
        suffix = "@" + self.local_domain
        for contact, item in roster.items():
            if node.affiliations.get(contact) == "outcast":
                continue
            if model == "whitelist":
                if node.affiliations.get(contact) not in ("member", "publisher", "owner"):
                    continue
            elif model == "roster":
                # As for reading: the allowed groups decide, not the subscription.
                if not set(item.groups) & set(node.config.roster_groups_allowed):
                    continue
            elif model != "open" and not item.subscribed_from:
                continue
            if contact.endswith(suffix):
                resources = [s.full for s in sessions.available_of(contact[: -len(suffix)])]
            else:  # a remote contact: its resources whose caps reached the account
                resources = caps.remote_resources(contact, account)
            targets.extend(full for full in resources if caps.wants(full, wanted))
        return targets

    def send(self, stanza: domish.Element) -> None:
        """Notifications leave from the account's bare JID, never to whom it blocked."""
        blocking = self.module.server.modules.get("blocking")
        if blocking is not None and blocking.blocks(self.account(stanza["from"]), stanza["to"]):
            return
        self.module.server.sessions.route(stanza)

    def published(self, service: str, node: Node, item: Item) -> None:
        """Tell other modules (``Point.PEP_PUBLISHED``)."""
        self._fire(Point.PEP_PUBLISHED, self.account(service), node.name, item)

    def retracted(self, service: str, node: Node, ids: list[str] | None) -> None:
        """Tell other modules (``Point.PEP_RETRACTED``)."""
        self._fire(Point.PEP_RETRACTED, self.account(service), node.name, ids)

    def _fire(self, point: Point, *args: Any) -> None:
        # The change is stored and notified: a failing listener must not turn
        # the request into an error.
        try:
            self.module.server.modules.fire(point, *args)
        except Exception:
            log.failure("a {point} hook failed", point=point.name)

    def node_deleted(self, service: str, node: Node) -> None:
        """Tell other modules (``Point.PEP_RETRACTED`` with None)."""
        self.retracted(service, node, None)


class PEP(Module):
    """PEP: pubsub on every account's bare JID, notifications filtered by caps."""

    name = "pep"
    identities = {Scope.ACCOUNT: [("pubsub", "pep", None)]}
    features = {
        Scope.ACCOUNT: [NS_PUBSUB] + [NS_PUBSUB + "#" + f for f in PEP_FEATURES],
    }
    schema = SCHEMA

    def __init__(self, server: Any, settings: Any = None):
        super().__init__(server, settings)
        self.limits = server.sessions.config.pubsub
        self.engine = PubSub(server.database, self.limits)
        self.policy = PEPPolicy(self)
        #: Node name -> the options (NodeConfig attributes) a new node of
        #: that name starts with, set by the modules that know the node.
        self.node_defaults: dict[str, dict[str, Any]] = {}
        #: Full JID -> the nodes whose notifications it wants (from its caps).
        self._interests: dict[str, frozenset[str]] = {}
        #: Full JID -> the accounts whose last items it was sent.
        self._served: dict[str, set[str]] = {}
        #: (remote full JID, local username) -> the nodes whose notifications
        #: the remote resource wants (forgotten when it goes unavailable).
        self._remote_interests: dict[tuple[str, str], frozenset[str]] = {}
        #: (remote full JID, local username) -> the wanted nodes whose last
        #: item it could not be sent for want of access (sent when the
        #: account's presence goes to it: a subscription it approved).
        self._remote_pending: dict[tuple[str, str], frozenset[str]] = {}

    def startService(self) -> None:  # noqa: N802 - Twisted's API
        """(Re)make the trigger dropping deleted accounts' affiliations, after the tables."""
        super().startService()
        for statement in account_cleanup(self.server.domain):
            self.server.database.execute(statement).addErrback(
                lambda f: log.failure("creating the pubsub account trigger failed", f))

    def service_of(self, username: str) -> str:
        """The PEP service (bare JID) of an account."""
        return f"{username}@{self.server.domain}"

    # -- for other modules: acting on an account's own behalf -------------------------------

    def publish(self, username: str, node: str, payload: domish.Element | None,
                item_id: str | None = None, options: dict[str, Any] | None = None,
                ) -> defer.Deferred:
        """Publish as the account itself; fires with the item id.

        ``options`` are publish-options (attribute names of
        :class:`~xmppd.pubsub.nodeconfig.NodeConfig`): the configuration of a
        new node, preconditions for an existing one (a mismatch fails with
        ``precondition-not-met``). Notifications go out as for any publish.
        """
        service = self.service_of(username)
        return self.engine.run(service, lambda nodes: self.engine.publish(
            self.policy, service, nodes, jid.JID(service), node, payload, item_id, options))

    def retract(self, username: str, node: str, ids: list[str],
                notify: bool | None = None) -> defer.Deferred:
        """Retract items as the account (``item-not-found`` if none existed)."""
        service = self.service_of(username)

        def retract(nodes):
            found = nodes.get(node)
            if found is None:
                raise StanzaError("item-not-found")
            return self.engine.retract(self.policy, service, found, ids, notify)

        return self.engine.run(service, retract)

    def items(self, username: str, node: str, limit: int | None = None) -> defer.Deferred:
        """Fire with a node's items (oldest first), or None when there is no such node."""
        service = self.service_of(username)

        def items(nodes):
            found = nodes.get(node)
            if found is None:
                return None
            return self.engine.get_items(service, found, limit)

        return self.engine.run(service, items)

    # -- iq ----------------------------------------------------------------------------------

    @iq_handler("get", NS_PUBSUB, "pubsub", Scope.ACCOUNT)
    @iq_handler("set", NS_PUBSUB, "pubsub", Scope.ACCOUNT)
    @iq_handler("get", NS_PUBSUB_OWNER, "pubsub", Scope.ACCOUNT)
    @iq_handler("set", NS_PUBSUB_OWNER, "pubsub", Scope.ACCOUNT)
    @defer.inlineCallbacks
    def serve(self, request: IQRequest):
        """Any pubsub request to an account's bare JID."""
        exists = yield self.server.sessions.user_exists(request.account)
        if not exists:
            raise StanzaError("service-unavailable")
        outcome = yield self.engine.handle(self.policy, self.service_of(request.account),
                                           request.sender, request.kind, request.payload)
        self.answer(request.stanza, outcome)
        return ALREADY_ANSWERED

    def answer(self, stanza: domish.Element, outcome: Outcome) -> None:
        """Send the result, then what goes after it (e.g. the last item on subscription)."""
        reply = result_for(stanza)
        if outcome.payload is not None:
            reply.addChild(outcome.payload)
        self.server.sessions.route(reply)
        for action in outcome.after:
            action()

    # -- disco ---------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def disco_node_info(self, request: IQRequest, node_name: str):
        """disco#info of one of the account's nodes (None if it has none of that name)."""
        nodes = yield self.engine.nodes(self.service_of(request.account))
        node = nodes.get(node_name)
        if node is None:
            return None
        allowed = yield self.engine.may_access(self.policy, self.service_of(request.account),
                                               node, request.sender)
        if not allowed:
            return None
        info = disco.DiscoInfo()
        info.append(disco.DiscoIdentity("pubsub", "leaf"))
        info.append(disco.DiscoFeature(NS_PUBSUB))
        info.append(meta_data_form(node.config, [self.service_of(request.account)]))
        return info

    @defer.inlineCallbacks
    def disco_node_items(self, request: IQRequest, node_name: str | None):
        """The account's nodes (no node) or a node's items, as the asker may see them."""
        service = self.service_of(request.account)
        owner = jid.JID(service)
        if node_name is None:
            visible = yield self.engine.visible_nodes(self.policy, service, request.sender)
            return [disco.DiscoItem(owner, node.name) for node in visible]
        nodes = yield self.engine.nodes(service)
        node = nodes.get(node_name)
        if node is None:
            return None
        allowed = yield self.engine.may_access(self.policy, service, node, request.sender)
        if not allowed:
            return None
        stored = yield self.engine.get_items(service, node)
        return [disco.DiscoItem(owner, name=item.id) for item in stored]

    # -- interests and the last items -------------------------------------------------------

    @hook(Point.CAPS_CHANGED)
    def caps_changed(self, session: Any, features: frozenset) -> None:
        """Send the last items of the nodes the resource newly wants."""
        interests = frozenset(f[: -len("+notify")] for f in features if f.endswith("+notify"))
        before = self._interests.get(session.full, frozenset())
        self._interests[session.full] = interests
        new = interests - before
        if new:
            self.server.sessions.guard(self.send_last_items(session, new), None)

    @defer.inlineCallbacks
    def send_last_items(self, session: Any, wanted: frozenset):
        """The last item of each wanted node of the account and of the contacts it follows."""
        sessions = self.server.sessions
        roster = yield sessions.get_roster(session.username)
        suffix = "@" + self.server.domain
        owners = [session.bare] + [
            contact for contact, item in roster.items()
            if item.subscribed_to and contact.endswith(suffix) and contact != session.bare]
        served = self._served.setdefault(session.full, set())
        for owner in owners:
            served.add(owner)
            yield self.send_owner_items(session, owner, wanted)

    @defer.inlineCallbacks
    def send_owner_items(self, session: Any, owner: str, wanted: frozenset):
        """The last items of one account's wanted nodes, those the session may see."""
        if owner != session.bare:
            exists = yield self.server.sessions.user_exists(owner.split("@", 1)[0])
            if not exists:
                return
        nodes = yield self.engine.nodes(owner)
        for name in sorted(wanted & nodes.keys()):
            node = nodes[name]
            if node.last is None or \
                    node.config.send_last_published_item != "on_sub_and_presence":
                continue
            allowed = yield self.engine.may_access(self.policy, owner, node, session.jid)
            if allowed and session.bound:
                self.engine.send_last(self.policy, owner, node, session.full)

    @hook(Point.REMOTE_CAPS)
    def remote_caps(self, full: str, usernames: frozenset, features: frozenset) -> None:
        """A remote resource's interests are known: the accounts' last items it newly wants."""
        interests = frozenset(f[: -len("+notify")] for f in features if f.endswith("+notify"))
        for username in sorted(usernames):
            key = (full, username)
            if not features:
                self._remote_interests.pop(key, None)
                self._remote_pending.pop(key, None)
                continue
            before = self._remote_interests.get(key, frozenset())
            self._remote_interests[key] = interests
            new = interests - before
            if new:
                self.server.sessions.guard(self.send_remote_items(full, username, new), None)

    @defer.inlineCallbacks
    def send_remote_items(self, full: str, username: str, wanted: frozenset):
        """The last items of an account's wanted nodes that a remote resource may see."""
        exists = yield self.server.sessions.user_exists(username)
        if not exists:
            return
        owner = self.service_of(username)
        nodes = yield self.engine.nodes(owner)
        requester = jid.JID(full)
        key = (full, username)
        denied = set()
        for name in sorted(wanted & nodes.keys()):
            node = nodes[name]
            if node.last is None or \
                    node.config.send_last_published_item != "on_sub_and_presence":
                continue
            allowed = yield self.engine.may_access(self.policy, owner, node, requester)
            interests = self._remote_interests.get(key)
            if interests is None or name not in interests:
                continue  # gone unavailable, or no longer interested, meanwhile
            if allowed:
                self.engine.send_last(self.policy, owner, node, full)
            else:
                denied.add(name)
        pending = (self._remote_pending.get(key, frozenset()) - wanted) | denied
        if pending and key in self._remote_interests:
            self._remote_pending[key] = frozenset(pending)
        else:
            self._remote_pending.pop(key, None)

    @hook(Point.ROUTE_PRESENCE)
    def presence_routed(self, stanza: domish.Element) -> bool:
        """A user's available presence goes to a remote contact (e.g. after approving its
        subscription): its resources get the last items they were refused before."""
        if not self._remote_pending or stanza.getAttribute("type") is not None:
            return False
        sender, to = stanza.getAttribute("from") or "", stanza.getAttribute("to") or ""
        user, _, host = sender.partition("/")[0].partition("@")
        if host != self.server.domain or not to:
            return False
        bare = to.split("/", 1)[0]
        for (full, username), nodes in list(self._remote_pending.items()):
            if username == user and full.split("/", 1)[0] == bare:
                self.server.sessions.guard(self.send_remote_items(full, username, nodes), None)
        return False

    @hook(Point.DELIVER_PRESENCE)
    def presence_delivered(self, session: Any, stanza: domish.Element) -> None:
        """A contact's available presence reaches a resource: its last items follow, once.

        This covers a subscription that starts while both are online (the
        caps were known before the contact's presence could be seen).
        """
        if stanza.getAttribute("type") is not None:
            return None
        interests = self._interests.get(session.full)
        if not interests:
            return None
        sender = stanza.getAttribute("from")
        if not sender:
            return None
        owner = sender.split("/", 1)[0]
        if "@" not in owner or not owner.endswith("@" + self.server.domain):
            return None
        served = self._served.setdefault(session.full, set())
        if owner in served:
            return None
        served.add(owner)
        self.server.sessions.guard(self.send_owner_items(session, owner, interests), None)
        return None

    @hook(Point.RESOURCE_UNAVAILABLE)
    def resource_unavailable(self, session: Any, stanza: domish.Element) -> None:
        """A resource that comes back sends its caps again."""
        self._interests.pop(session.full, None)
        self._served.pop(session.full, None)

    @hook(Point.SESSION_ENDED)
    def session_ended(self, session: Any) -> None:
        """Forget the resource's interests."""
        self._interests.pop(session.full, None)
        self._served.pop(session.full, None)

    @hook(Point.ACCOUNT_DELETED)
    def account_deleted(self, username: str) -> None:
        """The rows went with the account; drop the loaded service and its subscriptions."""
        self.engine.forget(self.service_of(username))
        self.engine.forget_subscriber(self.service_of(username))
