"""xmppd.pubsub.engine: XEP-0060's operations on a real SQLite database."""

from __future__ import annotations

from twisted.internet import defer, reactor, task
from twisted.trial import unittest
from twisted.words.protocols.jabber import jid

from tests.sm_fakes import stanza
from xmppd.config import PubSubSettings
from xmppd.errors import StanzaError
from xmppd.pubsub import (
    NS_PUBSUB,
    NS_PUBSUB_EVENT,
    NS_PUBSUB_OWNER,
)
from xmppd.pubsub.engine import Policy, PubSub
from xmppd.pubsub.nodeconfig import NodeConfig
from xmppd.pubsub.store import SCHEMA
from xmppd.sm.stanzas import child_elements
from xmppd.storage.database import Database

SERVICE = "pubsub.example"
OWNER = "owner@example"
ALICE = "alice@example"
BOB = "bob@example"
EVE = "eve@elsewhere"
PAYLOAD = "<entry xmlns='urn:test'><title>hello</title></entry>"


def form(namespace, fields, form_type="submit"):
    """A data form's XML: {var: value or [values]}."""
    xml = [f"<x xmlns='jabber:x:data' type='{form_type}'><field var='FORM_TYPE' "
           f"type='hidden'><value>{namespace}</value></field>"]
    for var, value in fields.items():
        values = value if isinstance(value, list) else [value]
        xml.append(f"<field var='{var}'>" + "".join(f"<value>{v}</value>" for v in values)
                   + "</field>")
    return "".join(xml) + "</x>"


def config(**fields):
    return form(NS_PUBSUB + "#node_config", {"pubsub#" + k: v for k, v in fields.items()})


def publish_options(**fields):
    return ("<publish-options>"
            + form(NS_PUBSUB + "#publish-options", {"pubsub#" + k: v for k, v in fields.items()})
            + "</publish-options>")


def app(error):
    element = error.appCondition
    return None if element is None else element.name


class RecordingPolicy(Policy):
    """A policy for tests: records what is sent and what other modules would hear."""

    access_models = ("open", "presence", "roster", "whitelist")

    def __init__(self, fixed_owner=None, creators=None, presence=(), groups=None,
                 implicit=()):
        self.fixed_owner = fixed_owner
        self.creators = creators
        self.presence = set(presence)
        self.groups = groups or {}
        self.implicit = list(implicit)
        self.local_domain = "example"
        self.sent = []
        self.events = []

    def owner(self, service):
        return self.fixed_owner

    def may_create(self, service, requester):
        return self.creators is None or requester.userhost() in self.creators

    def has_presence_access(self, service, requester):
        return defer.succeed(requester in self.presence)

    def in_roster_groups(self, service, requester, groups):
        return defer.succeed(bool(set(self.groups.get(requester, ())) & set(groups)))

    def implicit_recipients(self, service, node):
        return defer.succeed(list(self.implicit))

    def send(self, stanza):
        self.sent.append(stanza)

    def published(self, service, node, item):
        self.events.append(("published", node.name, item.id))

    def retracted(self, service, node, ids):
        self.events.append(("retracted", node.name, ids))

    def node_deleted(self, service, node):
        self.events.append(("deleted", node.name))

    def take(self):
        """The notifications sent so far, as (to, event child element), forgotten."""
        sent, self.sent = self.sent, []
        result = []
        for message in sent:
            assert message["from"] == SERVICE, message.toXml()
            [event] = child_elements(message)
            assert (event.uri, event.name) == (NS_PUBSUB_EVENT, "event"), message.toXml()
            [child] = child_elements(event)
            result.append((message["to"], child))
        return result


class EngineTestCase(unittest.TestCase):
    """A database with the pubsub tables, an engine and a recording policy."""

    @defer.inlineCallbacks
    def setUp(self):
        self.path = self.mktemp() + "/xmppd.sqlite"
        self.db = Database(self.path)
        yield self.db.open()
        self.addCleanup(self.db.close)
        for statement in SCHEMA:
            yield self.db.execute(statement)
        for user in ("alice", "bob"):
            yield self.db.execute("INSERT INTO accounts (username, created) VALUES (?, 0)", user)
        self.settings = PubSubSettings(max_items=10, max_item_size=1024, max_nodes=4,
                                       max_subscriptions=3)
        self.engine = PubSub(self.db, self.settings)
        self.policy = RecordingPolicy()

    @defer.inlineCallbacks
    def ask(self, sender, kind, inner, owner=False, policy=None, service=SERVICE):
        """Send a request; fire with the result payload (the 'after' actions run)."""
        uri = NS_PUBSUB_OWNER if owner else NS_PUBSUB
        element = stanza(f"<pubsub xmlns='{uri}'>{inner}</pubsub>")
        outcome = yield self.engine.handle(policy or self.policy, service, jid.JID(sender),
                                           kind, element)
        for action in outcome.after:
            action()
        return outcome.payload

    @defer.inlineCallbacks
    def refused(self, condition, pubsub_condition, sender, kind, inner, owner=False,
                policy=None):
        """Send a request that must fail with that condition (and pubsub condition)."""
        uri = NS_PUBSUB_OWNER if owner else NS_PUBSUB
        element = stanza(f"<pubsub xmlns='{uri}'>{inner}</pubsub>")
        d = self.engine.handle(policy or self.policy, SERVICE, jid.JID(sender), kind, element)
        error = yield self.assertFailure(d, StanzaError)
        self.assertEqual((error.condition, app(error)), (condition, pubsub_condition), inner)
        return error

    def create(self, node="n", sender=OWNER, **fields):
        inner = f"<create node='{node}'/>"
        if fields:
            inner += f"<configure>{config(**fields)}</configure>"
        return self.ask(sender, "set", inner)

    @defer.inlineCallbacks
    def publish(self, node="n", item_id=None, payload=PAYLOAD, sender=OWNER, extra=""):
        id_attr = f" id='{item_id}'" if item_id is not None else ""
        result = yield self.ask(sender, "set", f"<publish node='{node}'><item{id_attr}>"
                                               f"{payload}</item></publish>{extra}")
        return result.publish.item["id"]

    @defer.inlineCallbacks
    def item_ids(self, node="n", sender=OWNER, attrs="", inner=""):
        result = yield self.ask(sender, "get", f"<items node='{node}'{attrs}>{inner}</items>")
        return [item["id"] for item in child_elements(result.items)]

    def subscribe(self, subscriber, node="n", sender=None, options=""):
        sender = sender or subscriber
        return self.ask(sender, "set", f"<subscribe node='{node}' jid='{subscriber}'/>"
                                       + options)

    def affiliate(self, entity, affiliation, node="n", sender=OWNER):
        return self.ask(sender, "set", f"<affiliations node='{node}'><affiliation "
                                       f"jid='{entity}' affiliation='{affiliation}'/>"
                                       "</affiliations>", owner=True)

    @defer.inlineCallbacks
    def node(self, name="n"):
        nodes = yield self.engine.nodes(SERVICE)
        return nodes.get(name)

    def rows(self, table, node="n"):
        return self.db.query(f"SELECT * FROM {table} WHERE service = ? AND node = ?",
                             SERVICE, node)


class CreateTests(EngineTestCase):
    """§8.1: create, instant nodes, create-and-configure."""

    @defer.inlineCallbacks
    def test_create_and_conflict(self):
        self.assertIsNone((yield self.create()))
        node = yield self.node()
        self.assertEqual(node.affiliations, {OWNER: "owner"})
        self.assertEqual(node.config, NodeConfig())
        yield self.refused("conflict", None, OWNER, "set", "<create node='n'/>")
        yield self.refused("conflict", None, ALICE, "set", "<create node='n'/>")

    @defer.inlineCallbacks
    def test_instant_node(self):
        result = yield self.ask(OWNER, "set", "<create/>")
        name = result.create["node"]
        self.assertTrue(name)
        self.assertIsNotNone((yield self.node(name)))
        other = yield self.ask(OWNER, "set", "<create/>")
        self.assertNotEqual(other.create["node"], name)

    @defer.inlineCallbacks
    def test_forbidden(self):
        self.policy.creators = {OWNER}
        yield self.refused("forbidden", None, ALICE, "set", "<create node='n'/>")
        self.assertIsNone((yield self.node()))

    @defer.inlineCallbacks
    def test_create_and_configure(self):
        yield self.create(access_model="whitelist", max_items="3", title="T")
        node = yield self.node()
        self.assertEqual(node.config, NodeConfig(access_model="whitelist", max_items=3,
                                                 title="T"))

    @defer.inlineCallbacks
    def test_create_with_unavailable_or_invalid_config(self):
        self.policy.access_models = ("open", "whitelist")
        yield self.refused("not-acceptable", None, OWNER, "set",
                           f"<create node='n'/><configure>{config(access_model='presence')}"
                           "</configure>")
        yield self.refused("not-acceptable", None, OWNER, "set",
                           f"<create node='n'/><configure>{config(max_items='none')}"
                           "</configure>")
        self.assertIsNone((yield self.node()))

    @defer.inlineCallbacks
    def test_max_items_above_the_service_maximum(self):
        """Prosody refuses a max_items above its maximum: not-acceptable."""
        yield self.refused("not-acceptable", None, OWNER, "set",
                           f"<create node='n'/><configure>{config(max_items='11')}"
                           "</configure>")
        yield self.create(max_items="10")
        yield self.refused("not-acceptable", None, OWNER, "set",
                           f"<configure node='n'>{config(max_items='11')}</configure>",
                           owner=True)

    @defer.inlineCallbacks
    def test_max_nodes(self):
        for number in range(4):
            yield self.create(f"n{number}")
        yield self.refused("not-allowed", "max-nodes-exceeded", OWNER, "set",
                           "<create node='n4'/>")
        yield self.create("a1", sender=ALICE)
        yield self.ask(OWNER, "set", "<delete node='n0'/>", owner=True)
        yield self.create("n4")

    @defer.inlineCallbacks
    def test_default_config(self):
        result = yield self.ask(OWNER, "get", "<default/>", owner=True)
        fields = {f["var"]: f for f in result.default.x.elements() if f.name == "field"}
        self.assertEqual(str(fields["pubsub#max_items"].value), "20")


class PublishTests(EngineTestCase):
    """§7.1: publishing, ids, limits, publish-options, publish models."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        yield self.create()

    @defer.inlineCallbacks
    def test_with_and_without_id(self):
        self.assertEqual((yield self.publish(item_id="first")), "first")
        generated = yield self.publish()
        self.assertTrue(generated)
        self.assertNotEqual(generated, "first")
        self.assertEqual((yield self.item_ids()), ["first", generated])
        self.assertEqual(self.policy.events, [("published", "n", "first"),
                                              ("published", "n", generated)])

    @defer.inlineCallbacks
    def test_replace_same_id(self):
        yield self.publish(item_id="a")
        yield self.publish(item_id="b")
        yield self.publish(item_id="a", payload="<entry xmlns='urn:test'>new</entry>")
        self.assertEqual((yield self.item_ids()), ["b", "a"])
        result = yield self.ask(OWNER, "get", "<items node='n'><item id='a'/></items>")
        self.assertEqual(str(result.items.item.entry), "new")
        self.assertEqual(len((yield self.rows("pubsub_items"))), 2)

    @defer.inlineCallbacks
    def test_max_items_trimming(self):
        yield self.ask(OWNER, "set", f"<configure node='n'>{config(max_items='3')}</configure>",
                       owner=True)
        for number in range(5):
            yield self.publish(item_id=f"i{number}")
        self.assertEqual((yield self.item_ids()), ["i2", "i3", "i4"])
        yield self.ask(OWNER, "set", f"<configure node='n'>{config(max_items='1')}</configure>",
                       owner=True)
        self.assertEqual((yield self.item_ids()), ["i4"])
        self.assertEqual(len((yield self.rows("pubsub_items"))), 1)
        # 'max' follows the service's limit (10 here).
        yield self.ask(OWNER, "set", f"<configure node='n'>{config(max_items='max')}"
                                     "</configure>", owner=True)
        for number in range(12):
            yield self.publish(item_id=f"j{number}")
        self.assertEqual(len((yield self.item_ids())), 10)

    @defer.inlineCallbacks
    def test_not_persistent(self):
        yield self.create("t", persist_items="0")
        yield self.publish("t", "a")
        yield self.publish("t", "b")
        self.assertEqual((yield self.item_ids("t")), ["b"])
        self.assertEqual((yield self.rows("pubsub_items", "t")), [])
        # A persistent node that stops persisting forgets its stored items.
        yield self.publish(item_id="x")
        yield self.ask(OWNER, "set", f"<configure node='n'>{config(persist_items='0')}"
                                     "</configure>", owner=True)
        self.assertEqual((yield self.rows("pubsub_items")), [])

    @defer.inlineCallbacks
    def test_payload_too_big(self):
        big = "<entry xmlns='urn:test'>" + "x" * 1024 + "</entry>"
        yield self.refused("not-acceptable", "payload-too-big", OWNER, "set",
                           f"<publish node='n'><item id='a'>{big}</item></publish>")
        self.assertEqual((yield self.item_ids()), [])

    @defer.inlineCallbacks
    def test_payload_item_and_payload_errors(self):
        yield self.refused("bad-request", "payload-required", OWNER, "set",
                           "<publish node='n'><item id='a'/></publish>")
        yield self.refused("bad-request", "item-required", OWNER, "set",
                           "<publish node='n'/>")
        yield self.refused("bad-request", "invalid-payload", OWNER, "set",
                           f"<publish node='n'><item>{PAYLOAD}{PAYLOAD}</item></publish>")
        yield self.refused("bad-request", "nodeid-required", OWNER, "set",
                           f"<publish><item>{PAYLOAD}</item></publish>")
        yield self.refused("bad-request", None, OWNER, "set",
                           f"<publish node='n'><item>{PAYLOAD}</item><item>{PAYLOAD}</item>"
                           "</publish>")
        self.assertEqual((yield self.item_ids()), [])

    @defer.inlineCallbacks
    def test_transient_notification_only_node(self):
        """No payload is needed where none is kept or delivered."""
        yield self.create("t", persist_items="0", deliver_payloads="0")
        yield self.publish("t", "a", payload="")
        self.assertEqual((yield self.item_ids("t")), ["a"])

    @defer.inlineCallbacks
    def test_publish_options_create(self):
        yield self.publish("new", "a", extra=publish_options(access_model="whitelist",
                                                             max_items="max"))
        node = yield self.node("new")
        self.assertEqual((node.config.access_model, node.config.max_items), ("whitelist", None))
        self.assertEqual(node.affiliations, {OWNER: "owner"})
        # Matching preconditions publish; a mismatch does not.
        yield self.publish("new", "b", extra=publish_options(access_model="whitelist"))
        yield self.refused("conflict", "precondition-not-met", OWNER, "set",
                           f"<publish node='new'><item id='c'>{PAYLOAD}</item></publish>"
                           + publish_options(access_model="open"))
        yield self.refused("conflict", "precondition-not-met", OWNER, "set",
                           f"<publish node='new'><item id='c'>{PAYLOAD}</item></publish>"
                           + publish_options(unknown_option="1"))
        self.assertEqual((yield self.item_ids("new")), ["a", "b"])

    @defer.inlineCallbacks
    def test_failed_publish_creates_no_node(self):
        """A publish refused for its item does not leave an auto-created node behind."""
        yield self.refused("bad-request", "payload-required", OWNER, "set",
                           "<publish node='new'><item id='a'/></publish>")
        self.assertIsNone((yield self.node("new")))
        self.assertEqual((yield self.rows("pubsub_nodes", "new")), [])

    @defer.inlineCallbacks
    def test_autocreate_needs_creation_rights(self):
        self.policy.creators = {OWNER}
        yield self.refused("item-not-found", None, ALICE, "set",
                           f"<publish node='other'><item>{PAYLOAD}</item></publish>")
        self.policy.autocreate = False
        yield self.refused("item-not-found", None, OWNER, "set",
                           f"<publish node='other'><item>{PAYLOAD}</item></publish>")

    @defer.inlineCallbacks
    def test_publish_models(self):
        # publishers (default): owners and publishers only.
        yield self.refused("forbidden", None, ALICE, "set",
                           f"<publish node='n'><item>{PAYLOAD}</item></publish>")
        yield self.affiliate(ALICE, "publisher")
        yield self.publish(sender=ALICE + "/phone", item_id="by-alice")
        yield self.affiliate(ALICE, "member")
        yield self.refused("forbidden", None, ALICE, "set",
                           f"<publish node='n'><item>{PAYLOAD}</item></publish>")
        # subscribers: subscribers too.
        yield self.ask(OWNER, "set", f"<configure node='n'>"
                                     f"{config(publish_model='subscribers')}</configure>",
                       owner=True)
        yield self.refused("forbidden", None, BOB, "set",
                           f"<publish node='n'><item>{PAYLOAD}</item></publish>")
        yield self.subscribe(BOB + "/pc")
        yield self.publish(sender=BOB + "/other")
        # open: anyone but outcasts.
        yield self.ask(OWNER, "set", f"<configure node='n'>{config(publish_model='open')}"
                                     "</configure>", owner=True)
        yield self.publish(sender=EVE)
        yield self.affiliate(EVE, "outcast")
        yield self.refused("forbidden", None, EVE, "set",
                           f"<publish node='n'><item>{PAYLOAD}</item></publish>")

    @defer.inlineCallbacks
    def test_notification(self):
        yield self.subscribe(ALICE)
        yield self.publish(item_id="a")
        [(to, items)] = self.policy.take()
        self.assertEqual(to, ALICE)
        self.assertEqual((items.name, items["node"]), ("items", "n"))
        self.assertEqual(items.item["id"], "a")
        self.assertEqual(str(items.item.entry.title), "hello")
        self.assertFalse(items.item.hasAttribute("publisher"))
        yield self.ask(OWNER, "set", f"<configure node='n'>"
                                     f"{config(deliver_payloads='0', itemreply='publisher')}"
                                     "</configure>", owner=True)
        yield self.publish(item_id="b")
        [(to, items)] = self.policy.take()
        self.assertEqual(items.item["publisher"], OWNER)
        self.assertEqual(child_elements(items.item), [])

    @defer.inlineCallbacks
    def test_notification_message(self):
        yield self.subscribe(ALICE)
        yield self.publish(item_id="a")
        [message] = self.policy.sent
        self.assertEqual((message.name, message["type"], message["to"]),
                         ("message", "headline", ALICE))
        yield self.ask(OWNER, "set", f"<configure node='n'>"
                                     f"{config(notification_type='normal')}</configure>",
                       owner=True)
        self.policy.sent = []
        yield self.publish(item_id="b")
        [message] = self.policy.sent
        self.assertFalse(message.hasAttribute("type"))


class ItemsTests(EngineTestCase):
    """§6.5 retrieving items; §7.2 retract; §8.5 purge."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        yield self.create()
        for name in ("a", "b", "c", "d"):
            yield self.publish(item_id=name)
        yield self.subscribe(ALICE)
        self.policy.sent = []
        self.policy.events = []

    @defer.inlineCallbacks
    def test_items(self):
        self.assertEqual((yield self.item_ids()), ["a", "b", "c", "d"])
        self.assertEqual((yield self.item_ids(attrs=" max_items='2'")), ["c", "d"])
        self.assertEqual((yield self.item_ids(attrs=" max_items='99999999999999999999'")),
                         ["a", "b", "c", "d"])
        self.assertEqual((yield self.item_ids(inner="<item id='b'/><item id='zz'/>"
                                                    "<item id='a'/>")), ["a", "b"])
        result = yield self.ask(OWNER, "get", "<items node='n' max_items='1'/>")
        self.assertEqual(str(result.items.item.entry.title), "hello")
        yield self.refused("item-not-found", None, OWNER, "get", "<items node='none'/>")
        yield self.refused("bad-request", None, OWNER, "get", "<items node='n' max_items='0'/>")
        yield self.refused("bad-request", "nodeid-required", OWNER, "get", "<items/>")

    @defer.inlineCallbacks
    def test_retract_notify(self):
        yield self.ask(OWNER, "set", "<retract node='n' notify='true'><item id='b'/></retract>")
        [(to, items)] = self.policy.take()
        self.assertEqual((to, items.name, items.retract["id"]), (ALICE, "items", "b"))
        self.assertEqual(self.policy.events, [("retracted", "n", ["b"])])
        yield self.ask(OWNER, "set", "<retract node='n' notify='0'><item id='c'/></retract>")
        self.assertEqual(self.policy.take(), [])
        self.assertEqual((yield self.item_ids()), ["a", "d"])

    @defer.inlineCallbacks
    def test_retract_follows_notify_retract_without_the_flag(self):
        yield self.ask(OWNER, "set", "<retract node='n'><item id='a'/></retract>")
        self.assertEqual(len(self.policy.take()), 1)
        yield self.ask(OWNER, "set", f"<configure node='n'>{config(notify_retract='0')}"
                                     "</configure>", owner=True)
        yield self.ask(OWNER, "set", "<retract node='n'><item id='b'/></retract>")
        self.assertEqual(self.policy.take(), [])

    @defer.inlineCallbacks
    def test_retract_errors(self):
        yield self.refused("item-not-found", None, OWNER, "set",
                           "<retract node='n'><item id='nope'/></retract>")
        yield self.refused("bad-request", "item-required", OWNER, "set",
                           "<retract node='n'/>")
        yield self.refused("bad-request", "item-required", OWNER, "set",
                           "<retract node='n'><item/></retract>")
        yield self.refused("forbidden", None, ALICE, "set",
                           "<retract node='n'><item id='a'/></retract>")
        yield self.refused("item-not-found", None, OWNER, "set",
                           "<retract node='none'><item id='a'/></retract>")
        self.assertEqual((yield self.item_ids()), ["a", "b", "c", "d"])

    @defer.inlineCallbacks
    def test_retract_last_item_restores_the_previous(self):
        yield self.ask(OWNER, "set", "<retract node='n'><item id='d'/></retract>")
        node = yield self.node()
        self.assertEqual(node.last.id, "c")

    @defer.inlineCallbacks
    def test_purge(self):
        yield self.ask(OWNER, "set", "<purge node='n'/>", owner=True)
        self.assertEqual((yield self.item_ids()), [])
        [(to, purge)] = self.policy.take()
        self.assertEqual((to, purge.name, purge["node"]), (ALICE, "purge", "n"))
        self.assertEqual(self.policy.events, [("retracted", "n", None)])
        self.assertIsNone((yield self.node()).last)
        yield self.refused("forbidden", None, ALICE, "set", "<purge node='n'/>", owner=True)


class DeleteTests(EngineTestCase):
    """§8.4: deleting a node."""

    @defer.inlineCallbacks
    def test_delete_with_redirect(self):
        yield self.create()
        yield self.publish(item_id="a")
        yield self.subscribe(ALICE + "/desk")
        yield self.affiliate(BOB, "publisher")
        self.policy.sent = []
        yield self.refused("forbidden", None, ALICE, "set", "<delete node='n'/>", owner=True)
        yield self.ask(OWNER, "set", "<delete node='n'><redirect uri='xmpp:pubsub.example?;"
                                     "node=m'/></delete>", owner=True)
        [(to, deleted)] = self.policy.take()
        self.assertEqual((to, deleted.name, deleted["node"]), (ALICE + "/desk", "delete", "n"))
        self.assertEqual(deleted.redirect["uri"], "xmpp:pubsub.example?;node=m")
        self.assertEqual(self.policy.events[-1], ("deleted", "n"))
        self.assertIsNone((yield self.node()))
        for table in ("pubsub_nodes", "pubsub_items", "pubsub_affiliations",
                      "pubsub_subscriptions"):
            self.assertEqual((yield self.rows(table)), [], table)
        yield self.refused("item-not-found", None, OWNER, "get", "<items node='n'/>")
        yield self.refused("item-not-found", None, OWNER, "set", "<delete node='n'/>",
                           owner=True)
        # The name can be used again, as a new node.
        yield self.create()
        self.assertEqual((yield self.item_ids()), [])

    @defer.inlineCallbacks
    def test_delete_without_notification(self):
        yield self.create(notify_delete="0")
        yield self.subscribe(ALICE)
        yield self.ask(OWNER, "set", "<delete node='n'/>", owner=True)
        self.assertEqual(self.policy.take(), [])


class SubscriptionTests(EngineTestCase):
    """§6.1-6.4: subscribe, unsubscribe, options, one's subscriptions."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        yield self.create()

    @defer.inlineCallbacks
    def test_subscribe_and_unsubscribe(self):
        result = yield self.subscribe(ALICE + "/phone")
        sub = result.subscription
        self.assertEqual((sub["node"], sub["jid"], sub["subscription"]),
                         ("n", ALICE + "/phone", "subscribed"))
        self.assertTrue(sub["subid"])
        again = yield self.subscribe(ALICE + "/phone")
        self.assertEqual(again.subscription["subid"], sub["subid"])
        mine = yield self.ask(ALICE + "/other", "get", "<subscriptions/>")
        self.assertEqual([s["jid"] for s in child_elements(mine.subscriptions)],
                         [ALICE + "/phone"])
        yield self.ask(ALICE + "/other", "set", f"<unsubscribe node='n' jid='{ALICE}/phone'/>")
        self.assertEqual((yield self.node()).subscriptions, {})
        self.assertEqual((yield self.rows("pubsub_subscriptions")), [])
        yield self.refused("unexpected-request", "not-subscribed", ALICE, "set",
                           f"<unsubscribe node='n' jid='{ALICE}/phone'/>")

    @defer.inlineCallbacks
    def test_subscription_errors(self):
        yield self.refused("bad-request", "invalid-jid", ALICE, "set",
                           f"<subscribe node='n' jid='{BOB}'/>")
        yield self.refused("bad-request", "jid-required", ALICE, "set", "<subscribe node='n'/>")
        yield self.refused("item-not-found", None, ALICE, "set",
                           f"<subscribe node='none' jid='{ALICE}'/>")
        yield self.subscribe(BOB)
        yield self.refused("forbidden", None, ALICE, "set",
                           f"<unsubscribe node='n' jid='{BOB}'/>")

    @defer.inlineCallbacks
    def test_too_many_subscriptions(self):
        for user in ("a@x", "b@x", "c@x"):
            yield self.subscribe(user)
        yield self.refused("not-allowed", "too-many-subscriptions", "d@x", "set",
                           "<subscribe node='n' jid='d@x'/>")
        yield self.subscribe("a@x")  # an existing subscription is not a new one

    @defer.inlineCallbacks
    def test_last_item_on_subscription(self):
        yield self.publish(item_id="a")
        self.policy.sent = []
        yield self.subscribe(ALICE)
        self.assertEqual(self.policy.take(), [])  # default: never
        yield self.ask(OWNER, "set", f"<configure node='n'>"
                                     f"{config(send_last_published_item='on_sub')}</configure>",
                       owner=True)
        yield self.subscribe(BOB)
        [(to, items)] = self.policy.take()
        self.assertEqual((to, items.item["id"]), (BOB, "a"))

    @defer.inlineCallbacks
    def test_deliver_false_stops_notifications(self):
        yield self.subscribe(ALICE)
        yield self.subscribe(BOB, options="<options>" + form(
            NS_PUBSUB + "#subscribe_options", {"pubsub#deliver": "0"}) + "</options>")
        yield self.publish()
        self.assertEqual([to for to, _ in self.policy.take()], [ALICE])
        result = yield self.ask(ALICE, "get", f"<options node='n' jid='{ALICE}'/>")
        fields = {f["var"]: str(f.value) for f in result.options.x.elements()
                  if f.name == "field"}
        self.assertIn(fields["pubsub#deliver"], ("1", "true"))
        yield self.ask(ALICE, "set", f"<options node='n' jid='{ALICE}'>" + form(
            NS_PUBSUB + "#subscribe_options", {"pubsub#deliver": "false"}) + "</options>")
        yield self.publish()
        self.assertEqual(self.policy.take(), [])
        yield self.refused("bad-request", "invalid-options", ALICE, "set",
                           f"<options node='n' jid='{ALICE}'>" + form(
                               NS_PUBSUB + "#subscribe_options", {"pubsub#deliver": "maybe"})
                           + "</options>")
        yield self.refused("unexpected-request", "not-subscribed", EVE, "get",
                           f"<options node='n' jid='{EVE}'/>")
        rows = yield self.db.query("SELECT jid, deliver FROM pubsub_subscriptions ORDER BY jid")
        self.assertEqual(rows, [(ALICE, 0), (BOB, 0)])

    @defer.inlineCallbacks
    def test_implicit_recipients_not_doubled(self):
        self.policy.implicit = [ALICE + "/phone", BOB + "/pc"]
        yield self.subscribe(ALICE)
        yield self.publish()
        self.assertEqual(sorted(to for to, _ in self.policy.take()), [ALICE, BOB + "/pc"])


class AccessTests(EngineTestCase):
    """§4.5 access models and affiliations decide who retrieves and subscribes."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        yield self.create()
        yield self.publish(item_id="a")

    @defer.inlineCallbacks
    def configure(self, **fields):
        yield self.ask(OWNER, "set", f"<configure node='n'>{config(**fields)}</configure>",
                       owner=True)

    @defer.inlineCallbacks
    def assertRefused(self, who, condition, pubsub_condition):
        yield self.refused(condition, pubsub_condition, who, "get", "<items node='n'/>")
        yield self.refused(condition, pubsub_condition, who, "set",
                           f"<subscribe node='n' jid='{who}'/>")

    @defer.inlineCallbacks
    def test_open(self):
        self.assertEqual((yield self.item_ids(sender=EVE)), ["a"])
        yield self.subscribe(EVE)

    @defer.inlineCallbacks
    def test_presence(self):
        yield self.configure(access_model="presence")
        self.policy.presence = {ALICE}
        self.assertEqual((yield self.item_ids(sender=ALICE)), ["a"])
        yield self.assertRefused(BOB, "not-authorized", "presence-subscription-required")

    @defer.inlineCallbacks
    def test_roster(self):
        yield self.configure(access_model="roster", roster_groups_allowed=["Friends", "Work"])
        self.policy.groups = {ALICE: ("Work",), BOB: ("Family",)}
        self.assertEqual((yield self.item_ids(sender=ALICE)), ["a"])
        yield self.assertRefused(BOB, "not-authorized", "not-in-roster-group")

    @defer.inlineCallbacks
    def test_whitelist(self):
        yield self.configure(access_model="whitelist")
        yield self.assertRefused(ALICE, "not-allowed", "closed-node")
        yield self.affiliate(ALICE, "member")
        self.assertEqual((yield self.item_ids(sender=ALICE)), ["a"])
        self.assertEqual((yield self.item_ids(sender=OWNER)), ["a"])

    @defer.inlineCallbacks
    def test_outcast(self):
        yield self.subscribe(EVE + "/x")
        yield self.affiliate(EVE, "outcast")
        self.assertEqual((yield self.node()).subscriptions, {})
        self.assertEqual((yield self.rows("pubsub_subscriptions")), [])
        yield self.refused("forbidden", None, EVE, "get", "<items node='n'/>")
        yield self.refused("forbidden", None, EVE, "set", f"<subscribe node='n' jid='{EVE}'/>")

    @defer.inlineCallbacks
    def test_losing_access_ends_subscriptions(self):
        yield self.subscribe(ALICE)
        yield self.subscribe(BOB)
        yield self.affiliate(BOB, "member")
        yield self.configure(access_model="whitelist")
        self.assertEqual(set((yield self.node()).subscriptions), {BOB})


class OwnerTests(EngineTestCase):
    """§8.8, §8.9: owners manage subscriptions and affiliations."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        yield self.create()

    @defer.inlineCallbacks
    def affiliations(self, sender=OWNER):
        result = yield self.ask(sender, "get", "<affiliations node='n'/>", owner=True)
        return {a["jid"]: a["affiliation"] for a in child_elements(result.affiliations)}

    @defer.inlineCallbacks
    def test_affiliations(self):
        self.assertEqual((yield self.affiliations()), {OWNER: "owner"})
        yield self.ask(OWNER, "set", f"<affiliations node='n'>"
                                     f"<affiliation jid='{ALICE}/res' affiliation='publisher'/>"
                                     f"<affiliation jid='{BOB}' affiliation='owner'/>"
                                     "</affiliations>", owner=True)
        self.assertEqual((yield self.affiliations()),
                         {OWNER: "owner", ALICE: "publisher", BOB: "owner"})
        # The new owner may manage the node and drop the first owner.
        yield self.affiliate(OWNER, "none", sender=BOB)
        self.assertEqual((yield self.affiliations(BOB)), {ALICE: "publisher", BOB: "owner"})
        yield self.refused("forbidden", None, OWNER, "get", "<affiliations node='n'/>",
                           owner=True)
        rows = yield self.db.query("SELECT jid, affiliation FROM pubsub_affiliations "
                                   "ORDER BY jid")
        self.assertEqual(rows, [(ALICE, "publisher"), (BOB, "owner")])
        mine = yield self.ask(ALICE, "get", "<affiliations/>")
        self.assertEqual([(a["node"], a["affiliation"]) for a in child_elements(
            mine.affiliations)], [("n", "publisher")])

    @defer.inlineCallbacks
    def test_node_needs_an_owner(self):
        yield self.refused("not-acceptable", None, OWNER, "set",
                           f"<affiliations node='n'><affiliation jid='{OWNER}' "
                           "affiliation='member'/></affiliations>", owner=True)
        self.assertEqual((yield self.affiliations()), {OWNER: "owner"})

    @defer.inlineCallbacks
    def test_affiliation_errors(self):
        yield self.refused("forbidden", None, ALICE, "set",
                           f"<affiliations node='n'><affiliation jid='{ALICE}' "
                           "affiliation='owner'/></affiliations>", owner=True)
        yield self.refused("not-acceptable", None, OWNER, "set",
                           f"<affiliations node='n'><affiliation jid='{ALICE}' "
                           "affiliation='king'/></affiliations>", owner=True)
        yield self.refused("bad-request", None, OWNER, "set",
                           f"<affiliations node='n'><affiliation jid='{ALICE}' "
                           f"affiliation='member'/><affiliation jid='{ALICE}/x' "
                           "affiliation='outcast'/></affiliations>", owner=True)
        # Without an 'affiliation' attribute nothing changes (§8.9.2.1).
        yield self.ask(OWNER, "set", f"<affiliations node='n'><affiliation jid='{OWNER}'/>"
                                     f"<affiliation jid='{BOB}' affiliation='member'/>"
                                     "</affiliations>", owner=True)
        self.assertEqual((yield self.affiliations()), {OWNER: "owner", BOB: "member"})
        yield self.refused("jid-malformed", None, OWNER, "set",
                           "<affiliations node='n'><affiliation jid='@@' "
                           "affiliation='member'/></affiliations>", owner=True)

    @defer.inlineCallbacks
    def test_fixed_owner(self):
        """A personal service's owner owns every node and cannot be changed."""
        self.policy.fixed_owner = OWNER
        yield self.refused("not-acceptable", None, OWNER, "set",
                           f"<affiliations node='n'><affiliation jid='{OWNER}' "
                           "affiliation='none'/></affiliations>", owner=True)
        yield self.refused("not-acceptable", None, OWNER, "set",
                           f"<affiliations node='n'><affiliation jid='{ALICE}' "
                           "affiliation='owner'/></affiliations>", owner=True)

    @defer.inlineCallbacks
    def test_subscriptions(self):
        yield self.subscribe(ALICE + "/a")
        yield self.ask(OWNER, "set", f"<subscriptions node='n'><subscription jid='{BOB}' "
                                     "subscription='subscribed'/><subscription "
                                     f"jid='{ALICE}/a' subscription='none'/></subscriptions>",
                       owner=True)
        result = yield self.ask(OWNER, "get", "<subscriptions node='n'/>", owner=True)
        self.assertEqual([(s["jid"], s["subscription"]) for s in child_elements(
            result.subscriptions)], [(BOB, "subscribed")])
        yield self.refused("forbidden", None, BOB, "get", "<subscriptions node='n'/>",
                           owner=True)
        yield self.refused("bad-request", None, OWNER, "set",
                           f"<subscriptions node='n'><subscription jid='{BOB}' "
                           "subscription='pending'/></subscriptions>", owner=True)

    @defer.inlineCallbacks
    def test_configure(self):
        result = yield self.ask(OWNER, "get", "<configure node='n'/>", owner=True)
        self.assertEqual(result.configure["node"], "n")
        yield self.refused("forbidden", None, ALICE, "get", "<configure node='n'/>", owner=True)
        yield self.refused("bad-request", None, OWNER, "set", "<configure node='n'/>",
                           owner=True)
        yield self.subscribe(ALICE)
        yield self.ask(OWNER, "set", f"<configure node='n'>{config(notify_config='1', title='x')}"
                                     "</configure>", owner=True)
        [(to, configuration)] = self.policy.take()
        self.assertEqual((to, configuration.name), (ALICE, "configuration"))
        self.assertEqual((yield self.node()).config.title, "x")
        # §8.2.5.4: with payloads, the notification carries the configuration form.
        [form] = child_elements(configuration)
        self.assertEqual((form.name, form["type"]), ("x", "result"))
        fields = {f["var"]: str(f.value) for f in form.elements() if f.name == "field"
                  and f.getAttribute("type") != "list-multi"}
        self.assertEqual(fields["pubsub#title"], "x")
        yield self.ask(OWNER, "set", f"<configure node='n'>{config(deliver_payloads='0')}"
                                     "</configure>", owner=True)
        [(_, configuration)] = self.policy.take()
        self.assertEqual(child_elements(configuration), [])


class PersistenceTests(EngineTestCase):
    """A service is kept in the database: a new engine (a restart) finds it whole."""

    @defer.inlineCallbacks
    def fill(self):
        yield self.create(access_model="whitelist", max_items="2")
        yield self.publish(item_id="a")
        yield self.publish(item_id="b")
        yield self.affiliate(ALICE, "member")
        yield self.subscribe(ALICE + "/r", options="<options>" + form(
            NS_PUBSUB + "#subscribe_options", {"pubsub#deliver": "0"}) + "</options>")

    def check(self, node):
        self.assertEqual(node.config, NodeConfig(access_model="whitelist", max_items=2))
        self.assertEqual(node.affiliations, {OWNER: "owner", ALICE: "member"})
        [sub] = node.subscriptions.values()
        self.assertEqual((sub.jid, sub.deliver), (ALICE + "/r", False))
        self.assertEqual(node.last.id, "b")
        self.assertIn("hello", node.last.xml)

    @defer.inlineCallbacks
    def test_restart(self):
        yield self.fill()
        self.engine = PubSub(self.db, self.settings)
        self.check((yield self.node()))
        self.assertEqual((yield self.item_ids(sender=ALICE)), ["a", "b"])

    @defer.inlineCallbacks
    def test_cache_reload(self):
        self.engine = PubSub(self.db, self.settings, cache_size=1)
        yield self.fill()
        yield task.deferLater(reactor, 0, lambda: None)  # the service's queue has drained
        yield self.engine.nodes("other.example")
        self.assertEqual(list(self.engine._services), ["other.example"])
        self.check((yield self.node()))
        self.assertEqual(list(self.engine._services), [SERVICE])

    def counted(self):
        """The bytes the cache counts must be what the loaded services hold."""
        from xmppd.pubsub.model import node_bytes

        held = sum(node_bytes(node) for nodes in self.engine._services.values()
                   for node in nodes.values())
        self.assertEqual(self.engine.cached_bytes, held)
        return held

    @defer.inlineCallbacks
    def test_bytes_follow_publish_retract_purge_delete(self):
        yield self.fill()
        self.counted()
        yield self.publish(item_id="c", payload="<big xmlns='urn:t'>" + "x" * 500 + "</big>")
        self.assertGreater(self.counted(), 500)
        yield self.ask(OWNER, "set", "<retract node='n'><item id='c'/></retract>")
        self.counted()
        yield self.ask(OWNER, "set", "<purge node='n'/>", owner=True)
        self.counted()
        yield self.ask(OWNER, "set", "<delete node='n'/>", owner=True)
        self.assertEqual(self.counted(), 0)

    @defer.inlineCallbacks
    def test_cache_bounded_by_bytes(self):
        """Services holding big last items are dropped first-loaded first, then reloaded."""
        self.engine = PubSub(self.db, self.settings, cache_bytes=3000)
        big = "<big xmlns='urn:t'>" + "x" * 900 + "</big>"
        for service in ("s1.example", "s2.example", "s3.example"):
            yield self.ask(OWNER, "set", "<create node='n'/>", service=service)
            yield self.ask(OWNER, "set", f"<publish node='n'><item id='i'>{big}</item>"
                                         "</publish>", service=service)
        yield self.engine.nodes("s4.example")
        self.assertLessEqual(self.engine.cached_bytes, 3000)
        self.assertNotIn("s1.example", self.engine._services)
        self.counted()
        nodes = yield self.engine.nodes("s1.example")
        self.assertIn("x" * 900, nodes["n"].last.xml)
        self.assertNotIn("s2.example", self.engine._services)
        self.counted()

    @defer.inlineCallbacks
    def test_services_are_separate(self):
        yield self.fill()
        yield self.ask(OWNER, "set", "<create node='n'/>", service="other.example")
        nodes = yield self.engine.nodes("other.example")
        self.assertEqual(nodes["n"].last, None)
        self.assertEqual((yield self.item_ids()), ["a", "b"])

    @defer.inlineCallbacks
    def test_local_subscriptions_go_with_the_account(self):
        yield self.fill()
        yield self.affiliate(EVE, "member")
        yield self.subscribe(EVE)
        yield self.db.execute("DELETE FROM accounts WHERE username = 'alice'")
        rows = yield self.db.query("SELECT jid FROM pubsub_subscriptions")
        self.assertEqual(rows, [(EVE,)])

    @defer.inlineCallbacks
    def test_corrupt_config_falls_back(self):
        yield self.fill()
        yield self.db.execute("UPDATE pubsub_nodes SET config = 'garbage'")
        self.engine = PubSub(self.db, self.settings)
        self.assertEqual((yield self.node()).config, NodeConfig())


class RequestTests(EngineTestCase):
    """Bad requests get errors, not tracebacks."""

    @defer.inlineCallbacks
    def test_unknown_verb(self):
        yield self.refused("feature-not-implemented", "unsupported", OWNER, "set",
                           "<frobnicate node='n'/>")

    @defer.inlineCallbacks
    def test_owner_requests_on_missing_nodes(self):
        for verb in ("configure", "purge", "delete", "affiliations", "subscriptions"):
            kind = "set" if verb in ("purge", "delete") else "get"
            yield self.refused("item-not-found", None, OWNER, kind, f"<{verb} node='x'/>",
                               owner=True)
            yield self.refused("bad-request", "nodeid-required", OWNER, kind, f"<{verb}/>",
                               owner=True)

    @defer.inlineCallbacks
    def test_too_many_ids(self):
        yield self.create()
        ids = "".join(f"<item id='i{n}'/>" for n in range(300))
        yield self.refused("not-acceptable", None, OWNER, "get", f"<items node='n'>{ids}</items>")
        yield self.refused("not-acceptable", None, OWNER, "set",
                           f"<retract node='n'>{ids}</retract>")

    @defer.inlineCallbacks
    def test_long_names(self):
        yield self.refused("not-acceptable", None, OWNER, "set",
                           "<create node='" + "n" * 1025 + "'/>")
        yield self.create()
        yield self.refused("bad-request", None, OWNER, "set",
                           "<publish node='n'><item id='" + "i" * 1025 + f"'>{PAYLOAD}</item>"
                           "</publish>")

