"""xmppd.c2s.sasl2: SASL2 (XEP-0388) framing and Bind 2 (XEP-0386) on client streams."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

import scramp
from twisted.internet import defer
from twisted.trial import unittest
from twisted.words.xish import domish

from tests.c2s_fakes import (
    DOMAIN,
    NS_BIND,
    NS_SASL,
    Client,
    FakeAccounts,
    b64,
    make_factory,
    stream_error_condition,
)
from xmppd.c2s import sasl2

NS_SASL2 = "urn:xmpp:sasl:2"
NS_BIND2 = "urn:xmpp:bind:0"
AGENT = "d4565fa7-4d72-4749-b3d3-740edbf87770"


def authenticate(mechanism: str, initial: bytes | None = None, inner: str = "",
                 agent: str | None = AGENT) -> str:
    """A SASL2 ``<authenticate/>`` as XML text."""
    parts = []
    if initial is not None:
        parts.append(f"<initial-response>{base64.b64encode(initial).decode() or '='}"
                     "</initial-response>")
    if agent is not None:
        parts.append(f"<user-agent id='{agent}'><software>Test</software>"
                     "<device>Phone</device></user-agent>")
    return (f"<authenticate xmlns='{NS_SASL2}' mechanism='{mechanism}'>"
            + "".join(parts) + inner + "</authenticate>")


def plain(username: str = "alice", password: str = "secret") -> bytes:
    return f"\0{username}\0{password}".encode()


def condition(failure: domish.Element) -> str | None:
    """The RFC 6120 condition of a SASL2 failure."""
    assert (failure.uri, failure.name) == (NS_SASL2, "failure"), failure.toXml()
    for child in failure.elements():
        if child.uri == NS_SASL:
            return child.name
    return None


def child(element: domish.Element, uri: str, name: str) -> domish.Element | None:
    for c in element.elements():
        if c.uri == uri and c.name == name:
            return c
    return None


@defer.inlineCallbacks
def send_and_wait(client: Client, xml: str):
    """Feed XML and wait for the stream's asynchronous step (if any); the events."""
    authenticator = client.proto.authenticator
    original = authenticator.handle_element
    results = []

    def capture(element):
        result = original(element)
        results.append(result)
        return result

    authenticator.handle_element = capture
    try:
        client.proto.dataReceived(xml.encode("utf-8"))
    finally:
        del authenticator.handle_element
    for result in results:
        if isinstance(result, defer.Deferred):
            yield result
    return client.read()


class SASL2TestCase(unittest.TestCase):
    def setUp(self):
        self.accounts = FakeAccounts({"alice": "secret"})
        self.factory = make_factory(accounts=self.accounts)
        self.client = Client(self.factory)
        self.features = self.client.header()[1]

    def assertFailure_(self, events, expected):
        self.assertEqual(condition(events[0]), expected, events[0].toXml())
        self.assertFalse(self.client.closed)
        self.assertIsNone(self.client.proto.authenticator.username)


class OfferTests(SASL2TestCase):
    def test_offer_mirrors_legacy_mechanisms(self):
        offer = child(self.features, NS_SASL2, "authentication")
        legacy = child(self.features, NS_SASL, "mechanisms")
        self.assertEqual([str(m) for m in offer.elements() if m.name == "mechanism"],
                         [str(m) for m in legacy.elements()])
        inline = child(offer, NS_SASL2, "inline")
        self.assertIsNotNone(child(inline, NS_BIND2, "bind"))

    def test_not_offered_before_tls_when_required(self):
        client = Client(make_factory(require_encryption=True))
        features = client.header()[1]
        self.assertIsNone(child(features, NS_SASL2, "authentication"))
        events = client.send(authenticate("PLAIN", plain()))
        self.assertEqual(condition(events[0]), "encryption-required")

    def test_not_offered_after_authentication(self):
        _, features = self.client.send(authenticate("PLAIN", plain()))
        self.assertEqual(features.name, "features")
        self.assertIsNone(child(features, NS_SASL2, "authentication"))
        self.assertIsNone(child(features, NS_SASL, "mechanisms"))


class FramingTests(SASL2TestCase):
    def test_plain_success_without_restart(self):
        events = self.client.send(authenticate("PLAIN", plain()))
        success, features = events
        self.assertEqual((success.uri, success.name), (NS_SASL2, "success"))
        self.assertEqual(str(child(success, NS_SASL2, "authorization-identifier")),
                         f"alice@{DOMAIN}")
        self.assertIsNone(child(success, NS_SASL2, "additional-data"))
        # The features follow at once: no stream restart, bind on this stream.
        self.assertEqual(features.name, "features")
        self.assertIsNotNone(child(features, NS_BIND, "bind"))
        events = self.client.send(
            f"<iq type='set' id='b'><bind xmlns='{NS_BIND}'><resource>r</resource></bind></iq>")
        self.assertEqual(str(events[0].bind.jid), f"alice@{DOMAIN}/r")

    def test_scram_multi_step_with_additional_data(self):
        scram = scramp.ScramClient(["SCRAM-SHA-256"], "alice", "secret")
        events = self.client.send(authenticate(
            "SCRAM-SHA-256", scram.get_client_first().encode()))
        self.assertEqual((events[0].uri, events[0].name), (NS_SASL2, "challenge"))
        scram.set_server_first(base64.b64decode(str(events[0])).decode())
        events = self.client.send(
            f"<response xmlns='{NS_SASL2}'>{b64(scram.get_client_final())}</response>")
        success = events[0]
        self.assertEqual(success.name, "success", success.toXml())
        data = base64.b64decode(str(child(success, NS_SASL2, "additional-data")))
        scram.set_server_final(data.decode())  # raises on a wrong server signature
        self.assertEqual(self.client.proto.authenticator.username, "alice")

    def test_no_initial_response_gets_empty_challenge(self):
        events = self.client.send(authenticate("PLAIN"))
        self.assertEqual(events[0].name, "challenge")
        events = self.client.send(
            f"<response xmlns='{NS_SASL2}'>{base64.b64encode(plain()).decode()}</response>")
        self.assertEqual(events[0].name, "success")

    def test_wrong_password(self):
        events = self.client.send(authenticate("PLAIN", plain(password="nope")))
        self.assertFailure_(events, "not-authorized")

    def test_failure_text(self):
        events = self.client.send(authenticate("PLAIN", b"no separators"))
        self.assertFailure_(events, "malformed-request")
        self.assertTrue(str(child(events[0], NS_SASL2, "text")))

    def test_abort(self):
        scram = scramp.ScramClient(["SCRAM-SHA-256"], "alice", "secret")
        self.client.send(authenticate("SCRAM-SHA-256", scram.get_client_first().encode()))
        events = self.client.send(f"<abort xmlns='{NS_SASL2}'/>")
        self.assertFailure_(events, "aborted")
        events = self.client.send(f"<response xmlns='{NS_SASL2}'>{b64('c=biws')}</response>")
        self.assertFailure_(events, "malformed-request")

    def test_malformed_user_agent_id(self):
        events = self.client.send(authenticate("PLAIN", plain(), agent="not-a-uuid"))
        self.assertFailure_(events, "malformed-request")

    def test_mechanism_not_offered(self):
        events = self.client.send(authenticate("SCRAM-SHA-256-PLUS", b"p=tls-exporter,,n=a,r=x"))
        self.assertFailure_(events, "invalid-mechanism")
        events = self.client.send(authenticate("HT-SHA-256-NONE", b"alice\0" + b"x" * 32))
        self.assertFailure_(events, "invalid-mechanism")
        events = self.client.send(authenticate("", plain()))
        self.assertFailure_(events, "invalid-mechanism")

    def test_plain_too_weak_in_clear(self):
        client = Client(make_factory(allow_plain_without_tls=False))
        client.header()
        events = client.send(authenticate("PLAIN", plain()))
        self.assertEqual(condition(events[0]), "mechanism-too-weak")

    def test_bad_base64(self):
        events = self.client.send(
            f"<authenticate xmlns='{NS_SASL2}' mechanism='PLAIN'>"
            "<initial-response>!!!</initial-response></authenticate>")
        self.assertFailure_(events, "incorrect-encoding")

    def test_mixed_framings_refused(self):
        scram = scramp.ScramClient(["SCRAM-SHA-256"], "alice", "secret")
        self.client.send(authenticate("SCRAM-SHA-256", scram.get_client_first().encode()))
        events = self.client.send(f"<response xmlns='{NS_SASL}'>{b64('c=biws')}</response>")
        self.assertEqual(events[0].uri, NS_SASL)
        self.assertEqual(events[0].name, "failure")

    def test_authenticate_after_success(self):
        self.client.send(authenticate("PLAIN", plain()))
        events = self.client.send(authenticate("PLAIN", plain()))
        self.assertEqual(stream_error_condition(events), "policy-violation")

    def test_attempts_capped_across_framings(self):
        factory = make_factory(max_auth_attempts=2)
        client = Client(factory)
        client.header()
        client.auth_plain(password="x")
        events = client.send(authenticate("PLAIN", plain(password="y")))
        self.assertEqual(stream_error_condition(events), "policy-violation")

    def test_back_off_gate_applies(self):
        guard = self.factory.guard
        for _ in range(10):
            guard.auth_failed("alice", "192.0.2.1")
        events = self.client.send(authenticate("PLAIN", plain()))
        self.assertEqual(condition(events[0]), "temporary-auth-failure")


class Bind2Tests(SASL2TestCase):
    def bind2(self, inner="<tag>Conversations</tag>", agent=AGENT, client=None):
        client = client or self.client
        return client.send(authenticate(
            "PLAIN", plain(), f"<bind xmlns='{NS_BIND2}'>{inner}</bind>", agent=agent))

    def test_binds_with_tag_and_derived_part(self):
        success, features = self.bind2()
        identifier = str(child(success, NS_SASL2, "authorization-identifier"))
        self.assertTrue(identifier.startswith(f"alice@{DOMAIN}/Conversations."), identifier)
        self.assertEqual(len(identifier.rsplit(".", 1)[1]), 8)
        self.assertIsNotNone(child(success, NS_BIND2, "bound"))
        # Bound: the features have no bind any more; stanzas go to the session.
        self.assertIsNone(child(features, NS_BIND, "bind"))
        self.assertIsNotNone(self.client.proto.session)
        self.assertEqual(self.factory.session_manager.bound[-1][2], identifier.split("/")[1])

    def test_same_user_agent_same_resource_replaces(self):
        first = str(child(self.bind2()[0], NS_SASL2, "authorization-identifier"))
        other = Client(self.factory)
        other.header()
        second = str(child(self.bind2(client=other)[0], NS_SASL2, "authorization-identifier"))
        self.assertEqual(first, second)
        self.assertTrue(self.client.closed)  # the older session: conflict
        third = Client(self.factory)
        third.header()
        another = str(child(self.bind2(client=third, agent=str(uuid.uuid4()))[0],
                            NS_SASL2, "authorization-identifier"))
        self.assertNotEqual(another, first)

    def test_without_user_agent_random_part(self):
        first = str(child(self.bind2(agent=None)[0], NS_SASL2, "authorization-identifier"))
        other = Client(self.factory)
        other.header()
        second = str(child(self.bind2(agent=None, client=other)[0], NS_SASL2,
                           "authorization-identifier"))
        self.assertNotEqual(first, second)
        self.assertFalse(self.client.closed)

    def test_no_or_bad_tag(self):
        identifier = str(child(self.bind2(inner="")[0], NS_SASL2, "authorization-identifier"))
        self.assertIn("/xmppd.", identifier)
        bad = sasl2.bind2_resource(
            domish.Element((NS_BIND2, "bind")), "alice", None)
        self.assertTrue(bad.startswith("xmppd."))
        element = domish.Element((NS_BIND2, "bind"))
        element.addElement("tag", content="x" * 200)
        self.assertEqual(len(sasl2.bind2_resource(element, "alice", AGENT)), 32 + 9)

    def test_bind_refused_answers_success_without_bound(self):
        self.factory.session_manager.fail_with = RuntimeError("boom")
        success, features = self.bind2()
        self.assertEqual(success.name, "success")
        self.assertIsNone(child(success, NS_BIND2, "bound"))
        self.assertEqual(str(child(success, NS_SASL2, "authorization-identifier")),
                         f"alice@{DOMAIN}")
        self.assertIsNotNone(child(features, NS_BIND, "bind"))
        self.assertFalse(self.client.closed)
        self.flushLoggedErrors(RuntimeError)


class LoopbackTests(unittest.TestCase):
    """The whole server on loopback TLS: SASL2 + Bind 2 + a FAST token, then a FAST
    login that resumes the stream management session inline; round trips counted."""

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        from tests.support import start_server

        self.live = start_server(self, c2s={"require_encryption": True})
        yield self.live.create_user("alice", "wonderland")
        yield self.live.create_user("bob", "builder")
        self.cert_pem = self.live.config.tls.certificate.read_bytes()
        #: Client -> server sends that waited for an answer, per connection.
        self.round_trips = 0

    @defer.inlineCallbacks
    def connect(self):
        from twisted.internet import endpoints, reactor

        from tests.test_c2s_e2e import TestClient

        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", self.live.port)
        client = yield endpoints.connectProtocol(endpoint, TestClient())

        def close():
            if client.transport.connected:
                client.transport.abortConnection()
            return client.closed

        self.addCleanup(close)
        return client

    @defer.inlineCallbacks
    def secure_stream(self):
        """TCP, header, STARTTLS, header again: (client, features); round trips counted."""
        client = yield self.connect()
        yield client.open_stream()
        yield client.starttls(self.cert_pem)
        features = yield client.open_stream()
        self.round_trips = 3
        return client, features

    @defer.inlineCallbacks
    def ask(self, client, xml):
        """Send and wait for the answer (one round trip)."""
        self.round_trips += 1
        client.send(xml)
        answer = yield client.next()
        return answer

    @defer.inlineCallbacks
    def legacy_login(self, username, password, resource):
        """The RFC 6120 way: SCRAM, restart, bind, SM enable; fire with the client."""
        client, _ = yield self.secure_stream()
        result = yield client.scram(username, password)
        self.round_trips += 2
        self.assertEqual(result.name, "success")
        yield client.open_stream()
        self.round_trips += 1
        yield client.bind(resource)
        self.round_trips += 1
        enabled = yield self.ask(client, "<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        self.assertEqual(enabled.name, "enabled")
        return client

    @defer.inlineCallbacks
    def test_sasl2_bind2_fast_then_fast_resume(self):
        bob = yield self.legacy_login("bob", "builder", "desk")
        legacy_trips = self.round_trips

        # First login: SASL2 SCRAM with Bind 2 (SM on) and a token request.
        phone, features = yield self.secure_stream()
        offer = child(features, NS_SASL2, "authentication")
        fast_offer = child(child(offer, NS_SASL2, "inline"), "urn:xmpp:fast:0", "fast")
        offered = [str(m) for m in fast_offer.elements()]
        mechanism = "HT-SHA-256-EXPR" if "HT-SHA-256-EXPR" in offered else "HT-SHA-256-ENDP"
        self.assertIn(mechanism, offered)
        scram = scramp.ScramClient(["SCRAM-SHA-256"], "alice", "wonderland")
        challenge = yield self.ask(phone, authenticate(
            "SCRAM-SHA-256", scram.get_client_first().encode(),
            f"<bind xmlns='{NS_BIND2}'><tag>Phone</tag>"
            "<enable xmlns='urn:xmpp:sm:3' resume='true'/></bind>"
            f"<request-token xmlns='urn:xmpp:fast:0' mechanism='{mechanism}'/>"))
        scram.set_server_first(base64.b64decode(str(challenge)).decode())
        success = yield self.ask(
            phone, f"<response xmlns='{NS_SASL2}'>{b64(scram.get_client_final())}</response>")
        self.assertEqual(success.name, "success", success.toXml())
        scram.set_server_final(base64.b64decode(
            str(child(success, NS_SASL2, "additional-data"))).decode())
        full = str(child(success, NS_SASL2, "authorization-identifier"))
        self.assertTrue(full.startswith("alice@localhost/Phone."), full)
        enabled = child(child(success, NS_BIND2, "bound"), "urn:xmpp:sm:3", "enabled")
        token = child(success, "urn:xmpp:fast:0", "token")["token"]
        features = yield phone.next()
        self.assertEqual(features.name, "features")
        first_login_trips = self.round_trips

        # Bob writes; the phone gets it, then its connection dies.
        bob.send(f"<message to='{full}' type='chat' id='m1'><body>one</body></message>")
        got = yield phone.next()
        self.assertEqual(str(got.body), "one")
        phone.transport.abortConnection()
        yield phone.closed
        bob.send(f"<message to='{full}' type='chat' id='m2'><body>two</body></message>")
        # Bob's stream is processed in order: once his ping is answered, "two"
        # waits in the phone's session (without this, a fast enough reconnection
        # could overtake it on the loopback).
        bob.send("<iq type='get' id='sync-2'><ping xmlns='urn:xmpp:ping'/></iq>")
        while True:
            answer = yield bob.next()
            if answer.name == "iq" and answer.getAttribute("id") == "sync-2":
                break

        # Reconnection: FAST token, inline resumption, one round trip after TLS.
        phone2, _ = yield self.secure_stream()
        cb_type = "tls-exporter" if mechanism.endswith("EXPR") else "tls-server-end-point"
        cb_data = phone2.channel_binding(cb_type)
        proof = hmac.new(token.encode(), b"Initiator" + cb_data, hashlib.sha256).digest()
        success = yield self.ask(phone2, authenticate(
            mechanism, b"alice\0" + proof,
            "<fast xmlns='urn:xmpp:fast:0' count='1'/>"
            f"<resume xmlns='urn:xmpp:sm:3' previd='{enabled['id']}' h='1'/>"
            f"<bind xmlns='{NS_BIND2}'><tag>Phone</tag></bind>"))
        self.assertEqual(success.name, "success", success.toXml())
        self.assertEqual(
            base64.b64decode(str(child(success, NS_SASL2, "additional-data"))),
            hmac.new(token.encode(), b"Responder" + cb_data, hashlib.sha256).digest())
        resumed = child(success, "urn:xmpp:sm:3", "resumed")
        self.assertEqual((resumed["previd"], resumed["h"]), (enabled["id"], "0"))
        self.assertEqual(str(child(success, NS_SASL2, "authorization-identifier")), full)
        replayed = yield phone2.next()
        self.assertEqual((replayed.name, str(replayed.body)), ("message", "two"))
        features = yield phone2.next()
        self.assertEqual(features.name, "features")
        fast_trips = self.round_trips

        # Each step is asked and answered on the wire: round trips after TCP connect.
        self.assertEqual((legacy_trips, first_login_trips, fast_trips), (8, 5, 4))
        phone2.send("<message to='bob@localhost/desk' type='chat'><body>back</body></message>")
        got = yield bob.next()
        self.assertEqual(str(got.body), "back")
