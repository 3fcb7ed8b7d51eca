"""Execute a parsed scansion script against a live server.

Use :func:`run_script` from trial or any Twisted code; it returns a Deferred
that fires with a :class:`ScriptResult` (it never errbacks for a failing
script) and always closes every client connection before firing.

Each client's received stanzas are consumed in arrival order by its
``receives`` steps.  In the default, lenient order a ``receives`` step passes
over (and reports) stanzas that do not match, and stanzas that no step
consumes are ignored.  With ``strict_order=True`` (the command line's
``--strict-order``) a script must list every stanza each client receives:

* a stanza that a ``receives`` step would pass over fails that step;
* at each ``Name disconnects`` step, before the stream is closed, and at the
  end of the script for every client still connected (or whose connection
  the server closed), stanzas that no step consumed fail the script; the
  failure names the client and lists them.

Before either check the runner *settles* instead of sleeping: every
connected client pings the server (XEP-0199, ``<iq type='get' to=DOMAIN
id='scansion-settle-N'>``) and waits for the answer, which proves that the
server has processed every stanza the clients sent before; then the checked
clients ping once more, so that their answer comes after whatever the server
sent them while processing those stanzas (one round is enough when a single
client is connected).  The answers to these pings are not queued and never
reported; everything that arrived before them is checked (and anything that
arrived after them too).  This relies on the server handling a client's
stanzas in order; a stanza it sends only later, from deferred work such as a
database query still running when the ping is answered, may come too late to
be checked.  A server that does not answer a settling ping within the step
timeout fails the script.  Stanzas that arrive while a ``disconnects`` step
waits for the server to close the stream are not checked.  The lenient order
sends no pings.
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
class Unconsumed:
    """A received stanza that no step consumed (reported in strict order only).

    ``line`` is the ``disconnects`` step that found it, or None at the end of
    the script.
    """

    line: int | None
    client: str
    stanza: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "end of script"
        return f"{where}: {self.client} did not consume {self.stanza}"


@dataclass
class ScriptResult:
    """The outcome of one script run."""

    name: str
    passed: bool = False
    failure_message: str = ""
    failed_line: int | None = None
    passed_over: list[PassedOver] = field(default_factory=list)
    unconsumed: list[Unconsumed] = field(default_factory=list)
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
        #: Clients whose stream a ``disconnects`` step closed (and checked).
        self.closed_by_script: set[str] = set()
        self.settle_failure = ""
        for account in script.clients:
            self.variables[f"{account.name}'s JID"] = account.jid
            self.clients[account.name] = ScansionClient(account, reactor)

    async def run(self) -> ScriptResult:
        """Run all steps; stop at the first failure; always disconnect."""
        try:
            for step in self.script.steps:
                await self.run_step(step)
            if self.strict_order:
                await self.check_end_of_script()
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

    def fail_at_end(self, message: str) -> StepFailed:
        """Build a failure found after the last step (no line)."""
        return StepFailed(f"{self.source}: end of script: {message}")

    def note(self, text: str) -> None:
        """Add a line to the verbose log."""
        self.result.log.append(text)

    async def run_step(self, step: Step) -> None:
        """Dispatch one step."""
        client = self.clients[step.client]
        self.note(f"line {step.line}: {step.describe()}")
        if step.action == CONNECT:
            if self.strict_order and step.client not in self.closed_by_script:
                # Stanzas left from a connection that the server closed.
                leftovers = self.take_unconsumed(step.line, step.client, client)
                if leftovers:
                    raise self.fail(
                        step,
                        f"{step.client} received {len(leftovers)} stanza(s) on its previous "
                        "connection that no step consumed (--strict-order)\n"
                        + self.report_unconsumed(leftovers),
                    )
            self.closed_by_script.discard(step.client)
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
        """Close the stream and wait for the server to close it too.

        In strict order, first settle and fail if the client holds stanzas
        that no step consumed.
        """
        if not client.connected:
            raise self.fail(step, "the client is not connected")
        if self.strict_order:
            if not await self.settle([client]):
                raise self.fail(step, self.settle_failure)
            leftovers = self.take_unconsumed(step.line, step.client, client)
            if leftovers:
                raise self.fail(
                    step,
                    f"{step.client} received {len(leftovers)} stanza(s) that no step "
                    "consumed (--strict-order)\n" + self.report_unconsumed(leftovers),
                )
        self.closed_by_script.add(step.client)
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

    async def settle(self, checked: list[ScansionClient]) -> bool:
        """Make sure the server has processed everything and the answers are in.

        Round one: every connected client pings the server and waits for the
        answer, so every stanza any client sent has been processed.  Round
        two: the ``checked`` clients ping again, so their answer follows
        whatever the server sent them meanwhile; skipped when only one client
        is connected.  Returns False (and sets :attr:`settle_failure`) if a
        connected client got no answer within the timeout; a client whose
        connection closes meanwhile is simply not waited for.
        """
        connected = [client for client in self.clients.values() if client.connected]
        rounds = [connected]
        if len(connected) > 1:
            rounds.append([client for client in checked if client.connected])
        for clients in rounds:
            answers = await defer.gatherResults(
                [client.round_trip(self.timeout) for client in clients]
            )
            for client, answered in zip(clients, answers, strict=True):
                if not answered and client.connected:
                    self.settle_failure = (
                        f"the server did not answer {client.account.name}'s settling ping "
                        f"(XEP-0199) within {self.timeout:g} s"
                    )
                    return False
        self.note(f"    settled ({len(rounds)} ping round(s))")
        return True

    def take_unconsumed(
        self, line: int | None, name: str, client: ScansionClient
    ) -> list[Unconsumed]:
        """Empty the client's queue into :attr:`ScriptResult.unconsumed`."""
        leftovers = [Unconsumed(line, name, describe(stanza)) for stanza in client.queue]
        client.queue.clear()
        self.result.unconsumed.extend(leftovers)
        for leftover in leftovers:
            self.note(f"    {name} did not consume {leftover.stanza}")
        return leftovers

    async def check_end_of_script(self) -> None:
        """Strict order: no client may hold stanzas that no step consumed."""
        self.note("end of script")
        if not await self.settle(list(self.clients.values())):
            raise self.fail_at_end(self.settle_failure)
        last_lines: dict[str, int] = {}
        for step in self.script.steps:
            last_lines[step.client] = step.line
        sections = []
        for name, client in self.clients.items():
            if name in self.closed_by_script and not client.connected:
                continue
            leftovers = self.take_unconsumed(None, name, client)
            if leftovers:
                where = f"after line {last_lines[name]}" if name in last_lines else "never used"
                sections.append(
                    f"  {name} ({where}) received {len(leftovers)} stanza(s):\n"
                    + self.report_unconsumed(leftovers)
                )
        if sections:
            raise self.fail_at_end(
                "stanza(s) that no step consumed (--strict-order)\n" + "\n".join(sections)
            )

    @staticmethod
    def report_unconsumed(leftovers: list[Unconsumed]) -> str:
        """List the stanzas that no step consumed."""
        return "\n".join(_indent(leftover.stanza) for leftover in leftovers)

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
