"""xmppd.modules.private: XEP-0049 private XML storage, for the account's own resources."""

from twisted.internet import defer

from tests.sm_fakes import error_condition
from tests.test_sm_iq import IQTestCase, iq

NS = "jabber:iq:private"


def query(inner=""):
    return f"<query xmlns='{NS}'>{inner}</query>"


PREFS = "<prefs xmlns='app:prefs'><nick>Al</nick><colour a='1'>blue</colour></prefs>"
ASK_PREFS = query("<prefs xmlns='app:prefs'/>")


class PrivateStorageTests(IQTestCase):
    """Alice stores, reads and replaces her own private XML; others may not."""

    @defer.inlineCallbacks
    def store(self, inner, to=None, session=None, stanza_id="s1"):
        reply = yield self.asks(iq(to, query(inner), "set", stanza_id), session)
        return reply

    @defer.inlineCallbacks
    def fetch(self, inner="<prefs xmlns='app:prefs'/>", to=None, session=None):
        reply = yield self.asks(iq(to, query(inner)), session)
        self.assertEqual(reply["type"], "result", reply.toXml())
        [child] = list(reply.query.elements())
        return child

    def ok(self, reply):
        self.assertEqual(reply["type"], "result", reply.toXml())
        self.assertEqual(list(reply.elements()), [])

    @defer.inlineCallbacks
    def test_store_and_retrieve(self):
        self.ok((yield self.store(PREFS)))
        child = yield self.fetch()
        self.assertEqual((child.uri, child.name), ("app:prefs", "prefs"))
        self.assertEqual(str(child.nick), "Al")
        self.assertEqual(child.colour["a"], "1")
        self.assertEqual(str(child.colour), "blue")

    @defer.inlineCallbacks
    def test_to_own_bare_jid_and_other_resource(self):
        self.ok((yield self.store(PREFS, to="alice@localhost")))
        other = yield self.connect("alice", "phone")
        child = yield self.fetch(to="alice@localhost", session=other)
        self.assertEqual(str(child.nick), "Al")

    @defer.inlineCallbacks
    def test_overwrite(self):
        self.ok((yield self.store(PREFS)))
        self.ok((yield self.store("<prefs xmlns='app:prefs'><nick>Bo</nick></prefs>")))
        child = yield self.fetch()
        self.assertEqual(str(child.nick), "Bo")
        self.assertEqual(list(child.elements(None, "colour")), [])

    @defer.inlineCallbacks
    def test_nothing_stored_returns_the_empty_element(self):
        child = yield self.fetch()
        self.assertEqual((child.uri, child.name, child.children), ("app:prefs", "prefs", []))

    @defer.inlineCallbacks
    def test_keyed_by_namespace_and_name(self):
        self.ok((yield self.store(PREFS)))
        self.ok((yield self.store("<prefs xmlns='other:ns'><x/></prefs>")))
        self.ok((yield self.store("<more xmlns='app:prefs'><y/></more>")))
        child = yield self.fetch()
        self.assertEqual(str(child.nick), "Al")
        child = yield self.fetch("<prefs xmlns='other:ns'/>")
        self.assertEqual([c.name for c in child.elements()], ["x"])

    @defer.inlineCallbacks
    def test_empty_element_deletes(self):
        self.ok((yield self.store(PREFS)))
        self.ok((yield self.store("<prefs xmlns='app:prefs'/>")))
        child = yield self.fetch()
        self.assertEqual(child.children, [])
        rows = yield self.db.query("SELECT * FROM private_storage")
        self.assertEqual(rows, [])

    @defer.inlineCallbacks
    def test_other_users_are_forbidden(self):
        yield self.connect("bob")
        for to in ("bob@localhost", "ghost@localhost"):
            reply = yield self.store(PREFS, to=to)
            self.assertEqual(error_condition(reply), "forbidden")
            self.assertNotIn("Al", reply.toXml())
            reply = yield self.asks(iq(to, ASK_PREFS))
            self.assertEqual(error_condition(reply), "forbidden")
        rows = yield self.db.query("SELECT * FROM private_storage")
        self.assertEqual(rows, [])

    @defer.inlineCallbacks
    def test_users_do_not_see_each_other(self):
        self.ok((yield self.store(PREFS)))
        bob = yield self.connect("bob")
        child = yield self.fetch(session=bob)
        self.assertEqual(child.children, [])

    @defer.inlineCallbacks
    def test_bad_payloads(self):
        cases = {
            "": "bad-request",
            PREFS + "<x xmlns='a:b'/>": "bad-request",
            "<x/>": "not-acceptable",
            "<x xmlns='jabber:client'><y/></x>": "not-acceptable",
            "<x xmlns='jabber:server'><y/></x>": "not-acceptable",
            f"<query xmlns='{NS}'><y/></query>": "not-acceptable",
        }
        for inner, condition in cases.items():
            for kind in ("set", "get"):
                reply = yield self.asks(iq(None, query(inner), kind))
                self.assertEqual(error_condition(reply), condition, (kind, inner))
        rows = yield self.db.query("SELECT * FROM private_storage")
        self.assertEqual(rows, [])

    @defer.inlineCallbacks
    def restart(self, **private):
        yield self.sm.stopService()
        self.sm = self.make_manager(private=private)
        self.sm.startService()
        self.alice = yield self.connect("alice")

    @defer.inlineCallbacks
    def test_item_size_limit(self):
        yield self.restart(max_item_size=100)
        fits = "<p xmlns='a:b'>" + "x" * (100 - len("<p xmlns='a:b'></p>")) + "</p>"
        self.ok((yield self.store(fits)))
        reply = yield self.store("<p xmlns='a:b'>" + "x" * 100 + "</p>")
        self.assertEqual(error_condition(reply), "not-acceptable")
        self.assertIn("100 bytes", reply.toXml())
        child = yield self.fetch("<p xmlns='a:b'/>")
        self.assertEqual(child.toXml(), fits)

    @defer.inlineCallbacks
    def test_item_count_limit(self):
        yield self.restart(max_items=2)
        self.ok((yield self.store("<a xmlns='n:1'><x/></a>")))
        self.ok((yield self.store("<a xmlns='n:2'><x/></a>")))
        reply = yield self.store("<a xmlns='n:3'><x/></a>")
        self.assertEqual(error_condition(reply), "not-acceptable")
        self.assertIn("at most 2", reply.toXml())
        # Replacing a stored element still works; deleting one makes room.
        self.ok((yield self.store("<a xmlns='n:2'><y/></a>")))
        self.ok((yield self.store("<a xmlns='n:1'/>")))
        self.ok((yield self.store("<a xmlns='n:3'><x/></a>")))
        # Another user has a quota of its own.
        bob = yield self.connect("bob")
        self.ok((yield self.store("<a xmlns='n:9'><x/></a>", session=bob)))

    @defer.inlineCallbacks
    def test_kept_across_restart_and_deleted_with_the_account(self):
        self.ok((yield self.store(PREFS)))
        yield self.restart()
        child = yield self.fetch()
        self.assertEqual(str(child.nick), "Al")
        yield self.accounts.delete("alice")
        rows = yield self.db.query("SELECT * FROM private_storage WHERE username = 'alice'")
        self.assertEqual(rows, [])

    @defer.inlineCallbacks
    def test_disco_feature_on_the_server(self):
        reply = yield self.asks(iq("localhost", "<query xmlns='http://jabber.org/protocol/"
                                   "disco#info'/>"))
        features = {f["var"] for f in reply.query.elements() if f.name == "feature"}
        self.assertIn(NS, features)

    @defer.inlineCallbacks
    def test_stored_whole(self):
        """Text, nested namespaces, xml:lang and escapes come back as sent."""
        xml = ("<notes xmlns='app:notes' xml:lang='en'>a &amp; b<n xmlns='other:ns'>"
               "&lt;x&gt;</n>tail</notes>")
        self.ok((yield self.store(xml)))
        child = yield self.fetch("<notes xmlns='app:notes'/>")
        self.assertEqual(child.getAttribute(("http://www.w3.org/XML/1998/namespace", "lang")),
                         "en")
        self.assertEqual([c if isinstance(c, str) else (c.uri, c.name, str(c))
                          for c in child.children],
                         ["a & b", ("other:ns", "n", "<x>"), "tail"])
