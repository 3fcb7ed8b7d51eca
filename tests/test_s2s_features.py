"""Federation end to end, feature by feature: PEP, MAM, carbons, blocking, MUC.

The two servers of :mod:`tests.test_s2s_e2e` (a.example on 127.0.0.1,
b.example on 127.0.0.2, dialback over TLS with self-signed certificates)
with alice@a.example and bob@b.example logged in; every test checks what
crosses the S2S streams with precise predicates.
"""

from twisted.internet import defer, reactor
from twisted.words.xish import domish

from tests.test_s2s_e2e import TwoServers, domain_config, login, summaries
from tests.test_server_e2e import element, next_stanza
from xmppd import certificates
from xmppd.modules.caps import compute_ver
from xmppd.testing.scansion.client import ScansionClient
from xmppd.testing.scansion.parser import ClientAccount

NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_PUBSUB_ERRORS = "http://jabber.org/protocol/pubsub#errors"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_NICK = "http://jabber.org/protocol/nick"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_MAM = "urn:xmpp:mam:2"
NS_SID = "urn:xmpp:sid:0"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_FORWARD = "urn:xmpp:forward:0"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_BLOCKING = "urn:xmpp:blocking"
NS_BLOCKING_ERRORS = "urn:xmpp:blocking:errors"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner"


def is_iq(iq_id):
    """A predicate: the iq answering ``iq_id``."""
    return lambda s: s.name == "iq" and s.getAttribute("id") == iq_id


def presence_from(bare, kind=None):
    """A predicate: presence from one of ``bare``'s resources, of that type."""
    return lambda s: (s.name == "presence" and s.getAttribute("type") == kind
                      and (s.getAttribute("from") or "").split("/")[0] == bare)


def message_from(address):
    """A predicate: a message whose 'from' is exactly ``address``."""
    return lambda s: s.name == "message" and s.getAttribute("from") == address


def named(parent, name):
    """The first child element of ``parent`` called ``name``, whatever its namespace."""
    return next(c for c in parent.elements() if c.name == name)


def condition(stanza):
    """The defined condition of an error stanza."""
    error = named(stanza, "error")
    return next(c.name for c in error.elements() if c.uri == NS_STANZAS)


def children(parent, uri, name):
    """The children of ``parent`` with that qualified name."""
    return [c for c in parent.elements() if c.uri == uri and c.name == name]


_pings = iter(range(1, 1000000))


@defer.inlineCallbacks
def across(client, domain, timeout=5.0):
    """Ping ``domain`` (the other server) and wait for its answer; other stanzas stay queued.

    The answer travels the S2S stream from that server after whatever it
    sent the client before: afterwards the client's queue holds all of it,
    so a test can check that something did *not* arrive, without sleeping.
    """
    iq_id = f"across-{next(_pings)}"
    client.send(element(f"<iq to='{domain}' type='get' id='{iq_id}'>"
                        f"<ping xmlns='urn:xmpp:ping'/></iq>"))
    held = []
    deadline = reactor.seconds() + timeout
    while True:
        while client.queue:
            stanza = client.queue.popleft()
            if stanza.name == "iq" and stanza.getAttribute("id") == iq_id:
                client.queue.extendleft(reversed(held))
                return stanza
            held.append(stanza)
        remaining = deadline - reactor.seconds()
        if remaining <= 0 or not (yield client.wait_for_stanza(remaining)):
            client.queue.extendleft(reversed(held))
            raise AssertionError(f"no answer from {domain}")


def queued(client, wanted):
    """The stanzas queued for the client for which wanted(stanza) is true."""
    return [stanza for stanza in client.queue if wanted(stanza)]


@defer.inlineCallbacks
def login_as(server, username, address, resource, priority=0):
    """A logged-in client of ``server`` with that resource, available at ``priority``."""
    domain = server.config.domain
    client = ScansionClient(ClientAccount(username, f"{username}@{domain}", "pw", resource))
    yield client.connect(address, server.port, timeout=5)
    client.send(element(f"<presence><priority>{priority}</priority></presence>"))
    yield next_stanza(client, lambda s: s.name == "presence"
                      and s.getAttribute("from") == f"{username}@{domain}/{resource}")
    return client


@defer.inlineCallbacks
def subscribe_both_ways(alice, bob):
    """alice@a.example and bob@b.example subscribe to each other's presence."""
    for one, other, one_jid, other_jid in (
            (alice, bob, "alice@a.example", "bob@b.example"),
            (bob, alice, "bob@b.example", "alice@a.example")):
        one.send(element(f"<presence to='{other_jid}' type='subscribe'/>"))
        yield next_stanza(other, lambda s, sender=one_jid: s.name == "presence"
                          and s.getAttribute("type") == "subscribe"
                          and s["from"] == sender)
        other.send(element(f"<presence to='{one_jid}' type='subscribed'/>"))
        yield next_stanza(one, lambda s, sender=other_jid: s.name == "presence"
                          and s.getAttribute("type") == "subscribed"
                          and s["from"] == sender)
        # The approval is followed by the contact's available presence.
        yield next_stanza(one, presence_from(other_jid))


class PEPTests(TwoServers):
    """PEP (XEP-0163) across servers: notifications filtered by remote caps, access."""

    CAPS_NODE = "https://example.org/client"

    def bob_disco(self):
        """Bob's client's disco#info: it wants nickname notifications."""
        query = domish.Element((NS_DISCO_INFO, "query"))
        identity = query.addElement("identity")
        identity["category"], identity["type"], identity["name"] = "client", "pc", "Bob"
        for feature in (NS_DISCO_INFO, NS_NICK, NS_NICK + "+notify"):
            query.addElement("feature")["var"] = feature
        return query

    @defer.inlineCallbacks
    def answer_caps_queries(self, client, askers):
        """Answer the disco#info queries of ``askers`` (bare JIDs), in any order."""
        query = self.bob_disco()
        ver = compute_ver(query)
        waiting = set(askers)
        while waiting:
            asked = yield next_stanza(client, lambda s: s.name == "iq"
                                      and s.getAttribute("type") == "get"
                                      and s.getAttribute("from") in waiting)
            waiting.discard(asked["from"])
            asked_query = next(asked.elements(NS_DISCO_INFO, "query"))
            self.assertEqual(asked_query["node"], f"{self.CAPS_NODE}#{ver}")
            reply = domish.Element((None, "iq"))
            reply["type"], reply["id"], reply["to"] = "result", asked["id"], asked["from"]
            answer = reply.addChild(self.bob_disco())
            answer["node"] = asked_query["node"]
            client.send(reply)

    def caps_presence(self):
        """Bob's available presence with his entity capabilities."""
        ver = compute_ver(self.bob_disco())
        return element(f"<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1'"
                       f" node='{self.CAPS_NODE}' ver='{ver}'/></presence>")

    def publish_nick(self, nick, iq_id):
        """Alice publishes her nickname."""
        self.alice.send(element(
            f"<iq type='set' id='{iq_id}'><pubsub xmlns='{NS_PUBSUB}'>"
            f"<publish node='{NS_NICK}'><item id='current'>"
            f"<nick xmlns='{NS_NICK}'>{nick}</nick></item></publish></pubsub></iq>"))
        return next_stanza(self.alice, is_iq(iq_id))

    def assert_nick_event(self, event, nick):
        self.assertEqual((event["from"], event["to"], event.getAttribute("type")),
                         ("alice@a.example", "bob@b.example/res", "headline"))
        items = next(next(event.elements(NS_EVENT, "event")).elements(NS_EVENT, "items"))
        self.assertEqual(items["node"], NS_NICK)
        item = next(items.elements(NS_EVENT, "item"))
        self.assertEqual(str(next(item.elements(NS_NICK, "nick"))), nick)

    def is_nick_event(self, stanza):
        return (stanza.name == "message" and stanza.getAttribute("from") == "alice@a.example"
                and any(True for _ in stanza.elements(NS_EVENT, "event")))

    @defer.inlineCallbacks
    def test_notifications_follow_remote_caps(self):
        yield subscribe_both_ways(self.alice, self.bob)
        published = yield self.publish_nick("Alice", "p1")
        self.assertEqual(published["type"], "result")
        # Bob's caps: both servers ask him (his own for his own PEP, Alice's
        # from her bare JID, across S2S); then Alice's last item comes.
        self.bob.send(self.caps_presence())
        yield self.answer_caps_queries(self.bob, {"bob@b.example", "alice@a.example"})
        event = yield next_stanza(self.bob, self.is_nick_event)
        self.assert_nick_event(event, "Alice")
        # A new publish is notified at once.
        published = yield self.publish_nick("Alice A.", "p2")
        self.assertEqual(published["type"], "result")
        event = yield next_stanza(self.bob, self.is_nick_event)
        self.assert_nick_event(event, "Alice A.")
        # Once each: no other event is on its way.
        yield across(self.bob, "a.example")
        self.assertEqual(queued(self.bob, self.is_nick_event), [])

    @defer.inlineCallbacks
    def test_last_item_once_alice_approves(self):
        """Bob's caps reach Alice's server before he may see her node: the item
        follows her approval of his subscription."""
        yield self.publish_nick("Alice", "p1")
        self.bob.send(self.caps_presence())
        yield self.answer_caps_queries(self.bob, {"bob@b.example"})
        # Alice subscribes to Bob: his presence (with caps) reaches her server.
        self.alice.send(element("<presence to='bob@b.example' type='subscribe'/>"))
        yield next_stanza(self.bob, lambda s: s.name == "presence"
                          and s.getAttribute("type") == "subscribe")
        self.bob.send(element("<presence to='alice@a.example' type='subscribed'/>"))
        yield self.answer_caps_queries(self.bob, {"alice@a.example"})
        yield next_stanza(self.alice, presence_from("bob@b.example"))
        yield across(self.bob, "a.example")
        self.assertEqual(queued(self.bob, self.is_nick_event), [])  # no access yet
        # Bob subscribes to Alice, she approves: the last item comes.
        self.bob.send(element("<presence to='alice@a.example' type='subscribe'/>"))
        yield next_stanza(self.alice, lambda s: s.name == "presence"
                          and s.getAttribute("type") == "subscribe")
        self.alice.send(element("<presence to='bob@b.example' type='subscribed'/>"))
        event = yield next_stanza(self.bob, self.is_nick_event)
        self.assert_nick_event(event, "Alice")

    @defer.inlineCallbacks
    def test_remote_contact_subscribes_explicitly(self):
        yield subscribe_both_ways(self.alice, self.bob)
        self.bob.send(element(f"<iq to='alice@a.example' type='set' id='s1'>"
                              f"<pubsub xmlns='{NS_PUBSUB}'><subscribe node='{NS_NICK}'"
                              f" jid='bob@b.example'/></pubsub></iq>"))
        subscribed = yield next_stanza(self.bob, is_iq("s1"))
        self.assertEqual(subscribed["type"], "error")  # no such node yet
        self.assertEqual(condition(subscribed), "item-not-found")
        yield self.publish_nick("Alice", "p1")
        self.bob.send(element(f"<iq to='alice@a.example' type='set' id='s2'>"
                              f"<pubsub xmlns='{NS_PUBSUB}'><subscribe node='{NS_NICK}'"
                              f" jid='bob@b.example'/></pubsub></iq>"))
        subscribed = yield next_stanza(self.bob, is_iq("s2"))
        self.assertEqual((subscribed["type"], subscribed["from"]), ("result", "alice@a.example"))
        subscription = named(named(subscribed, "pubsub"), "subscription")
        self.assertEqual((subscription["jid"], subscription["subscription"]),
                         ("bob@b.example", "subscribed"))
        # The last item follows the subscription (to the bare JID: Bob's
        # server hands the headline to his resource).
        event = yield next_stanza(self.bob, self.is_nick_event)
        self.assertEqual(str(named(named(named(named(event, "event"), "items"), "item"),
                                   "nick")), "Alice")
        yield self.publish_nick("Alice A.", "p2")
        event = yield next_stanza(self.bob, self.is_nick_event)
        self.assertEqual(str(named(named(named(named(event, "event"), "items"), "item"),
                                   "nick")), "Alice A.")

    @defer.inlineCallbacks
    def test_remote_contact_reads_the_node(self):
        yield subscribe_both_ways(self.alice, self.bob)
        yield self.publish_nick("Alice", "p1")
        self.bob.send(element(f"<iq to='alice@a.example' type='get' id='g1'>"
                              f"<pubsub xmlns='{NS_PUBSUB}'><items node='{NS_NICK}'/>"
                              f"</pubsub></iq>"))
        got = yield next_stanza(self.bob, is_iq("g1"))
        self.assertEqual((got["type"], got["from"]), ("result", "alice@a.example"))
        items = next(next(got.elements(NS_PUBSUB, "pubsub")).elements(NS_PUBSUB, "items"))
        nicks = [str(next(item.elements(NS_NICK, "nick")))
                 for item in items.elements(NS_PUBSUB, "item")]
        self.assertEqual(nicks, ["Alice"])

    @defer.inlineCallbacks
    def test_remote_stranger_is_refused(self):
        yield self.b.create_user("carol", "pw")
        carol = yield login_as(self.b, "carol", "127.0.0.2", "res")
        self.addCleanup(carol.disconnect)
        yield self.publish_nick("Alice", "p1")
        # Carol's caps reach Alice's server (directed presence): it asks her,
        # but she is no contact, so neither the last item nor a new one comes.
        presence = self.caps_presence()
        presence["to"] = "alice@a.example"
        carol.send(presence)
        yield self.answer_caps_queries(carol, {"alice@a.example"})
        yield self.publish_nick("Alice A.", "p2")
        yield across(carol, "a.example")
        self.assertEqual(queued(carol, self.is_nick_event), [])
        carol.send(element(f"<iq to='alice@a.example' type='get' id='g1'>"
                           f"<pubsub xmlns='{NS_PUBSUB}'><items node='{NS_NICK}'/>"
                           f"</pubsub></iq>"))
        got = yield next_stanza(carol, is_iq("g1"))
        self.assertEqual((got["type"], got["from"]), ("error", "alice@a.example"))
        self.assertEqual(condition(got), "not-authorized")
        error = named(got, "error")
        self.assertEqual([c.name for c in error.elements() if c.uri == NS_PUBSUB_ERRORS],
                         ["presence-subscription-required"])
        # Carol cannot subscribe to the node either.
        carol.send(element(f"<iq to='alice@a.example' type='set' id='s1'>"
                           f"<pubsub xmlns='{NS_PUBSUB}'><subscribe node='{NS_NICK}'"
                           f" jid='carol@b.example'/></pubsub></iq>"))
        got = yield next_stanza(carol, is_iq("s1"))
        self.assertEqual((got["type"], condition(got)), ("error", "not-authorized"))


class MAMTests(TwoServers):
    """A chat across servers is archived on both sides, with honest stanza ids."""

    @defer.inlineCallbacks
    def query(self, client, with_jid, iq_id, rsm=""):
        """Query the own archive for the chat with ``with_jid``: (messages, fin)."""
        client.send(element(
            f"<iq type='set' id='{iq_id}'><query xmlns='{NS_MAM}' queryid='{iq_id}'>"
            f"<x xmlns='jabber:x:data' type='submit'>"
            f"<field var='FORM_TYPE' type='hidden'><value>{NS_MAM}</value></field>"
            f"<field var='with'><value>{with_jid}</value></field></x>{rsm}</query></iq>"))
        found = []
        while True:
            stanza = yield next_stanza(client, lambda s: s.name == "iq" and s["id"] == iq_id
                                       or s.name == "message"
                                       and any(True for _ in s.elements(NS_MAM, "result")))
            if stanza.name == "iq":
                self.assertEqual(stanza["type"], "result")
                return found, next(stanza.elements(NS_MAM, "fin"))
            result = next(stanza.elements(NS_MAM, "result"))
            self.assertEqual(result["queryid"], iq_id)
            forwarded = next(result.elements(NS_FORWARD, "forwarded"))
            message = named(forwarded, "message")
            found.append((result["id"], message["from"], message["to"], str(message.body)))

    @defer.inlineCallbacks
    def test_both_archives_hold_both_directions(self):
        self.alice.send(element(f"<message to='bob@b.example/res' type='chat' id='m1'>"
                                f"<body>one</body><stanza-id xmlns='{NS_SID}'"
                                f" by='bob@b.example' id='forged'/></message>"))
        got = yield next_stanza(self.bob, message_from("alice@a.example/res"))
        bob_ids = children(got, NS_SID, "stanza-id")
        self.assertEqual([s["by"] for s in bob_ids], ["bob@b.example"])
        # Bob forges stanza ids by Alice and by himself: neither survives.
        self.bob.send(element(
            "<message to='alice@a.example' type='chat' id='m2'><body>two</body>"
            f"<stanza-id xmlns='{NS_SID}' by='alice@a.example' id='forged-a'/>"
            f"<stanza-id xmlns='{NS_SID}' by='bob@b.example' id='forged-b'/></message>"))
        got = yield next_stanza(self.alice, message_from("bob@b.example/res"))
        alice_ids = children(got, NS_SID, "stanza-id")
        self.assertEqual([s["by"] for s in alice_ids], ["alice@a.example"])
        self.assertNotEqual(alice_ids[0]["id"], "forged-a")

        found, fin = yield self.query(self.alice, "bob@b.example", "q1")
        self.assertEqual([f[1:] for f in found], [
            ("alice@a.example/res", "bob@b.example/res", "one"),
            ("bob@b.example/res", "alice@a.example", "two")])
        self.assertEqual(found[1][0], alice_ids[0]["id"])
        self.assertEqual(fin.getAttribute("complete"), "true")
        found, fin = yield self.query(self.bob, "alice@a.example", "q2")
        self.assertEqual([f[1:] for f in found], [
            ("alice@a.example/res", "bob@b.example/res", "one"),
            ("bob@b.example/res", "alice@a.example", "two")])
        self.assertEqual(found[0][0], bob_ids[0]["id"])
        self.assertNotEqual(bob_ids[0]["id"], "forged")

    @defer.inlineCallbacks
    def test_offline_messages_from_a_remote_contact(self):
        """Alice is offline: Bob's messages are archived and stored, stamped once."""
        yield self.alice.disconnect()
        for n in range(2):
            self.bob.send(element(f"<message to='alice@a.example' type='chat' id='o{n}'>"
                                  f"<body>offline {n}</body></message>"))
        # Bob's server has handed both on once Alice's server answers a ping.
        yield across(self.bob, "a.example")
        self.alice = yield login(self.a, "alice", "127.0.0.1", wait_self=False)
        self.addCleanup(self.alice.disconnect)
        stamps = []
        for n in range(2):
            got = yield next_stanza(self.alice, message_from("bob@b.example/res"))
            self.assertEqual(str(got.body), f"offline {n}")
            [stamp] = children(got, NS_SID, "stanza-id")
            self.assertEqual(stamp["by"], "alice@a.example")
            stamps.append(stamp["id"])
        found, _ = yield self.query(self.alice, "bob@b.example", "q1")
        self.assertEqual([(f[0], f[3]) for f in found],
                         list(zip(stamps, ["offline 0", "offline 1"], strict=True)))

    @defer.inlineCallbacks
    def test_roster_preference_with_remote_senders(self):
        """default='roster': the remote contact's message is archived, a stranger's not."""
        yield subscribe_both_ways(self.alice, self.bob)
        self.alice.send(element(f"<iq type='set' id='p1'><prefs xmlns='{NS_MAM}'"
                                f" default='roster'/></iq>"))
        done = yield next_stanza(self.alice, is_iq("p1"))
        self.assertEqual(done["type"], "result")
        yield self.b.create_user("carol", "pw")
        carol = yield login_as(self.b, "carol", "127.0.0.2", "res")
        self.addCleanup(carol.disconnect)
        for sender, name in ((carol, "carol"), (self.bob, "bob")):
            sender.send(element(f"<message to='alice@a.example' type='chat' id='{name}'>"
                                f"<body>from {name}</body></message>"))
            got = yield next_stanza(self.alice, message_from(f"{name}@b.example/res"))
            stamps = [s["by"] for s in children(got, NS_SID, "stanza-id")]
            self.assertEqual(stamps, [] if name == "carol" else ["alice@a.example"])
        found, _ = yield self.query(self.alice, "carol@b.example", "q1")
        self.assertEqual(found, [])
        found, _ = yield self.query(self.alice, "bob@b.example", "q2")
        self.assertEqual([f[3] for f in found], ["from bob"])

    @defer.inlineCallbacks
    def test_remote_user_cannot_query_an_archive(self):
        self.bob.send(element(f"<iq to='alice@a.example' type='set' id='q1'>"
                              f"<query xmlns='{NS_MAM}'/></iq>"))
        refused = yield next_stanza(self.bob, is_iq("q1"))
        self.assertEqual((refused["type"], refused["from"], condition(refused)),
                         ("error", "alice@a.example", "forbidden"))

    @defer.inlineCallbacks
    def test_paging_by_remote_contact(self):
        for n in range(3):
            self.bob.send(element(f"<message to='alice@a.example' type='chat' id='m{n}'>"
                                  f"<body>b{n}</body></message>"))
            yield next_stanza(self.alice, message_from("bob@b.example/res"))
        first, fin = yield self.query(self.alice, "bob@b.example", "q1",
                                      f"<set xmlns='{NS_RSM}'><max>2</max></set>")
        self.assertEqual([f[3] for f in first], ["b0", "b1"])
        self.assertIsNone(fin.getAttribute("complete"))
        last = str(next(next(fin.elements(NS_RSM, "set")).elements(NS_RSM, "last")))
        self.assertEqual(last, first[-1][0])
        rest, fin = yield self.query(self.alice, "bob@b.example", "q2",
                                     f"<set xmlns='{NS_RSM}'><max>2</max>"
                                     f"<after>{last}</after></set>")
        self.assertEqual([f[3] for f in rest], ["b2"])
        self.assertEqual(fin.getAttribute("complete"), "true")


class CarbonsTests(TwoServers):
    """Carbons of a chat with a remote contact."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        # Alice's first session is her preferred one (priority 1).
        self.alice.send(element("<presence><priority>1</priority></presence>"))
        yield next_stanza(self.alice, presence_from("alice@a.example"))
        self.alice2 = yield login_as(self.a, "alice", "127.0.0.1", "res2")
        self.addCleanup(self.alice2.disconnect)
        for n, client in enumerate((self.alice, self.alice2)):
            client.send(element(f"<iq type='set' id='c{n}'><enable xmlns='{NS_CARBONS}'/></iq>"))
            enabled = yield next_stanza(client, is_iq(f"c{n}"))
            self.assertEqual(enabled["type"], "result")

    def carbon(self, client, kind):
        """The next carbon of that kind: (wrapper, the forwarded message)."""
        d = next_stanza(client, lambda s: s.name == "message"
                        and any(True for _ in s.elements(NS_CARBONS, kind)))

        def unwrap(wrapper):
            self.assertEqual(wrapper["from"], "alice@a.example")
            inner = next(next(wrapper.elements(NS_CARBONS, kind)).elements(NS_FORWARD,
                                                                            "forwarded"))
            return wrapper, named(inner, "message")
        return d.addCallback(unwrap)

    @defer.inlineCallbacks
    def test_received_carbon_of_a_remote_message(self):
        self.bob.send(element("<message to='alice@a.example' type='chat' id='m1'>"
                              "<body>to the bare JID</body></message>"))
        got = yield next_stanza(self.alice, message_from("bob@b.example/res"))
        self.assertEqual(str(got.body), "to the bare JID")
        wrapper, copied = yield self.carbon(self.alice2, "received")
        self.assertEqual(wrapper["to"], "alice@a.example/res2")
        self.assertEqual((copied["from"], copied["to"], str(copied.body)),
                         ("bob@b.example/res", "alice@a.example", "to the bare JID"))

    @defer.inlineCallbacks
    def test_sent_carbon_of_a_message_to_a_remote_contact(self):
        self.alice.send(element("<message to='bob@b.example' type='chat' id='m1'>"
                                "<body>from res</body></message>"))
        got = yield next_stanza(self.bob, message_from("alice@a.example/res"))
        self.assertEqual(str(got.body), "from res")
        wrapper, copied = yield self.carbon(self.alice2, "sent")
        self.assertEqual((copied["from"], copied["to"], str(copied.body)),
                         ("alice@a.example/res", "bob@b.example", "from res"))
        # Bob's answer to res: res2 gets its received carbon.
        self.bob.send(element("<message to='alice@a.example/res' type='chat' id='m2'>"
                              "<body>back to res</body></message>"))
        got = yield next_stanza(self.alice, message_from("bob@b.example/res"))
        wrapper, copied = yield self.carbon(self.alice2, "received")
        self.assertEqual((copied["from"], str(copied.body)), ("bob@b.example/res", "back to res"))


class BlockingTests(TwoServers):
    """Blocking (XEP-0191) of a remote contact and of a whole remote domain."""

    @defer.inlineCallbacks
    def block(self, action, address, iq_id):
        item = f"<item jid='{address}'/>" if address else ""
        self.alice.send(element(f"<iq type='set' id='{iq_id}'>"
                                f"<{action} xmlns='{NS_BLOCKING}'>{item}</{action}></iq>"))
        done = yield next_stanza(self.alice, is_iq(iq_id))
        self.assertEqual(done["type"], "result")

    @defer.inlineCallbacks
    def assert_bob_is_blocked(self, n):
        """Bob's message and iq bounce; Alice's message is refused."""
        self.bob.send(element(f"<message to='alice@a.example' type='chat' id='bm{n}'>"
                              f"<body>blocked?</body></message>"))
        bounce = yield next_stanza(self.bob, lambda s: s.name == "message"
                                   and s.getAttribute("id") == f"bm{n}")
        self.assertEqual((bounce["type"], bounce["from"], condition(bounce)),
                         ("error", "alice@a.example", "service-unavailable"))
        self.bob.send(element(f"<iq to='alice@a.example' type='get' id='bi{n}'>"
                              f"<vCard xmlns='vcard-temp'/></iq>"))
        bounce = yield next_stanza(self.bob, is_iq(f"bi{n}"))
        self.assertEqual((bounce["type"], bounce["from"], condition(bounce)),
                         ("error", "alice@a.example", "service-unavailable"))
        self.alice.send(element(f"<message to='bob@b.example' type='chat' id='am{n}'>"
                                f"<body>to blocked</body></message>"))
        refused = yield next_stanza(self.alice, lambda s: s.name == "message"
                                    and s.getAttribute("id") == f"am{n}")
        self.assertEqual((refused["type"], refused["from"], condition(refused)),
                         ("error", "bob@b.example", "not-acceptable"))
        error = named(refused, "error")
        self.assertEqual([c.name for c in error.elements() if c.uri == NS_BLOCKING_ERRORS],
                         ["blocked"])

    @defer.inlineCallbacks
    def assert_bob_gets_through(self, n):
        self.bob.send(element(f"<message to='alice@a.example' type='chat' id='ok{n}'>"
                              f"<body>through {n}</body></message>"))
        got = yield next_stanza(self.alice, message_from("bob@b.example/res"))
        self.assertEqual((got["id"], str(got.body)), (f"ok{n}", f"through {n}"))

    @defer.inlineCallbacks
    def test_block_a_remote_contact_then_unblock(self):
        yield subscribe_both_ways(self.alice, self.bob)
        yield self.block("block", "bob@b.example", "b1")
        # Bob sees Alice go offline, and then none of her presence.
        gone = yield next_stanza(self.bob, presence_from("alice@a.example", "unavailable"))
        self.assertEqual(gone["from"], "alice@a.example/res")
        self.alice.send(element("<presence><show>dnd</show></presence>"))
        yield next_stanza(self.alice, lambda s: s.name == "presence" and s.show is not None)
        yield self.assert_bob_is_blocked(1)
        # Bob logs in again: his server's probe gets no answer.
        yield self.bob.disconnect()
        self.bob = yield login(self.b, "bob", "127.0.0.2")
        self.addCleanup(self.bob.disconnect)
        yield across(self.bob, "a.example")
        self.assertEqual(queued(self.bob, lambda s: s.getAttribute("from", "").startswith(
            "alice@")), [])
        self.alice.send(element("<presence><show>xa</show></presence>"))
        yield next_stanza(self.alice, lambda s: s.name == "presence"
                          and str(s.show) == "xa")
        yield self.block("unblock", "bob@b.example", "u1")
        # Unblocked: Bob gets Alice's current presence (the first since the
        # block: the 'dnd' never crossed), and messages pass again.
        back = yield next_stanza(self.bob, lambda s: s.name == "presence"
                                 and s["from"].startswith("alice@"))
        self.assertEqual((back["from"], back.getAttribute("type"), str(back.show)),
                         ("alice@a.example/res", None, "xa"))
        yield self.assert_bob_gets_through(1)

    @defer.inlineCallbacks
    def test_block_a_remote_domain(self):
        yield self.block("block", "b.example", "b1")
        yield self.assert_bob_is_blocked(1)
        yield self.block("unblock", "", "u1")  # unblock everything
        yield self.assert_bob_gets_through(1)


class RemoteOccupantTests(TwoServers):
    """A user of b.example in a room of a.example (the reverse of FederationTests')."""

    ROOM = "room@conference.a.example"

    @defer.inlineCallbacks
    def join(self, client, nick, real):
        client.send(element(f"<presence to='{self.ROOM}/{nick}'><x xmlns='{NS_MUC}'/>"
                            f"</presence>"))
        me = yield next_stanza(client, lambda s: s.name == "presence"
                               and s.getAttribute("from") == f"{self.ROOM}/{nick}")
        self.assertIsNone(me.getAttribute("type"))
        x = next(me.elements(NS_MUC_USER, "x"))
        self.assertIn("110", {s["code"] for s in x.elements(NS_MUC_USER, "status")})
        self.assertEqual(next(x.elements(NS_MUC_USER, "item"))["jid"], real)
        return me

    @defer.inlineCallbacks
    def test_remote_occupant(self):
        # Bob (remote) creates the room and makes it persistent: archived.
        yield self.join(self.bob, "bob", "bob@b.example/res")
        self.bob.send(element(
            f"<iq to='{self.ROOM}' type='set' id='cfg'><query xmlns='{NS_MUC_OWNER}'>"
            "<x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value>"
            "</field><field var='muc#roomconfig_persistentroom'><value>1</value></field>"
            "<field var='muc#roomconfig_whois'><value>anyone</value></field>"
            "</x></query></iq>"))
        configured = yield next_stanza(self.bob, is_iq("cfg"))
        self.assertEqual((configured["type"], configured["from"]), ("result", self.ROOM))
        # Alice (local) joins: each sees the other.
        alice_sees = next_stanza(self.alice, lambda s: s.name == "presence"
                                 and s.getAttribute("from") == f"{self.ROOM}/bob")
        yield self.join(self.alice, "alice", "alice@a.example/res")
        bob_occupant = yield alice_sees
        item = next(next(bob_occupant.elements(NS_MUC_USER, "x")).elements(NS_MUC_USER, "item"))
        self.assertEqual((item["jid"], item["affiliation"]), ("bob@b.example/res", "owner"))
        joined = yield next_stanza(self.bob, lambda s: s.name == "presence"
                                   and s.getAttribute("from") == f"{self.ROOM}/alice")
        item = next(next(joined.elements(NS_MUC_USER, "x")).elements(NS_MUC_USER, "item"))
        self.assertEqual(item["jid"], "alice@a.example/res")
        # Bob talks: both get it, stamped by the room.
        self.bob.send(element(f"<message to='{self.ROOM}' type='groupchat' id='g1'>"
                              f"<body>hi room</body><stanza-id xmlns='{NS_SID}'"
                              f" by='{self.ROOM}' id='forged'/></message>"))
        for client in (self.bob, self.alice):
            said = yield next_stanza(client, lambda s: s.name == "message"
                                     and s.getAttribute("type") == "groupchat"
                                     and s.getAttribute("from") == f"{self.ROOM}/bob")
            self.assertEqual(str(said.body), "hi room")
            [stamp] = children(said, NS_SID, "stanza-id")
            self.assertEqual(stamp["by"], self.ROOM)
            self.assertNotEqual(stamp["id"], "forged")
        # The room's archive has it (queried across S2S).
        self.bob.send(element(f"<iq to='{self.ROOM}' type='set' id='q1'>"
                              f"<query xmlns='{NS_MAM}' queryid='q1'/></iq>"))
        result = yield next_stanza(self.bob, lambda s: s.name == "message"
                                   and s.getAttribute("from") == self.ROOM)
        forwarded = next(next(result.elements(NS_MAM, "result")).elements(NS_FORWARD,
                                                                            "forwarded"))
        archived = named(forwarded, "message")
        self.assertEqual((archived["from"], str(archived.body)), (f"{self.ROOM}/bob", "hi room"))
        fin = yield next_stanza(self.bob, is_iq("q1"))
        self.assertEqual(fin["type"], "result")
        # Private messages through the room, both ways.
        self.alice.send(element(f"<message to='{self.ROOM}/bob' type='chat' id='pm1'>"
                                f"<body>psst</body><x xmlns='{NS_MUC_USER}'/></message>"))
        pm = yield next_stanza(self.bob, message_from(f"{self.ROOM}/alice"))
        self.assertEqual((pm["to"], pm["type"], str(pm.body)),
                         ("bob@b.example/res", "chat", "psst"))
        self.bob.send(element(f"<message to='{self.ROOM}/alice' type='chat' id='pm2'>"
                              f"<body>psst back</body><x xmlns='{NS_MUC_USER}'/></message>"))
        pm = yield next_stanza(self.alice, message_from(f"{self.ROOM}/bob"))
        self.assertEqual((pm["to"], str(pm.body)), ("alice@a.example/res", "psst back"))
        # Bob leaves: Alice sees it.
        self.bob.send(element(f"<presence to='{self.ROOM}/bob' type='unavailable'/>"))
        left = yield next_stanza(self.alice, lambda s: s.name == "presence"
                                 and s.getAttribute("from") == f"{self.ROOM}/bob")
        self.assertEqual(left.getAttribute("type"), "unavailable")

    @defer.inlineCallbacks
    def test_remote_occupant_joins_an_existing_room(self):
        """Bob is invited, joins (occupants, himself, then the history), and his session
        ends without leaving: his server's unavailable presence reaches the room
        (directed presence, RFC 6121 4.6.3), which tells the others."""
        yield self.join(self.alice, "alice", "alice@a.example/res")
        self.alice.send(element(f"<iq to='{self.ROOM}' type='set' id='instant'>"
                                f"<query xmlns='{NS_MUC_OWNER}'>"
                                f"<x xmlns='jabber:x:data' type='submit'/></query></iq>"))
        unlocked = yield next_stanza(self.alice, is_iq("instant"))
        self.assertEqual(unlocked["type"], "result")
        self.alice.send(element(f"<message to='{self.ROOM}' type='groupchat' id='g1'>"
                                f"<body>before bob</body></message>"))
        yield next_stanza(self.alice, message_from(f"{self.ROOM}/alice"))
        # A mediated invitation (XEP-0045 7.8.2) crosses to Bob.
        self.alice.send(element(f"<message to='{self.ROOM}' id='inv'><x xmlns='{NS_MUC_USER}'>"
                                f"<invite to='bob@b.example'><reason>join us</reason></invite>"
                                f"</x></message>"))
        invitation = yield next_stanza(self.bob, message_from(self.ROOM))
        invite = named(next(invitation.elements(NS_MUC_USER, "x")), "invite")
        self.assertEqual((invitation["to"], invite["from"], str(named(invite, "reason"))),
                         ("bob@b.example", f"{self.ROOM}/alice", "join us"))  # semi-anonymous
        # Bob joins: Alice's presence first, then his own, then the history.
        self.bob.send(element(f"<presence to='{self.ROOM}/bob'><x xmlns='{NS_MUC}'/>"
                              f"</presence>"))
        occupant = yield next_stanza(self.bob, lambda s: s.name == "presence"
                                     and s.getAttribute("from", "").startswith(self.ROOM))
        self.assertEqual((occupant["from"], occupant.getAttribute("type")),
                         (f"{self.ROOM}/alice", None))
        me = yield next_stanza(self.bob, lambda s: s.name == "presence"
                               and s.getAttribute("from", "").startswith(self.ROOM))
        self.assertEqual((me["from"], me.getAttribute("type")), (f"{self.ROOM}/bob", None))
        history = yield next_stanza(self.bob, lambda s: s.name == "message"
                                    and s.getAttribute("type") == "groupchat")
        self.assertEqual((history["from"], str(history.body)),
                         (f"{self.ROOM}/alice", "before bob"))
        self.assertEqual(len(children(history, "urn:xmpp:delay", "delay")), 1)
        yield next_stanza(self.alice, lambda s: s.name == "presence"
                          and s.getAttribute("from") == f"{self.ROOM}/bob")
        yield self.bob.disconnect()
        left = yield next_stanza(self.alice, lambda s: s.name == "presence"
                                 and s.getAttribute("from") == f"{self.ROOM}/bob")
        self.assertEqual(left.getAttribute("type"), "unavailable")
        item = next(next(left.elements(NS_MUC_USER, "x")).elements(NS_MUC_USER, "item"))
        self.assertEqual(item["role"], "none")


class GeneratedCertificateTests(TwoServers):
    """Dialback-only federation with the certificates ``xmppdctl cert generate`` writes."""

    def config_for(self, domain, address, **s2s):
        config = domain_config(self, domain, address, **s2s)
        config = config.replace(tls=config.tls.__class__())  # no [tls]: the generated one
        config.data_dir.mkdir(parents=True, exist_ok=True)
        cert, _ = certificates.generate(config)  # what `xmppdctl cert generate` runs
        self.assertEqual(cert, config.data_dir / f"{domain}.crt")
        return config

    @defer.inlineCallbacks
    def test_chat_with_generated_certificates(self):
        self.alice.send(element("<message to='bob@b.example' type='chat' id='m1'>"
                                "<body>self-signed</body></message>"))
        got = yield next_stanza(self.bob, message_from("alice@a.example/res"))
        self.assertEqual(str(got.body), "self-signed")
        self.bob.send(element("<message to='alice@a.example' type='chat' id='m2'>"
                              "<body>and back</body></message>"))
        got = yield next_stanza(self.alice, message_from("bob@b.example/res"))
        self.assertEqual(str(got.body), "and back")
        self.assertIn(("out", "a.example", ("b.example",), True, "dialback"), summaries(self.a))
        self.assertIn(("out", "b.example", ("a.example",), True, "dialback"), summaries(self.b))

