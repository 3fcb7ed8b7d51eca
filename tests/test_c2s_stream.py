"""Unit tests for the client stream: header, features, TLS, bind, stanzas, limits."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest
from twisted.words.protocols.jabber import error, jid
from twisted.words.xish import domish

from tests.c2s_fakes import (
    DOMAIN,
    NS_BIND,
    NS_REGISTER,
    NS_SASL,
    NS_SESSION,
    NS_STREAMS,
    NS_TLS,
    TLS_OPTIONS,
    Client,
    FakeAccounts,
    FakeSessionManager,
    make_factory,
    stanza_error_condition,
    stream_error_condition,
)
from xmppd.c2s.stream import C2SStream


def elements(events):
    return [e for e in events if isinstance(e, domish.Element)]


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
        self.assertEqual(feature_names(features), {(NS_BIND, "bind"), (NS_SESSION, "session")})
        self.assertIsNotNone(features.session.optional)


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


class BoundStanzaTests(unittest.TestCase):
    """After bind: 'from' stamped, 'to' checked, iq rules, routing."""

    def setUp(self):
        self.factory = make_factory()
        self.router = self.factory.session_manager.router
        self.client = Client(self.factory)
        self.full = self.client.login()

    def test_from_is_stamped(self):
        self.client.send("<message from='mallory@evil.example' to='bob@example.org'/>")
        self.assertEqual(self.router.routed[0]["from"], self.full)

    def test_to_is_normalised(self):
        self.client.send("<message to='Bob@Example.ORG/Phone'/>")
        self.assertEqual(self.router.routed[0]["to"], "bob@example.org/Phone")

    def test_no_to_is_routed(self):
        self.client.send("<presence/>")
        self.assertEqual(len(self.router.routed), 1)
        self.assertFalse(self.router.routed[0].hasAttribute("to"))

    def test_malformed_to(self):
        events = self.client.send("<message to='a@b@c' id='m1'><body>x</body></message>")
        self.assertEqual(events[0].name, "message")
        self.assertEqual(events[0]["type"], "error")
        self.assertEqual(events[0]["to"], self.full)
        self.assertEqual(events[0]["from"], DOMAIN)
        self.assertEqual(stanza_error_condition(events[0]), "jid-malformed")
        self.assertEqual(self.router.routed, [])
        self.assertFalse(self.client.closed)

    def test_malformed_to_on_error_stanza_is_dropped(self):
        events = self.client.send("<message to='a@b@c' type='error'/>")
        self.assertEqual(events, [])
        self.assertEqual(self.router.routed, [])

    def test_iq_without_id(self):
        events = self.client.send("<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>")
        self.assertEqual(stanza_error_condition(events[0]), "bad-request")
        self.assertEqual(self.router.routed, [])

    def test_iq_bad_type(self):
        events = self.client.send("<iq type='fetch' id='1'><ping xmlns='urn:xmpp:ping'/></iq>")
        self.assertEqual(stanza_error_condition(events[0]), "bad-request")
        self.assertEqual(events[0]["id"], "1")

    def test_iq_get_without_payload(self):
        events = self.client.send("<iq type='get' id='1'/>")
        self.assertEqual(stanza_error_condition(events[0]), "bad-request")

    def test_iq_result_is_routed(self):
        self.client.send("<iq type='result' id='1' to='bob@example.org/x'/>")
        self.assertEqual(len(self.router.routed), 1)

    def test_unknown_top_level_element(self):
        events = self.client.send("<foo xmlns='urn:example'/>")
        self.assertEqual(stream_error_condition(events), "unsupported-stanza-type")

    def test_stanza_in_wrong_namespace(self):
        events = self.client.send("<message xmlns='jabber:server' to='bob@example.org'/>")
        self.assertEqual(stream_error_condition(events), "unsupported-stanza-type")
        self.assertEqual(self.router.routed, [])

    def test_auth_after_bind(self):
        events = self.client.auth_plain()
        self.assertEqual(stream_error_condition(events), "policy-violation")

    def test_client_stream_error(self):
        events = self.client.send(
            "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
        )
        self.assertEqual(events, [("end",)])
        self.assertTrue(self.client.closed)

    def test_whitespace_keepalive(self):
        for _ in range(10):
            self.assertEqual(self.client.send(" \n "), [])
        self.assertFalse(self.client.closed)

    def test_client_closes_stream(self):
        events = self.client.send("</stream:stream>")
        self.assertEqual(events, [("end",)])
        self.assertTrue(self.client.closed)
        self.client.lose()
        self.assertEqual(len(self.factory.session_manager.unbound), 1)

    def test_router_crash(self):
        def crash(stanza):
            raise RuntimeError("router bug")

        self.router.route = crash
        events = self.client.send("<message to='bob@example.org'/>")
        self.assertEqual(stream_error_condition(events), "internal-server-error")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class SessionOverStreamTests(unittest.TestCase):
    """A bound Session delivering to, and closing, its client stream."""

    def setUp(self):
        self.factory = make_factory()
        self.client = Client(self.factory)
        self.client.login()
        [self.session] = self.factory.session_manager.sessions.values()

    def test_deliver(self):
        message = domish.Element((None, "message"))
        message["to"] = self.session.jid.full()
        message.addElement("body", content="hello")
        self.session.deliver(message)
        events = self.client.read()
        self.assertEqual(events[0].uri, "jabber:client")
        self.assertEqual(str(events[0].body), "hello")
        self.assertEqual(self.client.transport.value(), b"")

    def test_deliver_does_not_mutate(self):
        message = domish.Element(("jabber:client", "message"))
        message.addElement("body", content="x")
        before = message.toXml()
        self.session.deliver(message)
        self.session.deliver(message)
        self.assertEqual(message.toXml(), before)
        self.assertEqual(len(self.client.read()), 2)

    def test_deliver_component_namespace(self):
        """Stanzas built in another stanza namespace reach the client as jabber:client."""
        message = domish.Element(("jabber:component:accept", "message"))
        message.addElement("body", content="x")
        self.session.deliver(message)
        raw = self.client.transport.value()
        self.assertNotIn(b"jabber:component:accept", raw)
        events = self.client.read()
        self.assertEqual(events[0].uri, "jabber:client")
        self.assertEqual(events[0].body.uri, "jabber:client")

    def test_close(self):
        self.session.close("system-shutdown", "bye")
        events = self.client.read()
        self.assertEqual(stream_error_condition(events), "system-shutdown")
        self.assertEqual(events[-1], ("end",))
        self.assertTrue(self.client.closed)

    def test_deliver_after_close_is_dropped(self):
        self.session.close("conflict")
        self.client.read()
        self.session.deliver(domish.Element((None, "message")))
        self.assertEqual(self.client.transport.value(), b"")

    def test_factory_close_all(self):
        other = Client(self.factory)
        other.header()
        self.factory.close_all("system-shutdown")
        self.assertEqual(stream_error_condition(self.client.read()), "system-shutdown")
        self.assertEqual(stream_error_condition(other.read()), "system-shutdown")


class RestrictedXMLTests(unittest.TestCase):
    """RFC 6120 11: restricted XML, well-formedness and limits."""

    def setUp(self):
        self.factory = make_factory(max_stanza_size=4096, max_depth=10)
        self.client = Client(self.factory)

    def assertStreamError(self, events, condition):
        self.assertEqual(stream_error_condition(events), condition)
        self.assertEqual(events[-1], ("end",))
        self.assertTrue(self.client.closed)

    def test_comment(self):
        self.client.header()
        self.assertStreamError(self.client.send("<!-- hello -->"), "restricted-xml")

    def test_comment_inside_stanza(self):
        self.client.login()
        self.assertStreamError(self.client.send("<message><!-- x --></message>"), "restricted-xml")

    def test_processing_instruction(self):
        self.client.header()
        self.assertStreamError(self.client.send("<?foo bar?>"), "restricted-xml")

    def test_doctype(self):
        events = self.client.send(
            "<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY x 'y'>]>"
            f"<stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAMS}' to='{DOMAIN}'"
            " version='1.0'>"
        )
        self.assertStreamError(events, "restricted-xml")
        self.assertEqual(events[0][0], "header")

    def test_entity_reference(self):
        self.client.login()
        self.assertStreamError(
            self.client.send("<message><body>&xxe;</body></message>"), "restricted-xml"
        )

    def test_predefined_entities_allowed(self):
        self.client.login()
        self.client.send("<message to='b@example.org'><body>&lt;&amp;&#65;</body></message>")
        self.assertEqual(str(self.factory.session_manager.router.routed[0].body), "<&A")

    def test_not_well_formed(self):
        self.client.header()
        self.assertStreamError(self.client.send("<message><body></message>"), "not-well-formed")

    def test_not_well_formed_before_header(self):
        events = self.client.send("<<<<")
        self.assertStreamError(events, "not-well-formed")
        self.assertEqual(events[0][0], "header")

    def test_invalid_utf8(self):
        self.client.login()
        self.assertStreamError(
            self.client.send(b"<message><body>\xff\xfe</body></message>"), "not-well-formed"
        )

    def test_unsupported_encoding(self):
        events = self.client.send(
            "<?xml version='1.0' encoding='ISO-8859-1'?>"
            f"<stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAMS}'>"
        )
        self.assertStreamError(events, "unsupported-encoding")

    def test_undeclared_prefix(self):
        self.client.header()
        self.assertStreamError(self.client.send("<foo:bar/>"), "not-well-formed")

    def test_stanza_size_cap(self):
        self.client.login()
        events = self.client.send("<message><body>" + "x" * 5000 + "</body></message>")
        self.assertStreamError(events, "policy-violation")
        self.assertEqual(self.factory.session_manager.router.routed, [])

    def test_stanza_size_cap_across_chunks(self):
        self.client.login()
        self.client.send("<message><body>")
        for _ in range(4):
            events = self.client.send("x" * 1000)
            self.assertFalse(self.client.closed)
        events = self.client.send("x" * 1000)
        self.assertStreamError(events, "policy-violation")

    def test_unfinished_tag_is_bounded(self):
        self.client.login()
        self.client.send("<message to='")
        events = []
        for _ in range(5):
            events += self.client.send("a" * 1000)
        self.assertStreamError(events, "policy-violation")

    def test_many_small_stanzas_are_fine(self):
        self.client.login()
        for _ in range(20):
            self.client.send("<presence><status>" + "s" * 400 + "</status></presence>")
        self.assertFalse(self.client.closed)
        self.assertEqual(len(self.factory.session_manager.router.routed), 20)

    def test_long_keepalive_stream_is_fine(self):
        self.client.login()
        for _ in range(100):
            self.client.send(" " * 100)
        self.assertFalse(self.client.closed)

    def test_depth_cap(self):
        self.client.login()
        events = self.client.send("<message>" + "<x>" * 20)
        self.assertStreamError(events, "policy-violation")

    def test_depth_within_cap(self):
        self.client.login()
        self.client.send("<message>" + "<x>" * 5 + "</x>" * 5 + "</message>")
        self.assertFalse(self.client.closed)

    def test_data_after_error_is_ignored(self):
        self.client.header()
        self.client.send("<!-- x -->")
        self.assertEqual(self.client.send("<presence/>"), [])

    def test_one_bad_client_does_not_disturb_another(self):
        good = Client(self.factory)
        good.login()
        self.client.header()
        self.client.send("<message><</message>")
        self.assertTrue(self.client.closed)
        good.send("<message to='bob@example.org'/>")
        self.assertFalse(good.closed)
        self.assertEqual(len(self.factory.session_manager.router.routed), 1)


class TimeoutTests(unittest.TestCase):
    """Unfinished negotiations and lingering closes are bounded in time."""

    def test_negotiation_timeout(self):
        factory = make_factory(negotiation_timeout=30)
        client = Client(factory)
        client.header()
        factory.reactor.advance(31)
        self.assertEqual(stream_error_condition(client.read()), "connection-timeout")

    def test_no_timeout_once_bound(self):
        factory = make_factory(negotiation_timeout=30)
        client = Client(factory)
        client.login()
        factory.reactor.advance(300)
        self.assertFalse(client.closed)

    def test_abort_after_close_timeout(self):
        factory = make_factory(close_timeout=5)
        client = Client(factory)
        client.send("<<")
        self.assertFalse(client.transport.aborted)
        factory.reactor.advance(6)
        self.assertTrue(client.transport.aborted)

    def test_timers_cancelled_on_connection_lost(self):
        factory = make_factory()
        client = Client(factory)
        client.send("<<")
        client.lose()
        self.assertEqual(factory.reactor.getDelayedCalls(), [])


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
