"""Room behaviour through the router: lifecycle, configuration, joining, messaging."""

from __future__ import annotations

from twisted.trial import unittest

from tests.muc_fakes import (
    JULIET,
    MUC,
    NS_MUC,
    NS_X_DATA,
    NURSE,
    ROMEO,
    ROOM,
    MUCHarness,
    error_condition,
    item_of,
    kinds,
    muc_user_x,
    parse,
    status_codes,
)

NS_DELAY = "urn:xmpp:delay"



def subject_text(stanza):
    for element in stanza.elements():
        if element.name == "subject":
            return str(element)
    return None


def body_text(stanza):
    for element in stanza.elements():
        if element.name == "body":
            return str(element)
    return None


def form_values(form):
    values = {}
    for field in form.elements(NS_X_DATA, "field"):
        values[field.getAttribute("var")] = [str(v) for v in field.elements(NS_X_DATA, "value")]
    return values


class LifecycleTests(unittest.TestCase):
    """Creation, locking, instant/reserved rooms, cancel, destruction."""

    def setUp(self):
        self.h = MUCHarness(self)

    def test_creation_self_presence_is_exact(self):
        stanzas = self.h.join(ROMEO, "Romeo")
        self.assertEqual(
            kinds(stanzas), [("presence", f"{ROOM}/Romeo", None), ("message", ROOM, "groupchat")]
        )
        x = muc_user_x(stanzas[0])
        children = [(c.name, dict(c.attributes)) for c in x.elements()]
        self.assertEqual(
            children,
            [
                ("status", {"code": "201"}),
                ("item", {"jid": ROMEO, "affiliation": "owner", "role": "moderator"}),
                ("status", {"code": "110"}),
            ],
        )
        self.assertEqual(subject_text(stanzas[1]), "")

    def test_locked_room_refuses_others(self):
        self.h.join(ROMEO, "Romeo")
        stanzas = self.h.join(JULIET, "Juliet")
        self.assertEqual(len(stanzas), 1)
        self.assertEqual(stanzas[0]["type"], "error")
        self.assertEqual(error_condition(stanzas[0]), "item-not-found")
        self.assertEqual(self.h.take(ROMEO), [])

    def test_instant_room(self):
        self.h.join(ROMEO, "Romeo")
        stanzas = self.h.configure(ROMEO)
        # nothing changed: only the result
        self.assertEqual(kinds(stanzas), [("iq", ROOM, "result")])
        stanzas = self.h.join(JULIET, "Juliet")
        self.assertEqual(
            [s.getAttribute("from") for s in stanzas],
            [f"{ROOM}/Romeo", f"{ROOM}/Juliet", ROOM],
        )
        self.assertEqual(status_codes(stanzas[1]), ["110"])
        self.assertNotIn("jid", item_of(stanzas[0]).attributes)  # semi-anonymous
        romeo = self.h.take(ROMEO)
        self.assertEqual(kinds(romeo), [("presence", f"{ROOM}/Juliet", None)])
        self.assertEqual(item_of(romeo[0])["jid"], JULIET)  # moderators see JIDs

    def test_temporary_room_vanishes(self):
        self.h.create(ROMEO, "Romeo")
        self.h.send(ROMEO, f"<presence type='unavailable' to='{ROOM}/Romeo'/>")
        (presence,) = self.h.take(ROMEO)
        self.assertEqual(status_codes(presence), ["110"])
        self.assertNotIn("room", self.h.service.rooms)

    def test_persistent_room_stays(self):
        self.h.create(ROMEO, "Romeo", fields={"muc#roomconfig_persistentroom": "1"})
        self.h.send(ROMEO, f"<presence type='unavailable' to='{ROOM}'/>")
        self.assertIn("room", self.h.service.rooms)
        # and it is not locked when joined again; a persistent room is archived (170)
        stanzas = self.h.join(JULIET, "Juliet")
        self.assertEqual(status_codes(stanzas[0]), ["170", "110"])

    def test_create_policy(self):
        h = MUCHarness(self, create_rooms="admins", admins=("boss@localhost",))
        (error,) = h.join(ROMEO, "Romeo")
        self.assertEqual(error_condition(error), "not-allowed")
        stanzas = h.join("boss@localhost/b", "Boss")
        self.assertEqual(status_codes(stanzas[0])[0], "201")

    def test_create_policy_local(self):
        from tests.muc_fakes import FakeDestination

        h = MUCHarness(self, create_rooms="local")
        remote = FakeDestination()
        h.router.register("remote.example", remote)
        h.send(
            "eve@remote.example/e", f"<presence to='{ROOM}/Eve'><x xmlns='{NS_MUC}'/></presence>"
        )
        self.assertEqual(error_condition(remote.log[0]), "not-allowed")
        stanzas = h.join(ROMEO, "Romeo")
        self.assertEqual(status_codes(stanzas[0])[0], "201")


class JoinTests(unittest.TestCase):
    """Joining details: conflicts, limits, multiple resources, nick changes."""

    def setUp(self):
        self.h = MUCHarness(self)
        self.h.create(ROMEO, "Romeo")

    def say(self, who, text):
        self.h.send(who, f"<message type='groupchat' to='{ROOM}'><body>{text}</body></message>")

    def test_nick_conflict(self):
        (error,) = self.h.join(JULIET, "Romeo")
        self.assertEqual(error_condition(error), "conflict")
        self.assertEqual(error.error["code"], "409")

    def test_missing_nick(self):
        self.h.send(JULIET, f"<presence to='{ROOM}'><x xmlns='{NS_MUC}'/></presence>")
        (error,) = self.h.take(JULIET)
        self.assertEqual(error_condition(error), "jid-malformed")
        self.h.send(JULIET, f"<presence to='{ROOM}/ '><x xmlns='{NS_MUC}'/></presence>")
        (error,) = self.h.take(JULIET)
        self.assertEqual(error_condition(error), "jid-malformed")

    def test_max_users(self):
        self.h.configure(ROMEO, fields={"muc#roomconfig_maxusers": "2"})
        self.h.join(JULIET, "Juliet")
        (error,) = self.h.join(NURSE, "Nurse")
        self.assertEqual(error_condition(error), "service-unavailable")
        self.assertEqual(error.error["code"], "503")

    def test_presence_update_broadcast(self):
        self.h.join(JULIET, "Juliet")
        self.h.clear()
        self.h.send(JULIET, f"<presence to='{ROOM}/Juliet'><show>away</show></presence>")
        romeo = self.h.take(ROMEO)
        self.assertEqual(kinds(romeo), [("presence", f"{ROOM}/Juliet", None)])
        self.assertEqual(str(romeo[0].show), "away")
        juliet = self.h.take(JULIET)
        self.assertEqual(status_codes(juliet[0]), ["110"])

    def test_two_resources_one_nick(self):
        self.h.join(JULIET, "Juliet")
        self.h.clear()
        second = "juliet@localhost/phone"
        stanzas = self.h.join(second, "Juliet")
        self.assertEqual([s["from"] for s in stanzas], [f"{ROOM}/Romeo", f"{ROOM}/Juliet", ROOM])
        self.assertEqual(len(self.h.service.rooms["room"].occupants), 2)
        # messages reach both resources
        self.h.clear()
        self.say(ROMEO, "hi")
        self.assertEqual(len(self.h.take(JULIET)), 1)
        self.assertEqual(len(self.h.take(second)), 1)
        # one leaves: only it gets the unavailable self-presence
        self.h.clear()
        self.h.send(second, f"<presence type='unavailable' to='{ROOM}/Juliet'/>")
        (gone,) = self.h.take(second)
        self.assertEqual(gone["type"], "unavailable")
        self.assertIn("110", status_codes(gone))
        romeo = self.h.take(ROMEO)
        self.assertEqual(romeo[0].getAttribute("type"), None)
        self.assertIn("Juliet", self.h.service.rooms["room"].occupants)

    def test_other_user_same_nick_conflict(self):
        self.h.join(JULIET, "Juliet")
        (error,) = self.h.join("juliet2@localhost/x", "Juliet")
        self.assertEqual(error_condition(error), "conflict")

    def test_nick_change(self):
        self.h.join(JULIET, "Juliet")
        self.h.clear()
        self.h.send(JULIET, f"<presence to='{ROOM}/Jules'/>")
        romeo = self.h.take(ROMEO)
        self.assertEqual(
            kinds(romeo),
            [("presence", f"{ROOM}/Juliet", "unavailable"), ("presence", f"{ROOM}/Jules", None)],
        )
        self.assertEqual(status_codes(romeo[0]), ["303"])
        self.assertEqual(item_of(romeo[0])["nick"], "Jules")
        juliet = self.h.take(JULIET)
        self.assertEqual(status_codes(juliet[0]), ["303", "110"])
        self.assertEqual(status_codes(juliet[1]), ["110"])
        self.h.send(JULIET, f"<presence to='{ROOM}/Romeo'/>")
        (error,) = self.h.take(JULIET)
        self.assertEqual(error_condition(error), "conflict")

    def test_leave_forwards_status(self):
        self.h.join(JULIET, "Juliet")
        self.h.clear()
        self.h.send(
            JULIET,
            f"<presence type='unavailable' to='{ROOM}/Juliet'><status>bye</status></presence>",
        )
        (romeo,) = self.h.take(ROMEO)
        self.assertEqual(str(romeo.status), "bye")
        self.assertEqual(item_of(romeo)["role"], "none")
        (juliet,) = self.h.take(JULIET)
        self.assertEqual(status_codes(juliet), ["110"])

    def test_non_anonymous_and_logged_codes(self):
        self.h.configure(
            ROMEO, fields={"muc#roomconfig_whois": "anyone", "muc#roomconfig_enablelogging": "1"}
        )
        stanzas = self.h.join(JULIET, "Juliet")
        self.assertEqual(status_codes(stanzas[1]), ["100", "170", "110"])
        self.assertEqual(item_of(stanzas[0])["jid"], ROMEO)

    def test_presence_probe(self):
        self.h.join(JULIET, "Juliet")
        self.h.clear()
        self.h.send(JULIET, f"<presence type='probe' to='{ROOM}/Romeo'/>")
        (presence,) = self.h.take(JULIET)
        self.assertEqual(presence["from"], f"{ROOM}/Romeo")
        self.assertEqual(item_of(presence)["role"], "moderator")

    def test_presence_broadcast_option(self):
        self.h.configure(
            ROMEO,
            fields={
                "muc#roomconfig_moderatedroom": "1",
                "muc#roomconfig_presencebroadcast": ["moderator", "participant"],
            },
        )
        self.h.clear()
        self.h.join(JULIET, "Juliet")  # a visitor
        self.assertEqual(self.h.take(ROMEO), [])


class JoinerSeesCurrentStateTests(unittest.TestCase):
    """The occupant presences a joiner gets are kept between joins: never stale."""

    def setUp(self):
        self.h = MUCHarness(self)
        self.h.create(ROMEO, "Romeo")
        self.h.join(JULIET, "Juliet")
        self.joiners = iter(f"guest{i}@localhost/g" for i in range(10))

    def juliet_as_seen(self):
        """Juliet's presence in what a new joiner receives (then it leaves again)."""
        joiner = next(self.joiners)
        received = self.h.join(joiner, joiner.split("@")[0])
        self.h.send(joiner, f"<presence type='unavailable' to='{ROOM}/x'/>")
        self.h.clear()
        [juliet] = [s for s in received if s["from"].startswith(f"{ROOM}/Juliet")]
        return juliet

    def test_changes_reach_later_joiners(self):
        first = self.juliet_as_seen()
        self.assertIsNone(first.getAttribute("type"))
        again = self.juliet_as_seen()
        del first["to"], again["to"]
        self.assertEqual(again.toXml(), first.toXml())  # the same presence each time
        self.h.send(JULIET, f"<presence to='{ROOM}/Juliet'><status>away</status></presence>")
        statuses = [str(e) for e in self.juliet_as_seen().elements() if e.name == "status"]
        self.assertEqual(statuses, ["away"])
        self.h.send(ROMEO, f"<iq type='set' id='a1' to='{ROOM}'><query "
                           f"xmlns='http://jabber.org/protocol/muc#admin'>"
                           f"<item affiliation='admin' jid='juliet@localhost'/></query></iq>")
        item = item_of(self.juliet_as_seen())
        self.assertEqual((item["affiliation"], item["role"]), ("admin", "moderator"))
        self.h.send(ROMEO, f"<iq type='set' id='a2' to='{ROOM}'><query "
                           f"xmlns='http://jabber.org/protocol/muc#admin'>"
                           f"<item affiliation='none' jid='juliet@localhost'/></query></iq>")
        self.h.send(ROMEO, f"<iq type='set' id='a3' to='{ROOM}'><query "
                           f"xmlns='http://jabber.org/protocol/muc#admin'>"
                           f"<item nick='Juliet' role='visitor'/></query></iq>")
        item = item_of(self.juliet_as_seen())
        self.assertEqual((item["affiliation"], item["role"]), ("none", "visitor"))

    def test_nick_change_and_second_session(self):
        self.juliet_as_seen()
        self.h.send(JULIET, f"<presence to='{ROOM}/Jules'/>")
        joiner = next(self.joiners)
        received = self.h.join(joiner, "g")
        self.assertIn(f"{ROOM}/Jules", [s["from"] for s in received])
        self.assertNotIn(f"{ROOM}/Juliet", [s["from"] for s in received])
        # Real JIDs shown (non-anonymous room): a second session of the occupant shows too.
        self.h.configure(ROMEO, fields={"muc#roomconfig_whois": "anyone"})
        self.h.join("juliet@localhost/second", "Jules")
        self.h.clear()
        received = self.h.join(next(self.joiners), "h")
        [jules] = [s for s in received if s["from"] == f"{ROOM}/Jules"]
        jids = sorted(i["jid"] for i in muc_user_x(jules).elements(NS_MUC + "#user", "item"))
        self.assertEqual(jids, ["juliet@localhost/j", "juliet@localhost/second"])


class NewerUnicodeNickTests(unittest.TestCase):
    """A nick only newer Unicode allows reaches the room, which refuses it itself."""

    def setUp(self):
        self.h = MUCHarness(self)

    def assert_refused(self, stanzas, nick, room="room"):
        (error,) = stanzas
        self.assertEqual(error["type"], "error")
        self.assertEqual(error["from"], f"{room}@{MUC}/{nick}")
        self.assertEqual(error_condition(error), "jid-malformed")
        (element,) = [e for e in error.elements() if e.name == "error"]
        self.assertEqual((element["type"], element["by"]), ("modify", f"{room}@{MUC}"))

    def test_creation_refused(self):
        self.assert_refused(self.h.join(JULIET, "\U0001f339"), "\U0001f339")
        self.assertEqual(self.h.service.rooms, {})

    def test_join_and_nick_change_refused(self):
        self.h.create(ROMEO, "Romeo")
        self.assert_refused(self.h.join(JULIET, "Juliet \U0001f339"), "Juliet \U0001f339")
        self.h.send(ROMEO, f"<presence to='{ROOM}/\U0001f3ad'/>")
        self.assert_refused(self.h.take(ROMEO), "\U0001f3ad")
        self.assertEqual(list(self.h.service.rooms["room"].occupants), ["Romeo"])

    def test_truly_malformed_is_refused_by_the_service(self):
        """A 'to' no parser accepts gets jid-malformed from the service's domain."""
        self.h.send(JULIET, f"<presence to='{ROOM}/x\ufffd'><x xmlns='{NS_MUC}'/></presence>")
        (error,) = self.h.take(JULIET)
        self.assertEqual(error_condition(error), "jid-malformed")
        self.assertEqual(error["from"], MUC)


class ProbeTests(unittest.TestCase):
    """Presence probes to occupant JIDs (XEP-0045 7.2), answered as Prosody answers them."""

    def setUp(self):
        self.h = MUCHarness(self)
        self.h.create(ROMEO, "Romeo")
        self.h.join(JULIET, "Juliet")
        self.h.clear()

    def probe(self, sender, nick, room="room"):
        self.h.send(sender, f"<presence type='probe' to='{room}@{MUC}/{nick}'/>")
        return self.h.take(sender)

    def test_own_occupant_jid(self):
        """A probe of oneself: one's presence, with one's own full JID, no status codes."""
        self.h.send(JULIET, f"<presence to='{ROOM}/Juliet'><show>away</show></presence>")
        self.h.clear()
        (presence,) = self.probe(JULIET, "Juliet")
        self.assertEqual(presence["from"], f"{ROOM}/Juliet")
        self.assertEqual(presence["to"], JULIET)
        self.assertIsNone(presence.getAttribute("type"))
        self.assertEqual(str(presence.show), "away")
        item = item_of(presence)
        self.assertEqual(
            dict(item.attributes), {"jid": JULIET, "affiliation": "none", "role": "participant"}
        )
        self.assertEqual(status_codes(presence), [])
        self.assertEqual(self.h.take(ROMEO), [])

    def test_other_occupant_without_real_jid(self):
        """A participant of a semi-anonymous room does not learn the real JID."""
        (presence,) = self.probe(JULIET, "Romeo")
        item = item_of(presence)
        self.assertEqual(dict(item.attributes), {"affiliation": "owner", "role": "moderator"})
        self.assertNotIn("romeo@localhost", presence.toXml())

    def test_moderator_sees_the_real_jid(self):
        (presence,) = self.probe(ROMEO, "Juliet")
        self.assertEqual(presence["to"], ROMEO)
        self.assertEqual(item_of(presence)["jid"], JULIET)

    def test_non_occupant_gets_not_acceptable(self):
        """Only occupants may probe: a presence error from the probed occupant JID."""
        for nick in ("Romeo", "Nurse"):
            (error,) = self.probe(NURSE, nick)
            self.assertEqual(error["type"], "error")
            self.assertEqual(error["from"], f"{ROOM}/{nick}")
            self.assertEqual(error_condition(error), "not-acceptable")
            (element,) = [e for e in error.elements() if e.name == "error"]
            self.assertEqual(element["type"], "cancel")
            self.assertEqual(element["by"], ROOM)
        self.assertEqual(self.h.take(ROMEO), [])

    def test_absent_nick(self):
        """A nick nobody holds: unavailable, role none."""
        (presence,) = self.probe(JULIET, "Tybalt")
        self.assertEqual(presence["type"], "unavailable")
        self.assertEqual(
            dict(item_of(presence).attributes), {"affiliation": "none", "role": "none"}
        )

    def test_absent_registered_nick(self):
        """A registered nick whose user is away: its affiliation, and its JID for moderators."""
        room = self.h.service.rooms["room"]
        room.affiliations.set("nurse@localhost", "member", nick="Nurse")
        (presence,) = self.probe(ROMEO, "Nurse")
        self.assertEqual(presence["type"], "unavailable")
        self.assertEqual(
            dict(item_of(presence).attributes),
            {"jid": "nurse@localhost", "affiliation": "member", "role": "none", "nick": "Nurse"},
        )
        (presence,) = self.probe(JULIET, "Nurse")
        self.assertNotIn("jid", item_of(presence).attributes)

    def test_hidden_roles(self):
        """Presence the room does not broadcast is shown to moderators only."""
        self.h.configure(
            ROMEO, fields={"muc#roomconfig_presencebroadcast": ["moderator"]}
        )
        self.h.join(NURSE, "Nurse")
        self.h.clear()
        (presence,) = self.probe(ROMEO, "Juliet")
        self.assertIsNone(presence.getAttribute("type"))
        (presence,) = self.probe(NURSE, "Juliet")
        self.assertEqual(presence["type"], "unavailable")
        (presence,) = self.probe(JULIET, "Juliet")
        self.assertIsNone(presence.getAttribute("type"))

    def test_probe_to_the_room_itself_is_ignored(self):
        self.h.send(JULIET, f"<presence type='probe' to='{ROOM}'/>")
        self.assertEqual(self.h.take(JULIET), [])

    def test_no_such_room(self):
        (error,) = self.probe(JULIET, "Romeo", room="nowhere")
        self.assertEqual(error_condition(error), "item-not-found")
        self.assertEqual(error["from"], f"nowhere@{MUC}/Romeo")
        self.assertNotIn("nowhere", self.h.service.rooms)


class MessagingTests(unittest.TestCase):
    """Groupchat, subject, private messages, bounces."""

    def setUp(self):
        self.h = MUCHarness(self)
        self.h.create(ROMEO, "Romeo")
        self.h.join(JULIET, "Juliet")
        self.h.clear()

    def test_groupchat_broadcast(self):
        self.h.send(
            JULIET, f"<message type='groupchat' id='m1' to='{ROOM}'><body>hello</body></message>"
        )
        for who in (ROMEO, JULIET):
            (message,) = self.h.take(who)
            self.assertEqual(message["from"], f"{ROOM}/Juliet")
            self.assertEqual(message["id"], "m1")
            self.assertEqual(body_text(message), "hello")

    def test_non_occupant_not_acceptable(self):
        self.h.send(NURSE, f"<message type='groupchat' to='{ROOM}'><body>x</body></message>")
        (error,) = self.h.take(NURSE)
        self.assertEqual(error_condition(error), "not-acceptable")
        self.assertEqual(self.h.take(ROMEO), [])

    def test_visitor_cannot_speak_in_moderated_room(self):
        self.h.configure(ROMEO, fields={"muc#roomconfig_moderatedroom": "1"})
        self.h.join(NURSE, "Nurse")
        self.h.clear()
        self.h.send(NURSE, f"<message type='groupchat' to='{ROOM}'><body>x</body></message>")
        (error,) = self.h.take(NURSE)
        self.assertEqual(error_condition(error), "forbidden")

    def test_subject_change_rules(self):
        self.h.send(JULIET, f"<message type='groupchat' to='{ROOM}'><subject>S</subject></message>")
        (error,) = self.h.take(JULIET)
        self.assertEqual(error_condition(error), "forbidden")
        self.h.send(
            ROMEO, f"<message type='groupchat' to='{ROOM}'><subject>Love</subject></message>"
        )
        (message,) = self.h.take(JULIET)
        self.assertEqual(subject_text(message), "Love")
        self.assertEqual(self.h.service.rooms["room"].subject, "Love")
        # subject and body: a normal message, the subject does not change
        self.h.clear()
        self.h.send(
            ROMEO,
            f"<message type='groupchat' to='{ROOM}'><subject>X</subject><body>b</body></message>",
        )
        self.assertEqual(self.h.service.rooms["room"].subject, "Love")
        self.assertEqual(len(self.h.take(JULIET)), 1)
        # a joiner gets the subject from the setter's nick
        stanzas = self.h.join(NURSE, "Nurse")
        self.assertEqual(subject_text(stanzas[-1]), "Love")
        self.assertEqual(stanzas[-1]["from"], f"{ROOM}/Romeo")
        # with changesubject, participants may
        self.h.configure(ROMEO, fields={"muc#roomconfig_changesubject": "1"})
        self.h.clear()
        self.h.send(JULIET, f"<message type='groupchat' to='{ROOM}'><subject>J</subject></message>")
        self.assertEqual(self.h.service.rooms["room"].subject, "J")

    def test_private_messages(self):
        self.h.send(JULIET, f"<message type='chat' to='{ROOM}/Romeo'><body>psst</body></message>")
        (message,) = self.h.take(ROMEO)
        self.assertEqual(message["from"], f"{ROOM}/Juliet")
        self.assertEqual(body_text(message), "psst")
        self.assertIsNotNone(muc_user_x(message))
        self.h.send(JULIET, f"<message type='chat' to='{ROOM}/Nobody'><body>x</body></message>")
        (error,) = self.h.take(JULIET)
        self.assertEqual(error_condition(error), "item-not-found")
        self.h.send(NURSE, f"<message type='chat' to='{ROOM}/Romeo'><body>x</body></message>")
        (error,) = self.h.take(NURSE)
        self.assertEqual(error_condition(error), "not-acceptable")
        self.h.configure(ROMEO, fields={"muc#roomconfig_allowpm": "moderators"})
        self.h.clear()
        self.h.send(JULIET, f"<message type='chat' to='{ROOM}/Romeo'><body>x</body></message>")
        (error,) = self.h.take(JULIET)
        self.assertEqual(error_condition(error), "forbidden")
        self.h.send(ROMEO, f"<message type='chat' to='{ROOM}/Juliet'><body>ok</body></message>")
        self.assertEqual(body_text(self.h.take(JULIET)[0]), "ok")

    def test_bounced_groupchat_removes_occupant(self):
        self.h.send(
            JULIET,
            f"<message type='error' to='{ROOM}'><error type='cancel'>"
            "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
        )
        (presence,) = self.h.take(ROMEO)
        self.assertEqual(presence["type"], "unavailable")
        self.assertEqual(status_codes(presence), ["333"])
        # a bounce addressed to the nick the message came from counts too
        self.h.join(JULIET, "Juliet")
        self.h.clear()
        self.h.send(
            JULIET,
            f"<message type='error' to='{ROOM}/Romeo'><error type='cancel'>"
            "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
        )
        (presence,) = self.h.take(ROMEO)
        self.assertEqual(status_codes(presence), ["333"])
        self.assertEqual(str(presence.status), "Kicked: service unavailable")

    def test_unexpected_exception_answers_internal_server_error(self):
        room = self.h.service.rooms["room"]

        def boom(*args):
            raise RuntimeError("boom")

        room.handle_message = boom
        self.h.send(JULIET, f"<message type='groupchat' to='{ROOM}'><body>x</body></message>")
        (error,) = self.h.take(JULIET)
        self.assertEqual(error_condition(error), "internal-server-error")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class OccupantIqTests(unittest.TestCase):
    """Requests to occupant JIDs: forwarding (vCard) and XEP-0410 self-ping."""

    def setUp(self):
        self.h = MUCHarness(self)
        self.h.create(ROMEO, "Romeo")
        self.h.join(JULIET, "Juliet")
        self.h.clear()

    def test_self_ping(self):
        self.h.send(
            JULIET, f"<iq type='get' id='p' to='{ROOM}/Juliet'><ping xmlns='urn:xmpp:ping'/></iq>"
        )
        (reply,) = self.h.take(JULIET)
        self.assertEqual((reply["type"], reply["id"]), ("result", "p"))
        self.h.send(
            NURSE, f"<iq type='get' id='p' to='{ROOM}/Juliet'><ping xmlns='urn:xmpp:ping'/></iq>"
        )
        (reply,) = self.h.take(NURSE)
        self.assertEqual(error_condition(reply), "not-acceptable")

    def test_vcard_forwarding(self):
        self.h.send(
            JULIET, f"<iq type='get' id='v1' to='{ROOM}/Romeo'><vCard xmlns='vcard-temp'/></iq>"
        )
        (forwarded,) = self.h.take(ROMEO)
        self.assertEqual(forwarded["from"], f"{ROOM}/Juliet")
        self.assertNotEqual(forwarded["id"], "v1")
        self.h.send(
            ROMEO,
            f"<iq type='result' id='{forwarded['id']}' to='{ROOM}/Juliet'>"
            "<vCard xmlns='vcard-temp'><FN>Romeo</FN></vCard></iq>",
        )
        (reply,) = self.h.take(JULIET)
        self.assertEqual(
            (reply["type"], reply["id"], reply["from"]), ("result", "v1", f"{ROOM}/Romeo")
        )
        # a forged answer is dropped
        self.h.send(ROMEO, f"<iq type='result' id='{forwarded['id']}' to='{ROOM}/Juliet'/>")
        self.assertEqual(self.h.take(JULIET), [])

    def test_invalid_to_gets_jid_malformed(self):
        stanza = parse("<message type='groupchat'><body>x</body></message>")
        stanza["from"] = JULIET
        stanza["to"] = f"bad\u0000room@{MUC}"
        self.h.service.receive(stanza)
        (reply,) = self.h.take(JULIET)
        self.assertEqual(error_condition(reply), "jid-malformed")
        self.assertEqual(reply["from"], MUC)


class RejoinTests(unittest.TestCase):
    def test_join_again_resends_state(self):
        h = MUCHarness(self)
        h.create(ROMEO, "Romeo")
        h.join(JULIET, "Juliet")
        h.send(ROMEO, f"<message type='groupchat' to='{ROOM}'><body>hi</body></message>")
        h.clear()
        stanzas = h.join(JULIET, "Juliet")
        self.assertEqual(
            [s["from"] for s in stanzas], [f"{ROOM}/Romeo", f"{ROOM}/Juliet", f"{ROOM}/Romeo", ROOM]
        )
        self.assertEqual(len(h.service.rooms["room"].occupants), 2)
