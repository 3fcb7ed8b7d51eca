"""The subscription state machine between local users (RFC 6121 section 3)."""

from twisted.internet import defer

from tests.sm_fakes import SessionManagerTestCase
from xmppd.storage.roster import RosterItem

NICK = "<nick xmlns='http://jabber.org/protocol/nick'>Bobby</nick>"


def pushes(session):
    """The roster push items a session got: [(jid, subscription, ask, approved)]."""
    result = []
    for iq in session.take("iq"):
        if iq.getAttribute("type") != "set":
            continue
        for item in iq.query.elements():
            result.append(
                (
                    item["jid"],
                    item["subscription"],
                    item.getAttribute("ask"),
                    item.getAttribute("approved"),
                )
            )
    return result


def presences(session, kind=None):
    """The presence stanzas of a type a session got: [(from, to)]."""
    return [
        (p.getAttribute("from"), p.getAttribute("to"))
        for p in session.take("presence")
        if p.getAttribute("type") == kind
    ]


class SubscriptionDanceTests(SessionManagerTestCase):
    """Alice and bob subscribe to each other, then unsubscribe."""

    @defer.inlineCallbacks
    def test_full_dance(self):
        alice = yield self.connect("alice")
        bob = yield self.connect("bob")

        # alice asks
        yield self.client_sends(
            alice, f"<presence to='bob@localhost' type='subscribe'>{NICK}</presence>"
        )
        self.assertEqual(pushes(alice), [("bob@localhost", "none", "subscribe", None)])
        [request] = bob.take("presence")
        self.assertEqual(request["type"], "subscribe")
        self.assertEqual(request["from"], "alice@localhost")
        self.assertEqual(request["to"], "bob@localhost")
        self.assertEqual(str(request.nick), "Bobby")
        self.assertEqual(pushes(bob), [])
        items = yield self.roster_items("alice")
        self.assertEqual(items, {"bob@localhost": ("none", True, False)})
        pending = yield self.roster_store.pending("bob")
        self.assertEqual([c for c, _ in pending], ["alice@localhost"])

        # bob approves: alice gets 'to' and bob's presence
        yield self.client_sends(bob, "<presence to='alice@localhost' type='subscribed'/>")
        self.assertEqual(pushes(bob), [("alice@localhost", "from", None, None)])
        self.assertEqual(pushes(alice), [("bob@localhost", "to", None, None)])
        alice_presence = alice.take("presence")
        self.assertEqual(
            [(p["from"], p.getAttribute("type")) for p in alice_presence],
            [("bob@localhost", "subscribed"), ("bob@localhost/res", None)],
        )
        pending = yield self.roster_store.pending("bob")
        self.assertEqual(pending, [])
        items = yield self.roster_items("alice")
        self.assertEqual(items, {"bob@localhost": ("to", False, False)})
        items = yield self.roster_items("bob")
        self.assertEqual(items, {"alice@localhost": ("from", False, False)})

        # bob asks back, alice approves: both
        yield self.client_sends(bob, "<presence to='alice@localhost' type='subscribe'/>")
        self.assertEqual(pushes(bob), [("alice@localhost", "from", "subscribe", None)])
        self.assertEqual(presences(alice, "subscribe"), [("bob@localhost", "alice@localhost")])
        yield self.client_sends(alice, "<presence to='bob@localhost' type='subscribed'/>")
        self.assertEqual(pushes(alice), [("bob@localhost", "both", None, None)])
        self.assertEqual(pushes(bob), [("alice@localhost", "both", None, None)])
        self.assertEqual(presences(bob), [("alice@localhost/res", "bob@localhost")])

        # presence now flows both ways
        yield self.client_sends(alice, "<presence><show>dnd</show></presence>")
        self.assertEqual(presences(bob), [("alice@localhost/res", "bob@localhost")])

        # alice unsubscribes from bob's presence: alice 'from', bob 'to'
        yield self.client_sends(alice, "<presence to='bob@localhost' type='unsubscribe'/>")
        self.assertEqual(pushes(alice), [("bob@localhost", "from", None, None)])
        self.assertEqual(pushes(bob), [("alice@localhost", "to", None, None)])
        self.assertEqual(presences(bob, "unsubscribe"), [("alice@localhost", "bob@localhost")])
        self.assertEqual(
            presences(alice, "unavailable"), [("bob@localhost/res", "alice@localhost")]
        )

        # bob cancels alice's... no: alice cancels bob's subscription to her
        yield self.client_sends(alice, "<presence to='bob@localhost' type='unsubscribed'/>")
        self.assertEqual(pushes(alice), [("bob@localhost", "none", None, None)])
        self.assertEqual(pushes(bob), [("alice@localhost", "none", None, None)])
        bob_presence = bob.take("presence")
        self.assertEqual(
            [(p["from"], p["type"]) for p in bob_presence],
            [("alice@localhost", "unsubscribed"), ("alice@localhost/res", "unavailable")],
        )
        items = yield self.roster_items("alice")
        self.assertEqual(items, {"bob@localhost": ("none", False, False)})
        items = yield self.roster_items("bob")
        self.assertEqual(items, {"alice@localhost": ("none", False, False)})

    @defer.inlineCallbacks
    def test_deny(self):
        """unsubscribed in answer to a request clears the requester's ask."""
        alice = yield self.connect("alice")
        bob = yield self.connect("bob")
        yield self.client_sends(alice, "<presence to='bob@localhost' type='subscribe'/>")
        alice.take()
        bob.take()
        yield self.client_sends(bob, "<presence to='alice@localhost' type='unsubscribed'/>")
        self.assertEqual(pushes(alice), [("bob@localhost", "none", None, None)])
        self.assertEqual(presences(alice, "unsubscribed"), [("bob@localhost", "alice@localhost")])
        pending = yield self.roster_store.pending("bob")
        self.assertEqual(pending, [])
        items = yield self.roster_items("bob")
        self.assertEqual(items, {})

    @defer.inlineCallbacks
    def test_already_subscribed_auto_reply(self):
        """A request from a contact already subscribed is answered, not delivered.

        The auto-reply 'subscribed' reaches alice's side, which ignores it: she has
        no request pending (3.1.6).
        """
        yield self.roster_store.save("bob", RosterItem("alice@localhost", subscription="from"))
        yield self.roster_store.save("alice", RosterItem("bob@localhost", subscription="to"))
        alice = yield self.connect("alice")
        bob = yield self.connect("bob")
        alice.take()
        yield self.client_sends(alice, "<presence to='bob@localhost' type='subscribe'/>")
        self.assertEqual(presences(bob, "subscribe"), [])
        self.assertEqual(alice.take(), [])
        items = yield self.roster_items("alice")
        self.assertEqual(items, {"bob@localhost": ("to", False, False)})

    @defer.inlineCallbacks
    def test_subscribed_without_request_ignored(self):
        """An inbound subscribed with no pending request changes nothing."""
        alice = yield self.connect("alice")
        yield self.arrives(
            "<presence from='eve@remote.example' to='alice@localhost' type='subscribed'/>"
        )
        self.assertEqual(alice.take(), [])
        items = yield self.roster_items("alice")
        self.assertEqual(items, {})

    @defer.inlineCallbacks
    def test_subscribe_to_unknown_user(self):
        """A request for an account that does not exist is answered unsubscribed."""
        alice = yield self.connect("alice")
        yield self.client_sends(alice, "<presence to='ghost@localhost' type='subscribe'/>")
        self.assertEqual(
            pushes(alice),
            [
                ("ghost@localhost", "none", "subscribe", None),
                ("ghost@localhost", "none", None, None),
            ],
        )
        self.assertEqual(presences(alice, "unsubscribed"), [("ghost@localhost", "alice@localhost")])


class PreApprovalTests(SessionManagerTestCase):
    """Subscription pre-approval (RFC 6121 3.4)."""

    @defer.inlineCallbacks
    def test_pre_approval(self):
        alice = yield self.connect("alice")
        carol = yield self.connect("carol")
        yield self.client_sends(alice, "<presence to='carol@localhost' type='subscribed'/>")
        self.assertEqual(pushes(alice), [("carol@localhost", "none", None, "true")])
        self.assertEqual(carol.take(), [])  # not routed
        items = yield self.roster_items("alice")
        self.assertEqual(items, {"carol@localhost": ("none", False, True)})

        yield self.client_sends(carol, "<presence to='alice@localhost' type='subscribe'/>")
        self.assertEqual(pushes(alice), [("carol@localhost", "from", None, None)])
        self.assertEqual(presences(alice, "subscribe"), [])  # auto-answered, not delivered
        self.assertEqual(pushes(carol)[-1], ("alice@localhost", "to", None, None))
        carol_presence = carol.take("presence")
        self.assertEqual(
            [(p["from"], p.getAttribute("type")) for p in carol_presence],
            [("alice@localhost", "subscribed"), ("alice@localhost/res", None)],
        )

    @defer.inlineCallbacks
    def test_cancel_pre_approval(self):
        """unsubscribed after a pre-approval withdraws it."""
        alice = yield self.connect("alice")
        yield self.client_sends(alice, "<presence to='carol@localhost' type='subscribed'/>")
        yield self.client_sends(alice, "<presence to='carol@localhost' type='unsubscribed'/>")
        self.assertEqual(pushes(alice)[-1], ("carol@localhost", "none", None, None))
        items = yield self.roster_items("alice")
        self.assertEqual(items, {"carol@localhost": ("none", False, False)})


class PendingRequestTests(SessionManagerTestCase):
    """Inbound requests kept for users who are offline or do not answer."""

    @defer.inlineCallbacks
    def test_redelivered_at_each_login_until_answered(self):
        bob = yield self.connect("bob")
        yield self.client_sends(
            bob,
            f"<presence to='alice@localhost' type='subscribe' id='s1'>{NICK}"
            "<x xmlns='urn:ext' a='1'/></presence>",
        )
        for _ in range(2):
            alice = yield self.connect("alice", presence=False)
            yield self.client_sends(alice, "<presence/>")
            [request] = [p for p in alice.take("presence") if p.getAttribute("type") == "subscribe"]
            self.assertEqual(request["from"], "bob@localhost")
            self.assertEqual(request["id"], "s1")
            self.assertEqual(str(request.nick), "Bobby")
            self.assertEqual(request.nick.uri, "http://jabber.org/protocol/nick")
            self.assertIsNone(request.x)  # only the nick is kept with the request
            yield self.disconnect(alice)
        alice = yield self.connect("alice")
        yield self.client_sends(alice, "<presence to='bob@localhost' type='subscribed'/>")
        yield self.disconnect(alice)
        alice = yield self.connect("alice", presence=False)
        yield self.client_sends(alice, "<presence/>")
        self.assertEqual(
            [p for p in alice.take("presence") if p.getAttribute("type") == "subscribe"], []
        )

    @defer.inlineCallbacks
    def test_nick_online_and_offline_only_it_stored(self):
        """XEP-0172 4.3: the nick reaches the contact at once and at their next login."""
        bob = yield self.connect("bob")
        alice = yield self.connect("alice")
        yield self.client_sends(
            bob, f"<presence to='alice@localhost' type='subscribe'><status>hi</status>{NICK}"
            "<x xmlns='urn:ext'>big</x></presence>")
        [online] = alice.take("presence")
        self.assertEqual((online["type"], online["from"]), ("subscribe", "bob@localhost"))
        self.assertEqual(str(online.nick), "Bobby")
        self.assertEqual(str(online.status), "hi")  # the live copy is as it came
        [(_, xml)] = yield self.roster_store.pending("alice")
        self.assertIn("Bobby", xml)
        self.assertNotIn("urn:ext", xml)
        self.assertNotIn("status", xml)
        yield self.disconnect(alice)
        alice = yield self.connect("alice", presence=False)
        yield self.client_sends(alice, "<presence/>")
        [later] = [p for p in alice.take("presence") if p.getAttribute("type") == "subscribe"]
        self.assertEqual(str(later.nick), "Bobby")
        self.assertEqual(later.nick.uri, "http://jabber.org/protocol/nick")
        self.assertEqual([c.name for c in later.elements()], ["nick"])

    @defer.inlineCallbacks
    def test_nick_bounded_and_text_only(self):
        """A nick over [limits] max_subscription_nick bytes is dropped; the request is not."""
        yield self.sm.stopService()
        self.sm = self.make_manager(limits={"max_subscription_nick": 16})
        self.sm.startService()
        alice = yield self.connect("alice")
        bob = yield self.connect("bob")
        long_nick = "\u00e9" * 9  # 18 bytes of UTF-8
        yield self.client_sends(
            bob, "<presence to='alice@localhost' type='subscribe'>"
            f"<nick xmlns='http://jabber.org/protocol/nick'>{long_nick}</nick></presence>")
        [online] = alice.take("presence")
        self.assertEqual(online["type"], "subscribe")
        self.assertIsNone(online.nick)
        [(_, xml)] = yield self.roster_store.pending("alice")
        self.assertNotIn("nick", xml)
        yield self.client_sends(
            bob, "<presence to='alice@localhost' type='subscribe'>"
            "<nick xmlns='http://jabber.org/protocol/nick'>B<b>o</b>b</nick></presence>")
        [online] = alice.take("presence")
        self.assertEqual(online.nick.toXml(),
                         "<nick xmlns='http://jabber.org/protocol/nick'>Bb</nick>")
        yield self.disconnect(alice)
        alice = yield self.connect("alice", presence=False)
        yield self.client_sends(alice, "<presence/>")
        [later] = [p for p in alice.take("presence") if p.getAttribute("type") == "subscribe"]
        self.assertEqual(str(later.nick), "Bb")
        self.assertEqual(list(later.nick.elements()), [])

    @defer.inlineCallbacks
    def test_remote_request(self):
        """A request from a remote contact is delivered and kept."""
        alice = yield self.connect("alice")
        yield self.arrives(
            "<presence from='dan@remote.example/x' to='alice@localhost' type='subscribe'/>"
        )
        self.assertEqual(presences(alice, "subscribe"), [("dan@remote.example", "alice@localhost")])
        pending = yield self.roster_store.pending("alice")
        self.assertEqual([c for c, _ in pending], ["dan@remote.example"])
        yield self.client_sends_out(alice, "<presence to='dan@remote.example' type='subscribed'/>")
        out = self.remote.take()
        self.assertEqual(
            [(s.getAttribute("type"), s["from"]) for s in out],
            [("subscribed", "alice@localhost"), (None, "alice@localhost/res")],
        )
        items = yield self.roster_items("alice")
        self.assertEqual(items, {"dan@remote.example": ("from", False, False)})

    @defer.inlineCallbacks
    def test_outbound_to_remote(self):
        """subscribe to a remote contact through outbound(): roster updated, stanza stamped."""
        alice = yield self.connect("alice")
        yield self.client_sends_out(alice, "<presence to='dan@remote.example/r' type='subscribe'/>")
        [out] = self.remote.take()
        self.assertEqual((out["from"], out["to"]), ("alice@localhost", "dan@remote.example"))
        self.assertEqual(pushes(alice), [("dan@remote.example", "none", "subscribe", None)])
