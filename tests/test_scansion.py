"""Tests for the scansion runner: parser, matcher, client and runner."""

from __future__ import annotations

import os
import sys
import tempfile
import textwrap
from pathlib import Path

from twisted.internet import defer, reactor, task
from twisted.trial import unittest
from twisted.words.xish import domish

from tests.scansion_fakes import FakeServer, SilentServer, is_server_ping, route_or_echo
from tests.support import process_output
from xmppd.testing.scansion import (
    MatchResult,
    match_stanza,
    parse_script,
    parse_xml_block,
    run_script,
)
from xmppd.testing.scansion.__main__ import build_parser, format_result
from xmppd.testing.scansion.parser import (
    CONNECT,
    DISCONNECT,
    RECEIVE,
    RECEIVE_NOTHING,
    SEND,
    ScriptError,
    expand_variables,
)
from xmppd.testing.scansion.runner import PassedOver, ScriptResult, Unconsumed

REPO = Path(__file__).resolve().parent.parent
SEED = REPO / "tests" / "scenarios" / "muc_password.scs"
NS = "xmlns:scansion='https://matthewwild.co.uk/projects/scansion'"

HEADER = """\
# Runner self-test

[Client] Romeo
\tjid: user@localhost
\tpassword: password

[Client] Juliet
\tjid: user2@localhost/balcony
\tpassword: password

-----

"""

SELF_PRESENCE = """
<presence from='room@conference.localhost/Romeo'>
  <x xmlns='http://jabber.org/protocol/muc#user'>
    <status code='201'/>
    <item jid='user@localhost/r1' affiliation='owner' role='moderator'/>
    <status code='110'/>
  </x>
</presence>
"""


def xml(text: str) -> domish.Element:
    """Parse one element written in the script's XML dialect."""
    return parse_xml_block(textwrap.dedent(text).strip())[0]


def script(body: str) -> str:
    """A script with the standard header and the given (dedented) body."""
    return HEADER + textwrap.dedent(body).lstrip("\n").replace("    ", "\t")


class ParserTests(unittest.TestCase):
    """Scripts become clients and steps; bad scripts name the line."""

    def test_seed_script(self) -> None:
        """The acceptance script parses into its two clients and 25 steps."""
        parsed = parse_script(SEED.read_text(encoding="utf-8"))
        self.assertEqual(parsed.title, "MUC: Password-protected rooms")
        self.assertEqual(
            [(c.name, c.jid, c.password, c.resource) for c in parsed.clients],
            [
                ("Romeo", "user@localhost", "password", None),
                ("Juliet", "user2@localhost", "password", None),
            ],
        )
        self.assertEqual(parsed.clients[0].username, "user")
        self.assertEqual(parsed.clients[0].domain, "localhost")
        self.assertEqual(len(parsed.steps), 25)
        actions = [step.action for step in parsed.steps]
        self.assertEqual(actions.count(CONNECT), 2)
        self.assertEqual(actions.count(SEND), 7)
        self.assertEqual(actions.count(RECEIVE), 16)
        first = parsed.steps[0]
        self.assertEqual((first.line, first.client, first.action), (13, "Romeo", CONNECT))
        self.assertEqual(parsed.steps[2].line, 20)
        self.assertEqual(parsed.steps[2].elements[0].name, "presence")
        self.assertIn("${Romeo's full JID}", parsed.steps[2].xml)

    def test_resource_from_jid_and_key(self) -> None:
        """A resource in the jid or a resource: key is kept apart from the bare JID."""
        parsed = parse_script(
            "# t\n[Client] A\n\tjid: a@localhost/one\n\tpassword: p\n"
            "[Client] B\n\tjid: b@localhost\n\tpassword: q\n\tresource: two\n---\n"
        )
        self.assertEqual(parsed.client("A").jid, "a@localhost")
        self.assertEqual(parsed.client("A").resource, "one")
        self.assertEqual(parsed.client("B").resource, "two")
        self.assertEqual(parsed.steps, [])

    def test_actions(self) -> None:
        """Every action form, including a receives without colon and comments."""
        parsed = parse_script(
            script(
                """
                # a comment
                Romeo connects
                Romeo sends:
                    <message to='x@localhost'/>
                Romeo receives
                    <message from='x@localhost'/>
                Romeo receives: nothing
                Romeo receives nothing
                Romeo disconnects
                """
            )
        )
        self.assertEqual(
            [s.action for s in parsed.steps],
            [CONNECT, SEND, RECEIVE, RECEIVE_NOTHING, RECEIVE_NOTHING, DISCONNECT],
        )
        self.assertEqual(parsed.steps[2].elements[0]["from"], "x@localhost")
        self.assertEqual(parsed.steps[1].line, 15)

    def test_xml_in_default_namespace(self) -> None:
        """XML blocks are in jabber:client; whitespace-only text is dropped."""
        element = xml("<iq type='get'>\n  <query xmlns='urn:x'/>\n</iq>")
        self.assertEqual(element.uri, "jabber:client")
        self.assertEqual(element.children[0].uri, "urn:x")
        self.assertEqual(len(element.children), 1)

    def test_unknown_client(self) -> None:
        """A step for an undeclared client names its line."""
        error = self.assertRaises(ScriptError, parse_script, script("Mercutio connects\n"))
        self.assertEqual(error.line, 13)

    def test_bad_xml(self) -> None:
        """Malformed XML names the step's line."""
        error = self.assertRaises(
            ScriptError, parse_script, script("Romeo connects\nRomeo sends:\n    <message>\n")
        )
        self.assertEqual(error.line, 14)
        self.assertIn("invalid XML", str(error))

    def test_missing_block(self) -> None:
        """A sends without XML is an error."""
        error = self.assertRaises(ScriptError, parse_script, script("Romeo sends:\n"))
        self.assertEqual(error.line, 13)

    def test_unknown_action(self) -> None:
        """An unknown verb is an error."""
        error = self.assertRaises(ScriptError, parse_script, script("Romeo dances\n"))
        self.assertIn("unknown action", str(error))

    def test_missing_dashes(self) -> None:
        """The header must be ended by dashes."""
        self.assertRaises(
            ScriptError, parse_script, "# t\n[Client] A\n\tjid: a@localhost\n\tpassword: p\n"
        )

    def test_expand_variables(self) -> None:
        """${...} is replaced in attributes and text; unknown names fail."""
        element = xml(
            f"<message {NS} to=\"${{Romeo's JID}}\" scansion:strict='false'>"
            "<body>hi ${x}</body></message>"
        )
        expanded = expand_variables(
            element, {"Romeo's JID": "user@localhost", "x": "there"}, strip_scansion=True
        )
        self.assertEqual(expanded["to"], "user@localhost")
        self.assertEqual(str(expanded.body), "hi there")
        self.assertEqual(list(expanded.attributes), ["to"])
        error = self.assertRaises(ScriptError, expand_variables, element, {})
        self.assertIn("${Romeo's JID}", str(error))


class MatcherFailureTests(unittest.TestCase):
    """The matcher rejects what it must reject."""

    def assertNoMatch(self, expected: str, received: str, reason: str, **kw) -> None:  # noqa: N802
        """Assert that ``received`` does not match and the reason says ``reason``."""
        result = match_stanza(xml(expected), xml(received), **kw)
        self.assertFalse(result.matched, "unexpectedly matched")
        self.assertIn(reason, result.reason)

    def test_missing_attribute(self) -> None:
        """An expected attribute absent from the stanza."""
        self.assertNoMatch(
            "<message type='chat' from='a@b'/>", "<message from='a@b'/>", "missing attribute type"
        )

    def test_wrong_attribute_value(self) -> None:
        """An attribute with another value."""
        self.assertNoMatch(
            "<message type='chat'/>", "<message type='groupchat'/>", "expected 'chat'"
        )

    def test_wrong_stanza_name(self) -> None:
        """A presence is not a message."""
        self.assertNoMatch("<message/>", "<presence/>", "expected element <message>")

    def test_missing_child(self) -> None:
        """An expected child that is not there (non-strict parent)."""
        self.assertNoMatch(
            "<message><subject/></message>",
            "<message><body>x</body></message>",
            "no received child matches",
        )

    def test_missing_child_strict(self) -> None:
        """A strict payload lacking one of its children."""
        self.assertNoMatch(
            "<presence><x xmlns='urn:x'><a/><b/></x></presence>",
            "<presence><x xmlns='urn:x'><a/></x></presence>",
            "missing child",
        )

    def test_extra_child_strict(self) -> None:
        """A strict payload with one child too many."""
        self.assertNoMatch(
            "<presence><x xmlns='urn:x'><a/></x></presence>",
            "<presence><x xmlns='urn:x'><a/><b/></x></presence>",
            "unexpected child",
        )

    def test_wrong_order_strict(self) -> None:
        """The seed's self-presence with its children in another order."""
        received = SELF_PRESENCE.replace(
            "<status code='201'/>\n    <item jid='user@localhost/r1' affiliation='owner' "
            "role='moderator'/>",
            "<item jid='user@localhost/r1' affiliation='owner' role='moderator'/>\n"
            "    <status code='201'/>",
        )
        self.assertNotEqual(received, SELF_PRESENCE)
        self.assertNoMatch(SELF_PRESENCE, received, "expected element <status[")

    def test_extra_attribute_strict(self) -> None:
        """A strict element with an attribute the script does not list."""
        received = SELF_PRESENCE.replace("role='moderator'", "role='moderator' nick='R'")
        self.assertNoMatch(SELF_PRESENCE, received, "unexpected attribute(s) nick='R'")

    def test_strict_inherited_by_children(self) -> None:
        """Children in a strict namespace are strict too."""
        self.assertNoMatch(
            "<iq><query xmlns='urn:q'><item a='1'/></query></iq>",
            "<iq><query xmlns='urn:q'><item a='1' b='2'/></query></iq>",
            "unexpected attribute(s) b='2'",
        )

    def test_text_differs(self) -> None:
        """Expected text must be equal."""
        self.assertNoMatch(
            "<message><body>hello</body></message>",
            "<message><body>bye</body></message>",
            "expected text 'hello'",
        )

    def test_unexpected_text_strict(self) -> None:
        """A strict empty element must have no text."""
        self.assertNoMatch(
            "<iq><q xmlns='urn:q'/></iq>", "<iq><q xmlns='urn:q'>x</q></iq>", "unexpected text"
        )

    def test_id_compared_when_expected(self) -> None:
        """An expected id must be equal."""
        self.assertNoMatch("<iq id='a'/>", "<iq id='b'/>", "attribute id")

    def test_capture_that_changes(self) -> None:
        """A capture of a known variable must equal the earlier value."""
        self.assertNoMatch(
            "<message id='{scansion:capture:mid}'/>",
            "<message id='m2'/>",
            "capture 'mid' changed from 'm1' to 'm2'",
            variables={"mid": "m1"},
        )

    def test_capture_changes_within_stanza(self) -> None:
        """Two captures of one name in one stanza must agree."""
        self.assertNoMatch(
            "<message id='{scansion:capture:v}'><thread>x</thread>"
            "<x xmlns='urn:x' a='{scansion:capture:v}'/></message>",
            "<message id='1'><thread>x</thread><x xmlns='urn:x' a='2'/></message>",
            "capture 'v' changed",
        )


class MatcherSuccessTests(unittest.TestCase):
    """The matcher accepts what it must accept."""

    def assertMatch(self, expected: str, received: str, **kw) -> MatchResult:  # noqa: N802
        """Assert that ``received`` matches ``expected``; return the result."""
        result = match_stanza(xml(expected), xml(received), **kw)
        self.assertTrue(result.matched, result.reason)
        return result

    def test_seed_self_presence(self) -> None:
        """The seed's strict payload matches exactly itself, with extra stanza attributes."""
        received = SELF_PRESENCE.replace(
            "<presence ", "<presence to='user@localhost/r1' id='x1' xml:lang='en' "
        )
        self.assertMatch(SELF_PRESENCE, received)

    def test_non_strict_extras_ignored(self) -> None:
        """Extra attributes and children of jabber:client elements are ignored."""
        self.assertMatch(
            "<message type='groupchat' from='room@c'><subject/></message>",
            "<message type='groupchat' from='room@c' to='u@l/r' xml:lang='en'>"
            "<delay xmlns='urn:xmpp:delay' stamp='x'/><subject>Topic</subject>"
            "<body>b</body></message>",
        )

    def test_non_strict_order_ignored(self) -> None:
        """Children of a non-strict element may come in any order."""
        self.assertMatch(
            "<message><body>b</body><subject>s</subject></message>",
            "<message><subject>s</subject><body>b</body></message>",
        )

    def test_non_strict_backtracking(self) -> None:
        """An unspecific expected child does not steal the one a later child needs."""
        self.assertMatch(
            "<presence><error/><error type='auth'/></presence>",
            "<presence><error type='auth'/><error type='cancel'/></presence>",
        )

    def test_strict_false(self) -> None:
        """scansion:strict='false' relaxes a namespaced payload."""
        self.assertMatch(
            f"<presence><x xmlns='http://jabber.org/protocol/muc#user' {NS} "
            "scansion:strict='false'><status code='110'/></x></presence>",
            SELF_PRESENCE,
        )

    def test_strict_true_on_client_element(self) -> None:
        """scansion:strict='true' makes a jabber:client element strict."""
        result = match_stanza(
            xml(f"<message {NS} scansion:strict='true' type='chat'/>"),
            xml("<message type='chat' to='a@b'/>"),
        )
        self.assertFalse(result.matched)
        self.assertIn("unexpected attribute(s) to=", result.reason)

    def test_any(self) -> None:
        """{scansion:any} requires presence only."""
        self.assertMatch(
            "<iq id='{scansion:any}'><q xmlns='urn:q' v='{scansion:any}'/></iq>",
            "<iq id='abc'><q xmlns='urn:q' v='anything'/></iq>",
        )
        result = match_stanza(xml("<iq id='{scansion:any}'/>"), xml("<iq/>"))
        self.assertFalse(result.matched)

    def test_capture(self) -> None:
        """A first capture records the value; the same value matches again."""
        result = self.assertMatch("<message id='{scansion:capture:mid}'/>", "<message id='m1'/>")
        self.assertEqual(result.captures, {"mid": "m1"})
        self.assertMatch(
            "<message id='{scansion:capture:mid}'/>",
            "<message id='m1'/>",
            variables={"mid": "m1"},
        )

    def test_failed_match_captures_nothing(self) -> None:
        """Captures of a stanza that does not match are dropped."""
        result = match_stanza(
            xml("<message id='{scansion:capture:mid}' type='chat'/>"), xml("<message id='1'/>")
        )
        self.assertFalse(result.matched)
        self.assertEqual(result.captures, {})

    def test_id_ignored_when_not_expected(self) -> None:
        """An id-less expectation matches a stanza with an id, even when strict."""
        self.assertMatch("<iq type='result'/>", "<iq type='result' id='config1'/>")
        self.assertMatch(
            f"<iq {NS} scansion:strict='true' type='result'/>",
            "<iq type='result' id='config1'/>",
        )

    def test_empty_expected_text_accepts_text(self) -> None:
        """<subject/> matches a subject with text (non-strict)."""
        self.assertMatch("<message><subject/></message>", "<message><subject>T</subject></message>")

    def test_error_stanza(self) -> None:
        """The seed's error presence, received with an extra <text/>."""
        self.assertMatch(
            """<presence from="room@c/J" type="error">
                 <error type="auth" code="401" by="room@c">
                   <not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
                 </error>
               </presence>""",
            """<presence from="room@c/J" type="error" to="u@l/r">
                 <x xmlns='http://jabber.org/protocol/muc'/>
                 <error type="auth" code="401" by="room@c">
                   <not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
                   <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>No</text>
                 </error>
               </presence>""",
        )


class RunnerEndToEndTests(unittest.TestCase):
    """The runner against the fake server over loopback."""

    timeout = 30

    def start_server(self, **kw) -> FakeServer:
        """Start a fake server for this test; it is stopped at clean-up."""
        server = FakeServer(**kw)
        server.start(reactor)
        self.addCleanup(server.stop)
        return server

    def play(self, server: FakeServer, body: str, **kw) -> defer.Deferred:
        """Run a script body (standard header added) with short timeouts."""
        kw.setdefault("timeout", 2.0)
        kw.setdefault("quiet_period", 0.2)
        return run_script(script(body), "127.0.0.1", server.port, **kw)

    async def assert_closed(self, server: FakeServer) -> None:
        """No connection is left open on the server side."""
        for _ in range(20):
            if not server.connections:
                return
            await task.deferLater(reactor, 0.01, lambda: None)
        self.fail(f"{len(server.connections)} connection(s) left open")

    CHAT = """
        Romeo connects

        Juliet connects

        # Romeo greets Juliet
        Romeo sends:
            <message type='chat' to="${Juliet's full JID}">
                <body>Hello</body>
            </message>

        Juliet receives:
            <message type='chat' from="${Romeo's full JID}" to="${Juliet's JID}/balcony">
                <body>Hello</body>
            </message>

        Juliet receives: nothing

        Romeo sends:
            <iq type='get' id='q1' to='echo@localhost'>
                <query xmlns='jabber:iq:version'/>
            </iq>

        Romeo receives:
            <iq type='get' from='echo@localhost' id='{scansion:capture:qid}'>
                <query xmlns='jabber:iq:version'/>
            </iq>

        Romeo sends:
            <message to='echo@localhost' id='${qid}'><body>again</body></message>

        Romeo receives
            <message from='echo@localhost' id='q1'><body>again</body></message>

        Juliet disconnects

        Romeo disconnects
        """

    async def test_passes(self) -> None:
        """A correct script passes; variables and captures work; all is closed."""
        server = self.start_server()
        result = await self.play(server, self.CHAT)
        self.assertTrue(result.passed, result.failure_message)
        self.assertEqual(result.passed_over, [])
        self.assertEqual(result.name, "Runner self-test")
        self.assertEqual(server.used_mechanisms, ["PLAIN", "PLAIN"])
        await self.assert_closed(server)

    async def test_failure_names_line(self) -> None:
        """A wrong expectation fails with the line, the expected and received XML."""
        server = self.start_server()
        result = await self.play(
            server,
            """
            Romeo connects
            Romeo sends:
                <message to='echo@localhost'><body>one</body></message>
            Romeo receives:
                <message from='echo@localhost'><body>two</body></message>
            Romeo sends:
                <message to='echo@localhost'/>
            """,
            timeout=0.5,
        )
        self.assertFalse(result.passed)
        self.assertEqual(result.failed_line, 16)
        message = result.failure_message
        self.assertTrue(
            message.startswith("script:16: Romeo receives: no matching stanza"), message
        )
        self.assertIn("<body>two</body>", message)
        self.assertIn("<body>one</body>", message)
        self.assertIn("expected text 'two', got 'one'", message)
        self.assertEqual(len(result.passed_over), 1)
        await self.assert_closed(server)

    async def test_timeout(self) -> None:
        """Nothing at all arrives: the step fails after the timeout."""
        server = self.start_server()
        start = reactor.seconds()
        result = await self.play(
            server, "Romeo connects\nRomeo receives:\n    <message/>\n", timeout=0.3
        )
        self.assertFalse(result.passed)
        self.assertIn(
            "script:14: Romeo receives: no matching stanza within 0.3 s", result.failure_message
        )
        self.assertIn("received: nothing", result.failure_message)
        self.assertLess(reactor.seconds() - start, 2.0)

    PASSED_OVER = """
        Romeo connects
        Romeo sends:
            <message to='echo@localhost'><body>first</body></message>
        Romeo sends:
            <message to='echo@localhost'><body>second</body></message>
        Romeo receives:
            <message from='echo@localhost'><body>second</body></message>
        """

    async def test_passed_over_tolerated(self) -> None:
        """Without --strict-order a non-matching stanza is passed over and reported."""
        server = self.start_server()
        result = await self.play(server, self.PASSED_OVER)
        self.assertTrue(result.passed, result.failure_message)
        self.assertEqual(len(result.passed_over), 1)
        self.assertIsInstance(result.passed_over[0], PassedOver)
        self.assertEqual(result.passed_over[0].line, 18)
        self.assertIn("first", result.passed_over[0].stanza)

    async def test_passed_over_strict_order(self) -> None:
        """With --strict-order a passed-over stanza fails the step."""
        server = self.start_server()
        result = await self.play(server, self.PASSED_OVER, strict_order=True)
        self.assertFalse(result.passed)
        self.assertIn("script:18:", result.failure_message)
        self.assertIn("--strict-order", result.failure_message)
        self.assertIn("first", result.failure_message)

    def start_recording_server(self, *, answer_pings: bool = True) -> tuple[FakeServer, list]:
        """A fake server that records the ids of the pings it gets (and may ignore them)."""
        pings: list[str] = []

        def responder(server, session, stanza) -> None:
            if is_server_ping(server, stanza):
                pings.append(stanza["id"])
                if not answer_pings:
                    return
            route_or_echo(server, session, stanza)

        return self.start_server(responder=responder), pings

    LEFTOVER_BEFORE_DISCONNECT = """
        Romeo connects
        Romeo sends:
            <message to='echo@localhost'><body>twice</body></message>
        Romeo receives:
            <message from='echo@localhost'><body>twice</body></message>
        Romeo disconnects
        """

    async def test_leftover_before_disconnect_strict(self) -> None:
        """Strict order: a stanza no step consumed fails the disconnects step, naming it."""
        server = self.start_server()
        result = await self.play(server, self.LEFTOVER_BEFORE_DISCONNECT, strict_order=True)
        self.assertFalse(result.passed)
        self.assertEqual(result.failed_line, 18)
        message = result.failure_message
        self.assertTrue(
            message.startswith(
                "script:18: Romeo disconnects: Romeo received 1 stanza(s) that no step "
                "consumed (--strict-order)\n"
            ),
            message,
        )
        self.assertIn("<body>twice</body>", message)
        self.assertEqual(len(result.unconsumed), 1)
        self.assertIsInstance(result.unconsumed[0], Unconsumed)
        self.assertEqual((result.unconsumed[0].line, result.unconsumed[0].client), (18, "Romeo"))
        self.assertEqual(result.passed_over, [])
        await self.assert_closed(server)

    async def test_leftover_before_disconnect_lenient(self) -> None:
        """Lenient order: the same script passes, and no settling ping is sent."""
        server, pings = self.start_recording_server()
        result = await self.play(server, self.LEFTOVER_BEFORE_DISCONNECT)
        self.assertTrue(result.passed, result.failure_message)
        self.assertEqual(result.unconsumed, [])
        self.assertEqual(pings, [])
        await self.assert_closed(server)

    async def test_leftover_at_end_strict(self) -> None:
        """Strict order: stanzas still unconsumed at the end fail, listed per client.

        Juliet's message is sent by the script's last step: only the settling
        round trip makes sure it has arrived when the queues are checked.
        """
        server = self.start_server()
        result = await self.play(
            server,
            """
            Romeo connects
            Juliet connects
            Romeo sends:
                <message to='echo@localhost'><body>twice</body></message>
            Romeo receives:
                <message from='echo@localhost'><body>twice</body></message>
            Romeo sends:
                <message type='chat' to="${Juliet's full JID}"><body>Hello</body></message>
            """,
            strict_order=True,
        )
        self.assertFalse(result.passed)
        self.assertIsNone(result.failed_line)
        message = result.failure_message
        self.assertTrue(
            message.startswith(
                "script: end of script: stanza(s) that no step consumed (--strict-order)\n"
                "  Romeo (after line 19) received 1 stanza(s):\n"
            ),
            message,
        )
        self.assertIn("  Juliet (after line 14) received 1 stanza(s):\n", message)
        self.assertIn("<body>twice</body>", message)
        self.assertIn("<body>Hello</body>", message)
        self.assertEqual(
            [(u.line, u.client) for u in result.unconsumed], [(None, "Romeo"), (None, "Juliet")]
        )
        await self.assert_closed(server)

    async def test_leftover_of_connection_closed_by_server(self) -> None:
        """Strict order: stanzas received before the server closed the stream count too."""
        server = self.start_server()
        result = await self.play(
            server,
            """
            Romeo connects
            Romeo sends:
                <message to='echo@localhost'><body>one</body></message>
            Romeo sends:
                <message to='drop@localhost'/>
            """,
            strict_order=True,
        )
        self.assertFalse(result.passed)
        self.assertIn("Romeo (after line 16) received 1 stanza(s)", result.failure_message)
        self.assertIn("<body>one</body>", result.failure_message)

    async def test_strict_consumed_everything_passes(self) -> None:
        """Strict order: a script that consumes every stanza passes.

        The settling pings were sent and answered, and their answers are never
        reported: two rounds for Juliet's disconnects (both connected), one for
        Romeo's (alone), none at the end (nobody left).
        """
        server, pings = self.start_recording_server()
        result = await self.play(server, self.CHAT, strict_order=True)
        self.assertTrue(result.passed, result.failure_message)
        self.assertEqual(result.unconsumed, [])
        self.assertEqual(result.passed_over, [])
        self.assertEqual(len(pings), 4)
        self.assertTrue(all(ping.startswith("scansion-settle-") for ping in pings), pings)
        await self.assert_closed(server)

    async def test_strict_end_of_script_answers_not_reported(self) -> None:
        """At the end, both connected clients settle in two rounds; nothing is left over."""
        server, pings = self.start_recording_server()
        body = self.CHAT.replace("Juliet disconnects", "").replace("Romeo disconnects", "")
        result = await self.play(server, body, strict_order=True)
        self.assertTrue(result.passed, result.failure_message)
        self.assertEqual(result.unconsumed, [])
        self.assertEqual(len(pings), 4)
        self.assertIn("    settled (2 ping round(s))", result.log)
        await self.assert_closed(server)

    async def test_settle_ping_not_answered(self) -> None:
        """Strict order: a server that ignores the settling ping fails the step."""
        server, pings = self.start_recording_server(answer_pings=False)
        result = await self.play(
            server, "Romeo connects\nRomeo disconnects\n", strict_order=True, timeout=0.3
        )
        self.assertFalse(result.passed)
        self.assertEqual(
            result.failure_message,
            "script:14: Romeo disconnects: the server did not answer Romeo's settling ping "
            "(XEP-0199) within 0.3 s",
        )
        self.assertEqual(len(pings), 1)
        await self.assert_closed(server)

    async def test_nothing_fails_on_stanza(self) -> None:
        """receives: nothing fails when a stanza arrives."""
        server = self.start_server()
        result = await self.play(
            server,
            """
            Romeo connects
            Romeo sends:
                <message to='echo@localhost'><body>twice</body></message>
            Romeo receives:
                <message from='echo@localhost'/>
            Romeo receives: nothing
            """,
        )
        self.assertFalse(result.passed)
        self.assertIn("script:18: Romeo receives nothing: expected nothing", result.failure_message)
        self.assertIn("twice", result.failure_message)

    async def test_capture_changes(self) -> None:
        """A capture that changes between steps fails."""
        server = self.start_server()
        result = await self.play(
            server,
            """
            Romeo connects
            Romeo sends:
                <message to='echo@localhost' id='a1'/>
            Romeo receives:
                <message id='{scansion:capture:mid}'/>
            Romeo sends:
                <message to='echo@localhost' id='a2'/>
            Romeo receives:
                <message id='{scansion:capture:mid}'/>
            """,
            timeout=0.3,
        )
        self.assertFalse(result.passed)
        self.assertIn("script:20:", result.failure_message)
        self.assertIn("capture 'mid' changed from 'a1' to 'a2'", result.failure_message)

    async def test_tls_and_scram(self) -> None:
        """STARTTLS with a self-signed certificate, then each SCRAM variant."""
        for mechanisms, used in (
            (("PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"), "SCRAM-SHA-256"),
            (("PLAIN", "SCRAM-SHA-1"), "SCRAM-SHA-1"),
        ):
            server = self.start_server(tls=True, mechanisms=mechanisms)
            result = await self.play(
                server,
                """
                Romeo connects
                Romeo sends:
                    <presence to='echo@localhost'/>
                Romeo receives:
                    <presence from='echo@localhost' to="${Romeo's full JID}"/>
                Romeo disconnects
                """,
            )
            self.assertTrue(result.passed, result.failure_message)
            self.assertEqual(server.used_mechanisms, [used])
            await self.assert_closed(server)

    async def test_wrong_password(self) -> None:
        """Failed authentication fails the connects step."""
        server = self.start_server(mechanisms=("SCRAM-SHA-256",))
        server.accounts["user"] = "other"
        result = await self.play(server, "Romeo connects\n")
        self.assertFalse(result.passed)
        self.assertIn("script:13: Romeo connects: could not connect", result.failure_message)
        self.assertIn("not-authorized", result.failure_message)
        await self.assert_closed(server)

    async def test_connection_refused(self) -> None:
        """Nobody listening: the connects step fails quickly."""
        server = self.start_server()
        port = server.port
        await server.stop()
        result = await run_script(script("Romeo connects\n"), "127.0.0.1", port, timeout=1.0)
        self.assertFalse(result.passed)
        self.assertIn("could not connect", result.failure_message)

    async def test_connect_timeout(self) -> None:
        """A server that never answers the stream header fails the connects step."""
        server = SilentServer()
        server.start(reactor)
        self.addCleanup(server.stop)
        result = await run_script(script("Romeo connects\n"), "127.0.0.1", server.port, timeout=0.3)
        self.assertFalse(result.passed)
        self.assertIn(
            "script:13: Romeo connects: could not connect: connection not established within 0.3 s",
            result.failure_message,
        )

    async def test_server_closes(self) -> None:
        """A receives step ends early when the server closes the connection."""
        server = self.start_server()
        start = reactor.seconds()
        result = await self.play(
            server,
            "Romeo connects\nRomeo sends:\n    <message to='drop@localhost'/>\n"
            "Romeo receives:\n    <message/>\nRomeo sends:\n    <message/>\n",
            timeout=5.0,
        )
        self.assertFalse(result.passed)
        self.assertIn(
            "script:16: Romeo receives: no matching stanza before the connection closed",
            result.failure_message,
        )
        self.assertLess(reactor.seconds() - start, 2.0)
        await self.assert_closed(server)

    async def test_disconnect_not_answered(self) -> None:
        """A server that never closes the stream fails the disconnects step."""
        server = self.start_server(close_on_footer=False)
        result = await self.play(server, "Romeo connects\nRomeo disconnects\n", timeout=0.3)
        self.assertFalse(result.passed)
        self.assertIn(
            "script:14: Romeo disconnects: the server did not close", result.failure_message
        )
        await self.assert_closed(server)

    async def test_unknown_variable(self) -> None:
        """A variable of a client that has not connected fails the step."""
        server = self.start_server()
        result = await self.play(
            server, 'Romeo connects\nRomeo sends:\n    <message to="${Juliet\'s full JID}"/>\n'
        )
        self.assertFalse(result.passed)
        self.assertIn(
            "script:14: Romeo sends: unknown variable ${Juliet's full JID}", result.failure_message
        )

    async def test_parse_error_result(self) -> None:
        """A script that does not parse gives a failed result naming the line."""
        result = await run_script(script("Romeo sings\n"), "127.0.0.1", 1)
        self.assertFalse(result.passed)
        self.assertIn("script:13: unknown action", result.failure_message)

    async def test_path_and_cli(self) -> None:
        """The command line runs files, prints PASS/FAIL and a summary, exits 1 on failure."""
        server = self.start_server()
        directory = Path(tempfile.mkdtemp())
        self.addCleanup(lambda: [p.unlink() for p in directory.iterdir()] and directory.rmdir())
        good = directory / "good.scs"
        good.write_text(script(self.PASSED_OVER), encoding="utf-8")
        bad = directory / "bad.scs"
        bad.write_text(
            script("Romeo connects\nRomeo receives:\n    <message/>\n"), encoding="utf-8"
        )
        result = await run_script(good, "127.0.0.1", server.port, timeout=2.0)
        self.assertTrue(result.passed, result.failure_message)
        self.assertEqual(result.name, "good")

        argv = [
            "-m",
            "xmppd.testing.scansion",
            "--host",
            "127.0.0.1",
            "--port",
            str(server.port),
            "--timeout",
            "0.5",
        ]
        out, err, code = await process_output(
            sys.executable, [*argv, str(good)], env=dict(os.environ), path=str(REPO)
        )
        self.assertEqual(code, 0, err)
        self.assertIn(b"PASS good", out)
        self.assertIn(b"1 passed, 0 failed", out)

        out, err, code = await process_output(
            sys.executable,
            [*argv, "--verbose", "--strict-order", str(good), str(bad)],
            env=dict(os.environ),
            path=str(REPO),
        )
        self.assertEqual(code, 1, err)
        self.assertIn(b"FAIL good: good.scs:18:", out)
        self.assertIn(b"FAIL bad: bad.scs:14: Romeo receives", out)
        self.assertIn(b"0 passed, 2 failed", out)
        self.assertIn(b"line 13: Romeo connects", out)


class CommandLineTests(unittest.TestCase):
    """Argument parsing and report formatting."""

    def test_arguments(self) -> None:
        """Every documented option is accepted."""
        args = build_parser().parse_args(
            [
                "--host",
                "h",
                "--port",
                "5",
                "--strict-order",
                "--timeout",
                "1.5",
                "--verbose",
                "a.scs",
                "b.scs",
            ]
        )
        self.assertEqual((args.host, args.port, args.timeout), ("h", 5, 1.5))
        self.assertTrue(args.strict_order and args.verbose)
        self.assertEqual(args.scripts, ["a.scs", "b.scs"])

    def test_format(self) -> None:
        """PASS name / FAIL name: reason."""
        self.assertEqual(format_result(ScriptResult("x", passed=True)), "PASS x")
        self.assertEqual(
            format_result(ScriptResult("x", failure_message="x.scs:3: boom")),
            "FAIL x: x.scs:3: boom",
        )
