"""Password guessing: failed SASL attempts back off per account and per address.

State is shared across connections (one ClientGuard per server); the clock
is a fake one, so no test waits.
"""

from __future__ import annotations

import base64

import scramp
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

import xmppd  # noqa: F401  (compat shim first)
from tests.c2s_fakes import (
    NS_SASL,
    Client,
    FakeAccounts,
    make_factory,
    sasl_failure_condition,
    stream_error_condition,
)
from xmppd import logs
from xmppd.c2s.guard import ClientGuard


def plain(username: str, password: str) -> str:
    payload = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
    return f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{payload}</auth>"


def scram_first(username: str) -> str:
    client = scramp.ScramClient(["SCRAM-SHA-256"], username, "irrelevant")
    first = base64.b64encode(client.get_client_first().encode()).decode()
    return f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{first}</auth>"


class BackoffTests(unittest.TestCase):
    """after 3 failures: 2 s, then doubling, up to 60 s (test settings)."""

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.guard = ClientGuard(
            self.reactor, auth_backoff_after=3, auth_backoff=2, auth_backoff_max=60
        )
        self.accounts = FakeAccounts({"alice": "secret", "bob": "secret"})
        self.factory = make_factory(
            reactor=self.reactor,
            guard=self.guard,
            accounts=self.accounts,
            max_auth_attempts=1000,
            negotiation_timeout=0,
        )

    def attempt(self, username, password, address="192.0.2.1", client=None):
        """One PLAIN attempt on a fresh connection (or ``client``); the SASL outcome."""
        if client is None:
            client = Client(self.factory, address)
            client.header()
        events = client.send(plain(username, password))
        element = events[0]
        if element.name == "success":
            return "success"
        return sasl_failure_condition(element)

    def fail(self, times, username="alice", address="192.0.2.1"):
        for _ in range(times):
            self.assertEqual(self.attempt(username, "wrong", address), "not-authorized")

    def test_account_backs_off_across_connections_and_addresses(self):
        self.fail(1, address="192.0.2.1")
        self.fail(1, address="192.0.2.2")
        self.fail(1, address="192.0.2.3")
        # Even the right password, from yet another address, must wait.
        self.assertEqual(self.attempt("alice", "secret", "192.0.2.4"), "temporary-auth-failure")
        # Other accounts are not affected.
        self.assertEqual(self.attempt("bob", "secret", "192.0.2.5"), "success")
        self.reactor.advance(2)
        self.assertEqual(self.attempt("alice", "secret", "192.0.2.4"), "success")

    def test_delay_doubles_with_each_further_failure(self):
        self.fail(3)
        for delay in (2, 4, 8, 16, 32, 60, 60):
            self.reactor.advance(delay - 0.5)
            self.assertEqual(self.attempt("alice", "secret", "192.0.2.9"), "temporary-auth-failure")
            self.reactor.advance(0.5)
            self.fail(1, address=f"192.0.2.{10 + delay % 200}")
        self.reactor.advance(60)
        self.assertEqual(self.attempt("alice", "secret", "192.0.2.9"), "success")

    def test_attempts_during_the_delay_do_not_extend_it_and_are_not_checked(self):
        self.fail(3)
        lookups = len(self.accounts.lookups)
        for _ in range(20):
            client = Client(self.factory, "192.0.2.50")
            client.header()
            events = client.send(scram_first("alice"))
            self.assertEqual(sasl_failure_condition(events[0]), "temporary-auth-failure")
        # Refused before the account was even looked up.
        self.assertEqual(len(self.accounts.lookups), lookups)
        self.reactor.advance(2)
        self.assertEqual(self.attempt("alice", "secret"), "success")

    def test_address_backs_off_across_accounts(self):
        for i in range(3):
            self.assertEqual(self.attempt(f"nobody{i}", "x", "203.0.113.9"), "not-authorized")
        # Refused at <auth>, before the account is known, even for a good login.
        self.assertEqual(self.attempt("bob", "secret", "203.0.113.9"), "temporary-auth-failure")
        self.assertEqual(self.attempt("bob", "secret", "203.0.113.10"), "success")
        self.reactor.advance(2)
        self.assertEqual(self.attempt("bob", "secret", "203.0.113.9"), "success")

    def test_success_forgets_the_account_failures(self):
        self.fail(2)
        self.assertEqual(self.attempt("alice", "secret", "192.0.2.77"), "success")
        self.fail(2, address="192.0.2.78")
        self.assertEqual(self.attempt("alice", "secret", "192.0.2.79"), "success")

    def test_failures_are_forgotten_after_a_quiet_period(self):
        self.fail(2)
        self.reactor.advance(61)
        self.fail(2)
        self.assertEqual(self.attempt("alice", "secret"), "success")

    def test_other_failures_are_not_counted(self):
        client = Client(self.factory)
        client.header()
        for _ in range(10):
            events = client.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>!!</auth>")
            self.assertEqual(sasl_failure_condition(events[0]), "incorrect-encoding")
            events = client.send(f"<auth xmlns='{NS_SASL}' mechanism='X-NONE'/>")
            self.assertEqual(sasl_failure_condition(events[0]), "invalid-mechanism")
        self.assertEqual(self.attempt("alice", "secret"), "success")

    def test_scram_failures_count(self):
        client = Client(self.factory)
        client.header()
        for _ in range(3):
            events = client.scram(password="wrong")
            self.assertEqual(sasl_failure_condition(events[0]), "not-authorized")
        events = client.send(scram_first("alice"))
        self.assertEqual(sasl_failure_condition(events[0]), "temporary-auth-failure")
        self.assertIn("try again", str(events[0].text))

    def test_per_stream_cap_still_applies(self):
        factory = make_factory(
            reactor=self.reactor, guard=self.guard, accounts=self.accounts, max_auth_attempts=5
        )
        client = Client(factory)
        client.header()
        events = []
        for _ in range(5):
            events = client.send(plain("alice", "wrong"))
        self.assertEqual(stream_error_condition(events), "policy-violation")

    def test_logged_with_username_and_address_but_no_password(self):
        self.addCleanup(logs.set_level, logs.current_level())
        logs.set_level("info")
        logged = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        secret = "Gu3ss-Numb3r-7"
        for _ in range(4):
            self.attempt("alice", secret, "198.51.100.23")
        text = "\n".join(formatEvent(event) for event in logged)
        self.assertIn("alice", text)
        self.assertIn("198.51.100.23", text)
        self.assertIn("wait", text)
        self.assertNotIn(secret, text + repr(logged))
        self.assertNotIn(base64.b64encode(f"\0alice\0{secret}".encode()).decode(), repr(logged))

    def test_state_is_bounded(self):
        for i in range(200):
            self.attempt(f"user{i}", "x", f"10.0.{i // 250}.{i % 250}")
        self.assertLessEqual(len(self.guard.auth_accounts), 200)
        self.reactor.advance(61)
        self.attempt("last", "x", "10.1.0.1")
        self.assertEqual(len(self.guard.auth_accounts), 1)
        self.assertEqual(len(self.guard.auth_addresses), 1)
