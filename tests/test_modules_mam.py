"""xmppd.modules.mam: personal archives on the message path, queries, preferences, retention."""

import time

from twisted.internet import defer, reactor, task

from tests.sm_fakes import REMOTE, SessionManagerTestCase, error_condition, stanza
from tests.test_sm_iq import iq
from xmppd.config import MUCSettings
from xmppd.mam.policy import NS_SID
from xmppd.module import Point, Scope
from xmppd.muc.service import MUCService
from xmppd.stanza import remembered_xml, shallow_copy, xml_text

NS_MAM = "urn:xmpp:mam:2"
NS_CLIENT = "jabber:client"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DATA = "jabber:x:data"
MUC = "conference.localhost"


def stanza_ids(element, by=None):
    """The (by, id) of a message's stanza-ids (only those by ``by``, if given)."""
    return [(c.getAttribute("by"), c.getAttribute("id")) for c in element.elements()
            if c.uri == NS_SID and c.name == "stanza-id"
            and (by is None or c.getAttribute("by") == by)]


def form(**fields):
    """A MAM query form with these fields (underscores become dashes)."""
    xml = (f"<x xmlns='{NS_DATA}' type='submit'><field var='FORM_TYPE' type='hidden'>"
           f"<value>{NS_MAM}</value></field>")
    for var, value in fields.items():
        values = value if isinstance(value, list) else [value]
        xml += f"<field var='{var.replace('_', '-')}'>"
        xml += "".join(f"<value>{v}</value>" for v in values) + "</field>"
    return xml + "</x>"


def rsm(**values):
    """An RSM <set/>; a value of None gives an empty element."""
    inner = "".join(f"<{k}/>" if v is None else f"<{k}>{v}</{k}>" for k, v in values.items())
    return f"<set xmlns='{NS_RSM}'>{inner}</set>"


class MAMTestCase(SessionManagerTestCase):
    """Helpers: query an archive, read what a query answered, wait for the writer."""

    @property
    def module(self):
        return self.sm.modules["mam"]

    @defer.inlineCallbacks
    def archive(self, user):
        """Every message of a user's archive (oldest first), written or not."""
        yield self.module.writer.flush()
        page = yield self.module.store.query(f"{user}@localhost", limit=1000)
        return page.items

    @defer.inlineCallbacks
    def query(self, session, inner="", queryid=None, to=None, kind="set", payload=None):
        """Send a query; returns (result messages, the iq answer)."""
        qid = f" queryid='{queryid}'" if queryid is not None else ""
        payload = payload or f"<query xmlns='{NS_MAM}'{qid}>{inner}</query>"
        yield self.client_sends_out(session, iq(to, payload, kind, "mamq"))
        received = session.take()
        replies = [e for e in received if e.name == "iq"]
        self.assertEqual(len(replies), 1, [e.toXml() for e in received])
        self.assertIs(received[-1], replies[0])  # the iq answer comes last
        return [e for e in received if e.name == "message"], replies[0]

    def forwarded(self, result):
        """(result id, stamp, the archived message) of one result message."""
        [wrapper] = list(result.elements())
        self.assertEqual((wrapper.uri, wrapper.name), (NS_MAM, "result"))
        [fwd] = list(wrapper.elements())
        delay, message = list(fwd.elements())
        self.assertEqual(delay.uri, "urn:xmpp:delay")
        return wrapper["id"], delay["stamp"], message

    def fin(self, reply):
        self.assertEqual(reply["type"], "result", reply.toXml())
        [fin] = list(reply.elements())
        self.assertEqual((fin.uri, fin.name), (NS_MAM, "fin"))
        [rsm_set] = list(fin.elements())
        values = {c.name: str(c) for c in rsm_set.elements()}
        first = next((c for c in rsm_set.elements() if c.name == "first"), None)
        if first is not None and first.hasAttribute("index"):
            values["index"] = first["index"]
        return fin.getAttribute("complete") == "true", values

    def bodies(self, results):
        return [str(self.forwarded(r)[2].body) for r in results]


class ArchivingTests(MAMTestCase):
    """Both directions, exactly once each; stanza-ids stamped and stripped."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.alice = yield self.connect("alice")
        self.bob = yield self.connect("bob")

    @defer.inlineCallbacks
    def test_local_message_in_both_archives(self):
        yield self.client_sends_out(
            self.alice, "<message to='bob@localhost' type='chat' id='m1'><body>hi</body>"
            "<origin-id xmlns='urn:xmpp:sid:0' id='o1'/></message>")
        [delivered] = self.bob.take("message")
        [out] = yield self.archive("alice")
        [into] = yield self.archive("bob")
        self.assertEqual((out.direction, out.with_full), ("out", "bob@localhost"))
        self.assertEqual((into.direction, into.with_full), ("in", "alice@localhost/res"))
        # Bob's copy carries Bob's stanza-id, not Alice's (privacy); origin-id stays.
        self.assertEqual(stanza_ids(delivered), [("bob@localhost", into.id)])
        self.assertEqual(len([c for c in delivered.elements() if c.name == "origin-id"]), 1)
        self.assertNotIn("stanza-id", out.stanza)
        self.assertIn("<body>hi</body>", into.stanza)

    @defer.inlineCallbacks
    def test_the_recipient_writes_the_stored_text_with_its_stanza_id(self):
        yield self.client_sends_out(
            self.alice, "<message to='bob@localhost' type='chat' id='m1'>"
            "<body>a &amp; b &lt;c&gt; 'q'</body><x xmlns='urn:y' a='&apos;'/></message>")
        [delivered] = self.bob.take("message")
        [into] = yield self.archive("bob")
        # The streams are spared a second serialisation: the stored text with the stanza-id.
        noted = remembered_xml(delivered, NS_CLIENT)
        self.assertIsNotNone(noted)
        self.assertEqual(noted, xml_text(delivered, None, NS_CLIENT))
        self.assertIn(f"id='{into.id}'", noted)
        self.assertEqual(remembered_xml(delivered), xml_text(delivered, "jabber:client"))

    @defer.inlineCallbacks
    def test_outgoing_to_remote_leaves_without_stanza_id(self):
        yield self.client_sends_out(
            self.alice, f"<message to='x@{REMOTE}/r' type='chat'><body>hi</body>"
            "<stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='forged'/></message>")
        [routed] = self.remote.take()
        self.assertEqual(stanza_ids(routed), [])
        [out] = yield self.archive("alice")
        self.assertEqual((out.direction, out.with_full), ("out", f"x@{REMOTE}/r"))

    @defer.inlineCallbacks
    def test_forged_incoming_stanza_ids_are_stripped(self):
        yield self.arrives(
            f"<message from='x@{REMOTE}/r' to='bob@localhost' type='chat'><body>hi</body>"
            "<stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='forged'/>"
            f"<stanza-id xmlns='urn:xmpp:sid:0' by='{REMOTE}' id='theirs'/></message>")
        [delivered] = self.bob.take("message")
        [into] = yield self.archive("bob")
        self.assertEqual(stanza_ids(delivered),
                         [(REMOTE, "theirs"), ("bob@localhost", into.id)])
        self.assertNotEqual(into.id, "forged")

    def test_room_copies_sharing_children_are_each_checked_for_their_recipient(self):
        """The look at a message is reused across copies; the stripping is per recipient."""
        room = "room@conference.localhost"
        message = stanza(
            f"<message from='{room}/n' type='groupchat'><body>g</body>"
            f"<stanza-id xmlns='urn:xmpp:sid:0' by='{room}' id='r1'/>"
            "<stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='forged'/></message>")
        copies = [shallow_copy(message) for _ in range(3)]
        for user, copy in zip(("alice", "bob", "carol"), copies, strict=True):
            self.module.incoming(user, [], copy)
        everything = [(room, "r1"), ("bob@localhost", "forged")]
        self.assertEqual([stanza_ids(copy) for copy in copies],
                         [everything, [(room, "r1")], everything])

    @defer.inlineCallbacks
    def test_forged_ids_stripped_even_when_not_archived(self):
        yield self.arrives(
            f"<message from='x@{REMOTE}/r' to='bob@localhost' type='headline'><body>hi</body>"
            "<stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='forged'/></message>")
        [delivered] = self.bob.take("message")
        self.assertEqual(stanza_ids(delivered), [])
        archived = yield self.archive("bob")
        self.assertEqual(archived, [])

    @defer.inlineCallbacks
    def test_not_archived(self):
        for xml in (
            f"<message from='x@{REMOTE}/r' to='bob@localhost' type='groupchat'><body>g</body>"
            "</message>",
            f"<message from='x@{REMOTE}/r' to='bob@localhost/res' type='groupchat'>"
            "<body>g</body></message>",
            f"<message from='x@{REMOTE}/r' to='bob@localhost' type='chat'>"
            "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
            f"<message from='x@{REMOTE}/r' to='bob@localhost/res' type='error'><body>e</body>"
            "</message>",
            f"<message from='x@{REMOTE}/r' to='bob@localhost' type='chat'><body>x</body>"
            "<no-store xmlns='urn:xmpp:hints'/></message>",
        ):
            yield self.arrives(xml)
        yield self.client_sends_out(
            self.alice, f"<message to='room@{REMOTE}' type='groupchat'><body>g</body></message>")
        archived = yield self.archive("bob")
        self.assertEqual(archived, [])
        archived = yield self.archive("alice")
        self.assertEqual(archived, [])

    @defer.inlineCallbacks
    def test_message_to_self_is_archived_twice(self):
        yield self.client_sends_out(
            self.alice, "<message to='alice@localhost' type='chat'><body>me</body></message>")
        [delivered] = self.alice.take("message")
        rows = yield self.archive("alice")
        self.assertEqual([(r.direction, r.with_full) for r in rows],
                         [("out", "alice@localhost"), ("in", "alice@localhost/res")])
        self.assertEqual(stanza_ids(delivered), [("alice@localhost", rows[1].id)])

    @defer.inlineCallbacks
    def test_unavailable_full_jid_falls_back_once(self):
        yield self.arrives(f"<message from='x@{REMOTE}/r' to='bob@localhost/gone' type='chat'>"
                           "<body>hi</body></message>")
        self.assertEqual(len(self.bob.take("message")), 1)
        rows = yield self.archive("bob")
        self.assertEqual(len(rows), 1)

    @defer.inlineCallbacks
    def test_unknown_account_archives_nothing_and_the_bounce_has_no_stanza_id(self):
        yield self.arrives(f"<message from='x@{REMOTE}/r' to='nobody@localhost' type='chat'>"
                           "<body>hi</body></message>")
        [bounce] = self.remote.take()
        self.assertEqual(error_condition(bounce), "service-unavailable")
        self.assertNotIn("urn:xmpp:sid:0", bounce.toXml())
        rows = yield self.module.store.query("nobody@localhost", limit=10)
        self.assertEqual(rows.count, 0)

    @defer.inlineCallbacks
    def test_blocked_messages_are_not_archived(self):
        yield self.client_sends_out(
            self.alice, iq(None, f"<block xmlns='urn:xmpp:blocking'><item jid='{REMOTE}'/>"
                           "</block>", "set", "b1"))
        self.alice.take()
        yield self.client_sends_out(
            self.alice, f"<message to='x@{REMOTE}' type='chat'><body>no</body></message>")
        [refused] = self.alice.take("message")
        self.assertEqual(error_condition(refused), "not-acceptable")
        yield self.arrives(f"<message from='x@{REMOTE}/r' to='alice@localhost' type='chat'>"
                           "<body>no</body></message>")
        rows = yield self.archive("alice")
        self.assertEqual(rows, [])


class OfflineTests(MAMTestCase):
    """Messages going to offline storage are archived once and carry the stanza-id."""

    @defer.inlineCallbacks
    def test_offline_user(self):
        yield self.arrives(f"<message from='x@{REMOTE}/r' to='bob@localhost' type='chat'>"
                           "<body>later</body></message>")
        [row] = yield self.archive("bob")
        bob = yield self.connect("bob", presence=False)
        yield self.client_sends_out(bob, "<presence/>")
        [message] = bob.take("message")
        self.assertEqual(stanza_ids(message), [("bob@localhost", row.id)])
        rows = yield self.archive("bob")
        self.assertEqual(len(rows), 1)

    @defer.inlineCallbacks
    def test_session_without_presence(self):
        bob = yield self.connect("bob", presence=False)
        yield self.arrives(f"<message from='x@{REMOTE}/r' to='bob@localhost' type='chat'>"
                           "<body>later</body></message>")
        [row] = yield self.archive("bob")
        [(_, _, xml)] = yield self.offline_store.fetch("bob")
        self.assertIn(row.id, xml)
        self.assertEqual(bob.take("message"), [])

    @defer.inlineCallbacks
    def test_a_session_that_synced_first_gets_no_offline_push(self):
        yield self.arrives(f"<message from='x@{REMOTE}/r' to='bob@localhost' type='chat'>"
                           "<body>later</body></message>")
        bob = yield self.connect("bob", presence=False)
        results, reply = yield self.query(bob)
        self.assertEqual(self.bodies(results), ["later"])
        yield self.client_sends_out(bob, "<presence/>")
        self.assertEqual(bob.take("message"), [])
        stored = yield self.offline_store.fetch("bob")
        self.assertEqual(len(stored), 1)  # still there for another device
        other = yield self.connect("bob", "other")
        self.assertEqual(other.sent, [])  # connect() clears; check the store was emptied
        stored = yield self.offline_store.fetch("bob")
        self.assertEqual(stored, [])

    @defer.inlineCallbacks
    def test_nonexistent_account(self):
        yield self.arrives(f"<message from='x@{REMOTE}/r' to='ghost@localhost' type='chat'>"
                           "<body>x</body></message>")
        [bounce] = self.remote.take()
        self.assertNotIn(NS_SID, bounce.toXml())


class WithoutOfflineTests(MAMTestCase):
    """Without offline storage an archived message is kept (no bounce), as Prosody."""

    def make_manager(self, **sections):
        sections.setdefault("modules", {"disabled": ["offline"]})
        return super().make_manager(**sections)

    @defer.inlineCallbacks
    def test_archived_not_bounced(self):
        yield self.arrives(f"<message from='x@{REMOTE}/r' to='bob@localhost' type='chat'>"
                           "<body>later</body></message>")
        self.assertEqual(self.remote.take(), [])
        rows = yield self.archive("bob")
        self.assertEqual(len(rows), 1)
        # Not archivable: bounced as before.
        yield self.arrives(f"<message from='x@{REMOTE}/r' to='bob@localhost' type='chat'>"
                           "<body>x</body><no-store xmlns='urn:xmpp:hints'/></message>")
        [bounce] = self.remote.take()
        self.assertEqual(error_condition(bounce), "service-unavailable")


class CarbonsTests(MAMTestCase):
    """Carbon copies carry the stanza-id and are never archived themselves."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.phone = yield self.connect("alice", "phone", priority=5)
        self.desk = yield self.connect("alice", "desk")
        for session in (self.phone, self.desk):
            yield self.client_sends_out(
                session, iq(None, f"<enable xmlns='{NS_CARBONS}'/>", "set", "c1"))
            session.take()

    def carbon_message(self, carbon, kind):
        [wrapper] = list(carbon.elements())
        self.assertEqual((wrapper.uri, wrapper.name), (NS_CARBONS, kind))
        [fwd] = list(wrapper.elements())
        [message] = list(fwd.elements())
        return message

    @defer.inlineCallbacks
    def test_received_carbon_carries_the_stanza_id(self):
        yield self.arrives(f"<message from='x@{REMOTE}/r' to='alice@localhost/phone' "
                           "type='chat'><body>hi</body></message>")
        [direct] = self.phone.take("message")
        [carbon] = self.desk.take("message")
        [row] = yield self.archive("alice")
        self.assertEqual(stanza_ids(direct), [("alice@localhost", row.id)])
        self.assertEqual(stanza_ids(self.carbon_message(carbon, "received")),
                         [("alice@localhost", row.id)])

    @defer.inlineCallbacks
    def test_sent_carbon_carries_the_stanza_id_the_routed_message_not(self):
        yield self.client_sends_out(
            self.phone, f"<message to='x@{REMOTE}' type='chat'><body>out</body></message>")
        [carbon] = self.desk.take("message")
        [routed] = self.remote.take()
        [row] = yield self.archive("alice")
        self.assertEqual(stanza_ids(self.carbon_message(carbon, "sent")),
                         [("alice@localhost", row.id)])
        self.assertEqual(stanza_ids(routed), [])
        self.assertEqual(row.direction, "out")

    @defer.inlineCallbacks
    def test_archived_normal_message_without_body_is_copied(self):
        yield self.arrives(f"<message from='x@{REMOTE}/r' to='alice@localhost/phone'>"
                           "<received xmlns='urn:xmpp:receipts' id='m1'/></message>")
        [carbon] = self.desk.take("message")
        self.carbon_message(carbon, "received")

    @defer.inlineCallbacks
    def test_carbons_from_outside_are_not_archived(self):
        yield self.arrives(
            f"<message from='x@{REMOTE}/r' to='alice@localhost'><received xmlns='{NS_CARBONS}'>"
            f"<forwarded xmlns='{NS_FORWARD}'><message xmlns='jabber:client' type='chat'>"
            "<body>fake</body></message></forwarded></received></message>")
        rows = yield self.archive("alice")
        self.assertEqual(rows, [])


class QueryTests(MAMTestCase):
    """Paging, filters, flip-page, queryid, metadata, the form, errors."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.alice = yield self.connect("alice")
        self.ids = []
        for n in range(5):
            other = "bob@localhost/b" if n % 2 else f"x@{REMOTE}/r"
            archive_id, _ = self.module.writer.append(
                "alice@localhost", stamp=1_700_000_000.0 + n, with_jid=other,
                direction="in", account="alice",
                stanza=f"<message xmlns='jabber:client' from='{other}' type='chat'>"
                       f"<body>m{n}</body></message>")
            self.ids.append(archive_id)

    @defer.inlineCallbacks
    def test_everything_with_queryid_and_delay(self):
        results, reply = yield self.query(self.alice, queryid="q7")
        self.assertEqual(self.bodies(results), [f"m{n}" for n in range(5)])
        for n, result in enumerate(results):
            self.assertEqual(result["to"], "alice@localhost/res")
            [wrapper] = list(result.elements())
            self.assertEqual(wrapper["queryid"], "q7")
            archive_id, stamp, message = self.forwarded(result)
            self.assertEqual(archive_id, self.ids[n])
            self.assertTrue(stamp.startswith("2023-11-14T22:13:2"), stamp)
        complete, values = self.fin(reply)
        self.assertTrue(complete)
        self.assertEqual(values, {"first": self.ids[0], "index": "0", "last": self.ids[4],
                                  "count": "5"})

    @defer.inlineCallbacks
    def test_paging_forwards(self):
        results, reply = yield self.query(self.alice, rsm(max=2))
        self.assertEqual(self.bodies(results), ["m0", "m1"])
        complete, values = self.fin(reply)
        self.assertFalse(complete)
        results, reply = yield self.query(self.alice, rsm(max=2, after=values["last"]))
        self.assertEqual(self.bodies(results), ["m2", "m3"])
        complete, values = self.fin(reply)
        self.assertEqual((complete, values["index"]), (False, "2"))
        results, reply = yield self.query(self.alice, rsm(max=2, after=values["last"]))
        self.assertEqual(self.bodies(results), ["m4"])
        self.assertTrue(self.fin(reply)[0])

    @defer.inlineCallbacks
    def test_paging_backwards_and_flip_page(self):
        results, reply = yield self.query(self.alice, rsm(max=2, before=None))
        self.assertEqual(self.bodies(results), ["m3", "m4"])
        complete, values = self.fin(reply)
        self.assertFalse(complete)
        results, reply = yield self.query(
            self.alice, rsm(max=2, before=values["first"]) + "<flip-page/>")
        self.assertEqual(self.bodies(results), ["m2", "m1"])
        complete, values = self.fin(reply)
        self.assertEqual((values["first"], values["last"]), (self.ids[1], self.ids[2]))
        results, reply = yield self.query(self.alice, rsm(max=2, before=values["first"]))
        self.assertEqual(self.bodies(results), ["m0"])
        self.assertTrue(self.fin(reply)[0])

    @defer.inlineCallbacks
    def test_filters(self):
        results, reply = yield self.query(self.alice, form(**{"with": "bob@localhost"}))
        self.assertEqual(self.bodies(results), ["m1", "m3"])
        results, _ = yield self.query(
            self.alice, form(start="2023-11-14T22:13:22Z", end="2023-11-14T22:13:23Z"))
        self.assertEqual(self.bodies(results), ["m2", "m3"])
        results, _ = yield self.query(self.alice, form(after_id=self.ids[3]))
        self.assertEqual(self.bodies(results), ["m4"])
        results, _ = yield self.query(self.alice, form(before_id=self.ids[1]))
        self.assertEqual(self.bodies(results), ["m0"])
        results, _ = yield self.query(self.alice, form(ids=[self.ids[4], self.ids[2]]))
        self.assertEqual(self.bodies(results), ["m2", "m4"])

    @defer.inlineCallbacks
    def test_page_size_settings(self):
        results, _ = yield self.query(self.alice, rsm(max=1000))
        self.assertEqual(len(results), 5)
        self.module.config = type(self.module.config)(default_page_size=2, max_page_size=3)
        results, _ = yield self.query(self.alice)
        self.assertEqual(len(results), 2)
        results, _ = yield self.query(self.alice, rsm(max=1000))
        self.assertEqual(len(results), 3)

    @defer.inlineCallbacks
    def test_metadata_and_form(self):
        yield self.client_sends_out(self.alice, iq(None, f"<metadata xmlns='{NS_MAM}'/>"))
        [reply] = self.alice.take("iq")
        [metadata] = list(reply.elements())
        start, end = list(metadata.elements())
        self.assertEqual((start["id"], end["id"]), (self.ids[0], self.ids[4]))
        _, reply = yield self.query(self.alice, kind="get")
        vars_ = [f.getAttribute("var") for f in reply.query.x.elements()]
        self.assertEqual(vars_, ["FORM_TYPE", "with", "start", "end", "before-id", "after-id",
                                 "ids"])

    @defer.inlineCallbacks
    def test_errors(self):
        cases = [
            ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>wrong"
             "</value></field></x>", "bad-request"),
            (form(start="yesterday"), "bad-request"),
            (form(**{"with": "@@"}), "jid-malformed"),
            (form(**{"include-groupchat": "true"}), "feature-not-implemented"),
            (form(unknown="x"), "feature-not-implemented"),
            (rsm(max="-1"), "bad-request"),
            (rsm(max="ten"), "bad-request"),
            (rsm(index="1", after=self.ids[0]), "bad-request"),
            (rsm(after="no-such-id"), "item-not-found"),
            (form(after_id="no-such-id"), "item-not-found"),
            (form(ids="no-such-id"), "item-not-found"),
        ]
        for inner, condition in cases:
            results, reply = yield self.query(self.alice, inner)
            self.assertEqual(results, [], inner)
            self.assertEqual(error_condition(reply), condition, inner)

    @defer.inlineCallbacks
    def test_someone_elses_archive_is_forbidden(self):
        bob = yield self.connect("bob")
        for payload in (f"<query xmlns='{NS_MAM}'/>", f"<metadata xmlns='{NS_MAM}'/>",
                        f"<prefs xmlns='{NS_MAM}'/>"):
            kind = "get" if "query" not in payload else "set"
            _, reply = yield self.query(bob, to="alice@localhost", kind=kind, payload=payload)
            self.assertEqual(error_condition(reply), "forbidden", payload)
        yield self.arrives(f"<iq type='set' id='r1' from='x@{REMOTE}/r' to='alice@localhost'>"
                           f"<query xmlns='{NS_MAM}'/></iq>")
        [reply] = self.remote.take()
        self.assertEqual(error_condition(reply), "forbidden")
        self.assertEqual(self.alice.take(), [])

    @defer.inlineCallbacks
    def test_own_bare_jid_may_be_addressed(self):
        results, _ = yield self.query(self.alice, to="alice@localhost")
        self.assertEqual(len(results), 5)

    @defer.inlineCallbacks
    def test_query_sees_a_message_just_sent(self):
        bob = yield self.connect("bob")
        yield self.client_sends_out(
            bob, "<message to='alice@localhost' type='chat'><body>fresh</body></message>")
        self.alice.take()
        # No wait for the writer: the query flushes it first.
        results, _ = yield self.query(self.alice, form(**{"with": "bob@localhost"}))
        self.assertEqual(self.bodies(results), ["m1", "m3", "fresh"])

    @defer.inlineCallbacks
    def test_queries_of_one_session_do_not_interleave(self):
        first = iq(None, f"<query xmlns='{NS_MAM}' queryid='a'/>", "set", "qa")
        second = iq(None, f"<query xmlns='{NS_MAM}' queryid='b'/>", "set", "qb")
        self.alice.session.receive(stanza(first))
        self.alice.session.receive(stanza(second))
        yield self.sm.wait_idle()
        order = [(e.name, e.getAttribute("id") if e.name == "iq" else e.result["queryid"])
                 for e in self.alice.take()]
        self.assertEqual(order, [("message", "a")] * 5 + [("iq", "qa")]
                         + [("message", "b")] * 5 + [("iq", "qb")])

    def test_disco_features(self):
        features = self.sm.modules.features(Scope.ACCOUNT)
        for feature in (NS_MAM, NS_MAM + "#extended", NS_SID):
            self.assertIn(feature, features)


class PreferencesTests(MAMTestCase):
    """Preferences stored, applied, and kept across restarts."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.alice = yield self.connect("alice")

    @defer.inlineCallbacks
    def prefs(self, payload=None):
        payload = payload or f"<prefs xmlns='{NS_MAM}'/>"
        kind = "get" if payload == f"<prefs xmlns='{NS_MAM}'/>" else "set"
        yield self.client_sends_out(self.alice, iq(None, payload, kind, "p1"))
        [reply] = self.alice.take("iq")
        return reply

    def lists(self, reply):
        prefs = reply.prefs
        return (prefs["default"],
                *[[str(j) for j in list_.elements()] for list_ in prefs.elements()])

    @defer.inlineCallbacks
    def incoming(self, sender):
        yield self.arrives(f"<message from='{sender}' to='alice@localhost' type='chat'>"
                           "<body>x</body></message>")
        self.alice.take()

    @defer.inlineCallbacks
    def test_default_then_set_and_applied(self):
        reply = yield self.prefs()
        self.assertEqual(self.lists(reply), ("always", [], []))
        reply = yield self.prefs(
            f"<prefs xmlns='{NS_MAM}' default='never'><always><jid>friend@{REMOTE}</jid>"
            f"</always><never><jid>x@{REMOTE}</jid></never></prefs>")
        self.assertEqual(self.lists(reply), ("never", [f"friend@{REMOTE}"], [f"x@{REMOTE}"]))
        yield self.incoming(f"x@{REMOTE}/r")
        yield self.incoming(f"other@{REMOTE}/r")
        yield self.incoming(f"friend@{REMOTE}/r")
        yield self.client_sends_out(
            self.alice, f"<message to='other@{REMOTE}' type='chat'><body>o</body></message>")
        rows = yield self.archive("alice")
        self.assertEqual([r.with_full for r in rows], [f"friend@{REMOTE}/r"])
        # Stored: a new session manager (a restart) loads them.
        yield self.sm.stopService()
        self.sm = self.make_manager()
        self.sm.startService()
        self.alice = yield self.connect("alice")
        reply = yield self.prefs()
        self.assertEqual(self.lists(reply), ("never", [f"friend@{REMOTE}"], [f"x@{REMOTE}"]))

    @defer.inlineCallbacks
    def test_roster_default(self):
        yield self.client_sends_out(
            self.alice, iq(None, "<query xmlns='jabber:iq:roster'><item jid='bob@localhost'/>"
                           "</query>", "set", "r1"))
        self.alice.take()
        yield self.prefs(f"<prefs xmlns='{NS_MAM}' default='roster'/>")
        yield self.incoming("bob@localhost/b")
        yield self.incoming(f"stranger@{REMOTE}/r")
        rows = yield self.archive("alice")
        self.assertEqual([r.with_full for r in rows], ["bob@localhost/b"])

    @defer.inlineCallbacks
    def test_roster_default_offline_user(self):
        yield self.client_sends_out(
            self.alice, iq(None, "<query xmlns='jabber:iq:roster'><item jid='bob@localhost'/>"
                           "</query>", "set", "r1"))
        self.alice.take()
        yield self.prefs(f"<prefs xmlns='{NS_MAM}' default='roster'/>")
        yield self.disconnect(self.alice)
        yield self.incoming("bob@localhost/b")
        yield self.incoming(f"stranger@{REMOTE}/r")
        rows = yield self.archive("alice")
        self.assertEqual([r.with_full for r in rows], ["bob@localhost/b"])
        stored = yield self.offline_store.fetch("alice")
        self.assertEqual([NS_SID in xml for _, _, xml in stored], [True, False])

    @defer.inlineCallbacks
    def test_configured_default(self):
        yield self.sm.stopService()
        self.sm = self.make_manager(mam={"default": "never"})
        self.sm.startService()
        self.alice = yield self.connect("alice")
        yield self.incoming(f"x@{REMOTE}/r")
        rows = yield self.archive("alice")
        self.assertEqual(rows, [])
        reply = yield self.prefs()
        self.assertEqual(self.lists(reply), ("never", [], []))

    @defer.inlineCallbacks
    def test_bad_prefs(self):
        reply = yield self.prefs(f"<prefs xmlns='{NS_MAM}' default='sometimes'/>")
        self.assertEqual(error_condition(reply), "bad-request")
        reply = yield self.prefs(f"<prefs xmlns='{NS_MAM}'><always><jid>@@</jid></always>"
                                 "</prefs>")
        self.assertEqual(error_condition(reply), "jid-malformed")


class RetentionTests(MAMTestCase):
    """Expiry and the per-user cap, driven by a fake clock."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.clock = task.Clock()
        self.clock.advance(time.time())
        self.module.start_maintenance(self.clock)

    def add(self, user, stamp, n):
        self.module.writer.append(f"{user}@localhost", stamp=stamp, with_jid=f"x@{REMOTE}",
                                  direction="in", account=user, stanza=f"<message>{n}</message>")
        self.module.touched[f"{user}@localhost"] = user

    @defer.inlineCallbacks
    def run_maintenance(self):
        self.clock.advance(self.module.maintenance_interval)
        while self.module._maintaining:
            yield task.deferLater(reactor, 0.01, lambda: None)

    @defer.inlineCallbacks
    def test_expiry(self):
        now = self.clock.seconds()
        week = self.module.config.expire_after
        self.assertEqual(week, 604800)
        self.add("bob", now - 2 * week, 2)  # (archive times only grow)
        self.add("alice", now - week - 10, 0)
        self.add("alice", now - week + 3600, 1)
        yield self.module.writer.flush()
        yield self.run_maintenance()
        rows = yield self.archive("alice")
        self.assertEqual([r.stanza for r in rows], ["<message>1</message>"])
        rows = yield self.archive("bob")
        self.assertEqual(rows, [])

    @defer.inlineCallbacks
    def test_cap(self):
        self.module.config = type(self.module.config)(max_messages=3)
        now = self.clock.seconds()
        for n in range(5):
            self.add("alice", now + n, n)
        yield self.run_maintenance()
        rows = yield self.archive("alice")
        self.assertEqual([r.stanza for r in rows], [f"<message>{n}</message>" for n in (2, 3, 4)])
        self.assertEqual(self.module.touched, {})

    @defer.inlineCallbacks
    def test_expiry_off(self):
        self.module.config = type(self.module.config)(expire_after=0)
        self.add("alice", 1.0, 0)
        yield self.run_maintenance()
        rows = yield self.archive("alice")
        self.assertEqual(len(rows), 1)


class GroupchatTests(MAMTestCase):
    """Groupchat through the real MUC service stays out of personal archives (both ways)."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        clock = task.Clock()
        clock.advance(time.time())
        self.muc = MUCService(MUCSettings(domain=MUC), router=self.router,
                              server_domain="localhost", database=None, reactor=clock)
        self.muc.startService()
        self.addCleanup(self.muc.stopService)
        self.alice = yield self.connect("alice")
        self.bob = yield self.connect("bob")

    @defer.inlineCallbacks
    def test_groupchat_never_archived(self):
        room = f"room@{MUC}"
        yield self.client_sends_out(self.alice, f"<presence to='{room}/alice'>"
                                    "<x xmlns='http://jabber.org/protocol/muc'/></presence>")
        yield self.client_sends_out(
            self.alice, iq(room, "<query xmlns='http://jabber.org/protocol/muc#owner'>"
                           "<x xmlns='jabber:x:data' type='submit'/></query>", "set", "cfg"))
        yield self.client_sends_out(self.bob, f"<presence to='{room}/bob'>"
                                    "<x xmlns='http://jabber.org/protocol/muc'/></presence>")
        self.alice.take()
        self.bob.take()
        yield self.client_sends_out(
            self.alice, f"<message to='{room}' type='groupchat'><body>to all</body></message>")
        yield self.client_sends_out(
            self.bob, f"<message to='{room}' type='groupchat'><body>reply</body></message>")
        got = [str(m.body) for m in self.bob.take("message") if m.body]
        self.assertEqual(got, ["to all", "reply"])
        # A private message through the room is a chat message: archived.
        yield self.client_sends_out(
            self.alice, f"<message to='{room}/bob' type='chat'><body>pm</body>"
            "<x xmlns='http://jabber.org/protocol/muc#user'/></message>")
        for user in ("alice", "bob"):
            rows = yield self.archive(user)
            self.assertEqual(["groupchat" in r.stanza for r in rows], [False], user)
            self.assertIn("pm", rows[0].stanza)


class DisabledTests(SessionManagerTestCase):
    """``[modules] disabled = ["mam"]``: no archive, no stanza-ids, no feature."""

    def make_manager(self, **sections):
        sections.setdefault("modules", {"disabled": ["mam"]})
        return super().make_manager(**sections)

    @defer.inlineCallbacks
    def test_disabled(self):
        self.assertIsNone(self.sm.modules.get("mam"))
        alice = yield self.connect("alice")
        bob = yield self.connect("bob")
        yield self.client_sends_out(
            alice, "<message to='bob@localhost' type='chat'><body>hi</body></message>")
        [message] = bob.take("message")
        self.assertEqual(stanza_ids(message), [])
        yield self.client_sends_out(alice, iq(None, f"<query xmlns='{NS_MAM}'/>", "set"))
        [reply] = alice.take("iq")
        self.assertEqual(error_condition(reply), "service-unavailable")
        rows = yield self.db.query("SELECT COUNT(*) FROM mam_archive")
        self.assertEqual(rows, [(0,)])  # (the table is the schema's: rooms use it too)


class AccountDeletionTests(MAMTestCase):
    """Deleting an account deletes its archive and preferences, and only those."""

    @defer.inlineCallbacks
    def test_deleted(self):
        for user in ("alice", "bob"):
            self.module.writer.append(f"{user}@localhost", stamp=1.0, with_jid="x@y",
                                      direction="in", account=user, stanza="<message/>")
        alice = yield self.connect("alice")
        yield self.client_sends_out(alice, iq(None, f"<prefs xmlns='{NS_MAM}' default='never'/>",
                                              "set", "p1"))
        yield self.module.writer.flush()
        self.assertIn("alice", self.module.prefs)
        yield self.disconnect(alice)
        yield self.accounts.delete("alice")
        self.sm.modules.fire(Point.ACCOUNT_DELETED, "alice")
        self.assertNotIn("alice", self.module.prefs)
        rows = yield self.db.query("SELECT owner FROM mam_archive")
        self.assertEqual(rows, [("bob@localhost",)])
        rows = yield self.db.query("SELECT username FROM mam_prefs")
        self.assertEqual(rows, [])


class StopTests(MAMTestCase):
    """Stopping the module writes what is still buffered."""

    @defer.inlineCallbacks
    def test_flush_on_stop(self):
        self.module.writer.append("alice@localhost", stamp=1.0, with_jid="x@y", direction="in",
                                  account="alice", stanza="<message/>")
        yield self.sm.stopService()
        rows = yield self.db.query("SELECT COUNT(*) FROM mam_archive")
        self.assertEqual(rows, [(1,)])
        self.sm = self.make_manager()
        self.sm.startService()

