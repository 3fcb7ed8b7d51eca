"""Server iq handlers and iq routing."""

from twisted.internet import defer

import xmppd
from tests.sm_fakes import SessionManagerTestCase, error_condition
from xmppd.storage.roster import RosterItem


def iq(to, payload, kind="get", stanza_id="q1"):
    to_attr = f" to='{to}'" if to else ""
    return f"<iq type='{kind}' id='{stanza_id}'{to_attr}>{payload}</iq>"


DISCO_INFO = "<query xmlns='http://jabber.org/protocol/disco#info'/>"
DISCO_ITEMS = "<query xmlns='http://jabber.org/protocol/disco#items'/>"
PING = "<ping xmlns='urn:xmpp:ping'/>"


class IQTestCase(SessionManagerTestCase):
    """Alice is connected; asks() returns the single iq she gets back."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.alice = yield self.connect("alice")

    @defer.inlineCallbacks
    def asks(self, xml, session=None):
        session = session or self.alice
        yield self.client_sends(session, xml)
        [reply] = session.take("iq")
        return reply


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

    @defer.inlineCallbacks
    def test_version(self):
        reply = yield self.asks(iq("localhost", "<query xmlns='jabber:iq:version'/>"))
        fields = {c.name: str(c) for c in reply.query.elements()}
        self.assertEqual(fields, {"name": "xmppd", "version": xmppd.__version__})

    @defer.inlineCallbacks
    def test_ping(self):
        reply = yield self.asks(iq("localhost", PING))
        self.assertEqual(reply["type"], "result")
        self.assertEqual(list(reply.elements()), [])
        reply = yield self.asks(iq(None, PING))
        self.assertEqual(reply["type"], "result")

    @defer.inlineCallbacks
    def test_time(self):
        reply = yield self.asks(iq("localhost", "<time xmlns='urn:xmpp:time'/>"))
        self.assertEqual(str(reply.time.tzo), "+00:00")
        self.assertRegex(str(reply.time.utc), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

    @defer.inlineCallbacks
    def test_unhandled(self):
        """Unknown payloads: service-unavailable, to the server and to bare JIDs."""
        for to in ("localhost", "bob@localhost", None):
            reply = yield self.asks(iq(to, "<query xmlns='urn:unknown'/>"))
            self.assertEqual(error_condition(reply), "service-unavailable", to)

    @defer.inlineCallbacks
    def test_malformed_iqs(self):
        """No child, two children, a bad type: bad-request."""
        for xml in (
            "<iq type='get' id='x' to='localhost'/>",
            f"<iq type='get' id='x' to='localhost'>{PING}{PING}</iq>",
            f"<iq type='fetch' id='x' to='localhost'>{PING}</iq>",
        ):
            reply = yield self.asks(xml)
            self.assertEqual(error_condition(reply), "bad-request", xml)

    @defer.inlineCallbacks
    def test_results_to_server_dropped(self):
        for kind in ("result", "error"):
            yield self.client_sends(self.alice, iq("localhost", "", kind=kind))
            yield self.client_sends(self.alice, iq("bob@localhost", "", kind=kind))
        self.assertEqual(self.alice.take(), [])

    @defer.inlineCallbacks
    def test_internal_error(self):
        """An unexpected exception is logged and answered internal-server-error."""

        def broken(*args):
            raise RuntimeError("boom")

        self.patch(self.sm.modules, "iq_handler", lambda *args: broken)
        reply = yield self.asks(iq("localhost", "<query xmlns='jabber:iq:version'/>"))
        self.assertEqual(error_condition(reply), "internal-server-error")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @defer.inlineCallbacks
    def test_internal_error_async(self):
        """A failing database operation is answered internal-server-error too."""
        self.sm._rosters.clear()
        self.sm.roster_store.items = lambda user: defer.fail(RuntimeError("db down"))
        reply = yield self.asks(iq(None, "<query xmlns='jabber:iq:roster'/>"))
        self.assertEqual(error_condition(reply), "internal-server-error")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


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


class FullJIDTests(IQTestCase):
    """Iqs to full JIDs are delivered."""

    @defer.inlineCallbacks
    def test_delivered_and_answered(self):
        bob = yield self.connect("bob")
        yield self.client_sends(self.alice, iq("bob@localhost/res", "<query xmlns='urn:x'/>"))
        [request] = bob.take("iq")
        self.assertEqual(request["from"], "alice@localhost/res")
        yield self.client_sends(bob, "<iq type='result' id='q1' to='alice@localhost/res'/>")
        [result] = self.alice.take("iq")
        self.assertEqual((result["type"], result["from"]), ("result", "bob@localhost/res"))

    @defer.inlineCallbacks
    def test_no_session(self):
        reply = yield self.asks(iq("bob@localhost/gone", PING))
        self.assertEqual(error_condition(reply), "service-unavailable")
        self.assertEqual(reply["from"], "bob@localhost/gone")
        yield self.client_sends(self.alice, iq("bob@localhost/gone", "", kind="result"))
        self.assertEqual(self.alice.take(), [])


class RegisterTests(IQTestCase):
    """In-band password change and account removal (XEP-0077)."""

    @defer.inlineCallbacks
    def test_get(self):
        reply = yield self.asks(iq("localhost", "<query xmlns='jabber:iq:register'/>"))
        self.assertIsNotNone(reply.query.registered)
        self.assertEqual(str(reply.query.username), "alice")

    @defer.inlineCallbacks
    def test_change_password(self):
        reply = yield self.asks(
            iq(
                None,
                "<query xmlns='jabber:iq:register'><username>alice</username>"
                "<password>n3w secret</password></query>",
                kind="set",
            )
        )
        self.assertEqual(reply["type"], "result")
        ok = yield self.accounts.check_password("alice", "n3w secret")
        self.assertTrue(ok)

    @defer.inlineCallbacks
    def test_change_password_errors(self):
        cases = [
            ("<username>bob</username><password>x</password>", "not-allowed"),
            ("<username>alice</username>", "bad-request"),
            ("<username>alice</username><password/>", "bad-request"),
        ]
        for payload, condition in cases:
            reply = yield self.asks(
                iq("localhost", f"<query xmlns='jabber:iq:register'>{payload}</query>", kind="set")
            )
            self.assertEqual(error_condition(reply), condition, payload)

    @defer.inlineCallbacks
    def test_password_change_when_registration_is_off(self):
        """registration.enabled governs new accounts only, as in Prosody."""
        self.set_registration(False)
        reply = yield self.asks(iq("localhost", "<query xmlns='jabber:iq:register'/>"))
        self.assertEqual(reply["type"], "result")
        reply = yield self.asks(
            iq(
                None,
                "<query xmlns='jabber:iq:register'><username>alice</username>"
                "<password>changed</password></query>",
                kind="set",
            )
        )
        self.assertEqual(reply["type"], "result")
        self.assertTrue((yield self.accounts.check_password("alice", "changed")))

    @defer.inlineCallbacks
    def test_remove(self):
        """The account goes; its sessions are closed; contacts are unsubscribed."""
        yield self.roster_store.save("alice", RosterItem("bob@localhost", subscription="both"))
        yield self.roster_store.save("bob", RosterItem("alice@localhost", subscription="both"))
        self.sm._rosters.clear()
        other = yield self.connect("alice", "other")
        bob = yield self.connect("bob")
        self.alice.take()
        reply = yield self.asks(
            iq(None, "<query xmlns='jabber:iq:register'><remove/></query>", kind="set")
        )
        self.assertEqual(reply["type"], "result")
        self.assertEqual(self.alice.closed, [("not-authorized", None)])
        self.assertEqual(other.closed, [("not-authorized", None)])
        exists = yield self.accounts.exists("alice")
        self.assertFalse(exists)
        self.assertFalse(self.sm.is_online("alice"))
        bob_presence = [(p["from"], p.getAttribute("type")) for p in bob.take("presence")]
        self.assertIn(("alice@localhost/res", "unavailable"), bob_presence)
        self.assertIn(("alice@localhost", "unsubscribed"), bob_presence)
        items = yield self.roster_items("bob")
        self.assertEqual(items, {"alice@localhost": ("none", False, False)})
        self.sm.unbind(self.alice.session)  # c2s will call this when the stream closes: no-op
        yield self.sm.wait_idle()
