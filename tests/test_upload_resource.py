"""The upload service's HTTP side over a live listener: PUT, GET, HEAD, ranges, errors."""

from twisted.internet import defer
from twisted.trial import unittest
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from tests.http_support import raw_http, request
from tests.support import start_server
from xmppd.upload import NS_UPLOAD


class UploadHTTPTests(unittest.TestCase):
    """A live server; slots are asked for directly from the upload service."""

    def setUp(self):
        self.live = start_server(self)
        self.upload = self.live.server.upload
        self.port = self.live.port_of("http")

    @defer.inlineCallbacks
    def slot(self, filename="hello.txt", size=5, content_type="text/plain"):
        element = domish.Element((NS_UPLOAD, "request"))
        element["filename"], element["size"] = filename, str(size)
        element["content-type"] = content_type
        slot = yield self.upload.request_slot(jid.JID("romeo@localhost/a"), element)
        put = next(slot.elements(NS_UPLOAD, "put"))
        url = put["url"].replace("localhost", "127.0.0.1")
        return url, str(next(put.elements(NS_UPLOAD, "header")))

    def put(self, url, auth, body, content_type="text/plain"):
        headers = {"Content-Type": content_type}
        if auth is not None:
            headers["Authorization"] = auth
        return request("PUT", url, headers, body)

    def temp_files(self):
        return [p for p in self.upload.store.folder.iterdir() if p.name.startswith(".put-")]

    @defer.inlineCallbacks
    def test_put_get_head_range(self):
        url, auth = yield self.slot("notes.txt", 11)
        reply = yield self.put(url, auth, b"hello world")
        self.assertEqual(reply.code, 201, reply.body)
        self.assertEqual(reply.header("access-control-allow-origin"), "*")
        reply = yield request("GET", url)
        self.assertEqual((reply.code, reply.body), (200, b"hello world"))
        self.assertEqual(reply.header("content-type"), "text/plain")
        self.assertEqual(reply.header("content-disposition"),
                         "attachment; filename*=UTF-8''notes.txt")
        self.assertEqual(reply.header("x-content-type-options"), "nosniff")
        self.assertEqual(reply.header("content-security-policy"), "default-src 'none'")
        self.assertEqual(reply.header("access-control-allow-origin"), "*")
        reply = yield request("HEAD", url)
        self.assertEqual((reply.code, reply.body, reply.header("content-length")),
                         (200, b"", "11"))
        reply = yield request("GET", url, {"Range": "bytes=6-"})
        self.assertEqual((reply.code, reply.body), (206, b"world"))
        self.assertEqual(reply.header("content-range"), "bytes 6-10/11")
        # One PUT per slot.
        reply = yield self.put(url, auth, b"HELLO WORLD")
        self.assertEqual(reply.code, 409)
        self.assertEqual((yield request("GET", url)).body, b"hello world")
        self.assertEqual(self.temp_files(), [])

    @defer.inlineCallbacks
    def test_images_are_inline(self):
        url, auth = yield self.slot("p.png", 4, "image/png")
        self.assertEqual((yield self.put(url, auth, b"\x89PNG", "image/png")).code, 201)
        reply = yield request("GET", url)
        self.assertEqual(reply.header("content-type"), "image/png")
        self.assertIsNone(reply.header("content-disposition"))
        url, auth = yield self.slot("p.svg", 6, "image/svg+xml")
        self.assertEqual((yield self.put(url, auth, b"<svg/>", "image/svg+xml")).code, 201)
        reply = yield request("GET", url)
        self.assertEqual(reply.header("content-disposition"),
                         "attachment; filename*=UTF-8''p.svg")

    @defer.inlineCallbacks
    def test_authorisation(self):
        url, auth = yield self.slot()
        self.assertEqual((yield self.put(url, None, b"hello")).code, 401)
        self.assertEqual((yield self.put(url, auth[:-2] + "xx", b"hello")).code, 403)
        other_url, other_auth = yield self.slot()
        self.assertEqual((yield self.put(url, other_auth, b"hello")).code, 403)
        # Expired: the service's clock is past the slot's lifetime.
        now = self.upload.now()
        self.patch(self.upload, "now", lambda: now + self.live.config.upload.slot_lifetime + 1)
        self.assertEqual((yield self.put(url, auth, b"hello")).code, 403)
        self.assertEqual((yield request("GET", url)).code, 404)  # never uploaded
        self.assertEqual(self.temp_files(), [])

    @defer.inlineCallbacks
    def test_refused_early_with_the_body_in_the_same_packet(self):
        url, auth = yield self.slot(size=5)
        path = url.split("127.0.0.1:%d" % self.port, 1)[1]
        for header in ("", "Authorization: Bearer 1.x\r\n"):
            answer = yield raw_http(self.port, (
                f"PUT {path} HTTP/1.1\r\nHost: localhost\r\n{header}"
                "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
                f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").encode())
            self.assertTrue(answer.startswith(b"HTTP/1.1 40"), answer)
            self.assertEqual(answer.count(b"HTTP/1.1 "), 1, answer)
        self.assertEqual(self.temp_files(), [])

    @defer.inlineCallbacks
    def test_size_and_type_must_match(self):
        url, auth = yield self.slot(size=5)
        self.assertEqual((yield self.put(url, auth, b"hello!")).code, 413)
        self.assertEqual((yield self.put(url, auth, b"hell")).code, 400)
        self.assertEqual((yield self.put(url, auth, b"hello", "text/html")).code, 400)
        self.assertEqual((yield self.put(url, auth, b"hello")).code, 201)
        self.assertEqual(self.temp_files(), [])

    @defer.inlineCallbacks
    def test_oversized_body_refused_before_it_is_read(self):
        url, auth = yield self.slot(size=5)
        path = url.split("127.0.0.1:%d" % self.port, 1)[1]
        size = self.live.config.upload.max_file_size + 1
        answer = yield raw_http(self.port, (
            f"PUT {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {size}\r\n"
            "Expect: 100-continue\r\n\r\n").encode())
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer)
        self.assertNotIn(b"100 Continue", answer)
        self.assertEqual(self.temp_files(), [])

    @defer.inlineCallbacks
    def test_unknown_slots_and_path_traversal(self):
        base = f"http://127.0.0.1:{self.port}/upload/"
        signed = self.upload.signer.sign("z" * 32, self.upload.now() + 60)
        self.assertEqual((yield self.put(base + "z" * 32 + "/x", signed, b"hello")).code, 404)
        for path in ("/upload/", "/upload/short/x", "/upload/../xmppd.sqlite",
                     "/upload/%2e%2e/%2e%2e/xmppd.sqlite", "/upload/..%2Fupload.secret/x",
                     "/upload/" + "z" * 32 + "/x"):
            answer = yield raw_http(self.port, (
                f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            ).encode())
            self.assertTrue(answer.startswith(b"HTTP/1.1 404 "), (path, answer[:200]))

    @defer.inlineCallbacks
    def test_cors_preflight(self):
        url, _ = yield self.slot()
        reply = yield request("OPTIONS", url, {"Origin": "https://web.example",
                                               "Access-Control-Request-Method": "PUT"})
        self.assertEqual(reply.code, 204)
        self.assertEqual(reply.header("access-control-allow-origin"), "*")
        self.assertIn("PUT", reply.header("access-control-allow-methods"))
        self.assertIn("Authorization", reply.header("access-control-allow-headers"))

    @defer.inlineCallbacks
    def test_account_deletion_removes_files(self):
        yield self.live.create_user("romeo", "pw")
        url, auth = yield self.slot()
        self.assertEqual((yield self.put(url, auth, b"hello")).code, 201)
        self.assertEqual(len(list(self.upload.store.folder.iterdir())), 1)
        yield self.live.accounts.delete("romeo")
        from xmppd.module import Point

        yield self.live.server.session_manager.modules.fire_async(Point.ACCOUNT_DELETED,
                                                                  "romeo")
        self.assertEqual(list(self.upload.store.folder.iterdir()), [])
        self.assertEqual((yield request("GET", url)).code, 404)
