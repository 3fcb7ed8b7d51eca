"""Roster get, set and remove (RFC 6121 section 2)."""

from twisted.internet import defer

from tests.sm_fakes import SessionManagerTestCase, error_condition
from xmppd.modules.roster import NS_ROSTER_VERSIONING
from xmppd.storage.roster import RosterItem

ROSTER_GET = "<iq type='get' id='g1'><query xmlns='jabber:iq:roster'/></iq>"


def roster_set(item):
    return f"<iq type='set' id='s1'><query xmlns='jabber:iq:roster'>{item}</query></iq>"


def versioned_get(ver):
    return f"<iq type='get' id='g1'><query xmlns='jabber:iq:roster' ver='{ver}'/></iq>"


class RosterGetTests(SessionManagerTestCase):
    """Roster retrieval."""

    @defer.inlineCallbacks
    def test_get(self):
        """The whole roster with names, groups, ask and approved."""
        yield self.roster_store.save(
            "alice", RosterItem("bob@localhost", "Bob", "both", groups=["Friends", "Work"])
        )
        yield self.roster_store.save(
            "alice", RosterItem("carol@localhost", ask=True, approved=True)
        )
        alice = yield self.connect("alice", roster=False, presence=False)
        yield self.client_sends(
            alice, "<iq type='get' id='g1'><query xmlns='jabber:iq:roster'/></iq>"
        )
        [result] = alice.take("iq")
        self.assertEqual((result["type"], result["id"]), ("result", "g1"))
        self.assertEqual(result["to"], "alice@localhost/res")
        items = {i["jid"]: i for i in result.query.elements()}
        bob = items["bob@localhost"]
        self.assertEqual((bob["name"], bob["subscription"]), ("Bob", "both"))
        self.assertEqual([str(g) for g in bob.elements()], ["Friends", "Work"])
        carol = items["carol@localhost"]
        self.assertEqual(
            (carol["subscription"], carol["ask"], carol["approved"]), ("none", "subscribe", "true")
        )
        version = yield self.roster_store.version("alice")
        self.assertEqual(result.query["ver"], str(version))

    @defer.inlineCallbacks
    def test_get_to_own_bare_jid(self):
        """'to' may be the user's own bare JID."""
        alice = yield self.connect("alice", roster=False, presence=False)
        yield self.client_sends(
            alice,
            "<iq type='get' id='g1' to='alice@localhost'><query xmlns='jabber:iq:roster'/></iq>",
        )
        [result] = alice.take("iq")
        self.assertEqual(result["type"], "result")

    @defer.inlineCallbacks
    def test_someone_elses_roster(self):
        """Another user's roster: forbidden; the server's: service-unavailable."""
        alice = yield self.connect("alice", roster=False, presence=False)
        for to, condition in (("bob@localhost", "forbidden"), ("localhost", "service-unavailable")):
            yield self.client_sends(
                alice, f"<iq type='get' id='g1' to='{to}'><query xmlns='jabber:iq:roster'/></iq>"
            )
            [reply] = alice.take("iq")
            self.assertEqual(error_condition(reply), condition)
        yield self.arrives(
            "<iq type='get' id='g2' from='x@remote.example/r' to='alice@localhost'>"
            "<query xmlns='jabber:iq:roster'/></iq>"
        )
        [reply] = self.remote.take()
        self.assertEqual(error_condition(reply), "forbidden")


class RosterSetTests(SessionManagerTestCase):
    """Adding, updating and removing items."""

    @defer.inlineCallbacks
    def test_add_and_update(self):
        """A set is pushed to interested resources and answered with a result."""
        alice = yield self.connect("alice", "a")
        other = yield self.connect("alice", "b")
        quiet = yield self.connect("alice", "c", roster=False)
        yield self.client_sends(
            alice, roster_set("<item jid='Bob@LOCALHOST' name='Bob'><group>Friends</group></item>")
        )
        iqs = alice.take("iq")
        self.assertEqual([i["type"] for i in iqs], ["set", "result"])
        push = iqs[0].query.item
        self.assertEqual(
            (push["jid"], push["name"], push["subscription"]), ("bob@localhost", "Bob", "none")
        )
        self.assertEqual(iqs[0]["to"], "alice@localhost/a")
        self.assertEqual(len(other.take("iq")), 1)
        self.assertEqual(quiet.take("iq"), [])
        yield self.roster_store.save("alice", RosterItem("bob@localhost", "Bob", "to"))
        self.sm._rosters.pop("alice")  # reload from the database
        yield self.client_sends(
            alice, roster_set("<item jid='bob@localhost' subscription='both'/>")
        )
        push = alice.take("iq")[0].query.item
        self.assertEqual(push["subscription"], "to")  # subscription is not settable
        self.assertFalse(push.hasAttribute("name"))
        items = yield self.roster_items("alice")
        self.assertEqual(items, {"bob@localhost": ("to", False, False)})

    @defer.inlineCallbacks
    def test_errors(self):
        """Bad sets get the standard errors and change nothing."""
        alice = yield self.connect("alice")
        cases = [
            ("<item jid='bob@localhost'/><item jid='carol@localhost'/>", "bad-request"),
            ("", "bad-request"),
            ("<item name='x'/>", "bad-request"),
            ("<item jid='@@'/>", "jid-malformed"),
            ("<item jid='bob@localhost/res'/>", "bad-request"),
            ("<item jid='alice@localhost'/>", "not-allowed"),
            ("<item jid='bob@localhost' subscription='bogus'/>", "bad-request"),
            ("<item jid='bob@localhost'><group></group></item>", "not-acceptable"),
            ("<item jid='bob@localhost'><group>a</group><group>a</group></item>", "bad-request"),
            (f"<item jid='bob@localhost' name='{'n' * 2000}'/>", "not-acceptable"),
            ("<item jid='nobody@localhost' subscription='remove'/>", "item-not-found"),
        ]
        for item, condition in cases:
            yield self.client_sends(alice, roster_set(item))
            [reply] = alice.take("iq")
            self.assertEqual(error_condition(reply), condition, item)
        items = yield self.roster_items("alice")
        self.assertEqual(items, {})

    @defer.inlineCallbacks
    def test_remove_with_subscriptions(self):
        """Removing a 'both' contact unsubscribes both ways and says unavailable."""
        yield self.roster_store.save("alice", RosterItem("bob@localhost", subscription="both"))
        yield self.roster_store.save("bob", RosterItem("alice@localhost", subscription="both"))
        bob = yield self.connect("bob")
        alice = yield self.connect("alice")
        bob.take()
        yield self.client_sends(
            alice, roster_set("<item jid='bob@localhost' subscription='remove'/>")
        )
        iqs = alice.take("iq")
        self.assertEqual([i["type"] for i in iqs], ["set", "result"])
        self.assertEqual(iqs[0].query.item["subscription"], "remove")
        bob_presence = [(p["from"], p.getAttribute("type")) for p in bob.take("presence")]
        self.assertIn(("alice@localhost", "unsubscribe"), bob_presence)
        self.assertIn(("alice@localhost", "unsubscribed"), bob_presence)
        self.assertIn(("alice@localhost/res", "unavailable"), bob_presence)
        alice_presence = [(p["from"], p.getAttribute("type")) for p in alice.take("presence")]
        self.assertIn(("bob@localhost/res", "unavailable"), alice_presence)
        items = yield self.roster_items("alice")
        self.assertEqual(items, {})
        items = yield self.roster_items("bob")
        self.assertEqual(items, {"alice@localhost": ("none", False, False)})

    @defer.inlineCallbacks
    def test_remove_denies_pending_request(self):
        """Removing a contact whose request is pending declines it."""
        carol = yield self.connect("carol")
        alice = yield self.connect("alice")
        yield self.client_sends(carol, "<presence to='alice@localhost' type='subscribe'/>")
        yield self.client_sends(alice, roster_set("<item jid='carol@localhost'/>"))
        carol.take()
        yield self.client_sends(
            alice, roster_set("<item jid='carol@localhost' subscription='remove'/>")
        )
        self.assertEqual([p.getAttribute("type") for p in carol.take("presence")], ["unsubscribed"])
        pending = yield self.roster_store.pending("alice")
        self.assertEqual(pending, [])
        items = yield self.roster_items("carol")
        self.assertEqual(items, {"alice@localhost": ("none", False, False)})


class RosterVersioningTests(SessionManagerTestCase):
    """Roster versioning (RFC 6121 2.6): ver on results and pushes, empty results."""

    @defer.inlineCallbacks
    def get(self, session, xml=ROSTER_GET):
        """Send a roster get; return the one iq the client received."""
        yield self.client_sends(session, xml)
        [result] = session.take("iq")
        self.assertEqual(result["type"], "result")
        return result

    @defer.inlineCallbacks
    def add(self, session, contact):
        """Add a contact; return the ver of the push the session received."""
        yield self.client_sends(session, roster_set(f"<item jid='{contact}'/>"))
        push, result = session.take("iq")
        self.assertEqual((push["type"], result["type"]), ("set", "result"))
        return int(push.query["ver"])

    def test_stream_feature(self):
        """The roster module offers <ver/> after authentication; off with the module."""
        self.assertIn((NS_ROSTER_VERSIONING, "ver"), self.sm.stream_features())
        without = self.make_manager(modules={"disabled": ["roster"]})
        self.assertNotIn((NS_ROSTER_VERSIONING, "ver"), without.stream_features())

    @defer.inlineCallbacks
    def test_new_account_and_monotonic(self):
        """An untouched roster is at 0; every set and removal raises the version."""
        alice = yield self.connect("alice", roster=False, presence=False)
        result = yield self.get(alice)
        self.assertEqual(result.query["ver"], "0")
        self.assertEqual(list(result.query.elements()), [])
        versions = [0]
        for contact in ("bob@localhost", "carol@localhost", "bob@localhost"):
            versions.append((yield self.add(alice, contact)))
        yield self.client_sends(
            alice, roster_set("<item jid='bob@localhost' subscription='remove'/>")
        )
        push, _ = alice.take("iq")
        self.assertEqual(push.query.item["subscription"], "remove")
        versions.append(int(push.query["ver"]))
        self.assertEqual(versions, sorted(set(versions)))
        for earlier, later in zip(versions[1:], versions[2:], strict=False):
            self.assertEqual(later, earlier + 1)
        stored = yield self.roster_store.version("alice")
        self.assertEqual(stored, versions[-1])
        result = yield self.get(alice)
        self.assertEqual(result.query["ver"], str(versions[-1]))

    @defer.inlineCallbacks
    def test_current_version_gets_empty_result_and_pushes(self):
        """A get with the current ver: an empty result, and the resource gets pushes."""
        yield self.roster_store.save("alice", RosterItem("bob@localhost", "Bob"))
        version = yield self.roster_store.version("alice")
        alice = yield self.connect("alice", roster=False, presence=False)
        result = yield self.get(alice, versioned_get(version))
        self.assertEqual((result["id"], list(result.elements())), ("g1", []))
        new = yield self.add(alice, "carol@localhost")
        self.assertGreater(new, version)
        result = yield self.get(alice, versioned_get(new))
        self.assertEqual(list(result.elements()), [])

    @defer.inlineCallbacks
    def test_stale_or_unknown_version_gets_full_roster(self):
        """An older, unknown or empty ver: the whole roster with the current ver."""
        alice = yield self.connect("alice", presence=False)
        old = yield self.add(alice, "bob@localhost")
        current = yield self.add(alice, "carol@localhost")
        for ver in (old, "", "bogus", current + 1):
            result = yield self.get(alice, versioned_get(ver))
            self.assertEqual(result.query["ver"], str(current), ver)
            self.assertEqual(
                sorted(i["jid"] for i in result.query.elements()),
                ["bob@localhost", "carol@localhost"],
            )

    @defer.inlineCallbacks
    def test_survives_restart(self):
        """A new session manager on the same database knows the version."""
        alice = yield self.connect("alice", presence=False)
        version = yield self.add(alice, "bob@localhost")
        yield self.sm.stopService()
        self.sm = self.make_manager()
        self.sm.startService()
        alice = yield self.connect("alice", "again", roster=False, presence=False)
        result = yield self.get(alice, versioned_get(version))
        self.assertEqual(list(result.elements()), [])
        new = yield self.add(alice, "carol@localhost")
        self.assertEqual(new, version + 1)

    @defer.inlineCallbacks
    def test_subscription_changes_raise_the_version(self):
        """Subscription processing (both users' rosters) is pushed with new versions."""
        alice = yield self.connect("alice")
        bob = yield self.connect("bob")
        seen = {"alice": [(yield self.roster_store.version("alice"))],
                "bob": [(yield self.roster_store.version("bob"))]}

        def record(user, session):
            for push in session.take("iq"):
                self.assertEqual(push["type"], "set")
                seen[user].append(int(push.query["ver"]))
            session.take()

        yield self.client_sends(alice, "<presence to='bob@localhost' type='subscribe'/>")
        record("alice", alice)  # ask='subscribe'
        record("bob", bob)
        yield self.client_sends(bob, "<presence to='alice@localhost' type='subscribed'/>")
        record("alice", alice)  # subscription 'to'
        record("bob", bob)  # subscription 'from'
        yield self.client_sends(alice, "<presence to='bob@localhost' type='unsubscribe'/>")
        record("alice", alice)
        record("bob", bob)
        self.assertEqual(len(seen["alice"]), 4)
        self.assertEqual(len(seen["bob"]), 3)
        for user, versions in seen.items():
            self.assertEqual(versions, sorted(set(versions)), user)
            stored = yield self.roster_store.version(user)
            self.assertEqual(stored, versions[-1])

    @defer.inlineCallbacks
    def test_pushes_without_a_cached_version(self):
        """A push for a user whose version was never read carries the stored version."""
        alice = yield self.connect("alice", roster=False, presence=False)
        yield self.get(alice)
        self.sm._roster_versions.clear()
        yield self.roster_store.save("alice", RosterItem("carol@localhost"))
        version = yield self.add(alice, "bob@localhost")
        stored = yield self.roster_store.version("alice")
        self.assertEqual(version, stored)
