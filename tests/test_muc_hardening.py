"""Abuse protection in the MUC: the back-off and rate-limit tools and message rate limits.

The password back-off of rooms is tested in tests/test_muc_features_password.py.
"""

from __future__ import annotations

from twisted.internet import task
from twisted.trial import unittest

from tests.muc_fakes import JULIET, MUC, ROMEO, ROOM, MUCHarness, error_condition
from xmppd.config import MUCSettings
from xmppd.muc.service import MUCService
from xmppd.ratelimit import Backoff, TokenBucket
from xmppd.router import Router

SECRET = "cauldronburn"


def error_of(stanza):
    return next(e for e in stanza.elements() if e.name == "error")


class WindowedBackoffTests(unittest.TestCase):
    """The shared back-off as the MUC uses it (with a failure window), on a task.Clock."""

    def setUp(self):
        self.clock = task.Clock()
        self.backoff = Backoff(self.clock, threshold=3, window=60, base=10, maximum=35)

    def test_blocks_after_max_failures_then_doubles(self):
        key = ("room", "mallory@evil")
        self.assertEqual(self.backoff.failed(key), 0)
        self.assertEqual(self.backoff.failed(key), 0)
        self.assertEqual(self.backoff.delay(key), 0)
        self.assertEqual(self.backoff.failed(key), 10)
        self.assertEqual(self.backoff.delay(key), 10)
        self.clock.advance(9)
        self.assertEqual(self.backoff.delay(key), 1)
        self.clock.advance(1)
        self.assertEqual(self.backoff.delay(key), 0)
        # the first failure after a block starts a longer one, capped at max_delay
        self.assertEqual(self.backoff.failed(key), 20)
        self.clock.advance(20)
        self.assertEqual(self.backoff.failed(key), 35)
        self.clock.advance(35)
        self.assertEqual(self.backoff.failed(key), 35)

    def test_keys_are_independent(self):
        for _ in range(3):
            self.backoff.failed(("room", "a@x"))
        self.assertGreater(self.backoff.delay(("room", "a@x")), 0)
        self.assertEqual(self.backoff.delay(("room", "b@x")), 0)
        self.assertEqual(self.backoff.delay(("other", "a@x")), 0)

    def test_window_forgets_old_failures(self):
        key = ("room", "a@x")
        self.backoff.failed(key)
        self.backoff.failed(key)
        self.clock.advance(61)
        self.assertEqual(self.backoff.failed(key), 0)
        self.assertEqual(self.backoff.failed(key), 0)
        self.assertEqual(self.backoff.failed(key), 10)
        # quiet for a window after the block: a fresh start
        self.clock.advance(10 + 61)
        self.assertEqual(self.backoff.failed(key), 0)

    def test_success_forgets(self):
        key = ("room", "a@x")
        self.backoff.failed(key)
        self.backoff.failed(key)
        self.backoff.forget(key)
        self.assertEqual(self.backoff.failed(key), 0)
        self.assertEqual(len(self.backoff), 1)

    def test_table_is_bounded(self):
        backoff = Backoff(self.clock, threshold=3, window=60, max_keys=100)
        for i in range(1000):
            backoff.failed(("room", f"u{i}@x"))
        self.assertEqual(len(backoff), 100)

    def test_bad_settings(self):
        for settings in ({"threshold": 0}, {"window": 0}, {"base": 5, "maximum": 1}):
            self.assertRaises(ValueError, Backoff, self.clock, **settings)


class TokenBucketTakeTests(unittest.TestCase):
    """TokenBucket.take, which refuses rather than going into debt (MUC messages)."""

    def test_burst_then_rate(self):
        clock = task.Clock()
        bucket = TokenBucket(rate=2, burst=3, clock=clock)
        self.assertEqual([bucket.take() for _ in range(4)], [True, True, True, False])
        clock.advance(0.5)
        self.assertEqual([bucket.take(), bucket.take()], [True, False])
        clock.advance(100)
        self.assertEqual(sum(bucket.take() for _ in range(10)), 3)

    def test_bad_settings(self):
        clock = task.Clock()
        self.assertRaises(ValueError, TokenBucket, 0, 1, clock)
        self.assertRaises(ValueError, TokenBucket, 1, 0, clock)


class MessageRateLimitTests(unittest.TestCase):
    """Each occupant's messages go through a token bucket."""

    def setUp(self):
        self.h = MUCHarness(self, message_rate=1, message_burst=3)
        self.h.create(ROMEO, "Romeo")
        self.h.join(JULIET, "Juliet")
        self.h.clear()

    def say(self, who, text, to=ROOM, kind="groupchat"):
        self.h.send(
            who, f"<message type='{kind}' to='{to}' id='{text}'><body>{text}</body></message>"
        )

    def test_burst_then_refused(self):
        for i in range(4):
            self.say(JULIET, f"m{i}")
        romeo = self.h.take(ROMEO)
        self.assertEqual([m["id"] for m in romeo], ["m0", "m1", "m2"])
        juliet = self.h.take(JULIET)
        errors = [m for m in juliet if m.getAttribute("type") == "error"]
        self.assertEqual(len(errors), 1)
        self.assertEqual(errors[0]["id"], "m3")
        self.assertEqual(error_condition(errors[0]), "resource-constraint")
        self.assertEqual(error_of(errors[0])["type"], "wait")
        # the room's other occupants are not limited by Juliet's bucket
        self.say(ROMEO, "r0")
        self.assertEqual([m["id"] for m in self.h.take(JULIET)], ["r0"])
        # tokens come back with time
        self.h.clock.advance(1)
        self.say(JULIET, "later")
        self.assertEqual([m["id"] for m in self.h.take(ROMEO)], ["r0", "later"])

    def test_private_messages_share_the_bucket(self):
        for i in range(3):
            self.say(JULIET, f"m{i}")
        self.say(JULIET, "pm", to=f"{ROOM}/Romeo", kind="chat")
        juliet = [m for m in self.h.take(JULIET) if m.getAttribute("type") == "error"]
        self.assertEqual([m["id"] for m in juliet], ["pm"])

    def test_defaults_are_generous(self):
        router = Router()
        service = MUCService(
            MUCSettings(domain=MUC),
            router=router,
            server_domain="localhost",
            database=None,
            reactor=task.Clock(),
        )
        self.assertEqual((service.message_burst, service.message_rate), (20, 5.0))
        self.assertEqual(service.password_backoff.threshold, 5)
        self.assertRaises(
            ValueError,
            MUCService,
            MUCSettings(domain=MUC, message_rate=0),
            router=router,
            server_domain="localhost",
            database=None,
        )
