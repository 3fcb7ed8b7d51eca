"""XMPP over BOSH (XEP-0124/0206) end to end: a BOSH client over real HTTP, a live server."""

from __future__ import annotations

import base64
import json

from twisted.internet import defer
from twisted.trial import unittest

from tests.bosh_support import EMPTY, BoshClient, parse_response
from tests.http_support import LiveServerMixin, request, traffic_log
from xmppd.bosh.body import NS_HTTPBIND

NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SM = "urn:xmpp:sm:3"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"


class BoshTests(LiveServerMixin, unittest.TestCase):
    """A live server with its HTTP listener; clients over BOSH and TCP."""

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.server = yield self.start()
        self.url = f"http://127.0.0.1:{self.server.port_of('http')}/http-bind"

    def client(self, **kwargs):
        client = BoshClient(self.url, **kwargs)
        self.addCleanup(client.close)
        return client

    @defer.inlineCallbacks
    def login(self, username="alice", password="wonderland", resource="bosh"):
        """Create, SCRAM, restart, bind: (client, full JID); then it polls."""
        client = self.client()
        body = yield client.create()
        features = body.firstChildElement()
        self.assertIn("SCRAM-SHA-1", [str(m) for m in features.mechanisms.elements()])
        self.assertIsNone(features.starttls)
        result = yield client.scram(username, password)
        self.assertEqual(result.name, "success", result.toXml())
        yield client.post(xmpp_restart="true")
        features = yield client.next()
        self.assertEqual(features.name, "features")
        self.assertIsNotNone(features.bind)
        yield client.send(f"<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='{NS_BIND}'>"
                          f"<resource>{resource}</resource></bind></iq>")
        reply = yield client.next()
        self.assertEqual(reply["type"], "result", reply.toXml())
        client.start_polling()
        return client, str(reply.bind.jid)

    @defer.inlineCallbacks
    def next_named(self, client, name):
        element = yield client.next()
        while element.name != name:
            element = yield client.next()
        return element

    # -- sessions ---------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_session_creation(self):
        client = self.client()
        body = yield client.create()
        self.assertEqual((body["wait"], body["hold"], body["requests"], body["from"]),
                         ("60", "1", "2", "localhost"))
        self.assertEqual(body[("urn:xmpp:xbosh", "restartlogic")], "true")
        self.assertIn(client.sid, self.server.server.bosh.sessions)

    @defer.inlineCallbacks
    def test_scram_login_messages_with_tcp_room_and_terminate(self):
        bosh, bosh_jid = yield self.login()
        self.assertEqual(bosh_jid, "alice@localhost/bosh")
        tcp, tcp_jid = yield self.tcp_login()
        # BOSH -> TCP
        yield bosh.send(f"<message xmlns='jabber:client' to='{tcp_jid}' id='m1' type='chat'>"
                        "<body>over BOSH</body></message>")
        message = yield self.next_named(tcp, "message")
        self.assertEqual((message["from"], str(message.body)), (bosh_jid, "over BOSH"))
        # TCP -> BOSH (goes out on the held request)
        tcp.send(f"<message to='{bosh_jid}' id='m2' type='chat'><body>over TCP</body></message>")
        message = yield self.next_named(bosh, "message")
        self.assertEqual((message.uri, message["from"], str(message.body)),
                         ("jabber:client", tcp_jid, "over TCP"))
        # a room: self-presence with 110, then the subject
        room = "lobby@" + self.server.config.muc.domain
        yield bosh.send(f"<presence xmlns='jabber:client' to='{room}/alice'>"
                        f"<x xmlns='{NS_MUC}'/></presence>")
        presence = yield self.next_named(bosh, "presence")
        self.assertEqual(presence["from"], f"{room}/alice")
        codes = [s["code"] for x in presence.elements(NS_MUC_USER, "x")
                 for s in x.elements(NS_MUC_USER, "status")]
        self.assertIn("110", codes)
        subject = yield self.next_named(bosh, "message")
        self.assertEqual((subject["from"], subject["type"]), (room, "groupchat"))
        self.assertIsNotNone(subject.subject)
        # terminate: the unavailable presence in it is processed first
        sid = bosh.sid
        bosh.polling = False
        body = yield bosh.post("<presence xmlns='jabber:client' type='unavailable'/>",
                               type="terminate")
        self.assertEqual(body.getAttribute("type"), "terminate")
        self.assertNotIn(sid, self.server.server.bosh.sessions)
        yield self.wait_for(lambda: not self.server.server.session_manager.sessions_of("alice"))
        reply = yield bosh.post()
        self.assertEqual((reply["type"], reply["condition"]), ("terminate", "item-not-found"))

    @defer.inlineCallbacks
    def wait_for(self, condition):
        from twisted.internet import reactor, task

        for _ in range(200):
            if condition():
                return
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.fail("condition not met")

    @defer.inlineCallbacks
    def test_sm_resume_after_the_session_is_dropped(self):
        bosh, full = yield self.login()
        yield bosh.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
        enabled = yield self.next_named(bosh, "enabled")
        previd = enabled["id"]
        tcp, _ = yield self.tcp_login()
        bosh.polling = False
        # what inactivity does (tested on a fake clock in test_bosh_session)
        self.server.server.bosh.sessions[bosh.sid].drop()
        tcp.send(f"<message to='{full}' id='m1' type='chat'><body>while away</body></message>")
        again = self.client()
        yield again.create()
        result = yield again.scram("alice", "wonderland")
        self.assertEqual(result.name, "success")
        yield again.post(xmpp_restart="true")
        yield again.next()  # the features
        yield again.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='0'/>")
        resumed = yield again.next()
        self.assertEqual((resumed.uri, resumed.name), (NS_SM, "resumed"), resumed.toXml())
        again.start_polling()
        message = yield self.next_named(again, "message")
        while str(message.body) != "while away":
            message = yield self.next_named(again, "message")

    @defer.inlineCallbacks
    def test_connections_per_address_count_bosh_sessions(self):
        self.server = yield self.start(limits={"max_connections_per_ip": 1})
        self.url = f"http://127.0.0.1:{self.server.port_of('http')}/http-bind"
        first = self.client()
        yield first.create()
        second = self.client()
        body = yield second.create()
        self.assertEqual((body["type"], body["condition"]), ("terminate", "remote-stream-error"))
        self.assertEqual(body.firstChildElement().firstChildElement().name, "policy-violation")
        self.assertEqual(len(self.server.server.bosh.sessions), 1)

    @defer.inlineCallbacks
    def test_debug_traffic_log_redacts_credentials(self):
        lines = traffic_log(self)
        client = self.client()
        yield client.create()
        payload = base64.b64encode(b"\0alice\0wonderland").decode()
        yield client.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                          f"{payload}</auth>")
        text = "\n".join(lines)
        self.assertIn("bosh 127.0.0.1:", text)
        self.assertIn("recv: <body xmlns=", text)
        self.assertIn("send: <stream:features", text)
        self.assertIn(">[redacted]</auth>", text)
        self.assertNotIn(payload, text)

    @defer.inlineCallbacks
    def test_no_credentials_when_not_secure(self):
        client = self.client(headers={"X-Forwarded-Proto": "http"})
        body = yield client.create()
        self.assertIsNone(body.firstChildElement().mechanisms)

    @defer.inlineCallbacks
    def test_counted_in_the_metrics(self):
        server = yield self.start(metrics={"enabled": True})
        port = server.port_of("http")
        client = self.client()
        client.url = f"http://127.0.0.1:{port}/http-bind"
        yield client.create()
        reply = yield request("GET", f"http://127.0.0.1:{port}/metrics")
        self.assertIn('xmppd_connections{transport="bosh"} 1', reply.body.decode())

    # -- HTTP ---------------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_get_page_and_cors_preflight(self):
        reply = yield request("GET", self.url)
        self.assertEqual(reply.code, 200)
        self.assertEqual(reply.header("content-type"), "text/html; charset=utf-8")
        self.assertIn(b"BOSH", reply.body)
        reply = yield request("OPTIONS", self.url, {"Origin": "https://chat.example.org",
                                                    "Access-Control-Request-Method": "POST"})
        self.assertEqual((reply.code, reply.body), (200, b""))
        self.assertEqual(reply.header("access-control-allow-origin"), "*")
        self.assertEqual(reply.header("access-control-allow-methods"), "GET, POST, OPTIONS")
        self.assertEqual(reply.header("access-control-allow-headers"), "Content-Type")

    @defer.inlineCallbacks
    def test_cors_origins_listed(self):
        server = yield self.start(bosh={"cors_origins": ["https://chat.example.org"]})
        url = f"http://127.0.0.1:{server.port_of('http')}/http-bind"
        reply = yield request("OPTIONS", url, {"Origin": "https://chat.example.org"})
        self.assertEqual(reply.header("access-control-allow-origin"), "https://chat.example.org")
        reply = yield request("OPTIONS", url, {"Origin": "https://evil.example"})
        self.assertIsNone(reply.header("access-control-allow-origin"))
        server = yield self.start(bosh={"cors_origins": []})
        url = f"http://127.0.0.1:{server.port_of('http')}/http-bind"
        reply = yield request("POST", url, {"Origin": "https://chat.example.org"},
                              f"<body xmlns='{NS_HTTPBIND}' rid='1' sid='x'/>".encode())
        self.assertIsNone(reply.header("access-control-allow-origin"))

    @defer.inlineCallbacks
    def test_errors(self):
        cases = [
            (b"<body xmlns='http://jabber.org/protocol/httpbind'", 400, None),
            (b"<message/>", 400, None),
            (f"<body xmlns='{NS_HTTPBIND}' rid='5' sid='nosuch'/>".encode(), 200,
             "item-not-found"),
            (f"<body xmlns='{NS_HTTPBIND}' rid='5' to='elsewhere' xmlns:xmpp='urn:xmpp:xbosh' "
             "xmpp:version='1.0'/>".encode(), 200, "host-unknown"),
        ]
        for data, code, condition in cases:
            reply = yield request("POST", self.url, {"Content-Type": "text/xml"}, data)
            self.assertEqual(reply.code, code, data)
            if condition:
                body = parse_response(reply.body)
                self.assertEqual((body["type"], body["condition"]), ("terminate", condition))

    @defer.inlineCallbacks
    def test_body_over_the_limit(self):
        server = yield self.start(bosh={"max_body_size": 2048})
        url = f"http://127.0.0.1:{server.port_of('http')}/http-bind"
        data = f"<body xmlns='{NS_HTTPBIND}' rid='1' sid='x'>{'x' * 3000}</body>".encode()
        reply = yield request("POST", url, {}, data)
        self.assertEqual(reply.code, 413)

    @defer.inlineCallbacks
    def test_held_request_is_answered_empty_after_wait(self):
        client = self.client()
        yield client.create(wait="1")
        body = yield client.post()
        self.assertEqual(body.toXml(), parse_response(EMPTY.encode()).toXml())

    # -- discovery ------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_host_meta_lists_bosh(self):
        port = self.server.port_of("http")
        reply = yield request("GET", f"http://127.0.0.1:{port}/.well-known/host-meta.json")
        self.assertIn({"rel": "urn:xmpp:alt-connections:xbosh",
                       "href": f"http://localhost:{port}/http-bind"},
                      json.loads(reply.body)["links"])

    @defer.inlineCallbacks
    def test_off_when_path_is_empty(self):
        server = yield self.start(bosh={"path": ""})
        port = server.port_of("http")
        reply = yield request("GET", f"http://127.0.0.1:{port}/.well-known/host-meta.json")
        self.assertNotIn("xbosh", reply.body.decode())
        reply = yield request("GET", f"http://127.0.0.1:{port}/http-bind")
        self.assertEqual(reply.code, 404)
