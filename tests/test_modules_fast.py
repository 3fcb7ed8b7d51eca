"""xmppd.modules.fast (XEP-0484) and the SASL2/Bind 2 inline requests of the modules.

A real session manager (real modules, SQLite) under a C2SFactory whose
streams run over StringTransports; the clock of the modules is fake.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

from twisted.internet import defer
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure
from twisted.words.xish import domish

from tests.c2s_fakes import Client, make_factory
from tests.sm_fakes import SessionManagerTestCase, TimerClock
from tests.test_c2s_sasl2 import (
    AGENT,
    NS_BIND2,
    NS_SASL2,
    authenticate,
    child,
    condition,
    plain,
    send_and_wait,
)
from xmppd.c2s.guard import ClientGuard
from xmppd.modules import fast as fast_module

NS_FAST = "urn:xmpp:fast:0"
NS_SM = "urn:xmpp:sm:3"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_CSI = "urn:xmpp:csi:0"
DOMAIN = "localhost"


def initiator(username: str, token: str, cb_data: bytes = b"") -> bytes:
    """The client's HT initial response, computed from the token itself."""
    proof = hmac.new(token.encode(), b"Initiator" + cb_data, hashlib.sha256).digest()
    return username.encode() + b"\0" + proof


def responder(token: str, cb_data: bytes = b"") -> bytes:
    return hmac.new(token.encode(), b"Responder" + cb_data, hashlib.sha256).digest()


class LiveTestCase(SessionManagerTestCase):
    """Alice (password 'secret') logs in over SASL2 to the real modules."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        yield self.accounts.set_password("alice", "secret")
        self.clock = TimerClock()
        self.clock.advance(1_700_000_000)
        self.sm.modules["fast"].server.reactor = self.clock
        self.factory = make_factory(session_manager=self.sm, accounts=self.accounts,
                                    domain=DOMAIN)

    def connect(self, bindings=None):
        client = Client(self.factory)
        if bindings is not None:
            client.proto.authenticator.tls_active = True
            client.proto.authenticator._bindings = bindings
        self.addCleanup(lambda: None if client.proto.transport.disconnecting else client.lose())
        return client, client.header(to=DOMAIN)[1]

    @defer.inlineCallbacks
    def login(self, inner="", mechanism="PLAIN", initial=None, agent=AGENT, bindings=None):
        """A new connection authenticating over SASL2: (client, events)."""
        client, _ = self.connect(bindings)
        initial = plain() if initial is None else initial
        events = yield send_and_wait(client, authenticate(mechanism, initial, inner, agent))
        return client, events

    @defer.inlineCallbacks
    def new_token(self, mechanism="HT-SHA-256-NONE", agent=AGENT, bindings=None, inner=""):
        client, events = yield self.login(
            f"<request-token xmlns='{NS_FAST}' mechanism='{mechanism}'/>" + inner,
            agent=agent, bindings=bindings)
        token = child(events[0], NS_FAST, "token")
        assert token is not None, events[0].toXml()
        return token["token"]

    def fast_login(self, token, count=None, mechanism="HT-SHA-256-NONE", cb_data=b"",
                   inner="", agent=AGENT, bindings=None, username="alice", invalidate=False):
        attrs = "" if count is None else f" count='{count}'"
        if invalidate:
            attrs += " invalidate='true'"
        return self.login(f"<fast xmlns='{NS_FAST}'{attrs}/>" + inner, mechanism,
                          initial(username, token, cb_data), agent, bindings)


def initial(username, token, cb_data):
    return initiator(username, token, cb_data)


class OfferTests(LiveTestCase):
    def test_inline_offer(self):
        _, features = self.connect()
        inline = child(child(features, NS_SASL2, "authentication"), NS_SASL2, "inline")
        bind = child(inline, NS_BIND2, "bind")
        variables = [f["var"] for f in child(bind, NS_BIND2, "inline").elements()]
        self.assertEqual(sorted(variables), sorted([NS_CARBONS, NS_CSI, NS_SM]))
        self.assertIsNotNone(child(inline, NS_SM, "sm"))
        fast = child(inline, NS_FAST, "fast")
        self.assertEqual([str(m) for m in fast.elements()], ["HT-SHA-256-NONE"])

    def test_channel_binding_mechanisms_follow_the_connection(self):
        _, features = self.connect({"tls-exporter": b"e" * 32, "tls-server-end-point": b"s"})
        fast = child(child(child(features, NS_SASL2, "authentication"), NS_SASL2, "inline"),
                     NS_FAST, "fast")
        self.assertEqual([str(m) for m in fast.elements()],
                         ["HT-SHA-256-EXPR", "HT-SHA-256-ENDP", "HT-SHA-256-NONE"])

    def test_disabled_module_is_not_offered(self):
        manager = self.make_manager(modules={"disabled": ["fast"]})
        manager.startService()
        self.addCleanup(manager.stopService)
        self.factory = make_factory(session_manager=manager, accounts=self.accounts,
                                    domain=DOMAIN)
        _, features = self.connect()
        inline = child(child(features, NS_SASL2, "authentication"), NS_SASL2, "inline")
        self.assertIsNone(child(inline, NS_FAST, "fast"))


class Bind2InlineTests(LiveTestCase):
    @defer.inlineCallbacks
    def test_carbons_csi_and_sm_inline(self):
        client, events = yield self.login(
            f"<bind xmlns='{NS_BIND2}'><tag>Conversations</tag>"
            f"<enable xmlns='{NS_CARBONS}'/><inactive xmlns='{NS_CSI}'/>"
            f"<enable xmlns='{NS_SM}' resume='true'/></bind>")
        success, features = events
        bound = child(success, NS_BIND2, "bound")
        enabled = child(bound, NS_SM, "enabled")
        self.assertEqual(enabled["resume"], "true")
        session = client.proto.session
        self.assertIs(self.sm.modules["sm"].resumable[enabled["id"]].session, session)
        self.assertTrue(self.sm.modules["carbons"].is_enabled(session))
        self.assertTrue(self.sm.modules["csi"].is_inactive(session))
        self.assertEqual(str(child(success, NS_SASL2, "authorization-identifier")),
                         session.full)
        self.assertEqual(features.name, "features")

    @defer.inlineCallbacks
    def test_sm_enabled_twice_inline(self):
        _, events = yield self.login(
            f"<bind xmlns='{NS_BIND2}'><enable xmlns='{NS_SM}'/>"
            f"<enable xmlns='{NS_SM}' resume='true'/></bind>")
        bound = child(events[0], NS_BIND2, "bound")
        self.assertEqual([e.name for e in bound.elements()], ["enabled", "failed"])
        self.assertIsNone(child(bound, NS_SM, "enabled").getAttribute("id"))

    @defer.inlineCallbacks
    def test_nothing_inline_is_nothing_enabled(self):
        client, events = yield self.login(f"<bind xmlns='{NS_BIND2}'/>")
        session = client.proto.session
        self.assertEqual(list(child(events[0], NS_BIND2, "bound").elements()), [])
        self.assertFalse(self.sm.modules["carbons"].is_enabled(session))
        self.assertFalse(self.sm.modules["csi"].is_inactive(session))
        self.assertNotIn(session, self.sm.modules["sm"].outboxes)


class InlineResumeTests(LiveTestCase):
    @defer.inlineCallbacks
    def hibernating(self):
        """A resumable session that got one message and lost its connection: its id."""
        client, events = yield self.login(
            f"<bind xmlns='{NS_BIND2}'><enable xmlns='{NS_SM}' resume='true'/></bind>")
        previd = child(child(events[0], NS_BIND2, "bound"), NS_SM, "enabled")["id"]
        session = client.proto.session
        message = domish.Element((None, "message"))
        message["type"] = "chat"
        message["from"] = "bob@localhost/desk"
        message.addElement("body", content="while you were away")
        session.write(message)
        client.read()
        client.proto.connectionLost(Failure(ConnectionLost()))
        yield self.sm.wait_idle()
        self.assertTrue(session.bound)
        return previd, session

    @defer.inlineCallbacks
    def test_resumed_inside_success_then_the_replay(self):
        previd, session = yield self.hibernating()
        client, events = yield self.login(f"<resume xmlns='{NS_SM}' previd='{previd}' h='0'/>"
                                          f"<bind xmlns='{NS_BIND2}'/>")
        success, replayed, features = events[:3]
        resumed = child(success, NS_SM, "resumed")
        self.assertEqual((resumed["previd"], resumed["h"]), (previd, "0"))
        self.assertIsNone(child(success, NS_BIND2, "bound"))  # resumed: no new binding
        self.assertEqual(str(child(success, NS_SASL2, "authorization-identifier")),
                         session.full)
        self.assertEqual(replayed.name, "message")
        self.assertEqual(str(replayed.body), "while you were away")
        self.assertEqual(features.name, "features")
        self.assertIs(client.proto.session, session)

    @defer.inlineCallbacks
    def test_failed_inside_success_and_bind_goes_on(self):
        client, events = yield self.login(f"<resume xmlns='{NS_SM}' previd='nope' h='0'/>"
                                          f"<bind xmlns='{NS_BIND2}'><tag>t</tag></bind>")
        success = events[0]
        failed = child(success, NS_SM, "failed")
        self.assertEqual(next(failed.elements()).name, "item-not-found")
        self.assertIsNotNone(child(success, NS_BIND2, "bound"))
        self.assertIsNotNone(client.proto.session)

    @defer.inlineCallbacks
    def test_another_accounts_session_is_not_resumed(self):
        previd, session = yield self.hibernating()
        yield self.accounts.set_password("bob", "pw")
        client, events = yield self.login(
            f"<resume xmlns='{NS_SM}' previd='{previd}' h='0'/>", initial=plain("bob", "pw"))
        self.assertIsNotNone(child(events[0], NS_SM, "failed"))
        self.assertIsNone(session.connection)


class TokenTests(LiveTestCase):
    @defer.inlineCallbacks
    def test_issue_and_use(self):
        token = yield self.new_token()
        self.assertGreater(len(token), 64)
        [row] = yield self.db.query("SELECT agent, mechanism, token_key FROM fast_tokens")
        self.assertEqual(row[0], AGENT)
        self.assertEqual(row[1], "HT-SHA-256-NONE")
        self.assertEqual(bytes(row[2]), hashlib.sha256(token.encode()).digest())
        self.assertNotIn(token.encode(), bytes(row[2]))
        client, events = yield self.fast_login(token, count=1)
        success = events[0]
        self.assertEqual(success.name, "success", success.toXml())
        data = base64.b64decode(str(child(success, NS_SASL2, "additional-data")))
        self.assertEqual(data, responder(token))
        self.assertEqual(client.proto.authenticator.username, "alice")
        self.assertIsNone(child(success, NS_FAST, "token"))  # not due for rotation

    @defer.inlineCallbacks
    def test_expiry_attribute(self):
        client, events = yield self.login(
            f"<request-token xmlns='{NS_FAST}' mechanism='HT-SHA-256-NONE'/>")
        expiry = child(events[0], NS_FAST, "token")["expiry"]
        from xmppd.datetimes import parse_stamp
        self.assertEqual(parse_stamp(expiry), self.clock.seconds() + 21 * 86400)

    @defer.inlineCallbacks
    def test_replayed_count_refused(self):
        token = yield self.new_token()
        _, events = yield self.fast_login(token, count=5)
        self.assertEqual(events[0].name, "success")
        for count in (5, 4):
            _, events = yield self.fast_login(token, count=count)
            self.assertEqual(condition(events[0]), "not-authorized")
        _, events = yield self.fast_login(token, count=6)
        self.assertEqual(events[0].name, "success")
        _, events = yield self.fast_login(token, count="x")
        self.assertEqual(condition(events[0]), "malformed-request")

    @defer.inlineCallbacks
    def test_count_may_start_at_zero(self):
        token = yield self.new_token()
        _, events = yield self.fast_login(token, count=0)
        self.assertEqual(events[0].name, "success")
        _, events = yield self.fast_login(token, count=0)
        self.assertEqual(condition(events[0]), "not-authorized")

    @defer.inlineCallbacks
    def test_expired(self):
        token = yield self.new_token()
        self.clock.advance(21 * 86400 + 1)
        _, events = yield self.fast_login(token)
        self.assertEqual(condition(events[0]), "credentials-expired")

    @defer.inlineCallbacks
    def test_wrong_token_user_agent_mechanism_or_user(self):
        token = yield self.new_token()
        for kwargs in ({"token": token[:-1] + ("A" if token[-1] != "A" else "B")},
                       {"token": token, "agent": str(uuid.uuid4())},
                       {"token": token, "agent": None},
                       {"token": token, "username": "bob"}):
            _, events = yield self.fast_login(**kwargs)
            self.assertEqual(condition(events[0]), "not-authorized", kwargs)
            self.factory.guard = ClientGuard(self.factory.reactor)  # no back-off here
        endp_token = yield self.new_token("HT-SHA-256-ENDP", bindings={
            "tls-server-end-point": b"cert hash"}, agent=str(uuid.uuid4()))
        _, events = yield self.fast_login(endp_token, agent=None)
        self.assertEqual(condition(events[0]), "not-authorized")
        _, events = yield self.login(f"<fast xmlns='{NS_FAST}'/>", "HT-SHA-256-NONE",
                                     b"no separator")
        self.assertEqual(condition(events[0]), "malformed-request")

    @defer.inlineCallbacks
    def test_token_only_for_its_mechanism(self):
        bindings = {"tls-server-end-point": b"cert hash"}
        token = yield self.new_token("HT-SHA-256-ENDP", bindings=bindings)
        _, events = yield self.fast_login(token, bindings=bindings)  # NONE
        self.assertEqual(condition(events[0]), "not-authorized")
        _, events = yield self.fast_login(token, mechanism="HT-SHA-256-ENDP",
                                          cb_data=b"cert hash", bindings=bindings)
        self.assertEqual(events[0].name, "success")

    @defer.inlineCallbacks
    def test_channel_binding_variants(self):
        bindings = {"tls-exporter": b"x" * 32, "tls-server-end-point": b"cert hash"}
        for mechanism, data in (("HT-SHA-256-EXPR", b"x" * 32),
                                ("HT-SHA-256-ENDP", b"cert hash")):
            token = yield self.new_token(mechanism, bindings=bindings)
            # Another connection's binding data (a relayed login) fails.
            _, events = yield self.fast_login(token, mechanism=mechanism, cb_data=b"other",
                                              bindings=bindings)
            self.assertEqual(condition(events[0]), "not-authorized", mechanism)
            _, events = yield self.fast_login(token, mechanism=mechanism, cb_data=data,
                                              bindings=bindings)
            self.assertEqual(events[0].name, "success", mechanism)
            self.assertEqual(base64.b64decode(str(child(events[0], NS_SASL2,
                                                        "additional-data"))),
                             responder(token, data))
        _, events = yield self.fast_login(token, mechanism="HT-SHA-256-EXPR")  # no TLS here
        self.assertEqual(condition(events[0]), "invalid-mechanism")

    @defer.inlineCallbacks
    def test_request_for_unoffered_mechanism_gives_no_token(self):
        _, events = yield self.login(
            f"<request-token xmlns='{NS_FAST}' mechanism='HT-SHA-256-EXPR'/>")
        self.assertEqual(events[0].name, "success")
        self.assertIsNone(child(events[0], NS_FAST, "token"))
        _, events = yield self.login(
            f"<request-token xmlns='{NS_FAST}' mechanism='HT-SHA-256-NONE'/>", agent=None)
        self.assertIsNone(child(events[0], NS_FAST, "token"))

    @defer.inlineCallbacks
    def test_invalidate(self):
        token = yield self.new_token()
        _, events = yield self.fast_login(token, invalidate=True)
        self.assertEqual(events[0].name, "success")
        self.assertIsNone(child(events[0], NS_FAST, "token"))
        _, events = yield self.fast_login(token)
        self.assertEqual(condition(events[0]), "not-authorized")

    @defer.inlineCallbacks
    def test_rotation(self):
        old = yield self.new_token()
        self.clock.advance(60)
        _, events = yield self.fast_login(
            old, inner=f"<request-token xmlns='{NS_FAST}' mechanism='HT-SHA-256-NONE'/>")
        new = child(events[0], NS_FAST, "token")["token"]
        self.assertNotEqual(new, old)
        # The old one stays valid until the new one is used...
        _, events = yield self.fast_login(old)
        self.assertEqual(events[0].name, "success")
        _, events = yield self.fast_login(new)
        self.assertEqual(events[0].name, "success")
        # ...and not after.
        _, events = yield self.fast_login(old)
        self.assertEqual(condition(events[0]), "not-authorized")

    @defer.inlineCallbacks
    def test_password_login_token_replaces_unused_ones(self):
        first = yield self.new_token()
        yield self.new_token()
        _, events = yield self.fast_login(first)
        self.assertEqual(condition(events[0]), "not-authorized")

    @defer.inlineCallbacks
    def test_rotated_when_a_quarter_of_its_life_is_left(self):
        token = yield self.new_token()
        self.clock.advance(16 * 86400)
        _, events = yield self.fast_login(token)
        fresh = child(events[0], NS_FAST, "token")
        self.assertIsNotNone(fresh)
        _, events = yield self.fast_login(fresh["token"])
        self.assertEqual(events[0].name, "success")

    @defer.inlineCallbacks
    def test_per_account_limit(self):
        module = self.sm.modules["fast"]
        import dataclasses
        module.config = dataclasses.replace(module.config, max_tokens=2)
        tokens = []
        for _ in range(3):
            self.clock.advance(1)
            tokens.append((yield self.new_token(agent=str(uuid.uuid4()))))
        rows = yield self.db.query("SELECT COUNT(*) FROM fast_tokens")
        self.assertEqual(rows[0][0], 2)

    @defer.inlineCallbacks
    def test_password_change_and_account_deletion_end_tokens(self):
        yield self.new_token()
        yield self.accounts.set_password("alice", "new")
        rows = yield self.db.query("SELECT COUNT(*) FROM fast_tokens")
        self.assertEqual(rows[0][0], 0)
        yield self.accounts.set_password("alice", "secret")
        yield self.new_token()
        yield self.accounts.delete("alice")
        rows = yield self.db.query("SELECT COUNT(*) FROM fast_tokens")
        self.assertEqual(rows[0][0], 0)

    @defer.inlineCallbacks
    def test_gate_refuses_while_backing_off(self):
        token = yield self.new_token()
        for _ in range(10):
            self.factory.guard.auth_failed("alice", "192.0.2.1")
        _, events = yield self.fast_login(token)
        self.assertEqual(condition(events[0]), "temporary-auth-failure")


class StoreTests(LiveTestCase):
    def test_stored_key_is_the_hmac_key(self):
        """HMAC keyed with a token longer than the block equals HMAC keyed with its hash."""
        token = "t" * 96
        key = fast_module.token_key(token)
        self.assertEqual(fast_module.hashed_token(key, b"Initiator", b"cb"),
                         hmac.new(token.encode(), b"Initiatorcb", hashlib.sha256).digest())

    @defer.inlineCallbacks
    def test_revoke(self):
        yield self.new_token()
        other = str(uuid.uuid4())
        yield self.new_token(agent=other)
        store = self.sm.modules["fast"].store
        self.assertEqual((yield store.revoke("alice", other)), 1)
        self.assertEqual([t.agent for t in (yield store.tokens("alice"))], [AGENT])
        self.assertEqual((yield store.revoke("alice")), 1)
        self.assertEqual((yield store.tokens("alice")), [])
