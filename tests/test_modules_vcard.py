"""xmppd.modules.vcard: XEP-0054 vCards, set by their owner and read by anyone."""

import dataclasses

from twisted.internet import defer

from tests.sm_fakes import FakeSession, error_condition, stanza
from tests.test_sm_iq import DISCO_INFO, IQTestCase, iq
from xmppd.storage.roster import RosterItem

GET = "<vCard xmlns='vcard-temp'/>"


def vcard(body):
    return f"<vCard xmlns='vcard-temp'>{body}</vCard>"


class VCardTests(IQTestCase):
    """Alice keeps her vCard; Bob reads it and may not change it."""

    def child(self, reply):
        self.assertEqual(reply["type"], "result", reply.toXml())
        [element] = [c for c in reply.children if hasattr(c, "name")]
        self.assertEqual((element.uri, element.name), ("vcard-temp", "vCard"))
        return element

    def fields(self, reply):
        return {c.name: str(c) for c in self.child(reply).elements()}

    @defer.inlineCallbacks
    def test_set_and_get_own_with_and_without_to(self):
        reply = yield self.asks(iq(None, vcard("<FN>Alice A.</FN><NICKNAME>al</NICKNAME>"),
                                   kind="set"))
        self.assertEqual(reply["type"], "result", reply.toXml())
        self.assertEqual(list(reply.children), [])
        for to in (None, "alice@localhost"):
            reply = yield self.asks(iq(to, GET))
            self.assertEqual(self.fields(reply), {"FN": "Alice A.", "NICKNAME": "al"})
        yield self.asks(iq("alice@localhost", vcard("<FN>Alice B.</FN>"), kind="set"))
        reply = yield self.asks(iq(None, GET))
        self.assertEqual(self.fields(reply), {"FN": "Alice B."})

    @defer.inlineCallbacks
    def test_anyone_reads_someone_elses(self):
        yield self.asks(iq(None, vcard("<TITLE>Coucou</TITLE><PHOTO><TYPE>image/png</TYPE>"
                                       "<BINVAL>Y291Y291</BINVAL></PHOTO>"), kind="set"))
        bob = yield self.connect("bob")
        reply = yield self.asks(iq("alice@localhost", GET), bob)
        self.assertEqual(reply["from"], "alice@localhost")
        self.assertEqual(self.fields(reply), {"TITLE": "Coucou", "PHOTO": ""})
        photo = self.child(reply).PHOTO
        self.assertEqual(str(photo.BINVAL), "Y291Y291")

    @defer.inlineCallbacks
    def test_nothing_stored_is_an_empty_vcard(self):
        for to in ("bob@localhost", "ghost@localhost", None):
            reply = yield self.asks(iq(to, GET))
            self.assertEqual(self.fields(reply), {})

    @defer.inlineCallbacks
    def test_only_the_owner_sets(self):
        bob = yield self.connect("bob")
        reply = yield self.asks(iq("alice@localhost", vcard("<FN>Mallory</FN>"), kind="set"), bob)
        self.assertEqual(error_condition(reply), "forbidden")
        reply = yield self.asks(iq("alice@localhost", GET))
        self.assertEqual(self.fields(reply), {})

    @defer.inlineCallbacks
    def test_the_server_has_none(self):
        reply = yield self.asks(iq("localhost", GET))
        self.assertEqual(error_condition(reply), "item-not-found")
        reply = yield self.asks(iq("localhost", vcard("<FN>x</FN>"), kind="set"))
        self.assertEqual(error_condition(reply), "forbidden")

    @defer.inlineCallbacks
    def test_disco_feature_for_server_and_accounts(self):
        for to in ("localhost", "alice@localhost"):
            reply = yield self.asks(iq(to, DISCO_INFO))
            self.assertIn("var='vcard-temp'", reply.toXml().replace('"', "'"))

    @defer.inlineCallbacks
    def test_size_limit(self):
        yield self.sm.stopService()
        self.sm = self.make_manager(vcard={"max_size": 2048})
        self.sm.startService()
        self.alice = yield self.connect("alice")
        reply = yield self.asks(iq(None, vcard("<DESC>" + "x" * 2000 + "</DESC>"), kind="set"))
        self.assertEqual(reply["type"], "result", reply.toXml())
        reply = yield self.asks(iq(None, vcard("<DESC>" + "y" * 2100 + "</DESC>"), kind="set"))
        self.assertEqual(error_condition(reply), "not-acceptable")
        reply = yield self.asks(iq(None, GET))
        self.assertEqual(self.fields(reply), {"DESC": "x" * 2000})

    @defer.inlineCallbacks
    def test_kept_across_restart_and_deleted_with_the_account(self):
        bob = yield self.connect("bob")
        yield self.asks(iq(None, vcard("<FN>Bob</FN>"), kind="set"), bob)
        yield self.sm.stopService()
        self.sm = self.make_manager()
        self.sm.startService()
        self.alice = yield self.connect("alice")
        reply = yield self.asks(iq("bob@localhost", GET))
        self.assertEqual(self.fields(reply), {"FN": "Bob"})
        yield self.accounts.delete("bob")
        rows = yield self.db.query("SELECT * FROM vcards WHERE username = 'bob'")
        self.assertEqual(rows, [])
        reply = yield self.asks(iq("bob@localhost", GET))
        self.assertEqual(self.fields(reply), {})


# -- XEP-0153: the avatar hash in presence ------------------------------------------

NS_UPDATE = "vcard-temp:x:update"
#: SHA-1 of b"abc" (FIPS 180 test vector) and of b"abcd".
SHA1_ABC = "a9993e364706816aba3e25717850c26c9cd0d89d"
SHA1_ABCD = "81fe8bfe87576c3ecb22426f8e57847382917acf"


def with_photo(binval):
    return vcard(f"<FN>A</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>{binval}</BINVAL></PHOTO>")


def updates(stanza):
    """The vcard-temp:x:update elements of a stanza."""
    return [c for c in stanza.elements() if (c.uri, c.name) == (NS_UPDATE, "x")]


def photo(stanza):
    """The photo hash a presence carries ('' for an empty <photo/>)."""
    [x] = updates(stanza)
    [element] = list(x.elements())
    assert (element.uri, element.name) == (NS_UPDATE, "photo"), x.toXml()
    return str(element)


class AvatarHashTests(IQTestCase):
    """Alice's available presence carries her vCard photo's hash; Bob is subscribed to her."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        yield self.roster_store.save("alice", RosterItem("bob@localhost", subscription="from"))
        yield self.roster_store.save("bob", RosterItem("alice@localhost", subscription="to"))
        yield self.disconnect(self.alice)
        self.bob = yield self.connect("bob")
        self.alice = yield self.connect("alice", presence=False)

    @property
    def module(self):
        return self.sm.modules["vcard"]

    @defer.inlineCallbacks
    def set_vcard(self, body):
        reply = yield self.asks(iq(None, body, kind="set"))
        self.assertEqual(reply["type"], "result", reply.toXml())

    @defer.inlineCallbacks
    def bob_sees(self, xml="<presence/>"):
        """Alice sends presence (as c2s does); the one available presence Bob gets."""
        yield self.client_sends_out(self.alice, xml)
        [seen] = self.bob.take("presence")
        self.assertEqual(seen["from"], "alice@localhost/res")
        return seen

    @defer.inlineCallbacks
    def test_hash_of_a_known_photo(self):
        yield self.set_vcard(with_photo("YW\n  Jj"))  # base64 of "abc", line-wrapped
        seen = yield self.bob_sees()
        self.assertEqual(photo(seen), SHA1_ABC)
        self.assertEqual(photo(self.alice.session.presence), SHA1_ABC)

    @defer.inlineCallbacks
    def test_no_vcard_or_no_photo_is_an_empty_photo(self):
        seen = yield self.bob_sees()
        self.assertEqual(photo(seen), "")
        yield self.set_vcard(vcard("<FN>No picture</FN>"))
        seen = yield self.bob_sees("<presence><show>away</show></presence>")
        self.assertEqual(photo(seen), "")
        self.assertEqual(str(seen.show), "away")

    @defer.inlineCallbacks
    def test_malformed_binval_is_no_photo(self):
        for binval in ("not*base64!", "YWJ", "", "===="):
            yield self.set_vcard(with_photo(binval))
            seen = yield self.bob_sees()
            self.assertEqual(photo(seen), "", binval)
        self.assertEqual(self.flushLoggedErrors(), [])

    @defer.inlineCallbacks
    def test_hash_follows_a_vcard_set_without_resending_presence(self):
        yield self.set_vcard(with_photo("YWJj"))
        seen = yield self.bob_sees()
        self.assertEqual(photo(seen), SHA1_ABC)
        yield self.set_vcard(with_photo("YWJjZA=="))
        self.assertEqual(self.bob.take("presence"), [])  # as Prosody: no presence of its own
        seen = yield self.bob_sees()
        self.assertEqual(photo(seen), SHA1_ABCD)
        yield self.set_vcard(vcard("<FN>Removed it</FN>"))
        seen = yield self.bob_sees()
        self.assertEqual(photo(seen), "")

    @defer.inlineCallbacks
    def test_the_clients_own_element_is_replaced(self):
        yield self.set_vcard(with_photo("YWJj"))
        seen = yield self.bob_sees(
            "<presence><x xmlns='vcard-temp:x:update'><photo>deadbeef</photo></x>"
            "<x xmlns='vcard-temp:x:update'/></presence>")
        self.assertEqual(photo(seen), SHA1_ABC)

    @defer.inlineCallbacks
    def test_directed_presence_gets_it(self):
        yield self.set_vcard(with_photo("YWJj"))
        carol = yield self.connect("carol")
        yield self.client_sends_out(self.alice, "<presence to='carol@localhost/res'/>")
        [seen] = carol.take("presence")
        self.assertEqual(photo(seen), SHA1_ABC)
        yield self.client_sends_out(self.alice, "<presence to='room@remote.example/al'/>")
        [out] = self.remote.take()
        self.assertEqual(out["to"], "room@remote.example/al")
        self.assertEqual(photo(out), SHA1_ABC)

    @defer.inlineCallbacks
    def test_not_for_other_presence_types_nor_other_stanzas(self):
        yield self.set_vcard(with_photo("YWJj"))
        yield self.bob_sees()
        yield self.client_sends_out(self.alice, "<presence type='unavailable'/>")
        [gone] = self.bob.take("presence")
        self.assertEqual(gone["type"], "unavailable")
        self.assertEqual(updates(gone), [])
        for xml in ("<presence to='dan@remote.example' type='subscribe'/>",
                    "<presence to='dan@remote.example' type='probe'/>",
                    "<message to='dan@remote.example'><body>hi</body></message>"):
            yield self.client_sends_out(self.alice, xml)
            [out] = self.remote.take()
            self.assertEqual(updates(out), [], xml)

    @defer.inlineCallbacks
    def test_probe_answers_carry_it(self):
        yield self.set_vcard(with_photo("YWJj"))
        yield self.bob_sees()
        bob2 = yield self.connect("bob", resource="other", presence=False)
        yield self.client_sends(bob2, "<presence/>")
        [seen] = [p for p in bob2.take("presence") if p["from"] == "alice@localhost/res"]
        self.assertEqual(photo(seen), SHA1_ABC)

    @defer.inlineCallbacks
    def test_loaded_at_login_and_held_until_loaded(self):
        """A presence sent before the hash is loaded waits for it; what follows stays after it."""
        yield self.set_vcard(with_photo("YWJj"))
        yield self.disconnect(self.alice)
        self.bob.take()
        yield self.db.execute("UPDATE vcards SET vcard = ? WHERE username = 'alice'",
                              with_photo("YWJjZA=="))  # changed while she was away
        session = FakeSession()
        session.session = self.sm.bind(session, "alice", "res")
        session.jid = session.session.jid
        session.session.receive(stanza("<presence/>"))
        session.session.receive(stanza("<message to='bob@localhost' id='m1'><body>hi</body>"
                                       "</message>"))
        self.assertEqual(self.bob.sent, [])  # both held while the hash loads
        yield self.sm.wait_idle()
        received = {e.name: e for e in self.bob.take()}
        self.assertEqual(sorted(received), ["message", "presence"])
        self.assertEqual(photo(received["presence"]), SHA1_ABCD)
        self.assertEqual(str(received["message"].body), "hi")

    @defer.inlineCallbacks
    def test_held_stanzas_are_bounded(self):
        self.module.config = dataclasses.replace(self.module.config, max_held=1)
        yield self.disconnect(self.alice)
        self.bob.take()
        session = FakeSession()
        session.session = self.sm.bind(session, "alice", "res")
        session.jid = session.session.jid
        session.session.receive(stanza("<presence/>"))
        session.session.receive(stanza("<message to='bob@localhost' id='m1'/>"))
        yield self.sm.wait_idle()
        [refused] = session.take("message")
        self.assertEqual(error_condition(refused), "resource-constraint")
        self.assertEqual([e.name for e in self.bob.take()], ["presence"])

    @defer.inlineCallbacks
    def test_forgotten_when_the_last_session_ends(self):
        yield self.set_vcard(with_photo("YWJj"))
        yield self.bob_sees()
        self.assertIn("alice", self.module._hashes)
        yield self.disconnect(self.alice)
        self.assertNotIn("alice", self.module._hashes)
        self.module.set_photo_hash("alice", SHA1_ABCD)  # offline: not kept
        self.assertNotIn("alice", self.module._hashes)

    @defer.inlineCallbacks
    def test_set_photo_hash(self):
        """Another avatar source (XEP-0398) sets the hash; None means no photo."""
        self.module.set_photo_hash("alice", SHA1_ABCD.upper())
        seen = yield self.bob_sees()
        self.assertEqual(photo(seen), SHA1_ABCD)
        self.module.set_photo_hash("alice", None)
        seen = yield self.bob_sees()
        self.assertEqual(photo(seen), "")

    @defer.inlineCallbacks
    def test_a_failed_load_is_no_photo(self):
        yield self.set_vcard(with_photo("YWJj"))
        yield self.disconnect(self.alice)
        self.bob.take()
        query = self.db.query

        def failing(sql, *params):
            if "FROM vcards" in sql:
                return defer.fail(RuntimeError("db down"))
            return query(sql, *params)

        self.patch(self.db, "query", failing)
        self.alice = yield self.connect("alice", presence=False, roster=False)
        seen = yield self.bob_sees()
        self.assertEqual(photo(seen), "")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @defer.inlineCallbacks
    def test_switched_off_and_on(self):
        self.module.config = dataclasses.replace(self.module.config, presence_hash=False)
        yield self.set_vcard(with_photo("YWJj"))
        seen = yield self.bob_sees()
        self.assertEqual(updates(seen), [])
        seen = yield self.bob_sees(
            "<presence><x xmlns='vcard-temp:x:update'><photo>beef</photo></x></presence>")
        self.assertEqual(photo(seen), "beef")  # left alone while off
        self.module.config = dataclasses.replace(self.module.config, presence_hash=True)
        seen = yield self.bob_sees()
        self.assertEqual(photo(seen), SHA1_ABC)

    @defer.inlineCallbacks
    def test_off_at_login_loads_when_switched_on(self):
        yield self.set_vcard(with_photo("YWJj"))
        yield self.disconnect(self.alice)
        self.bob.take()
        self.module.config = dataclasses.replace(self.module.config, presence_hash=False)
        self.alice = yield self.connect("alice", presence=False)
        self.assertNotIn("alice", self.module._hashes)
        self.module.config = dataclasses.replace(self.module.config, presence_hash=True)
        seen = yield self.bob_sees()
        self.assertEqual(photo(seen), SHA1_ABC)
