"""xmppd.muc.features.archive: room archives (XEP-0313 on the room JID), room stanza-ids."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from tests.muc_fakes import (
    JULIET,
    MUC,
    NS_MUC_ADMIN,
    NS_MUC_OWNER,
    NS_X_DATA,
    NURSE,
    ROMEO,
    ROOM,
    TYBALT,
    MUCHarness,
    error_condition,
    status_codes,
)
from xmppd.mam.store import ArchiveStore
from xmppd.muc.features.archive import CLEANUP_INTERVAL
from xmppd.storage.database import Database
from xmppd.storage.schema import MIGRATIONS

NS_SID = "urn:xmpp:sid:0"
NS_MAM = "urn:xmpp:mam:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DELAY = "urn:xmpp:delay"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"


def stanza_ids(stanza):
    """(by, id) of every XEP-0359 stanza-id on a stanza."""
    return [(e.getAttribute("by"), e.getAttribute("id")) for e in stanza.elements(NS_SID,
                                                                                    "stanza-id")]


def body_text(stanza):
    for element in stanza.elements():
        if element.name == "body":
            return str(element)
    return None


def forwarded_message(result_message):
    (result,) = result_message.elements(NS_MAM, "result")
    (forwarded,) = result.elements(NS_FORWARD, "forwarded")
    (message,) = [e for e in forwarded.elements() if e.name == "message"]
    return result, forwarded, message


class ArchiveTestCase(unittest.TestCase):
    """A MUC service with a database (rooms archived while logging is on)."""

    options: dict = {}

    @defer.inlineCallbacks
    def setUp(self):
        self.path = Path(self.mktemp()) / "xmppd.sqlite"
        self.db = Database(self.path)
        self.addCleanup(self.db.close)
        yield self.db.open()
        self.h = MUCHarness(self, database=self.db, **self.options)
        yield self.h.service.ready
        self.store = ArchiveStore(self.db)

    def say(self, who, body, extra="", room=ROOM):
        self.h.send(who, f"<message type='groupchat' to='{room}' id='m'>"
                         f"<body>{body}</body>{extra}</message>")

    @defer.inlineCallbacks
    def settle(self, rounds=4):
        """Let queued writes and the database's answers through (one database thread)."""
        yield self.h.service.flush()
        for _ in range(rounds):
            yield self.db.query("SELECT 1")

    @defer.inlineCallbacks
    def ask(self, who, payload, kind="set", iq_id="q", to=ROOM):
        """Send an iq and wait for its answer; fires with everything ``who`` got."""
        self.h.send(who, f"<iq type='{kind}' id='{iq_id}' to='{to}'>{payload}</iq>")
        got = []
        for _ in range(20):
            got += self.h.take(who)
            if any(s.name == "iq" and s.getAttribute("id") == iq_id for s in got):
                return got
            yield self.settle(1)
        self.fail(f"no answer to iq {iq_id}")

    def archived_room(self, **fields):
        """Romeo's persistent (so archived) room with Juliet in it."""
        self.h.create(ROMEO, "Romeo", fields={"muc#roomconfig_persistentroom": "1", **fields})
        self.h.join(JULIET, "Juliet")
        self.h.clear()


class StanzaIdTests(ArchiveTestCase):
    def test_every_copy_carries_the_rooms_stanza_id(self):
        self.h.create(ROMEO, "Romeo")  # temporary: not archived, ids all the same
        self.h.join(JULIET, "Juliet")
        self.h.clear()
        forged = (f"<stanza-id xmlns='{NS_SID}' by='{ROOM}' id='forged'/>"
                  f"<stanza-id xmlns='{NS_SID}' by='ROOM@{MUC}' id='forged2'/>"
                  f"<stanza-id xmlns='{NS_SID}' by='juliet@localhost' id='hers'/>")
        self.say(JULIET, "hi", forged)
        (to_romeo,) = self.h.take(ROMEO)
        (reflection,) = self.h.take(JULIET)
        ours = [i for i in stanza_ids(to_romeo) if i[0] == ROOM]
        self.assertEqual(len(ours), 1)
        self.assertNotIn(ours[0][1], ("forged", "forged2"))
        self.assertIn(("juliet@localhost", "hers"), stanza_ids(to_romeo))
        self.assertEqual(stanza_ids(reflection), stanza_ids(to_romeo))
        self.say(JULIET, "again")
        (second,) = self.h.take(ROMEO)
        self.assertNotEqual(stanza_ids(second), ours)

    def test_subject_changes_but_not_private_or_bodiless_or_no_store(self):
        self.h.create(ROMEO, "Romeo")
        self.h.join(JULIET, "Juliet")
        self.h.clear()
        self.h.send(ROMEO, f"<message type='groupchat' to='{ROOM}'><subject>S</subject></message>")
        (subject,) = self.h.take(JULIET)
        self.assertEqual(len(stanza_ids(subject)), 1)
        self.h.send(ROMEO, f"<message type='chat' to='{ROOM}/Juliet'><body>psst</body>"
                           f"<stanza-id xmlns='{NS_SID}' by='{ROOM}' id='forged'/></message>")
        self.h.send(ROMEO, f"<message type='groupchat' to='{ROOM}'>"
                           "<active xmlns='http://jabber.org/protocol/chatstates'/></message>")
        self.say(ROMEO, "secret", "<no-store xmlns='urn:xmpp:hints'/>")
        got = self.h.take(JULIET)
        self.assertEqual(len(got), 3)
        self.assertEqual([stanza_ids(s) for s in got], [[], [], []])

    def test_disco(self):
        self.h.create(ROMEO, "Romeo")
        query = "<query xmlns='http://jabber.org/protocol/disco#info'/>"

        @defer.inlineCallbacks
        def features():
            (reply,) = yield self.ask(JULIET, query, kind="get", iq_id="d")
            return [f["var"] for f in reply.query.elements() if f.name == "feature"]

        def check(temporary):
            self.assertIn(NS_SID, temporary)
            self.assertNotIn(NS_MAM, temporary)

        d = features()
        d.addCallback(check)
        d.addCallback(lambda _: self.h.configure(
            ROMEO, fields={"muc#roomconfig_enablelogging": "1"}))
        d.addCallback(lambda _: features())
        d.addCallback(lambda archived: self.assertTrue(
            {NS_SID, NS_MAM, NS_MAM + "#extended"} <= set(archived)))
        return d


class SwitchTests(ArchiveTestCase):
    def config(self):
        return self.h.service.rooms["room"].config

    def test_temporary_rooms_are_not_archived_persistent_ones_are(self):
        self.h.create(ROMEO, "Romeo")
        self.assertFalse(self.config().logging)
        # a whole form sent back (the switch as shown: 0) still archives a room made persistent
        self.h.configure(ROMEO, fields={"muc#roomconfig_persistentroom": "1",
                                        "muc#roomconfig_enablelogging": "0"})
        self.assertTrue(self.config().logging)
        # the owner switches it off: 171 to the occupants
        got = self.h.configure(ROMEO, fields={"muc#roomconfig_enablelogging": "0"})
        self.assertFalse(self.config().logging)
        (notice,) = [s for s in got if s.name == "message"]
        self.assertEqual(status_codes(notice), ["104", "171"])

    def test_an_explicit_choice_wins_when_becoming_persistent(self):
        self.h.create(ROMEO, "Romeo", fields={"muc#roomconfig_enablelogging": "1"})
        self.h.configure(ROMEO, fields={"muc#roomconfig_persistentroom": "1",
                                        "muc#roomconfig_enablelogging": "0"})
        self.assertTrue(self.config().persistent)
        self.assertFalse(self.config().logging)

    def test_prosodys_enablearchiving_is_an_alias(self):
        self.h.create(ROMEO, "Romeo")
        got = self.h.configure(ROMEO, fields={"muc#roomconfig_enablearchiving": "1"})
        self.assertTrue(self.config().logging)
        (notice,) = [s for s in got if s.name == "message"]
        self.assertEqual(status_codes(notice), ["104", "170"])
        # both given: the one that changed wins
        self.h.configure(ROMEO, fields={"muc#roomconfig_enablelogging": "1",
                                        "muc#roomconfig_enablearchiving": "0"})
        self.assertFalse(self.config().logging)
        self.h.configure(ROMEO, fields={"muc#roomconfig_enablearchiving": "maybe"})
        self.assertFalse(self.config().logging)
        # the form shows enablelogging only
        self.h.send(ROMEO, f"<iq type='get' id='f' to='{ROOM}'>"
                           f"<query xmlns='{NS_MUC_OWNER}'/></iq>")
        (form,) = self.h.take(ROMEO)
        shown = [f["var"] for f in form.query.x.elements(NS_X_DATA, "field")]
        self.assertIn("muc#roomconfig_enablelogging", shown)
        self.assertNotIn("muc#roomconfig_enablearchiving", shown)

    def test_bad_alias_value_refuses_the_form(self):
        self.h.create(ROMEO, "Romeo")
        got = self.h.configure(ROMEO, fields={"muc#roomconfig_enablearchiving": "maybe"})
        self.assertEqual(error_condition(got[0]), "not-acceptable")


class ArchivingTests(ArchiveTestCase):
    @defer.inlineCallbacks
    def test_what_is_archived_and_how(self):
        self.archived_room()
        self.say(JULIET, "one", f"<x xmlns='{NS_MUC_USER}'><item jid='x@y'/></x>")
        (copy,) = self.h.take(ROMEO)
        self.h.send(ROMEO, f"<message type='groupchat' to='{ROOM}'>"
                           "<subject>Plans</subject></message>")
        self.h.send(ROMEO, f"<message type='chat' to='{ROOM}/Juliet'>"
                           "<body>private</body></message>")
        self.h.send(ROMEO, f"<message type='groupchat' to='{ROOM}'>"
                           "<active xmlns='http://jabber.org/protocol/chatstates'/></message>")
        yield self.settle()
        page = yield self.store.query(ROOM, limit=10)
        self.assertEqual([i.with_full for i in page.items], [f"{ROOM}/Juliet", f"{ROOM}/Romeo"])
        first, second = page.items
        self.assertEqual(first.id, stanza_ids(copy)[0][1])
        self.assertEqual(first.direction, "in")
        self.assertIn("<body>one</body>", first.stanza)
        self.assertNotIn(" to=", first.stanza)
        self.assertNotIn(NS_MUC_USER, first.stanza)
        self.assertIn("<subject>Plans</subject>", second.stanza)
        self.assertNotIn("private", "".join(i.stanza for i in page.items))

    @defer.inlineCallbacks
    def test_nothing_archived_while_off(self):
        self.archived_room(**{"muc#roomconfig_enablelogging": "1"})
        self.h.configure(ROMEO, fields={"muc#roomconfig_enablelogging": "0"})
        self.say(JULIET, "off the record")
        yield self.settle()
        self.assertEqual((yield self.store.size(ROOM)), 0)

    @defer.inlineCallbacks
    def test_destroyed_and_emptied_rooms_lose_their_archive(self):
        self.archived_room()
        self.say(JULIET, "one")
        yield self.settle()
        self.assertEqual((yield self.store.size(ROOM)), 1)
        self.h.send(ROMEO, f"<iq type='set' id='x' to='{ROOM}'><query xmlns='{NS_MUC_OWNER}'>"
                           "<destroy/></query></iq>")
        yield self.settle()
        self.assertEqual((yield self.store.size(ROOM)), 0)
        # a temporary room with archiving on loses it when it empties
        self.h.create(ROMEO, "Romeo", room="tmp", fields={"muc#roomconfig_enablelogging": "1"})
        self.say(ROMEO, "one", room=f"tmp@{MUC}")
        yield self.settle()
        self.assertEqual((yield self.store.size(f"tmp@{MUC}")), 1)
        self.h.send(ROMEO, f"<presence type='unavailable' to='tmp@{MUC}/Romeo'/>")
        yield self.settle()
        self.assertEqual((yield self.store.size(f"tmp@{MUC}")), 0)


class QueryTests(ArchiveTestCase):
    @defer.inlineCallbacks
    def fill(self, count=3, **fields):
        self.archived_room(**fields)
        for i in range(count):
            self.say(JULIET, f"m{i}")
            self.h.clock.advance(1)
        yield self.settle()
        self.h.clear()

    @defer.inlineCallbacks
    def test_occupants_and_others_query(self):
        yield self.fill()
        for who in (JULIET, NURSE):  # an occupant, and someone not in the room
            got = yield self.ask(who, f"<query xmlns='{NS_MAM}' queryid='f'>"
                                      "<set xmlns='http://jabber.org/protocol/rsm'><max>2</max>"
                                      "</set></query>")
            *results, fin_iq = got
            self.assertEqual(fin_iq["type"], "result")
            self.assertEqual([r["from"] for r in results], [ROOM, ROOM])
            self.assertEqual([r["to"] for r in results], [who, who])
            result, forwarded, message = forwarded_message(results[0])
            self.assertEqual(result["queryid"], "f")
            self.assertEqual(message["from"], f"{ROOM}/Juliet")
            self.assertEqual(body_text(message), "m0")
            self.assertEqual(stanza_ids(message), [(ROOM, result["id"])])
            (delay,) = forwarded.elements(NS_DELAY, "delay")
            self.assertTrue(delay["stamp"].endswith("Z"))
            (fin,) = fin_iq.elements(NS_MAM, "fin")
            self.assertIsNone(fin.getAttribute("complete"))

    @defer.inlineCallbacks
    def test_access_rules(self):
        yield self.fill()
        self.h.configure(ROMEO, fields={"muc#roomconfig_membersonly": "1"})
        self.h.clear()
        query = f"<query xmlns='{NS_MAM}'/>"
        (refused,) = yield self.ask(NURSE, query)
        self.assertEqual(error_condition(refused), "forbidden")
        self.h.send(ROMEO, f"<iq type='set' id='a' to='{ROOM}'><query xmlns='{NS_MUC_ADMIN}'>"
                           "<item jid='nurse@localhost' affiliation='member'/></query></iq>")
        got = yield self.ask(NURSE, query, iq_id="q2")
        self.assertEqual(got[-1]["type"], "result")
        self.assertEqual(len(got), 4)
        self.h.send(ROMEO, f"<iq type='set' id='b' to='{ROOM}'><query xmlns='{NS_MUC_ADMIN}'>"
                           "<item jid='nurse@localhost' affiliation='outcast'/></query></iq>")
        (refused,) = yield self.ask(NURSE, query, iq_id="q3")
        self.assertEqual(error_condition(refused), "forbidden")
        (metadata,) = yield self.ask(NURSE, f"<metadata xmlns='{NS_MAM}'/>", "get", "q4")
        self.assertEqual(error_condition(metadata), "forbidden")
        (missing,) = yield self.ask(JULIET, query, iq_id="q5", to=f"nowhere@{MUC}")
        self.assertEqual(error_condition(missing), "item-not-found")

    @defer.inlineCallbacks
    def test_bad_queries(self):
        yield self.fill(1)
        cases = {
            "<set xmlns='http://jabber.org/protocol/rsm'><max>-1</max></set>": "bad-request",
            "<set xmlns='http://jabber.org/protocol/rsm'><after>nope</after></set>":
                "item-not-found",
            f"<x xmlns='{NS_X_DATA}' type='submit'><field var='FORM_TYPE'><value>{NS_MAM}"
            "</value></field><field var='colour'><value>red</value></field></x>":
                "feature-not-implemented",
        }
        for number, (inner, condition) in enumerate(cases.items()):
            (reply,) = yield self.ask(JULIET, f"<query xmlns='{NS_MAM}'>{inner}</query>",
                                      iq_id=f"b{number}")
            self.assertEqual(error_condition(reply), condition, inner)

    @defer.inlineCallbacks
    def test_form_and_metadata(self):
        yield self.fill(2)
        (form,) = yield self.ask(JULIET, f"<query xmlns='{NS_MAM}'/>", "get", "f")
        self.assertEqual(form["type"], "result")
        page = yield self.store.query(ROOM, limit=5)
        (reply,) = yield self.ask(JULIET, f"<metadata xmlns='{NS_MAM}'/>", "get", "m")
        (metadata,) = reply.elements(NS_MAM, "metadata")
        self.assertEqual(next(metadata.elements(NS_MAM, "start"))["id"], page.first)
        self.assertEqual(next(metadata.elements(NS_MAM, "end"))["id"], page.last)

    @defer.inlineCallbacks
    def test_real_jids_hidden_unless_non_anonymous(self):
        yield self.fill(0)
        stored = (f"<message xmlns='jabber:client' type='groupchat' from='{ROOM}/Juliet'>"
                  f"<body>b</body><x xmlns='{NS_MUC_USER}'><item jid='juliet@localhost'/></x>"
                  "</message>")
        yield self.store.append(ROOM, stamp=1.0, with_jid=f"{ROOM}/Juliet", direction="in",
                                stanza=stored)
        query = f"<query xmlns='{NS_MAM}'/>"
        result, _ = yield self.ask(NURSE, query)
        self.assertNotIn("juliet@localhost", result.toXml())
        self.h.configure(ROMEO, fields={"muc#roomconfig_whois": "anyone"})
        result, _ = yield self.ask(NURSE, query, iq_id="q2")
        self.assertIn("juliet@localhost", result.toXml())

    @defer.inlineCallbacks
    def test_rooms_with_archiving_off_answer_from_their_archive(self):
        # as Prosody: no refusal, the archive holds what it holds
        yield self.fill(1)
        self.h.configure(ROMEO, fields={"muc#roomconfig_enablelogging": "0"})
        self.h.clear()
        got = yield self.ask(JULIET, f"<query xmlns='{NS_MAM}'/>")
        self.assertEqual([s.name for s in got], ["message", "iq"])


class HistoryFromArchiveTests(ArchiveTestCase):
    @defer.inlineCallbacks
    def test_history_survives_a_restart(self):
        self.archived_room(**{"muc#roomconfig_historylength": "3"})
        for i in range(5):
            self.say(JULIET, f"m{i}")
            self.h.clock.advance(1)
        self.h.send(ROMEO, f"<message type='groupchat' to='{ROOM}'><subject>S</subject></message>")
        yield self.settle()
        ids = [i.id for i in (yield self.store.query(ROOM, limit=10)).items]
        yield self.h.stop()

        again = MUCHarness(self, database=self.db)
        yield again.service.ready
        got = again.join(NURSE, "Nurse", extra="<history maxstanzas='2'/>")
        names = [(s.name, body_text(s)) for s in got]
        self.assertEqual(names[-3:], [("message", "m3"), ("message", "m4"), ("message", None)])
        self.assertEqual(str(got[-1].subject), "S")
        self.assertEqual(stanza_ids(got[-3]), [(ROOM, ids[3])])
        (delay,) = got[-3].elements(NS_DELAY, "delay")
        self.assertEqual(delay["from"], ROOM)
        got = again.join(TYBALT, "Tybalt")
        self.assertEqual([body_text(s) for s in got if body_text(s)], ["m2", "m3", "m4"])

    @defer.inlineCallbacks
    def test_a_longer_history_is_filled_from_the_archive(self):
        self.archived_room(**{"muc#roomconfig_historylength": "1"})
        for i in range(3):
            self.say(JULIET, f"m{i}")
        yield self.settle()
        self.h.configure(ROMEO, fields={"muc#roomconfig_historylength": "5"})
        yield self.settle()
        self.say(JULIET, "m3")
        got = self.h.join(NURSE, "Nurse")
        self.assertEqual([body_text(s) for s in got if body_text(s)], ["m0", "m1", "m2", "m3"])

    @defer.inlineCallbacks
    def test_switching_archiving_on_fills_the_history(self):
        yield self.store.append(ROOM, stamp=5.0, with_jid=f"{ROOM}/Old", direction="in",
                                stanza=f"<message type='groupchat' from='{ROOM}/Old'>"
                                       "<body>earlier</body></message>")
        self.h.create(ROMEO, "Romeo", fields={"muc#roomconfig_enablelogging": "1"})
        yield self.settle()
        got = self.h.join(JULIET, "Juliet")
        self.assertEqual([body_text(s) for s in got if body_text(s)], ["earlier"])


class WithoutDatabaseTests(unittest.TestCase):
    def test_no_archive_without_a_database(self):
        h = MUCHarness(self)
        h.create(ROMEO, "Romeo", fields={"muc#roomconfig_enablelogging": "1"})
        h.send(ROMEO, f"<message type='groupchat' to='{ROOM}'><body>hi</body></message>")
        (echo,) = h.take(ROMEO)
        self.assertEqual(len(stanza_ids(echo)), 1)  # ids still name it in the history
        h.send(JULIET, f"<iq type='set' id='q' to='{ROOM}'><query xmlns='{NS_MAM}'/></iq>")
        (reply,) = h.take(JULIET)
        self.assertEqual(error_condition(reply), "service-unavailable")


class MigrationTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_muc_log_rows_move_to_the_archive(self):
        path = Path(self.mktemp()) / "xmppd.sqlite"
        path.parent.mkdir()
        connection = sqlite3.connect(path)
        for number in range(6):
            connection.executescript(MIGRATIONS[number])
        connection.execute("PRAGMA user_version = 6")
        connection.execute("INSERT INTO muc_rooms (service, name, config, updated) VALUES "
                           "(?, 'room', '{\"logging\": true, \"persistent\": true}', 0)", (MUC,))
        def logged(nick, body):
            return f"<message type='groupchat' from='{ROOM}/{nick}'><body>{body}</body></message>"

        rows = [("room", "2024-01-02T03:04:05.250000Z", "Juliet", logged("Juliet", "a")),
                ("gone", "2024-01-02T03:04:06.000000Z", "Nurse", logged("Nurse", "c")),
                ("room", "2024-01-02T03:04:07.000000Z", "Romeo", logged("Romeo", "b"))]
        connection.executemany("INSERT INTO muc_log (service, room, stamp, nick, stanza) "
                               f"VALUES ('{MUC}', ?, ?, ?, ?)", rows)
        connection.commit()
        connection.close()

        db = Database(path)
        self.addCleanup(db.close)
        yield db.open()
        page = yield ArchiveStore(db).query(ROOM, limit=10)
        self.assertEqual([(i.with_full, i.stamp) for i in page.items],
                         [(f"{ROOM}/Juliet", 1704164645.25), (f"{ROOM}/Romeo", 1704164647.0)])
        self.assertEqual(len({i.id for i in page.items}), 2)
        self.assertIn("<body>a</body>", page.items[0].stanza)
        self.assertEqual((yield ArchiveStore(db).size(f"gone@{MUC}")), 0)
        tables = yield db.query("SELECT name FROM sqlite_master WHERE name = 'muc_log'")
        self.assertEqual(tables, [])

        h = MUCHarness(self, database=db)
        yield h.service.ready
        self.assertTrue(h.service.rooms["room"].config.logging)
        got = h.join(JULIET, "Juliet")
        self.assertEqual([body_text(s) for s in got if body_text(s)], ["a", "b"])
        self.assertEqual(stanza_ids(got[-3]), [(ROOM, page.items[0].id)])
        self.assertEqual(next(got[-3].elements()).uri, "jabber:client")

        # the old log's stanzas had no namespace: results forward them in jabber:client
        h.send(JULIET, f"<iq type='set' id='q' to='{ROOM}'><query xmlns='{NS_MAM}'/></iq>")
        for _ in range(20):
            if any(s.name == "iq" for s in h.users.received.get(JULIET, [])):
                break
            yield db.query("SELECT 1")
        first, second, fin = h.take(JULIET)
        self.assertEqual(fin["type"], "result")
        _, _, message = forwarded_message(first)
        (body,) = [e for e in message.elements() if e.name == "body"]
        self.assertEqual((body.uri, str(body)), ("jabber:client", "a"))


class LimitTests(ArchiveTestCase):
    options = {"archive_max_messages": 3, "archive_expire_after": 1000.0}

    @defer.inlineCallbacks
    def test_cap_and_expiry_in_the_background(self):
        self.archived_room()
        for i in range(5):
            self.say(JULIET, f"m{i}")
        yield self.settle()
        page = yield self.store.query(ROOM, limit=10)
        self.assertEqual([body_text_of(i.stanza) for i in page.items], ["m2", "m3", "m4"])
        self.h.clock.advance(2000)
        self.say(JULIET, "fresh")
        yield self.settle()
        self.h.clock.advance(CLEANUP_INTERVAL)  # the clean-up job runs
        for _ in range(10):
            yield self.settle(1)
        page = yield self.store.query(ROOM, limit=10)
        self.assertEqual([body_text_of(i.stanza) for i in page.items], ["fresh"])
        # the join history forgets what expired too
        got = self.h.join(TYBALT, "Tybalt")
        self.assertEqual([body_text(s) for s in got if body_text(s)], ["fresh"])

    @defer.inlineCallbacks
    def test_the_job_trims_rooms_over_the_cap(self):
        self.archived_room()
        for i in range(6):
            yield self.store.append(ROOM, stamp=self.h.clock.seconds(), with_jid=ROOM,
                                    direction="in", stanza=f"<message><body>{i}</body></message>")
        yield self.h.service.modules["archive"].clean_up()
        self.assertEqual((yield self.store.size(ROOM)), 3)


def body_text_of(xml):
    start = xml.index("<body>") + len("<body>")
    return xml[start:xml.index("</body>")]
