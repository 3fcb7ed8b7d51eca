"""xmppd.modules.disco: service discovery for the server and on behalf of accounts."""

from twisted.internet import defer

from tests.sm_fakes import error_condition
from tests.test_sm_iq import DISCO_INFO, DISCO_ITEMS, PING, IQTestCase, iq
from xmppd.storage.roster import RosterItem


class ServerTests(IQTestCase):
    """The server's own handlers."""

    @defer.inlineCallbacks
    def test_disco_info(self):
        reply = yield self.asks(iq("localhost", DISCO_INFO))
        self.assertEqual((reply["type"], reply["from"], reply["id"]), ("result", "localhost", "q1"))
        identities = [
            (i["category"], i["type"]) for i in reply.query.elements() if i.name == "identity"
        ]
        self.assertEqual(identities, [("server", "im")])
        features = {f["var"] for f in reply.query.elements() if f.name == "feature"}
        for var in (
            "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/disco#items",
            "jabber:iq:roster",
            "jabber:iq:version",
            "urn:xmpp:ping",
            "urn:xmpp:time",
            "msgoffline",
            "jabber:iq:register",
        ):
            self.assertIn(var, features)
        self.set_registration(False)
        reply = yield self.asks(iq("localhost", DISCO_INFO))
        features = {f["var"] for f in reply.query.elements() if f.name == "feature"}
        self.assertNotIn("jabber:iq:register", features)

    @defer.inlineCallbacks
    def test_disco_info_unknown_node(self):
        reply = yield self.asks(
            iq("localhost", "<query xmlns='http://jabber.org/protocol/disco#info' node='x'/>")
        )
        self.assertEqual(error_condition(reply), "item-not-found")

    @defer.inlineCallbacks
    def test_disco_items(self):
        reply = yield self.asks(iq("localhost", DISCO_ITEMS))
        self.assertEqual([i["jid"] for i in reply.query.elements()], ["conference.localhost"])
        self.router.register("pubsub.localhost", self.remote)  # routed subdomains are listed
        self.router.register("elsewhere.example", self.remote)
        reply = yield self.asks(iq("localhost", DISCO_ITEMS))
        self.assertEqual(
            [i["jid"] for i in reply.query.elements()], ["conference.localhost", "pubsub.localhost"]
        )

    @defer.inlineCallbacks
    def test_disco_set_is_bad_request(self):
        reply = yield self.asks(iq("localhost", DISCO_INFO, kind="set"))
        self.assertEqual(error_condition(reply), "bad-request")


class BareJIDTests(IQTestCase):
    """Iqs answered on behalf of a user's bare JID."""

    @defer.inlineCallbacks
    def test_disco_info_self_and_contact(self):
        yield self.roster_store.save("bob", RosterItem("alice@localhost", subscription="from"))
        for to in ("alice@localhost", "bob@localhost"):
            reply = yield self.asks(iq(to, DISCO_INFO))
            identity = reply.query.identity
            self.assertEqual((identity["category"], identity["type"]), ("account", "registered"))
            self.assertEqual(reply["from"], to)
        reply = yield self.asks(iq("bob@localhost", DISCO_ITEMS))
        self.assertEqual(list(reply.query.elements()), [])
        reply = yield self.asks(iq("bob@localhost", PING))
        self.assertEqual(reply["type"], "result")

    @defer.inlineCallbacks
    def test_disco_info_stranger(self):
        """Non-contacts and non-existent users look the same: service-unavailable."""
        for to in ("carol@localhost", "ghost@localhost"):
            reply = yield self.asks(iq(to, DISCO_INFO))
            self.assertEqual(error_condition(reply), "service-unavailable")
            reply = yield self.asks(iq(to, PING))
            self.assertEqual(error_condition(reply), "service-unavailable")
