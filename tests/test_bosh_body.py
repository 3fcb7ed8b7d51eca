"""BOSH bodies (XEP-0124): parsing requests, writing responses."""

from __future__ import annotations

from twisted.trial import unittest

from xmppd.bosh.body import NS_HTTPBIND, NS_XBOSH, BadRequest, parse_body, render_body, version_text
from xmppd.config import LimitSettings

LIMITS = LimitSettings(max_stanza_size=4096)


class ParseTests(unittest.TestCase):
    """A body's attributes and elements, or BadRequest."""

    def test_attributes_and_children(self):
        body = parse_body(f"<body xmlns='{NS_HTTPBIND}' xmlns:xmpp='{NS_XBOSH}' rid='7' "
                          "sid='s' xmpp:restart='true'><message to='a@b'><body>hi</body>"
                          "</message><r xmlns='urn:xmpp:sm:3'/></body>".encode(), LIMITS)
        self.assertEqual((body.number("rid"), body.get("sid"), body.is_restart), (7, "s", True))
        message, r = body.children
        self.assertEqual((message.uri, message.body.uri, str(message.body)),
                         ("jabber:client", "jabber:client", "hi"))
        self.assertEqual(r.uri, "urn:xmpp:sm:3")

    def test_numbers(self):
        body = parse_body(f"<body xmlns='{NS_HTTPBIND}' rid='-1' wait='x' hold='٣'/>".encode(),
                          LIMITS)
        self.assertEqual((body.number("rid"), body.number("wait"), body.number("hold"),
                          body.number("none")), (None, None, None, None))

    def test_not_a_body(self):
        for data in (b"", b"<body", f"<body xmlns='{NS_HTTPBIND}'>x</body>".encode(),
                     b"<body/>", f"<body xmlns='{NS_HTTPBIND}'/>junk".encode(),
                     f"<body xmlns='{NS_HTTPBIND}'><a>&ent;</a></body>".encode(),
                     f"<body xmlns='{NS_HTTPBIND}'><a>{'x' * 5000}</a></body>".encode()):
            with self.assertRaises(BadRequest):
                parse_body(data, LIMITS)


class RenderTests(unittest.TestCase):
    """Responses declare the namespaces their attributes use."""

    def test_empty_and_with_payload(self):
        self.assertEqual(render_body([]), f"<body xmlns='{NS_HTTPBIND}'/>".encode())
        self.assertEqual(render_body([("type", "terminate"), ("condition", "x&y")], [b"<a/>"]),
                         f"<body xmlns='{NS_HTTPBIND}' type='terminate' condition='x&amp;y'>"
                         "<a/></body>".encode())
        self.assertEqual(render_body([("xmpp:version", "1.0")]),
                         f"<body xmlns='{NS_HTTPBIND}' xmlns:xmpp='{NS_XBOSH}' "
                         "xmpp:version='1.0'/>".encode())

    def test_version(self):
        self.assertEqual([version_text(v) for v in (None, "1.6", "1.11", "2.0", "x", "1.12")],
                         ["1.11", "1.6", "1.11", "1.11", "1.11", "1.11"])
