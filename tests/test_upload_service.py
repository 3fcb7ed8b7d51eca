"""The upload service (XEP-0363): disco, slot requests and their errors, expiry."""

from twisted.internet import defer, task
from twisted.trial import unittest
from twisted.words.xish import domish

from tests.support import make_test_config
from xmppd.errors import NS_STANZAS
from xmppd.http.site import HTTPService
from xmppd.storage.accounts import AccountStore
from xmppd.storage.database import Database, migrate_file
from xmppd.upload import NS_UPLOAD
from xmppd.upload.service import UploadService, type_allowed, valid_content_type
from xmppd.upload.store import Upload, valid_slot_id


class FakeRouter:
    """Collects routed stanzas; ``next()`` fires with the next one."""

    def __init__(self):
        self.routes = {}
        self.sent = []
        self.waiting = []

    def register(self, domain, destination):
        self.routes[domain] = destination

    def unregister(self, domain, destination):
        self.routes.pop(domain, None)

    def route(self, stanza):
        if self.waiting:
            self.waiting.pop(0).callback(stanza)
        else:
            self.sent.append(stanza)

    def next(self):
        if self.sent:
            return defer.succeed(self.sent.pop(0))
        d = defer.Deferred()
        self.waiting.append(d)
        return d


class UploadServiceTestCase(unittest.TestCase):
    """An upload service on a real database, a fake router and a fake clock."""

    upload_settings: dict = {}

    @defer.inlineCallbacks
    def setUp(self):
        self.config = make_test_config(self, upload=self.upload_settings)
        self.config.data_dir.mkdir(parents=True)
        migrate_file(self.config.database_path)
        self.database = Database(self.config.database_path)
        self.addCleanup(self.database.close)
        self.accounts = AccountStore(self.database)
        yield self.accounts.create("romeo", "pw")
        self.clock = task.Clock()
        self.clock.advance(1_000_000)
        self.router = FakeRouter()
        self.http = HTTPService(self.config.http, "localhost", reactor=self.clock)
        self.http.listening_on(5280, None)
        self.service = UploadService(
            self.config.upload, router=self.router, database=self.database,
            server_domain="localhost", data_dir=self.config.data_dir, http=self.http,
            reactor=self.clock)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        yield self.service._sweeping  # the first sweep, at start

    def iq(self, payload, sender="romeo@localhost/phone", kind="get"):
        stanza = domish.Element((None, "iq"))
        stanza["type"] = kind
        stanza["id"] = "q1"
        stanza["from"] = sender
        stanza["to"] = "upload.localhost"
        stanza.addChild(payload)
        self.service.send(stanza)
        return self.router.next()

    def slot_request(self, sender="romeo@localhost/phone", **attributes):
        request = domish.Element((NS_UPLOAD, "request"))
        for name, value in attributes.items():
            request[name.replace("_", "-")] = value
        return self.iq(request, sender)

    def assert_error(self, reply, kind, condition):
        self.assertEqual(reply["type"], "error")
        error = next(reply.elements(None, "error"))
        self.assertEqual(error["type"], kind)
        self.assertTrue(list(error.elements(NS_STANZAS, condition)), error.toXml())
        return error


class DiscoTests(UploadServiceTestCase):
    """disco#info: identity, feature and the max-file-size form."""

    @defer.inlineCallbacks
    def test_info(self):
        reply = yield self.iq(domish.Element(("http://jabber.org/protocol/disco#info", "query")))
        self.assertEqual(reply["type"], "result")
        query = reply.firstChildElement()
        ns = "http://jabber.org/protocol/disco#info"
        identities = [(e["category"], e["type"]) for e in query.elements(ns, "identity")]
        self.assertEqual(identities, [("store", "file")])
        features = [e["var"] for e in query.elements(ns, "feature")]
        self.assertIn(NS_UPLOAD, features)
        form = next(query.elements("jabber:x:data", "x"))
        fields = {f["var"]: str(next(f.elements("jabber:x:data", "value")))
                  for f in form.elements("jabber:x:data", "field")}
        self.assertEqual(fields, {"FORM_TYPE": NS_UPLOAD, "max-file-size": "10485760"})

    @defer.inlineCallbacks
    def test_registers_its_domain(self):
        self.assertIs(self.router.routes["upload.localhost"], self.service)
        reply = yield self.iq(domish.Element(("urn:xmpp:unknown", "query")))
        self.assert_error(reply, "cancel", "service-unavailable")


class SlotTests(UploadServiceTestCase):
    """Slot requests: the slot and each refusal."""

    @defer.inlineCallbacks
    def test_slot(self):
        reply = yield self.slot_request(filename="my photo.jpg", size="1234",
                                        content_type="image/jpeg")
        self.assertEqual(reply["type"], "result")
        slot = reply.firstChildElement()
        self.assertEqual((slot.uri, slot.name), (NS_UPLOAD, "slot"))
        put = next(slot.elements(NS_UPLOAD, "put"))
        get = next(slot.elements(NS_UPLOAD, "get"))
        self.assertEqual(put["url"], get["url"])
        self.assertTrue(put["url"].startswith("http://localhost:5280/upload/"))
        self.assertTrue(put["url"].endswith("/my%20photo.jpg"))
        slot_id = put["url"].split("/")[-2]
        self.assertTrue(valid_slot_id(slot_id))
        header = next(put.elements(NS_UPLOAD, "header"))
        self.assertEqual(header["name"], "Authorization")
        self.assertIsNone(self.service.signer.check(slot_id, str(header), self.clock.seconds()))
        stored = yield self.service.store.get(slot_id)
        self.assertEqual((stored.owner, stored.filename, stored.size, stored.content_type,
                          stored.uploaded), ("romeo", "my photo.jpg", 1234, "image/jpeg", None))
        # Two requests: two different slots.
        again = yield self.slot_request(filename="my photo.jpg", size="1234")
        self.assertNotEqual(next(again.firstChildElement().elements(NS_UPLOAD, "put"))["url"],
                            put["url"])

    @defer.inlineCallbacks
    def test_content_type_defaults(self):
        reply = yield self.slot_request(filename="a.bin", size="10")
        slot_id = next(reply.firstChildElement().elements(NS_UPLOAD, "put"))["url"].split("/")[-2]
        self.assertEqual((yield self.service.store.get(slot_id)).content_type,
                         "application/octet-stream")

    @defer.inlineCallbacks
    def test_only_local_accounts(self):
        for sender in ("juliet@capulet.example/balcony", "localhost", "conference.localhost"):
            reply = yield self.slot_request(sender, filename="a.txt", size="10")
            self.assert_error(reply, "auth", "forbidden")

    @defer.inlineCallbacks
    def test_bad_requests(self):
        for attributes in ({"size": "10"}, {"filename": "", "size": "10"},
                           {"filename": "a/b.txt", "size": "10"},
                           {"filename": "a\nb", "size": "10"},
                           {"filename": "x" * 256, "size": "10"},
                           {"filename": "a.txt"}, {"filename": "a.txt", "size": "-1"},
                           {"filename": "a.txt", "size": "0"},
                           {"filename": "a.txt", "size": "ten"},
                           {"filename": "a.txt", "size": "١٢"},
                           {"filename": "a.txt", "size": "10", "content_type": "text"},
                           {"filename": "a.txt", "size": "10",
                            "content_type": "text/plain\r\nX-Evil: 1"}):
            reply = yield self.slot_request(**attributes)
            self.assert_error(reply, "modify", "bad-request")
        self.assertEqual((yield self.service.store.list()), [])

    @defer.inlineCallbacks
    def test_file_too_large(self):
        reply = yield self.slot_request(filename="big.iso", size=str(10485761))
        error = self.assert_error(reply, "modify", "not-acceptable")
        too_large = next(error.elements(NS_UPLOAD, "file-too-large"))
        self.assertEqual(str(next(too_large.elements(NS_UPLOAD, "max-file-size"))), "10485760")
        reply = yield self.slot_request(filename="ok.iso", size=str(10485760))
        self.assertEqual(reply["type"], "result")


class AllowedTypesTests(UploadServiceTestCase):
    """``allowed_types``: listed types and ``type/*`` patterns only."""

    upload_settings = {"allowed_types": ["image/*", "Video/MP4"]}

    @defer.inlineCallbacks
    def test_types(self):
        for content_type in ("image/png", "video/mp4", "IMAGE/JPEG"):
            reply = yield self.slot_request(filename="a", size="1", content_type=content_type)
            self.assertEqual(reply["type"], "result", content_type)
        for content_type in ("text/plain", "video/webm", "application/octet-stream"):
            reply = yield self.slot_request(filename="a", size="1", content_type=content_type)
            self.assert_error(reply, "modify", "not-acceptable")
        reply = yield self.slot_request(filename="a", size="1")  # octet-stream by default
        self.assert_error(reply, "modify", "not-acceptable")


class QuotaTests(UploadServiceTestCase):
    """The quota (stored files and open slots) and the open slot limit."""

    upload_settings = {"quota": 1000, "max_open_slots": 3}

    @defer.inlineCallbacks
    def test_quota(self):
        reply = yield self.slot_request(filename="a", size="600")
        self.assertEqual(reply["type"], "result")
        reply = yield self.slot_request(filename="b", size="401")
        self.assert_error(reply, "wait", "resource-constraint")
        reply = yield self.slot_request(filename="b", size="400")
        self.assertEqual(reply["type"], "result")
        # An unused slot stops counting once its PUT URL expired.
        self.clock.advance(self.config.upload.slot_lifetime)
        reply = yield self.slot_request(filename="c", size="1000")
        self.assertEqual(reply["type"], "result")

    @defer.inlineCallbacks
    def test_simultaneous_requests_cannot_share_the_quota(self):
        # Both are asked before either is answered: only one fits.
        first = self.slot_request(filename="a", size="600")
        second = self.slot_request(filename="b", size="600")
        replies = yield defer.gatherResults([first, second])
        self.assertEqual(sorted(reply["type"] for reply in replies), ["error", "result"])
        [refused] = [reply for reply in replies if reply["type"] == "error"]
        self.assert_error(refused, "wait", "resource-constraint")
        self.assertEqual(len((yield self.service.store.list("romeo"))), 1)

    @defer.inlineCallbacks
    def test_simultaneous_requests_cannot_pass_the_open_slot_limit(self):
        replies = yield defer.gatherResults(
            [self.slot_request(filename=name, size="1") for name in "abcde"])
        self.assertEqual(sorted(reply["type"] for reply in replies), ["error"] * 2 + ["result"] * 3)

    @defer.inlineCallbacks
    def test_open_slots(self):
        for name in "abc":
            self.assertEqual((yield self.slot_request(filename=name, size="1"))["type"], "result")
        reply = yield self.slot_request(filename="d", size="1")
        self.assert_error(reply, "wait", "resource-constraint")


class ExpiryTests(UploadServiceTestCase):
    """The background sweep (fake clock) and deletion with the account."""

    @defer.inlineCallbacks
    def uploaded(self, slot_id, owner="romeo", age=0.0):
        now = self.clock.seconds() - age
        yield self.service.store.add(Upload(slot_id, owner, "f.txt", 3, "text/plain", now,
                                            now + 300, now))
        self.service.store.path(slot_id).write_bytes(b"abc")

    @defer.inlineCallbacks
    def test_sweep_deletes_old_files_and_unused_slots(self):
        old, new = "o" * 32, "n" * 32
        yield self.uploaded(old, age=604800 - 10)
        yield self.uploaded(new, age=0)
        reply = yield self.slot_request(filename="later", size="5")
        open_slot = next(reply.firstChildElement().elements(NS_UPLOAD, "put"))["url"].split("/")[-2]
        self.clock.advance(3600)  # the next sweep: the old file and the unused slot go
        yield self.service._sweeping
        self.assertFalse(self.service.store.path(old).exists())
        self.assertTrue(self.service.store.path(new).exists())
        ids = [u.id for u in (yield self.service.store.list())]
        self.assertEqual(ids, [new])
        self.assertNotIn(open_slot, ids)

    @defer.inlineCallbacks
    def test_sweep_deletes_uploads_of_accounts_deleted_offline(self):
        yield self.uploaded("g" * 32, owner="ghost")
        yield self.uploaded("r" * 32)
        self.clock.advance(3600)
        yield self.service._sweeping
        self.assertEqual([u.id for u in (yield self.service.store.list())], ["r" * 32])
        self.assertFalse(self.service.store.path("g" * 32).exists())

    @defer.inlineCallbacks
    def test_account_deleted(self):
        yield self.accounts.create("juliet", "pw")
        yield self.uploaded("r" * 32)
        yield self.uploaded("j" * 32, owner="juliet")
        yield self.service.account_deleted("romeo")
        self.assertFalse(self.service.store.path("r" * 32).exists())
        self.assertEqual([u.id for u in (yield self.service.store.list())], ["j" * 32])


class HelperTests(unittest.TestCase):
    """Content type checks."""

    def test_valid_content_type(self):
        for good in ("text/plain", "image/svg+xml", "text/plain; charset=utf-8",
                     'text/plain;charset="utf-8"'):
            self.assertTrue(valid_content_type(good), good)
        for bad in ("text", "/plain", "text/", "text/plain\n", "a/b; c",
                    "x" * 250 + "/" + "y" * 10):
            self.assertFalse(valid_content_type(bad), bad)

    def test_type_allowed(self):
        self.assertTrue(type_allowed("anything/x", ()))
        self.assertTrue(type_allowed("image/png; x=y", ("image/*",)))
        self.assertFalse(type_allowed("text/plain", ("image/*", "text/html")))


class SignerTests(unittest.TestCase):
    """The slot authorisation: bound to the slot and its expiry."""

    def test_sign_and_check(self):
        from xmppd.upload.service import SlotSigner

        signer = SlotSigner(b"k" * 32)
        value = signer.sign("a" * 32, 1000.5)
        self.assertIsNone(signer.check("a" * 32, value, 999))
        self.assertEqual(signer.check("a" * 32, value, 1000), "expired")
        self.assertEqual(signer.check("b" * 32, value, 999), "invalid")
        self.assertEqual(signer.check("a" * 32, value.replace("1000.", "2000."), 999), "invalid")
        self.assertEqual(SlotSigner(b"x" * 32).check("a" * 32, value, 999), "invalid")
        self.assertEqual(signer.check("a" * 32, None, 999), "missing")
        self.assertEqual(signer.check("a" * 32, "Basic abc", 999), "missing")
        self.assertEqual(signer.check("a" * 32, "Bearer nonsense", 999), "invalid")

