"""xmppd.storage.accounts: accounts and their SCRAM keys."""

from pathlib import Path

import scramp
from twisted.internet import defer
from twisted.trial import unittest

from xmppd.storage.accounts import (
    AccountExists,
    AccountStore,
    InvalidPassword,
    InvalidUsername,
    NoSuchAccount,
    prepare_username,
)
from xmppd.storage.database import Database


class AccountStoreTests(unittest.TestCase):
    """Accounts are kept as SCRAM keys and checked against them."""

    @defer.inlineCallbacks
    def setUp(self):
        self.db = Database(self.mktemp())
        self.addCleanup(self.db.close)
        yield self.db.open()
        self.accounts = AccountStore(self.db)

    @defer.inlineCallbacks
    def test_create_and_check(self):
        yield self.accounts.create("Romeo", "s3cret")
        self.assertEqual((yield self.accounts.usernames()), ["romeo"])
        self.assertTrue((yield self.accounts.exists("romeo")))
        self.assertTrue((yield self.accounts.check_password("romeo", "s3cret")))
        self.assertTrue((yield self.accounts.check_password("ROMEO", "s3cret")))
        self.assertFalse((yield self.accounts.check_password("romeo", "S3cret")))
        self.assertFalse((yield self.accounts.check_password("nobody", "s3cret")))

    @defer.inlineCallbacks
    def test_password_is_not_stored(self):
        yield self.accounts.create("romeo", "very-distinctive-password")
        yield self.db.execute("PRAGMA wal_checkpoint(FULL)")
        raw = Path(self.db.path).read_bytes()
        self.assertIn(b"romeo", raw)  # the account is in the file that was read
        self.assertNotIn(b"very-distinctive-password", raw)

    @defer.inlineCallbacks
    def test_duplicate(self):
        yield self.accounts.create("romeo", "a")
        yield self.assertFailure(self.accounts.create("ROMEO", "b"), AccountExists)

    @defer.inlineCallbacks
    def test_set_password(self):
        yield self.accounts.create("romeo", "old")
        yield self.accounts.set_password("romeo", "new")
        self.assertFalse((yield self.accounts.check_password("romeo", "old")))
        self.assertTrue((yield self.accounts.check_password("romeo", "new")))
        yield self.assertFailure(self.accounts.set_password("juliet", "x"), NoSuchAccount)

    @defer.inlineCallbacks
    def test_delete_cascades(self):
        yield self.accounts.create("romeo", "pw")
        yield self.db.execute(
            "INSERT INTO offline_messages (username, stamp, stanza) VALUES ('romeo', 'x', '<m/>')")
        yield self.accounts.delete("romeo")
        self.assertFalse((yield self.accounts.exists("romeo")))
        rows = yield self.db.query("SELECT COUNT(*) FROM offline_messages")
        self.assertEqual(rows[0][0], 0)
        rows = yield self.db.query("SELECT COUNT(*) FROM scram_keys")
        self.assertEqual(rows[0][0], 0)
        yield self.assertFailure(self.accounts.delete("romeo"), NoSuchAccount)

    @defer.inlineCallbacks
    def test_invalid_input(self):
        yield self.assertFailure(self.accounts.create("a b", "pw"), InvalidUsername)
        yield self.assertFailure(self.accounts.create("a@b", "pw"), InvalidUsername)
        yield self.assertFailure(self.accounts.create("", "pw"), InvalidUsername)
        yield self.assertFailure(self.accounts.create("romeo", ""), InvalidPassword)
        yield self.assertFailure(self.accounts.create("romeo", "x" * 2000), InvalidPassword)
        self.assertEqual((yield self.accounts.usernames()), [])

    def test_prepare_username(self):
        self.assertEqual(prepare_username("RoMeO"), "romeo")
        self.assertRaises(InvalidUsername, prepare_username, "x" * 1024)

    @defer.inlineCallbacks
    def test_scram_exchange_with_stored_keys(self):
        """A real SCRAM client authenticates against the stored keys, per mechanism."""
        yield self.accounts.create("romeo", "pässword")
        for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-1"):
            keys = yield self.accounts.scram_keys("romeo", mechanism)
            server = scramp.ScramMechanism(mechanism).make_server(
                lambda username, keys=keys: keys.as_auth_info())
            client = scramp.ScramClient([mechanism], "romeo", "pässword")
            server.set_client_first(client.get_client_first())
            client.set_server_first(server.get_server_first())
            server.set_client_final(client.get_client_final())
            client.set_server_final(server.get_server_final())  # raises if wrong
        self.assertIsNone((yield self.accounts.scram_keys("juliet", "SCRAM-SHA-1")))
