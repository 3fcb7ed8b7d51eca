"""xmppd.modules.vcard: XEP-0054 vCards, set by their owner and read by anyone."""

import base64
import dataclasses
import hashlib

from twisted.internet import defer

from tests.sm_fakes import FakeSession, error_condition, stanza
from tests.test_modules_caps import info_xml, ver_of
from tests.test_sm_iq import DISCO_INFO, IQTestCase, iq
from xmppd.modules.caps import NS_CAPS
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
    """Alice's available presence carries her vCard photo's hash; Bob is subscribed to her.

    PEP is off here: the stored vCard is the only avatar source (the
    conversion with PEP is tested in ConversionTests).
    """

    def make_manager(self, **sections):
        sections.setdefault("modules", {"disabled": ["pep"]})
        return super().make_manager(**sections)

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        yield self.roster_store.save("alice", RosterItem("bob@localhost", subscription="from"))
        yield self.roster_store.save("bob", RosterItem("alice@localhost", subscription="to"))
        yield self.disconnect(self.alice)
        self.bob = yield self.connect("bob")
        self.alice = yield self.connect("alice", presence=False)

    def database_busy(self):
        """Keep work under way on the database: reads then go to its pool thread, so
        the photo hash loads asynchronously (as under load) and stanzas are held."""
        self.patch(self.db, "_pending", self.db._pending + 1)

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
        self.database_busy()
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
    def test_held_logout_goes_out_when_the_stream_ends(self):
        """A logout with a status sent while the hash loads is not lost to the stream's end."""
        yield self.disconnect(self.alice)
        self.bob.take()
        self.database_busy()
        session = FakeSession()
        session.session = self.sm.bind(session, "alice", "res")
        session.jid = session.session.jid
        session.session.receive(stanza("<presence/>"))
        session.session.receive(stanza("<presence type='unavailable'><status>gone fishing"
                                       "</status></presence>"))
        self.assertEqual(self.bob.sent, [])  # held while the hash loads
        self.sm.unbind(session.session)
        yield self.sm.wait_idle()
        presences = self.bob.take("presence")
        self.assertEqual([p.getAttribute("type") for p in presences], [None, "unavailable"])
        self.assertEqual(str(presences[1].status), "gone fishing")
        rows = yield self.db.query("SELECT status FROM last_activity WHERE username = 'alice'")
        self.assertEqual(rows, [("gone fishing",)])

    @defer.inlineCallbacks
    def test_held_stanzas_are_bounded(self):
        self.module.config = dataclasses.replace(self.module.config, max_held=1)
        yield self.disconnect(self.alice)
        self.bob.take()
        self.database_busy()
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

    @defer.inlineCallbacks
    def test_the_clients_empty_photo_is_left_alone(self):
        """XEP-0398 §4: an empty <photo/> is the client's "no avatar"; an empty <x/> is not."""
        yield self.set_vcard(with_photo("YWJj"))
        seen = yield self.bob_sees(
            "<presence><x xmlns='vcard-temp:x:update'><photo/></x></presence>")
        self.assertEqual(photo(seen), "")
        seen = yield self.bob_sees("<presence><x xmlns='vcard-temp:x:update'/></presence>")
        self.assertEqual(photo(seen), SHA1_ABC)


# -- XEP-0398: conversion between PEP avatars and the vCard ----------------------------

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_EVENT = NS_PUBSUB + "#event"
NS_DATA = "urn:xmpp:avatar:data"
NS_META = "urn:xmpp:avatar:metadata"
NS_NICK = "http://jabber.org/protocol/nick"
CONVERSION = "urn:xmpp:pep-vcard-conversion:0"

#: A 3x2 PNG's first bytes (signature and IHDR; enough for its header).
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x03\x00\x00\x00\x02"
       b"\x08\x06\x00\x00\x00\x00\x00\x00\x00")
PNG_B64 = base64.b64encode(PNG).decode()
PNG_SHA1 = hashlib.sha1(PNG).hexdigest()


def publish(node, item_id, payload, options=""):
    item = f"<item id='{item_id}'>{payload}</item>" if item_id else f"<item>{payload}</item>"
    return (f"<pubsub xmlns='{NS_PUBSUB}'><publish node='{node}'>{item}</publish>"
            f"{options}</pubsub>")


def data_payload(b64):
    return f"<data xmlns='{NS_DATA}'>{b64}</data>"


def metadata_payload(*infos):
    body = "".join("<info " + " ".join(f"{k}='{v}'" for k, v in info.items()) + "/>"
                   for info in infos)
    return f"<metadata xmlns='{NS_META}'>{body}</metadata>"


def png_info(**extra):
    info = {"bytes": str(len(PNG)), "id": PNG_SHA1, "type": "image/png"}
    info.update(extra)
    return info


def events(session):
    """(node, [item ids or 'retract:ID' / 'purge']) of the PEP notifications a session got."""
    found = []
    for message in session.take("message"):
        [event] = [c for c in message.elements() if (c.uri, c.name) == (NS_EVENT, "event")]
        for child in event.elements():
            entries = [f"{e.name}:{e.getAttribute('id')}" for e in child.elements()]
            found.append((child.getAttribute("node"), child.name, entries, message))
    return found


class ConversionTests(IQTestCase):
    """Alice's PEP avatar and her vCard are one; Bob (subscribed) follows her with +notify caps."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        yield self.roster_store.save("alice", RosterItem("bob@localhost", subscription="from"))
        yield self.roster_store.save("bob", RosterItem("alice@localhost", subscription="to"))
        yield self.disconnect(self.alice)
        self.bob = yield self.connect("bob")
        yield self.present_caps(self.bob, [NS_META + "+notify", NS_NICK + "+notify"])
        self.alice = yield self.connect("alice", presence=False)
        self.bob.take()

    @property
    def module(self):
        return self.sm.modules["vcard"]

    @defer.inlineCallbacks
    def present_caps(self, session, features):
        """The session's presence carries caps listing these features; it answers the query."""
        listed = ["http://jabber.org/protocol/caps"] + list(features)
        ver = ver_of(listed)
        yield self.client_sends_out(
            session, f"<presence><c xmlns='{NS_CAPS}' hash='sha-1' node='n' ver='{ver}'/>"
                     "</presence>")
        [ask] = session.take("iq")
        yield self.client_sends_out(session, stanza(
            f"<iq type='result' id='{ask['id']}' to='{ask['from']}'>{info_xml(listed)}</iq>"))
        session.take()

    @defer.inlineCallbacks
    def ok(self, xml, session=None):
        reply = yield self.asks(xml, session)
        self.assertEqual(reply["type"], "result", reply.toXml())
        return reply

    def set_vcard(self, body):
        return self.ok(iq(None, body, kind="set"))

    def publish(self, node, item_id, payload, session=None):
        return self.ok(iq(None, publish(node, item_id, payload), kind="set"), session)

    @defer.inlineCallbacks
    def publish_png_avatar(self):
        yield self.publish(NS_DATA, PNG_SHA1, data_payload(PNG_B64))
        yield self.publish(NS_META, PNG_SHA1, metadata_payload(png_info()))

    @defer.inlineCallbacks
    def vcard_of_alice(self, session=None):
        reply = yield self.ok(iq("alice@localhost", GET), session)
        [element] = list(reply.elements())
        return element

    def photo_of(self, element):
        """{child name: text} of the vCard's one PHOTO, or None without one."""
        photos = list(element.elements("vcard-temp", "PHOTO"))
        if not photos:
            return None
        [found] = photos
        return {c.name: str(c) for c in found.elements()}

    @defer.inlineCallbacks
    def hash_seen(self):
        """Alice sends presence; the hash Bob's copy carries."""
        yield self.client_sends_out(self.alice, "<presence/>")
        [seen] = self.bob.take("presence")
        return photo(seen)

    @defer.inlineCallbacks
    def items(self, node, session=None):
        reply = yield self.asks(iq("alice@localhost" if session else None,
                                   f"<pubsub xmlns='{NS_PUBSUB}'><items node='{node}'/></pubsub>"),
                                session)
        return reply

    # -- discovery ---------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_disco_feature_on_accounts_with_pep(self):
        reply = yield self.ok(iq("alice@localhost", DISCO_INFO))
        self.assertIn(CONVERSION, reply.toXml())
        reply = yield self.ok(iq("localhost", DISCO_INFO))
        self.assertNotIn(CONVERSION, reply.toXml())
        yield self.sm.stopService()
        self.sm = self.make_manager(modules={"disabled": ["pep"]})
        self.sm.startService()
        self.alice = yield self.connect("alice")
        reply = yield self.ok(iq("alice@localhost", DISCO_INFO))
        self.assertNotIn(CONVERSION, reply.toXml())
        self.assertIn("vcard-temp", reply.toXml())

    # -- PEP to vCard ------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_no_account_no_pep_lookup(self):
        """A vCard get to a name without an account does not load a PEP service for it."""
        reply = yield self.ok(iq("ghost@localhost", GET))
        self.assertEqual(list(reply.vCard.elements()), [])
        self.assertNotIn("ghost@localhost", self.sm.modules["pep"].engine._services)

    @defer.inlineCallbacks
    def test_pep_avatar_shows_in_the_vcard_and_presence(self):
        yield self.set_vcard(vcard("<FN>Alice</FN>"))
        self.assertEqual((yield self.hash_seen()), "")
        yield self.publish_png_avatar()
        for session in (self.alice, self.bob):
            element = yield self.vcard_of_alice(session)
            self.assertEqual([c.name for c in element.elements()], ["FN", "PHOTO"])
            self.assertEqual(self.photo_of(element), {"TYPE": "image/png", "BINVAL": PNG_B64})
        self.assertEqual((yield self.hash_seen()), PNG_SHA1)
        # Her nodes were made with PEP's default, presence access: a stranger
        # reading the vCard does not get the avatar (as from Prosody).
        carol = yield self.connect("carol")
        element = yield self.vcard_of_alice(carol)
        self.assertIsNone(self.photo_of(element))
        self.assertEqual(str(element.FN), "Alice")

    @defer.inlineCallbacks
    def test_pep_avatar_replaces_the_stored_photo_and_hash_loads_at_login(self):
        yield self.set_vcard(with_photo("YWJj"))
        yield self.publish_png_avatar()
        element = yield self.vcard_of_alice()
        self.assertEqual(self.photo_of(element)["BINVAL"], PNG_B64)
        stored = yield self.db.query("SELECT vcard FROM vcards WHERE username = 'alice'")
        self.assertIn("YWJj", stored[0][0])  # the PEP to vCard direction writes nothing
        yield self.disconnect(self.alice)
        self.bob.take()
        self.alice = yield self.connect("alice", presence=False)
        self.assertEqual((yield self.hash_seen()), PNG_SHA1)

    @defer.inlineCallbacks
    def test_empty_metadata_disables_the_avatar(self):
        yield self.publish_png_avatar()
        self.assertEqual((yield self.hash_seen()), PNG_SHA1)
        yield self.publish(NS_META, "off", f"<metadata xmlns='{NS_META}'/>")
        self.assertEqual((yield self.hash_seen()), "")
        element = yield self.vcard_of_alice()
        self.assertIsNone(self.photo_of(element))

    @defer.inlineCallbacks
    def test_url_only_avatar_is_an_extval(self):
        url = "https://example.org/a.png"
        yield self.publish(NS_META, PNG_SHA1, metadata_payload(png_info(url=url)))
        element = yield self.vcard_of_alice()
        self.assertEqual(self.photo_of(element), {"TYPE": "image/png", "EXTVAL": url})
        self.assertEqual((yield self.hash_seen()), PNG_SHA1)

    @defer.inlineCallbacks
    def test_the_info_without_url_is_chosen(self):
        other = "0" * 40
        yield self.publish(NS_DATA, PNG_SHA1, data_payload(PNG_B64))
        yield self.publish(NS_META, PNG_SHA1, metadata_payload(
            {"bytes": "9", "id": other, "type": "image/webp", "url": "https://example.org/a"},
            png_info()))
        element = yield self.vcard_of_alice()
        self.assertEqual(self.photo_of(element), {"TYPE": "image/png", "BINVAL": PNG_B64})
        self.assertEqual((yield self.hash_seen()), PNG_SHA1)

    @defer.inlineCallbacks
    def test_malformed_metadata_is_no_avatar(self):
        for payload in (f"<metadata xmlns='{NS_META}'><info bytes='3'/></metadata>",
                        metadata_payload(png_info(id="not-a-sha1")),
                        f"<metadata xmlns='urn:other'>{PNG_SHA1}</metadata>"):
            yield self.publish(NS_DATA, PNG_SHA1, data_payload(PNG_B64))
            yield self.publish(NS_META, "m", payload)
            self.assertEqual((yield self.hash_seen()), "", payload)
            element = yield self.vcard_of_alice()
            self.assertIsNone(self.photo_of(element), payload)

    @defer.inlineCallbacks
    def test_missing_or_bad_data_is_no_photo(self):
        """No data item, data that is not base64, data that does not hash to the id."""
        yield self.publish(NS_META, PNG_SHA1, metadata_payload(png_info()))
        self.assertIsNone(self.photo_of((yield self.vcard_of_alice())))
        for b64 in ("not base64!", "YWJj"):
            yield self.publish(NS_DATA, PNG_SHA1, data_payload(b64))
            self.assertIsNone(self.photo_of((yield self.vcard_of_alice())), b64)
        yield self.publish(NS_DATA, PNG_SHA1, data_payload(PNG_B64))
        self.assertIsNotNone(self.photo_of((yield self.vcard_of_alice())))

    @defer.inlineCallbacks
    def test_retracting_the_metadata_falls_back_to_the_stored_vcard(self):
        yield self.publish(NS_META, PNG_SHA1, metadata_payload(png_info(url="https://e.org/")))
        self.assertEqual((yield self.hash_seen()), PNG_SHA1)
        yield self.ok(iq(None, f"<pubsub xmlns='{NS_PUBSUB}'><retract node='{NS_META}'>"
                               f"<item id='{PNG_SHA1}'/></retract></pubsub>", kind="set"))
        self.assertEqual((yield self.hash_seen()), "")

    @defer.inlineCallbacks
    def test_deleting_the_metadata_node_brings_back_the_stored_photo(self):
        yield self.set_vcard(with_photo("YWJj"))
        yield self.publish_png_avatar()
        self.assertEqual((yield self.hash_seen()), PNG_SHA1)
        yield self.ok(iq(None, f"<pubsub xmlns='{NS_PUBSUB}#owner'><delete node='{NS_META}'/>"
                               "</pubsub>", kind="set"))
        self.assertEqual((yield self.hash_seen()), SHA1_ABC)
        element = yield self.vcard_of_alice()
        self.assertEqual(self.photo_of(element), {"TYPE": "image/png", "BINVAL": "YWJj"})

    # -- vCard to PEP ------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_vcard_photo_is_published_to_pep(self):
        yield self.set_vcard(vcard(f"<FN>A</FN><PHOTO><TYPE>image/png</TYPE>"
                                   f"<BINVAL>{PNG_B64[:20]}\n{PNG_B64[20:]}</BINVAL></PHOTO>"))
        [(node, kind, entries, message)] = events(self.bob)
        self.assertEqual((node, kind, entries), (NS_META, "items", [f"item:{PNG_SHA1}"]))
        self.assertEqual(message["from"], "alice@localhost")
        info = message.event.items.item.metadata.info
        self.assertEqual(dict(info.attributes), {"bytes": str(len(PNG)), "id": PNG_SHA1,
                                                 "type": "image/png", "width": "3",
                                                 "height": "2"})
        reply = yield self.items(NS_DATA)
        self.assertEqual(reply.pubsub.items.item["id"], PNG_SHA1)
        self.assertEqual(str(reply.pubsub.items.item.data), PNG_B64)
        self.assertEqual((yield self.hash_seen()), PNG_SHA1)
        element = yield self.vcard_of_alice()
        self.assertEqual(self.photo_of(element), {"TYPE": "image/png", "BINVAL": PNG_B64})
        # The nodes it created are open (Prosody's choice): anyone reads them.
        carol = yield self.connect("carol")
        for node in (NS_DATA, NS_META):
            reply = yield self.items(node, carol)
            self.assertEqual(reply["type"], "result", reply.toXml())
        self.assertIsNotNone(self.photo_of((yield self.vcard_of_alice(carol))))

    @defer.inlineCallbacks
    def test_type_from_the_image_when_the_vcard_has_none(self):
        yield self.set_vcard(vcard(f"<PHOTO><BINVAL>{PNG_B64}</BINVAL></PHOTO>"))
        [(_, _, _, message)] = events(self.bob)
        self.assertEqual(message.event.items.item.metadata.info["type"], "image/png")
        yield self.set_vcard(vcard("<PHOTO><BINVAL>YWJj</BINVAL></PHOTO>"))  # not an image
        [(_, _, _, message)] = events(self.bob)
        info = message.event.items.item.metadata.info
        self.assertEqual(dict(info.attributes), {"bytes": "3", "id": SHA1_ABC})

    @defer.inlineCallbacks
    def test_existing_nodes_keep_their_configuration(self):
        yield self.publish_png_avatar()  # created with PEP's default, presence access
        self.bob.take()
        yield self.set_vcard(with_photo("YWJj"))
        [(node, _, entries, _)] = events(self.bob)
        self.assertEqual((node, entries), (NS_META, [f"item:{SHA1_ABC}"]))
        carol = yield self.connect("carol")
        reply = yield self.items(NS_DATA, carol)
        self.assertEqual(error_condition(reply), "not-authorized")

    @defer.inlineCallbacks
    def test_a_vcard_without_photo_empties_the_pep_avatar(self):
        """As Prosody: both nodes are emptied, silently; the hash and PHOTO go."""
        yield self.set_vcard(with_photo("YWJj"))
        self.bob.take()
        self.assertEqual((yield self.hash_seen()), SHA1_ABC)
        for body in ("<FN>A</FN>", "<PHOTO><EXTVAL>https://e.org/a</EXTVAL></PHOTO>",
                     "<PHOTO><BINVAL>!!</BINVAL></PHOTO>"):
            yield self.set_vcard(with_photo("YWJj"))
            self.bob.take()
            yield self.set_vcard(vcard(body))
            self.assertEqual(events(self.bob), [], body)
            for node in (NS_DATA, NS_META):
                reply = yield self.items(node)
                self.assertEqual(list(reply.pubsub.items.elements()), [], body)
            self.assertEqual((yield self.hash_seen()), "", body)
        element = yield self.vcard_of_alice()  # the stored EXTVAL stands (no metadata item)
        self.assertEqual(self.photo_of(element), {"BINVAL": "!!"})

    @defer.inlineCallbacks
    def test_the_conversion_is_not_converted_back(self):
        """One set: one metadata notification, one hash change, the vCard stored once."""
        changes = []
        set_photo_hash = self.module.set_photo_hash
        self.patch(self.module, "set_photo_hash",
                   lambda user, value: changes.append(value) or set_photo_hash(user, value))
        yield self.set_vcard(with_photo("YWJj"))
        self.assertEqual(len(events(self.bob)), 1)
        self.assertEqual(changes, [SHA1_ABC])
        self.assertEqual(self.module._converting, {})
        yield self.set_vcard(vcard("<FN>A</FN>"))
        self.assertEqual(changes, [SHA1_ABC, None])
        # A publish by the client itself is followed.
        yield self.publish_png_avatar()
        self.assertEqual(changes, [SHA1_ABC, None, PNG_SHA1])

    @defer.inlineCallbacks
    def test_a_photo_too_large_for_pep_is_refused(self):
        yield self.sm.stopService()
        self.sm = self.make_manager(pubsub={"max_item_size": 1024})
        self.sm.startService()
        self.alice = yield self.connect("alice")
        yield self.set_vcard(with_photo("YWJj"))
        big = base64.b64encode(b"x" * 900).decode()
        reply = yield self.asks(iq(None, with_photo(big), kind="set"))
        self.assertEqual(error_condition(reply), "not-acceptable")
        element = yield self.vcard_of_alice()
        self.assertEqual(self.photo_of(element)["BINVAL"], "YWJj")
        reply = yield self.items(NS_META)
        self.assertEqual(reply.pubsub.items.item["id"], SHA1_ABC)

    # -- the nickname (XEP-0172) -----------------------------------------------------------

    @defer.inlineCallbacks
    def test_pep_nick_is_notified_and_is_the_nickname_without_a_vcard(self):
        yield self.publish(NS_NICK, None, f"<nick xmlns='{NS_NICK}'>Ali</nick>")
        [(node, kind, _, message)] = events(self.bob)
        self.assertEqual((node, kind, message["to"]), (NS_NICK, "items", "bob@localhost/res"))
        self.assertEqual(str(message.event.items.item.nick), "Ali")
        element = yield self.vcard_of_alice(self.bob)
        self.assertEqual([(c.name, str(c)) for c in element.elements()], [("NICKNAME", "Ali")])
        carol = yield self.connect("carol")  # not allowed to read the nick node
        element = yield self.vcard_of_alice(carol)
        self.assertEqual(list(element.elements()), [])
        # A stored vCard is what the user wrote (as a vCard4 is in Prosody).
        yield self.set_vcard(vcard("<FN>Alice</FN>"))
        element = yield self.vcard_of_alice()
        self.assertEqual([c.name for c in element.elements()], ["FN"])
