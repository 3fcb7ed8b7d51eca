"""Every tests/scenarios/*.scs script, run end to end against a live server.

Each script is one test: the server is started in-process on a free port
with its production defaults (STARTTLS offered and required, SCRAM), the
accounts the script names are created, and the scansion runner plays the
script in strict order: our own scripts list every stanza each client
receives, so a stanza that a ``receives`` step would pass over, or that no
step consumed by a client's ``disconnects`` step or the end of the script,
fails the test. The scripts in LENIENT (written for other servers) run with the
scansion rules' lenient order, where passed-over stanzas are only logged.
"""

from pathlib import Path

from twisted.internet import defer
from twisted.logger import Logger
from twisted.trial import unittest

from tests.support import start_server
from xmppd.testing.scansion import parse_script, run_script

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
log = Logger()

#: Scripts that cannot pass yet, with the reason (reported as expected failures).
NOT_YET: dict[str, str] = {}

#: Scripts that cannot run twice against one server, with the reason (the
#: command-line test plays the suite twice against one twistd).
RUN_ONCE: dict[str, str] = {
    "bookmarks.scs": "the server keeps verified caps for its lifetime: a second run gets no query",
    "caps.scs": "the server keeps verified caps for its lifetime: a second run gets no query",
}

#: Scripts that run in lenient order, with the reason.
LENIENT: dict[str, str] = {
    "muc_password.scs": "the acceptance scenario, written for Prosody, leaves out a 104 message",
}


class ScenarioTests(unittest.TestCase):
    """One test per scenario script."""

    @defer.inlineCallbacks
    def play(self, path: Path):
        script = parse_script(path.read_text(encoding="utf-8"))
        server = start_server(self, c2s={"require_encryption": True})
        for client in script.clients:
            if not (yield server.accounts.exists(client.username)):
                yield server.create_user(client.username, client.password)
        result = yield run_script(
            path, "127.0.0.1", server.port, timeout=5.0, strict_order=path.name not in LENIENT
        )
        for skipped in result.passed_over:
            log.info("{script}: {skipped}", script=path.name, skipped=str(skipped))
        if not result.passed:
            self.fail(result.failure_message)


def _make_test(path: Path):
    def test(self):
        return self.play(path)

    test.__name__ = "test_" + path.stem
    test.__doc__ = f"tests/scenarios/{path.name} passes against a live server."
    if path.name in NOT_YET:
        test.todo = NOT_YET[path.name]
    return test


for _path in sorted(SCENARIOS.glob("*.scs")):
    setattr(ScenarioTests, "test_" + _path.stem, _make_test(_path))
