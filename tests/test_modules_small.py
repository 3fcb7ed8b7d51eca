"""xmppd.modules.version, ping and time: the server's small iq answers."""

from twisted.internet import defer

import xmppd
from tests.test_sm_iq import PING, IQTestCase, iq


class ServerTests(IQTestCase):
    """The server's own handlers."""

    @defer.inlineCallbacks
    def test_version(self):
        reply = yield self.asks(iq("localhost", "<query xmlns='jabber:iq:version'/>"))
        fields = {c.name: str(c) for c in reply.query.elements()}
        self.assertEqual(fields, {"name": "xmppd", "version": xmppd.__version__})

    @defer.inlineCallbacks
    def test_ping(self):
        reply = yield self.asks(iq("localhost", PING))
        self.assertEqual(reply["type"], "result")
        self.assertEqual(list(reply.elements()), [])
        reply = yield self.asks(iq(None, PING))
        self.assertEqual(reply["type"], "result")

    @defer.inlineCallbacks
    def test_time(self):
        reply = yield self.asks(iq("localhost", "<time xmlns='urn:xmpp:time'/>"))
        self.assertEqual(str(reply.time.tzo), "+00:00")
        self.assertRegex(str(reply.time.utc), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
