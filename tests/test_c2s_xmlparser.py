"""xmppd.c2s.xmlparser: closing a parser (stream restarts and connection ends)."""

import gc
import weakref

from twisted.trial import unittest

from xmppd.c2s.xmlparser import RestrictedElementStream

HEADER = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"


def without_collector(testcase):
    """Turn the cycle collector off for the test: only reference counting frees."""
    if gc.isenabled():
        gc.disable()
        testcase.addCleanup(gc.enable)


class CloseTests(unittest.TestCase):
    """close() stops the events and lets reference counting free the parser."""

    def test_closed_parser_is_freed_at_once(self):
        without_collector(self)
        stream = RestrictedElementStream()
        elements = []
        stream.DocumentStartEvent = lambda root: None
        stream.ElementEvent = elements.append
        stream.parse(HEADER + b"<message/>")
        self.assertEqual([e.name for e in elements], ["message"])
        gone = weakref.ref(stream)
        stream.close()
        del stream
        self.assertIsNone(gone())

    def test_open_parser_is_a_cycle(self):
        """Why close() exists: expat holds the parser's bound methods."""
        without_collector(self)
        stream = RestrictedElementStream()
        gone = weakref.ref(stream)
        del stream
        self.assertIsNotNone(gone())
        gc.collect()
        self.assertIsNone(gone())

    def test_close_inside_a_handler_ignores_the_rest(self):
        """A restart during an element event: later data in the same chunk goes nowhere."""
        stream = RestrictedElementStream()
        seen = []
        stream.DocumentStartEvent = lambda root: None

        def element(found):
            seen.append(found.name)
            stream.close()

        stream.ElementEvent = element
        stream.parse(HEADER + b"<auth/><message/><iq/>")
        self.assertEqual(seen, ["auth"])
