"""slixmpp's own integration tests (its sdist's ``itests/``) against a live xmppd.

The itests of the installed slixmpp version come from its sdist, downloaded
with pip into a cache on first use (tests/interop/slixmpp_sdist.py); without
it (no network, no pip) the tests here are skipped with pip's reason.

Each itest is one trial test, run in its own subprocess (the itests use
asyncio) by tests/interop/slixmpp_itests_runner.py against a fresh
in-process server. The server serves ``localhost`` as slixmpp's CI Prosody
serves its domain: STARTTLS on port 5222 and direct TLS on 5223 (on a
private loopback address such as 127.83.4.19, where the runner resolves
``localhost`` to), TLS required, two accounts, the MUC service
conference.localhost, and an outage status page (XEP-0455) served over HTTP.
The runner's clients trust the test certificate through SSL_CERT_FILE.
Where 5222 or 5223 is taken on every loopback address tried (a server
listening on all addresses of this machine), the itests are skipped.

The itests that fail against xmppd are listed, each with its reason, in
tests/interop/slixmpp_itests_expected_failures.txt, the one list to shrink as
features land. They run as expected failures (trial's ``todo``): one that
starts passing is reported as an unexpected success. All others must pass.
"""

from __future__ import annotations

import errno
import json
import os
import random
import socket
import sys
from pathlib import Path

from twisted.internet import defer, error, protocol, reactor
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from tests.interop import slixmpp_sdist
from tests.interop.slixmpp_itests_runner import RESULT_PREFIX
from tests.support import LiveServer, make_test_config
from xmppd.service import StartupError, XMPPServer

INTEROP = Path(__file__).resolve().parent / "interop"
EXPECTED_FAILURES = INTEROP / "slixmpp_itests_expected_failures.txt"
RUNNER = INTEROP / "slixmpp_itests_runner.py"

#: Set (for trial's worker processes) once the itests are known to be unavailable.
UNAVAILABLE = "XMPPD_SLIXMPP_ITESTS_UNAVAILABLE"

#: Seconds one itest may take before its process is killed.
ITEST_TIME_LIMIT = 60

#: The accounts the itests log in with (CI_ACCOUNT1, CI_ACCOUNT2).
ACCOUNTS = (("slix-ci-1", "slix-ci-1-pass"), ("slix-ci-2", "slix-ci-2-pass"))
MUC_SERVICE = "conference.localhost"

#: The stanzas of a failing itest shown in its failure message (the last ones).
SHOWN_STANZAS = 15


def read_expected_failures(path: Path = EXPECTED_FAILURES) -> dict[str, str]:
    """``{itest id: reason}`` from the expected-failures file."""
    entries: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        test_id, sep, reason = line.partition(":")
        if not sep or not reason.strip() or " " in test_id:
            raise ValueError(f"{path.name}:{number}: expected 'module.Class.method: reason'")
        if test_id in entries:
            raise ValueError(f"{path.name}:{number}: {test_id} is listed twice")
        entries[test_id] = reason.strip()
    return entries


def find_itests() -> tuple[slixmpp_sdist.Itests | None, str]:
    """The itests, or None and why they are unavailable (asked once per trial run)."""
    reason = os.environ.get(UNAVAILABLE)
    if reason:
        return None, reason
    try:
        return slixmpp_sdist.itests(), ""
    except slixmpp_sdist.Unavailable as e:
        os.environ[UNAVAILABLE] = str(e)  # trial's workers inherit it and do not retry
        return None, str(e)


def loopback_candidates() -> list[str]:
    """Private loopback addresses to try for ports 5222/5223, 127.0.0.1 last."""
    chance = random.Random()
    return [
        f"127.{chance.randint(1, 254)}.{chance.randint(1, 254)}.{chance.randint(2, 254)}"
        for _ in range(4)
    ] + ["127.0.0.1"]


def ports_free(address: str) -> str:
    """'' if 5222 and 5223 can be bound on ``address``, else why not."""
    for port in (5222, 5223):
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((address, port))
        except OSError as e:
            return f"{address}:{port}: {errno.errorcode.get(e.errno, e.errno)}"
        finally:
            probe.close()
    return ""


class ItestProcess(protocol.ProcessProtocol):
    """The runner's subprocess: keeps stdout and stderr apart; ``ended`` fires at exit."""

    def __init__(self):
        self.out = b""
        self.err = b""
        self.ended = defer.Deferred()
        self.timed_out = False

    def outReceived(self, data):
        self.out += data

    def errReceived(self, data):
        self.err += data

    def processEnded(self, reason):
        self.ended.callback(None)


class SlixmppItest(unittest.TestCase):
    """Base of the generated test cases: one live server and one itest per test."""

    timeout = ITEST_TIME_LIMIT + 30
    itests: slixmpp_sdist.Itests

    def start_server(self):
        """The server on ports 5222/5223 of a free loopback address: (address, LiveServer)."""
        tried = []
        for address in loopback_candidates():
            problem = ports_free(address)
            if problem:
                tried.append(problem)
                continue
            root = Resource()
            root.putChild(b"status.json", Data(b"null", "application/json"))
            try:
                status = reactor.listenTCP(0, Site(root), interface=address)
            except error.CannotListenError as e:
                tried.append(f"{address}: {e.socketError}")
                continue
            config = make_test_config(
                self,
                c2s={
                    "listen": f"tcp:5222:interface={address}",
                    "direct_tls_listen": f"tcp:5223:interface={address}",
                    "require_encryption": True,
                },
                contact_info={
                    "outage_status": [f"http://{address}:{status.getHost().port}/status.json"],
                },
            )
            server = XMPPServer(config)
            try:
                server.privilegedStartService()
            except StartupError as e:  # taken since the probe
                tried.append(str(e))
                if server.database is not None:
                    server.database.close()
                status.stopListening()
                continue
            self.addCleanup(status.stopListening)
            server.startService()
            self.addCleanup(server.stopService)
            return address, LiveServer(server)
        raise unittest.SkipTest(
            "slixmpp's itests need ports 5222 and 5223 on a loopback address; none was free ("
            + "; ".join(tried) + "): is an XMPP server listening on all addresses here?"
        )

    @defer.inlineCallbacks
    def run_itest(self, test_id: str):
        """Run one itest against a fresh server; pass, skip or fail as it did."""
        address, server = self.start_server()
        for username, password in ACCOUNTS:
            yield server.create_user(username, password)
        env = dict(os.environ)
        env.pop("CI", None)  # CI=woodpecker runs test_component, against slixmpp's own CI host
        env.update({
            "CI_ACCOUNT1": f"{ACCOUNTS[0][0]}@localhost",
            "CI_ACCOUNT1_PASSWORD": ACCOUNTS[0][1],
            "CI_ACCOUNT2": f"{ACCOUNTS[1][0]}@localhost",
            "CI_ACCOUNT2_PASSWORD": ACCOUNTS[1][1],
            "CI_MUC_SERVER": MUC_SERVICE,
            "SSL_CERT_FILE": str(server.config.tls.certificate),
        })
        process = ItestProcess()
        transport = reactor.spawnProcess(
            process, sys.executable,
            [sys.executable, str(RUNNER), str(self.itests.folder), address, test_id],
            env=env, path=str(self.itests.folder),
        )

        def kill():
            if not process.ended.called:
                process.timed_out = True
                try:
                    transport.signalProcess("KILL")
                except error.ProcessExitedAlready:
                    pass
            return process.ended

        deadline = reactor.callLater(ITEST_TIME_LIMIT, kill)
        self.addCleanup(kill)
        yield process.ended
        if deadline.active():
            deadline.cancel()
        self.report(test_id, process)

    def report(self, test_id: str, process: ItestProcess):
        """Turn the runner's result line into this test's outcome."""
        stdout = process.out.decode(errors="replace")
        stderr = process.err.decode(errors="replace")
        results = [
            json.loads(line[len(RESULT_PREFIX):])
            for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)
        ]
        result = next((r for r in results if r["id"] == test_id), None)
        if result is None:
            why = (f"killed after {ITEST_TIME_LIMIT} s" if process.timed_out
                   else "the runner reported no result")
            self.fail(f"{test_id}: {why}\n{stanzas(stderr)}\n{stderr[-3000:]}")
        if result["outcome"] == "skip":
            raise unittest.SkipTest(result["details"])
        if result["outcome"] != "pass":
            self.fail(f"{test_id}: {result['outcome']}\n"
                      f"{short_traceback(result['details'])}\n{stanzas(stderr)}")


def short_traceback(text: str) -> str:
    """A traceback without the frames of unittest's and asyncio's machinery."""
    kept: list[str] = []
    skipping = False
    for line in text.splitlines():
        if line.startswith('  File "'):
            skipping = any(f"{os.sep}{part}{os.sep}" in line for part in ("unittest", "asyncio"))
        elif not line.startswith("  "):
            skipping = False
        if not skipping:
            kept.append(line)
    return "\n".join(kept)


def stanzas(log: str) -> str:
    """The last stanzas the itest's clients sent and received, from slixmpp's debug log."""
    lines = [line.partition(" DEBUG ")[2] for line in log.splitlines()
             if " DEBUG SEND: " in line or " DEBUG RECV: " in line]
    shown = [line if len(line) < 500 else line[:500] + "..." for line in lines[-SHOWN_STANZAS:]]
    return "stanzas (the last %d of %d):\n%s" % (len(shown), len(lines), "\n".join(shown))


class ExpectedFailuresList(unittest.TestCase):
    """The expected-failures file is well formed and names only existing itests."""

    def test_names_existing_itests(self):
        expected = read_expected_failures()
        itests, reason = find_itests()
        if itests is None:
            raise unittest.SkipTest(reason)
        stale = sorted(set(expected) - set(itests.test_ids))
        self.assertEqual(
            stale, [], f"{EXPECTED_FAILURES.name} names itests that slixmpp "
            f"{itests.version} does not have"
        )


class SdistUnavailable(unittest.TestCase):
    """Stands for slixmpp's itests when they cannot be had."""

    reason = ""

    def test_itests(self):
        raise unittest.SkipTest(self.reason)


def _make_test(test_id: str, todo: str | None):
    def test(self):
        return self.run_itest(test_id)

    test.__name__ = test_id.rpartition(".")[2]
    test.__doc__ = f"slixmpp's itest {test_id} passes against xmppd."
    if todo is not None:
        test.todo = todo
    return test


def _make_cases(itests: slixmpp_sdist.Itests, expected: dict[str, str]) -> dict[str, type]:
    """One TestCase class per itest class (named after it), one test per itest."""
    modules: dict[str, str] = {}
    methods: dict[str, dict[str, object]] = {}
    for test_id in itests.test_ids:
        module, _, rest = test_id.partition(".")
        class_name, _, method = rest.rpartition(".")
        name = class_name or module  # a module that does not import is listed alone
        if modules.setdefault(name, module) != module or name in globals():
            name = f"{module}_{name}"
        namespace = methods.setdefault(name, {
            "__doc__": f"slixmpp {itests.version}'s itests/{module}.py",
            "__module__": __name__,
            "itests": itests,
        })
        namespace[method or "test_import"] = _make_test(test_id, expected.get(test_id))
    return {name: type(name, (SlixmppItest,), namespace) for name, namespace in methods.items()}


_itests, _reason = find_itests()
if _itests is None:
    SdistUnavailable.reason = _reason
else:
    del SdistUnavailable
    globals().update(_make_cases(_itests, read_expected_failures()))
