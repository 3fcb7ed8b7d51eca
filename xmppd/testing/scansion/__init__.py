"""Scansion-style end-to-end scenario runner for xmppd.

Scripts (``tests/scenarios/*.scs``) declare client accounts and a sequence of
connect/send/receive/disconnect steps; :func:`run_script` plays them against a
live server and reports the first step that did not behave as written.

Command line: ``python -m xmppd.testing.scansion --host H --port P script.scs ...``.
"""

from xmppd.testing.scansion.matcher import MatchResult, match_stanza
from xmppd.testing.scansion.parser import (
    ClientAccount,
    Script,
    ScriptError,
    Step,
    parse_script,
    parse_xml_block,
)
from xmppd.testing.scansion.runner import PassedOver, ScriptResult, Unconsumed, run_script

__all__ = [
    "ClientAccount",
    "MatchResult",
    "PassedOver",
    "Script",
    "ScriptError",
    "ScriptResult",
    "Step",
    "Unconsumed",
    "match_stanza",
    "parse_script",
    "parse_xml_block",
    "run_script",
]
