"""xmppdctl: the administration command.

It works on the same configuration file as the server, directly on the
database, so it can be used while the server runs (SQLite in WAL mode).
Passwords come from ``--password`` or standard input (one line), or are
asked for twice on a terminal; they never appear in the output.

Commands: ``adduser``, ``passwd``, ``deluser``, ``list`` (accounts);
``check`` (is the configuration ready to serve: database, certificate, key,
domains, ports; see :mod:`xmppd.check`); ``cert`` (generate a self-signed
certificate, or ``cert import CERT KEY``; see :mod:`xmppd.certificates`).

Exit codes: 0 success, 1 the operation failed (e.g. the account exists;
``check`` found a problem, an invalid configuration included), 2 bad usage
or configuration.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer, task

from xmppd import certificates, check
from xmppd.config import Config, ConfigError, load_config
from xmppd.storage.accounts import AccountError, AccountStore
from xmppd.storage.database import Database, migrate_file


class UsageError(Exception):
    """Bad command-line input; exit code 2."""


def read_password(args: argparse.Namespace, stdin=None) -> str:
    """The new password from --password, standard input or a terminal prompt."""
    if args.password is not None:
        return args.password
    stdin = stdin or sys.stdin
    if stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            raise UsageError("the passwords differ")
        return first
    line = stdin.readline()
    if not line:
        raise UsageError("no password on standard input")
    return line.rstrip("\r\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xmppdctl", description="Administer an xmppd server.")
    parser.add_argument(
        "-c", "--config", default=None,
        help="the server's TOML configuration file (default: the embedded default)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add = commands.add_parser("adduser", help="create an account")
    add.add_argument("username", help="the local part (user) or the whole bare JID")
    add.add_argument("--password", help="the password (default: read from standard input)")

    passwd = commands.add_parser("passwd", help="change an account's password")
    passwd.add_argument("username")
    passwd.add_argument("--password", help="the new password (default: standard input)")

    delete = commands.add_parser("deluser", help="delete an account and all its data")
    delete.add_argument("username")

    commands.add_parser("list", help="list the accounts, one per line")

    commands.add_parser(
        "check", help="check the configuration, certificate, key, domains and ports"
    )

    cert = commands.add_parser(
        "cert", help="generate a self-signed certificate (default) or import one"
    )
    cert_actions = cert.add_subparsers(dest="cert_action", metavar="ACTION")
    generate = cert_actions.add_parser(
        "generate", help="a self-signed certificate for the served domains"
    )
    generate.add_argument("--force", action="store_true", help="replace existing files")
    imported = cert_actions.add_parser("import", help="validate a certificate and copy it in")
    imported.add_argument("certificate", help="PEM certificate (chain)")
    imported.add_argument("key", help="PEM private key (unencrypted)")
    imported.add_argument(
        "--force", action="store_true",
        help="import even if the certificate does not cover every served domain",
    )
    cert.add_argument("--force", action="store_true", help=argparse.SUPPRESS)
    return parser


def run_check(args: argparse.Namespace, out: Callable[[str], Any] = print) -> int:
    """``xmppdctl check``: print the report; 0 when clean, 1 when there are problems."""
    source = args.config or "(embedded default)"
    try:
        config = load_config(args.config)
    except ConfigError as e:
        out(str(check.Finding(check.FAIL, "config", str(e))))
        out("1 problem")
        return 1
    out(str(check.Finding(check.OK, "config", f"{source} is valid (domain {config.domain})")))
    findings = check.check_config(config)
    for finding in findings:
        out(str(finding))
    problems = sum(1 for f in findings if f.level == check.FAIL)
    if problems:
        out(f"{problems} problem{'s' if problems > 1 else ''}")
        return 1
    out("no problems")
    return 0


def run_cert(args: argparse.Namespace, config: Config, out: Callable[[str], Any] = print) -> int:
    """``xmppdctl cert [generate|import]``: write the certificate the server uses."""
    force = bool(getattr(args, "force", False))
    try:
        if args.cert_action == "import":
            cert, key = certificates.import_certificate(
                config, args.certificate, args.key, force=force
            )
            out(f"imported the certificate to {cert} and the key to {key}")
        else:
            cert, key = certificates.generate(config, force=force)
            out(f"generated a self-signed certificate for {', '.join(config.served_domains)}: "
                f"{cert} (key: {key})")
    except certificates.CertificateCommandError as e:
        print(f"xmppdctl: error: {e}", file=sys.stderr)
        return 1
    out("a running server uses it after a reload (systemctl reload xmppd)")
    return 0


def local_part(username: str, domain: str) -> str:
    """Accept 'user' or 'user@domain' for the served domain."""
    if "@" not in username:
        return username
    user, _, host = username.partition("@")
    if not user or not host:
        raise UsageError(f"{username!r} is not a username or bare JID")
    if host.lower() != domain:
        raise UsageError(f"{username}: this server serves {domain}, not {host}")
    return user


@defer.inlineCallbacks
def _run(args: argparse.Namespace, accounts: AccountStore, out: Callable[[str], Any], domain: str):
    if args.command == "list":
        for name in (yield accounts.usernames()):
            out(f"{name}@{domain}")
        return
    username = local_part(args.username, domain)
    if args.command == "adduser":
        yield accounts.create(username, read_password(args))
        out(f"created {username}@{domain}")
    elif args.command == "passwd":
        yield accounts.set_password(username, read_password(args))
        out(f"changed the password of {username}@{domain}")
    elif args.command == "deluser":
        yield accounts.delete(username)
        out(f"deleted {username}@{domain}")


@defer.inlineCallbacks
def run(argv: Sequence[str] | None = None, reactor: Any = None):
    """Run one xmppdctl command on a running reactor; fires with the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "check":
        return run_check(args)
    try:
        config = load_config(args.config)
        if args.command == "cert":
            return run_cert(args, config)
        migrate_file(config.database_path)
    except ConfigError as e:
        print(f"xmppdctl: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # the database cannot be opened or upgraded
        print(f"xmppdctl: error: database {config.database_path}: {e}", file=sys.stderr)
        return 1
    database = Database(config.database_path, reactor=reactor)
    try:
        yield _run(args, AccountStore(database), print, config.domain)
        return 0
    except UsageError as e:
        print(f"xmppdctl: error: {e}", file=sys.stderr)
        return 2
    except AccountError as e:
        print(f"xmppdctl: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a database failure: one line, no traceback
        print(f"xmppdctl: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        database.close()


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: run one command; the process exits with its code."""

    def work(reactor):
        def finish(code: int) -> None:
            if code:
                raise SystemExit(code)

        return run(argv, reactor).addCallback(finish)

    task.react(work)


if __name__ == "__main__":
    main()
