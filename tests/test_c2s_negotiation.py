"""xmppd.c2s.negotiation: header, features, STARTTLS, bind, early stanzas, registration."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest
from twisted.words.protocols.jabber import error, jid
from twisted.words.xish import domish

from tests.c2s_fakes import (
    DOMAIN,
    NS_BIND,
    NS_REGISTER,
    NS_ROSTER_VERSIONING,
    NS_SASL,
    NS_SESSION,
    NS_STREAMS,
    NS_TLS,
    TLS_OPTIONS,
    Client,
    FakeAccounts,
    FakeSessionManager,
    factory_config,
    make_factory,
    stanza_error_condition,
    stream_error_condition,
)
from tests.support import start_server
from xmppd.c2s.negotiation import C2SAuthenticator
from xmppd.c2s.stream import C2SStream
from xmppd.testing.scansion.client import ScansionClient
from xmppd.testing.scansion.parser import ClientAccount


def feature_names(features: domish.Element) -> set[tuple[str, str]]:
    return {(child.uri, child.name) for child in features.elements()}


def mechanisms(features: domish.Element) -> list[str]:
    for child in features.elements():
        if child.uri == NS_SASL and child.name == "mechanisms":
            return [str(m) for m in child.elements()]
    return []

class StreamHeaderTests(unittest.TestCase):
    """The client's stream header is checked (RFC 6120 4.7, 4.9)."""

    def setUp(self):
        self.client = Client(make_factory())

    def assertStreamError(self, events, condition):
        self.assertEqual(stream_error_condition(events), condition)
        self.assertEqual(events[-1], ("end",))
        self.assertTrue(self.client.closed)

    def test_reply_header(self):
        events = self.client.header(extra=" xml:lang='de'")
        kind, root = events[0]
        self.assertEqual(kind, "header")
        self.assertEqual(root["from"], DOMAIN)
        self.assertEqual(root["version"], "1.0")
        self.assertEqual(root.getAttribute(("http://www.w3.org/XML/1998/namespace", "lang")), "de")
        self.assertEqual(root.defaultUri, "jabber:client")
        self.assertTrue(len(root["id"]) >= 16)
        self.assertFalse(self.client.closed)

    def test_fresh_id_on_each_stream(self):
        first = Client(make_factory()).header()[0][1]["id"]
        second = Client(make_factory()).header()[0][1]["id"]
        self.assertNotEqual(first, second)

    def test_unknown_host(self):
        self.assertStreamError(self.client.header(to="elsewhere.example"), "host-unknown")

    def test_missing_to(self):
        self.assertStreamError(self.client.header(to=None), "host-unknown")

    def test_to_with_localpart(self):
        self.assertStreamError(self.client.header(to="alice@" + DOMAIN), "host-unknown")
        self.assertStreamError(Client(make_factory()).header(to="local..host"), "host-unknown")

    def test_to_case_insensitive(self):
        events = self.client.header(to=DOMAIN.upper())
        self.assertIsNone(stream_error_condition(events))

    def test_missing_version(self):
        self.assertStreamError(self.client.header(version=None), "unsupported-version")

    def test_old_version(self):
        self.assertStreamError(self.client.header(version="0.9"), "unsupported-version")

    def test_future_major_version(self):
        self.assertStreamError(self.client.header(version="2.0"), "unsupported-version")

    def test_garbage_version(self):
        self.assertStreamError(self.client.header(version="one"), "unsupported-version")

    def test_higher_minor_version_accepted(self):
        events = self.client.header(version="1.5")
        self.assertEqual(events[0][1]["version"], "1.0")
        self.assertIsNone(stream_error_condition(events))

    def test_wrong_stream_namespace(self):
        events = self.client.send(
            "<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong' "
            f"to='{DOMAIN}' version='1.0'>"
        )
        self.assertStreamError(events, "invalid-namespace")

    def test_wrong_default_namespace(self):
        events = self.client.send(
            f"<stream:stream xmlns='jabber:server' xmlns:stream='{NS_STREAMS}' "
            f"to='{DOMAIN}' version='1.0'>"
        )
        self.assertStreamError(events, "invalid-namespace")

    def test_missing_default_namespace(self):
        events = self.client.send(
            f"<stream:stream xmlns:stream='{NS_STREAMS}' to='{DOMAIN}' version='1.0'>"
        )
        self.assertStreamError(events, "invalid-namespace")

    def test_wrong_root_element(self):
        events = self.client.send(
            f"<stream:feed xmlns='jabber:client' xmlns:stream='{NS_STREAMS}' "
            f"to='{DOMAIN}' version='1.0'>"
        )
        self.assertStreamError(events, "bad-format")

    def test_error_header_still_sent(self):
        """The stream error comes after a stream header of ours."""
        events = self.client.header(to="elsewhere.example")
        self.assertEqual(events[0][0], "header")
        self.assertEqual(events[0][1]["from"], DOMAIN)


class FeatureTests(unittest.TestCase):
    """Stream features depend on TLS, configuration and authentication."""

    def features(self, client):
        events = client.header()
        self.assertEqual(events[1].name, "features")
        return events[1]

    def test_before_tls_optional(self):
        features = self.features(Client(make_factory()))
        self.assertIn((NS_TLS, "starttls"), feature_names(features))
        self.assertIsNone(features.starttls.required)
        self.assertEqual(mechanisms(features), ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
        self.assertNotIn(
            ("http://jabber.org/features/iq-register", "register"), feature_names(features)
        )

    def test_before_tls_required(self):
        features = self.features(Client(make_factory(require_encryption=True)))
        self.assertEqual(feature_names(features), {(NS_TLS, "starttls")})
        self.assertIsNotNone(features.starttls.required)

    def test_no_tls_options(self):
        features = self.features(Client(make_factory(tls_options=None)))
        self.assertNotIn((NS_TLS, "starttls"), feature_names(features))
        self.assertEqual(mechanisms(features), ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])

    def test_plain_not_offered_in_clear_when_disallowed(self):
        features = self.features(Client(make_factory(allow_plain_without_tls=False)))
        self.assertEqual(mechanisms(features), ["SCRAM-SHA-256", "SCRAM-SHA-1"])

    def test_registration_feature(self):
        features = self.features(Client(make_factory(registration_enabled=True)))
        self.assertIn(
            ("http://jabber.org/features/iq-register", "register"), feature_names(features)
        )

    def test_after_starttls(self):
        client = Client(make_factory(require_encryption=True, registration_enabled=True))
        client.header()
        events = client.send(f"<starttls xmlns='{NS_TLS}'/>")
        self.assertEqual(events[0].name, "proceed")
        self.assertEqual(events[0].uri, NS_TLS)
        self.assertIs(client.transport.tls_started_with, TLS_OPTIONS)
        features = self.features(client)
        self.assertNotIn((NS_TLS, "starttls"), feature_names(features))
        self.assertEqual(mechanisms(features), ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
        self.assertIn(
            ("http://jabber.org/features/iq-register", "register"), feature_names(features)
        )

    def test_direct_tls(self):
        client = Client(make_factory(direct_tls=True, require_encryption=True))
        self.assertIs(client.transport.tls_started_with, TLS_OPTIONS)
        features = self.features(client)
        self.assertNotIn((NS_TLS, "starttls"), feature_names(features))
        self.assertEqual(mechanisms(features), ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])

    def test_direct_tls_needs_options(self):
        self.assertRaises(ValueError, make_factory, direct_tls=True, tls_options=None)

    def test_after_authentication(self):
        client = Client(make_factory())
        client.header()
        self.assertEqual(client.auth_plain()[0].name, "success")
        features = self.features(client)
        self.assertEqual(
            feature_names(features),
            {(NS_BIND, "bind"), (NS_SESSION, "session"), (NS_ROSTER_VERSIONING, "ver")},
        )
        self.assertIsNotNone(features.session.optional)

    def test_roster_versioning_only_after_authentication(self):
        """RFC 6121 2.6.1: <ver/> is offered with bind, never before SASL."""
        client = Client(make_factory())
        before = self.features(client)
        self.assertNotIn((NS_ROSTER_VERSIONING, "ver"), feature_names(before))
        self.assertEqual(client.auth_plain()[0].name, "success")
        after = self.features(client)
        ver = [child for child in after.elements() if child.uri == NS_ROSTER_VERSIONING]
        self.assertEqual(len(ver), 1)
        self.assertEqual(ver[0].name, "ver")
        self.assertEqual(list(ver[0].elements()), [])


    def test_features_built_once_per_state_until_a_reload(self):
        """Streams in the same state share one text; a replaced config builds it anew."""
        factory = make_factory()
        built = []
        real = C2SAuthenticator.features

        def counting(negotiator):
            built.append((negotiator.tls_active, negotiator.username))
            return real(negotiator)

        self.patch(C2SAuthenticator, "features", counting)
        first, second = Client(factory), Client(factory)
        self.assertEqual(feature_names(self.features(first)), feature_names(self.features(second)))
        self.assertEqual(first.auth_plain()[0].name, "success")
        self.assertEqual((NS_BIND, "bind"), sorted(feature_names(self.features(first)))[0])
        self.assertEqual(built, [(False, None), (False, "alice")])
        # A reload replaces the config: registration is now offered.
        factory.config = factory_config({"registration_enabled": True})
        third = Client(factory)
        self.assertIn(("http://jabber.org/features/iq-register", "register"),
                      feature_names(self.features(third)))
        self.assertEqual(len(built), 3)


class StartTLSTests(unittest.TestCase):
    """STARTTLS (RFC 6120 5.4)."""

    def test_starttls_twice(self):
        client = Client(make_factory())
        client.header()
        client.send(f"<starttls xmlns='{NS_TLS}'/>")
        client.header()
        events = client.send(f"<starttls xmlns='{NS_TLS}'/>")
        self.assertEqual((events[0].uri, events[0].name), (NS_TLS, "failure"))
        self.assertEqual(events[-1], ("end",))
        self.assertTrue(client.closed)

    def test_starttls_without_options(self):
        client = Client(make_factory(tls_options=None))
        client.header()
        events = client.send(f"<starttls xmlns='{NS_TLS}'/>")
        self.assertEqual(events[0].name, "failure")
        self.assertTrue(client.closed)
        self.assertIsNone(client.transport.tls_started_with)

    def test_starttls_on_direct_tls(self):
        client = Client(make_factory(direct_tls=True))
        client.header()
        events = client.send(f"<starttls xmlns='{NS_TLS}'/>")
        self.assertEqual(events[0].name, "failure")
        self.assertTrue(client.closed)

    def test_starttls_after_auth(self):
        client = Client(make_factory())
        client.header()
        client.auth_plain()
        client.header()
        events = client.send(f"<starttls xmlns='{NS_TLS}'/>")
        self.assertEqual(events[0].name, "failure")
        self.assertTrue(client.closed)


class BindTests(unittest.TestCase):
    """Resource binding (RFC 6120 7) through the session manager."""

    def setUp(self):
        self.sm = FakeSessionManager()
        self.factory = make_factory(session_manager=self.sm)
        self.client = Client(self.factory)
        self.client.header()
        self.client.auth_plain()
        self.client.header()

    def bind(self, payload="", iq_attrs="type='set' id='b1'"):
        return self.client.send(f"<iq {iq_attrs}><bind xmlns='{NS_BIND}'>{payload}</bind></iq>")

    def test_chosen_resource(self):
        events = self.bind("<resource>Home</resource>")
        self.assertEqual(events[0]["type"], "result")
        self.assertEqual(events[0]["id"], "b1")
        self.assertEqual(str(events[0].bind.jid), f"alice@{DOMAIN}/Home")
        connection, username, resource = self.sm.bound[0]
        self.assertIsInstance(connection, C2SStream)
        self.assertEqual((username, resource), ("alice", "Home"))
        session = self.sm.sessions[f"alice@{DOMAIN}/Home"]
        self.assertEqual(session.jid, jid.JID(f"alice@{DOMAIN}/Home"))
        self.assertIs(session.connection, connection)

    def test_resource_is_prepared(self):
        self.bind("<resource>\u2163</resource>")  # ROMAN NUMERAL FOUR -> "IV"
        self.assertEqual(self.sm.bound[0][2], "IV")

    def test_generated_resource(self):
        events = self.bind()
        self.assertEqual(str(events[0].bind.jid), f"alice@{DOMAIN}/gen1")
        self.assertIsNone(self.sm.bound[0][2])

    def test_empty_resource_element_generates(self):
        self.bind("<resource/>")
        self.assertIsNone(self.sm.bound[0][2])

    def test_invalid_resource(self):
        events = self.bind("<resource>bad\ue000resource</resource>")
        self.assertEqual(events[0]["type"], "error")
        self.assertEqual(stanza_error_condition(events[0]), "bad-request")
        self.assertEqual(self.sm.bound, [])
        self.assertFalse(self.client.closed)

    def test_too_long_resource(self):
        events = self.bind("<resource>" + "r" * 1024 + "</resource>")
        self.assertEqual(stanza_error_condition(events[0]), "bad-request")

    def test_bind_get_is_bad_request(self):
        events = self.bind(iq_attrs="type='get' id='b1'")
        self.assertEqual(stanza_error_condition(events[0]), "bad-request")

    def test_double_bind(self):
        self.bind("<resource>one</resource>")
        events = self.client.send(
            f"<iq type='set' id='b2'><bind xmlns='{NS_BIND}'><resource>two</resource></bind></iq>"
        )
        self.assertEqual(events[0]["type"], "error")
        self.assertEqual(events[0]["id"], "b2")
        self.assertEqual(stanza_error_condition(events[0]), "not-allowed")
        self.assertEqual(len(self.sm.bound), 1)
        self.assertEqual(self.factory.session_manager.router.routed, [])

    def test_conflict_closes_older_session(self):
        self.bind("<resource>same</resource>")
        other = Client(self.factory)
        other.header()
        other.auth_plain()
        other.header()
        events = other.send(
            f"<iq type='set' id='b1'><bind xmlns='{NS_BIND}'><resource>same</resource></bind></iq>"
        )
        self.assertEqual(events[0]["type"], "result")
        old_events = self.client.read()
        self.assertEqual(stream_error_condition(old_events), "conflict")
        self.assertTrue(self.client.closed)
        self.client.lose()
        self.assertEqual(self.sm.unbound, [self.sm.bound[0][0]])

    def test_session_iq(self):
        self.bind()
        events = self.client.send(
            f"<iq type='set' id='s1' to='{DOMAIN}'><session xmlns='{NS_SESSION}'/></iq>"
        )
        self.assertEqual(events[0]["type"], "result")
        self.assertEqual(events[0]["id"], "s1")
        self.assertEqual(list(events[0].elements()), [])
        self.assertEqual(self.factory.session_manager.router.routed, [])

    def test_session_iq_before_bind(self):
        events = self.client.send(f"<iq type='set' id='s1'><session xmlns='{NS_SESSION}'/></iq>")
        self.assertEqual(events[0]["type"], "result")
        self.assertFalse(self.client.closed)

    def test_session_manager_stanza_error(self):
        self.sm.fail_with = error.StanzaError("resource-constraint")
        events = self.bind()
        self.assertEqual(stanza_error_condition(events[0]), "resource-constraint")
        self.assertFalse(self.client.closed)

    def test_session_manager_crash(self):
        self.sm.fail_with = RuntimeError("boom")
        events = self.bind()
        self.assertEqual(stanza_error_condition(events[0]), "internal-server-error")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_unbind_once_on_connection_lost(self):
        self.bind()
        session = self.sm.bound[0][0]
        self.client.lose()
        self.assertEqual(self.sm.unbound, [session])

    def test_unbind_once_after_stream_error_and_close(self):
        self.bind()
        session = self.sm.bound[0][0]
        self.client.send("<foo xmlns='urn:unknown'/>")
        session.stream_error("system-shutdown")
        self.client.lose()
        self.client.lose()
        self.assertEqual(self.sm.unbound, [session])

    def test_interrupted_or_closed(self):
        """Only a connection that went away without a close may keep its session (XEP-0198)."""
        self.bind()
        self.client.lose()
        self.assertEqual(self.sm.interrupted, [True])

    def test_client_close_is_not_an_interruption(self):
        self.bind()
        self.client.send("</stream:stream>")
        self.client.lose()
        self.assertEqual(self.sm.interrupted, [False])

    def test_dead_connection_is_an_interruption(self):
        self.bind()
        self.client.proto.stream_error("connection-timeout", "the client stopped answering")
        self.client.lose()
        self.assertEqual(self.sm.interrupted, [True])

    def test_stream_error_is_not_an_interruption(self):
        self.bind()
        self.client.send("<foo xmlns='urn:unknown'/>")
        self.client.lose()
        self.assertEqual(self.sm.interrupted, [False])

    def test_no_unbind_when_never_bound(self):
        self.client.lose()
        self.assertEqual(self.sm.unbound, [])

    def test_connection_lost_during_async_bind(self):
        self.sm.make_pending = True
        self.bind("<resource>slow</resource>")
        session = self.sm.bound[0][0]
        self.client.lose()
        self.assertEqual(self.sm.unbound, [])
        self.sm.pending.callback(None)
        self.assertEqual(self.sm.unbound, [session])
        self.assertEqual(self.client.read(), [])

    def test_stream_closed_during_async_bind(self):
        """A bind finishing after the stream closed sends nothing; unbind follows."""
        self.sm.make_pending = True
        self.bind("<resource>slow</resource>")
        session = self.sm.bound[0][0]
        self.factory.reactor.advance(self.factory.limits.negotiation_timeout + 1)
        self.assertEqual(stream_error_condition(self.client.read()), "connection-timeout")
        self.sm.pending.callback(None)
        self.assertEqual(self.client.transport.value(), b"")
        self.assertEqual(self.sm.unbound, [])
        self.client.lose()
        self.assertEqual(self.sm.unbound, [session])

    def test_pipelined_stanzas_wait_for_bind(self):
        """Stanzas sent right behind the bind request are processed after it."""
        self.sm.make_pending = True
        events = self.client.send(
            f"<iq type='set' id='b1'><bind xmlns='{NS_BIND}'/></iq>"
            "<presence/><message to='bob@example.org'><body>hi</body></message>"
        )
        self.assertEqual(events, [])
        self.sm.pending.callback(None)
        events = self.client.read()
        self.assertEqual(events[0]["type"], "result")
        routed = self.sm.router.routed
        self.assertEqual([s.name for s in routed], ["presence", "message"])
        self.assertEqual(routed[0]["from"], f"alice@{DOMAIN}/gen1")

    def test_too_many_pipelined_stanzas(self):
        self.sm.make_pending = True
        self.client.factory.max_pending = 3
        events = self.client.send(
            f"<iq type='set' id='b1'><bind xmlns='{NS_BIND}'/></iq>" + "<presence/>" * 5
        )
        self.assertEqual(stream_error_condition(events), "policy-violation")


class EarlyStanzaTests(unittest.TestCase):
    """Stanzas before authentication / bind close the stream with not-authorized."""

    def test_message_before_auth(self):
        client = Client(make_factory())
        client.header()
        events = client.send("<message to='bob@example.org'><body>x</body></message>")
        self.assertEqual(stream_error_condition(events), "not-authorized")
        self.assertTrue(client.closed)

    def test_presence_before_auth(self):
        client = Client(make_factory())
        client.header()
        self.assertEqual(stream_error_condition(client.send("<presence/>")), "not-authorized")

    def test_iq_before_auth(self):
        client = Client(make_factory())
        client.header()
        events = client.send("<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>")
        self.assertEqual(stream_error_condition(events), "not-authorized")

    def test_stanza_after_auth_before_bind(self):
        client = Client(make_factory())
        client.header()
        client.auth_plain()
        client.header()
        events = client.send("<presence/>")
        self.assertEqual(stream_error_condition(events), "not-authorized")

    def test_nothing_processed_after_stream_error(self):
        factory = make_factory()
        client = Client(factory)
        client.header()
        client.send("<presence/><message to='x@example.org'/>")
        self.assertEqual(factory.session_manager.router.routed, [])


class RegistrationTests(unittest.TestCase):
    """Pre-authentication in-band registration (XEP-0077)."""

    def setUp(self):
        self.accounts = FakeAccounts({"alice": "secret"})
        self.factory = make_factory(accounts=self.accounts, registration_enabled=True)
        self.client = Client(self.factory)
        self.client.header()

    def register(self, fields: str, iq_id: str = "r1"):
        return self.client.send(
            f"<iq type='set' id='{iq_id}'><query xmlns='{NS_REGISTER}'>{fields}</query></iq>"
        )

    def test_form(self):
        events = self.client.send(f"<iq type='get' id='g1'><query xmlns='{NS_REGISTER}'/></iq>")
        reply = events[0]
        self.assertEqual((reply["type"], reply["id"]), ("result", "g1"))
        query = reply.query
        self.assertEqual(query.uri, NS_REGISTER)
        names = [child.name for child in query.elements()]
        self.assertEqual(names, ["instructions", "username", "password"])

    def test_register_then_login(self):
        events = self.register("<username>Bob</username><password>pw</password>")
        self.assertEqual(events[0]["type"], "result")
        self.assertIn("bob", self.accounts.keys)
        events = self.client.auth_plain("bob", "pw")
        self.assertEqual(events[0].name, "success")

    def test_taken(self):
        events = self.register("<username>alice</username><password>pw</password>")
        self.assertEqual(stanza_error_condition(events[0]), "conflict")
        self.assertFalse(self.client.closed)

    def test_bad_username(self):
        events = self.register("<username>a@b</username><password>pw</password>")
        self.assertEqual(stanza_error_condition(events[0]), "not-acceptable")

    def test_missing_field(self):
        events = self.register("<username>carol</username>")
        self.assertEqual(stanza_error_condition(events[0]), "bad-request")

    def test_empty_field(self):
        events = self.register("<username>carol</username><password/>")
        self.assertEqual(stanza_error_condition(events[0]), "bad-request")

    def test_error_does_not_echo_password(self):
        events = self.register("<username>alice</username><password>hunter2</password>")
        # An error reply was sent (the username is taken) ...
        self.assertEqual(len(events), 1)
        self.assertEqual((events[0].name, events[0]["type"]), ("iq", "error"))
        self.assertEqual(stanza_error_condition(events[0]), "conflict")
        # ... and it does not carry the password
        self.assertNotIn("hunter2", events[0].toXml())

    def test_one_account_per_stream(self):
        self.register("<username>carol</username><password>pw</password>")
        events = self.register("<username>dave</username><password>pw</password>", "r2")
        self.assertEqual(stanza_error_condition(events[0]), "not-allowed")
        self.assertNotIn("dave", self.accounts.keys)

    def test_remove_before_auth(self):
        events = self.register("<remove/>")
        self.assertEqual(stanza_error_condition(events[0]), "not-allowed")

    def test_disabled(self):
        client = Client(make_factory())
        client.header()
        events = client.send(f"<iq type='get' id='g1'><query xmlns='{NS_REGISTER}'/></iq>")
        self.assertEqual(events[0]["type"], "error")
        self.assertEqual(stanza_error_condition(events[0]), "service-unavailable")
        self.assertFalse(client.closed)

    def test_requires_tls_when_encryption_required(self):
        client = Client(make_factory(registration_enabled=True, require_encryption=True))
        client.header()
        events = client.send(f"<iq type='get' id='g1'><query xmlns='{NS_REGISTER}'/></iq>")
        self.assertEqual(stream_error_condition(events), "not-authorized")

    @defer.inlineCallbacks
    def test_async_store(self):
        """Registration waits for the store; pipelined elements wait too."""
        pending = defer.Deferred()
        self.accounts.create = lambda username, password: pending
        events = self.register("<username>eve</username><password>pw</password>")
        self.assertEqual(events, [])
        events = self.client.send(f"<iq type='get' id='g2'><query xmlns='{NS_REGISTER}'/></iq>")
        self.assertEqual(events, [])
        pending.callback(None)
        events = self.client.read()
        self.assertEqual([e["id"] for e in events], ["r1", "g2"])
        yield None


class LiveStreamFeatureTests(unittest.TestCase):
    """The real server offers the modules' stream features after authentication."""

    @defer.inlineCallbacks
    def features_after_login(self, **sections):
        server = start_server(self, **sections)
        yield server.create_user("rosa", "password")
        client = ScansionClient(ClientAccount("Rosa", f"rosa@{server.config.domain}", "password"))
        yield client.connect("127.0.0.1", server.port)
        self.addCleanup(client.disconnect)
        return client.stream.features

    @defer.inlineCallbacks
    def test_roster_versioning_offered_by_the_server(self):
        features = yield self.features_after_login()
        self.assertIn((NS_ROSTER_VERSIONING, "ver"), features)
        self.assertIn((NS_BIND, "bind"), features)

    @defer.inlineCallbacks
    def test_not_offered_without_the_roster_module(self):
        features = yield self.features_after_login(modules={"disabled": ["roster"]})
        self.assertNotIn((NS_ROSTER_VERSIONING, "ver"), features)
        self.assertIn((NS_BIND, "bind"), features)
