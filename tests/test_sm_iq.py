"""Server iq handlers and iq routing."""

from twisted.internet import defer

from tests.sm_fakes import SessionManagerTestCase, error_condition


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
