"""BOSH sessions (XEP-0124/0206) on a fake clock: rids, holding, timers, the stream."""

from __future__ import annotations

import base64

from twisted.trial import unittest

from tests.bosh_support import DOMAIN, EMPTY, NS_XBOSH, Harness
from xmppd.bosh.body import NS_HTTPBIND

NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_STREAMS = "http://etherx.jabber.org/streams"


def terminate(condition: str | None = None) -> str:
    """A terminate body, as the server writes it."""
    extra = f" condition='{condition}'" if condition else ""
    return f"<body xmlns='{NS_HTTPBIND}' type='terminate'{extra}/>"


def message(to: str, text: str) -> str:
    return f"<message xmlns='jabber:client' to='{to}' type='chat'><body>{text}</body></message>"


class CreationTests(unittest.TestCase):
    """Session creation: the attributes, the features, refusals."""

    def setUp(self):
        self.h = Harness()

    def test_response_attributes_and_features(self):
        sid, request = self.h.create(rid=100, hold=1, wait=300)
        body = request.body
        attributes = dict(body.attributes)
        authid = attributes.pop("authid")
        self.assertEqual(attributes, {
            "sid": sid, "wait": "120", "requests": "2", "hold": "1", "inactivity": "60",
            "polling": "5", "maxpause": "300", "ver": "1.6", "from": DOMAIN, "secure": "true",
            (NS_XBOSH, "version"): "1.0", (NS_XBOSH, "restartlogic"): "true"})
        self.assertEqual(len(authid), 32)
        self.assertGreaterEqual(len(sid), 32)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"),
                         [b"text/xml; charset=utf-8"])
        features = body.firstChildElement()
        self.assertEqual((features.uri, features.name), (NS_STREAMS, "features"))
        mechanisms = [str(m) for m in features.mechanisms.elements()]
        self.assertIn("PLAIN", mechanisms)
        self.assertNotIn("starttls", request.text)
        self.assertIn(sid, self.h.endpoint.sessions)

    def test_smaller_wait_and_polling_session(self):
        sid, request = self.h.create(wait=10, hold=0)
        attributes = request.body.attributes
        self.assertEqual((attributes["wait"], attributes["hold"], attributes["requests"]),
                         ("10", "0", "1"))

    def test_from_is_the_stream_headers(self):
        sid, _ = self.h.create(attributes={"from": "alice@example.org"})
        self.assertEqual(self.h.endpoint.sessions[sid].stream.peer, "alice@example.org")

    def test_version_lower_of_both(self):
        _, request = self.h.create(attributes={})
        self.assertEqual(request.body["ver"], "1.6")

    def test_unknown_host(self):
        request = self.h.post(f"<body xmlns='{NS_HTTPBIND}' rid='1' to='elsewhere.example' "
                              "wait='60' hold='1'/>")
        self.assertEqual(request.text, terminate("host-unknown"))
        self.assertEqual(self.h.endpoint.sessions, {})

    def test_missing_to_or_rid(self):
        for text in (f"<body xmlns='{NS_HTTPBIND}' rid='1' wait='60' hold='1'/>",):
            self.assertEqual(self.h.post(text).text, terminate("host-unknown"))
        text = f"<body xmlns='{NS_HTTPBIND}' to='{DOMAIN}' wait='60' hold='1'/>"
        self.assertEqual(self.h.post(text).text, terminate("bad-request"))
        text = f"<body xmlns='{NS_HTTPBIND}' rid='x1' to='{DOMAIN}'/>"
        self.assertEqual(self.h.post(text).text, terminate("bad-request"))

    def test_unknown_sid(self):
        request = self.h.body(5, "nosuchsid")
        self.assertEqual(request.text, terminate("item-not-found"))
        self.assertIsNone(request.responseCode)  # 200

    def test_bad_xml_and_not_a_body(self):
        for text in ("<body xmlns='http://jabber.org/protocol/httpbind' rid='1'",
                     "<body rid='1' to='example.org'/>",
                     "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>",
                     f"<body xmlns='{NS_HTTPBIND}'>text</body>", "",
                     f"<body xmlns='{NS_HTTPBIND}'/><body xmlns='{NS_HTTPBIND}'/>",
                     f"<!DOCTYPE x><body xmlns='{NS_HTTPBIND}'/>"):
            request = self.h.post(text)
            self.assertEqual(request.responseCode, 400, text)
            self.assertTrue(request.text.startswith("not a BOSH body"), request.text)
            self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"),
                             [b"text/plain; charset=utf-8"])

    def test_bad_xml_leaves_the_session_alone(self):
        sid, _ = self.h.create()
        request = self.h.post(f"<body xmlns='{NS_HTTPBIND}' rid='101' sid='{sid}'>"
                              "<message></body>")
        self.assertEqual(request.responseCode, 400)
        self.assertIn(sid, self.h.endpoint.sessions)

    def test_sessions_per_address(self):
        h = Harness(max_sessions_per_address=2)
        h.create(ip="192.0.2.5")
        h.create(ip="192.0.2.5")
        request = h.post(f"<body xmlns='{NS_HTTPBIND}' rid='1' to='{DOMAIN}' wait='60' "
                         "hold='1' xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'/>",
                         ip="192.0.2.5")
        self.assertEqual(request.text, terminate("policy-violation"))
        h.create(ip="192.0.2.6")
        self.assertEqual(len(h.endpoint.sessions), 3)

    def test_no_mechanisms_when_not_secure(self):
        _, request = self.h.create(secure=False)
        self.assertIsNone(request.body.firstChildElement().mechanisms)

    def test_no_xmpp_version_is_a_stream_error(self):
        request = self.h.post(f"<body xmlns='{NS_HTTPBIND}' rid='1' to='{DOMAIN}' wait='60' "
                              "hold='1'/>")
        body = request.body
        self.assertEqual((body["type"], body["condition"]), ("terminate", "remote-stream-error"))
        error = body.firstChildElement()
        self.assertEqual((error.uri, error.name), (NS_STREAMS, "error"))
        self.assertIsNotNone(error.firstChildElement())
        self.assertEqual(error.firstChildElement().name, "unsupported-version")
        self.assertEqual(self.h.endpoint.sessions, {})


class RequestTests(unittest.TestCase):
    """Holding, waiting, rid order, retransmission, overactivity."""

    def setUp(self):
        self.h = Harness()
        self.sid, _ = self.h.create(rid=100, wait=30)
        self.session = self.h.endpoint.sessions[self.sid]

    def push(self, text: str) -> None:
        """Something for the client from the server's side."""
        self.session.stream.send(text)

    def test_held_until_wait_then_empty(self):
        request = self.h.body(101, self.sid)
        self.assertFalse(request.finished)
        self.h.clock.advance(29.9)
        self.assertFalse(request.finished)
        self.h.clock.advance(0.1)
        self.assertEqual(request.text, EMPTY)

    def test_queued_elements_go_out_in_one_body(self):
        request = self.h.body(101, self.sid)
        self.session.processing = True  # as while a request's stanzas are processed
        self.push("<a xmlns='urn:x'/>")
        self.push("<b xmlns='urn:x'/>")
        self.session.processing = False
        self.assertFalse(request.finished)
        self.session.flush()
        self.assertEqual(request.text, f"<body xmlns='{NS_HTTPBIND}'><a xmlns='urn:x'/>"
                         "<b xmlns='urn:x'/></body>")

    def test_queued_without_a_request_waits_for_the_next(self):
        self.push("<a xmlns='urn:x'/>")
        request = self.h.body(101, self.sid)
        self.assertEqual(request.text, f"<body xmlns='{NS_HTTPBIND}'><a xmlns='urn:x'/></body>")

    def test_new_request_answers_the_older_held_one(self):
        first = self.h.body(101, self.sid)
        second = self.h.body(102, self.sid)
        self.assertEqual(first.text, EMPTY)
        self.assertFalse(second.finished)
        self.push("<a xmlns='urn:x'/>")
        self.assertEqual(second.text, f"<body xmlns='{NS_HTTPBIND}'><a xmlns='urn:x'/></body>")

    def test_out_of_order_waits_for_the_missing_rid(self):
        later = self.h.body(102, self.sid)
        self.assertEqual((later.finished, self.session.last_rid), (0, 100))
        earlier = self.h.body(101, self.sid)
        self.assertEqual(self.session.last_rid, 102)
        # in rid order: 101 answered first (hold 1), 102 held
        self.assertEqual(earlier.text, EMPTY)
        self.assertFalse(later.finished)
        self.push("<b xmlns='urn:x'/>")
        self.assertIn("<b xmlns='urn:x'/>", later.text)

    def test_retransmission_gets_the_cached_response(self):
        request = self.h.body(101, self.sid)
        self.push("<a xmlns='urn:x'/>")
        again = self.h.body(101, self.sid)
        self.assertEqual(again.text, request.text)
        self.assertIn("<a xmlns='urn:x'/>", again.text)
        self.assertIn(self.sid, self.h.endpoint.sessions)

    def test_retransmission_of_a_held_request_takes_its_place(self):
        request = self.h.body(101, self.sid)
        request.drop()  # answered empty (cached), not written
        self.assertEqual(request.written, [])
        again = self.h.body(101, self.sid)
        self.assertEqual(again.text, EMPTY)

    def test_retransmission_too_old(self):
        for rid in (101, 102, 103, 104):
            self.h.body(rid, self.sid)
        request = self.h.body(101, self.sid)  # only the last 2 responses are kept
        self.assertEqual(request.text, terminate("item-not-found"))
        self.assertNotIn(self.sid, self.h.endpoint.sessions)

    def test_rid_beyond_the_window(self):
        request = self.h.body(103, self.sid)  # last 100, requests 2: 101 and 102 only
        self.assertEqual(request.text, terminate("item-not-found"))
        self.assertNotIn(self.sid, self.h.endpoint.sessions)
        self.assertEqual(self.h.body(101, self.sid).text, terminate("item-not-found"))

    def test_too_many_simultaneous_requests(self):
        first = self.h.body(101, self.sid)
        waiting = self.h.body(103, self.sid)  # ahead of 102: waits
        self.assertFalse(first.finished or waiting.finished)
        third = self.h.body(102, self.sid)
        self.assertEqual(third.text, terminate("policy-violation"))
        self.assertEqual(first.text, terminate("policy-violation"))
        self.assertEqual(waiting.text, terminate("policy-violation"))
        self.assertNotIn(self.sid, self.h.endpoint.sessions)

    def test_one_more_request_for_terminate(self):
        first = self.h.body(101, self.sid)
        waiting = self.h.body(103, self.sid)
        closing = self.h.body(102, self.sid, type="terminate")
        self.assertEqual((first.text, closing.text, waiting.text),
                         (terminate(), terminate(), terminate()))
        self.assertEqual(self.session.stream.end_reason, "client-closed")

    def test_dropped_connection_of_the_held_request_starts_inactivity(self):
        request = self.h.body(101, self.sid)
        self.h.clock.advance(10)
        request.drop()
        self.h.clock.advance(59)
        self.assertIn(self.sid, self.h.endpoint.sessions)
        self.h.clock.advance(1)
        self.assertNotIn(self.sid, self.h.endpoint.sessions)

    def test_missing_rid_in_a_session(self):
        request = self.h.post(f"<body xmlns='{NS_HTTPBIND}' sid='{self.sid}'/>")
        self.assertEqual(request.text, terminate("bad-request"))

    def test_inactivity_drops_the_session(self):
        request = self.h.body(101, self.sid)
        self.h.clock.advance(30)  # answered after wait: nothing held from now on
        self.assertEqual(request.text, EMPTY)
        self.h.clock.advance(59)
        self.assertIn(self.sid, self.h.endpoint.sessions)
        self.h.clock.advance(1)
        self.assertNotIn(self.sid, self.h.endpoint.sessions)
        self.assertTrue(self.session.stream.lost)
        self.assertEqual(self.h.body(102, self.sid).text, terminate("item-not-found"))

    def test_a_held_request_keeps_the_session(self):
        for rid in range(101, 106):
            self.h.body(rid, self.sid)
            self.h.clock.advance(29)
        self.assertIn(self.sid, self.h.endpoint.sessions)

    def test_pause(self):
        held = self.h.body(101, self.sid)
        pause = self.h.body(102, self.sid, pause="120")
        self.assertEqual((held.text, pause.text), (EMPTY, EMPTY))
        self.h.clock.advance(119)
        self.assertIn(self.sid, self.h.endpoint.sessions)
        request = self.h.body(103, self.sid)
        self.h.clock.advance(30)  # answered; back to the usual inactivity
        self.assertEqual(request.text, EMPTY)
        self.h.clock.advance(60)
        self.assertNotIn(self.sid, self.h.endpoint.sessions)

    def test_pause_too_long(self):
        request = self.h.body(101, self.sid, pause="301")
        self.assertEqual(request.text, terminate("policy-violation"))

    def test_acks(self):
        h = Harness()
        sid, created = h.create(rid=10, attributes={"ack": "1"})
        self.assertEqual(created.body["ack"], "10")
        first = h.body(11, sid)
        second = h.body(12, sid, ack="10")
        # answering 11 while 12 is in: ack says 12 was received
        self.assertEqual(first.text, f"<body xmlns='{NS_HTTPBIND}' ack='12'/>")
        h.clock.advance(60)
        self.assertEqual(second.text, EMPTY)  # no ack: it is the rid answered

    def test_acknowledged_responses_are_forgotten(self):
        h = Harness()
        sid, _ = h.create(rid=10, attributes={"ack": "1"})
        session = h.endpoint.sessions[sid]
        h.body(11, sid)
        h.body(12, sid, ack="11")
        self.assertEqual(sorted(session.responses), [11])
        h.body(13, sid, ack="12")
        self.assertEqual(sorted(session.responses), [12])


class PollingTests(unittest.TestCase):
    """Polling sessions (hold 0) may not poll faster than ``polling``."""

    def test_too_frequent_empty_polls(self):
        h = Harness()
        sid, _ = h.create(rid=1, hold=0)
        self.assertEqual(h.body(2, sid).text, EMPTY)  # answered at once (hold 0)
        h.clock.advance(5)
        self.assertEqual(h.body(3, sid).text, EMPTY)
        h.clock.advance(4.9)
        self.assertEqual(h.body(4, sid).text, terminate("policy-violation"))
        self.assertNotIn(sid, h.endpoint.sessions)

    def test_polls_with_payloads_are_fine(self):
        h = Harness()
        sid, _ = h.create(rid=1, hold=0)
        h.endpoint.sessions[sid].stream.send("<a xmlns='urn:x'/>")
        self.assertIn("<a xmlns='urn:x'/>", h.body(2, sid).text)
        h.clock.advance(1)
        self.assertEqual(h.body(3, sid).text, EMPTY)  # the last answer had a payload
        h.clock.advance(1)
        self.assertEqual(h.body(4, sid).text, terminate("policy-violation"))


class StreamTests(unittest.TestCase):
    """The c2s stream over the session: SASL, restart, bind, terminate, stream errors."""

    def setUp(self):
        self.h = Harness()
        self.sid, _ = self.h.create(rid=1)
        self.session = self.h.endpoint.sessions[self.sid]

    def login(self) -> str:
        plain = base64.b64encode(b"\0alice\0secret").decode()
        request = self.h.body(2, self.sid, f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>"
                              f"{plain}</auth>")
        self.assertEqual(request.body.firstChildElement().name, "success")
        request = self.h.body(3, self.sid, xmpp_restart="true")
        features = request.body.firstChildElement()
        self.assertEqual(features.name, "features")
        self.assertIsNotNone(features.bind)
        request = self.h.body(4, self.sid, f"<iq type='set' id='b1'><bind xmlns='{NS_BIND}'>"
                              "<resource>web</resource></bind></iq>")
        iq = request.body.firstChildElement()
        self.assertEqual((iq.uri, iq["type"]), ("jabber:client", "result"))
        return str(iq.bind.jid)

    def test_login_and_stanzas_both_ways(self):
        full = self.login()
        self.assertEqual(full, f"alice@{DOMAIN}/web")
        request = self.h.body(5, self.sid, message("bob@example.org", "hi"))
        self.assertFalse(request.finished)
        (sent,) = self.h.manager.router.routed
        self.assertEqual((sent.name, str(sent.body), sent.uri), ("message", "hi", "jabber:client"))
        session = self.h.manager.sessions[full]
        reply = sent.__class__(("jabber:client", "message"))
        reply["from"] = "bob@example.org/x"
        reply.addElement("body", content="hello")
        session.write(reply)
        self.assertEqual(request.text, f"<body xmlns='{NS_HTTPBIND}'><message "
                         "xmlns='jabber:client' from='bob@example.org/x'><body>hello</body>"
                         "</message></body>")

    def test_terminate_after_the_stanzas(self):
        self.login()
        held = self.h.body(5, self.sid)
        request = self.h.body(6, self.sid, "<presence type='unavailable'/>", type="terminate")
        self.assertEqual(len(self.h.manager.router.routed), 1)
        self.assertEqual(held.text, terminate())
        self.assertEqual(request.text, terminate())
        self.assertEqual(self.h.manager.interrupted, [False])
        self.assertNotIn(self.sid, self.h.endpoint.sessions)

    def test_inactivity_leaves_the_session_resumable(self):
        self.login()
        self.h.clock.advance(60)
        self.assertNotIn(self.sid, self.h.endpoint.sessions)
        self.assertEqual(self.h.manager.interrupted, [True])

    def test_stream_error_is_remote_stream_error(self):
        request = self.h.body(2, self.sid, "<presence/>")  # before authentication
        body = request.body
        self.assertEqual((body["type"], body["condition"]), ("terminate", "remote-stream-error"))
        self.assertIn("<stream:error xmlns:stream='http://etherx.jabber.org/streams'>"
                      "<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>",
                      request.text)
        self.assertNotIn(self.sid, self.h.endpoint.sessions)

    def test_shutdown_reaches_the_held_request(self):
        self.login()
        request = self.h.body(5, self.sid)
        self.h.c2s.close_all("system-shutdown")
        self.assertIn("condition='remote-stream-error'", request.text)
        self.assertIn("<system-shutdown", request.text)
        self.assertEqual(self.h.endpoint.sessions, {})

    def test_stanzas_without_xmlns_are_jabber_client(self):
        self.login()
        self.h.body(5, self.sid, "<message to='bob@example.org'><body>x</body></message>")
        (sent,) = self.h.manager.router.routed
        self.assertEqual((sent.uri, sent.body.uri), ("jabber:client", "jabber:client"))

    def test_restart_before_sasl_is_a_stream_error(self):
        request = self.h.body(2, self.sid, xmpp_restart="true")
        self.assertIn("<bad-format", request.text)
        self.assertIn("condition='remote-stream-error'", request.text)
