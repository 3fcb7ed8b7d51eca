"""xmppd.c2s.xmlparser: closing a parser (stream restarts and connection ends), stanza trees."""

import gc
import tracemalloc
import weakref

from twisted.trial import unittest

from tests.support import without_collector
from xmppd.c2s.xmlparser import RestrictedElementStream, StreamParseError

HEADER = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"




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


class StanzaTreeTests(unittest.TestCase):
    """Parsed stanzas are freed by reference counting; deeper elements know their parent."""

    def parse(self, data):
        stream = RestrictedElementStream()
        elements = []
        stream.DocumentStartEvent = lambda root: None
        stream.ElementEvent = elements.append
        stream.parse(HEADER + data)
        self.addCleanup(stream.close)
        found = list(elements)
        elements.clear()
        return found

    def test_stanza_is_not_a_cycle(self):
        without_collector(self)
        [message] = self.parse(b"<message to='a@b'><body>hi</body><x xmlns='y'><z/></x></message>")
        body, x = message.elements()
        self.assertEqual((body.name, str(body), x.name), ("body", "hi", "x"))
        self.assertIsNone(message.parent)
        self.assertIsNone(body.parent)
        gone = weakref.ref(message)
        gone_body = weakref.ref(body)
        del message, body, x
        self.assertIsNone(gone())
        self.assertIsNone(gone_body())

    def test_grandchildren_link_to_their_parent(self):
        """What wokkel's pubsub request parsing walks (verb element -> <pubsub/>)."""
        iq = self.parse(b"<iq type='set' id='1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
                        b"<publish node='n'><item id='i'><entry xmlns='e'/></item></publish>"
                        b"</pubsub></iq><iq type='get' id='2'/>")[0]
        pubsub = iq.firstChildElement()
        publish = pubsub.firstChildElement()
        item = publish.firstChildElement()
        self.assertIs(publish.parent, pubsub)
        self.assertIs(item.parent, publish)
        self.assertIs(item.firstChildElement().parent, item)
        self.assertEqual(pubsub.toXml(), "<pubsub xmlns='http://jabber.org/protocol/pubsub'>"
                         "<publish node='n'><item id='i'><entry xmlns='e'/></item></publish>"
                         "</pubsub>")

    def test_stanzas_in_a_row_keep_their_own_children(self):
        elements = self.parse(b"<message><a><b/></a><c/></message><presence><d/></presence>")
        self.assertEqual([e.toXml() for e in elements],
                         ["<message xmlns='jabber:client'><a><b/></a><c/></message>",
                          "<presence xmlns='jabber:client'><d/></presence>"])


class Recorder:
    """A parser with its events recorded."""

    def __init__(self, **limits):
        self.stream = RestrictedElementStream(**limits)
        self.roots, self.elements, self.ends = [], [], []
        self.stream.DocumentStartEvent = self.roots.append
        self.stream.ElementEvent = self.elements.append
        self.stream.DocumentEndEvent = lambda: self.ends.append(True)

    def feed(self, *chunks):
        """Parse the chunks in order."""
        for chunk in chunks:
            self.stream.parse(chunk)


class HibernateTests(unittest.TestCase):
    """hibernate() frees expat between stanzas; parsing goes on unchanged after it."""

    def test_parsing_goes_on_after_waking(self):
        r = Recorder()
        r.feed(HEADER[:-1] + b" xmlns:x='urn:extra' xml:lang='en'>", b"<message/>")
        self.assertTrue(r.stream.hibernate())
        self.assertTrue(r.stream.hibernating)
        self.assertIsNone(r.stream.parser)
        r.feed(b" ", b"<stream:error><x:thing/></stream:error><message to='a'><body>hi</body>")
        self.assertTrue(r.stream.hibernate() is False)  # inside a stanza now
        r.feed(b"</message></stream:stream>")
        self.assertEqual(len(r.roots), 1)  # the woken parser's start tag is not an event
        names = [(e.uri, e.name, e.defaultUri) for e in r.elements]
        self.assertEqual(names, [
            ("jabber:client", "message", "jabber:client"),
            ("http://etherx.jabber.org/streams", "error", "jabber:client"),
            ("jabber:client", "message", "jabber:client"),
        ])
        self.assertEqual([c.uri for c in r.elements[1].elements()], ["urn:extra"])
        self.assertEqual(str(r.elements[2].body), "hi")
        self.assertEqual(r.ends, [True])

    def test_not_while_anything_is_half_parsed(self):
        for pending in (b"<message><bo", b"<mess", b"<message>text"):
            r = Recorder()
            r.feed(HEADER, pending)
            self.assertFalse(r.stream.hibernate(), pending)
            self.assertIsNotNone(r.stream.parser)
        r = Recorder()
        self.assertFalse(r.stream.hibernate())  # no root yet
        r.feed(HEADER[:20])
        self.assertFalse(r.stream.hibernate())

    def test_never_when_the_root_tag_name_was_split(self):
        """The root's start tag began in an earlier chunk: its name is unknown."""
        r = Recorder()
        r.feed(*(HEADER[i:i + 1] for i in range(len(HEADER))))
        self.assertEqual(len(r.roots), 1)
        self.assertFalse(r.stream.hibernate())
        r.feed(b"<message/>")
        self.assertEqual(len(r.elements), 1)

    def test_errors_and_limits_after_waking(self):
        r = Recorder(max_stanza_size=100)
        r.feed(HEADER, b"<message/>")
        self.assertTrue(r.stream.hibernate())
        with self.assertRaises(StreamParseError) as raised:
            r.feed(b"<message>" + b"x" * 200)
        self.assertEqual(raised.exception.condition, "policy-violation")
        r = Recorder()
        r.feed(HEADER, b"<message/>")
        self.assertTrue(r.stream.hibernate())
        with self.assertRaises(StreamParseError) as raised:
            r.feed(b"</stream:wrong>")
        self.assertEqual(raised.exception.condition, "not-well-formed")

    def test_frees_the_parser_memory(self):
        """Most of what a parser holds after a stream header is expat's: it goes."""
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        streams = []
        for _ in range(50):
            r = Recorder()
            r.feed(HEADER, b"<message/>")
            streams.append(r)
        before = tracemalloc.get_traced_memory()[0]
        for r in streams:
            self.assertTrue(r.stream.hibernate())
        freed = before - tracemalloc.get_traced_memory()[0]
        self.assertGreater(freed / len(streams), 4096)
