"""xmppdctl: the administration command.

It works on the same configuration file as the server, directly on the
database, so it can be used while the server runs (SQLite in WAL mode).
Passwords come from ``--password`` or standard input (one line), or are
asked for twice on a terminal; they never appear in the output.

Commands: ``adduser``, ``passwd``, ``deluser``, ``list`` (accounts);
``check`` (is the configuration ready to serve: database, certificate, key,
domains, ports; see :mod:`xmppd.check`); ``cert`` (generate a self-signed
certificate, or ``cert import CERT KEY``; see :mod:`xmppd.certificates`);
``mam`` (message archives, XEP-0313: ``mam delete JID`` empties an account's
or a room's archive, ``mam expire AGE`` deletes what is older than AGE,
``mam count JID`` tells an archive's size); ``fast`` (FAST tokens,
XEP-0484: ``fast list USER`` shows an account's tokens by user agent,
``fast revoke USER [UA-ID]`` ends all of them or one user agent's); ``upload``
(HTTP uploads, XEP-0363: ``upload list [USER]``, ``upload purge USER`` or
``upload purge [USER] --older-than AGE`` deletes files and rows); ``s2s``
(the running server's federation connections, asked over its control socket,
see :mod:`xmppd.control`; ``--json`` for scripts).

Exit codes: 0 success, 1 the operation failed (e.g. the account exists;
``check`` found a problem, an invalid configuration included), 2 bad usage
or configuration.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from twisted.internet import defer, task

from xmppd import certificates, check
from xmppd.addresses import parse_jid
from xmppd.config import Config, ConfigError, load_config
from xmppd.datetimes import format_stamp
from xmppd.mam.store import ArchiveStore
from xmppd.modules.fast import FastTokenStore
from xmppd.storage.accounts import AccountError, AccountStore, prepare_username
from xmppd.storage.database import Database, migrate_file

#: Messages deleted per transaction by ``mam expire``.
EXPIRE_BATCH = 5000


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

    check_command = commands.add_parser(
        "check", help="check the configuration, certificate, key, domains and ports"
    )
    check_command.add_argument(
        "--dns", action="store_true",
        help="also list the DNS SRV records of the served domains (needs the network)")

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

    mam = commands.add_parser("mam", help="delete, expire or count archived messages")
    mam_actions = mam.add_subparsers(dest="mam_action", required=True, metavar="ACTION")
    for action, text in (("delete", "delete an account's or a room's whole archive"),
                         ("count", "how many messages an archive holds")):
        one = mam_actions.add_parser(action, help=text)
        one.add_argument("owner", help="a username, or a bare JID (an account or a room)")
    expire = mam_actions.add_parser("expire", help="delete archived messages older than AGE")
    expire.add_argument("age", help="seconds, or a number with s, m, h, d, w or y (90d)")
    which = expire.add_mutually_exclusive_group()
    which.add_argument("--accounts", action="store_true", help="only the accounts' archives")
    which.add_argument("--rooms", action="store_true", help="only the rooms' archives")
    fast = commands.add_parser("fast", help="list or revoke FAST login tokens (XEP-0484)")
    fast_actions = fast.add_subparsers(dest="fast_action", required=True, metavar="ACTION")
    listing = fast_actions.add_parser("list", help="an account's tokens, one per line")
    listing.add_argument("username")
    revoke = fast_actions.add_parser("revoke", help="end an account's tokens (one user agent's)")
    revoke.add_argument("username")
    revoke.add_argument("agent", nargs="?", default=None, metavar="UA-ID",
                        help="the SASL2 user-agent id (default: every token of the account)")

    upload = commands.add_parser("upload", help="list or purge HTTP uploads (XEP-0363)")
    upload_actions = upload.add_subparsers(dest="upload_action", required=True,
                                           metavar="ACTION")
    listed = upload_actions.add_parser("list", help="list uploads (of one account)")
    listed.add_argument("username", nargs="?", help="a username or bare JID")
    purge = upload_actions.add_parser(
        "purge", help="delete an account's uploads, or everyone's older than AGE")
    purge.add_argument("username", nargs="?", help="a username or bare JID")
    purge.add_argument("--older-than", metavar="AGE",
                       help="seconds, or a number with s, m, h, d, w or y (30d)")

    s2s = commands.add_parser(
        "s2s", help="list the running server's S2S connections (over its control socket)")
    s2s.add_argument("--json", action="store_true", help="a JSON array, one object each")
    return parser


@defer.inlineCallbacks
def run_check(args: argparse.Namespace, out: Callable[[str], Any] = print,
              resolver: Any = None):
    """``xmppdctl check``: print the report; fires with 0 when clean, 1 with problems.

    With ``--dns`` the SRV records are looked up too (``resolver``: the
    system's, from :mod:`twisted.names`, unless a test passes one).
    """
    source = args.config or "(embedded default)"
    try:
        config = load_config(args.config)
    except ConfigError as e:
        out(str(check.Finding(check.FAIL, "config", str(e))))
        out("1 problem")
        return 1
    out(str(check.Finding(check.OK, "config", f"{source} is valid (domain {config.domain})")))
    findings = check.check_config(config)
    if getattr(args, "dns", False):
        if resolver is None:
            from twisted.names import client

            resolver = client.createResolver()
        findings += yield check.check_dns(config, resolver)
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


@defer.inlineCallbacks
def run_s2s(args: argparse.Namespace, config: Config, reactor: Any,
            out: Callable[[str], Any] = print):
    """``xmppdctl s2s [--json]``: the running server's S2S connections; fires with 0 or 1."""
    from xmppd import control

    path = config.control_socket
    if path is None:
        print("xmppdctl: error: the control socket is off (server.control_socket is \"\")",
              file=sys.stderr)
        return 1
    try:
        enabled, rows = yield control.s2s_connections(reactor, path)
    except control.ControlError as e:
        print(f"xmppdctl: error: {e}", file=sys.stderr)
        return 1
    if args.json:
        out(json.dumps(rows, indent=2))
    elif not enabled:
        out("federation is off (s2s.enabled = false)")
    elif not rows:
        out("no S2S connections")
    else:
        for line in control.s2s_lines(rows):
            out(line)
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


#: Seconds per unit of an ``xmppdctl mam expire`` age.
AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def parse_age(text: str) -> float:
    """Seconds in an age such as ``3600``, ``90d`` or ``2w``; UsageError when malformed."""
    value = text.strip().lower()
    unit = AGE_UNITS.get(value[-1:]) if value else None
    number = value[:-1] if unit else value
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise UsageError(f"{text!r} is not an age (e.g. 3600, 36h, 90d, 2w)") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise UsageError(f"{text!r} is not an age (e.g. 3600, 36h, 90d, 2w)")
    return seconds


def archive_owner(owner: str, domain: str) -> str:
    """The archive a ``mam`` command names: ``user``, ``user@domain`` or a room's bare JID."""
    address = parse_jid(owner if "@" in owner else f"{owner}@{domain}")
    if address is None or not address.user or address.resource is not None:
        raise UsageError(f"{owner!r} is not a username or bare JID")
    return address.userhost()


@defer.inlineCallbacks
def run_mam(args: argparse.Namespace, database: Database, out: Callable[[str], Any],
            domain: str, now: float):
    """``xmppdctl mam delete|count|expire``, directly on the archive table."""
    store = ArchiveStore(database)
    if args.mam_action == "expire":
        age = parse_age(args.age)
        personal = True if args.accounts else False if args.rooms else None
        deleted = 0
        while True:  # short transactions: a running server keeps writing meanwhile
            count = yield store.expire(now - age, batch=EXPIRE_BATCH, personal=personal)
            deleted += count
            if count < EXPIRE_BATCH:
                break
        out(f"deleted {deleted} archived message{'' if deleted == 1 else 's'} "
            f"older than {args.age}")
        return
    owner = archive_owner(args.owner, domain)
    if args.mam_action == "count":
        out(f"{owner}: {(yield store.size(owner))}")
    else:
        deleted = yield store.delete_owner(owner)
        out(f"deleted the archive of {owner} ({deleted} message{'' if deleted == 1 else 's'})")


@defer.inlineCallbacks
def run_fast(args: argparse.Namespace, accounts: AccountStore, out: Callable[[str], Any],
             domain: str, now: float):
    """``xmppdctl fast list|revoke``, directly on the token table (no token is ever shown)."""
    username = local_part(args.username, domain)
    if not (yield accounts.exists(username)):
        raise AccountError(f"no account {username!r}")
    store = FastTokenStore(accounts.db)
    if args.fast_action == "list":
        for token in (yield store.tokens(username)):
            state = "expired" if token.expiry <= now else f"expires {format_stamp(token.expiry)}"
            who = " ".join(part for part in (token.software, token.device) if part)
            out(f"{token.agent} {token.mechanism} issued {format_stamp(token.issued)} {state}"
                + (f" ({who})" if who else ""))
        return
    agent = args.agent
    if agent is not None:
        try:
            agent = str(uuid.UUID(agent))
        except ValueError:
            raise UsageError(f"{args.agent!r} is not a user-agent id (a UUID)") from None
    count = yield store.revoke(username, agent)
    out(f"revoked {count} FAST token{'' if count == 1 else 's'} of {username}@{domain}")


def run_upload(args: argparse.Namespace, database: Database, out: Callable[[str], Any],
               domain: str, data_dir: Path, now: float):
    """``xmppdctl upload list|purge``: the uploads' rows and files, directly."""
    from xmppd.upload.store import UploadStore

    store = UploadStore(database, data_dir / "uploads")
    user = prepare_username(local_part(args.username, domain)) if args.username else None
    if args.upload_action == "list":
        for upload in (yield store.list(user)):
            stamp = datetime.datetime.fromtimestamp(upload.created, datetime.UTC)
            state = "uploaded" if upload.uploaded is not None else "open slot"
            out(f"{upload.id} {upload.owner}@{domain} {upload.size} {upload.content_type} "
                f"{stamp:%Y-%m-%dT%H:%M:%SZ} {state} {upload.filename}")
        return
    if user is None and args.older_than is None:
        raise UsageError("upload purge needs a username or --older-than AGE")
    if args.older_than is not None:
        deleted = yield store.delete_older_than(now - parse_age(args.older_than), user)
    else:
        deleted = yield store.delete_owner(user)
    whose = f" of {user}@{domain}" if user else ""
    out(f"deleted {len(deleted)} upload{'' if len(deleted) == 1 else 's'}{whose}")


@defer.inlineCallbacks
def _run(args: argparse.Namespace, accounts: AccountStore, out: Callable[[str], Any],
         domain: str, data_dir: Path | None = None):
    if args.command == "upload":
        yield run_upload(args, accounts.db, out, domain, data_dir or Path("data"), time.time())
        return
    if args.command == "mam":
        yield run_mam(args, accounts.db, out, domain, time.time())
        return
    if args.command == "fast":
        yield run_fast(args, accounts, out, domain, time.time())
        return
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
        if data_dir is not None:  # the files go too (a running server would sweep them)
            from xmppd.upload.store import UploadStore

            yield UploadStore(accounts.db, data_dir / "uploads").delete_owner(
                prepare_username(username))
        out(f"deleted {username}@{domain}")


@defer.inlineCallbacks
def run(argv: Sequence[str] | None = None, reactor: Any = None):
    """Run one xmppdctl command on a running reactor; fires with the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "check":
        return (yield run_check(args))
    try:
        config = load_config(args.config)
        if args.command == "cert":
            return run_cert(args, config)
        if args.command == "s2s":
            if reactor is None:
                from twisted.internet import reactor
            return (yield run_s2s(args, config, reactor))
        migrate_file(config.database_path)
    except ConfigError as e:
        print(f"xmppdctl: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # the database cannot be opened or upgraded
        print(f"xmppdctl: error: database {config.database_path}: {e}", file=sys.stderr)
        return 1
    database = Database(config.database_path, reactor=reactor)
    try:
        yield _run(args, AccountStore(database), print, config.domain, config.data_dir)
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
