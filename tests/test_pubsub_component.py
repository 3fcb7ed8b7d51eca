"""xmppd.pubsub.component: the standalone pubsub service behind the router."""

from __future__ import annotations

import dataclasses

from twisted.internet import defer
from twisted.trial import unittest

from tests.sm_fakes import Recorder, error_condition, stanza
from xmppd.config import PubSubSettings
from xmppd.pubsub import NS_PUBSUB, NS_PUBSUB_OWNER
from xmppd.pubsub.component import PubSubService
from xmppd.router import Router
from xmppd.sm.stanzas import child_elements
from xmppd.storage.database import Database

DOMAIN = "pubsub.localhost"
ADMIN = "admin@localhost"
ALICE = "alice@localhost/desk"
BOB = "bob@localhost/pc"
STRANGER = "eve@remote.example/x"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
PAYLOAD = "<entry xmlns='urn:test'>hi</entry>"


def config_form(**fields):
    xml = ["<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
           "<value>http://jabber.org/protocol/pubsub#node_config</value></field>"]
    for var, value in fields.items():
        xml.append(f"<field var='pubsub#{var}'><value>{value}</value></field>")
    return "".join(xml) + "</x>"


class WaitingRecorder(Recorder):
    """A recorder that can wait for the reply to an iq."""

    def __init__(self):
        super().__init__()
        self.waiting = []

    def send(self, element):
        """Record a stanza; wake those waiting."""
        super().send(element)
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(None)

    @defer.inlineCallbacks
    def reply(self, stanza_id):
        """Fire with (and forget) the iq with that id, once it arrives."""
        while True:
            for element in self.stanzas:
                if element.name == "iq" and element.getAttribute("id") == stanza_id:
                    self.stanzas.remove(element)
                    return element
            d = defer.Deferred()
            self.waiting.append(d)
            yield d


class ComponentTestCase(unittest.TestCase):
    """The service on a router; 'localhost' and 'remote.example' record what they get."""

    create_nodes = "local"
    expose_publisher = False

    @defer.inlineCallbacks
    def setUp(self):
        self.db = Database(self.mktemp() + "/xmppd.sqlite")
        yield self.db.open()
        self.addCleanup(self.db.close)
        self.router = Router()
        self.local = WaitingRecorder()
        self.remote = WaitingRecorder()
        self.router.register("localhost", self.local)
        self.router.register("remote.example", self.remote)
        settings = PubSubSettings(domain=DOMAIN, create_nodes=self.create_nodes,
                                  expose_publisher=self.expose_publisher)
        self.service = PubSubService(settings, router=self.router, database=self.db,
                                     server_domain="localhost", admins=(ADMIN,))
        self.service.startService()
        self.addCleanup(self.service.stopService)

    @defer.inlineCallbacks
    def send(self, sender, xml):
        """Route a stanza from ``sender`` to the service; fire when it was handled."""
        element = stanza(xml)
        element["from"] = sender
        element.attributes.setdefault("to", DOMAIN)
        self.router.route(element)
        # Requests run in the service's queue: this runs after the stanza's.
        yield self.service.engine.nodes(DOMAIN)

    def recorder(self, sender):
        return self.remote if sender.split("/")[0].endswith("remote.example") else self.local

    @defer.inlineCallbacks
    def ask(self, sender, kind, payload, to=DOMAIN):
        """An iq from sender; fires with the one reply it gets."""
        yield self.send(sender, f"<iq type='{kind}' id='q' to='{to}'>{payload}</iq>")
        reply = yield self.recorder(sender).reply("q")
        self.assertEqual((reply["from"], reply["to"], reply["id"]), (to, sender, "q"))
        return reply

    @defer.inlineCallbacks
    def ok(self, sender, kind, inner, owner=False):
        uri = NS_PUBSUB_OWNER if owner else NS_PUBSUB
        reply = yield self.ask(sender, kind, f"<pubsub xmlns='{uri}'>{inner}</pubsub>")
        self.assertEqual(reply["type"], "result", reply.toXml())
        return reply

    @defer.inlineCallbacks
    def error(self, sender, kind, inner, owner=False):
        uri = NS_PUBSUB_OWNER if owner else NS_PUBSUB
        reply = yield self.ask(sender, kind, f"<pubsub xmlns='{uri}'>{inner}</pubsub>")
        return error_condition(reply)


class CreateNodesTests(ComponentTestCase):
    """[pubsub] create_nodes = local (the default)."""

    @defer.inlineCallbacks
    def test_local_users_create(self):
        yield self.ok(ALICE, "set", "<create node='a'/>")
        self.assertEqual((yield self.error(STRANGER, "set", "<create node='b'/>")), "forbidden")
        self.assertEqual((yield self.error(STRANGER, "set", f"<publish node='b'><item>"
                                                             f"{PAYLOAD}</item></publish>")),
                         "item-not-found")
        self.assertEqual((yield self.error("localhost", "set", "<create node='c'/>")),
                         "forbidden")

    @defer.inlineCallbacks
    def test_creator_owns_and_admins_own_everything(self):
        yield self.ok(ALICE, "set", "<create node='a'/>")
        yield self.ok(ADMIN, "set", "<configure node='a'>" + config_form(title="by admin")
                      + "</configure>", owner=True)
        self.assertEqual((yield self.error(BOB, "set", "<delete node='a'/>", owner=True)),
                         "forbidden")
        yield self.ok(ADMIN + "/x", "set", "<delete node='a'/>", owner=True)

    @defer.inlineCallbacks
    def test_service_access_models(self):
        """Presence and roster access belong to PEP: not-acceptable here."""
        self.assertEqual((yield self.error(ALICE, "set", "<create node='a'/><configure>"
                                           + config_form(access_model="presence")
                                           + "</configure>")), "not-acceptable")
        yield self.ok(ALICE, "set", "<create node='a'/><configure>"
                      + config_form(access_model="whitelist") + "</configure>")


class AnyoneTests(ComponentTestCase):
    create_nodes = "anyone"

    @defer.inlineCallbacks
    def test_anyone_creates(self):
        yield self.ok(STRANGER, "set", "<create node='a'/>")
        yield self.ok(ALICE, "set", "<create node='b'/>")


class AdminsTests(ComponentTestCase):
    create_nodes = "admins"

    @defer.inlineCallbacks
    def test_only_admins_create(self):
        self.assertEqual((yield self.error(ALICE, "set", "<create node='a'/>")), "forbidden")
        yield self.ok(ADMIN + "/r", "set", "<create node='a'/>")


class NotificationTests(ComponentTestCase):
    """Notifications leave from the service's domain, through the router."""

    @defer.inlineCallbacks
    def test_publish_notifies_remote_and_local(self):
        yield self.ok(ALICE, "set", "<create node='a'/>")
        yield self.ok(STRANGER, "set", f"<subscribe node='a' jid='{STRANGER}'/>")
        yield self.ok(BOB, "set", f"<subscribe node='a' jid='{BOB}'/>")
        yield self.ok(ALICE, "set", f"<publish node='a'><item id='1'>{PAYLOAD}</item>"
                                    "</publish>")
        [remote] = self.remote.take()
        [local] = [s for s in self.local.take() if s.name == "message"]
        for message, to in ((remote, STRANGER), (local, BOB)):
            self.assertEqual((message["from"], message["to"], message["type"]),
                             (DOMAIN, to, "headline"))
            self.assertEqual(message.event.items.item["id"], "1")
            self.assertFalse(message.event.items.item.hasAttribute("publisher"))


class AccountDeletionTests(ComponentTestCase):
    """A deleted account's subscriptions stop at once (their rows cascade)."""

    @defer.inlineCallbacks
    def test_deleted_subscriber_is_not_notified(self):
        yield self.ok(ALICE, "set", "<create node='a'/>")
        yield self.ok(BOB, "set", f"<subscribe node='a' jid='{BOB}'/>")
        self.local.take()
        self.service.account_deleted("bob")
        yield self.ok(ALICE, "set", f"<publish node='a'><item id='1'>{PAYLOAD}</item>"
                                    "</publish>")
        self.assertEqual([s for s in self.local.take() if s.name == "message"], [])
        reply = yield self.ok(ALICE, "get", "<subscriptions node='a'/>", owner=True)
        self.assertEqual(child_elements(reply.pubsub.subscriptions), [])


class ExposePublisherTests(ComponentTestCase):
    expose_publisher = True

    @defer.inlineCallbacks
    def test_items_show_publisher(self):
        yield self.ok(ALICE, "set", "<create node='a'/>")
        yield self.ok(ALICE, "set", f"<publish node='a'><item id='1'>{PAYLOAD}</item>"
                                    "</publish>")
        reply = yield self.ok(BOB, "get", "<items node='a'/>")
        self.assertEqual(reply.pubsub.items.item["publisher"], "alice@localhost")


class ItemReplyTests(ComponentTestCase):

    @defer.inlineCallbacks
    def test_itemreply_publisher_shows_it(self):
        yield self.ok(ALICE, "set", "<create node='a'/>")
        yield self.ok(ALICE, "set", f"<publish node='a'><item id='1'>{PAYLOAD}</item>"
                                    "</publish>")
        reply = yield self.ok(BOB, "get", "<items node='a'/>")
        self.assertFalse(reply.pubsub.items.item.hasAttribute("publisher"))
        yield self.ok(ALICE, "set", "<configure node='a'>"
                      + config_form(itemreply="publisher") + "</configure>", owner=True)
        reply = yield self.ok(BOB, "get", "<items node='a'/>")
        self.assertEqual(reply.pubsub.items.item["publisher"], "alice@localhost")


class DiscoTests(ComponentTestCase):
    """disco#info and disco#items of the service and of its nodes."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        yield self.ok(ALICE, "set", "<create node='open'/><configure>"
                      + config_form(title="Open node") + "</configure>")
        yield self.ok(ALICE, "set", "<create node='closed'/><configure>"
                      + config_form(access_model="whitelist") + "</configure>")
        yield self.ok(ALICE, "set", f"<publish node='open'><item id='i1'>{PAYLOAD}</item>"
                                    "</publish>")

    @defer.inlineCallbacks
    def test_service_info(self):
        reply = yield self.ask(BOB, "get", f"<query xmlns='{DISCO_INFO}'/>")
        identities = [(i["category"], i["type"]) for i in reply.query.elements()
                      if i.name == "identity"]
        self.assertEqual(identities, [("pubsub", "service")])
        features = {f["var"] for f in reply.query.elements() if f.name == "feature"}
        self.assertIn(NS_PUBSUB, features)
        self.assertIn(NS_PUBSUB + "#publish-options", features)
        self.assertNotIn(NS_PUBSUB + "#access-presence", features)

    @defer.inlineCallbacks
    def test_node_info(self):
        reply = yield self.ask(BOB, "get", f"<query xmlns='{DISCO_INFO}' node='open'/>")
        self.assertEqual(reply.query["node"], "open")
        identities = [(i["category"], i["type"]) for i in reply.query.elements()
                      if i.name == "identity"]
        self.assertEqual(identities, [("pubsub", "leaf")])
        [form] = [x for x in reply.query.elements() if x.name == "x"]
        fields = {f["var"]: [str(v) for v in f.elements() if v.name == "value"]
                  for f in form.elements() if f.name == "field"}
        self.assertEqual(fields["pubsub#owner"], ["alice@localhost"])
        self.assertEqual(fields["pubsub#title"], ["Open node"])
        reply = yield self.ask(BOB, "get", f"<query xmlns='{DISCO_INFO}' node='none'/>")
        self.assertEqual(error_condition(reply), "item-not-found")

    @defer.inlineCallbacks
    def test_items(self):
        reply = yield self.ask(BOB, "get", f"<query xmlns='{DISCO_ITEMS}'/>")
        self.assertEqual([(i["jid"], i["node"], i.getAttribute("name"))
                          for i in reply.query.elements()], [(DOMAIN, "open", "Open node")])
        reply = yield self.ask(ALICE, "get", f"<query xmlns='{DISCO_ITEMS}'/>")
        self.assertEqual([i["node"] for i in reply.query.elements()], ["closed", "open"])
        reply = yield self.ask(BOB, "get", f"<query xmlns='{DISCO_ITEMS}' node='open'/>")
        self.assertEqual(reply.query["node"], "open")
        self.assertEqual([(i["jid"], i["name"]) for i in reply.query.elements()],
                         [(DOMAIN, "i1")])
        reply = yield self.ask(BOB, "get", f"<query xmlns='{DISCO_ITEMS}' node='closed'/>")
        self.assertEqual(error_condition(reply), "not-allowed")
        reply = yield self.ask(BOB, "get", f"<query xmlns='{DISCO_ITEMS}' node='none'/>")
        self.assertEqual(error_condition(reply), "item-not-found")


class BadRequestTests(ComponentTestCase):
    """What the service does not serve gets errors; errors and results are dropped."""

    @defer.inlineCallbacks
    def test_message_to_service(self):
        yield self.send(BOB, "<message to='pubsub.localhost' id='m'><body>hi</body></message>")
        [reply] = self.local.take()
        self.assertEqual((reply.name, error_condition(reply)), ("message",
                                                               "service-unavailable"))
        yield self.send(BOB, "<message to='pubsub.localhost' type='error'/>")
        yield self.send(BOB, "<presence to='pubsub.localhost'/>")
        self.assertEqual(self.local.take(), [])

    @defer.inlineCallbacks
    def test_iq_to_jids_of_the_domain(self):
        for to in ("user@pubsub.localhost", "pubsub.localhost/res"):
            reply = yield self.ask(BOB, "get", f"<query xmlns='{DISCO_INFO}'/>", to=to)
            self.assertEqual(error_condition(reply), "service-unavailable", to)

    @defer.inlineCallbacks
    def test_unknown_payload(self):
        reply = yield self.ask(BOB, "get", "<query xmlns='jabber:iq:version'/>")
        self.assertEqual(error_condition(reply), "service-unavailable")

    @defer.inlineCallbacks
    def test_bad_requests(self):
        for xml in (
            "<iq type='get' id='q' to='pubsub.localhost'/>",
            f"<iq type='get' id='q' to='pubsub.localhost'><query xmlns='{DISCO_INFO}'/>"
            f"<query xmlns='{DISCO_ITEMS}'/></iq>",
        ):
            yield self.send(BOB, xml)
            [reply] = self.local.take()
            self.assertEqual(error_condition(reply), "bad-request", xml)
        self.assertEqual((yield self.error(BOB, "set", "<publish node='a'/><purge node='a'/>")),
                         "bad-request")
        self.assertEqual((yield self.error(BOB, "set", "<frob/>")), "feature-not-implemented")
        self.assertEqual((yield self.error(BOB, "get", "<items/>")), "bad-request")
        self.assertEqual((yield self.error(BOB, "set", "<subscribe node='a' jid='x@@y'/>")),
                         "bad-request")

    @defer.inlineCallbacks
    def test_results_and_errors_dropped(self):
        for kind in ("result", "error"):
            yield self.send(BOB, f"<iq type='{kind}' id='z' to='pubsub.localhost'/>")
        self.assertEqual(self.local.take(), [])

    @defer.inlineCallbacks
    def test_persists_across_a_restart(self):
        yield self.ok(ALICE, "set", "<create node='a'/>")
        yield self.ok(ALICE, "set", f"<publish node='a'><item id='1'>{PAYLOAD}</item>"
                                    "</publish>")
        yield self.service.stopService()
        settings = dataclasses.replace(self.service.settings)
        self.service = PubSubService(settings, router=self.router, database=self.db,
                                     server_domain="localhost", admins=(ADMIN,))
        self.service.startService()
        reply = yield self.ok(BOB, "get", "<items node='a'/>")
        self.assertEqual([i["id"] for i in child_elements(reply.pubsub.items)], ["1"])
