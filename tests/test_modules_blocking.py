"""xmppd.modules.blocking: the blocking command (XEP-0191), its pushes and its enforcement."""

from twisted.internet import defer
from twisted.trial import unittest

from tests.sm_fakes import SessionManagerTestCase, error_condition
from tests.test_sm_iq import iq
from xmppd.addresses import parse_jid
from xmppd.module import Point
from xmppd.modules.blocking import NS_BLOCKING, NS_BLOCKING_ERRORS, is_blocked
from xmppd.sm.stanzas import deserialise as parse
from xmppd.storage.roster import RosterItem

GET = f"<blocklist xmlns='{NS_BLOCKING}'/>"


def items(*jids):
    return "".join(f"<item jid='{j}'/>" for j in jids)


def block(*jids):
    return f"<block xmlns='{NS_BLOCKING}'>{items(*jids)}</block>"


def unblock(*jids):
    return f"<unblock xmlns='{NS_BLOCKING}'>{items(*jids)}</unblock>"


def listed(element):
    return [i["jid"] for i in element.elements(NS_BLOCKING, "item")]


class MatchingTests(unittest.TestCase):
    """XEP-0191 §3.3 (XEP-0016 matching): full JID, bare JID or domain."""

    def test_matching(self):
        cases = [
            ({"example.org"}, "a@example.org/r", True),
            ({"example.org"}, "example.org", True),
            ({"example.org"}, "a@sub.example.org", False),
            ({"a@example.org"}, "a@example.org/r", True),
            ({"a@example.org"}, "a@example.org", True),
            ({"a@example.org"}, "b@example.org", False),
            ({"a@example.org"}, "example.org", False),
            ({"a@example.org/r"}, "a@example.org/r", True),
            ({"a@example.org/r"}, "a@example.org/s", False),
            ({"a@example.org/r"}, "a@example.org", False),
            ({"example.org/r"}, "example.org/r", True),
            ({"example.org/r"}, "a@example.org/r", False),
            ({"example.org/r"}, "example.org", False),
        ]
        for blocked, address, expected in cases:
            self.assertEqual(is_blocked(blocked, parse_jid(address)), expected, (blocked, address))


class BlockingTestCase(SessionManagerTestCase):
    """Alice (two resources; 'res' asked for the list) and Bob are contacts."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        yield self.roster_store.save("alice", RosterItem("bob@localhost", subscription="both"))
        yield self.roster_store.save("bob", RosterItem("alice@localhost", subscription="both"))
        yield self.roster_store.save(
            "alice", RosterItem("dan@remote.example", subscription="from"))
        yield self.start_sessions()

    @defer.inlineCallbacks
    def start_sessions(self):
        self.alice = yield self.connect("alice")
        self.phone = yield self.connect("alice", "phone")
        self.bob = yield self.connect("bob")
        reply = yield self.asks(iq(None, GET))
        self.assertEqual(reply["type"], "result")
        self.take_all()

    def take_all(self):
        for session in (self.alice, self.phone, self.bob):
            session.take()
        self.remote.take()

    @defer.inlineCallbacks
    def asks(self, xml, session=None):
        session = session or self.alice
        yield self.client_sends(session, xml)
        [reply] = session.take("iq")
        return reply

    @defer.inlineCallbacks
    def change(self, payload, session=None, stanza_id="b1"):
        """Send a block/unblock; returns (the stanzas the sender got, in order)."""
        session = session or self.alice
        yield self.client_sends(session, iq(None, payload, "set", stanza_id))
        return session.take()

    @defer.inlineCallbacks
    def blocklist(self, session=None):
        reply = yield self.asks(iq(None, GET), session)
        self.assertEqual(reply["type"], "result", reply.toXml())
        return sorted(listed(reply.blocklist))

    @defer.inlineCallbacks
    def restart(self, **blocking):
        yield self.sm.stopService()
        self.sm = self.make_manager(blocking=blocking)
        self.sm.startService()
        yield self.start_sessions()


class ProtocolTests(BlockingTestCase):
    """List, block, unblock, unblock all, pushes, errors, limit, storage."""

    @defer.inlineCallbacks
    def test_empty_list(self):
        self.assertEqual((yield self.blocklist()), [])

    @defer.inlineCallbacks
    def test_block_result_then_push_to_interested_resources(self):
        got = yield self.change(block("Eve@Remote.Example", "remote.example/x", "evil.example"))
        self.assertEqual([(s.name, s["type"]) for s in got], [("iq", "result"), ("iq", "set")])
        self.assertEqual(got[0]["id"], "b1")
        push = got[1]
        self.assertEqual(push["to"], "alice@localhost/res")
        self.assertEqual((push.block.uri, listed(push.block)),
                         (NS_BLOCKING, ["eve@remote.example", "remote.example/x", "evil.example"]))
        # The phone never asked for the list: no push.
        self.assertEqual(self.phone.take(), [])
        self.assertEqual((yield self.blocklist()),
                         ["eve@remote.example", "evil.example", "remote.example/x"])
        # Once it asked, it gets the pushes too, also for its own changes.
        self.assertEqual((yield self.blocklist(self.phone)), (yield self.blocklist()))
        got = yield self.change(block("x@evil.example"), self.phone)
        self.assertEqual([s["type"] for s in got], ["result", "set"])
        [push] = self.alice.take()
        self.assertEqual(listed(push.block), ["x@evil.example"])

    @defer.inlineCallbacks
    def test_unblock_some_and_all(self):
        yield self.change(block("a@remote.example", "b@remote.example", "c@remote.example"))
        got = yield self.change(unblock("b@remote.example", "never@blocked.example"))
        self.assertEqual([s["type"] for s in got], ["result", "set"])
        self.assertEqual(listed(got[1].unblock), ["b@remote.example", "never@blocked.example"])
        self.assertEqual((yield self.blocklist()), ["a@remote.example", "c@remote.example"])
        got = yield self.change(unblock())
        self.assertEqual([s["type"] for s in got], ["result", "set"])
        self.assertEqual(listed(got[1].unblock), [])
        self.assertEqual((yield self.blocklist()), [])
        rows = yield self.db.query("SELECT * FROM blocklist")
        self.assertEqual(rows, [])

    @defer.inlineCallbacks
    def test_block_twice_is_one_item(self):
        yield self.change(block("a@remote.example"))
        yield self.change(block("a@remote.example", "A@remote.example"))
        self.assertEqual((yield self.blocklist()), ["a@remote.example"])

    @defer.inlineCallbacks
    def test_errors(self):
        yield self.change(block("a@remote.example"))
        for payload, condition in (
            (block(), "bad-request"),
            (block("ok@remote.example", "a@b@c"), "jid-malformed"),
            (block(""), "jid-malformed"),
            (f"<block xmlns='{NS_BLOCKING}'><item/></block>", "jid-malformed"),
            (unblock("a@remote.example", "@remote.example"), "jid-malformed"),
        ):
            got = yield self.change(payload)
            self.assertEqual(len(got), 1, payload)
            self.assertEqual(error_condition(got[0]), condition, payload)
        # Nothing changed on any error.
        self.assertEqual((yield self.blocklist()), ["a@remote.example"])

    @defer.inlineCallbacks
    def test_only_the_account_itself(self):
        for to in ("alice@localhost", None):
            reply = yield self.asks(iq(to, block("x@remote.example"), "set"), self.bob)
            if to is None:
                # No 'to': Bob's own list.
                self.assertEqual(reply["type"], "result")
            else:
                self.assertEqual(error_condition(reply), "service-unavailable")
        reply = yield self.asks(iq("alice@localhost", GET), self.bob)
        self.assertEqual(error_condition(reply), "service-unavailable")
        self.assertEqual((yield self.blocklist()), [])
        self.assertEqual((yield self.blocklist(self.bob)), ["x@remote.example"])

    @defer.inlineCallbacks
    def test_limit(self):
        yield self.restart(max_items=2)
        got = yield self.change(block("a@remote.example", "b@remote.example", "c@remote.example"))
        self.assertEqual(error_condition(got[0]), "not-acceptable")
        self.assertEqual((yield self.blocklist()), [])
        yield self.change(block("a@remote.example", "b@remote.example"))
        # Blocking again what is listed does not count twice.
        got = yield self.change(block("a@remote.example"))
        self.assertEqual(got[0]["type"], "result")
        got = yield self.change(block("c@remote.example"))
        self.assertEqual(error_condition(got[0]), "not-acceptable")
        yield self.change(unblock("a@remote.example"))
        got = yield self.change(block("c@remote.example"))
        self.assertEqual(got[0]["type"], "result")

    @defer.inlineCallbacks
    def test_kept_across_restart_and_deleted_with_the_account(self):
        yield self.change(block("a@remote.example"))
        yield self.restart()
        self.assertEqual((yield self.blocklist()), ["a@remote.example"])
        yield self.arrives("<message from='a@remote.example/r' to='alice@localhost' type='chat'>"
                           "<body>hi</body></message>")
        [bounce] = self.remote.take()
        self.assertEqual(error_condition(bounce), "service-unavailable")
        yield self.accounts.delete("alice")
        # What in-band account removal (the register module) fires after it.
        self.sm.modules.fire(Point.ACCOUNT_DELETED, "alice")
        rows = yield self.db.query("SELECT * FROM blocklist WHERE username = 'alice'")
        self.assertEqual(rows, [])
        self.assertNotIn("alice", self.sm.modules["blocking"].lists)

    @defer.inlineCallbacks
    def test_account_deleted_elsewhere_and_created_again(self):
        """xmppdctl deluser + adduser while the server runs: the new account starts empty."""
        yield self.change(block("a@remote.example"))
        for session in (self.alice, self.phone):
            yield self.disconnect(session)
        yield self.accounts.delete("alice")  # no hook fired: another process did it
        yield self.db.execute(
            "INSERT INTO accounts (username, created) VALUES ('alice', 0)")
        self.alice = yield self.connect("alice")
        self.assertEqual((yield self.blocklist()), [])
        self.remote.take()
        yield self.arrives("<message from='a@remote.example/r' to='alice@localhost' "
                           "type='chat'/>")
        self.assertEqual(len(self.alice.take("message")), 1)
        self.assertEqual(self.remote.take(), [])

    @defer.inlineCallbacks
    def test_disco_feature_on_the_server(self):
        reply = yield self.asks(iq("localhost", "<query xmlns='http://jabber.org/protocol/"
                                   "disco#info'/>"))
        features = {f["var"] for f in reply.query.elements() if f.name == "feature"}
        self.assertIn(NS_BLOCKING, features)


class EnforcementTests(BlockingTestCase):
    """What blocked addresses may no longer do, and what the user may not send them."""

    @defer.inlineCallbacks
    def test_inbound_messages_and_iqs(self):
        yield self.change(block("remote.example"))
        self.take_all()
        for xml, bounced in (
            ("<message from='dan@remote.example/r' to='alice@localhost' type='chat'/>", True),
            ("<message from='dan@remote.example/r' to='alice@localhost/res'/>", True),
            ("<message from='dan@remote.example/r' to='alice@localhost' type='headline'/>", False),
            ("<message from='dan@remote.example/r' to='alice@localhost' type='error'/>", False),
            ("<message from='remote.example' to='alice@localhost' type='normal'/>", True),
            ("<iq from='dan@remote.example/r' to='alice@localhost' type='get' id='1'>"
             "<query xmlns='jabber:iq:version'/></iq>", True),
            ("<iq from='dan@remote.example/r' to='alice@localhost/res' type='set' id='2'>"
             "<query xmlns='jabber:iq:roster'/></iq>", True),
            ("<iq from='dan@remote.example/r' to='alice@localhost/res' type='result' id='3'/>",
             False),
            ("<presence from='dan@remote.example/r' to='alice@localhost'/>", False),
            ("<presence from='dan@remote.example/r' to='alice@localhost/res'/>", False),
            ("<presence from='dan@remote.example' to='alice@localhost' type='probe'/>", False),
        ):
            yield self.arrives(xml)
            got = self.remote.take()
            if bounced:
                self.assertEqual([error_condition(s) for s in got], ["service-unavailable"], xml)
            else:
                self.assertEqual(got, [], xml)
            self.assertEqual(self.alice.take() + self.phone.take(), [], xml)
        # Others still get through.
        yield self.arrives("<message from='dan@other.example/r' to='alice@localhost' "
                           "type='chat'/>")
        self.assertEqual(len(self.alice.take()) + len(self.phone.take()), 2)

    @defer.inlineCallbacks
    def test_no_pep_notifications_to_a_blocked_contact(self):
        """Alice's PEP notifications (and last items) skip Bob once she blocked him."""
        pep = self.sm.modules["pep"]
        node = "urn:xmpp:test:mood"
        yield pep.publish("alice", node, parse("<mood xmlns='urn:xmpp:test:mood'/>"), "1",
                          {"access_model": "open"})
        yield self.asks(iq("alice@localhost", "<pubsub xmlns='http://jabber.org/protocol/"
                           f"pubsub'><subscribe node='{node}' jid='bob@localhost/res'/>"
                           "</pubsub>", "set"), self.bob)
        self.take_all()
        yield pep.publish("alice", node, parse("<mood xmlns='urn:xmpp:test:mood'/>"), "2")
        self.assertEqual(len(self.bob.take("message")), 1)
        yield self.change(block("bob@localhost"))
        self.take_all()
        yield pep.publish("alice", node, parse("<mood xmlns='urn:xmpp:test:mood'/>"), "3")
        self.assertEqual(self.bob.take("message"), [])

    @defer.inlineCallbacks
    def test_full_jid_item_blocks_that_resource_only(self):
        yield self.change(block("bob@localhost/res"))
        yield self.client_sends(self.bob, "<message to='alice@localhost/res' type='chat'/>")
        [bounce] = self.bob.take()
        self.assertEqual(error_condition(bounce), "service-unavailable")
        other = yield self.connect("bob", "other")
        yield self.client_sends(other, "<message to='alice@localhost/res' type='chat'/>")
        self.assertEqual(len(self.alice.take("message")), 1)

    @defer.inlineCallbacks
    def test_offline_user_is_protected_too(self):
        yield self.change(block("eve@remote.example"))
        for session in (self.alice, self.phone):
            yield self.disconnect(session)
        self.remote.take()
        yield self.arrives("<message from='eve@remote.example/r' to='alice@localhost' "
                           "type='chat'><body>hi</body></message>")
        [bounce] = self.remote.take()
        self.assertEqual(error_condition(bounce), "service-unavailable")
        stored = yield self.offline_store.count("alice")
        self.assertEqual(stored, 0)

    @defer.inlineCallbacks
    def test_outbound_refused_with_blocked(self):
        yield self.change(block("eve@remote.example"))
        yield self.client_sends_out(self.alice, "<message to='eve@remote.example/x' id='m1' "
                                                "type='chat'><body>hi</body></message>")
        [refusal] = self.alice.take()
        self.assertEqual(refusal.name, "message")
        self.assertEqual(refusal["type"], "error")
        self.assertEqual(refusal["from"], "eve@remote.example/x")
        self.assertEqual(refusal["id"], "m1")
        self.assertEqual(error_condition(refusal), "not-acceptable")
        self.assertEqual(refusal.error["type"], "cancel")
        self.assertEqual(len(list(refusal.error.elements(NS_BLOCKING_ERRORS, "blocked"))), 1)
        yield self.client_sends_out(self.alice, "<iq to='eve@remote.example' type='get' id='i'>"
                                                "<ping xmlns='urn:xmpp:ping'/></iq>")
        self.assertEqual(error_condition(self.alice.take()[0]), "not-acceptable")
        yield self.client_sends_out(self.alice, "<presence to='eve@remote.example'/>")
        self.assertEqual(error_condition(self.alice.take()[0]), "not-acceptable")
        # Errors and iq results are dropped without a word.
        yield self.client_sends_out(self.alice, "<message to='eve@remote.example' type='error'/>")
        yield self.client_sends_out(self.alice, "<iq to='eve@remote.example' type='result' "
                                                "id='r'/>")
        self.assertEqual(self.alice.take(), [])
        self.assertEqual([s.toXml() for s in self.remote.take()], [])
        # Others are not affected.
        yield self.client_sends_out(self.alice, "<message to='dan@remote.example'/>")
        self.assertEqual(len(self.remote.take()), 1)

    @defer.inlineCallbacks
    def test_own_account_and_server_never_blocked(self):
        yield self.change(block("localhost", "alice@localhost"))
        reply = yield self.asks(iq("localhost", "<ping xmlns='urn:xmpp:ping'/>"))
        self.assertEqual(reply["type"], "result")
        yield self.client_sends_out(self.alice, "<message to='alice@localhost/phone'/>")
        self.assertEqual(len(self.phone.take("message")), 1)
        # Bob, at the blocked domain, is blocked.
        yield self.client_sends(self.bob, "<message to='alice@localhost' type='chat'/>")
        [bounce] = self.bob.take("message")
        self.assertEqual(error_condition(bounce), "service-unavailable")

    @defer.inlineCallbacks
    def test_presence_on_block_and_unblock(self):
        yield self.change(block("bob@localhost", "dan@remote.example"))
        # Bob and Dan had Alice's presence: unavailable from each resource.
        got = self.bob.take("presence")
        self.assertEqual(sorted((p["from"], p.getAttribute("type")) for p in got),
                         [("alice@localhost/phone", "unavailable"),
                          ("alice@localhost/res", "unavailable")])
        got = self.remote.take()
        self.assertEqual(sorted((p["from"], p["to"], p.getAttribute("type")) for p in got),
                         [("alice@localhost/phone", "dan@remote.example", "unavailable"),
                          ("alice@localhost/res", "dan@remote.example", "unavailable")])
        # Blocking them again sends nothing more.
        yield self.change(block("bob@localhost"))
        self.assertEqual([s.toXml() for s in self.bob.take()], [])
        # Alice's presence broadcast no longer reaches them, nor do her probes.
        yield self.client_sends(self.alice, "<presence><show>away</show></presence>")
        self.assertEqual([s.toXml() for s in self.bob.take()], [])
        self.assertEqual([s.toXml() for s in self.remote.take()], [])
        self.alice.take()
        self.phone.take()
        yield self.client_sends(self.bob, "<presence><show>dnd</show></presence>")
        self.assertEqual(self.alice.take() + self.phone.take(), [])
        self.bob.take()  # its own presence
        late = yield self.connect("alice", "late", presence=False)
        yield self.client_sends(late, "<presence/>")
        self.assertEqual([p["from"] for p in late.take("presence")
                          if p["from"].startswith("bob@")], [])
        self.assertEqual([s.toXml() for s in self.bob.take()], [])
        self.assertEqual([s.toXml() for s in self.remote.take()], [])
        self.alice.take()
        self.phone.take()
        # Unblocking everything: current presence again, from each resource.
        got = yield self.change(unblock())
        self.assertEqual([s["type"] for s in got], ["result", "set"])
        got = self.bob.take("presence")
        self.assertEqual(sorted((p["from"], p.getAttribute("type")) for p in got),
                         [("alice@localhost/late", None), ("alice@localhost/phone", None),
                          ("alice@localhost/res", None)])
        self.assertEqual(len(self.remote.take()), 3)

    @defer.inlineCallbacks
    def test_unblock_one_sends_presence_to_it_only(self):
        yield self.change(block("bob@localhost", "dan@remote.example"))
        self.bob.take()
        self.remote.take()
        yield self.change(unblock("dan@remote.example"))
        self.assertEqual([s.toXml() for s in self.bob.take()], [])
        self.assertEqual(sorted(p["from"] for p in self.remote.take()),
                         ["alice@localhost/phone", "alice@localhost/res"])

    @defer.inlineCallbacks
    def test_pending_subscription_dropped(self):
        yield self.arrives("<presence from='eve@remote.example' to='alice@localhost' "
                           "type='subscribe'/>")
        yield self.arrives("<presence from='fay@remote.example' to='alice@localhost' "
                           "type='subscribe'/>")
        self.take_all()
        yield self.change(block("eve@remote.example"))
        pending = yield self.roster_store.pending("alice")
        self.assertEqual([contact for contact, _ in pending], ["fay@remote.example"])
        # A new request is dropped, not kept.
        yield self.arrives("<presence from='eve@remote.example' to='alice@localhost' "
                           "type='subscribe'/>")
        pending = yield self.roster_store.pending("alice")
        self.assertEqual([contact for contact, _ in pending], ["fay@remote.example"])
        self.assertEqual(self.alice.take(), [])
        self.assertEqual([s.toXml() for s in self.remote.take()], [])

    @defer.inlineCallbacks
    def test_subscription_stanzas_the_server_sends_pass(self):
        """Removing a blocked contact from the roster still cancels the subscriptions."""
        yield self.change(block("dan@remote.example"))
        self.remote.take()
        yield self.client_sends(self.alice, iq(None, "<query xmlns='jabber:iq:roster'>"
                                "<item jid='dan@remote.example' subscription='remove'/></query>",
                                "set"))
        self.assertEqual([p.getAttribute("type") for p in self.remote.take()], ["unsubscribed"])
