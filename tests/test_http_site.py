"""The HTTP listener: mounts, body and rate limits, trusted proxies, TLS, access log."""

import json
from pathlib import Path

from twisted.internet import defer, reactor, ssl
from twisted.logger import globalLogPublisher
from twisted.trial import unittest
from twisted.web import client, resource
from zope.interface import implementer

from tests.http_support import raw_http, request
from tests.support import start_server
from xmppd.config import config_from_dict
from xmppd.http.site import HTTPService


class Echo(resource.Resource):
    """Answers with the client address and whether the origin counts as secure."""

    isLeaf = True

    def render_GET(self, req):  # noqa: N802
        return f"{req.client_ip()} {req.is_secure_origin()}".encode()

    def render_POST(self, req):  # noqa: N802
        return b"%d" % len(req.content.read())


class MountTests(unittest.TestCase):
    """The seam: mount paths, find the resource of a path."""

    def test_mount(self):
        service = HTTPService(config_from_dict({}, Path(".")).http,
                              "localhost")
        echo = Echo()
        service.mount("/a/b", echo)
        self.assertIs(service.resource_for(b"/a/b/c/d"), echo)
        self.assertIsNone(service.resource_for(b"/a"))
        self.assertRaises(ValueError, service.mount, "/a/b", Echo())
        self.assertRaises(ValueError, service.mount, "/", Echo())

    def test_trusts(self):
        settings = config_from_dict({"http": {"trusted_proxies": ["10.0.0.0/8", "2001:db8::1"]}},
                                    Path(".")).http
        service = HTTPService(settings, "localhost")
        for address in ("127.0.0.1", "::1", "10.1.2.3", "2001:db8::1", "::ffff:127.0.0.1"):
            self.assertTrue(service.trusts(address), address)
        for address in ("192.0.2.1", "2001:db8::2", "garbage", ""):
            self.assertFalse(service.trusts(address), address)


class ListenerTests(unittest.TestCase):
    """A live listener with a resource mounted."""

    def start(self, **http):
        settings = {"listen": "tcp:0:interface=127.0.0.1", **http}
        self.live = start_server(self, http=settings)
        self.live.server.http.mount("/echo", Echo())
        self.base = f"http://127.0.0.1:{self.live.port_of('http')}"

    @defer.inlineCallbacks
    def test_forwarded_for_counts_from_loopback(self):
        self.start()
        reply = yield request("GET", self.base + "/echo")
        self.assertEqual(reply.body, b"127.0.0.1 True")
        reply = yield request("GET", self.base + "/echo",
                              {"X-Forwarded-For": "198.51.100.7, 127.0.0.1",
                               "X-Forwarded-Proto": "http"})
        self.assertEqual(reply.body, b"198.51.100.7 False")
        reply = yield request("GET", self.base + "/echo",
                              {"X-Forwarded-For": "not an address"})
        self.assertEqual(reply.body.split()[0], b"127.0.0.1")

    @defer.inlineCallbacks
    def test_rate_limit_per_client_address(self):
        self.start(request_rate=0.001, request_burst=2)
        for _ in range(2):
            self.assertEqual((yield request("GET", self.base + "/echo")).code, 200)
        reply = yield request("GET", self.base + "/echo")
        self.assertEqual(reply.code, 429)
        self.assertEqual(reply.header("retry-after"), "1")
        # Refused with the headers: a body is not read.
        answer = yield raw_http(self.live.port_of("http"), (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"))
        self.assertTrue(answer.startswith(b"HTTP/1.1 429 "), answer)
        # Behind the (trusted, loopback) proxy another client has its own budget.
        reply = yield request("GET", self.base + "/echo", {"X-Forwarded-For": "192.0.2.5"})
        self.assertEqual(reply.code, 200)

    @defer.inlineCallbacks
    def test_body_limit(self):
        self.start(max_request_size=2048)
        reply = yield request("POST", self.base + "/echo", body=b"x" * 2048)
        self.assertEqual((reply.code, reply.body), (200, b"2048"))
        answer = yield raw_http(self.live.port_of("http"), (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2049\r\n\r\n"))
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer)
        chunk = b"800\r\n" + b"x" * 2048 + b"\r\n"
        answer = yield raw_http(self.live.port_of("http"), (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunk + chunk))
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer)

    @defer.inlineCallbacks
    def test_malformed_request(self):
        self.start()
        answer = yield raw_http(self.live.port_of("http"), b"NONSENSE\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), answer)

    @defer.inlineCallbacks
    def test_access_log(self):
        self.start()
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        from xmppd import logs

        self.addCleanup(logs.set_level, logs.current_level())
        logs.set_level("info")
        yield request("GET", self.base + "/nothing", {"User-Agent": "tester"})
        lines = [e for e in events if e.get("log_namespace") == "xmppd.http.access"]
        self.assertEqual([(e["ip"], e["method"], e["path"], e["code"], e["agent"])
                          for e in lines], [("127.0.0.1", "GET", "/nothing", 404, "tester")])

    @defer.inlineCallbacks
    def test_shutdown_closes_open_connections(self):
        self.start(timeout=3600.0)  # not closed for being idle
        from twisted.internet import endpoints

        from tests.http_support import _RawClient

        idle = _RawClient(b"")
        yield endpoints.connectProtocol(
            endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", self.live.port_of("http")), idle)
        yield self.live.server.stopService()
        self.assertEqual((yield idle.done), b"")

    def test_off(self):
        live = start_server(self, http={"listen": ""})
        self.assertIsNone(live.server.http)
        self.assertIsNone(live.server.upload)
        self.assertNotIn("http", live.server.ports)


@implementer(client.IPolicyForHTTPS)
class TrustCertificate:
    """Trust exactly the test certificate, for 'localhost'."""

    def __init__(self, pem):
        self.certificate = ssl.Certificate.loadPEM(pem)

    def creatorForNetloc(self, hostname, port):  # noqa: N802
        return ssl.optionsForClientTLS("localhost", trustRoot=self.certificate)


class TLSListenerTests(unittest.TestCase):
    """``tls_listen``: HTTPS with the server's certificate; the URL base follows it."""

    @defer.inlineCallbacks
    def test_https(self):
        live = start_server(self, http={"listen": "", "tls_listen": "tcp:0:interface=127.0.0.1"})
        port = live.port_of("https")
        self.assertEqual(live.server.http.external_url, f"https://localhost:{port}/")
        pem = live.config.tls.certificate.read_bytes()
        agent = client.Agent(reactor, contextFactory=TrustCertificate(pem),
                             pool=client.HTTPConnectionPool(reactor, persistent=False))
        response = yield agent.request(
            b"GET", f"https://127.0.0.1:{port}/.well-known/host-meta.json".encode())
        body = yield client.readBody(response)
        self.assertEqual(response.code, 200)
        self.assertEqual(json.loads(body), {"links": [
            {"rel": "urn:xmpp:alt-connections:websocket",
             "href": f"wss://localhost:{port}/xmpp-websocket"},
            {"rel": "urn:xmpp:alt-connections:xbosh",
             "href": f"https://localhost:{port}/http-bind"}]})
