"""Publish-subscribe (XEP-0060), shared by PEP and the pubsub service.

* :mod:`xmppd.pubsub.protocol` — request parsing (XEP-0060's verbs,
  ``publish-options``, retract's ``notify``, delete's ``redirect``) and the
  pubsub error conditions;
* :mod:`xmppd.pubsub.nodeconfig` — a node's configuration, its
  ``pubsub#node_config`` form and ``publish-options`` preconditions;
* :mod:`xmppd.pubsub.store` — nodes, items, affiliations and
  subscriptions in the database;
* :mod:`xmppd.pubsub.model` — items, subscriptions, nodes, and the
  :class:`~xmppd.pubsub.model.Policy`;
* :mod:`xmppd.pubsub.engine` — the operations and their rules, for one
  pubsub service at a time (the subscriber use cases in
  :mod:`xmppd.pubsub.subscribers`, the owner's in :mod:`xmppd.pubsub.owner`),
  with a :class:`~xmppd.pubsub.model.Policy`
  saying what differs between a user's PEP service and the standalone one
  (who owns nodes, who may create them, presence and roster access,
  who gets notified);
* :mod:`xmppd.pubsub.component` — the standalone service
  (``pubsub.localhost`` by default);
* PEP itself is the session manager module :mod:`xmppd.modules.pep`.

Why not wokkel's ``PubSubService``: it is an ``XMPPHandler`` bound to one XML
stream, answers through an ``IPubSubResource`` whose calls carry no notion of
the addressed account, and sends notifications itself on that stream; a
server needs one engine serving thousands of services (every account is
one), notifications computed from rosters and entity capabilities, and the
module system's single iq boundary. Its request parser, ``PubSubRequest``,
puts every JID it reads into Twisted's process-wide JID intern table, which
never shrinks (a store any client could fill), strips the parsed stanza's
namespace in place, and lacks ``publish-options``; see
:mod:`xmppd.pubsub.protocol`.
"""

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_PUBSUB_OWNER = NS_PUBSUB + "#owner"
NS_PUBSUB_EVENT = NS_PUBSUB + "#event"
NS_PUBSUB_ERRORS = NS_PUBSUB + "#errors"
NS_NODE_CONFIG = NS_PUBSUB + "#node_config"
NS_PUBLISH_OPTIONS = NS_PUBSUB + "#publish-options"
NS_SUBSCRIBE_OPTIONS = NS_PUBSUB + "#subscribe_options"
NS_META_DATA = NS_PUBSUB + "#meta-data"
