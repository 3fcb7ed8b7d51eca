"""Run slixmpp's own integration tests (its sdist's ``itests/``) against a live server.

Run by tests/test_slixmpp_itests.py as a subprocess, one test per run:

    python slixmpp_itests_runner.py ITESTS_DIR ADDRESS TEST_ID...
    python slixmpp_itests_runner.py --list ITESTS_DIR

TEST_ID is ``module.Class.method`` inside ITESTS_DIR (e.g.
``test_muc.TestMUC.test_kick``); ``all`` runs every test. ``--list`` prints
the id of every test that the itests modules' ``suite`` holds, as slixmpp's
run_integration_tests.py would run them (a module that cannot be imported is
listed by its name, and fails when run). The itests read
their accounts and the MUC service from the environment (CI_ACCOUNT1,
CI_ACCOUNT1_PASSWORD, CI_ACCOUNT2, CI_ACCOUNT2_PASSWORD, CI_MUC_SERVER) and
trust the certificates OpenSSL trusts (set SSL_CERT_FILE to the test CA).

slixmpp's own CI resolves the server's domain to the server through DNS and
connects to the standard ports 5222 and 5223. Here the server listens on
those ports on ADDRESS (a private loopback address), and the domain names in
HOSTS resolve to ADDRESS only, as a hosts file would: the itests' clients
find the server exactly as they would find a real one without SRV records.
Nothing else of slixmpp is changed.

Each test ends with one line on stdout: ``ITEST-RESULT {json}`` with its id,
outcome (pass, fail, error, skip) and details (the traceback or skip reason).
slixmpp's debug log (the stanzas sent and received) goes to stderr.
"""

import importlib
import json
import logging
import os
import socket
import sys
import unittest

#: Names that resolve to the server's address (the rest resolve as usual).
HOSTS = ("localhost", "conference.localhost")

RESULT_PREFIX = "ITEST-RESULT "


def install_hosts(address: str, names=HOSTS) -> None:
    """Resolve ``names`` to ``address`` only (IPv4), like a hosts file would."""
    real_getaddrinfo = socket.getaddrinfo
    lowered = {name.lower() for name in names}

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        if isinstance(name, str) and name.rstrip(".").lower() in lowered:
            if family == socket.AF_INET6:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return real_getaddrinfo(address, port, socket.AF_INET, type, proto, flags)
        return real_getaddrinfo(host, port, family, type, proto, flags)

    socket.getaddrinfo = getaddrinfo
    # Without a DNS server there are no SRV records: slixmpp then connects to
    # the domain's address on the standard ports, through getaddrinfo.
    from slixmpp.xmlstream import resolver
    resolver.AIODNS_AVAILABLE = False


class LineResult(unittest.TestResult):
    """Prints one ITEST-RESULT line per finished test."""

    def __init__(self, stream):
        super().__init__()
        self.stream = stream
        self._outcome = None

    def startTest(self, test):
        super().startTest(test)
        self._outcome = ("pass", "")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._outcome = ("fail", self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._outcome = ("error", self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._outcome = ("skip", reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._outcome = ("fail", self._exc_info_to_string(err, test))

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._outcome = ("pass", "")

    def stopTest(self, test):
        super().stopTest(test)
        outcome, details = self._outcome or ("error", "the test did not report")
        test_id = test.id()
        line = json.dumps({"id": test_id, "outcome": outcome, "details": details})
        self.stream.write(RESULT_PREFIX + line + "\n")
        self.stream.flush()


def module_names():
    """The itests modules in the current folder, as run_integration_tests.py finds them."""
    return sorted(
        name[:-3] for name in os.listdir(".") if name.startswith("test_") and name.endswith(".py")
    )


def iterate(suite):
    """The tests of a suite, nested suites flattened."""
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            yield from iterate(test)
        else:
            yield test


def list_ids():
    """The id of every test in every itests module's ``suite``."""
    ids = []
    for name in module_names():
        try:
            suite = importlib.import_module(name).suite
        except Exception:  # listed, and fails with its traceback when run
            ids.append(name)
            continue
        ids.extend(test.id() for test in iterate(suite))
    return ids


def enter(itests_dir):
    """Import the itests from their folder, as slixmpp's runner does."""
    os.chdir(itests_dir)
    sys.path.insert(0, os.getcwd())


def main(argv):
    """Run (or list) the itests; exit 0 when all passed or were skipped."""
    if argv[:1] == ["--list"]:
        enter(argv[1])
        logging.disable(logging.CRITICAL)
        print("\n".join(list_ids()))
        return 0
    itests_dir, address, *test_ids = argv
    install_hosts(address)
    logging.basicConfig(
        level=logging.DEBUG, stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    enter(itests_dir)
    if test_ids == ["all"]:
        suite = unittest.TestSuite(importlib.import_module(name).suite for name in module_names())
    else:
        suite = unittest.TestLoader().loadTestsFromNames(test_ids)
    result = LineResult(sys.stdout)
    suite.run(result)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
