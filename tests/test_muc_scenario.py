"""The acceptance scenario (tests/scenarios/muc_password.scs) replayed through the router.

Each ``sends`` step is routed with the client's full JID as 'from'; each
``receives`` step looks through what the client got, in order, for the
first stanza that matches (scansion's rules, via xmppd.testing.scansion.matcher),
passing over others, as the scenario runner does.
"""

from __future__ import annotations

from pathlib import Path

from twisted.trial import unittest

from tests.muc_fakes import MUC, NS_MUC_USER, MUCHarness, status_codes
from xmppd.testing.scansion.matcher import describe, match_stanza
from xmppd.testing.scansion.parser import (
    CONNECT,
    DISCONNECT,
    RECEIVE,
    RECEIVE_NOTHING,
    SEND,
    expand_variables,
    parse_script,
)

SCENARIO = Path(__file__).parent / "scenarios" / "muc_password.scs"


class AcceptanceScenarioTests(unittest.TestCase):
    """Replay muc_password.scs against the MUC service alone."""

    def replay(self, script_text: str):
        script = parse_script(script_text)
        harness = MUCHarness(self)
        variables: dict[str, str] = {}
        full_jids: dict[str, str] = {}
        for index, account in enumerate(script.clients):
            full = f"{account.jid}/{account.resource or f'res{index}'}"
            full_jids[account.name] = full
            variables[f"{account.name}'s full JID"] = full
            variables[f"{account.name}'s JID"] = account.jid
        queues: dict[str, list] = {name: [] for name in full_jids}
        passed_over: list[tuple[int, str]] = []
        for step in script.steps:
            full = full_jids[step.client]
            if step.action in (CONNECT, DISCONNECT):
                continue
            if step.action == SEND:
                for element in step.elements:
                    stanza = expand_variables(element, variables, strip_scansion=True)
                    stanza["from"] = full
                    harness.router.route(stanza)
                continue
            queues[step.client].extend(harness.take(full))
            if step.action == RECEIVE_NOTHING:
                self.assertEqual(queues[step.client], [], f"line {step.line}")
                continue
            self.assertEqual(step.action, RECEIVE)
            for element in step.elements:
                expected = expand_variables(element, variables)
                queue = queues[step.client]
                while queue:
                    received = queue.pop(0)
                    result = match_stanza(expected, received, variables)
                    if result:
                        variables.update(result.captures)
                        break
                    passed_over.append((step.line, describe(received)))
                else:
                    self.fail(
                        f"line {step.line}: {step.client} did not receive "
                        f"{describe(expected)}; passed over: {passed_over}"
                    )
        leftovers = [s for queue in queues.values() for s in queue]
        return harness, passed_over, leftovers

    def test_muc_password_scenario(self):
        """The acceptance scenario passes exactly."""
        harness, passed_over, _ = self.replay(SCENARIO.read_text())
        # The only stanza the script leaves out is the 104 after the first configuration.
        self.assertEqual(len(passed_over), 1, passed_over)
        line, xml = passed_over[0]
        self.assertIn("code='104'", xml)
        self.assertIn(NS_MUC_USER, xml)

    def test_first_configuration_announced_once(self):
        """After the first submit: the iq result, then exactly one 104 message."""
        harness = MUCHarness(self)
        romeo = "user@localhost/res0"
        harness.join(romeo, "Romeo")
        stanzas = harness.configure(
            romeo, fields={"muc#roomconfig_roomsecret": "cauldronburn"}, iq_id="config1"
        )
        self.assertEqual([s.name for s in stanzas], ["iq", "message"])
        self.assertEqual(stanzas[0]["type"], "result")
        self.assertEqual(stanzas[0]["id"], "config1")
        self.assertEqual(stanzas[1]["from"], f"room@{MUC}")
        self.assertEqual(stanzas[1]["type"], "groupchat")
        self.assertEqual(status_codes(stanzas[1]), ["104"])
        x = list(stanzas[1].elements())
        self.assertEqual(len(x), 1)

    def test_strict_order_of_the_seed_minus_104(self):
        """Every stanza is listed by the script except the first 104."""
        text = SCENARIO.read_text()
        marker = "# Juliet connects, and tries to join the room (password-protected)"
        addition = (
            "Romeo receives:\n"
            "\t<message type='groupchat' from='room@conference.localhost'>\n"
            "\t\t<x xmlns='http://jabber.org/protocol/muc#user'><status code='104'/></x>\n"
            "\t</message>\n\n"
        )
        harness, passed_over, leftovers = self.replay(text.replace(marker, addition + marker))
        self.assertEqual(passed_over, [])
        self.assertEqual(leftovers, [])
        for full in ("user@localhost/res0", "user2@localhost/res1"):
            self.assertEqual(harness.take(full), [])
