"""xmppd.modules.bookmarks: XEP-0402 bookmarks kept in step with private XML and XEP-0048 PEP."""

import time

from twisted.internet import defer

from tests.sm_fakes import error_condition
from tests.test_sm_iq import IQTestCase, iq
from xmppd.module import Point
from xmppd.modules.bookmarks import Bookmark, from_legacy, from_pep_item, legacy_storage
from xmppd.sm.stanzas import child_elements, deserialise

NS = "urn:xmpp:bookmarks:1"
LEGACY = "storage:bookmarks"
PUBSUB = "http://jabber.org/protocol/pubsub"
EVENT = PUBSUB + "#event"

ORCHARD = ("<conference jid='orchard@conference.localhost' name='The Orchard' autojoin='true'>"
           "<nick>Al</nick><password>apple</password></conference>")
GARDEN = ("<conference jid='garden@conference.localhost'>"
          "<x xmlns='app:ext' a='1'>kept</x></conference>")


def storage(*conferences, extra=""):
    return f"<storage xmlns='{LEGACY}'>{''.join(conferences)}{extra}</storage>"


def private(inner):
    return f"<query xmlns='jabber:iq:private'>{inner}</query>"


def publish_options(**fields):
    values = "".join(f"<field var='pubsub#{k}'><value>{v}</value></field>"
                     for k, v in fields.items())
    return ("<publish-options><x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE' type='hidden'>"
            "<value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
            f"{values}</x></publish-options>")


BOOKMARK_OPTIONS = publish_options(persist_items="true", max_items="max",
                                   send_last_published_item="never", access_model="whitelist")


class BookmarksTestCase(IQTestCase):
    """Alice is connected; helpers read both PEP nodes and private XML."""

    @property
    def module(self):
        return self.sm.modules["bookmarks"]

    @property
    def pep(self):
        return self.sm.modules["pep"]

    @defer.inlineCallbacks
    def ok(self, xml, session=None):
        reply = yield self.asks(xml, session)
        self.assertEqual(reply["type"], "result", reply.toXml())
        return reply

    def set_private(self, inner, session=None):
        return self.asks(iq(None, private(inner), "set"), session)

    @defer.inlineCallbacks
    def get_private(self, session=None):
        reply = yield self.ok(iq(None, private(f"<storage xmlns='{LEGACY}'/>")), session)
        [found] = child_elements(reply.query)
        self.assertEqual((found.uri, found.name), (LEGACY, "storage"))
        return found

    @defer.inlineCallbacks
    def items(self, node=NS, user="alice"):
        """The node's items as {id: payload} (oldest first), None when there is no node."""
        found = yield self.pep.items(user, node)
        if found is None:
            return None
        return {item.id: item.payload() for item in found}

    @defer.inlineCallbacks
    def bookmarks(self, user="alice"):
        found = yield self.pep.items(user, NS)
        return {item.id: from_pep_item(item) for item in found or []}

    @defer.inlineCallbacks
    def legacy(self, user="alice"):
        """The legacy node's storage as bookmarks by room."""
        found = yield self.items(LEGACY, user)
        self.assertEqual(list(found), ["current"])
        return from_legacy(found["current"], False)

    @defer.inlineCallbacks
    def node(self, name, user="alice"):
        nodes = yield self.pep.engine.nodes(self.pep.service_of(user))
        return nodes.get(name)

    def publish(self, item_id, payload, node=NS, options=BOOKMARK_OPTIONS, session=None):
        item = f"<item id='{item_id}'>{payload}</item>" if item_id else f"<item>{payload}</item>"
        return self.asks(iq(None, f"<pubsub xmlns='{PUBSUB}'><publish node='{node}'>{item}"
                                  f"</publish>{options}</pubsub>", "set"), session)

    def retract(self, item_id, node=NS):
        return self.asks(iq(None, f"<pubsub xmlns='{PUBSUB}'><retract node='{node}'>"
                                  f"<item id='{item_id}'/></retract></pubsub>", "set"))

    @defer.inlineCallbacks
    def subscribe(self, node, session=None):
        """Subscribe explicitly (the last item it sends on subscription is dropped)."""
        session = session or self.alice
        yield self.ok(iq(None, f"<pubsub xmlns='{PUBSUB}'><subscribe node='{node}' "
                               f"jid='{session.jid.full()}'/></pubsub>", "set"), session)
        session.take("message")

    def spy_conversions(self):
        """Record the conversions queued by PEP events (the loop guard's subject)."""
        queued = []
        original = self.module._later

        def later(username, function, *args):
            queued.append(function.__name__)
            return original(username, function, *args)

        self.module._later = later
        return queued


ORCHARD_BOOKMARK = Bookmark("orchard@conference.localhost", "The Orchard", True, "Al", "apple")
GARDEN_BOOKMARK = Bookmark("garden@conference.localhost",
                           extensions=("<x xmlns='app:ext' a='1'>kept</x>",))


class PrivateXMLTests(BookmarksTestCase):
    """XEP-0049 storage:bookmarks is XEP-0402 items underneath."""

    @defer.inlineCallbacks
    def test_set_becomes_items(self):
        reply = yield self.set_private(storage(ORCHARD, GARDEN, extra="<url url='x'/>"))
        self.assertEqual(reply["type"], "result", reply.toXml())
        items = yield self.items()
        self.assertEqual(list(items), ["orchard@conference.localhost",
                                       "garden@conference.localhost"])
        orchard = items["orchard@conference.localhost"]
        self.assertEqual((orchard.uri, orchard.name), (NS, "conference"))
        self.assertEqual(orchard["name"], "The Orchard")
        self.assertEqual(orchard["autojoin"], "true")
        self.assertEqual((str(orchard.nick), str(orchard.password)), ("Al", "apple"))
        garden = items["garden@conference.localhost"]
        self.assertFalse(garden.hasAttribute("autojoin"))
        [extension] = child_elements(garden.extensions)
        self.assertEqual((extension.uri, extension["a"], str(extension)), ("app:ext", "1", "kept"))
        # The node is XEP-0402's, and nothing is kept as private XML.
        node = yield self.node(NS)
        self.assertEqual((node.config.access_model, node.config.max_items,
                          node.config.persist_items, node.config.send_last_published_item),
                         ("whitelist", None, True, "never"))
        rows = yield self.db.query("SELECT namespace FROM private_storage")
        self.assertEqual(rows, [])

    @defer.inlineCallbacks
    def test_get_is_built_from_items(self):
        reply = yield self.publish("orchard@conference.localhost",
                                   f"<conference xmlns='{NS}' name='The Orchard' autojoin='1'>"
                                   "<nick>Al</nick><password>apple</password></conference>")
        self.assertEqual(reply["type"], "result", reply.toXml())
        reply = yield self.publish("garden@conference.localhost",
                                   f"<conference xmlns='{NS}'><extensions>"
                                   "<x xmlns='app:ext' a='1'>kept</x></extensions></conference>")
        self.assertEqual(reply["type"], "result", reply.toXml())
        found = yield self.get_private()
        self.assertEqual(from_legacy(found, True), {
            "orchard@conference.localhost": ORCHARD_BOOKMARK,
            "garden@conference.localhost": GARDEN_BOOKMARK})
        conferences = list(found.elements(LEGACY, "conference"))
        self.assertEqual(conferences[0]["autojoin"], "true")

    @defer.inlineCallbacks
    def test_round_trip_and_nothing_stored(self):
        found = yield self.get_private()
        self.assertEqual(found.children, [])
        yield self.set_private(storage(ORCHARD, GARDEN))
        found = yield self.get_private()
        self.assertEqual(from_legacy(found, True), {
            "orchard@conference.localhost": ORCHARD_BOOKMARK,
            "garden@conference.localhost": GARDEN_BOOKMARK})

    @defer.inlineCallbacks
    def test_removed_rooms_are_retracted_and_unchanged_ones_not_republished(self):
        yield self.set_private(storage(ORCHARD, GARDEN))
        yield self.subscribe(NS)
        changed = ORCHARD.replace("<nick>Al</nick>", "<nick>Alice</nick>")
        reply = yield self.set_private(storage(changed))
        self.assertEqual(reply["type"], "result", reply.toXml())
        bookmarks = yield self.bookmarks()
        self.assertEqual(list(bookmarks), ["orchard@conference.localhost"])
        self.assertEqual(bookmarks["orchard@conference.localhost"].nick, "Alice")
        events = [child_elements(m.event.items)[0] for m in self.alice.take("message")]
        self.assertEqual([(e.name, e["id"]) for e in events], [
            ("item", "orchard@conference.localhost"),
            ("retract", "garden@conference.localhost")])
        # The same set again changes nothing.
        yield self.set_private(storage(changed))
        self.assertEqual(self.alice.take("message"), [])

    @defer.inlineCallbacks
    def test_empty_storage_removes_every_bookmark(self):
        yield self.set_private(storage(ORCHARD, GARDEN))
        reply = yield self.set_private(storage())
        self.assertEqual(reply["type"], "result", reply.toXml())
        self.assertEqual((yield self.items()), {})
        self.assertEqual((yield self.legacy()), {})

    @defer.inlineCallbacks
    def test_other_private_xml_untouched(self):
        yield self.ok(iq(None, private("<prefs xmlns='app:prefs'><a/></prefs>"), "set"))
        reply = yield self.ok(iq(None, private("<prefs xmlns='app:prefs'/>")))
        [found] = child_elements(reply.query)
        self.assertEqual([c.name for c in child_elements(found)], ["a"])
        self.assertIsNone((yield self.node(NS)))

    @defer.inlineCallbacks
    def test_limits_and_errors(self):
        yield self.sm.stopService()
        self.sm = self.make_manager(pubsub={"max_items": 2})
        self.sm.startService()
        self.addCleanup(self.sm.stopService)
        self.alice = yield self.connect("alice")
        yield self.set_private(storage(ORCHARD))
        third = "<conference jid='third@conference.localhost'/>"
        reply = yield self.set_private(storage(ORCHARD, GARDEN, third))
        self.assertEqual(error_condition(reply), "not-acceptable")
        reply = yield self.set_private(storage(ORCHARD, "<conference name='no jid'/>"))
        self.assertEqual(error_condition(reply), "bad-request")
        reply = yield self.set_private(storage(ORCHARD, "<conference jid='a@b@c'/>"))
        self.assertEqual(error_condition(reply), "bad-request")
        big = f"<conference jid='big@conference.localhost' name='{'n' * 140000}'/>"
        reply = yield self.set_private(storage(big))
        self.assertEqual(error_condition(reply), "not-acceptable")
        # Nothing changed by the refused sets.
        self.assertEqual((yield self.bookmarks()),
                         {"orchard@conference.localhost": ORCHARD_BOOKMARK})
        # The same room twice is one bookmark (the last wins), within the limit.
        reply = yield self.set_private(storage(ORCHARD, GARDEN, ORCHARD.replace("Al<", "Bo<")))
        self.assertEqual(reply["type"], "result", reply.toXml())
        bookmarks = yield self.bookmarks()
        self.assertEqual(bookmarks["orchard@conference.localhost"].nick, "Bo")

    @defer.inlineCallbacks
    def test_others_may_not_read_or_write(self):
        yield self.set_private(storage(ORCHARD))
        bob = yield self.connect("bob")
        reply = yield self.asks(iq("alice@localhost", private(f"<storage xmlns='{LEGACY}'/>")),
                                bob)
        self.assertEqual(error_condition(reply), "forbidden")
        for node in (NS, LEGACY):
            reply = yield self.asks(iq("alice@localhost", f"<pubsub xmlns='{PUBSUB}'>"
                                                          f"<items node='{node}'/></pubsub>"), bob)
            self.assertEqual(error_condition(reply), "not-allowed", node)

    @defer.inlineCallbacks
    def test_without_the_module_it_is_private_xml(self):
        yield self.sm.stopService()
        self.sm = self.make_manager(modules={"disabled": ["bookmarks"]})
        self.sm.startService()
        self.addCleanup(self.sm.stopService)
        self.alice = yield self.connect("alice")
        yield self.set_private(storage(ORCHARD))
        rows = yield self.db.query("SELECT namespace FROM private_storage")
        self.assertEqual(rows, [(LEGACY,)])
        self.assertIsNone((yield self.node(NS)))

    @defer.inlineCallbacks
    def test_without_pep_it_is_private_xml(self):
        yield self.sm.stopService()
        self.sm = self.make_manager(modules={"disabled": ["pep"]})
        self.sm.startService()
        self.addCleanup(self.sm.stopService)
        self.alice = yield self.connect("alice")
        yield self.set_private(storage(ORCHARD))
        found = yield self.get_private()
        self.assertEqual(list(from_legacy(found, True)), ["orchard@conference.localhost"])
        rows = yield self.db.query("SELECT namespace FROM private_storage")
        self.assertEqual(rows, [(LEGACY,)])
        reply = yield self.ok(iq("alice@localhost",
                                 "<query xmlns='http://jabber.org/protocol/disco#info'/>"))
        features = {f["var"] for f in reply.query.elements() if f.name == "feature"}
        self.assertNotIn(NS + "#compat", features)


class LegacyPEPTests(BookmarksTestCase):
    """XEP-0048 over PEP: the storage:bookmarks node, item 'current'."""

    @defer.inlineCallbacks
    def test_no_nodes_for_an_account_without_bookmarks(self):
        self.assertIsNone((yield self.node(LEGACY)))
        self.assertIsNone((yield self.node(NS)))

    @defer.inlineCallbacks
    def test_first_legacy_publish_makes_a_whitelist_node(self):
        """Without publish-options the legacy node is private from the start."""
        reply = yield self.publish("current", storage(ORCHARD), node=LEGACY, options="")
        self.assertEqual(reply["type"], "result", reply.toXml())
        node = yield self.node(LEGACY)
        self.assertEqual((node.config.access_model, node.config.max_items,
                          node.config.persist_items), ("whitelist", 1, True))
        node = yield self.node(NS)
        self.assertEqual(node.config.access_model, "whitelist")

    @defer.inlineCallbacks
    def test_last_item_sent_to_legacy_notify_caps_only(self):
        """Prosody's broadcast to XEP-0048 clients on their initial presence."""
        yield self.set_private(storage(ORCHARD))
        self.sm.modules.fire(Point.CAPS_CHANGED, self.alice.session,
                             frozenset({NS + "+notify"}))
        yield self.sm.wait_idle()
        self.assertEqual(self.alice.take("message"), [])
        self.sm.modules.fire(Point.CAPS_CHANGED, self.alice.session,
                             frozenset({NS + "+notify", LEGACY + "+notify"}))
        yield self.sm.wait_idle()
        [note] = self.alice.take("message")
        self.assertEqual(note.event.items["node"], LEGACY)
        self.assertEqual(from_legacy(note.event.items.item.storage, True),
                         {"orchard@conference.localhost": ORCHARD_BOOKMARK})

    @defer.inlineCallbacks
    def test_publish_becomes_items(self):
        yield self.set_private(storage(GARDEN))
        reply = yield self.publish("current", storage(ORCHARD),
                                   node=LEGACY, options=publish_options(
                                       persist_items="true", access_model="whitelist"))
        self.assertEqual(reply["type"], "result", reply.toXml())
        self.assertEqual((yield self.bookmarks()),
                         {"orchard@conference.localhost": ORCHARD_BOOKMARK})
        found = yield self.get_private()
        self.assertEqual(list(from_legacy(found, True)), ["orchard@conference.localhost"])

    @defer.inlineCallbacks
    def test_follows_xep_0402_publish_and_retract(self):
        yield self.publish("orchard@conference.localhost",
                           f"<conference xmlns='{NS}' name='The Orchard' autojoin='true'>"
                           "<nick>Al</nick><password>apple</password></conference>")
        self.assertEqual((yield self.legacy()),
                         {"orchard@conference.localhost": ORCHARD_BOOKMARK})
        yield self.subscribe(LEGACY)
        reply = yield self.retract("orchard@conference.localhost")
        self.assertEqual(reply["type"], "result", reply.toXml())
        self.assertEqual((yield self.legacy()), {})
        [note] = self.alice.take("message")
        self.assertEqual(child_elements(note.event.items.item.storage), [])

    @defer.inlineCallbacks
    def test_follows_private_set(self):
        yield self.set_private(storage(ORCHARD, GARDEN))
        self.assertEqual((yield self.legacy()), {
            "orchard@conference.localhost": ORCHARD_BOOKMARK,
            "garden@conference.localhost": GARDEN_BOOKMARK})

    @defer.inlineCallbacks
    def test_follows_node_deletion(self):
        yield self.set_private(storage(ORCHARD))
        yield self.ok(iq(None, f"<pubsub xmlns='{PUBSUB}#owner'><delete node='{NS}'/></pubsub>",
                         "set"))
        self.assertEqual((yield self.legacy()), {})

    @defer.inlineCallbacks
    def test_unconvertible_publish_is_answered_by_what_is_kept(self):
        yield self.sm.stopService()
        self.sm = self.make_manager(pubsub={"max_items": 1})
        self.sm.startService()
        self.addCleanup(self.sm.stopService)
        self.alice = yield self.connect("alice")
        yield self.set_private(storage(ORCHARD))
        yield self.subscribe(LEGACY)
        reply = yield self.publish("current", storage(ORCHARD, GARDEN), node=LEGACY, options="")
        self.assertEqual(reply["type"], "result", reply.toXml())
        self.assertEqual((yield self.bookmarks()),
                         {"orchard@conference.localhost": ORCHARD_BOOKMARK})
        self.assertEqual((yield self.legacy()),
                         {"orchard@conference.localhost": ORCHARD_BOOKMARK})
        notes = self.alice.take("message")
        self.assertEqual(len(notes), 2)  # the client's publish, then what is kept
        self.assertEqual(len(list(notes[1].event.items.item.storage.elements())), 1)

    @defer.inlineCallbacks
    def test_other_payload_is_replaced(self):
        yield self.set_private(storage(ORCHARD))
        reply = yield self.publish("current", "<other xmlns='app:other'/>", node=LEGACY,
                                   options="")
        self.assertEqual(reply["type"], "result", reply.toXml())
        self.assertEqual((yield self.bookmarks()),
                         {"orchard@conference.localhost": ORCHARD_BOOKMARK})
        self.assertEqual((yield self.legacy()),
                         {"orchard@conference.localhost": ORCHARD_BOOKMARK})

    @defer.inlineCallbacks
    def test_whitelist_is_put_back(self):
        """A client that opened the XEP-0402 node: the next conversion closes it."""
        yield self.set_private(storage(ORCHARD))
        node = yield self.node(NS)
        yield self.ok(iq(None, f"<pubsub xmlns='{PUBSUB}#owner'><configure node='{NS}'>"
                               "<x xmlns='jabber:x:data' type='submit'>"
                               "<field var='FORM_TYPE' type='hidden'><value>"
                               "http://jabber.org/protocol/pubsub#node_config</value></field>"
                               "<field var='pubsub#access_model'><value>open</value></field>"
                               "</x></configure></pubsub>", "set"))
        self.assertEqual(node.config.access_model, "open")
        yield self.set_private(storage(ORCHARD, GARDEN))
        self.assertEqual(node.config.access_model, "whitelist")


class LoopGuardTests(BookmarksTestCase):
    """A conversion's own publishes and retracts start no conversion back."""

    @defer.inlineCallbacks
    def test_private_set_queues_nothing(self):
        queued = self.spy_conversions()
        yield self.set_private(storage(ORCHARD, GARDEN))
        yield self.set_private(storage(GARDEN))
        self.assertEqual(queued, [])

    @defer.inlineCallbacks
    def test_legacy_publish_queues_one_conversion(self):
        yield self.set_private(storage(GARDEN))
        yield self.subscribe(LEGACY)
        self.alice.take("message")
        queued = self.spy_conversions()
        yield self.publish("current", storage(ORCHARD), node=LEGACY, options="")
        self.assertEqual(queued, ["_from_legacy_node"])
        # Only the client's own publish reached the legacy node.
        self.assertEqual(len(self.alice.take("message")), 1)

    @defer.inlineCallbacks
    def test_xep_0402_publish_queues_one_conversion(self):
        yield self.publish("garden@conference.localhost", f"<conference xmlns='{NS}'/>")
        yield self.subscribe(NS)
        queued = self.spy_conversions()
        yield self.publish("orchard@conference.localhost", f"<conference xmlns='{NS}'/>")
        yield self.retract("orchard@conference.localhost")
        self.assertEqual(queued, ["_write_legacy", "_write_legacy"])
        self.assertEqual(len(self.alice.take("message")), 2)


class AccountTests(BookmarksTestCase):
    """Disco, migration on the first bind, deletion with the account."""

    @defer.inlineCallbacks
    def test_disco_features_on_the_account(self):
        reply = yield self.ok(iq("alice@localhost",
                                 "<query xmlns='http://jabber.org/protocol/disco#info'/>"))
        features = {f["var"] for f in reply.query.elements() if f.name == "feature"}
        self.assertTrue({NS + "#compat", NS + "#compat-pep",
                         "urn:xmpp:bookmarks-conversion:0"} <= features, features)
        reply = yield self.ok(iq("localhost",
                                 "<query xmlns='http://jabber.org/protocol/disco#info'/>"))
        features = {f["var"] for f in reply.query.elements() if f.name == "feature"}
        self.assertNotIn(NS + "#compat", features)

    @defer.inlineCallbacks
    def test_old_private_xml_and_legacy_item_migrate_on_first_bind(self):
        yield self.db.execute(
            "INSERT INTO private_storage (username, namespace, name, xml) VALUES (?, ?, ?, ?)",
            "carol", LEGACY, "storage", legacy_storage([ORCHARD_BOOKMARK]).toXml())
        yield self.pep.publish("carol", LEGACY, from_legacy_storage(GARDEN), "current",
                               {"access_model": "presence"})
        yield self.pep.publish("carol", NS, GARDEN_BOOKMARK.pep_payload(), GARDEN_BOOKMARK.jid)
        carol = yield self.connect("carol")
        self.assertEqual((yield self.bookmarks("carol")), {
            "garden@conference.localhost": GARDEN_BOOKMARK,
            "orchard@conference.localhost": ORCHARD_BOOKMARK})
        rows = yield self.db.query("SELECT * FROM private_storage")
        self.assertEqual(rows, [])
        node = yield self.node(LEGACY, "carol")
        self.assertEqual(node.config.access_model, "whitelist")
        self.assertEqual(len((yield self.legacy("carol"))), 2)
        found = yield self.get_private(carol)
        self.assertEqual(len(list(found.elements(LEGACY, "conference"))), 2)

    @defer.inlineCallbacks
    def test_deleted_with_the_account(self):
        yield self.set_private(storage(ORCHARD, GARDEN))
        yield self.db.execute(
            "INSERT INTO private_storage (username, namespace, name, xml) VALUES (?, ?, ?, ?)",
            "alice", "app:prefs", "prefs", "<prefs xmlns='app:prefs'><a/></prefs>")
        rows = yield self.db.query("SELECT COUNT(*) FROM pubsub_items "
                                   "WHERE service = 'alice@localhost'")
        self.assertEqual(rows, [(3,)])
        reply = yield self.ok(iq(None, "<query xmlns='jabber:iq:register'><remove/></query>",
                                 "set"))
        self.assertEqual(reply["type"], "result")
        for table in ("pubsub_items", "pubsub_nodes"):
            rows = yield self.db.query(f"SELECT COUNT(*) FROM {table} "
                                       "WHERE service = 'alice@localhost'")
            self.assertEqual(rows, [(0,)], table)
        rows = yield self.db.query("SELECT COUNT(*) FROM private_storage")
        self.assertEqual(rows, [(0,)])
        # A new account of that name starts empty.
        yield self.db.execute("INSERT INTO accounts (username, created) VALUES (?, ?)",
                              "alice", time.time())
        again = yield self.connect("alice")
        self.assertEqual((yield self.bookmarks()), {})
        self.assertIsNone((yield self.node(LEGACY)))
        found = yield self.get_private(again)
        self.assertEqual(found.children, [])


def from_legacy_storage(conference):
    """A parsed ``<storage/>`` holding one conference."""
    return deserialise(storage(conference))
