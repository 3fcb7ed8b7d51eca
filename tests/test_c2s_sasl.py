"""Unit tests for SASL on client streams: SCRAM-SHA-256, SCRAM-SHA-1, PLAIN."""

from __future__ import annotations

import base64

import scramp
from twisted.internet import defer
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from tests.c2s_fakes import (
    DOMAIN,
    NS_SASL,
    NS_TLS,
    Client,
    FakeAccounts,
    b64,
    make_factory,
    sasl_failure_condition,
    stream_error_condition,
)
from xmppd import logs
from xmppd.c2s import sasl
from xmppd.c2s.guard import ClientGuard


def auth(mechanism: str, payload: str = "") -> str:
    return f"<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{payload}</auth>"


def response(payload: str = "") -> str:
    return f"<response xmlns='{NS_SASL}'>{payload}</response>"


def plain(authcid: str, password: str, authzid: str = "") -> str:
    return base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode()).decode()


class SASLTestCase(unittest.TestCase):
    def setUp(self):
        self.accounts = FakeAccounts({"alice": "secret"})
        self.factory = make_factory(accounts=self.accounts)
        self.client = Client(self.factory)
        self.client.header()

    def assertFailure_(self, events, condition):
        self.assertEqual(sasl_failure_condition(events[0]), condition, events[0].toXml())
        self.assertFalse(self.client.closed)

    def assertAuthenticated(self, events):
        self.assertEqual((events[0].uri, events[0].name), (NS_SASL, "success"))
        features = self.client.header()[1]
        self.assertEqual(features.bind.uri, "urn:ietf:params:xml:ns:xmpp-bind")


class ScramTests(SASLTestCase):
    """SCRAM (RFC 5802 / 7677) driven by a real scramp client."""

    def test_scram_sha256(self):
        self.assertAuthenticated(self.client.scram("SCRAM-SHA-256"))
        self.assertIn(("alice", "SCRAM-SHA-256"), self.accounts.lookups)

    def test_scram_sha1(self):
        self.assertAuthenticated(self.client.scram("SCRAM-SHA-1"))
        self.assertIn(("alice", "SCRAM-SHA-1"), self.accounts.lookups)

    def test_server_signature_verified(self):
        """The success payload is the server-final message the client checks."""
        client = scramp.ScramClient(["SCRAM-SHA-256"], "alice", "secret")
        events = self.client.send(auth("SCRAM-SHA-256", b64(client.get_client_first())))
        client.set_server_first(base64.b64decode(str(events[0])).decode())
        events = self.client.send(response(b64(client.get_client_final())))
        server_final = base64.b64decode(str(events[0])).decode()
        self.assertTrue(server_final.startswith("v="))
        client.set_server_final(server_final)  # raises if the signature is wrong

    def test_username_case_normalised(self):
        self.assertAuthenticated(self.client.scram(username="ALICE"))

    def test_wrong_password(self):
        self.assertFailure_(self.client.scram(password="wrong"), "not-authorized")

    def test_unknown_user(self):
        self.assertFailure_(self.client.scram(username="nobody"), "not-authorized")

    def test_unknown_user_indistinguishable(self):
        """An unknown user gets a normal-looking server-first, stable per username."""

        def server_first(username):
            client = Client(self.factory)
            client.header()
            first = scramp.ScramClient(["SCRAM-SHA-256"], username, "x").get_client_first()
            events = client.send(auth("SCRAM-SHA-256", b64(first)))
            self.assertEqual(events[0].name, "challenge")
            message = base64.b64decode(str(events[0])).decode()
            parts = dict(p.split("=", 1) for p in message.split(","))
            return parts["s"], parts["i"]

        known_salt, known_iterations = server_first("alice")
        salt, iterations = server_first("nobody")
        self.assertEqual(len(base64.b64decode(salt)), len(base64.b64decode(known_salt)))
        self.assertEqual(iterations, "10000")
        self.assertEqual(server_first("nobody"), (salt, iterations))
        self.assertNotEqual(server_first("somebody"), (salt, iterations))

    def test_invalid_username(self):
        self.assertFailure_(self.client.scram(username="a@b@c"), "not-authorized")

    def test_no_initial_response(self):
        client = scramp.ScramClient(["SCRAM-SHA-256"], "alice", "secret")
        events = self.client.send(auth("SCRAM-SHA-256"))
        self.assertEqual(events[0].name, "challenge")
        self.assertEqual(str(events[0]), "=")
        events = self.client.send(response(b64(client.get_client_first())))
        client.set_server_first(base64.b64decode(str(events[0])).decode())
        events = self.client.send(response(b64(client.get_client_final())))
        self.assertAuthenticated(events)

    def test_authzid_own_bare_jid(self):
        client = scramp.ScramClient(["SCRAM-SHA-256"], "alice", "secret")
        bare = client.get_client_first()[3:]
        first = f"n,a=alice@{DOMAIN},{bare}"
        events = self.client.send(auth("SCRAM-SHA-256", b64(first)))
        server_first = base64.b64decode(str(events[0])).decode()
        client.set_server_first(server_first)
        final = client.get_client_final()
        # The client's channel binding covers its real gs2 header (with authzid).
        header = base64.b64encode(f"n,a=alice@{DOMAIN},".encode()).decode()
        without_proof, proof = final.rsplit(",p=", 1)
        nonce = without_proof.split(",r=", 1)[1]
        without_proof = f"c={header},r={nonce}"
        proof = _scram_proof("SCRAM-SHA-256", "secret", server_first, bare, without_proof)
        events = self.client.send(response(b64(f"{without_proof},p={proof}")))
        self.assertAuthenticated(events)

    def test_authzid_other_user(self):
        client = scramp.ScramClient(["SCRAM-SHA-256"], "alice", "secret")
        first = f"n,a=bob@{DOMAIN}," + client.get_client_first()[3:]
        self.assertFailure_(self.client.send(auth("SCRAM-SHA-256", b64(first))), "invalid-authzid")

    def test_channel_binding_requested(self):
        client = scramp.ScramClient(["SCRAM-SHA-256"], "alice", "secret")
        first = "p=tls-exporter,," + client.get_client_first()[3:]
        events = self.client.send(auth("SCRAM-SHA-256", b64(first)))
        self.assertFailure_(events, "malformed-request")

    def test_garbage_client_first(self):
        events = self.client.send(auth("SCRAM-SHA-256", b64("hello")))
        self.assertFailure_(events, "malformed-request")

    def test_garbage_client_final(self):
        client = scramp.ScramClient(["SCRAM-SHA-1"], "alice", "secret")
        self.client.send(auth("SCRAM-SHA-1", b64(client.get_client_first())))
        events = self.client.send(response(b64("c=biws,r=nonsense")))
        self.assertFailure_(events, "malformed-request")

    def test_wrong_nonce(self):
        client = scramp.ScramClient(["SCRAM-SHA-256"], "alice", "secret")
        events = self.client.send(auth("SCRAM-SHA-256", b64(client.get_client_first())))
        client.set_server_first(base64.b64decode(str(events[0])).decode())
        final = client.get_client_final().replace(",r=", ",r=x", 1)
        self.assertIn(
            sasl_failure_condition(self.client.send(response(b64(final)))[0]),
            ("malformed-request", "not-authorized"),
        )

    def test_non_utf8_payload(self):
        payload = base64.b64encode(b"n,,n=\xff\xfe,r=abc").decode()
        self.assertFailure_(self.client.send(auth("SCRAM-SHA-256", payload)), "malformed-request")

    def test_retry_after_failure(self):
        self.assertFailure_(self.client.scram(password="wrong"), "not-authorized")
        self.assertAuthenticated(self.client.scram())

    def test_store_failure(self):
        self.accounts.scram_keys = lambda username, mech: defer.fail(RuntimeError("db down"))
        events = self.client.send(
            auth(
                "SCRAM-SHA-256",
                b64(scramp.ScramClient(["SCRAM-SHA-256"], "alice", "x").get_client_first()),
            )
        )
        self.assertFailure_(events, "temporary-auth-failure")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_account_deleted_during_exchange(self):
        client = scramp.ScramClient(["SCRAM-SHA-256"], "alice", "secret")
        events = self.client.send(auth("SCRAM-SHA-256", b64(client.get_client_first())))
        client.set_server_first(base64.b64decode(str(events[0])).decode())
        del self.accounts.keys["alice"]
        events = self.client.send(response(b64(client.get_client_final())))
        self.assertFailure_(events, "not-authorized")


def _scram_proof(mechanism, password, server_first, client_first_bare, without_proof):
    """Compute a SCRAM ClientProof by hand (RFC 5802 3) for a custom gs2 header."""
    import hashlib
    import hmac

    hf = {"SCRAM-SHA-256": hashlib.sha256, "SCRAM-SHA-1": hashlib.sha1}[mechanism]
    parts = dict(p.split("=", 1) for p in server_first.split(","))
    salted = hashlib.pbkdf2_hmac(
        hf().name, password.encode(), base64.b64decode(parts["s"]), int(parts["i"])
    )
    client_key = hmac.new(salted, b"Client Key", hf).digest()
    stored_key = hf(client_key).digest()
    auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
    signature = hmac.new(stored_key, auth_message, hf).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    return base64.b64encode(proof).decode()


class PlainTests(SASLTestCase):
    """PLAIN (RFC 4616) through the portal."""

    def test_success(self):
        events = self.client.send(auth("PLAIN", plain("alice", "secret")))
        self.assertEqual(str(events[0]), "")
        self.assertAuthenticated(events)

    def test_authzid_own_bare_jid(self):
        events = self.client.send(auth("PLAIN", plain("alice", "secret", f"alice@{DOMAIN}")))
        self.assertAuthenticated(events)

    def test_authcid_as_bare_jid(self):
        events = self.client.send(auth("PLAIN", plain(f"alice@{DOMAIN}", "secret")))
        self.assertAuthenticated(events)

    def test_authzid_other(self):
        events = self.client.send(auth("PLAIN", plain("alice", "secret", f"bob@{DOMAIN}")))
        self.assertFailure_(events, "invalid-authzid")

    def test_authzid_full_jid(self):
        events = self.client.send(auth("PLAIN", plain("alice", "secret", f"alice@{DOMAIN}/r")))
        self.assertFailure_(events, "invalid-authzid")

    def test_authzid_unparsable(self):
        events = self.client.send(auth("PLAIN", plain("alice", "secret", "@@@")))
        self.assertFailure_(events, "invalid-authzid")

    def test_wrong_password(self):
        self.assertFailure_(
            self.client.send(auth("PLAIN", plain("alice", "nope"))), "not-authorized"
        )

    def test_unknown_user(self):
        events = self.client.send(auth("PLAIN", plain("nobody", "secret")))
        self.assertFailure_(events, "not-authorized")

    def test_invalid_username(self):
        events = self.client.send(auth("PLAIN", plain("a b", "secret")))
        self.assertFailure_(events, "not-authorized")

    def test_no_nul_separators(self):
        events = self.client.send(auth("PLAIN", b64("alicesecret")))
        self.assertFailure_(events, "malformed-request")

    def test_empty_password(self):
        self.assertFailure_(
            self.client.send(auth("PLAIN", plain("alice", ""))), "malformed-request"
        )

    def test_no_initial_response(self):
        events = self.client.send(auth("PLAIN"))
        self.assertEqual(events[0].name, "challenge")
        self.assertEqual(str(events[0]), "=")
        events = self.client.send(response(plain("alice", "secret")))
        self.assertAuthenticated(events)

    def test_empty_initial_response(self):
        events = self.client.send(auth("PLAIN", "="))
        self.assertFailure_(events, "malformed-request")

    def test_password_not_logged(self):
        self.addCleanup(logs.set_level, logs.current_level())
        logs.set_level("info")
        logged = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        payload = plain("alice", "Sup3rS3cret!")
        self.assertFailure_(self.client.send(auth("PLAIN", payload)), "not-authorized")
        self.assertFailure_(self.client.send(auth("PLAIN", payload)), "not-authorized")
        text = repr(logged)
        # The failed logins were logged (with the username) ...
        self.assertIn("alice", text)
        # ... without the password or the SASL data
        self.assertNotIn("Sup3rS3cret!", text)
        self.assertNotIn(payload, text)


class FailureTests(SASLTestCase):
    """Every SASL failure condition the stream can produce (RFC 6120 6.5)."""

    def test_invalid_mechanism(self):
        self.assertFailure_(self.client.send(auth("DIGEST-MD5", "")), "invalid-mechanism")

    def test_missing_mechanism(self):
        events = self.client.send(f"<auth xmlns='{NS_SASL}'/>")
        self.assertFailure_(events, "invalid-mechanism")

    def test_plus_mechanism_not_offered(self):
        self.assertFailure_(self.client.send(auth("SCRAM-SHA-256-PLUS")), "invalid-mechanism")

    def test_bad_base64(self):
        events = self.client.send(auth("PLAIN", "!!!not base64!!!"))
        self.assertFailure_(events, "incorrect-encoding")

    def test_bad_base64_in_response(self):
        self.client.send(auth("PLAIN"))
        self.assertFailure_(self.client.send(response("%%%")), "incorrect-encoding")

    def test_abort(self):
        self.client.send(auth("SCRAM-SHA-256"))
        events = self.client.send(f"<abort xmlns='{NS_SASL}'/>")
        self.assertFailure_(events, "aborted")
        self.assertAuthenticated(self.client.scram())

    def test_response_without_exchange(self):
        self.assertFailure_(self.client.send(response(b64("x"))), "malformed-request")

    def test_auth_during_exchange(self):
        self.client.send(auth("SCRAM-SHA-256"))
        self.assertFailure_(self.client.send(auth("PLAIN")), "malformed-request")

    def test_encryption_required(self):
        client = Client(make_factory(require_encryption=True))
        client.header()
        events = client.send(auth("PLAIN", plain("alice", "secret")))
        self.assertEqual(sasl_failure_condition(events[0]), "encryption-required")

    def test_plain_allowed_after_tls_when_required(self):
        client = Client(make_factory(require_encryption=True))
        client.header()
        client.send(f"<starttls xmlns='{NS_TLS}'/>")
        client.header()
        events = client.send(auth("PLAIN", plain("alice", "secret")))
        self.assertEqual(events[0].name, "success")

    def test_mechanism_too_weak(self):
        client = Client(make_factory(allow_plain_without_tls=False))
        client.header()
        events = client.send(auth("PLAIN", plain("alice", "secret")))
        self.assertEqual(sasl_failure_condition(events[0]), "mechanism-too-weak")

    def test_attempts_capped(self):
        # No back-off here (see tests.test_hardening_auth): the per-stream cap.
        self.factory.guard = ClientGuard(self.factory.reactor, auth_backoff_after=100)
        for attempt in range(4):
            events = self.client.send(auth("PLAIN", plain("alice", f"wrong{attempt}")))
            self.assertFailure_(events, "not-authorized")
        events = self.client.send(auth("PLAIN", plain("alice", "wrong")))
        self.assertEqual(sasl_failure_condition(events[0]), "not-authorized")
        self.assertEqual(stream_error_condition(events), "policy-violation")
        self.assertTrue(self.client.closed)

    def test_auth_after_success(self):
        self.client.send(auth("PLAIN", plain("alice", "secret")))
        self.client.header()
        events = self.client.send(auth("PLAIN", plain("alice", "secret")))
        self.assertEqual(stream_error_condition(events), "policy-violation")

    def test_failure_text(self):
        events = self.client.send(auth("PLAIN", b64("nonul")))
        self.assertEqual(events[0].text.name, "text")


class PayloadTests(unittest.TestCase):
    """Base64 framing of SASL data (RFC 6120 6.4.2)."""

    def test_decode(self):
        self.assertIsNone(sasl.decode_payload(""))
        self.assertIsNone(sasl.decode_payload("  \n"))
        self.assertEqual(sasl.decode_payload("="), b"")
        self.assertEqual(sasl.decode_payload("aGk="), b"hi")

    def test_decode_rejects_garbage(self):
        for text in ("a", "aGk", "a*k=", "aGk=aGk="):
            e = self.assertRaises(sasl.SASLFailure, sasl.decode_payload, text)
            self.assertEqual(e.condition, "incorrect-encoding")

    def test_encode(self):
        self.assertEqual(sasl.encode_payload(b""), "=")
        self.assertEqual(sasl.encode_payload(None), "")
        self.assertEqual(sasl.encode_payload(b"hi"), "aGk=")

    def test_fake_keys_deterministic(self):
        server = sasl.SASLServer(accounts=None, portal=None, domain=DOMAIN, secret=b"k" * 32)
        one = server.start("SCRAM-SHA-1", True)
        two = server.start("SCRAM-SHA-1", True)
        self.assertEqual(one.fake_keys("x"), two.fake_keys("x"))
        self.assertNotEqual(one.fake_keys("x"), one.fake_keys("y"))
        salt, stored, server_key, iterations = one.fake_keys("x")
        self.assertEqual((len(stored), len(server_key)), (20, 20))

    def test_offered(self):
        server = sasl.SASLServer(
            accounts=None, portal=None, domain=DOMAIN, allow_plain_without_tls=False
        )
        self.assertEqual(server.offered(False), ["SCRAM-SHA-256", "SCRAM-SHA-1"])
        self.assertEqual(server.offered(True), ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])


class ChannelBindingTests(unittest.TestCase):
    """SCRAM-*-PLUS (RFC 5802 §6) in the mechanisms, without a stream."""

    def setUp(self):
        from xmppd.c2s import sasl

        self.sasl = sasl
        self.server = sasl.SASLServer(accounts=FakeAccounts({"alice": "secret"}), portal=None,
                                      domain="localhost", secret=b"k" * 32)
        self.bindings = {"tls-exporter": b"e" * 32, "tls-server-end-point": b"p" * 32}

    def test_offered_only_with_bindings(self):
        self.assertEqual(self.server.offered(True), ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
        self.assertEqual(self.server.offered(True, self.bindings)[:2],
                         ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"])
        with self.assertRaises(self.sasl.SASLFailure) as caught:
            self.server.start("SCRAM-SHA-256-PLUS", True)
        self.assertEqual(caught.exception.condition, "invalid-mechanism")

    def failure(self, mechanism, first, bindings):
        exchange = self.server.start(mechanism, True, bindings=bindings)
        d = exchange.step(first)
        failures = []
        d.addErrback(lambda f: failures.append(f.value.condition))
        return failures[0] if failures else None

    def test_plus_needs_a_binding_it_offers(self):
        self.assertEqual(
            self.failure("SCRAM-SHA-256-PLUS", b"n,,n=alice,r=abc", self.bindings),
            "malformed-request")
        self.assertEqual(
            self.failure("SCRAM-SHA-256-PLUS", b"p=tls-unique,,n=alice,r=abc", self.bindings),
            "malformed-request")
        self.assertIsNone(
            self.failure("SCRAM-SHA-256-PLUS", b"p=tls-exporter,,n=alice,r=abc", self.bindings))

    def test_plain_scram_with_p_or_downgraded_y(self):
        self.assertEqual(
            self.failure("SCRAM-SHA-256", b"p=tls-exporter,,n=alice,r=abc", self.bindings),
            "malformed-request")
        self.assertEqual(self.failure("SCRAM-SHA-256", b"y,,n=alice,r=abc", self.bindings),
                         "not-authorized")
        # Without bindings (no TLS), 'y' is what an honest client says.
        self.assertIsNone(self.failure("SCRAM-SHA-256", b"y,,n=alice,r=abc", {}))

    def test_fake_keys_are_the_same_with_plus(self):
        """An unknown account looks the same to -PLUS and plain SCRAM (no enumeration)."""
        plus = self.server.start("SCRAM-SHA-256-PLUS", True, bindings=self.bindings)
        plain = self.server.start("SCRAM-SHA-256", True, bindings=self.bindings)
        self.assertEqual(plus.fake_keys("nobody"), plain.fake_keys("nobody"))
