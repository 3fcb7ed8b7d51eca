"""End-to-end tests for external components (XEP-0114) over loopback."""

from twisted.internet import defer, reactor, task
from twisted.trial import unittest
from twisted.words.protocols.jabber import component, xmlstream
from twisted.words.xish import domish

from xmppd.components import ComponentServerFactory
from xmppd.router import Router


class Recorder:
    """The local domain's destination: records what the router sends it."""

    def __init__(self):
        self.received = []
        self.waiting = []

    def send(self, stanza):
        self.received.append(stanza)
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(stanza)

    def next(self):
        d = defer.Deferred()
        self.waiting.append(d)
        return d


class ComponentTests(unittest.TestCase):
    """A component connects with its domain's secret and exchanges stanzas."""

    def setUp(self):
        self.router = Router()
        self.local = Recorder()
        self.router.register("localhost", self.local)
        factory = ComponentServerFactory(self.router, {"gw.localhost": "s3cret"})
        self.port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)

    def connect(self, domain="gw.localhost", secret="s3cret"):
        """Connect a component; fires with (stream, 'authd' or the stream error condition)."""
        factory = component.componentFactory(domain, secret)
        outcome = defer.Deferred()

        def authenticated(xs):
            if not outcome.called:
                outcome.callback((xs, "authd"))

        def failed(reason):
            if not outcome.called:
                condition = getattr(reason.value, "condition", reason.getErrorMessage())
                outcome.callback((None, condition))

        def connected(xs):
            # A reconnecting factory, re-armed by buildProtocol: connect once only.
            factory.stopTrying()
            self.addCleanup(lambda: xs.transport and xs.transport.loseConnection())

        factory.addBootstrap(xmlstream.STREAM_CONNECTED_EVENT, connected)
        factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, authenticated)
        factory.addBootstrap(xmlstream.STREAM_ERROR_EVENT, failed)
        factory.addBootstrap(xmlstream.INIT_FAILED_EVENT, failed)
        factory.addBootstrap(xmlstream.STREAM_END_EVENT, lambda reason: failed(reason))
        connector = reactor.connectTCP("127.0.0.1", self.port.getHost().port, factory)
        self.addCleanup(connector.disconnect)
        return outcome

    @defer.inlineCallbacks
    def test_exchange(self):
        xs, outcome = yield self.connect()
        self.assertEqual(outcome, "authd")
        self.assertTrue(self.router.serves("gw.localhost"))

        received = defer.Deferred()
        xs.addOnetimeObserver("/message", received.callback)
        stanza = domish.Element(("jabber:client", "message"))
        stanza["to"] = "user@gw.localhost"
        stanza["from"] = "romeo@localhost/orchard"
        stanza.addElement("body", content="hello component")
        self.router.route(stanza)
        message = yield received
        self.assertEqual(message.uri, "jabber:component:accept")
        self.assertEqual(str(message.body), "hello component")

        reply = domish.Element(("jabber:component:accept", "message"))
        reply["to"] = "romeo@localhost/orchard"
        reply["from"] = "user@gw.localhost"
        reply.addElement("body", content="hello back")
        waiting = self.local.next()
        xs.send(reply)
        delivered = yield waiting
        self.assertEqual(str(delivered.body), "hello back")

    @defer.inlineCallbacks
    def test_wrong_secret(self):
        _, outcome = yield self.connect(secret="wrong")
        self.assertEqual(outcome, "not-authorized")
        self.assertFalse(self.router.serves("gw.localhost"))

    @defer.inlineCallbacks
    def test_unknown_domain(self):
        _, outcome = yield self.connect(domain="other.localhost")
        self.assertEqual(outcome, "host-unknown")

    @defer.inlineCallbacks
    def test_second_connection_conflicts(self):
        first, outcome = yield self.connect()
        self.assertEqual(outcome, "authd")
        _, outcome = yield self.connect()
        self.assertEqual(outcome, "conflict")
        self.assertTrue(self.router.serves("gw.localhost"))
        received = defer.Deferred()
        first.addOnetimeObserver("/message", received.callback)
        stanza = domish.Element((None, "message"))
        stanza["to"] = "user@gw.localhost"
        stanza["from"] = "romeo@localhost/orchard"
        self.router.route(stanza)
        yield received  # the first connection still has the route

    @defer.inlineCallbacks
    def test_forged_from_closes_the_stream(self):
        xs, _ = yield self.connect()
        ended = defer.Deferred()
        xs.addObserver(xmlstream.STREAM_ERROR_EVENT, lambda f: ended.callback(f.value.condition))
        forged = domish.Element(("jabber:component:accept", "message"))
        forged["to"] = "juliet@localhost"
        forged["from"] = "romeo@localhost/orchard"
        xs.send(forged)
        self.assertEqual((yield ended), "invalid-from")
        self.assertEqual(self.local.received, [])

    @defer.inlineCallbacks
    def test_disconnect_unregisters(self):
        xs, _ = yield self.connect()
        gone = defer.Deferred()
        xs.addObserver(xmlstream.STREAM_END_EVENT, lambda reason: gone.callback(None))
        xs.transport.loseConnection()
        yield gone
        for _ in range(50):  # the server side notices the close a moment later
            if not self.router.serves("gw.localhost"):
                break
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.assertFalse(self.router.serves("gw.localhost"))
