"""xmppd.modules.vcard: XEP-0054 vCards, set by their owner and read by anyone."""

from twisted.internet import defer

from tests.sm_fakes import error_condition
from tests.test_sm_iq import DISCO_INFO, IQTestCase, iq

GET = "<vCard xmlns='vcard-temp'/>"


def vcard(body):
    return f"<vCard xmlns='vcard-temp'>{body}</vCard>"


class VCardTests(IQTestCase):
    """Alice keeps her vCard; Bob reads it and may not change it."""

    def child(self, reply):
        self.assertEqual(reply["type"], "result", reply.toXml())
        [element] = [c for c in reply.children if hasattr(c, "name")]
        self.assertEqual((element.uri, element.name), ("vcard-temp", "vCard"))
        return element

    def fields(self, reply):
        return {c.name: str(c) for c in self.child(reply).elements()}

    @defer.inlineCallbacks
    def test_set_and_get_own_with_and_without_to(self):
        reply = yield self.asks(iq(None, vcard("<FN>Alice A.</FN><NICKNAME>al</NICKNAME>"),
                                   kind="set"))
        self.assertEqual(reply["type"], "result", reply.toXml())
        self.assertEqual(list(reply.children), [])
        for to in (None, "alice@localhost"):
            reply = yield self.asks(iq(to, GET))
            self.assertEqual(self.fields(reply), {"FN": "Alice A.", "NICKNAME": "al"})
        yield self.asks(iq("alice@localhost", vcard("<FN>Alice B.</FN>"), kind="set"))
        reply = yield self.asks(iq(None, GET))
        self.assertEqual(self.fields(reply), {"FN": "Alice B."})

    @defer.inlineCallbacks
    def test_anyone_reads_someone_elses(self):
        yield self.asks(iq(None, vcard("<TITLE>Coucou</TITLE><PHOTO><TYPE>image/png</TYPE>"
                                       "<BINVAL>Y291Y291</BINVAL></PHOTO>"), kind="set"))
        bob = yield self.connect("bob")
        reply = yield self.asks(iq("alice@localhost", GET), bob)
        self.assertEqual(reply["from"], "alice@localhost")
        self.assertEqual(self.fields(reply), {"TITLE": "Coucou", "PHOTO": ""})
        photo = self.child(reply).PHOTO
        self.assertEqual(str(photo.BINVAL), "Y291Y291")

    @defer.inlineCallbacks
    def test_nothing_stored_is_an_empty_vcard(self):
        for to in ("bob@localhost", "ghost@localhost", None):
            reply = yield self.asks(iq(to, GET))
            self.assertEqual(self.fields(reply), {})

    @defer.inlineCallbacks
    def test_only_the_owner_sets(self):
        bob = yield self.connect("bob")
        reply = yield self.asks(iq("alice@localhost", vcard("<FN>Mallory</FN>"), kind="set"), bob)
        self.assertEqual(error_condition(reply), "forbidden")
        reply = yield self.asks(iq("alice@localhost", GET))
        self.assertEqual(self.fields(reply), {})

    @defer.inlineCallbacks
    def test_the_server_has_none(self):
        reply = yield self.asks(iq("localhost", GET))
        self.assertEqual(error_condition(reply), "item-not-found")
        reply = yield self.asks(iq("localhost", vcard("<FN>x</FN>"), kind="set"))
        self.assertEqual(error_condition(reply), "forbidden")

    @defer.inlineCallbacks
    def test_disco_feature_for_server_and_accounts(self):
        for to in ("localhost", "alice@localhost"):
            reply = yield self.asks(iq(to, DISCO_INFO))
            self.assertIn("var='vcard-temp'", reply.toXml().replace('"', "'"))

    @defer.inlineCallbacks
    def test_size_limit(self):
        yield self.sm.stopService()
        self.sm = self.make_manager(vcard={"max_size": 2048})
        self.sm.startService()
        self.alice = yield self.connect("alice")
        reply = yield self.asks(iq(None, vcard("<DESC>" + "x" * 2000 + "</DESC>"), kind="set"))
        self.assertEqual(reply["type"], "result", reply.toXml())
        reply = yield self.asks(iq(None, vcard("<DESC>" + "y" * 2100 + "</DESC>"), kind="set"))
        self.assertEqual(error_condition(reply), "not-acceptable")
        reply = yield self.asks(iq(None, GET))
        self.assertEqual(self.fields(reply), {"DESC": "x" * 2000})

    @defer.inlineCallbacks
    def test_kept_across_restart_and_deleted_with_the_account(self):
        bob = yield self.connect("bob")
        yield self.asks(iq(None, vcard("<FN>Bob</FN>"), kind="set"), bob)
        yield self.sm.stopService()
        self.sm = self.make_manager()
        self.sm.startService()
        self.alice = yield self.connect("alice")
        reply = yield self.asks(iq("bob@localhost", GET))
        self.assertEqual(self.fields(reply), {"FN": "Bob"})
        yield self.accounts.delete("bob")
        rows = yield self.db.query("SELECT * FROM vcards WHERE username = 'bob'")
        self.assertEqual(rows, [])
        reply = yield self.asks(iq("bob@localhost", GET))
        self.assertEqual(self.fields(reply), {})
