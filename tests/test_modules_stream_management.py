"""xmppd.modules.stream_management: XEP-0198 acks, hibernation, resumption and the end."""

from twisted.internet import defer, task

from tests.sm_fakes import FakeSession, SessionManagerTestCase, error_condition, stanza
from tests.test_sm_iq import iq
from xmppd.modules import stream_management as sm_module
from xmppd.storage.roster import RosterItem

NS = "urn:xmpp:sm:3"


def nonza(name, **attributes):
    attrs = "".join(f" {k}='{v}'" for k, v in attributes.items())
    return stanza(f"<{name} xmlns='{NS}'{attrs}/>")


class Stream(FakeSession):
    """A client connection that also takes raw sends (as C2SStream.send)."""

    def send(self, element):
        self.sent.append(element)


class Negotiator:
    """What the resume handler needs of c2s's negotiator: the stream and resume()."""

    def __init__(self, username, stream, allow=True):
        self.username = username
        self.xmlstream = stream
        self.allow = allow

    def resume(self, session):
        if not self.allow:
            return False
        session.attach(self.xmlstream)
        self.xmlstream.session = session
        self.xmlstream.jid = session.jid
        return True


class SMTestCase(SessionManagerTestCase):
    """Alice's phone with stream management (resumable) and Bob, subscribed both ways."""

    resumable = True

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.module = self.sm.modules["sm"]
        self.clock = task.Clock()
        self.module.server.reactor = self.clock
        for owner, contact in (("alice", "bob"), ("bob", "alice")):
            yield self.roster_store.save(owner, RosterItem(
                f"{contact}@localhost", subscription="both"))
            self.sm.drop_roster_cache(owner)
        self.phone = yield self.connect("alice", "phone")
        self.bob = yield self.connect("bob", "desk")
        self.phone.take()
        self.bob.take()
        self.enable(self.phone, resume="true" if self.resumable else "false")
        [self.enabled] = self.phone.take()

    def enable(self, client, **attributes):
        self.sm.nonza_handler(NS, "enable")(client.session, nonza("enable", **attributes))

    def ack(self, client, h):
        self.sm.nonza_handler(NS, "a")(client.session, nonza("a", h=h))

    def ask(self, client):
        self.sm.nonza_handler(NS, "r")(client.session, nonza("r"))

    @defer.inlineCallbacks
    def bob_says(self, body, to="alice@localhost/phone"):
        yield self.client_sends_out(
            self.bob, f"<message to='{to}' type='chat' id='{body}'><body>{body}</body></message>")

    def bodies(self, stanzas):
        return [str(c) for s in stanzas for c in s.elements() if c.name == "body"]

    def outbox(self, client=None):
        return self.module.outboxes[(client or self.phone).session]

    @defer.inlineCallbacks
    def drop(self, client):
        """The connection goes away without a closed stream."""
        self.sm.unbind(client.session, interrupted=True)
        yield self.sm.wait_idle()

    def resume(self, previd, h, username="alice", allow=True):
        stream = Stream()
        self.sm.nonza_handler(NS, "resume", True)(
            Negotiator(username, stream, allow), nonza("resume", previd=previd, h=h))
        return stream


class EnableTests(SMTestCase):
    def test_enabled(self):
        self.assertEqual((self.enabled.uri, self.enabled.name), (NS, "enabled"))
        self.assertEqual(self.enabled["resume"], "true")
        self.assertEqual(self.enabled["max"], "300")
        self.assertGreater(len(self.enabled["id"]), 16)
        self.assertIn((NS, "sm"), self.sm.stream_features())

    def test_twice_or_before_bind(self):
        self.enable(self.phone)
        [refused] = self.phone.take()
        self.assertEqual(refused.name, "failed")
        self.assertEqual(next(refused.elements()).name, "unexpected-request")
        stream = Stream()
        self.sm.nonza_handler(NS, "enable", True)(Negotiator("alice", stream), nonza("enable"))
        [refused] = stream.take()
        self.assertEqual(next(refused.elements()).name, "unexpected-request")

    def test_not_resumable(self):
        self.enable(self.bob)
        [enabled] = self.bob.take()
        self.assertIsNone(enabled.getAttribute("id"))
        self.assertIsNone(enabled.getAttribute("resume"))

    def test_r_and_a_without_enable(self):
        self.ask(self.bob)
        self.assertEqual(self.bob.closed[0][0], "unsupported-stanza-type")


class CountingTests(SMTestCase):
    @defer.inlineCallbacks
    def test_handled_counts_what_the_client_sent(self):
        self.ask(self.phone)
        [answer] = self.phone.take()
        self.assertEqual((answer.name, answer["h"]), ("a", "0"))
        yield self.client_sends_out(self.phone, "<presence><show>away</show></presence>")
        yield self.client_sends_out(self.phone, iq(None, "<query xmlns='jabber:iq:roster'/>",
                                                   "get", "r2"))
        yield self.client_sends_out(self.phone, "<iq type='fetch' id='x'/>")  # refused, counted
        self.phone.take()
        self.ask(self.phone)
        [answer] = self.phone.take()
        self.assertEqual(answer["h"], "3")

    @defer.inlineCallbacks
    def test_acks_drop_what_was_received(self):
        for body in ("one", "two", "three"):
            yield self.bob_says(body)
        self.assertEqual(self.bodies(self.phone.take()), ["one", "two", "three"])
        self.assertEqual(len(self.outbox().queue), 3)
        self.ack(self.phone, 2)
        self.assertEqual(self.bodies(s for s, _ in self.outbox().queue), ["three"])
        self.ack(self.phone, 3)
        self.assertEqual(len(self.outbox().queue), 0)
        self.assertEqual(self.phone.closed, [])

    @defer.inlineCallbacks
    def test_impossible_acks_close_the_stream(self):
        yield self.bob_says("one")
        self.ack(self.phone, 2)
        self.assertEqual(self.phone.closed[0][0], "undefined-condition")

    def test_malformed_h(self):
        self.sm.nonza_handler(NS, "a")(self.phone.session, stanza(f"<a xmlns='{NS}' h='x'/>"))
        self.assertEqual(self.phone.closed[0][0], "invalid-xml")

    @defer.inlineCallbacks
    def test_server_asks_after_a_burst_or_a_while(self):
        yield self.bob_says("one")
        self.phone.take()
        self.clock.advance(9)
        self.assertEqual(self.phone.take(), [])
        self.clock.advance(1)
        [r] = self.phone.take()
        self.assertEqual(r.name, "r")
        self.ack(self.phone, 1)
        for body in "abcde":
            yield self.bob_says(body)
        self.phone.take()
        self.clock.advance(0)
        [r] = self.phone.take()
        self.assertEqual(r.name, "r")
        for body in "fg":  # already asked: no second <r/> until the answer
            yield self.bob_says(body)
        self.clock.advance(60)
        self.assertEqual([s.name for s in self.phone.take()], ["message", "message"])

    @defer.inlineCallbacks
    def test_queue_limit(self):
        self.module.config = sm_module.SMSettings(max_queue=3)
        for body in "abcd":
            yield self.bob_says(body)
        self.assertEqual(self.phone.closed[0][0], "resource-constraint")


class HibernationTests(SMTestCase):
    @defer.inlineCallbacks
    def test_drop_keeps_the_session_and_its_presence(self):
        yield self.drop(self.phone)
        self.assertTrue(self.phone.session.bound)
        self.assertIsNone(self.phone.session.connection)
        self.assertEqual(self.bob.take("presence"), [])  # no unavailable yet
        yield self.bob_says("while away")
        self.assertEqual(self.phone.take(), [])
        self.assertEqual(self.bodies(s for s, _ in self.outbox().queue), ["while away"])

    @defer.inlineCallbacks
    def test_expiry_broadcasts_unavailable_and_stores_messages(self):
        yield self.bob_says("delivered, never acked")
        yield self.drop(self.phone)
        yield self.bob_says("while away")
        yield self.client_sends_out(self.bob, "<iq to='alice@localhost/phone' type='get' id='v1'>"
                                              "<query xmlns='jabber:iq:version'/></iq>")
        self.bob.take()
        self.clock.advance(299)
        self.assertTrue(self.phone.session.bound)
        self.clock.advance(1)
        yield self.sm.wait_idle()
        self.assertFalse(self.phone.session.bound)
        stanzas = self.bob.take()
        [unavailable] = [s for s in stanzas if s.name == "presence"]
        self.assertEqual(unavailable["type"], "unavailable")
        [bounce] = [s for s in stanzas if s.name == "iq"]
        self.assertEqual(error_condition(bounce), "recipient-unavailable")
        stored = yield self.offline_store.fetch("alice")
        self.assertEqual(len(stored), 2)
        self.assertIn("delivered, never acked", stored[0][2])
        self.assertIn("while away", stored[1][2])
        self.assertEqual(self.module.outboxes, {})
        self.assertEqual(self.module.resumable, {})

    @defer.inlineCallbacks
    def test_clean_close_ends_at_once(self):
        yield self.bob_says("unacked")
        self.sm.unbind(self.phone.session)
        yield self.sm.wait_idle()
        self.assertFalse(self.phone.session.bound)
        stored = yield self.offline_store.fetch("alice")
        self.assertEqual(len(stored), 1)

    @defer.inlineCallbacks
    def test_not_resumable_sessions_end_at_once(self):
        self.enable(self.bob)
        self.bob.take()
        yield self.drop(self.bob)
        self.assertFalse(self.bob.session.bound)

    @defer.inlineCallbacks
    def test_a_new_login_takes_the_resource(self):
        yield self.drop(self.phone)
        yield self.bob_says("for the old one")
        old = self.phone.session
        new = yield self.connect("alice", "phone", presence=False)
        self.assertFalse(old.bound)
        self.assertIsNot(new.session, old)
        yield self.sm.wait_idle()
        stored = yield self.offline_store.fetch("alice")
        self.assertEqual(len(stored), 1)
        yield self.client_sends_out(new, "<presence/>")
        self.assertEqual(self.bodies(new.take("message")), ["for the old one"])

    @defer.inlineCallbacks
    def test_at_most_max_hibernating_per_account(self):
        self.module.config = sm_module.SMSettings(max_hibernating=1)
        tablet = yield self.connect("alice", "tablet")
        self.enable(tablet, resume="true")
        yield self.drop(self.phone)
        self.clock.advance(1)
        yield self.drop(tablet)
        yield self.sm.wait_idle()
        self.assertFalse(self.phone.session.bound)
        self.assertTrue(tablet.session.bound)

    @defer.inlineCallbacks
    def test_server_stop_ends_waiting_sessions(self):
        yield self.drop(self.phone)
        yield self.bob_says("before the stop")
        yield self.sm.stopService()
        stored = yield self.offline_store.fetch("alice")
        self.assertEqual(len(stored), 1)


class ResumptionTests(SMTestCase):
    @defer.inlineCallbacks
    def test_resume_sends_exactly_the_unacknowledged(self):
        previd = self.enabled["id"]
        for body in ("one", "two"):
            yield self.bob_says(body)
        self.phone.take()
        yield self.client_sends_out(self.phone, "<presence><show>chat</show></presence>")
        self.bob.take()
        yield self.drop(self.phone)
        yield self.bob_says("three")
        session = self.phone.session
        stream = self.resume(previd, 1)  # the client got "one"
        resumed, *replayed = stream.take()
        self.assertEqual((resumed.name, resumed["previd"], resumed["h"]),
                         ("resumed", previd, "1"))
        self.assertEqual(self.bodies(replayed), ["two", "three"])
        for message in replayed:
            [delay] = list(message.elements("urn:xmpp:delay", "delay"))
            self.assertEqual(delay["from"], "alice@localhost")
        self.assertIs(session.connection, stream)
        self.assertTrue(session.bound)
        self.clock.advance(600)  # no expiry any more
        self.assertTrue(session.bound)
        yield self.bob_says("four")
        self.assertEqual(self.bodies(stream.take("message")), ["four"])
        self.assertEqual(self.bob.take("presence"), [])

    @defer.inlineCallbacks
    def test_resume_while_the_old_connection_seems_alive(self):
        previd = self.enabled["id"]
        yield self.bob_says("one")
        stream = self.resume(previd, 0)
        self.assertEqual(self.phone.closed[0][0], "conflict")
        self.assertEqual([s.name for s in stream.take()], ["resumed", "message"])

    @defer.inlineCallbacks
    def test_failures(self):
        previd = self.enabled["id"]
        yield self.drop(self.phone)
        for args, condition in [
            (("nope", 0), "item-not-found"),
            ((previd, 0, "bob"), "item-not-found"),
            ((previd, 5), "unexpected-request"),
            ((previd, "x"), "bad-request"),
        ]:
            stream = self.resume(*args)
            [refused] = stream.take()
            self.assertEqual((refused.name, next(refused.elements()).name),
                             ("failed", condition), args)
        self.assertTrue(self.phone.session.bound)
        self.clock.advance(300)
        yield self.sm.wait_idle()
        stream = self.resume(previd, 0)
        [refused] = stream.take()
        self.assertEqual(next(refused.elements()).name, "item-not-found")

    @defer.inlineCallbacks
    def test_no_slot_left(self):
        previd = self.enabled["id"]
        yield self.drop(self.phone)
        stream = self.resume(previd, 0, allow=False)
        [refused] = stream.take()
        self.assertEqual(next(refused.elements()).name, "resource-constraint")
        self.assertTrue(self.phone.session.bound)
        self.clock.advance(300)
        yield self.sm.wait_idle()
        self.assertFalse(self.phone.session.bound)


class DisabledTests(SessionManagerTestCase):
    def test_disabled(self):
        sm = self.make_manager(modules={"disabled": ["sm"]})
        self.assertNotIn((NS, "sm"), sm.stream_features())
        self.assertIsNone(sm.nonza_handler(NS, "enable"))


class StreamTests(SessionManagerTestCase):
    """The session's counter and outbox without the module."""

    @defer.inlineCallbacks
    def test_plain_sessions_write_directly(self):
        client = yield self.connect("alice")
        self.assertIsNone(client.session.outbox)
        self.assertIsInstance(client, FakeSession)
