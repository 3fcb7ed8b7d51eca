"""xmppd.modules.pep: PEP (XEP-0163) on every account, with the session manager."""

from __future__ import annotations

from twisted.internet import defer

from tests.sm_fakes import error_condition, stanza
from tests.test_modules_caps import NODE as CAPS_NODE
from tests.test_modules_caps import info_xml, ver_of
from tests.test_sm_iq import IQTestCase, iq
from xmppd.module import Module, Point, hook
from xmppd.modules.caps import NS_CAPS
from xmppd.pubsub import NS_PUBSUB, NS_PUBSUB_ERRORS, NS_PUBSUB_EVENT, NS_PUBSUB_OWNER
from xmppd.sm.stanzas import child_elements
from xmppd.storage.roster import RosterItem

NODE = "urn:xmpp:test:mood"
OTHER = "urn:xmpp:test:tune"
PAYLOAD = "<mood xmlns='urn:xmpp:test:mood'><happy/></mood>"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
BASE = ("http://jabber.org/protocol/caps", "http://jabber.org/protocol/disco#info")


def pubsub(inner, owner=False):
    uri = NS_PUBSUB_OWNER if owner else NS_PUBSUB
    return f"<pubsub xmlns='{uri}'>{inner}</pubsub>"


def publish_xml(node=NODE, item_id="current", payload=PAYLOAD, extra=""):
    return pubsub(f"<publish node='{node}'><item id='{item_id}'>{payload}</item></publish>"
                  + extra)


def config_xml(**fields):
    xml = ["<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
           "<value>http://jabber.org/protocol/pubsub#node_config</value></field>"]
    for var, value in fields.items():
        xml.append(f"<field var='pubsub#{var}'><value>{value}</value></field>")
    return "".join(xml) + "</x>"


def pubsub_condition(reply):
    for child in reply.error.elements():
        if child.uri == NS_PUBSUB_ERRORS:
            return child.name
    return None


def events(session, node=None):
    """The PEP notifications a session got: [(from, <items/> or other child)], taken."""
    found = []
    for message in session.take("message"):
        [event] = [c for c in message.elements() if c.name == "event"]
        assert event.uri == NS_PUBSUB_EVENT
        [child] = child_elements(event)
        if node is None or child.getAttribute("node") == node:
            found.append((message["from"], child))
    return found


class Recorder(Module):
    """Records PEP_PUBLISHED and PEP_RETRACTED."""

    name = "test-pep-recorder"

    def __init__(self, server, settings=None):
        super().__init__(server, settings)
        self.seen = []

    @hook(Point.PEP_PUBLISHED)
    def published(self, username, node, item):
        """Record a publish."""
        self.seen.append(("published", username, node, item.id))

    @hook(Point.PEP_RETRACTED)
    def retracted(self, username, node, ids):
        """Record a retraction."""
        self.seen.append(("retracted", username, node, ids))


class FailingListener(Module):
    """A PEP_PUBLISHED listener that fails (when ``failing`` is set)."""

    name = "test-pep-failing"
    failing = False

    @hook(Point.PEP_PUBLISHED)
    def published(self, username, node, item):
        """Fail."""
        if self.failing:
            raise RuntimeError("listener failure")


class PEPTestCase(IQTestCase):
    """Alice (connected, no caps) and helpers for rosters and caps."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.pep = self.sm.modules["pep"]

    def make_manager(self, **sections):
        import xmppd.modules

        self.patch(xmppd.modules, "MODULES", xmppd.modules.MODULES + (Recorder,
                                                                      FailingListener))
        return super().make_manager(**sections)

    @defer.inlineCallbacks
    def befriend(self, owner, contact, both=True, groups=()):
        """Store the contact's subscription to the owner's presence (and back if ``both``)."""
        yield self.roster_store.save(owner, RosterItem(
            f"{contact}@localhost", subscription="both" if both else "from",
            groups=list(groups)))
        yield self.roster_store.save(contact, RosterItem(
            f"{owner}@localhost", subscription="both" if both else "to"))
        for user in (owner, contact):
            self.sm.drop_roster_cache(user)
            self.sm._rosters.pop(user, None)

    @defer.inlineCallbacks
    def with_caps(self, session, features):
        """The session announces caps; it answers the server's query; queries taken."""
        ver = ver_of(features)
        yield self.client_sends_out(session, f"<presence><c xmlns='{NS_CAPS}' hash='sha-1' "
                                             f"node='{CAPS_NODE}' ver='{ver}'/></presence>")
        queries = [i for i in session.take("iq") if i.getAttribute("type") == "get"]
        for query in queries:
            yield self.client_sends_out(session, stanza(
                f"<iq type='result' id='{query['id']}' to='{query['from']}'>"
                f"{info_xml(features)}</iq>"))
        return queries

    @defer.inlineCallbacks
    def ok(self, to, payload, kind="set", session=None):
        reply = yield self.asks(iq(to, payload, kind), session)
        self.assertEqual(reply["type"], "result", reply.toXml())
        return reply

    @defer.inlineCallbacks
    def item_ids(self, to="alice@localhost", node=NODE, session=None):
        reply = yield self.ok(to, pubsub(f"<items node='{node}'/>"), "get", session)
        return [i["id"] for i in child_elements(reply.pubsub.items)]


class AccessTests(PEPTestCase):
    """Who may publish and read, by the access model."""

    @defer.inlineCallbacks
    def test_default_config(self):
        yield self.ok(None, publish_xml(item_id="one"))
        yield self.ok(None, publish_xml(item_id="two"))
        reply = yield self.ok(None, pubsub(f"<configure node='{NODE}'/>", owner=True), "get")
        fields = {f["var"]: str(f.value) for f in reply.pubsub.configure.x.elements()
                  if f.name == "field" and f.getAttribute("type") != "list-multi"}
        self.assertEqual((fields["pubsub#access_model"], fields["pubsub#max_items"],
                          fields["pubsub#send_last_published_item"]),
                         ("presence", "1", "on_sub_and_presence"))
        self.assertEqual((yield self.item_ids()), ["two"])
        self.assertEqual(self.sm.modules["test-pep-recorder"].seen, [
            ("published", "alice", NODE, "one"), ("published", "alice", NODE, "two")])

    @defer.inlineCallbacks
    def test_only_the_owner_publishes_and_creates(self):
        yield self.ok(None, publish_xml())
        bob = yield self.connect("bob")
        yield self.befriend("alice", "bob")
        for payload in (publish_xml(), pubsub("<create node='x'/>"),
                        pubsub(f"<retract node='{NODE}'><item id='current'/></retract>"),
                        pubsub(f"<purge node='{NODE}'/>", owner=True)):
            reply = yield self.asks(iq("alice@localhost", payload, "set"), bob)
            self.assertEqual(error_condition(reply), "forbidden", payload)

    @defer.inlineCallbacks
    def test_account_that_does_not_exist(self):
        for kind, payload in (("get", pubsub(f"<items node='{NODE}'/>")),
                              ("set", publish_xml())):
            reply = yield self.asks(iq("ghost@localhost", payload, kind))
            self.assertEqual(error_condition(reply), "service-unavailable")

    @defer.inlineCallbacks
    def test_presence_access(self):
        yield self.ok(None, publish_xml())
        bob = yield self.connect("bob")
        reply = yield self.asks(iq("alice@localhost", pubsub(f"<items node='{NODE}'/>")), bob)
        self.assertEqual((error_condition(reply), pubsub_condition(reply)),
                         ("not-authorized", "presence-subscription-required"))
        reply = yield self.asks(iq("alice@localhost", pubsub(
            f"<subscribe node='{NODE}' jid='bob@localhost'/>"), "set"), bob)
        self.assertEqual(pubsub_condition(reply), "presence-subscription-required")
        # A contact who sees alice's presence reads (and a one-way 'to' does not).
        yield self.befriend("alice", "bob", both=False)
        self.assertEqual((yield self.item_ids(session=bob)), ["current"])
        carol = yield self.connect("carol")
        yield self.befriend("carol", "alice", both=False)  # alice sees carol, not back
        reply = yield self.asks(iq("alice@localhost", pubsub(f"<items node='{NODE}'/>")),
                                carol)
        self.assertEqual(error_condition(reply), "not-authorized")

    @defer.inlineCallbacks
    def test_open_node_readable_by_a_stranger(self):
        yield self.ok(None, publish_xml(extra="<publish-options>" + config_xml(
            access_model="open").replace("node_config", "publish-options")
            + "</publish-options>"))
        carol = yield self.connect("carol")
        self.assertEqual((yield self.item_ids(session=carol)), ["current"])

    @defer.inlineCallbacks
    def test_whitelist_readable_by_owner_only(self):
        yield self.ok(None, pubsub(f"<create node='{NODE}'/><configure>"
                                   + config_xml(access_model="whitelist") + "</configure>"))
        yield self.ok(None, publish_xml())
        bob = yield self.connect("bob")
        yield self.befriend("alice", "bob")
        reply = yield self.asks(iq("alice@localhost", pubsub(f"<items node='{NODE}'/>")), bob)
        self.assertEqual((error_condition(reply), pubsub_condition(reply)),
                         ("not-allowed", "closed-node"))
        other = yield self.connect("alice", "other")
        self.assertEqual((yield self.item_ids(session=other)), ["current"])
        self.assertEqual((yield self.item_ids(to=None)), ["current"])

    @defer.inlineCallbacks
    def test_roster_access(self):
        yield self.ok(None, pubsub(f"<create node='{NODE}'/><configure>"
                                   + config_xml(access_model="roster",
                                                roster_groups_allowed="Friends")
                                   + "</configure>"))
        yield self.ok(None, publish_xml())
        bob = yield self.connect("bob")
        carol = yield self.connect("carol")
        yield self.befriend("alice", "bob", groups=("Friends",))
        yield self.befriend("alice", "carol", groups=("Work",))
        self.assertEqual((yield self.item_ids(session=bob)), ["current"])
        reply = yield self.asks(iq("alice@localhost", pubsub(f"<items node='{NODE}'/>")),
                                carol)
        self.assertEqual((error_condition(reply), pubsub_condition(reply)),
                         ("not-authorized", "not-in-roster-group"))

    @defer.inlineCallbacks
    def test_failing_listener_does_not_fail_the_publish(self):
        self.patch(FailingListener, "failing", True)
        yield self.ok(None, publish_xml())
        self.assertEqual((yield self.item_ids()), ["current"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @defer.inlineCallbacks
    def test_owner_api_for_other_modules(self):
        item_id = yield self.pep.publish("alice", OTHER, stanza(
            "<tune xmlns='urn:xmpp:test:tune'/>"), options={"access_model": "open"})
        self.assertTrue(item_id)
        items = yield self.pep.items("alice", OTHER)
        self.assertEqual([i.id for i in items], [item_id])
        self.assertIsNone((yield self.pep.items("alice", "none")))
        yield self.pep.retract("alice", OTHER, [item_id])
        self.assertEqual((yield self.pep.items("alice", OTHER)), [])
        self.assertEqual(self.sm.modules["test-pep-recorder"].seen[-1],
                         ("retracted", "alice", OTHER, [item_id]))


class NotificationTests(PEPTestCase):
    """Notifications go to the resources whose caps include NODE+notify."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        yield self.befriend("alice", "bob")
        self.bob = yield self.connect("bob", "notify")
        self.plain = yield self.connect("bob", "plain")
        yield self.with_caps(self.bob, BASE + (NODE + "+notify",))
        yield self.with_caps(self.plain, BASE + (OTHER + "+notify",))
        for session in (self.alice, self.bob, self.plain):
            session.take()

    @defer.inlineCallbacks
    def test_only_interested_resources(self):
        yield self.ok(None, publish_xml())
        [(sender, items)] = events(self.bob)
        self.assertEqual((sender, items["node"], items.item["id"]),
                         ("alice@localhost", NODE, "current"))
        self.assertEqual(str(items.item.mood.name), "mood")
        self.assertEqual(self.plain.take("message"), [])
        self.assertEqual(self.alice.take("message"), [])  # alice has no caps

    @defer.inlineCallbacks
    def test_owner_resources_with_notify(self):
        yield self.with_caps(self.alice, BASE + (NODE + "+notify",))
        self.alice.take()
        yield self.ok(None, publish_xml())
        self.assertEqual(len(events(self.alice)), 1)

    @defer.inlineCallbacks
    def test_no_notification_without_access(self):
        carol = yield self.connect("carol")
        yield self.with_caps(carol, BASE + (NODE + "+notify",))
        carol.take()
        yield self.ok(None, publish_xml())
        self.assertEqual(carol.take("message"), [])
        self.assertEqual(len(events(self.bob)), 1)

    @defer.inlineCallbacks
    def test_roster_model_notifies_the_allowed_groups(self):
        """As for reading, the groups decide (not the presence subscription)."""
        carol = yield self.connect("carol")
        yield self.roster_store.save("alice", RosterItem(
            "carol@localhost", subscription="none", groups=["Friends"]))
        self.sm.drop_roster_cache("alice")
        self.sm._rosters.pop("alice", None)
        yield self.with_caps(carol, BASE + (NODE + "+notify",))
        carol.take()
        yield self.ok(None, pubsub(f"<create node='{NODE}'/><configure>" + config_xml(
            access_model="roster", roster_groups_allowed="Friends") + "</configure>"))
        yield self.ok(None, publish_xml())
        self.assertEqual(len(events(carol)), 1)
        self.assertEqual(events(self.bob), [])  # bob is in no allowed group

    @defer.inlineCallbacks
    def test_outcast_contact_not_notified(self):
        yield self.ok(None, publish_xml())
        events(self.bob)
        yield self.ok(None, pubsub(f"<affiliations node='{NODE}'><affiliation "
                                   "jid='bob@localhost' affiliation='outcast'/></affiliations>",
                                   owner=True))
        yield self.ok(None, publish_xml(item_id="again"))
        self.assertEqual(events(self.bob), [])

    @defer.inlineCallbacks
    def test_last_item_when_caps_become_known(self):
        yield self.ok(None, publish_xml())
        events(self.bob)
        late = yield self.connect("bob", "late")
        late.take()
        yield self.with_caps(late, BASE + (NODE + "+notify", OTHER + "+notify"))
        [(sender, items)] = events(late)
        self.assertEqual((sender, items.item["id"]), ("alice@localhost", "current"))
        # Known interests do not bring it again.
        yield self.client_sends_out(late, "<presence><show>away</show></presence>")
        self.assertEqual(events(late), [])

    @defer.inlineCallbacks
    def test_last_item_when_a_contact_presence_first_arrives(self):
        """Carol follows bob only after her caps are known: his presence brings the item."""
        bob_item = yield self.pep.publish("bob", NODE, stanza(PAYLOAD), "b1")
        self.assertEqual(bob_item, "b1")
        carol = yield self.connect("carol")
        yield self.with_caps(carol, BASE + (NODE + "+notify",))
        self.assertEqual(events(carol), [])
        yield self.client_sends(carol, "<presence type='subscribe' to='bob@localhost'/>")
        yield self.client_sends(self.bob, "<presence type='subscribed' to='carol@localhost'/>")
        [(sender, items)] = events(carol)
        self.assertEqual((sender, items.item["id"]), ("bob@localhost", "b1"))

    @defer.inlineCallbacks
    def test_retract_notification(self):
        yield self.ok(None, publish_xml())
        events(self.bob)
        yield self.ok(None, pubsub(f"<retract node='{NODE}' notify='1'><item id='current'/>"
                                   "</retract>"))
        [(_, items)] = events(self.bob)
        self.assertEqual(items.retract["id"], "current")


class AccountTests(PEPTestCase):
    """The account's nodes in disco and their end with the account."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        yield self.ok(None, publish_xml())
        yield self.ok(None, publish_xml(OTHER, extra="<publish-options>" + config_xml(
            access_model="open").replace("node_config", "publish-options")
            + "</publish-options>"))

    @defer.inlineCallbacks
    def test_disco(self):
        yield self.ok(None, pubsub("<create node='secret'/><configure>"
                                   + config_xml(access_model="whitelist") + "</configure>"))
        reply = yield self.ok("alice@localhost", f"<query xmlns='{DISCO_INFO}'/>", "get")
        identities = [(i["category"], i["type"]) for i in reply.query.elements()
                      if i.name == "identity"]
        self.assertIn(("pubsub", "pep"), identities)
        reply = yield self.ok("alice@localhost", f"<query xmlns='{DISCO_ITEMS}'/>", "get")
        self.assertEqual(sorted(i["node"] for i in reply.query.elements()),
                         sorted([NODE, OTHER, "secret"]))
        # A contact sees the nodes it may access, and their items.
        bob = yield self.connect("bob")
        yield self.befriend("alice", "bob")
        reply = yield self.ok("alice@localhost", f"<query xmlns='{DISCO_ITEMS}'/>", "get", bob)
        self.assertEqual(sorted(i["node"] for i in reply.query.elements()),
                         sorted([NODE, OTHER]))
        self.assertEqual({i["jid"] for i in reply.query.elements()}, {"alice@localhost"})
        reply = yield self.ok("alice@localhost", f"<query xmlns='{DISCO_ITEMS}' "
                                                 f"node='{OTHER}'/>", "get", bob)
        self.assertEqual([i["name"] for i in reply.query.elements()], ["current"])
        reply = yield self.ok("alice@localhost", f"<query xmlns='{DISCO_INFO}' "
                                                 f"node='{NODE}'/>", "get", bob)
        identities = [(i["category"], i["type"]) for i in reply.query.elements()
                      if i.name == "identity"]
        self.assertEqual(identities, [("pubsub", "leaf")])
        for query in (DISCO_INFO, DISCO_ITEMS):
            reply = yield self.asks(iq("alice@localhost", f"<query xmlns='{query}' "
                                                          "node='secret'/>"), bob)
            self.assertEqual(error_condition(reply), "item-not-found")
        # Strangers get nothing (as Prosody: the account answers its contacts only).
        carol = yield self.connect("carol")
        reply = yield self.asks(iq("alice@localhost", f"<query xmlns='{DISCO_ITEMS}'/>"),
                                carol)
        self.assertEqual(error_condition(reply), "service-unavailable")

    @defer.inlineCallbacks
    def test_account_deletion(self):
        bob = yield self.connect("bob")
        yield self.ok("bob@localhost", pubsub(f"<create node='{NODE}'/><configure>"
                                              + config_xml(access_model="open")
                                              + "</configure>"), session=bob)
        yield self.ok("bob@localhost", pubsub(f"<subscribe node='{NODE}' "
                                              "jid='alice@localhost'/>"))
        yield self.ok("bob@localhost", pubsub(
            f"<affiliations node='{NODE}'><affiliation jid='alice@localhost' "
            "affiliation='member'/><affiliation jid='alice@remote.example' "
            "affiliation='member'/></affiliations>", owner=True), session=bob)
        yield self.client_sends(self.alice, iq(None, "<query xmlns='jabber:iq:register'>"
                                                     "<remove/></query>", "set"))
        rows = yield self.db.query("SELECT node FROM pubsub_nodes WHERE service = ?",
                                   "alice@localhost")
        self.assertEqual(rows, [])
        rows = yield self.db.query("SELECT * FROM pubsub_items WHERE service = ?",
                                   "alice@localhost")
        self.assertEqual(rows, [])
        rows = yield self.db.query("SELECT * FROM pubsub_subscriptions")
        self.assertEqual(rows, [])
        self.assertNotIn("alice@localhost", self.pep.engine._services)
        # Her subscription to bob's node is gone from memory too: bob's publish
        # notifies nobody.
        nodes = yield self.pep.engine.nodes("bob@localhost")
        self.assertEqual(nodes[NODE].subscriptions, {})
        # Her membership of bob's node goes too (a new alice must not inherit
        # it); the remote alice's stays.
        self.assertEqual(nodes[NODE].affiliations, {"alice@remote.example": "member"})
        rows = yield self.db.query("SELECT jid FROM pubsub_affiliations")
        self.assertEqual(rows, [("alice@remote.example",)])
        # A new account of the same name starts without nodes.
        yield self.db.execute("INSERT INTO accounts (username, created) VALUES ('alice', 0)")
        again = yield self.connect("alice", "new")
        reply = yield self.ok("alice@localhost", f"<query xmlns='{DISCO_ITEMS}'/>", "get",
                              again)
        self.assertEqual(list(reply.query.elements()), [])


DAVE = "dave@remote.example/phone"


class RemoteNotificationTests(PEPTestCase):
    """A remote contact's resources are notified through the caps of their presence."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        yield self.roster_store.save("alice", RosterItem("dave@remote.example",
                                                         subscription="both"))
        self.sm.drop_roster_cache("alice")
        self.sm._rosters.pop("alice", None)
        self.alice.take()

    @defer.inlineCallbacks
    def remote_caps(self, sender=DAVE, features=BASE + (NODE + "+notify",)):
        """The remote resource's presence with caps arrives; it answers the query."""
        ver = ver_of(features)
        yield self.arrives(f"<presence from='{sender}' to='alice@localhost'><c xmlns='{NS_CAPS}'"
                           f" hash='sha-1' node='{CAPS_NODE}' ver='{ver}'/></presence>")
        routed = self.remote.take()
        queries = [s for s in routed if s.name == "iq"]
        self.remote.stanzas = [s for s in routed if s.name != "iq"]  # the last items
        for query in queries:
            yield self.arrives(f"<iq type='result' id='{query['id']}' from='{query['to']}'"
                               f" to='{query['from']}'>{info_xml(features)}</iq>")
        return queries

    def remote_events(self):
        """The notifications routed to remote.example: [(to, <items/>)]."""
        found = []
        for message in self.remote.take():
            self.assertEqual((message.name, message["from"]), ("message", "alice@localhost"))
            [event] = [c for c in message.elements() if c.name == "event"]
            [child] = child_elements(event)
            found.append((message["to"], child))
        return found

    @defer.inlineCallbacks
    def test_last_item_then_notifications(self):
        yield self.ok(None, publish_xml())
        self.assertEqual(self.remote.take(), [])  # nobody remote is known yet
        [query] = yield self.remote_caps()
        self.assertEqual((query["from"], query["to"]), ("alice@localhost", DAVE))
        [(to, items)] = self.remote_events()
        self.assertEqual((to, items["node"], items.item["id"]), (DAVE, NODE, "current"))
        # Known interests: the same presence again brings nothing.
        yield self.remote_caps()
        self.assertEqual(self.remote.take(), [])
        yield self.ok(None, publish_xml(item_id="second"))
        [(to, items)] = self.remote_events()
        self.assertEqual((to, items.item["id"]), (DAVE, "second"))
        # Unavailable: no more notifications.
        yield self.arrives(f"<presence from='{DAVE}' to='alice@localhost' type='unavailable'/>")
        yield self.ok(None, publish_xml(item_id="third"))
        self.assertEqual(self.remote.take(), [])

    @defer.inlineCallbacks
    def test_only_interested_contacts_with_access(self):
        yield self.ok(None, publish_xml())
        yield self.remote_caps(features=BASE + (OTHER + "+notify",))
        yield self.remote_caps(sender="erin@remote.example/pc")  # not a contact
        self.assertEqual(self.remote.take(), [])  # no last item
        yield self.ok(None, publish_xml(item_id="second"))
        self.assertEqual(self.remote.take(), [])
        # Dave wants the node now: its last item; an outcast he gets nothing.
        yield self.remote_caps()
        self.assertEqual([(to, items.item["id"]) for to, items in self.remote_events()],
                         [(DAVE, "second")])
        yield self.ok(None, pubsub(f"<affiliations node='{NODE}'><affiliation "
                                   "jid='dave@remote.example' affiliation='outcast'/>"
                                   "</affiliations>", owner=True))
        yield self.ok(None, publish_xml(item_id="again"))
        self.assertEqual(self.remote.take(), [])

    @defer.inlineCallbacks
    def test_last_item_once_the_subscription_is_approved(self):
        """Dave's caps are known before he may see the node: the item follows approval."""
        yield self.roster_store.save("alice", RosterItem("dave@remote.example",
                                                         subscription="to"))
        self.sm.drop_roster_cache("alice")
        self.sm._rosters.pop("alice", None)
        yield self.ok(None, publish_xml())
        yield self.remote_caps()
        self.assertEqual(self.remote.take(), [])
        # Alice's presence to Dave alone changes nothing (no access yet).
        yield self.client_sends_out(self.alice, "<presence to='dave@remote.example'/>")
        self.assertEqual([s.name for s in self.remote.take()], ["presence"])
        yield self.arrives("<presence from='dave@remote.example' to='alice@localhost'"
                           " type='subscribe'/>")
        yield self.client_sends_out(self.alice, "<presence to='dave@remote.example'"
                                            " type='subscribed'/>")
        routed = self.remote.take()
        self.assertEqual(sorted((s.name, s.getAttribute("type") or "") for s in routed),
                         [("message", "headline"), ("presence", ""), ("presence", "subscribed")])
        self.remote.stanzas = [s for s in routed if s.name == "message"]
        [(to, items)] = self.remote_events()
        self.assertEqual((to, items.item["id"]), (DAVE, "current"))
        # Sent once: Alice's next presence brings nothing more.
        yield self.client_sends_out(self.alice, "<presence><show>away</show></presence>")
        self.assertEqual([s.name for s in self.remote.take()], ["presence"])
