"""XEP-0156 host-meta documents over a live HTTP listener."""

import json
from xml.etree import ElementTree

from twisted.internet import defer
from twisted.trial import unittest

from tests.http_support import request
from tests.support import start_server
from xmppd.http.hostmeta import NS_XRD, REL_BOSH, REL_WEBSOCKET


class HostMetaTests(unittest.TestCase):
    """Both formats list exactly the registered transports, with CORS."""

    def setUp(self):
        self.server = start_server(self, websocket={"path": ""}, bosh={"path": ""})
        self.base = f"http://127.0.0.1:{self.server.port_of('http')}"

    @defer.inlineCallbacks
    def test_documents_are_valid_and_empty_without_transports(self):
        reply = yield request("GET", self.base + "/.well-known/host-meta")
        self.assertEqual(reply.code, 200)
        self.assertEqual(reply.header("access-control-allow-origin"), "*")
        self.assertTrue(reply.header("content-type").startswith("application/xrd+xml"))
        root = ElementTree.fromstring(reply.body)
        self.assertEqual(root.tag, f"{{{NS_XRD}}}XRD")
        self.assertEqual(list(root), [])
        reply = yield request("GET", self.base + "/.well-known/host-meta.json")
        self.assertEqual(reply.code, 200)
        self.assertEqual(reply.header("access-control-allow-origin"), "*")
        self.assertEqual(reply.header("content-type"), "application/json")
        self.assertEqual(json.loads(reply.body), {"links": []})

    @defer.inlineCallbacks
    def test_registered_transports_appear_with_urls_from_the_external_url(self):
        http = self.server.server.http
        http.add_link(REL_WEBSOCKET, "/xmpp-websocket")
        http.add_link(REL_BOSH, "/http-bind")
        port = self.server.port_of("http")
        reply = yield request("GET", self.base + "/.well-known/host-meta")
        links = [(e.get("rel"), e.get("href"))
                 for e in ElementTree.fromstring(reply.body).findall(f"{{{NS_XRD}}}Link")]
        self.assertEqual(links, [(REL_WEBSOCKET, f"ws://localhost:{port}/xmpp-websocket"),
                                 (REL_BOSH, f"http://localhost:{port}/http-bind")])
        reply = yield request("GET", self.base + "/.well-known/host-meta.json")
        self.assertEqual(json.loads(reply.body)["links"], [
            {"rel": REL_WEBSOCKET, "href": f"ws://localhost:{port}/xmpp-websocket"},
            {"rel": REL_BOSH, "href": f"http://localhost:{port}/http-bind"}])

    @defer.inlineCallbacks
    def test_configured_external_url_is_used(self):
        server = start_server(self, http={"listen": "tcp:0:interface=127.0.0.1",
                                          "external_url": "https://chat.example.org/xmpp"},
                              websocket={"path": ""}, bosh={"path": ""})
        server.server.http.add_link(REL_WEBSOCKET, "/xmpp-websocket")
        server.server.http.add_link(REL_BOSH, "/http-bind")
        reply = yield request(
            "GET", f"http://127.0.0.1:{server.port_of('http')}/.well-known/host-meta.json")
        self.assertEqual([link["href"] for link in json.loads(reply.body)["links"]],
                         ["wss://chat.example.org/xmpp/xmpp-websocket",
                          "https://chat.example.org/xmpp/http-bind"])

    @defer.inlineCallbacks
    def test_head_and_preflight(self):
        reply = yield request("HEAD", self.base + "/.well-known/host-meta.json")
        self.assertEqual((reply.code, reply.body), (200, b""))
        reply = yield request("OPTIONS", self.base + "/.well-known/host-meta")
        self.assertEqual(reply.code, 204)
        self.assertEqual(reply.header("access-control-allow-origin"), "*")

    @defer.inlineCallbacks
    def test_other_paths_are_not_found(self):
        for path in ("/", "/.well-known", "/.well-known/other", "/.well-known/host-meta/x",
                     "/nothing/here"):
            reply = yield request("GET", self.base + path)
            self.assertEqual(reply.code, 404, path)
