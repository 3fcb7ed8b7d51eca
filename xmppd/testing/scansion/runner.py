"""Execute a parsed scansion script against a live server.

Use :func:`run_script` from trial or any Twisted code; it returns a Deferred
that fires with a :class:`ScriptResult` (it never errbacks for a failing
script) and always closes every client connection before firing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from twisted.internet import defer
from twisted.words.xish import domish

from xmppd.logs import logger
from xmppd.testing.scansion.client import ConnectError, ScansionClient
from xmppd.testing.scansion.matcher import describe, match_stanza
from xmppd.testing.scansion.parser import (
    CONNECT,
    DISCONNECT,
    RECEIVE,
    RECEIVE_NOTHING,
    SEND,
    Script,
    ScriptError,
    Step,
    expand_variables,
    parse_script,
)

DEFAULT_TIMEOUT = 5.0
DEFAULT_QUIET_PERIOD = 0.5
CLEANUP_TIMEOUT = 2.0

log = logger(__name__)


@dataclass
class PassedOver:
    """A received stanza that a ``receives`` step skipped because it did not match."""

    line: int
    client: str
    stanza: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.client} passed over {self.stanza}\n    ({self.reason})"


@dataclass
class ScriptResult:
    """The outcome of one script run."""

    name: str
    passed: bool = False
    failure_message: str = ""
    failed_line: int | None = None
    passed_over: list[PassedOver] = field(default_factory=list)
    log: list[str] = field(default_factory=list)


class StepFailed(Exception):
    """A step did not do what the script expected."""


def load_script(path_or_text: str | os.PathLike[str]) -> tuple[str, str, str]:
    """Return ``(name, source label, text)`` for a path or a script text.

    A string containing a newline is taken as the script text itself.
    """
    if isinstance(path_or_text, str) and "\n" in path_or_text:
        text = path_or_text
        title = next(
            (line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")),
            "",
        )
        return title or "script", "script", text
    path = Path(path_or_text)
    return path.stem, path.name, path.read_text(encoding="utf-8")


class ScriptRunner:
    """Runs the steps of one :class:`Script` against ``host:port``."""

    def __init__(
        self,
        script: Script,
        host: str,
        port: int,
        *,
        name: str = "script",
        source: str = "script",
        timeout: float = DEFAULT_TIMEOUT,
        strict_order: bool = False,
        quiet_period: float = DEFAULT_QUIET_PERIOD,
        reactor: object | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.script = script
        self.host = host
        self.port = port
        self.source = source
        self.timeout = timeout
        self.strict_order = strict_order
        self.quiet_period = quiet_period
        self.reactor = reactor
        self.result = ScriptResult(name=name)
        self.variables: dict[str, str] = {}
        self.clients: dict[str, ScansionClient] = {}
        for account in script.clients:
            self.variables[f"{account.name}'s JID"] = account.jid
            self.clients[account.name] = ScansionClient(account, reactor)

    async def run(self) -> ScriptResult:
        """Run all steps; stop at the first failure; always disconnect."""
        try:
            for step in self.script.steps:
                await self.run_step(step)
            self.result.passed = True
        except StepFailed as exc:
            self.result.passed = False
            self.result.failure_message = str(exc)
        except Exception as exc:  # noqa: BLE001 - report, never errback
            log.failure("scansion runner crashed")
            self.result.passed = False
            self.result.failure_message = f"{self.source}: runner error: {exc!r}"
        finally:
            await self.close_all()
        return self.result

    async def close_all(self) -> None:
        """Disconnect every client that is still connected."""
        closing = [
            client.disconnect(min(self.timeout, CLEANUP_TIMEOUT))
            for client in self.clients.values()
        ]
        await defer.gatherResults(closing, consumeErrors=True)

    def fail(self, step: Step, message: str) -> StepFailed:
        """Build the failure for ``step`` (script, line, action and message)."""
        self.result.failed_line = step.line
        return StepFailed(f"{self.source}:{step.line}: {step.describe()}: {message}")

    def note(self, text: str) -> None:
        """Add a line to the verbose log."""
        self.result.log.append(text)

    async def run_step(self, step: Step) -> None:
        """Dispatch one step."""
        client = self.clients[step.client]
        self.note(f"line {step.line}: {step.describe()}")
        if step.action == CONNECT:
            await self.do_connect(step, client)
        elif step.action == DISCONNECT:
            await self.do_disconnect(step, client)
        elif step.action == SEND:
            self.do_send(step, client)
        elif step.action == RECEIVE:
            for element in step.elements:
                await self.do_receive(step, client, element)
        elif step.action == RECEIVE_NOTHING:
            await self.do_receive_nothing(step, client)
        else:  # pragma: no cover - the parser produces no other action
            raise self.fail(step, f"unknown action {step.action!r}")

    async def do_connect(self, step: Step, client: ScansionClient) -> None:
        """Connect, authenticate and bind; define ``${Name's full JID}``."""
        try:
            full_jid = await client.connect(self.host, self.port, self.timeout)
        except ConnectError as exc:
            raise self.fail(step, f"could not connect: {exc}") from None
        self.variables[f"{step.client}'s full JID"] = full_jid.full()
        self.note(f"    bound as {full_jid.full()}")

    async def do_disconnect(self, step: Step, client: ScansionClient) -> None:
        """Close the stream and wait for the server to close it too."""
        if not client.connected:
            raise self.fail(step, "the client is not connected")
        closed = await client.disconnect(self.timeout)
        if not closed:
            raise self.fail(step, f"the server did not close the stream within {self.timeout:g} s")

    def expand(self, step: Step, element: domish.Element, *, outgoing: bool) -> domish.Element:
        """Expand the variables of an XML block, failing the step on error."""
        try:
            return expand_variables(element, self.variables, strip_scansion=outgoing)
        except ScriptError as exc:
            raise self.fail(step, exc.message) from None

    def do_send(self, step: Step, client: ScansionClient) -> None:
        """Send the stanzas of the block."""
        if not client.connected:
            raise self.fail(step, f"the client is not connected ({client.close_reason})")
        for element in step.elements:
            stanza = self.expand(step, element, outgoing=True)
            self.note(f"    sent {describe(stanza)}")
            client.send(stanza)

    async def do_receive(self, step: Step, client: ScansionClient, element: domish.Element) -> None:
        """Consume the client's queue until a stanza matches ``element``."""
        expected = self.expand(step, element, outgoing=False)
        deadline = self.reactor.seconds() + self.timeout
        skipped: list[PassedOver] = []
        while True:
            while client.queue:
                stanza = client.queue.popleft()
                result = match_stanza(expected, stanza, self.variables)
                if result:
                    self.variables.update(result.captures)
                    self.note(f"    matched {describe(stanza)}")
                    for name, value in result.captures.items():
                        self.note(f"    captured {name} = {value!r}")
                    return
                passed = PassedOver(step.line, step.client, describe(stanza), result.reason)
                skipped.append(passed)
                self.result.passed_over.append(passed)
                self.note(f"    passed over {passed.stanza}\n        ({passed.reason})")
                if self.strict_order:
                    raise self.fail(
                        step,
                        "received a stanza that does not match (--strict-order)\n"
                        + self.report(step, skipped),
                    )
            remaining = deadline - self.reactor.seconds()
            if remaining <= 0 or not client.connected:
                break
            arrived = await client.wait_for_stanza(remaining)
            if not arrived and not client.queue:
                break
        if client.connected:
            why = f"no matching stanza within {self.timeout:g} s"
        else:
            why = f"no matching stanza before the connection closed ({client.close_reason})"
        raise self.fail(step, why + "\n" + self.report(step, skipped))

    @staticmethod
    def report(step: Step, skipped: list[PassedOver]) -> str:
        """Describe the expectation and what was received instead."""
        lines = ["expected:", _indent(step.xml)]
        if skipped:
            lines.append("received (passed over):")
            for passed in skipped:
                lines.append(_indent(passed.stanza))
                lines.append(_indent(f"-> {passed.reason}", 6))
        else:
            lines.append("received: nothing")
        return "\n".join(lines)

    async def do_receive_nothing(self, step: Step, client: ScansionClient) -> None:
        """Fail if a stanza is queued or arrives within the quiet period."""
        if not client.queue and client.connected:
            await client.wait_for_stanza(self.quiet_period)
        if client.queue:
            stanza = describe(client.queue.popleft())
            raise self.fail(step, f"expected nothing, received:\n{_indent(stanza)}")
        self.note(f"    nothing within {self.quiet_period:g} s")


def _indent(text: str, width: int = 4) -> str:
    """Indent every line of ``text``."""
    pad = " " * width
    return "\n".join(pad + line for line in text.splitlines())


def run_script(
    path_or_text: str | os.PathLike[str],
    host: str,
    port: int,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    strict_order: bool = False,
    reactor: object | None = None,
    quiet_period: float = DEFAULT_QUIET_PERIOD,
    name: str | None = None,
) -> defer.Deferred:
    """Run a script (a path, or the script text itself) against ``host:port``.

    Returns a Deferred firing with a :class:`ScriptResult`; a script that
    cannot be read or parsed gives a failed result, not an errback.  Every
    client is disconnected before the Deferred fires.
    """
    try:
        default_name, source, text = load_script(path_or_text)
    except OSError as exc:
        label = name or str(path_or_text)
        return defer.succeed(
            ScriptResult(name=label, failure_message=f"{path_or_text}: cannot read: {exc}")
        )
    name = name or default_name
    try:
        script = parse_script(text)
    except ScriptError as exc:
        where = f"{source}:{exc.line}" if exc.line else source
        return defer.succeed(
            ScriptResult(name=name, failure_message=f"{where}: {exc.message}", failed_line=exc.line)
        )
    runner = ScriptRunner(
        script,
        host,
        port,
        name=name,
        source=source,
        timeout=timeout,
        strict_order=strict_order,
        quiet_period=quiet_period,
        reactor=reactor,
    )
    return defer.Deferred.fromCoroutine(runner.run())
