"""The standalone pubsub service (XEP-0060) at ``[pubsub] domain``.

A router destination (:class:`~xmppd.domainservice.DomainService`): every
stanza for the domain reaches :meth:`PubSubService.send`. Pubsub iqs go to the engine
(:mod:`xmppd.pubsub.engine`) with this service's :class:`ServicePolicy`;
disco#info and disco#items describe the service, its nodes and their items;
anything else gets ``service-unavailable`` (iqs) or is dropped (errors,
results, presence, messages, as a service without them does).

Rules of this service (Prosody's mod_pubsub where XEP-0060 leaves a choice):

* who may create nodes is ``[pubsub] create_nodes``: ``anyone``, ``local``
  (accounts of the server's domain) or ``admins`` (``server.admins``, who
  also own every node); the creator owns the node and may hand out
  affiliations, including other owners;
* a publish to a missing node creates it for those who may create nodes;
* access models ``open`` and ``whitelist`` (presence and roster belong to
  a person's PEP service);
* ``[pubsub] expose_publisher`` shows every item's publisher; a node with
  ``pubsub#itemreply = publisher`` shows it anyway.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish
from wokkel import disco

from xmppd.domainservice import Answer, DomainService
from xmppd.errors import StanzaError
from xmppd.logs import logger
from xmppd.pubsub import NS_PUBSUB, NS_PUBSUB_OWNER
from xmppd.pubsub.engine import Node, Policy, PubSub
from xmppd.pubsub.nodeconfig import meta_data_form
from xmppd.pubsub.store import SCHEMA, account_cleanup

log = logger(__name__)

#: XEP-0060 features (``pubsub#…``) of the service.
SERVICE_FEATURES = (
    "access-open", "access-whitelist", "auto-create", "config-node", "config-node-max",
    "create-and-configure", "create-nodes", "delete-items", "delete-nodes", "instant-nodes",
    "item-ids", "manage-subscriptions", "member-affiliation", "meta-data",
    "modify-affiliations", "outcast-affiliation", "persistent-items", "publish",
    "publish-options", "publisher-affiliation", "purge-nodes", "retract-items",
    "retrieve-affiliations", "retrieve-default", "retrieve-items", "retrieve-subscriptions",
    "subscribe", "subscription-options",
)


class ServicePolicy(Policy):
    """The rules of the standalone service (see the module docstring)."""

    access_models = ("open", "whitelist")
    autocreate = True

    def __init__(self, settings: Any, server_domain: str, admins: tuple[str, ...],
                 send: Any):
        self.settings = settings
        self.local_domain = server_domain
        self.admins = frozenset(admins)
        self._send = send

    def is_admin(self, bare: str) -> bool:
        """Service administrators own every node."""
        return bare in self.admins

    def may_create(self, service: str, requester: jid.JID) -> bool:
        """Per ``[pubsub] create_nodes``."""
        policy = self.settings.create_nodes
        if policy == "anyone":
            return True
        if policy == "local":
            return bool(requester.user) and requester.host == self.local_domain
        return self.is_admin(requester.userhost())

    def show_publisher(self, node: Node) -> bool:
        """``expose_publisher``, or the node's ``itemreply``."""
        return self.settings.expose_publisher or node.config.itemreply == "publisher"

    def send(self, stanza: domish.Element) -> None:
        """Notifications leave from the service's domain."""
        self._send(stanza)


class PubSubService(DomainService):
    """The pubsub component: routes its domain's stanzas to the engine."""

    kind = "pubsub"

    def __init__(self, settings: Any, *, router: Any, database: Any, server_domain: str,
                 admins: tuple[str, ...] = ()):
        super().__init__(settings.domain, router)
        self.settings = settings
        self.database = database
        self.engine = PubSub(database, settings)
        self.policy = ServicePolicy(settings, server_domain, admins, self.route)

    def startService(self) -> None:  # noqa: N802 - Twisted's API
        """Create the tables (queued before any query) and serve the domain."""
        for statement in SCHEMA + account_cleanup(self.policy.local_domain):
            self.database.execute(statement).addErrback(
                lambda f: log.failure("creating the pubsub tables failed", f))
        super().startService()

    def account_deleted(self, username: str) -> None:
        """A local account was deleted: its subscriptions are gone (rows cascade)."""
        self.engine.forget_subscriber(f"{username}@{self.policy.local_domain}")

    def handle_iq(self, kind: str, sender: jid.JID, payload: domish.Element,
                  stanza: domish.Element) -> defer.Deferred | None:
        """Pubsub requests go to the engine; disco#info and #items describe the service."""
        key = (payload.uri, payload.name)
        if key in ((NS_PUBSUB, "pubsub"), (NS_PUBSUB_OWNER, "pubsub")):
            d = self.engine.handle(self.policy, self.domain, sender, kind, payload)
            return d.addCallback(lambda outcome: Answer(outcome.payload, outcome.after))
        if kind == "get" and key == (disco.NS_DISCO_INFO, "query"):
            return self._disco_info(sender, payload.getAttribute("node"))
        if kind == "get" and key == (disco.NS_DISCO_ITEMS, "query"):
            return self._disco_items(sender, payload.getAttribute("node"))
        return None

    @defer.inlineCallbacks
    def _disco_info(self, sender: jid.JID, node_name: str | None):
        info = disco.DiscoInfo()
        if not node_name:
            info.append(disco.DiscoIdentity("pubsub", "service", "xmppd pubsub"))
            for feature in (disco.NS_DISCO_INFO, disco.NS_DISCO_ITEMS, NS_PUBSUB):
                info.append(disco.DiscoFeature(feature))
            for feature in SERVICE_FEATURES:
                info.append(disco.DiscoFeature(NS_PUBSUB + "#" + feature))
            return info.toElement()
        nodes = yield self.engine.nodes(self.domain)
        node = nodes.get(node_name)
        if node is None:
            raise StanzaError("item-not-found")
        info.append(disco.DiscoIdentity("pubsub", "leaf"))
        info.append(disco.DiscoFeature(NS_PUBSUB))
        owners = sorted(e for e, a in node.affiliations.items() if a == "owner")
        info.append(meta_data_form(node.config, owners))
        element = info.toElement()
        element["node"] = node_name
        return element

    @defer.inlineCallbacks
    def _disco_items(self, sender: jid.JID, node_name: str | None):
        items = disco.DiscoItems()
        here = jid.JID(self.domain)
        if not node_name:
            visible = yield self.engine.visible_nodes(self.policy, self.domain, sender)
            for node in sorted(visible, key=lambda n: n.name):
                items.append(disco.DiscoItem(here, node.name, node.config.title or None))
            return items.toElement()
        nodes = yield self.engine.nodes(self.domain)
        node = nodes.get(node_name)
        if node is None:
            raise StanzaError("item-not-found")
        yield self.engine.check_access(self.policy, self.domain, node, sender)
        for item in (yield self.engine.get_items(self.domain, node)):
            items.append(disco.DiscoItem(here, name=item.id))
        element = items.toElement()
        element["node"] = node_name
        return element
