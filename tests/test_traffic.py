"""xmppd.traffic: the redacted traffic log."""


from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from xmppd import logs, traffic


def redact(*chunks):
    redactor = traffic.Redactor()
    return "".join(redactor.feed(c.encode() if isinstance(c, str) else c) for c in chunks)

class RedactionTests(unittest.TestCase):
    """Secrets never reach the traffic log, however the bytes are split."""

    HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
              "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")

    def test_sasl_payloads(self):
        text = redact(
            self.HEADER,
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
            "AHJvbWVvAHNlY3JldA==</auth>",
            "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>cj1zZWNyZXQ=</challenge>",
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>Yz1iaXdz</response>",
            "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>dj1zaWduYXR1cmU=</success>",
        )
        for secret in ("AHJvbWVvAHNlY3JldA==", "cj1zZWNyZXQ=", "Yz1iaXdz", "dj1zaWduYXR1cmU="):
            self.assertNotIn(secret, text)
        self.assertIn("mechanism='PLAIN'>[redacted]</auth>", text)
        self.assertEqual(text.count("[redacted]"), 4)

    def test_split_anywhere(self):
        stanza = (self.HEADER + "<iq type='set' id='r1'><query xmlns='jabber:iq:register'>"
                  "<username>romeo</username><password>hunter2</password></query></iq>"
                  "<message to='a@localhost'><body>hello</body></message>")
        data = stanza.encode()
        for cut in range(1, len(data)):
            text = redact(data[:cut], data[cut:])
            # The traffic went through, the password replaced ...
            self.assertIn("<password>[redacted]", text, cut)
            self.assertIn("<body>hello</body>", text, cut)
            # ... and no part of it is left
            self.assertNotIn("hunter", text, cut)
            self.assertNotIn("ter2", text, cut)
        whole = redact(data)
        self.assertIn("<username>romeo</username><password>[redacted]</password>", whole)
        self.assertIn("<body>hello</body>", whole)

    def test_byte_by_byte(self):
        stanza = (self.HEADER + "<presence to='room@conference.localhost/nick'>"
                  "<x xmlns='http://jabber.org/protocol/muc'><password>s3cr3t-é</password>"
                  "</x></presence>").encode()
        text = redact(*[stanza[i:i + 1] for i in range(len(stanza))])
        self.assertNotIn("s3cr", text)
        self.assertIn("<password>", text)

    def test_room_secret_form_field(self):
        text = redact(
            self.HEADER,
            "<iq type='set'><query xmlns='http://jabber.org/protocol/muc#owner'>"
            "<x xmlns='jabber:x:data' type='submit'>"
            "<field var='muc#roomconfig_roomname'><value>Lobby</value></field>"
            "<field var=\"muc#roomconfig_roomsecret\"><value>cellar-door</value></field>"
            "<field var='password'><value>pw-in-form</value></field>"
            "</x></query></iq>",
        )
        self.assertNotIn("cellar-door", text)
        self.assertNotIn("pw-in-form", text)
        self.assertIn("<value>Lobby</value>", text)

    def test_cdata_and_restart(self):
        text = redact(
            self.HEADER,
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'><![CDATA[c2VjcmV0]]>",
            "</auth>",
            self.HEADER,  # a restarted stream (after SASL) starts from nothing open
            "<message><body><![CDATA[visible]]></body></message>",
        )
        self.assertNotIn("c2VjcmV0", text)
        self.assertIn("<![CDATA[visible]]>", text)

    def test_quoted_angle_bracket_and_self_closing(self):
        text = redact(self.HEADER, "<password/><message id='a>b'><body>shown</body></message>")
        self.assertIn("<body>shown</body>", text)

    def test_tracer_logs_one_line_and_detaches_above_debug(self):
        class FakeStream:
            rawDataInFn = None
            rawDataOutFn = None

        self.addCleanup(logs.set_level, logs.current_level())
        logs.set_level("debug")
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        stream = FakeStream()
        tracer = traffic.StreamTracer(stream, "127.0.0.1:1234")
        tracer.attach()
        stream.rawDataInFn(b"<message>\n<body>hi</body></message>")
        stream.rawDataOutFn(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>eA==</success>")
        lines = [e for e in events if e.get("log_namespace") == "xmppd.traffic"]
        self.assertEqual(len(lines), 2)
        self.assertEqual(lines[0]["data"], "<message>\\n<body>hi</body></message>")
        self.assertEqual(lines[0]["direction"], "recv")
        self.assertNotIn("eA==", lines[1]["data"])
        logs.set_level("info")
        stream.rawDataInFn(b"<more/>")
        self.assertIsNone(stream.rawDataInFn)
        self.assertIsNone(stream.rawDataOutFn)
