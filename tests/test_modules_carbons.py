"""xmppd.modules.carbons: XEP-0280 Message Carbons, sent and received copies."""

from twisted.internet import defer
from twisted.words.xish import domish
from wokkel.generic import parseXml

from tests.sm_fakes import REMOTE, SessionManagerTestCase, error_condition
from tests.test_sm_iq import iq
from xmppd.modules import carbons as carbons_module
from xmppd.stanza import serialize

NS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
ENABLE = f"<enable xmlns='{NS}'/>"
DISABLE = f"<disable xmlns='{NS}'/>"
PRIVATE = f"<private xmlns='{NS}'/>"
NO_COPY = "<no-copy xmlns='urn:xmpp:hints'/>"
MUC_USER = "<x xmlns='http://jabber.org/protocol/muc#user'/>"


def chat(to, body="hi", kind="chat", extra="", sender=None):
    to_attr = f" to='{to}'" if to else ""
    from_attr = f" from='{sender}'" if sender else ""
    body_xml = f"<body>{body}</body>" if body is not None else ""
    return f"<message{to_attr}{from_attr} type='{kind}' id='m1'>{body_xml}{extra}</message>"


def as_client_sees(element):
    """The stanza written to a client stream and parsed back (namespaces checked)."""
    xml = serialize(element)
    root = parseXml(f"<stream xmlns='jabber:client'>{xml}</stream>".encode())
    return root.firstChildElement()


def unwrap(carbon, kind):
    """The forwarded message of a carbon of that kind (after a round trip)."""
    carbon = as_client_sees(carbon)
    [wrapper] = list(carbon.elements())
    assert (wrapper.uri, wrapper.name) == (NS, kind), carbon.toXml()
    [forwarded] = list(wrapper.elements())
    assert (forwarded.uri, forwarded.name) == (NS_FORWARD, "forwarded"), carbon.toXml()
    [message] = list(forwarded.elements())
    assert (message.uri, message.name) == ("jabber:client", "message"), carbon.toXml()
    return carbon, message


class CarbonsTestCase(SessionManagerTestCase):
    """Alice on phone (priority 5) and desk (priority 0), both with carbons on,
    and tab (priority 0) without; Bob online."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.module = self.sm.modules["carbons"]
        self.phone = yield self.connect("alice", "phone", priority=5)
        self.desk = yield self.connect("alice", "desk")
        self.tab = yield self.connect("alice", "tab")
        self.bob = yield self.connect("bob")
        for session in (self.phone, self.desk):
            reply = yield self.toggle(session, ENABLE)
            self.assertEqual(reply["type"], "result", reply.toXml())

    @defer.inlineCallbacks
    def toggle(self, session, payload, to=None):
        yield self.client_sends_out(session, iq(to, payload, "set", "c1"))
        [reply] = session.take("iq")
        return reply

    def nothing_for(self, *sessions):
        for session in sessions:
            self.assertEqual(session.take("message"), [], session.jid.full())

    def one_carbon(self, session, kind):
        [carbon] = session.take("message")
        self.assertEqual(carbon["from"], "alice@localhost")
        self.assertEqual(carbon["to"], session.jid.full())
        return unwrap(carbon, kind)


class EnableTests(CarbonsTestCase):
    """enable/disable per session, and who may."""

    def test_disco_features(self):
        features = self.sm.modules.features(carbons_module.Scope.SERVER)
        self.assertIn(NS, features)
        self.assertIn("urn:xmpp:carbons:rules:0", features)

    def test_state_per_session(self):
        module = self.module
        self.assertTrue(module.is_enabled(self.phone.session))
        self.assertTrue(module.is_enabled(self.desk.session))
        self.assertFalse(module.is_enabled(self.tab.session))
        self.assertFalse(module.is_enabled(self.bob.session))

    @defer.inlineCallbacks
    def test_enable_to_own_bare_jid_and_disable(self):
        reply = yield self.toggle(self.tab, ENABLE, to="alice@localhost")
        self.assertEqual(reply["type"], "result")
        self.assertTrue(self.module.is_enabled(self.tab.session))
        reply = yield self.toggle(self.tab, DISABLE)
        self.assertEqual(reply["type"], "result")
        self.assertFalse(self.module.is_enabled(self.tab.session))
        reply = yield self.toggle(self.phone, DISABLE)
        self.assertFalse(self.module.is_enabled(self.phone.session))
        yield self.client_sends_out(self.bob, chat("alice@localhost/tab"))
        self.assertEqual(len(self.tab.take("message")), 1)
        self.nothing_for(self.phone)
        self.assertEqual(len(self.desk.take("message")), 1)  # still on

    @defer.inlineCallbacks
    def test_enable_twice_is_fine(self):
        reply = yield self.toggle(self.phone, ENABLE)
        self.assertEqual(reply["type"], "result")
        self.assertEqual(len(self.module.enabled["alice"]), 2)

    @defer.inlineCallbacks
    def test_others_may_not(self):
        reply = yield self.toggle(self.bob, ENABLE, to="alice@localhost")
        self.assertEqual(error_condition(reply), "service-unavailable")
        reply = yield self.toggle(self.bob, DISABLE, to="alice@localhost")
        self.assertEqual(error_condition(reply), "service-unavailable")
        self.assertFalse(self.module.is_enabled(self.bob.session))
        self.assertTrue(self.module.is_enabled(self.phone.session))

    @defer.inlineCallbacks
    def test_session_end_forgets(self):
        yield self.disconnect(self.desk)
        self.assertEqual(list(self.module.enabled["alice"]), ["phone"])
        again = yield self.connect("alice", "desk")
        self.assertFalse(self.module.is_enabled(again.session))
        yield self.disconnect(self.phone)
        self.assertNotIn("alice", self.module.enabled)

    @defer.inlineCallbacks
    def test_replaced_session_does_not_drop_the_new_ones_state(self):
        """A resource conflict: the old session's end leaves the new one's carbons on."""
        new = yield self.connect("alice", "desk", presence=False, roster=False)
        yield self.toggle(new, ENABLE)
        yield self.sm.wait_idle()
        self.assertEqual(self.desk.closed[0][0], "conflict")
        self.assertTrue(self.module.is_enabled(new.session))

    def test_account_deleted(self):
        self.module.account_deleted("alice")
        self.assertNotIn("alice", self.module.enabled)


class SentTests(CarbonsTestCase):
    """What a session sends is copied to the user's other enabled sessions."""

    @defer.inlineCallbacks
    def test_sent_to_local_contact(self):
        yield self.client_sends_out(self.desk, chat("bob@localhost", "hello"))
        carbon, message = self.one_carbon(self.phone, "sent")
        self.assertEqual(carbon["type"], "chat")
        self.assertEqual(message["from"], "alice@localhost/desk")
        self.assertEqual(message["to"], "bob@localhost")
        self.assertEqual(message["id"], "m1")
        self.assertEqual(str(message.body), "hello")
        self.nothing_for(self.desk, self.tab)
        [delivered] = self.bob.take("message")
        self.assertEqual(str(delivered.body), "hello")
        self.assertEqual(list(delivered.elements(NS, "sent")), [])

    @defer.inlineCallbacks
    def test_sent_by_a_session_without_carbons(self):
        """The sender need not have carbons on itself."""
        yield self.client_sends_out(self.tab, chat(f"someone@{REMOTE}"))
        _, message = self.one_carbon(self.phone, "sent")
        self.assertEqual(message["from"], "alice@localhost/tab")
        _, message = self.one_carbon(self.desk, "sent")
        self.assertEqual(message["to"], f"someone@{REMOTE}")
        [out] = self.remote.take()
        self.assertEqual(out["to"], f"someone@{REMOTE}")

    @defer.inlineCallbacks
    def test_normal_with_body_and_without(self):
        yield self.client_sends_out(self.desk, chat("bob@localhost", kind="normal"))
        carbon, _ = self.one_carbon(self.phone, "sent")
        self.assertEqual(carbon["type"], "normal")
        yield self.client_sends_out(
            self.desk, chat("bob@localhost", None, "normal",
                            "<active xmlns='http://jabber.org/protocol/chatstates'/>"))
        self.nothing_for(self.phone)

    @defer.inlineCallbacks
    def test_no_to_is_own_bare_jid(self):
        """As Prosody: phone (top priority) gets a sent copy and the message,
        desk (the sender) only a received copy."""
        yield self.client_sends_out(self.desk, chat(None, "note to self"))
        [carbon, delivered] = self.phone.take("message")
        _, message = unwrap(carbon, "sent")
        self.assertEqual(message["to"], "alice@localhost")
        self.assertEqual(delivered.getAttribute("to"), None)
        self.assertEqual(str(delivered.body), "note to self")
        [received] = self.desk.take("message")
        _, message = unwrap(received, "received")
        self.assertEqual(message["from"], "alice@localhost/desk")
        self.nothing_for(self.tab)

    @defer.inlineCallbacks
    def test_not_copied(self):
        """private, no-copy, groupchat, headline, errors, MUC PMs, carbons."""
        room = f"room@{REMOTE}"
        for xml in (
            chat("bob@localhost", extra=PRIVATE),
            chat("bob@localhost", extra=NO_COPY),
            chat(room, kind="groupchat"),
            chat("bob@localhost", kind="headline"),
            chat("bob@localhost", kind="error"),
            chat(room + "/nick", extra=MUC_USER),
            chat("bob@localhost", body=None, extra=f"<sent xmlns='{NS}'/>"),
            chat("bob@localhost", body=None, extra=f"<received xmlns='{NS}'/>"),
        ):
            yield self.client_sends_out(self.desk, xml)
            self.assertEqual([m.toXml() for m in self.phone.take("message")], [], xml)
            self.nothing_for(self.tab)

    @defer.inlineCallbacks
    def test_muc_pm_without_x_is_copied(self):
        """The server cannot tell a PM from a chat without the client's <x/>."""
        yield self.client_sends_out(self.desk, chat(f"room@conference.{REMOTE}/nick"))
        self.one_carbon(self.phone, "sent")

    @defer.inlineCallbacks
    def test_jingle_message_is_copied(self):
        propose = "<propose xmlns='urn:xmpp:jingle-message:0' id='c1'/>"
        yield self.client_sends_out(self.desk, chat("bob@localhost", None, "normal", propose))
        _, message = self.one_carbon(self.phone, "sent")
        self.assertEqual(message.firstChildElement().name, "propose")

    @defer.inlineCallbacks
    def test_to_own_other_resource(self):
        """As Prosody: a sent copy for the others, and a received copy for those
        that do not get the message."""
        yield self.client_sends_out(self.tab, chat("alice@localhost/desk"))
        [sent, received] = self.phone.take("message")
        unwrap(sent, "sent")
        unwrap(received, "received")
        [carbon, message] = self.desk.take("message")
        unwrap(carbon, "sent")
        self.assertEqual(message["from"], "alice@localhost/tab")


class ReceivedTests(CarbonsTestCase):
    """What a session gets is copied to the enabled sessions that did not get it."""

    @defer.inlineCallbacks
    def test_to_full_jid(self):
        yield self.client_sends_out(self.bob, chat("alice@localhost/desk", "yo"))
        carbon, message = self.one_carbon(self.phone, "received")
        self.assertEqual(carbon["type"], "chat")
        self.assertEqual(message["from"], "bob@localhost/res")
        self.assertEqual(message["to"], "alice@localhost/desk")
        self.assertEqual(str(message.body), "yo")
        [delivered] = self.desk.take("message")
        self.assertEqual(str(delivered.body), "yo")
        self.nothing_for(self.tab)

    @defer.inlineCallbacks
    def test_to_bare_jid_skips_those_that_get_it(self):
        """phone (priority 5) gets the message; desk a copy; tab nothing."""
        yield self.client_sends_out(self.bob, chat("alice@localhost"))
        [delivered] = self.phone.take("message")
        self.assertEqual(list(delivered.elements(NS, "received")), [])
        _, message = self.one_carbon(self.desk, "received")
        self.assertEqual(message["to"], "alice@localhost")
        self.nothing_for(self.tab)

    @defer.inlineCallbacks
    def test_to_bare_jid_equal_priorities_no_copies(self):
        yield self.client_sends_out(self.phone, "<presence><priority>0</priority></presence>")
        for session in (self.phone, self.desk, self.tab):
            session.take()
        yield self.client_sends_out(self.bob, chat("alice@localhost"))
        for session in (self.phone, self.desk, self.tab):
            [message] = session.take("message")
            self.assertEqual(message["from"], "bob@localhost/res")

    @defer.inlineCallbacks
    def test_from_remote_and_component_namespace(self):
        """A message from another stream's namespace is forwarded in jabber:client."""
        element = parseXml(
            f"<message xmlns='jabber:component:accept' from='bot@{REMOTE}/x' "
            "to='alice@localhost/desk' type='chat'><body>beep</body>"
            "<thread>t1</thread></message>".encode())
        yield self.arrives(element)
        _, message = self.one_carbon(self.phone, "received")
        self.assertEqual(str(message.body), "beep")
        self.assertEqual(message.body.uri, "jabber:client")
        self.assertEqual(str(message.thread), "t1")

    @defer.inlineCallbacks
    def test_private_not_copied_and_stripped(self):
        yield self.client_sends_out(self.bob, chat("alice@localhost/desk", extra=PRIVATE))
        self.nothing_for(self.phone, self.tab)
        [delivered] = self.desk.take("message")
        self.assertEqual(list(delivered.elements(NS, "private")), [])
        self.assertEqual(str(delivered.body), "hi")

    @defer.inlineCallbacks
    def test_not_copied(self):
        """no-copy, groupchat, headline, MUC PMs, normal without body, carbons."""
        room = f"room@conference.{REMOTE}"
        for xml in (
            chat("alice@localhost/desk", sender=f"c@{REMOTE}/r", extra=NO_COPY),
            chat("alice@localhost/desk", sender=room + "/bob", kind="groupchat"),
            chat("alice@localhost/desk", sender=f"news.{REMOTE}", kind="headline"),
            chat("alice@localhost/desk", sender=room + "/bob", extra=MUC_USER),
            chat("alice@localhost/desk", None, "normal", sender=f"c@{REMOTE}/r"),
            chat("alice@localhost/desk", None, sender=f"c@{REMOTE}/r",
                 extra=f"<received xmlns='{NS}'><forwarded xmlns='{NS_FORWARD}'/></received>"),
            chat("alice@localhost/desk", sender=f"c@{REMOTE}/r", kind="error"),
        ):
            yield self.arrives(xml)
            self.nothing_for(self.phone, self.tab)
            self.assertEqual(len(self.desk.take("message")), 1, xml)

    @defer.inlineCallbacks
    def test_muc_invitation_to_bare_jid_is_copied(self):
        invite = ("<x xmlns='http://jabber.org/protocol/muc#user'>"
                  "<invite from='bob@localhost'/></x>")
        yield self.arrives(chat("alice@localhost", "join us", "normal",
                                sender=f"room@conference.{REMOTE}", extra=invite))
        self.assertEqual(len(self.phone.take("message")), 1)
        _, message = self.one_carbon(self.desk, "received")
        self.assertEqual(str(message.body), "join us")

    @defer.inlineCallbacks
    def test_error_from_bare_jid_is_copied(self):
        """The bounce of a message sent to a bare JID (as Prosody)."""
        yield self.arrives(chat("alice@localhost/desk", sender=f"c@{REMOTE}", kind="error"))
        carbon, message = self.one_carbon(self.phone, "received")
        self.assertEqual(carbon["type"], "error")
        self.assertEqual(message["from"], f"c@{REMOTE}")

    @defer.inlineCallbacks
    def test_error_to_bare_jid_is_dropped_without_copies(self):
        yield self.arrives(chat("alice@localhost", sender=f"c@{REMOTE}", kind="error"))
        self.nothing_for(self.phone, self.desk, self.tab)

    @defer.inlineCallbacks
    def test_no_session_takes_it(self):
        """No available resource: stored offline, and (as Prosody) copied to the
        enabled sessions that are bound."""
        yield self.client_sends_out(self.phone, "<presence type='unavailable'/>")
        yield self.client_sends_out(self.desk, "<presence type='unavailable'/>")
        yield self.client_sends_out(self.tab, "<presence type='unavailable'/>")
        for session in (self.phone, self.desk, self.tab):
            session.take()
        yield self.client_sends_out(self.bob, chat("alice@localhost", "later"))
        self.one_carbon(self.phone, "received")
        self.one_carbon(self.desk, "received")
        self.nothing_for(self.tab)
        stored = yield self.offline_store.count("alice")
        self.assertEqual(stored, 1)


class HotPathTests(SessionManagerTestCase):
    """Users without carbons on are not looked at beyond one dict lookup."""

    @defer.inlineCallbacks
    def test_eligibility_not_computed_without_carbons(self):
        def fail(*args):
            raise AssertionError("eligibility computed")

        self.patch(carbons_module, "eligible", fail)
        alice = yield self.connect("alice", "phone")
        other = yield self.connect("alice", "desk", priority=-1)
        bob = yield self.connect("bob")
        yield self.client_sends_out(bob, chat("alice@localhost", extra=PRIVATE))
        yield self.client_sends_out(alice, chat("bob@localhost"))
        self.assertEqual(len(alice.take("message")), 1)
        self.assertEqual(len(bob.take("message")), 1)
        self.assertEqual(other.take("message"), [])
        self.assertEqual(self.sm.modules["carbons"].enabled, {})

    def test_client_copy_leaves_the_original(self):
        original = domish.Element(("jabber:component:accept", "message"))
        original["to"] = "a@b"
        original.addElement("body", content="x")
        copy = carbons_module.client_copy(original)
        self.assertEqual(original.uri, "jabber:component:accept")
        self.assertEqual(original.body.uri, "jabber:component:accept")
        self.assertEqual((copy.uri, copy.body.uri), ("jabber:client", "jabber:client"))
        self.assertEqual(str(copy.body), "x")
