"""Server iq handlers and iq routing."""

from twisted.internet import defer
from twisted.words.xish import domish

from tests.sm_fakes import SessionManagerTestCase, TimerClock, error_condition, stanza
from xmppd.errors import StanzaError
from xmppd.sm import requests as requests_module


def iq(to, payload, kind="get", stanza_id="q1"):
    to_attr = f" to='{to}'" if to else ""
    return f"<iq type='{kind}' id='{stanza_id}'{to_attr}>{payload}</iq>"


DISCO_INFO = "<query xmlns='http://jabber.org/protocol/disco#info'/>"
DISCO_ITEMS = "<query xmlns='http://jabber.org/protocol/disco#items'/>"
PING = "<ping xmlns='urn:xmpp:ping'/>"


class IQTestCase(SessionManagerTestCase):
    """Alice is connected; asks() returns the single iq she gets back."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.alice = yield self.connect("alice")

    @defer.inlineCallbacks
    def asks(self, xml, session=None):
        session = session or self.alice
        yield self.client_sends(session, xml)
        [reply] = session.take("iq")
        return reply


class ServerTests(IQTestCase):
    """The server's own handlers."""


    @defer.inlineCallbacks
    def test_unhandled(self):
        """Unknown payloads: service-unavailable, to the server and to bare JIDs."""
        for to in ("localhost", "bob@localhost", None):
            reply = yield self.asks(iq(to, "<query xmlns='urn:unknown'/>"))
            self.assertEqual(error_condition(reply), "service-unavailable", to)

    @defer.inlineCallbacks
    def test_malformed_iqs(self):
        """No child, two children, a bad type: bad-request."""
        for xml in (
            "<iq type='get' id='x' to='localhost'/>",
            f"<iq type='get' id='x' to='localhost'>{PING}{PING}</iq>",
            f"<iq type='fetch' id='x' to='localhost'>{PING}</iq>",
        ):
            reply = yield self.asks(xml)
            self.assertEqual(error_condition(reply), "bad-request", xml)

    @defer.inlineCallbacks
    def test_results_to_server_dropped(self):
        for kind in ("result", "error"):
            yield self.client_sends(self.alice, iq("localhost", "", kind=kind))
            yield self.client_sends(self.alice, iq("bob@localhost", "", kind=kind))
        self.assertEqual(self.alice.take(), [])

    @defer.inlineCallbacks
    def test_internal_error(self):
        """An unexpected exception is logged and answered internal-server-error."""

        def broken(*args):
            raise RuntimeError("boom")

        self.patch(self.sm.modules, "iq_handler", lambda *args: broken)
        reply = yield self.asks(iq("localhost", "<query xmlns='jabber:iq:version'/>"))
        self.assertEqual(error_condition(reply), "internal-server-error")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @defer.inlineCallbacks
    def test_internal_error_async(self):
        """A failing database operation is answered internal-server-error too."""
        self.sm._rosters.clear()
        self.sm.roster_store.items = lambda user: defer.fail(RuntimeError("db down"))
        reply = yield self.asks(iq(None, "<query xmlns='jabber:iq:roster'/>"))
        self.assertEqual(error_condition(reply), "internal-server-error")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class FullJIDTests(IQTestCase):
    """Iqs to full JIDs are delivered."""

    @defer.inlineCallbacks
    def test_delivered_and_answered(self):
        bob = yield self.connect("bob")
        yield self.client_sends(self.alice, iq("bob@localhost/res", "<query xmlns='urn:x'/>"))
        [request] = bob.take("iq")
        self.assertEqual(request["from"], "alice@localhost/res")
        yield self.client_sends(bob, "<iq type='result' id='q1' to='alice@localhost/res'/>")
        [result] = self.alice.take("iq")
        self.assertEqual((result["type"], result["from"]), ("result", "bob@localhost/res"))

    @defer.inlineCallbacks
    def test_no_session(self):
        reply = yield self.asks(iq("bob@localhost/gone", PING))
        self.assertEqual(error_condition(reply), "service-unavailable")
        self.assertEqual(reply["from"], "bob@localhost/gone")
        yield self.client_sends(self.alice, iq("bob@localhost/gone", "", kind="result"))
        self.assertEqual(self.alice.take(), [])


def request(sender, to, payload=PING, stanza_id=None):
    """An iq get the server sends (not yet sent)."""
    id_attr = f" id='{stanza_id}'" if stanza_id else ""
    return stanza(f"<iq type='get' from='{sender}' to='{to}'{id_attr}>{payload}</iq>")


class RequestTests(IQTestCase):
    """SessionManager.request: iqs of the server's own and their answers."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.clock = TimerClock()
        self.sm.reactor = self.clock

    def sent_request(self, session=None):
        """The one iq the session got: the request."""
        [sent] = (session or self.alice).take("iq")
        self.assertEqual(sent["type"], "get")
        return sent

    def result_from(self, sent, **attributes):
        """The client's result for a request, 'to' its 'from' unless told otherwise."""
        reply = domish.Element((None, "iq"))
        reply["type"] = "result"
        reply["id"] = sent["id"]
        reply["to"] = sent["from"]
        for name, value in attributes.items():
            if value is None:
                del reply[name]
            else:
                reply[name] = value
        return reply

    @defer.inlineCallbacks
    def test_result_from_the_full_jid(self):
        """A fresh id is filled in; the full JID's result fires the Deferred, timer cancelled."""
        d = self.sm.request(request("alice@localhost", "alice@localhost/res"))
        sent = self.sent_request()
        self.assertTrue(sent["id"])
        self.assertEqual((sent["from"], sent["to"]), ("alice@localhost", "alice@localhost/res"))
        self.assertNoResult(d)
        reply = yield self.client_sends(self.alice, self.result_from(sent))
        result = self.successResultOf(d)
        self.assertIs(result, reply)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.alice.take(), [])

    @defer.inlineCallbacks
    def test_from_the_server(self):
        """A request from the domain is answered by a result to the domain."""
        d = self.sm.request(request("localhost", "alice@localhost/res", stanza_id="srv1"))
        sent = self.sent_request()
        self.assertEqual(sent["id"], "srv1")
        yield self.client_sends(self.alice, self.result_from(sent))
        self.assertEqual(self.successResultOf(d)["id"], "srv1")

    @defer.inlineCallbacks
    def test_result_without_to_is_for_the_own_account(self):
        """A client's result without 'to' answers a request from its own bare JID."""
        d = self.sm.request(request("alice@localhost", "alice@localhost/res"))
        sent = self.sent_request()
        yield self.client_sends_out(self.alice, self.result_from(sent, to=None))
        self.assertEqual(self.successResultOf(d)["type"], "result")

    @defer.inlineCallbacks
    def test_jids_compared_normalised(self):
        """'to' and 'from' match after stringprep (case of localpart and domain)."""
        d = self.sm.request(request("Alice@LocalHost", "alice@localhost/res"))
        sent = self.sent_request()
        yield self.arrives(self.result_from(
            sent, to="ALICE@localhost", **{"from": "alice@LOCALHOST/res"}))
        self.successResultOf(d)

    @defer.inlineCallbacks
    def test_spoofed_replies_ignored(self):
        """Right id, wrong sender or wrong addressee: not an answer; the right one is."""
        bob = yield self.connect("bob")
        alice2 = yield self.connect("alice", resource="other")
        d = self.sm.request(request("alice@localhost", "alice@localhost/res"))
        sent = self.sent_request()
        yield self.client_sends(bob, self.result_from(sent))
        yield self.client_sends(alice2, self.result_from(sent))
        yield self.arrives(self.result_from(sent, **{"from": "alice@remote.example/res"}))
        yield self.client_sends(self.alice, self.result_from(sent, to="localhost"))
        yield self.client_sends(self.alice, self.result_from(sent, id="other-id"))
        self.assertNoResult(d)
        yield self.client_sends(self.alice, self.result_from(sent))
        self.successResultOf(d)

    @defer.inlineCallbacks
    def test_bare_jid_request(self):
        """A request to a local bare JID is answered by the server on the account's behalf."""
        d = self.sm.request(request("localhost", "bob@localhost", stanza_id="b1"))
        # The account answers itself (ping, to a stranger): an error from the bare JID.
        failure = yield self.assertFailure(d, StanzaError)
        self.assertEqual(failure.condition, "service-unavailable")
        d = self.sm.request(request("alice@localhost", "alice@localhost", stanza_id="b2"))
        result = yield d
        self.assertEqual((result["from"], result["to"]), ("alice@localhost", "alice@localhost"))
        self.assertEqual(self.alice.take(), [])

    @defer.inlineCallbacks
    def test_error_reply(self):
        """An error reply fails the request with its condition, type and text."""
        d = self.sm.request(request("alice@localhost", "alice@localhost/res"))
        sent = self.sent_request()
        yield self.client_sends(self.alice, stanza(
            f"<iq type='error' id='{sent['id']}' to='alice@localhost'>"
            "<error type='cancel'><feature-not-implemented "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>not here</text></error></iq>"))
        failure = self.failureResultOf(d, StanzaError)
        self.assertEqual((failure.value.condition, failure.value.type, failure.value.text),
                         ("feature-not-implemented", "cancel", "not here"))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    @defer.inlineCallbacks
    def test_error_without_condition(self):
        """An error reply that names no condition: undefined-condition."""
        d = self.sm.request(request("alice@localhost", "alice@localhost/res"))
        sent = self.sent_request()
        yield self.client_sends(self.alice, stanza(
            f"<iq type='error' id='{sent['id']}' to='alice@localhost'/>"))
        self.assertEqual(self.failureResultOf(d, StanzaError).value.condition,
                         "undefined-condition")

    @defer.inlineCallbacks
    def test_timeout(self):
        """No answer within the timeout: TimeoutError; a late answer goes nowhere."""
        d = self.sm.request(request("alice@localhost", "alice@localhost/res"), timeout=5)
        sent = self.sent_request()
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.failureResultOf(d, defer.TimeoutError)
        self.assertEqual(self.sm.requests.pending, {})
        yield self.client_sends(self.alice, self.result_from(sent))
        self.assertEqual(self.alice.take(), [])

    @defer.inlineCallbacks
    def test_session_ended(self):
        """The addressed session goes away: the request fails at once."""
        alice2 = yield self.connect("alice", resource="other")
        d = self.sm.request(request("alice@localhost", "alice@localhost/res"))
        other = self.sm.request(request("alice@localhost", "alice@localhost/other"))
        yield self.disconnect(self.alice)
        self.assertEqual(self.failureResultOf(d, StanzaError).value.condition,
                         "recipient-unavailable")
        self.assertNoResult(other)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        yield self.client_sends(alice2, self.result_from(self.sent_request(alice2)))
        self.successResultOf(other)

    def test_replaced_session(self):
        """A new session binding the same full JID: requests to the old one fail."""
        d = self.sm.request(request("alice@localhost", "alice@localhost/res"))
        self.connect("alice")
        self.failureResultOf(d, StanzaError)

    def test_no_such_session(self):
        """A request to a full JID nobody has bound: the bounce fails it."""
        d = self.sm.request(request("alice@localhost", "alice@localhost/gone"))
        self.assertEqual(self.failureResultOf(d, StanzaError).value.condition,
                         "service-unavailable")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_bounded(self):
        """Beyond the bound, a request fails at once with resource-constraint."""
        self.patch(requests_module, "MAX_PENDING", 2)
        first = self.sm.request(request("alice@localhost", "alice@localhost/res"))
        second = self.sm.request(request("alice@localhost", "alice@localhost/res"))
        third = self.sm.request(request("alice@localhost", "alice@localhost/res"))
        self.assertEqual(self.failureResultOf(third, StanzaError).value.condition,
                         "resource-constraint")
        self.assertEqual(len(self.alice.take("iq")), 2)
        first.cancel()
        self.failureResultOf(first, defer.CancelledError)
        self.assertEqual(len(self.sm.requests.pending), 1)
        second.cancel()
        self.failureResultOf(second, defer.CancelledError)

    def test_invalid_requests(self):
        """Not an iq get/set with valid addresses, or a duplicate id: ValueError."""
        for xml in ("<iq type='result' from='localhost' to='alice@localhost/res'/>",
                    "<iq type='get' from='localhost'/>",
                    "<iq type='get' from='@bad' to='alice@localhost/res'/>",
                    "<message from='localhost' to='alice@localhost/res'/>"):
            self.failureResultOf(self.sm.request(stanza(xml)), ValueError)
        first = self.sm.request(request("localhost", "alice@localhost/res", stanza_id="dup"))
        self.failureResultOf(
            self.sm.request(request("localhost", "alice@localhost/res", stanza_id="dup")),
            ValueError)
        first.cancel()
        self.failureResultOf(first, defer.CancelledError)

    @defer.inlineCallbacks
    def test_stop_cancels(self):
        """Stopping the session manager cancels what is pending."""
        d = self.sm.request(request("alice@localhost", "alice@localhost/res"))
        yield self.sm.stopService()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
