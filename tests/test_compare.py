"""Tests for benchmarks/compare.py's comparison table (no servers are started)."""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.trial import unittest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import compare  # noqa: E402


def chat(delivered: float, p99: float) -> dict:
    """One chat run's figures."""
    return {"delivered_per_s": delivered, "p99_ms": p99}


class ComparisonTableTests(unittest.TestCase):
    """Best-of-rounds ratios of each xmppd variant against each reference server."""

    def test_each_xmppd_variant_gets_its_ratio(self) -> None:
        """xmppd and xmppd-no-mam are each compared with ejabberd, from their best rounds."""
        runs = {
            ("chat", "xmppd"): [chat(24000.0, 140), chat(25000.0, 130)],
            ("chat", "xmppd-no-mam"): [chat(48000.0, 40)],
            ("chat", "ejabberd"): [chat(30000.0, 120), chat(28000.0, 125)],
        }
        table = compare.comparison_table(runs, ["xmppd", "xmppd-no-mam", "ejabberd"],
                                         compare.Params())
        head, _, row = table.splitlines()
        self.assertEqual(head, "| workload | xmppd | xmppd-no-mam | ejabberd "
                         "| xmppd/ejabberd (best) | xmppd-no-mam/ejabberd (best) |")
        self.assertTrue(row.endswith("| 0.83 | 1.60 |"), row)

    def test_one_xmppd_as_before(self) -> None:
        """With xmppd alone the table has the one ratio column it always had."""
        runs = {("chat", "xmppd"): [chat(25000.0, 130)], ("chat", "prosody"): [chat(20000.0, 200)]}
        head, _, row = compare.comparison_table(runs, ["xmppd", "prosody"],
                                                compare.Params()).splitlines()
        self.assertEqual(head, "| workload | xmppd | prosody | xmppd/prosody (best) |")
        self.assertTrue(row.endswith("| 1.25 |"), row)
