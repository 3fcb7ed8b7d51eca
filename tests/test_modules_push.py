"""xmppd.modules.push: XEP-0357 registrations and the notifications sent to app servers."""

from twisted.internet import defer

from tests.sm_fakes import REMOTE, SessionManagerTestCase, TimerClock, error_condition, stanza
from tests.test_modules_stream_management import SMTestCase
from tests.test_sm_iq import iq
from xmppd.modules import push

NS = "urn:xmpp:push:0"
APP = REMOTE
OPTIONS = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>"
           "<value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
           "<field var='secret'><value>s3cret</value></field></x>")


def enable(service=APP, node="dev1", options=""):
    node_attr = f" node='{node}'" if node is not None else ""
    return f"<enable xmlns='{NS}' jid='{service}'{node_attr}>{options}</enable>"


def form_values(notification):
    """var -> value of the summary form in a publish iq."""
    [pubsub] = list(notification.elements())
    publish = next(pubsub.elements(push.NS_PUBSUB, "publish"))
    item = next(publish.elements())
    [note] = list(item.elements())
    [form] = list(note.elements())
    values = {}
    for field_element in form.elements():
        values[field_element["var"]] = str(next(field_element.elements()))
    return values


class PushTestCase(SessionManagerTestCase):
    """Alice on her phone, registered with an app server at push.remote.example; Bob online."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.module = self.sm.modules["push"]
        self.clock = TimerClock()
        self.sm.reactor = self.clock
        self.module.server.reactor = self.clock
        self.phone = yield self.connect("alice", "phone")
        self.bob = yield self.connect("bob")
        reply = yield self.request(self.phone, enable())
        self.assertEqual(reply["type"], "result", reply.toXml())
        self.remote.take()

    @defer.inlineCallbacks
    def request(self, session, payload, to=None):
        yield self.client_sends_out(session, iq(to, payload, "set", "p1"))
        [reply] = session.take("iq")
        return reply

    def sleep(self, session):
        csi = self.sm.modules["csi"]
        csi.went_inactive(session.session, stanza("<inactive xmlns='urn:xmpp:csi:0'/>"))

    def pushes(self):
        return [s for s in self.remote.take() if s.name == "iq"]

    @defer.inlineCallbacks
    def app_answers(self, notification, error=None):
        if error is None:
            answer = (f"<iq type='result' id='{notification['id']}' from='{APP}' "
                      "to='alice@localhost'/>")
        else:
            answer = (f"<iq type='error' id='{notification['id']}' from='{APP}' "
                      f"to='alice@localhost'><error type='cancel'><{error} "
                      "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
        yield self.arrives(answer)

    @defer.inlineCallbacks
    def bob_says(self, body="hi", to="alice@localhost", extra=""):
        body_xml = f"<body>{body}</body>" if body is not None else ""
        yield self.client_sends_out(
            self.bob, f"<message to='{to}' type='chat'>{body_xml}{extra}</message>")


class RegistrationTests(PushTestCase):
    @defer.inlineCallbacks
    def test_stored_and_loaded(self):
        yield self.request(self.phone, enable(node="dev2", options=OPTIONS))
        rows = yield self.db.query(
            "SELECT service, node, options IS NOT NULL FROM push_registrations "
            "WHERE account = 'alice' ORDER BY node")
        self.assertEqual(rows, [(APP, "dev1", 0), (APP, "dev2", 1)])
        fresh = self.make_manager()
        fresh.startService()
        self.addCleanup(fresh.stopService)
        yield fresh.wait_idle()
        yield self.db.query("SELECT 1")  # after the load
        self.assertEqual(sorted(fresh.modules["push"].registrations["alice"]),
                         [(APP, "dev1"), (APP, "dev2")])

    @defer.inlineCallbacks
    def test_disable_one_or_all(self):
        yield self.request(self.phone, enable(node="dev2"))
        yield self.request(self.phone, enable(service="other.example", node="x"))
        reply = yield self.request(self.phone, f"<disable xmlns='{NS}' jid='{APP}' node='dev1'/>")
        self.assertEqual(reply["type"], "result")
        self.assertEqual(sorted(self.module.registrations["alice"]),
                         sorted([(APP, "dev2"), ("other.example", "x")]))
        yield self.request(self.phone, f"<disable xmlns='{NS}' jid='{APP}'/>")
        self.assertEqual(sorted(self.module.registrations["alice"]), [("other.example", "x")])
        rows = yield self.db.query("SELECT service FROM push_registrations")
        self.assertEqual(rows, [("other.example",)])

    @defer.inlineCallbacks
    def test_bad_requests(self):
        for payload, condition in [
            (f"<enable xmlns='{NS}' node='n'/>", "bad-request"),
            (enable(node=None), "bad-request"),
            (enable(service="a@b@c"), "jid-malformed"),
            (enable(options="<x xmlns='jabber:x:data' type='form'/>"), "bad-request"),
            (enable(options="<x xmlns='jabber:x:data' type='submit'><field var='v'><value>"
                    + "x" * 5000 + "</value></field></x>"), "not-acceptable"),
            (f"<disable xmlns='{NS}'/>", "bad-request"),
        ]:
            reply = yield self.request(self.phone, payload)
            self.assertEqual(error_condition(reply), condition, payload)

    @defer.inlineCallbacks
    def test_only_the_owner(self):
        reply = yield self.request(self.bob, enable(), to="alice@localhost")
        self.assertEqual(error_condition(reply), "service-unavailable")

    @defer.inlineCallbacks
    def test_limit(self):
        self.module.config = push.PushSettings(max_registrations=2)
        reply = yield self.request(self.phone, enable(node="dev2"))
        self.assertEqual(reply["type"], "result")
        reply = yield self.request(self.phone, enable(node="dev3"))
        self.assertEqual(error_condition(reply), "not-acceptable")
        reply = yield self.request(self.phone, enable(node="dev2", options=OPTIONS))
        self.assertEqual(reply["type"], "result")  # replacing is not one more

    @defer.inlineCallbacks
    def test_disco_feature(self):
        yield self.client_sends_out(self.phone, iq(
            "alice@localhost", "<query xmlns='http://jabber.org/protocol/disco#info'/>", "get"))
        [reply] = self.phone.take("iq")
        features = [f["var"] for f in reply.firstChildElement().elements() if f.name == "feature"]
        self.assertIn(NS, features)

    @defer.inlineCallbacks
    def test_account_deletion(self):
        yield self.accounts.delete("alice")
        self.sm.modules.fire(push.Point.ACCOUNT_DELETED, "alice")
        rows = yield self.db.query("SELECT * FROM push_registrations")
        self.assertEqual(rows, [])
        self.assertNotIn("alice", self.module.registrations)


class NotificationTests(PushTestCase):
    @defer.inlineCallbacks
    def test_awake_sessions_get_no_push(self):
        yield self.bob_says()
        self.assertEqual(len(self.phone.take("message")), 1)
        self.assertEqual(self.pushes(), [])

    @defer.inlineCallbacks
    def test_inactive_session_gets_a_push(self):
        self.sleep(self.phone)
        yield self.bob_says("first")
        [first] = self.pushes()
        self.assertEqual((first["to"], first["from"], first["type"]),
                         (APP, "alice@localhost", "set"))
        self.assertEqual(form_values(first), {"FORM_TYPE": push.SUMMARY, "message-count": "1"})
        # The client comes back: counting starts again.
        yield self.client_sends_out(self.phone, "<presence/>")
        yield self.bob_says("second")
        [second] = self.pushes()
        self.assertEqual(form_values(second)["message-count"], "1")

    @defer.inlineCallbacks
    def test_once_per_burst(self):
        self.sleep(self.phone)
        for i in range(20):
            yield self.bob_says(f"m{i}")
        [first] = self.pushes()
        yield self.app_answers(first)
        self.assertEqual(form_values(first)["message-count"], "1")
        self.clock.advance(29)
        self.assertEqual(self.pushes(), [])
        self.clock.advance(1)
        [merged] = self.pushes()
        yield self.app_answers(merged)
        self.assertEqual(form_values(merged)["message-count"], "20")
        self.clock.advance(60)
        self.assertEqual(self.pushes(), [])
        yield self.bob_says("later")  # a new burst: at once
        [later] = self.pushes()
        self.assertEqual(form_values(later)["message-count"], "21")

    @defer.inlineCallbacks
    def test_waking_up_cancels_the_merged_push(self):
        self.sleep(self.phone)
        yield self.bob_says("one")
        yield self.bob_says("two")
        [note] = self.pushes()
        yield self.app_answers(note)
        yield self.client_sends_out(self.phone, "<presence/>")
        self.clock.advance(60)
        self.assertEqual(self.pushes(), [])

    @defer.inlineCallbacks
    def test_sender_body_and_options_when_configured(self):
        self.module.config = push.PushSettings(include_body=True, include_sender=True)
        yield self.request(self.phone, enable(options=OPTIONS))
        self.sleep(self.phone)
        yield self.bob_says("meet me")
        [note] = self.pushes()
        values = form_values(note)
        self.assertEqual((values["last-message-sender"], values["last-message-body"]),
                         ("bob@localhost/res", "meet me"))
        options = next(note.firstChildElement().elements(push.NS_PUBSUB, "publish-options"))
        self.assertIn("s3cret", options.toXml())

    @defer.inlineCallbacks
    def test_unimportant_messages_wake_nobody(self):
        self.sleep(self.phone)
        yield self.bob_says(None, extra="<composing xmlns='http://jabber.org/protocol/chatstates'/>")
        yield self.client_sends_out(self.bob, "<message to='alice@localhost' type='headline'>"
                                              "<body>news</body></message>")
        self.assertEqual(self.pushes(), [])

    @defer.inlineCallbacks
    def test_offline_messages_are_pushed_and_stored(self):
        yield self.disconnect(self.phone)
        yield self.bob_says("while you were away")
        [note] = self.pushes()
        self.assertEqual(form_values(note)["message-count"], "1")
        stored = yield self.offline_store.fetch("alice")
        self.assertEqual(len(stored), 1)

    @defer.inlineCallbacks
    def test_detached_session_counts_as_asleep(self):
        self.phone.session.detach()
        yield self.bob_says("hello?")
        self.assertEqual(len(self.pushes()), 1)

    @defer.inlineCallbacks
    def test_subscription_request(self):
        yield self.disconnect(self.phone)
        yield self.client_sends_out(self.bob, "<presence to='alice@localhost' type='subscribe'/>")
        [note] = self.pushes()
        self.assertEqual(form_values(note)["pending-subscription-count"], "1")

    @defer.inlineCallbacks
    def test_groupchat_only_with_a_mention(self):
        yield self.client_sends_out(
            self.phone, "<presence to='room@conference.localhost/Alice'>"
                        "<x xmlns='http://jabber.org/protocol/muc'/></presence>")
        self.sleep(self.phone)
        for body in ("anyone?", "alice: you there?"):
            yield self.arrives(f"<message type='groupchat' from='room@conference.localhost/bob' "
                               f"to='alice@localhost/phone'><body>{body}</body></message>")
        [note] = self.pushes()
        self.assertEqual(form_values(note)["message-count"], "1")


class FailureTests(PushTestCase):
    @defer.inlineCallbacks
    def test_retried_then_removed(self):
        self.sleep(self.phone)
        yield self.bob_says()
        [note] = self.pushes()
        yield self.app_answers(note, "item-not-found")
        self.assertEqual(self.pushes(), [])
        self.clock.advance(10)
        [again] = self.pushes()
        self.assertEqual(form_values(again), form_values(note))
        yield self.app_answers(again, "internal-server-error")
        self.clock.advance(19)
        self.assertEqual(self.pushes(), [])
        self.clock.advance(1)  # doubled: 20 s
        [third] = self.pushes()
        yield self.app_answers(third, "item-not-found")
        yield self.db.query("SELECT 1")
        self.assertNotIn("alice", self.module.registrations)
        rows = yield self.db.query("SELECT * FROM push_registrations")
        self.assertEqual(rows, [])

    @defer.inlineCallbacks
    def test_success_resets_the_count(self):
        self.sleep(self.phone)
        yield self.bob_says()
        [note] = self.pushes()
        yield self.app_answers(note, "item-not-found")
        self.clock.advance(10)
        [again] = self.pushes()
        yield self.app_answers(again)
        registration = self.module.registrations["alice"][(APP, "dev1")]
        self.assertEqual(registration.failures, 0)

    @defer.inlineCallbacks
    def test_timeout_is_a_failure(self):
        self.sleep(self.phone)
        yield self.bob_says()
        self.assertEqual(len(self.pushes()), 1)
        self.clock.advance(30)
        registration = self.module.registrations["alice"][(APP, "dev1")]
        self.assertEqual(registration.failures, 1)



class HibernationTests(SMTestCase):
    """A message pushed while the session is detached (XEP-0198) is not pushed again."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        yield self.client_sends_out(self.phone, iq(None, enable(), "set", "p1"))
        [reply] = self.phone.take("iq")
        self.assertEqual(reply["type"], "result", reply.toXml())
        self.remote.take()

    def pushes(self):
        return [s for s in self.remote.take() if s.name == "iq"]

    @defer.inlineCallbacks
    def test_pushed_once_then_stored_when_the_session_expires(self):
        yield self.drop(self.phone)
        yield self.bob_says("while away")
        [note] = self.pushes()
        self.assertEqual(form_values(note)["message-count"], "1")
        self.clock.advance(300)  # the detached session's time is up
        yield self.sm.wait_idle()
        self.assertFalse(self.phone.session.bound)
        stored = yield self.offline_store.fetch("alice")
        self.assertEqual(len(stored), 1)  # stored, and not pushed a second time
        self.clock.advance(60)  # nor at the end of the burst window
        self.assertEqual(self.pushes(), [])

    @defer.inlineCallbacks
    def test_a_message_first_seen_when_stored_is_pushed(self):
        yield self.bob_says("delivered, never acked")  # awake: no push
        self.assertEqual(self.pushes(), [])
        yield self.drop(self.phone)
        self.clock.advance(300)
        yield self.sm.wait_idle()
        [note] = self.pushes()
        self.assertEqual(form_values(note)["message-count"], "1")
