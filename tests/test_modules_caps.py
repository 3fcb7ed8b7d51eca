"""xmppd.modules.caps: entity capabilities (XEP-0115) learnt from local sessions and
from remote contacts' resources."""

import base64
import dataclasses
import hashlib

from twisted.internet import defer
from twisted.trial import unittest

import xmppd.modules
from tests.sm_fakes import SessionManagerTestCase, TimerClock, stanza
from xmppd.module import Module, Point, Scope, hook
from xmppd.modules.caps import NS_CAPS, NS_DISCO_INFO, compute_ver, verification_string

NODE = "https://example.org/client"
PEP_NODE = "urn:xmpp:avatar:metadata"


def info_xml(features, identities=(("client", "pc", "", "Test"),), forms=""):
    """A disco#info <query/> (as XML) listing identities, features and forms."""
    parts = []
    for category, kind, lang, name in identities:
        lang_attr = f" xml:lang='{lang}'" if lang else ""
        parts.append(f"<identity category='{category}' type='{kind}' name='{name}'{lang_attr}/>")
    parts += [f"<feature var='{feature}'/>" for feature in features]
    return f"<query xmlns='{NS_DISCO_INFO}'>{''.join(parts)}{forms}</query>"


def query(xml):
    """Parse a <query/> as it would arrive from a client."""
    return stanza(f"<iq>{xml}</iq>").firstChildElement()


def ver_of(features, **kwargs):
    """The sha-1 ver of a disco#info listing those features."""
    return compute_ver(query(info_xml(features, **kwargs)))


FEATURES = ("http://jabber.org/protocol/caps", "http://jabber.org/protocol/disco#info",
            PEP_NODE + "+notify")
VER = ver_of(FEATURES)
OTHER_FEATURES = ("http://jabber.org/protocol/caps", "urn:xmpp:ping")
OTHER_VER = ver_of(OTHER_FEATURES)

SIMPLE = """<query xmlns='http://jabber.org/protocol/disco#info'
  node='http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0='>
<identity category='client' name='Exodus 0.9.1' type='pc'/>
<feature var='http://jabber.org/protocol/caps'/>
<feature var='http://jabber.org/protocol/disco#info'/>
<feature var='http://jabber.org/protocol/disco#items'/>
<feature var='http://jabber.org/protocol/muc'/>
</query>"""

SOFTWARE_FORM = """<x xmlns='jabber:x:data' type='result'>
<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>
<field var='ip_version' type='text-multi'><value>ipv4</value><value>ipv6</value></field>
<field var='os'><value>Mac</value></field>
<field var='os_version'><value>10.5.1</value></field>
<field var='software'><value>Psi</value></field>
<field var='software_version'><value>0.11</value></field>
</x>"""

COMPLEX = f"""<query xmlns='http://jabber.org/protocol/disco#info'
  node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>
<identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
<identity xml:lang='el' category='client' name='\u03a8 0.11' type='pc'/>
<feature var='http://jabber.org/protocol/caps'/>
<feature var='http://jabber.org/protocol/disco#info'/>
<feature var='http://jabber.org/protocol/disco#items'/>
<feature var='http://jabber.org/protocol/muc'/>
{SOFTWARE_FORM}
</query>"""


class VerificationTests(unittest.TestCase):
    """The XEP-0115 §5.1 algorithm and §5.4's checks."""

    def test_simple_example(self):
        """XEP-0115 §5.2."""
        self.assertEqual(compute_ver(query(SIMPLE)), "QgayPKawpkPSDYmwT/WM94uAlu0=")

    def test_complex_example(self):
        """XEP-0115 §5.3: identities with languages, an extended form."""
        self.assertEqual(compute_ver(query(COMPLEX)), "q07IKJEyjvHSyhy//CH0CxmKi8w=")
        self.assertEqual(
            verification_string(query(COMPLEX)),
            "client/pc/el/\u03a8 0.11<client/pc/en/Psi 0.11<http://jabber.org/protocol/caps<"
            "http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<"
            "http://jabber.org/protocol/muc<urn:xmpp:dataforms:softwareinfo<ip_version<ipv4<"
            "ipv6<os<Mac<os_version<10.5.1<software<Psi<software_version<0.11<")

    def test_order_does_not_matter(self):
        """Identities, features, forms and values are sorted."""
        shuffled = info_xml(
            reversed(["http://jabber.org/protocol/caps", "http://jabber.org/protocol/disco#info",
                      "http://jabber.org/protocol/disco#items", "http://jabber.org/protocol/muc"]),
            identities=[("client", "pc", "el", "\u03a8 0.11"), ("client", "pc", "en", "Psi 0.11")],
            forms=SOFTWARE_FORM.replace("<value>ipv4</value><value>ipv6</value>",
                                        "<value>ipv6</value><value>ipv4</value>"))
        self.assertEqual(compute_ver(query(shuffled)), "q07IKJEyjvHSyhy//CH0CxmKi8w=")

    def test_other_algorithm(self):
        """sha-256 over the same string (§5.2's S)."""
        string = ("client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<"
                  "http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<"
                  "http://jabber.org/protocol/muc<")
        self.assertEqual(verification_string(query(SIMPLE)), string)
        self.assertEqual(compute_ver(query(SIMPLE), "sha-256"),
                         base64.b64encode(hashlib.sha256(string.encode()).digest()).decode())

    def test_ill_formed(self):
        """Duplicates, identities without type, two forms of one FORM_TYPE: no ver."""
        cases = [
            info_xml(["urn:a", "urn:a"]),
            info_xml(["urn:a"], identities=[("client", "pc", "", "X")] * 2),
            f"<query xmlns='{NS_DISCO_INFO}'><identity category='client'/></query>",
            info_xml(["urn:a"], forms=SOFTWARE_FORM * 2),
            info_xml(["urn:a"], forms=SOFTWARE_FORM.replace(
                "<value>urn:xmpp:dataforms:softwareinfo</value>",
                "<value>urn:one</value><value>urn:two</value>")),
        ]
        for xml in cases:
            self.assertIsNone(compute_ver(query(xml)), xml)

    def test_forms_left_out(self):
        """A form whose FORM_TYPE is not hidden, or without one, does not count."""
        plain = compute_ver(query(info_xml(["urn:a"])))
        for form in (SOFTWARE_FORM.replace("type='hidden'", "type='text-single'"),
                     "<x xmlns='jabber:x:data' type='result'><field var='a'><value>b</value>"
                     "</field></x>"):
            self.assertEqual(compute_ver(query(info_xml(["urn:a"], forms=form))), plain)
        self.assertNotEqual(compute_ver(query(info_xml(["urn:a"], forms=SOFTWARE_FORM))), plain)


class ChangeRecorder(Module):
    """A module that records what CAPS_CHANGED says."""

    name = "test-caps-recorder"

    def __init__(self, server, settings=None):
        super().__init__(server, settings)
        self.changes = []

        self.remote_changes = []

    @hook(Point.CAPS_CHANGED)
    def changed(self, session, features):
        """Record (full JID, features)."""
        self.changes.append((session.full, features))

    @hook(Point.REMOTE_CAPS)
    def remote(self, full, usernames, features):
        """Record (full JID, usernames, features)."""
        self.remote_changes.append((full, usernames, features))


class CapsTestCase(SessionManagerTestCase):
    """Alice and Bob are connected (no presence yet); helpers to present and answer caps."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.clock = TimerClock()
        self.sm.reactor = self.clock
        self.caps = self.sm.modules["caps"]
        self.recorder = self.sm.modules["test-caps-recorder"]
        self.alice = yield self.connect("alice", presence=False)
        self.bob = yield self.connect("bob", presence=False)

    def make_manager(self, **sections):
        self.patch(xmppd.modules, "MODULES", xmppd.modules.MODULES + (ChangeRecorder,))
        return super().make_manager(**sections)

    def presence(self, session, ver=VER, hash_attr="sha-1", node=NODE, extra=""):
        """The session broadcasts available presence with caps."""
        hash_xml = f" hash='{hash_attr}'" if hash_attr else ""
        return self.client_sends_out(
            session, f"<presence><c xmlns='{NS_CAPS}'{hash_xml} node='{node}' ver='{ver}'/>"
                     f"{extra}</presence>")

    def queries(self, session):
        """The disco#info queries the session got (checked: from its own bare JID)."""
        found = []
        for iq in session.take("iq"):
            self.assertEqual((iq["type"], iq["from"], iq["to"]),
                             ("get", session.jid.userhost(), session.jid.full()))
            [payload] = list(iq.elements())
            self.assertEqual((payload.uri, payload.name), (NS_DISCO_INFO, "query"))
            found.append(iq)
        return found

    def asked(self, session, ver=VER, node=NODE):
        """The one query the session got, for NODE#VER."""
        [iq] = self.queries(session)
        self.assertEqual(iq.query["node"], f"{node}#{ver}")
        return iq

    def answer(self, session, iq, features=FEATURES, **kwargs):
        """The client answers the query with a disco#info."""
        return self.client_sends_out(session, stanza(
            f"<iq type='result' id='{iq['id']}' to='{iq['from']}'>"
            f"{info_xml(features, **kwargs)}</iq>"))

    def features(self, session):
        return self.caps.features_of(session.jid.full())


class CapsTests(CapsTestCase):
    """Alice's and Bob's sessions present caps; the server asks and remembers."""

    @defer.inlineCallbacks
    def test_unknown_ver_asked_then_cached(self):
        """Alice is asked; her verified answer serves Bob without a query."""
        yield self.presence(self.alice)
        self.assertEqual(self.alice.take("presence")[0]["from"], "alice@localhost/res")
        self.assertIsNone(self.features(self.alice))
        yield self.answer(self.alice, self.asked(self.alice))
        self.assertEqual(self.features(self.alice), frozenset(FEATURES))
        self.assertEqual(self.alice.take(), [])
        yield self.presence(self.bob)
        self.assertEqual(self.queries(self.bob), [])
        self.assertEqual(self.features(self.bob), frozenset(FEATURES))
        self.assertEqual(self.recorder.changes, [
            ("alice@localhost/res", frozenset(FEATURES)),
            ("bob@localhost/res", frozenset(FEATURES))])
        self.assertEqual(self.caps.cached(), [("sha-1", VER)])

    @defer.inlineCallbacks
    def test_wants(self):
        """wants(): NODE+notify among the session's features."""
        yield self.presence(self.alice)
        self.assertFalse(self.caps.wants("alice@localhost/res", PEP_NODE))
        yield self.answer(self.alice, self.asked(self.alice))
        self.assertTrue(self.caps.wants("alice@localhost/res", PEP_NODE))
        self.assertFalse(self.caps.wants("alice@localhost/res", "urn:xmpp:ping"))
        self.assertFalse(self.caps.wants("alice@localhost/elsewhere", PEP_NODE))
        self.assertIsNone(self.caps.features_of("alice@localhost/elsewhere"))

    @defer.inlineCallbacks
    def test_coalesced(self):
        """Two sessions present the same unknown ver: one query, both learn."""
        yield self.presence(self.alice)
        yield self.presence(self.bob)
        iq = self.asked(self.alice)
        self.assertEqual(self.queries(self.bob), [])
        yield self.answer(self.alice, iq)
        self.assertEqual(self.features(self.bob), frozenset(FEATURES))
        self.assertEqual(self.queries(self.bob), [])

    @defer.inlineCallbacks
    def test_coalesced_query_fails_next_is_asked(self):
        """The asked session errs: the waiting one is asked in turn."""
        yield self.presence(self.alice)
        yield self.presence(self.bob)
        iq = self.asked(self.alice)
        yield self.client_sends_out(self.alice, stanza(
            f"<iq type='error' id='{iq['id']}' to='alice@localhost'><error type='cancel'>"
            "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"))
        self.assertIsNone(self.features(self.alice))
        yield self.answer(self.bob, self.asked(self.bob))
        self.assertEqual(self.features(self.bob), frozenset(FEATURES))
        self.assertIsNone(self.features(self.alice))
        self.assertEqual(self.recorder.changes, [("bob@localhost/res", frozenset(FEATURES))])

    @defer.inlineCallbacks
    def test_mismatch_not_cached(self):
        """An answer that does not hash to the ver serves its session only."""
        yield self.presence(self.alice)
        yield self.answer(self.alice, self.asked(self.alice), features=OTHER_FEATURES)
        self.assertEqual(self.features(self.alice), frozenset(OTHER_FEATURES))
        self.assertEqual(self.caps.cached(), [])
        yield self.presence(self.bob)
        yield self.answer(self.bob, self.asked(self.bob))
        self.assertEqual(self.features(self.bob), frozenset(FEATURES))
        self.assertEqual(self.features(self.alice), frozenset(OTHER_FEATURES))
        self.assertEqual(self.caps.cached(), [("sha-1", VER)])

    @defer.inlineCallbacks
    def test_legacy_and_unknown_hash_not_cached(self):
        """No hash attribute (legacy caps) or an unknown algorithm: asked every time."""
        for hash_attr in (None, "md5"):
            yield self.presence(self.alice, ver="1.0", hash_attr=hash_attr)
            yield self.presence(self.bob, ver="1.0", hash_attr=hash_attr)
            alice_iq = self.asked(self.alice, ver="1.0")
            bob_iq = self.asked(self.bob, ver="1.0")
            yield self.answer(self.alice, alice_iq)
            yield self.answer(self.bob, bob_iq, features=OTHER_FEATURES)
            self.assertEqual(self.features(self.alice), frozenset(FEATURES))
            self.assertEqual(self.features(self.bob), frozenset(OTHER_FEATURES))
            self.assertEqual(self.caps.cached(), [])
            yield self.client_sends_out(self.alice, "<presence type='unavailable'/>")
            yield self.client_sends_out(self.bob, "<presence type='unavailable'/>")
            self.alice.take()
            self.bob.take()

    @defer.inlineCallbacks
    def test_sha256_verified(self):
        """Another algorithm hashlib has: verified and cached under it."""
        ver = compute_ver(query(info_xml(FEATURES)), "sha-256")
        yield self.presence(self.alice, ver=ver, hash_attr="sha-256")
        yield self.answer(self.alice, self.asked(self.alice, ver=ver))
        self.assertEqual(self.caps.cached(), [("sha-256", ver)])

    @defer.inlineCallbacks
    def test_timeout(self):
        """No answer in 30 s: no features; the next presence of the same caps asks nothing."""
        yield self.presence(self.alice)
        iq = self.asked(self.alice)
        self.clock.advance(30)
        self.assertIsNone(self.features(self.alice))
        yield self.answer(self.alice, iq)
        self.assertIsNone(self.features(self.alice))
        yield self.presence(self.alice)
        self.assertEqual(self.queries(self.alice), [])
        self.assertEqual(self.recorder.changes, [])
        self.assertEqual(self.caps.cached(), [])

    @defer.inlineCallbacks
    def test_one_query_per_session_latest_wins(self):
        """A client changing its ver quickly: one query at a time, then the latest ver."""
        third = ver_of(("urn:third",))
        yield self.presence(self.alice)
        yield self.presence(self.alice, ver=OTHER_VER)
        yield self.presence(self.alice, ver=third)
        first = self.asked(self.alice)
        yield self.answer(self.alice, first)
        self.assertEqual(self.caps.cached(), [("sha-1", VER)])
        self.assertIsNone(self.features(self.alice))  # no longer what it presents
        latest = self.asked(self.alice, ver=third)
        yield self.answer(self.alice, latest, features=("urn:third",))
        self.assertEqual(self.features(self.alice), frozenset({"urn:third"}))
        self.assertEqual(self.queries(self.alice), [])
        self.assertEqual(self.recorder.changes,
                         [("alice@localhost/res", frozenset({"urn:third"}))])

    @defer.inlineCallbacks
    def test_caps_changed_only_on_change(self):
        """CAPS_CHANGED fires when the set changes, not when it stays the same."""
        yield self.presence(self.alice)
        yield self.answer(self.alice, self.asked(self.alice))
        yield self.presence(self.alice, extra="<show>away</show>")
        yield self.client_sends_out(self.alice, "<presence><show>dnd</show></presence>")
        self.assertEqual(self.features(self.alice), frozenset(FEATURES))
        # Another ver (another identity), the same features: no change.
        phone = (("client", "phone", "", "Other"),)
        phone_ver = ver_of(FEATURES, identities=phone)
        yield self.presence(self.alice, ver=phone_ver)
        yield self.answer(self.alice, self.asked(self.alice, ver=phone_ver), identities=phone)
        self.assertEqual(self.caps.cached(), [("sha-1", VER), ("sha-1", phone_ver)])
        self.assertEqual(len(self.recorder.changes), 1)
        yield self.presence(self.alice, ver=OTHER_VER)
        self.assertEqual(self.features(self.alice), frozenset(FEATURES))  # until learnt
        yield self.answer(self.alice, self.asked(self.alice, ver=OTHER_VER),
                          features=OTHER_FEATURES)
        yield self.presence(self.alice)  # back to a cached ver
        self.assertEqual(self.queries(self.alice), [])
        self.assertEqual(self.recorder.changes, [
            ("alice@localhost/res", frozenset(FEATURES)),
            ("alice@localhost/res", frozenset(OTHER_FEATURES)),
            ("alice@localhost/res", frozenset(FEATURES))])

    @defer.inlineCallbacks
    def test_known_features_lost(self):
        """A new ver that cannot be learnt: the old features go, CAPS_CHANGED says so."""
        yield self.presence(self.alice)
        yield self.answer(self.alice, self.asked(self.alice))
        yield self.presence(self.alice, ver=OTHER_VER)
        self.asked(self.alice, ver=OTHER_VER)
        self.clock.advance(30)
        self.assertIsNone(self.features(self.alice))
        self.assertEqual(self.recorder.changes[-1], ("alice@localhost/res", frozenset()))

    @defer.inlineCallbacks
    def test_unavailable_clears(self):
        """Unavailable presence forgets the features (no CAPS_CHANGED); available again: known."""
        yield self.presence(self.alice)
        yield self.answer(self.alice, self.asked(self.alice))
        yield self.client_sends_out(self.alice, "<presence type='unavailable'/>")
        self.assertIsNone(self.features(self.alice))
        self.assertEqual(len(self.recorder.changes), 1)
        yield self.presence(self.alice)
        self.assertEqual(self.queries(self.alice), [])
        self.assertEqual(self.features(self.alice), frozenset(FEATURES))
        self.assertEqual(len(self.recorder.changes), 2)

    @defer.inlineCallbacks
    def test_unavailable_then_new_caps_in_order(self):
        """Available, unavailable, available again in one go: the last caps count."""
        yield self.presence(self.alice)
        yield self.answer(self.alice, self.asked(self.alice))
        for xml in ("<presence type='unavailable'/>",
                    f"<presence><c xmlns='{NS_CAPS}' hash='sha-1' node='{NODE}' ver='{VER}'/>"
                    "</presence>"):
            self.alice.session.receive(stanza(xml))
        yield self.sm.wait_idle()
        self.assertEqual(self.features(self.alice), frozenset(FEATURES))

    @defer.inlineCallbacks
    def test_session_ended(self):
        """The session goes: forgotten; a waiting session is asked instead."""
        yield self.presence(self.alice)
        yield self.presence(self.bob)
        self.asked(self.alice)
        yield self.disconnect(self.alice)
        self.assertIsNone(self.features(self.alice))
        self.assertNotIn("alice@localhost/res", self.caps._entities)
        yield self.answer(self.bob, self.asked(self.bob))
        self.assertEqual(self.features(self.bob), frozenset(FEATURES))

    @defer.inlineCallbacks
    def test_cache_bounded(self):
        """[caps] cache_size: the least recently used ver goes first."""
        self.caps.config = dataclasses.replace(self.caps.config, cache_size=2)
        third = ver_of(("urn:third",))
        for ver, features in ((VER, FEATURES), (OTHER_VER, OTHER_FEATURES),
                              (VER, FEATURES), (third, ("urn:third",))):
            yield self.presence(self.alice, ver=ver)
            for iq in self.queries(self.alice):
                yield self.answer(self.alice, iq, features=features)
        self.assertEqual(self.caps.cached(), [("sha-1", VER), ("sha-1", third)])

    @defer.inlineCallbacks
    def test_max_features(self):
        """[caps] max_features: a longer answer is not used (nor cached)."""
        self.caps.config = dataclasses.replace(self.caps.config, max_features=2)
        yield self.presence(self.alice)
        yield self.answer(self.alice, self.asked(self.alice))
        self.assertIsNone(self.features(self.alice))
        self.assertEqual(self.caps.cached(), [])

    @defer.inlineCallbacks
    def test_only_broadcast_presence(self):
        """Directed presence, unusable caps and a refused priority are not read."""
        yield self.client_sends_out(
            self.alice, f"<presence to='bob@localhost'><c xmlns='{NS_CAPS}' hash='sha-1' "
                        f"node='{NODE}' ver='{VER}'/></presence>")
        yield self.client_sends_out(
            self.alice, f"<presence><c xmlns='{NS_CAPS}' hash='sha-1' node='{NODE}'/></presence>")
        yield self.presence(self.alice, ver="x" * 300)
        yield self.presence(self.alice, extra="<priority>1000</priority>")
        self.assertEqual(self.queries(self.alice), [])

    @defer.inlineCallbacks
    def test_presence_not_consumed(self):
        """The presence with caps is broadcast as usual, caps included."""
        alice2 = yield self.connect("alice", resource="other", presence=False)
        yield self.client_sends_out(alice2, "<presence/>")
        alice2.take()
        yield self.presence(self.alice)
        [seen] = alice2.take("presence")
        self.assertEqual(seen["from"], "alice@localhost/res")
        self.assertEqual(seen.c["ver"], VER)

    def test_no_disco_feature(self):
        """The module advertises nothing."""
        for scope in (Scope.SERVER, Scope.ACCOUNT):
            self.assertNotIn(NS_CAPS, self.sm.modules.features(scope))
        self.assertEqual(list(self.caps.disco_features(Scope.SERVER)), [])


DAVE = "dave@remote.example/phone"


class RemoteCapsTests(CapsTestCase):
    """Presence with caps from a remote resource: followed per local account."""

    def remote_presence(self, to="alice@localhost", sender=DAVE, ver=VER, kind=None):
        """Presence from another server's user arrives for a local account."""
        type_attr = f" type='{kind}'" if kind else ""
        caps = "" if kind else (f"<c xmlns='{NS_CAPS}' hash='sha-1' node='{NODE}'"
                                f" ver='{ver}'/>")
        return self.arrives(f"<presence from='{sender}' to='{to}'{type_attr}>{caps}</presence>")

    def remote_queries(self):
        """The disco#info queries routed to remote.example."""
        found = self.remote.take()
        for iq in found:
            self.assertEqual((iq.name, iq["type"], iq.query.uri), ("iq", "get", NS_DISCO_INFO))
        return found

    def remote_answer(self, iq, features=FEATURES):
        """The remote resource answers across S2S."""
        return self.arrives(stanza(
            f"<iq type='result' id='{iq['id']}' from='{iq['to']}' to='{iq['from']}'>"
            f"{info_xml(features)}</iq>"))

    @defer.inlineCallbacks
    def test_remote_resource_asked_then_followed(self):
        """Asked from the account's bare JID; known features fire REMOTE_CAPS."""
        yield self.remote_presence()
        [iq] = self.remote_queries()
        self.assertEqual((iq["from"], iq["to"], iq.query["node"]),
                         ("alice@localhost", DAVE, f"{NODE}#{VER}"))
        self.assertIsNone(self.caps.features_of(DAVE))
        self.assertEqual(self.caps.remote_resources("dave@remote.example", "alice"), [])
        # Somebody else's answer is no answer.
        yield self.arrives(f"<iq type='result' id='{iq['id']}' from='eve@remote.example/x'"
                           f" to='alice@localhost'>{info_xml(FEATURES)}</iq>")
        self.assertIsNone(self.caps.features_of(DAVE))
        yield self.remote_answer(iq)
        self.assertEqual(self.caps.features_of(DAVE), frozenset(FEATURES))
        self.assertTrue(self.caps.wants(DAVE, PEP_NODE))
        self.assertEqual(self.caps.remote_resources("dave@remote.example", "alice"), [DAVE])
        self.assertEqual(self.caps.remote_resources("dave@remote.example", "bob"), [])
        self.assertEqual(self.recorder.remote_changes,
                         [(DAVE, frozenset({"alice"}), frozenset(FEATURES))])
        self.assertEqual(self.caps.cached(), [("sha-1", VER)])
        # The same presence again: nothing new; to Bob: known at once, for him.
        yield self.remote_presence()
        yield self.remote_presence(to="bob@localhost")
        self.assertEqual(self.remote_queries(), [])
        self.assertEqual(self.recorder.remote_changes[1:],
                         [(DAVE, frozenset({"bob"}), frozenset(FEATURES))])
        self.assertEqual(self.caps.remote_resources("dave@remote.example", "bob"), [DAVE])

    @defer.inlineCallbacks
    def test_remote_ver_from_the_cache(self):
        """A ver a local client taught the server needs no query across S2S."""
        yield self.presence(self.alice)
        yield self.answer(self.alice, self.asked(self.alice))
        yield self.remote_presence(to="bob@localhost")
        self.assertEqual(self.remote_queries(), [])
        self.assertEqual(self.caps.features_of(DAVE), frozenset(FEATURES))

    @defer.inlineCallbacks
    def test_remote_unavailable(self):
        """Unavailable to one account ends following it there; to the last, forgets it."""
        yield self.remote_presence()
        yield self.remote_answer(self.remote_queries()[0])
        yield self.remote_presence(to="bob@localhost")
        yield self.remote_presence(kind="unavailable")
        self.assertEqual(self.recorder.remote_changes[-1],
                         (DAVE, frozenset({"alice"}), frozenset()))
        self.assertEqual(self.caps.remote_resources("dave@remote.example", "alice"), [])
        self.assertEqual(self.caps.remote_resources("dave@remote.example", "bob"), [DAVE])
        yield self.remote_presence(to="bob@localhost", kind="unavailable")
        self.assertIsNone(self.caps.features_of(DAVE))
        self.assertEqual(self.caps._remote, {})
        self.assertEqual(self.caps._remote_of, {})
        self.assertEqual(self.caps._remote_pairs, 0)
        # Back: known from the cache.
        yield self.remote_presence()
        self.assertEqual(self.remote_queries(), [])
        self.assertEqual(self.caps.remote_resources("dave@remote.example", "alice"), [DAVE])

    @defer.inlineCallbacks
    def test_account_deleted(self):
        """A deleted account follows nothing: its pairs are freed, REMOTE_CAPS says so."""
        yield self.remote_presence()
        yield self.remote_answer(self.remote_queries()[0])
        yield self.remote_presence(to="bob@localhost")
        self.sm.modules.fire(Point.ACCOUNT_DELETED, "alice")
        self.assertEqual(self.recorder.remote_changes[-1],
                         (DAVE, frozenset({"alice"}), frozenset()))
        self.assertEqual(self.caps._remote[DAVE].accounts, {"bob"})
        self.assertEqual(self.caps._remote_pairs, 1)
        self.sm.modules.fire(Point.ACCOUNT_DELETED, "bob")
        self.assertEqual((self.caps._remote, self.caps._remote_pairs), ({}, 0))

    @defer.inlineCallbacks
    def test_remote_query_fails_or_changes(self):
        """A failed query leaves no features; a new ver meanwhile is asked next."""
        yield self.remote_presence()
        [first] = self.remote_queries()
        yield self.remote_presence(ver=OTHER_VER)
        self.assertEqual(self.remote_queries(), [])  # one query at a time
        self.clock.advance(30)
        [second] = self.remote_queries()
        self.assertEqual(second.query["node"], f"{NODE}#{OTHER_VER}")
        yield self.arrives(f"<iq type='error' id='{second['id']}' from='{DAVE}'"
                           f" to='alice@localhost'><error type='cancel'><item-not-found"
                           f" xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
        self.assertIsNone(self.caps.features_of(DAVE))
        self.assertEqual(self.recorder.remote_changes, [])

    @defer.inlineCallbacks
    def test_remote_pairs_bounded(self):
        """[caps] max_remote: the resource heard of longest ago makes room."""
        self.caps.config = dataclasses.replace(self.caps.config, max_remote=2)
        erin = "erin@remote.example/pc"
        yield self.remote_presence()
        yield self.remote_answer(self.remote_queries()[0])
        yield self.remote_presence(sender=erin)
        self.assertEqual(len(self.remote_queries()), 0)  # the cached ver
        # Dave's presence (without caps) is the latest now: Erin goes first.
        yield self.arrives(f"<presence from='{DAVE}' to='alice@localhost'/>")
        yield self.remote_presence(to="bob@localhost")
        self.assertEqual(list(self.caps._remote), [DAVE])
        self.assertEqual(self.caps._remote[DAVE].accounts, {"alice", "bob"})
        self.assertEqual(self.recorder.remote_changes[-2:], [
            (erin, frozenset({"alice"}), frozenset()),
            (DAVE, frozenset({"bob"}), frozenset(FEATURES))])
        # No room without dropping the resource itself: carol's pair is not followed.
        yield self.remote_presence(to="carol@localhost")
        self.assertEqual(self.caps._remote[DAVE].accounts, {"alice", "bob"})
        self.assertEqual(self.caps._remote_pairs, 2)

    @defer.inlineCallbacks
    def test_remote_presence_not_read(self):
        """Presence to a full JID (a MUC occupant's), from the local domain or a bare JID."""
        yield self.remote_presence(to="alice@localhost/res")
        yield self.remote_presence(sender="dave@remote.example")
        yield self.remote_presence(sender="remote.example/x")
        yield self.remote_presence(sender="bob@localhost/other")
        self.assertEqual(self.remote_queries(), [])
        self.assertEqual(self.caps._remote, {})
