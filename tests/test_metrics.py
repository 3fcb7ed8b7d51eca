"""xmppd.metrics: /metrics in the OpenMetrics text format, its access rule and its figures."""

import re

from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial import unittest

from tests.http_support import request
from tests.sm_fakes import SessionManagerTestCase
from tests.support import start_server
from xmppd.metrics import CONTENT_TYPE, LAG_INTERVAL, LoopLag
from xmppd.sm import session as session_module

SAMPLE = re.compile(r'^([a-z_]+)(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? (-?[0-9.e+-]+)$')


def parse(text: str) -> dict[str, float]:
    """``name{labels}`` -> value, checking the OpenMetrics shape line by line."""
    lines = text.split("\n")
    assert lines[-2:] == ["# EOF", ""], lines[-3:]
    samples: dict[str, float] = {}
    kinds: dict[str, str] = {}
    for line in lines[:-2]:
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("gauge", "counter"), line
            kinds[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        found = SAMPLE.match(line)
        assert found, line
        name = found.group(1)
        family = name[:-len("_total")] if name.endswith("_total") else name
        assert family in kinds, line
        assert name.endswith("_total") == (kinds[family] == "counter"), line
        samples[name + (found.group(2) or "")] = float(found.group(4))
    return samples


class MetricsOverHTTPTests(unittest.TestCase):
    """The document on a live server."""

    @defer.inlineCallbacks
    def get(self, server, path="/metrics"):
        reply = yield request("GET", f"http://127.0.0.1:{server.port_of('http')}{path}")
        return reply

    @defer.inlineCallbacks
    def test_the_figures(self):
        server = start_server(self, metrics={"enabled": True})
        yield server.server.ready
        reply = yield self.get(server)
        self.assertEqual(reply.code, 200)
        self.assertEqual(reply.header("content-type"), CONTENT_TYPE.decode())
        figures = parse(reply.body.decode())
        self.assertEqual(figures['xmppd_connections{transport="c2s"}'], 0)
        self.assertEqual(figures["xmppd_sessions"], 0)
        self.assertEqual(figures["xmppd_muc_rooms"], 0)
        self.assertEqual(figures["xmppd_uploads"], 0)
        self.assertGreater(figures["xmppd_database_bytes"], 0)
        self.assertGreater(figures["process_resident_memory_bytes"], 1_000_000)
        for name in ('xmppd_stanzas_total{direction="in",kind="message"}',
                     'xmppd_stanzas_total{direction="out",kind="iq"}',
                     "xmppd_auth_failures_total", "xmppd_archived_messages_total",
                     "xmppd_event_loop_lag_seconds", "process_cpu_seconds_total"):
            self.assertIn(name, figures)

        # an open client connection counts
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", server.port_of("c2s"))
        client = yield endpoint.connect(protocol.Factory.forProtocol(protocol.Protocol))
        self.addCleanup(client.transport.loseConnection)
        yield task.deferLater(reactor, 0.05, lambda: None)  # the server accepts it
        figures = parse((yield self.get(server)).body.decode())
        self.assertEqual(figures['xmppd_connections{transport="c2s"}'], 1)

    @defer.inlineCallbacks
    def test_other_addresses_are_refused(self):
        server = start_server(self, metrics={"enabled": True, "allowed": ["10.0.0.0/8"]})
        reply = yield self.get(server)
        self.assertEqual(reply.code, 403)
        self.assertNotIn(b"xmppd_", reply.body)

    @defer.inlineCallbacks
    def test_off_by_default(self):
        server = start_server(self)
        reply = yield self.get(server)
        self.assertEqual(reply.code, 404)


class StanzaCounterTests(SessionManagerTestCase):
    """Sessions count what clients send and are sent."""

    @defer.inlineCallbacks
    def test_a_message_counts_once_each_way(self):
        alice = yield self.connect("alice")
        bob = yield self.connect("bob")
        before = (session_module.STANZAS_IN["message"], session_module.STANZAS_OUT["message"])
        yield self.client_sends_out(
            alice, "<message to='bob@localhost/res' type='chat'><body>hi</body></message>")
        self.assertEqual(len(bob.take("message")), 1)
        after = (session_module.STANZAS_IN["message"], session_module.STANZAS_OUT["message"])
        self.assertEqual((after[0] - before[0], after[1] - before[1]), (1, 1))


class LoopLagTests(unittest.TestCase):
    """The lag probe measures how late a due timer runs."""

    def test_lateness_over_the_window(self):
        clock = task.Clock()
        lag = LoopLag(clock)
        lag.start()
        self.addCleanup(lag.stop)
        clock.advance(LAG_INTERVAL)
        self.assertEqual(lag.lag, 0.0)
        clock.advance(LAG_INTERVAL + 2.5)  # the loop was busy: the timer ran 2.5 s late
        self.assertAlmostEqual(lag.lag, 2.5)
        for _ in range(12):  # ten probes later it is out of the window
            clock.advance(LAG_INTERVAL)
        self.assertEqual(lag.lag, 0.0)
