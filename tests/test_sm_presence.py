"""xmppd.sm.presence: broadcast, probes, directed presence (RFC 6121 section 4)."""

from twisted.internet import defer

from tests.sm_fakes import SessionManagerTestCase, error_condition
from xmppd.storage.roster import RosterItem


class PresenceTestCase(SessionManagerTestCase):
    """Alice and bob are mutual contacts ('both'); carol is subscribed to alice ('from')."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        yield self.roster_store.save("alice", RosterItem("bob@localhost", subscription="both"))
        yield self.roster_store.save("bob", RosterItem("alice@localhost", subscription="both"))
        yield self.roster_store.save("alice", RosterItem("carol@localhost", subscription="from"))
        yield self.roster_store.save("carol", RosterItem("alice@localhost", subscription="to"))


class BroadcastTests(PresenceTestCase):
    """Initial presence, updates and unavailable presence."""

    @defer.inlineCallbacks
    def test_initial_presence_broadcast_and_probes(self):
        """Contacts with from/both get it; own resources too; local probes are answered."""
        bob = yield self.connect("bob")
        carol = yield self.connect("carol")
        alice_desk = yield self.connect("alice", "desk")
        bob.take()
        carol.take()
        alice = yield self.connect("alice", "phone", presence=False)
        yield self.client_sends(alice, "<presence><show>away</show></presence>")
        [to_bob] = bob.take("presence")
        self.assertEqual(to_bob["from"], "alice@localhost/phone")
        self.assertEqual(to_bob["to"], "bob@localhost")
        self.assertEqual(str(to_bob.show), "away")
        [to_carol] = carol.take("presence")
        self.assertEqual(to_carol["from"], "alice@localhost/phone")
        to_desk = [p for p in alice_desk.take("presence") if p["from"] == "alice@localhost/phone"]
        self.assertEqual(len(to_desk), 1)
        received = {p["from"] for p in alice.take("presence")}
        # Its own presence, the other resource's? No: the probe answers (bob) and the echo.
        self.assertIn("alice@localhost/phone", received)
        self.assertIn("bob@localhost/res", received)
        self.assertNotIn("carol@localhost/res", received)  # alice is not subscribed to carol

    @defer.inlineCallbacks
    def test_new_resource_learns_other_resources(self):
        """A newly available resource gets the presence of the user's other resources."""
        yield self.connect("alice", "desk", presence=False).addCallback(
            lambda s: self.client_sends(s, "<presence><show>xa</show></presence>")
        )
        phone = yield self.connect("alice", "phone", presence=False)
        yield self.client_sends(phone, "<presence/>")
        from_desk = [p for p in phone.take("presence") if p["from"] == "alice@localhost/desk"]
        self.assertEqual([str(p.show) for p in from_desk], ["xa"])

    @defer.inlineCallbacks
    def test_presence_from_component(self):
        """Presence from another domain (a MUC room) reaches the full JID."""
        alice = yield self.connect("alice")
        yield self.arrives(
            "<presence from='room@conference.localhost/nick' to='alice@localhost/res'>"
            "<x xmlns='http://jabber.org/protocol/muc#user'/></presence>"
        )
        [p] = alice.take("presence")
        self.assertEqual(p["from"], "room@conference.localhost/nick")

    @defer.inlineCallbacks
    def test_error_from_newer_unicode_occupant_jid_is_delivered(self):
        """A room's refusal of an emoji nick comes from that occupant JID and gets through."""
        alice = yield self.connect("alice")
        alice.take()
        yield self.arrives(
            "<presence type='error' from='room@conference.localhost/\U0001f339'"
            " to='alice@localhost/res'><error type='modify' by='room@conference.localhost'>"
            "<jid-malformed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>"
        )
        [error] = alice.take("presence")
        self.assertEqual(error["from"], "room@conference.localhost/\U0001f339")
        self.assertEqual(error_condition(error), "jid-malformed")

    @defer.inlineCallbacks
    def test_probe_to_offline_contact_answered_unavailable(self):
        """A probe to a local contact without resources is answered with unavailable."""
        alice = yield self.connect("alice", presence=False)
        yield self.client_sends(alice, "<presence/>")
        answers = [p for p in alice.take("presence") if p.getAttribute("from") == "bob@localhost"]
        self.assertEqual([p.getAttribute("type") for p in answers], ["unavailable"])

    @defer.inlineCallbacks
    def test_probe_to_remote_contact(self):
        """Probes to remote contacts go out from the bare JID."""
        yield self.roster_store.save("alice", RosterItem("dan@remote.example", subscription="to"))
        yield self.connect("alice")
        probes = [s for s in self.remote.take() if s.getAttribute("type") == "probe"]
        self.assertEqual(len(probes), 1)
        self.assertEqual(probes[0]["from"], "alice@localhost")
        self.assertEqual(probes[0]["to"], "dan@remote.example")

    @defer.inlineCallbacks
    def test_update_broadcast(self):
        """A later presence is broadcast the same way but sends no probes."""
        bob = yield self.connect("bob")
        alice = yield self.connect("alice")
        bob.take()
        yield self.client_sends(alice, "<presence><status>busy</status></presence>")
        [update] = bob.take("presence")
        self.assertEqual(str(update.status), "busy")
        self.assertEqual(
            [p for p in alice.take("presence") if p["from"] == "bob@localhost/res"], []
        )

    @defer.inlineCallbacks
    def test_unavailable_broadcast(self):
        """Unavailable goes to the same set, and back to the resource itself."""
        bob = yield self.connect("bob")
        other = yield self.connect("alice", "other")
        alice = yield self.connect("alice")
        bob.take()
        other.take()
        yield self.client_sends(
            alice, "<presence type='unavailable'><status>bye</status></presence>"
        )
        [to_bob] = bob.take("presence")
        self.assertEqual(to_bob["type"], "unavailable")
        self.assertEqual(str(to_bob.status), "bye")
        self.assertEqual(len(other.take("presence")), 1)
        self.assertEqual(len(alice.take("presence")), 1)
        # No longer available: messages to the bare JID go to the other resource.
        self.assertEqual([s.full for s in self.sm.available_of("alice")], ["alice@localhost/other"])

    @defer.inlineCallbacks
    def test_unbind_broadcasts_unavailable(self):
        """A session that ends while available is announced unavailable."""
        bob = yield self.connect("bob")
        carol = yield self.connect("carol")
        alice = yield self.connect("alice")
        bob.take()
        carol.take()
        yield self.disconnect(alice)
        [to_bob] = bob.take("presence")
        self.assertEqual(to_bob["type"], "unavailable")
        self.assertEqual(to_bob["from"], "alice@localhost/res")
        self.assertEqual(len(carol.take("presence")), 1)
        self.assertEqual(alice.take(), [])
        self.assertFalse(self.sm.is_online("alice"))
        self.assertNotIn("alice", self.sm._rosters)

    @defer.inlineCallbacks
    def test_unbind_unavailable_session_is_silent(self):
        """A session that never sent presence leaves without broadcast."""
        bob = yield self.connect("bob")
        alice = yield self.connect("alice", presence=False)
        bob.take()
        yield self.disconnect(alice)
        self.assertEqual(bob.take(), [])
        self.sm.unbind(alice.session)  # twice: no-op

    @defer.inlineCallbacks
    def test_invalid_priority(self):
        """A priority that is not an integer in range gets bad-request."""
        alice = yield self.connect("alice", presence=False)
        for value in ("high", "300"):
            yield self.client_sends(alice, f"<presence><priority>{value}</priority></presence>")
            [reply] = alice.take("presence")
            self.assertEqual(error_condition(reply), "bad-request")
        self.assertEqual(self.sm.available_of("alice"), [])

    @defer.inlineCallbacks
    def test_subscription_type_without_to(self):
        """A subscription stanza without 'to' gets bad-request."""
        alice = yield self.connect("alice")
        yield self.client_sends(alice, "<presence type='subscribe'/>")
        [reply] = alice.take("presence")
        self.assertEqual(error_condition(reply), "bad-request")

    @defer.inlineCallbacks
    def test_unknown_type(self):
        """A presence type that does not exist gets bad-request."""
        alice = yield self.connect("alice")
        yield self.client_sends(alice, "<presence to='bob@localhost' type='bogus'/>")
        [reply] = alice.take("presence")
        self.assertEqual(error_condition(reply), "bad-request")


class DirectedTests(PresenceTestCase):
    """Directed presence and presence to full JIDs."""

    @defer.inlineCallbacks
    def test_directed_presence_gets_unavailable_on_unbind(self):
        """An entity that got directed presence is told when the resource goes."""
        yield self.users_roster_only_carol()
        carol = yield self.connect("carol")
        alice = yield self.connect("alice")
        carol.take()
        # carol (a 'from' contact) gets the broadcast; bob is not a contact any more.
        yield self.client_sends(alice, "<presence to='bob@localhost/x'/>")
        yield self.client_sends(alice, "<presence to='carol@localhost/res'/>")
        yield self.client_sends_out(alice, "<presence to='nobody@remote.example/r'/>")
        self.assertEqual(self.remote.take()[0]["to"], "nobody@remote.example/r")
        self.assertEqual(len(carol.take("presence")), 1)
        yield self.disconnect(alice)
        targets = sorted(s["to"] for s in self.remote.take())
        self.assertEqual(targets, ["nobody@remote.example/r"])
        # carol: one unavailable (the broadcast), not a second one for the directed presence
        self.assertEqual([p["type"] for p in carol.take("presence")], ["unavailable"])

    @defer.inlineCallbacks
    def users_roster_only_carol(self):
        yield self.roster_store.remove("alice", "bob@localhost")

    @defer.inlineCallbacks
    def test_outbound_tracks_other_domains(self):
        """Presence a client sends to another domain is tracked as directed."""
        conference = []
        self.router.register("conf.example", type("D", (), {"send": conference.append})())
        alice = yield self.connect("alice")
        yield self.client_sends_out(alice, "<presence to='room@conf.example/nick'/>")
        self.assertEqual([p["to"] for p in conference], ["room@conf.example/nick"])
        yield self.disconnect(alice)
        self.assertEqual(conference[-1]["to"], "room@conf.example/nick")
        self.assertEqual(conference[-1]["type"], "unavailable")

    @defer.inlineCallbacks
    def test_probe_to_full_jid_keeps_full_sender(self):
        """A client's probe of a full JID (a MUC occupant) leaves from its full JID.

        The room knows its occupants by their full JIDs and answers the
        probing session (XEP-0045 7.2); a probe of a bare JID speaks for the
        account (RFC 6121 4.3). Neither is tracked as directed presence.
        """
        conference = []
        self.router.register("conf.example", type("D", (), {"send": conference.append})())
        alice = yield self.connect("alice")
        yield self.client_sends_out(alice, "<presence type='probe' to='room@conf.example/nick'/>")
        yield self.client_sends_out(alice, "<presence type='probe' to='x@remote.example'/>")
        ((probe,), (remote,)) = conference, self.remote.take()
        self.assertEqual(
            (probe["from"], probe["to"]), ("alice@localhost/res", "room@conf.example/nick")
        )
        self.assertEqual((remote["from"], remote["to"]), ("alice@localhost", "x@remote.example"))
        self.assertEqual(alice.session.directed, set())

    @defer.inlineCallbacks
    def test_probe_of_local_full_jid_answered_to_prober(self):
        """A probe of a contact's resource is answered to the probing resource only."""
        bob = yield self.connect("bob")
        alice = yield self.connect("alice")
        other = yield self.connect("alice", "other")
        alice.take()
        other.take()
        bob.take()
        yield self.client_sends_out(alice, "<presence type='probe' to='bob@localhost/res'/>")
        [answer] = alice.take("presence")
        self.assertEqual(answer["from"], "bob@localhost/res")
        self.assertEqual(other.take("presence"), [])
        self.assertEqual(bob.take("presence"), [])

    @defer.inlineCallbacks
    def test_directed_unavailable_stops_tracking(self):
        """After directed unavailable the entity is not told again."""
        alice = yield self.connect("alice")
        yield self.client_sends_out(alice, "<presence to='x@remote.example'/>")
        yield self.client_sends_out(alice, "<presence to='x@remote.example' type='unavailable'/>")
        self.remote.take()
        yield self.disconnect(alice)
        self.assertEqual(
            [s for s in self.remote.take() if s.getAttribute("type") == "unavailable"], []
        )

    @defer.inlineCallbacks
    def test_directed_before_initial_presence(self):
        """Directed presence from an unavailable resource is tracked as well."""
        alice = yield self.connect("alice", presence=False)
        yield self.client_sends_out(alice, "<presence to='x@remote.example/a'/>")
        self.remote.take()
        yield self.disconnect(alice)
        [gone] = self.remote.take()
        self.assertEqual(gone["type"], "unavailable")

    @defer.inlineCallbacks
    def test_presence_to_full_jid(self):
        """Presence to a full JID reaches that session only; to a missing one nothing."""
        a = yield self.connect("alice", "a")
        b = yield self.connect("alice", "b")
        a.take()
        b.take()
        yield self.arrives("<presence from='x@remote.example/r' to='alice@localhost/a'/>")
        self.assertEqual(len(a.take("presence")), 1)
        self.assertEqual(b.take(), [])
        yield self.arrives("<presence from='x@remote.example/r' to='alice@localhost/zzz'/>")
        self.assertEqual(a.take() + b.take() + self.remote.take(), [])

    @defer.inlineCallbacks
    def test_presence_error_to_full_jid(self):
        """A presence error to a full JID is delivered."""
        a = yield self.connect("alice", "a")
        yield self.arrives(
            "<presence from='x@remote.example' to='alice@localhost/a' type='error'/>"
        )
        self.assertEqual(len(a.take("presence")), 1)


class ProbeTests(PresenceTestCase):
    """Probes arriving for a local user."""

    @defer.inlineCallbacks
    def test_probe_from_subscribed_contact(self):
        """A subscribed contact gets the last presence of each available resource."""
        yield self.roster_store.save("alice", RosterItem("dan@remote.example", subscription="from"))
        alice = yield self.connect("alice", "a", presence=False)
        yield self.client_sends(alice, "<presence><status>here</status></presence>")
        yield self.connect("alice", "b")
        self.remote.take()
        yield self.arrives(
            "<presence from='dan@remote.example' to='alice@localhost' type='probe'/>"
        )
        answers = self.remote.take()
        self.assertEqual(
            sorted(a["from"] for a in answers), ["alice@localhost/a", "alice@localhost/b"]
        )
        self.assertTrue(all(a["to"] == "dan@remote.example" for a in answers))
        self.assertIn("here", [str(a.status) for a in answers if a.status])

    @defer.inlineCallbacks
    def test_probe_from_stranger(self):
        """Nobody else learns anything."""
        yield self.connect("alice")
        self.remote.take()
        yield self.arrives(
            "<presence from='eve@remote.example' to='alice@localhost' type='probe'/>"
        )
        self.assertEqual(self.remote.take(), [])

    @defer.inlineCallbacks
    def test_probes_of_an_offline_user(self):
        """Offline: 'from'/'both' contacts get unavailable, others nothing, by one-row reads."""
        yield self.roster_store.save("carol", RosterItem("dan@remote.example", subscription="from"))
        yield self.roster_store.save("carol", RosterItem("eve@remote.example", subscription="to"))
        whole_rosters = []
        self.patch(self.sm.roster_store, "items",
                   lambda username: whole_rosters.append(username) or defer.succeed({}))
        for prober in ("dan", "eve", "mallory"):
            yield self.arrives(
                f"<presence from='{prober}@remote.example/r' to='carol@localhost' type='probe'/>"
            )
        [answer] = self.remote.take()
        self.assertEqual((answer["from"], answer["to"], answer.getAttribute("type")),
                         ("carol@localhost", "dan@remote.example/r", "unavailable"))
        self.assertEqual(whole_rosters, [])

    @defer.inlineCallbacks
    def test_probe_for_unknown_user(self):
        """A probe for an account that does not exist gets unsubscribed."""
        yield self.arrives(
            "<presence from='eve@remote.example' to='ghost@localhost' type='probe'/>"
        )
        [answer] = self.remote.take()
        self.assertEqual(answer["type"], "unsubscribed")


class LoginProbeTests(SessionManagerTestCase):
    """A login probes its offline local contacts with one roster query, not one each."""

    users = ("alice", "bob", "carol", "dave", "erin")

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        # alice is subscribed to bob, carol and dave; bob and carol approved her
        # (their rosters say 'from'), dave's roster has no item for her (stale
        # state: she must get nothing from him), erin's account has none either.
        for contact in ("bob", "carol", "dave", "erin"):
            yield self.roster_store.save("alice", RosterItem(f"{contact}@localhost",
                                                             subscription="to"))
        yield self.roster_store.save("bob", RosterItem("alice@localhost", subscription="from"))
        yield self.roster_store.save("carol", RosterItem("alice@localhost", subscription="both"))
        yield self.db.execute("DELETE FROM accounts WHERE username = 'erin'")
        self.single_reads: list[tuple[str, str]] = []
        real_item = self.roster_store.item

        def item(username, contact):
            self.single_reads.append((username, contact))
            return real_item(username, contact)

        self.patch(self.sm.roster_store, "item", item)

    @defer.inlineCallbacks
    def test_offline_contacts_answered_from_one_query(self):
        """Subscribed contacts answer unavailable; the others nothing (erin: unsubscribed)."""
        queries = []
        real_naming = self.sm.roster_store.items_naming
        self.patch(self.sm.roster_store, "items_naming",
                   lambda contact, users: queries.append((contact, sorted(users)))
                   or real_naming(contact, users))
        alice = yield self.connect("alice")
        self.assertEqual(queries, [("alice@localhost", ["bob", "carol", "dave", "erin"])])
        answers = sorted((p["from"], p.getAttribute("type")) for p in self._probe_answers(alice))
        self.assertEqual(answers, [("bob@localhost", "unavailable"),
                                   ("carol@localhost", "unavailable"),
                                   ("erin@localhost", "unsubscribed")])
        # Only the contacts without an item are looked at again (does the account exist?).
        self.assertEqual(sorted(self.single_reads),
                         [("dave", "alice@localhost"), ("erin", "alice@localhost")])

    @defer.inlineCallbacks
    def test_failed_query_falls_back_to_one_read_per_probe(self):
        """The probes are still answered, each with its own read; the failure is logged."""
        self.patch(self.sm.roster_store, "items_naming",
                   lambda contact, users: defer.fail(RuntimeError("disk gone")))
        alice = yield self.connect("alice")
        answers = sorted((p["from"], p.getAttribute("type")) for p in self._probe_answers(alice))
        self.assertEqual(answers, [("bob@localhost", "unavailable"),
                                   ("carol@localhost", "unavailable"),
                                   ("erin@localhost", "unsubscribed")])
        self.assertEqual(len(self.single_reads), 4)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @defer.inlineCallbacks
    def test_online_contact_answers_from_its_cached_roster(self):
        """An online contact's roster is in memory: no query at all for its answer."""
        bob = yield self.connect("bob")
        yield self.client_sends(bob, "<presence><status>hi</status></presence>")
        del self.single_reads[:]
        alice = yield self.connect("alice")
        answers = {p["from"]: p for p in self._probe_answers(alice)}
        self.assertEqual(str(answers["bob@localhost/res"].status), "hi")
        self.assertNotIn(("bob", "alice@localhost"), self.single_reads)

    def _probe_answers(self, session):
        """What the connect helper cleared: the presences the session was sent at login."""
        return [p for p in self._sent_at_login[session] if p.name == "presence"
                and p["from"] != session.jid.full()]

    @defer.inlineCallbacks
    def connect(self, user, resource="res", presence=True, priority=None, roster=True):
        """Like the base class's, but keeps what the session was sent while logging in."""
        if not hasattr(self, "_sent_at_login"):
            self._sent_at_login = {}
        from tests.sm_fakes import FakeSession

        recorded = []
        original = FakeSession.write_stanza

        def write_stanza(fake, element):
            recorded.append((fake, element))
            original(fake, element)

        self.patch(FakeSession, "write_stanza", write_stanza)
        session = yield super().connect(user, resource, presence, priority, roster)
        self._sent_at_login[session] = [e for s, e in recorded if s is session]
        return session
