"""Tests for xmppdctl, run in-process on a temporary config."""

import io
import sqlite3
import sys
import time
from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from tests.support import port_is_free, short_folder
from xmppd import cli

REPO = Path(__file__).resolve().parent.parent

#: The domains the default configuration serves.
DOMAINS = "localhost, conference.localhost, pubsub.localhost, upload.localhost"


#: Publish-options making a PEP node open (others may subscribe).
OPEN_NODE = (
    '<publish-options><x xmlns="jabber:x:data" type="submit">'
    '<field var="FORM_TYPE" type="hidden">'
    "<value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
    '<field var="pubsub#access_model"><value>open</value></field></x></publish-options>'
)

#: Romeo and Juliet store what an account keeps (a scansion script, lenient
#: order): each a PEP node with an item; Juliet a subscription to Romeo's node
#: and to one of the pubsub service's, a vCard with a photo (so the avatar
#: nodes), private XML and a XEP-0402 bookmark (so the legacy node too).
PERSONAL_DATA_SCRIPT = """# What deluser must remove

[Client] Romeo
\tjid: romeo@localhost
\tpassword: password
\tresource: orchard

[Client] Juliet
\tjid: juliet@localhost
\tpassword: password
\tresource: balcony

-----

Romeo connects

Juliet connects

Romeo sends:
\t<iq type="set" id="r1"><pubsub xmlns="http://jabber.org/protocol/pubsub">
\t\t<publish node="urn:example:tune"><item id="t1"><tune xmlns="urn:example:tune"/></item></publish>
\t\tOPEN
\t</pubsub></iq>

Romeo receives:
\t<iq type="result" id="r1"/>

Romeo sends:
\t<iq type="set" id="r2" to="pubsub.localhost"><pubsub xmlns="http://jabber.org/protocol/pubsub">
\t\t<create node="verona-news"/>
\t</pubsub></iq>

Romeo receives:
\t<iq type="result" id="r2"/>

Romeo sends:
\t<iq type="set" id="r3"><vCard xmlns="vcard-temp"><FN>Romeo Montague</FN></vCard></iq>

Romeo receives:
\t<iq type="result" id="r3"/>

Juliet sends:
\t<iq type="set" id="j1"><pubsub xmlns="http://jabber.org/protocol/pubsub">
\t\t<publish node="urn:example:mood">
\t\t\t<item id="current"><mood xmlns="urn:example:mood"/></item>
\t\t</publish>
\t\tOPEN
\t</pubsub></iq>

Juliet receives:
\t<iq type="result" id="j1"/>

Juliet sends:
\t<iq type="set" id="j2" to="romeo@localhost"><pubsub xmlns="http://jabber.org/protocol/pubsub">
\t\t<subscribe node="urn:example:tune" jid="juliet@localhost"/>
\t</pubsub></iq>

Juliet receives:
\t<iq type="result" id="j2"/>

Juliet sends:
\t<iq type="set" id="j3" to="pubsub.localhost"><pubsub xmlns="http://jabber.org/protocol/pubsub">
\t\t<subscribe node="verona-news" jid="juliet@localhost"/>
\t</pubsub></iq>

Juliet receives:
\t<iq type="result" id="j3"/>

Juliet sends:
\t<iq type="set" id="j4"><vCard xmlns="vcard-temp"><FN>Juliet Capulet</FN>
\t\t<PHOTO><TYPE>image/png</TYPE><BINVAL>YWJj</BINVAL></PHOTO></vCard></iq>

Juliet receives:
\t<iq type="result" id="j4"/>

Juliet sends:
\t<iq type="set" id="j5"><query xmlns="jabber:iq:private">
\t\t<notes xmlns="urn:example:notes"><note>Wherefore</note></notes>
\t</query></iq>

Juliet receives:
\t<iq type="result" id="j5"/>

Juliet sends:
\t<iq type="set" id="j6"><pubsub xmlns="http://jabber.org/protocol/pubsub">
\t\t<publish node="urn:xmpp:bookmarks:1"><item id="capulets@conference.localhost">
\t\t\t<conference xmlns="urn:xmpp:bookmarks:1" name="The Capulets"/>
\t\t</item></publish>
\t</pubsub></iq>

Juliet receives:
\t<iq type="result" id="j6"/>

# Read through the account's PEP queue: the conversion to the legacy node is done
Juliet sends:
\t<iq type="get" id="j7">
\t\t<query xmlns="jabber:iq:private"><storage xmlns="storage:bookmarks"/></query>
\t</iq>

Juliet receives:
\t<iq type="result" id="j7"><query xmlns="jabber:iq:private"><storage xmlns="storage:bookmarks">
\t\t<conference jid="capulets@conference.localhost" name="The Capulets"/>
\t</storage></query></iq>

Juliet disconnects

Romeo disconnects
""".replace("OPEN", OPEN_NODE)


class CommandTestCase(unittest.TestCase):
    """xmppdctl run in-process on a copy of conf/xmppd.toml with its own data folder."""

    def setUp(self):
        folder = Path(self.mktemp())
        folder.mkdir()
        self.config = folder / "xmppd.toml"
        self.config.write_bytes((REPO / "conf" / "xmppd.toml").read_bytes())
        self.database = folder / "data" / "xmppd.sqlite"

    @defer.inlineCallbacks
    def run_cli(self, *args, stdin=""):
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        self.patch(sys, "stdin", io.StringIO(stdin))
        code = yield cli.run(["-c", str(self.config), *args])
        return code, out.getvalue(), err.getvalue()

    def rows(self, sql):
        connection = sqlite3.connect(self.database)
        self.addCleanup(connection.close)
        return connection.execute(sql).fetchall()


class XmppdctlTests(CommandTestCase):
    """Account administration through the command."""

    def usernames(self):
        connection = sqlite3.connect(self.database)
        self.addCleanup(connection.close)
        return [r[0] for r in connection.execute("SELECT username FROM accounts ORDER BY 1")]

    @defer.inlineCallbacks
    def test_adduser_list_passwd_deluser(self):
        self.assertEqual((yield self.run_cli("adduser", "romeo", "--password", "pw"))[:2],
                         (0, "created romeo@localhost\n"))
        code = (yield self.run_cli("adduser", "juliet@localhost", stdin="pw2\n"))[0]
        self.assertEqual(code, 0)
        self.assertEqual(self.usernames(), ["juliet", "romeo"])
        self.assertEqual((yield self.run_cli("list"))[:2],
                         (0, "juliet@localhost\nromeo@localhost\n"))
        self.assertEqual((yield self.run_cli("passwd", "romeo", stdin="new\n"))[0], 0)
        self.assertEqual((yield self.run_cli("deluser", "juliet"))[:2],
                         (0, "deleted juliet@localhost\n"))
        self.assertEqual(self.usernames(), ["romeo"])

    @defer.inlineCallbacks
    def test_deluser_removes_personal_data(self):
        """PEP nodes and items, subscriptions, vCard, private XML and bookmarks go too.

        A live server fills the database the protocol's way; deluser runs
        after it stopped; then no row anywhere names the account, and the
        other account's data is still there.
        """
        from tests.support import make_test_config, start_server
        from xmppd.testing.scansion import run_script

        config = make_test_config(
            self, server={"data_dir": str(self.database.parent.resolve())})
        live = start_server(self, config)
        self.assertEqual(config.database_path, self.database.resolve())
        for username in ("romeo", "juliet"):
            yield live.create_user(username, "password")
        result = yield run_script(PERSONAL_DATA_SCRIPT, "127.0.0.1", live.port, timeout=5.0,
                                  name="personal data")
        self.assertTrue(result.passed, result.failure_message)
        yield live.server.stopService()

        juliet = {
            "PEP nodes": "SELECT node FROM pubsub_nodes WHERE service = 'juliet@localhost'",
            "PEP items": "SELECT node, id FROM pubsub_items WHERE service = 'juliet@localhost'",
            "subscriptions": "SELECT service, node FROM pubsub_subscriptions "
                             "WHERE jid = 'juliet@localhost'",
            "vCard": "SELECT vcard FROM vcards WHERE username = 'juliet'",
            "private XML": "SELECT namespace FROM private_storage WHERE username = 'juliet'",
        }
        before = {what: self.rows(sql) for what, sql in juliet.items()}
        self.assertEqual(sorted(before["PEP nodes"]), [
            ("storage:bookmarks",), ("urn:example:mood",), ("urn:xmpp:avatar:data",),
            ("urn:xmpp:avatar:metadata",), ("urn:xmpp:bookmarks:1",)])
        self.assertIn(("urn:xmpp:bookmarks:1", "capulets@conference.localhost"),
                      before["PEP items"])
        self.assertEqual(len(before["PEP items"]), 5)
        self.assertEqual(sorted(before["subscriptions"]), [
            ("pubsub.localhost", "verona-news"), ("romeo@localhost", "urn:example:tune")])
        self.assertEqual(len(before["vCard"]), 1)
        self.assertEqual(before["private XML"], [("urn:example:notes",)])
        romeo_before = self.everything_naming("romeo")

        self.assertEqual((yield self.run_cli("deluser", "juliet"))[:2],
                         (0, "deleted juliet@localhost\n"))
        for what, sql in juliet.items():
            self.assertEqual(self.rows(sql), [], what)
        self.assertEqual(self.everything_naming("juliet"), [])
        # Romeo keeps all he had but Juliet's subscription to his node.
        self.assertEqual(self.everything_naming("romeo"),
                         [(table, row) for table, row in romeo_before
                          if not any("juliet" in str(value) for value in row)])
        self.assertEqual(len(self.everything_naming("romeo")), len(romeo_before) - 1)
        self.assertEqual(self.rows("SELECT node FROM pubsub_nodes "
                                   "WHERE service = 'pubsub.localhost'"), [("verona-news",)])

    def everything_naming(self, name):
        """(table, row) of every row of every table with a value that contains name."""
        connection = sqlite3.connect(self.database)
        self.addCleanup(connection.close)
        tables = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        found = []
        for table in tables:
            for row in connection.execute(f'SELECT * FROM "{table}"'):
                if any(isinstance(value, str) and name in value for value in row):
                    found.append((table, row))
        return sorted(found, key=repr)

    @defer.inlineCallbacks
    def test_password_never_printed(self):
        code, out, err = (yield self.run_cli("adduser", "romeo", stdin="hunter2\n"))
        self.assertEqual(code, 0)
        self.assertIn("created romeo@localhost", out)
        self.assertNotIn("hunter2", out + err)

    @defer.inlineCallbacks
    def test_failures(self):
        yield self.run_cli("adduser", "romeo", "--password", "pw")
        code, _, err = (yield self.run_cli("adduser", "romeo", "--password", "pw"))
        self.assertEqual((code, err), (1, "xmppdctl: error: account 'romeo' already exists\n"))
        self.assertEqual((yield self.run_cli("deluser", "nobody"))[0], 1)
        self.assertEqual((yield self.run_cli("passwd", "nobody", "--password", "x"))[0], 1)
        code, _, err = (yield self.run_cli("adduser", "x@example.org", "--password", "x"))
        self.assertEqual(code, 2)
        self.assertIn("serves localhost", err)
        code, _, err = (yield self.run_cli("adduser", "bad user", "--password", "x"))
        self.assertEqual(code, 1)
        self.assertIn("invalid username", err)
        code, _, err = (yield self.run_cli("adduser", "romeo2", stdin=""))
        self.assertEqual((code, err), (2, "xmppdctl: error: no password on standard input\n"))

    @defer.inlineCallbacks
    def test_bad_config(self):
        self.config.write_text("[c2s]\nprot = 1\n")
        code, _, err = (yield self.run_cli("list"))
        self.assertEqual(code, 2)
        self.assertEqual(err, f"xmppdctl: error: {self.config}: c2s.prot: unknown key\n")


class FastCommandTests(CommandTestCase):
    """xmppdctl fast: listing and revoking FAST tokens (XEP-0484)."""

    AGENTS = ("0b7a1c7e-1e6f-4a3e-9d0a-3b1c2d4e5f60", "d4565fa7-4d72-4749-b3d3-740edbf87770")

    def fill(self):
        """Two tokens of romeo's (one per user agent, one expired), one of juliet's."""
        connection = sqlite3.connect(self.database)
        self.addCleanup(connection.close)
        now = time.time()
        rows = [("romeo", self.AGENTS[0], now + 3600, "Conversations", "Pixel"),
                ("romeo", self.AGENTS[1], now - 10, None, None),
                ("juliet", self.AGENTS[0], now + 3600, None, None)]
        for index, (username, agent, expiry, software, device) in enumerate(rows):
            connection.execute(
                "INSERT INTO fast_tokens (username, agent, mechanism, token_key, issued, expiry, "
                "software, device) VALUES (?, ?, 'HT-SHA-256-NONE', x'00', ?, ?, ?, ?)",
                (username, agent, now - 60 - index, expiry, software, device))
        connection.commit()

    def tokens(self):
        return sorted(self.rows("SELECT username, agent FROM fast_tokens"))

    @defer.inlineCallbacks
    def test_list_and_revoke(self):
        yield self.run_cli("adduser", "romeo", "--password", "pw")
        yield self.run_cli("adduser", "juliet", "--password", "pw")
        self.fill()
        code, out, _ = yield self.run_cli("fast", "list", "romeo@localhost")
        self.assertEqual(code, 0)
        lines = out.splitlines()
        self.assertEqual(len(lines), 2)
        self.assertTrue(lines[0].startswith(self.AGENTS[0] + " HT-SHA-256-NONE issued "))
        self.assertIn(" expires ", lines[0])
        self.assertTrue(lines[0].endswith("(Conversations Pixel)"))
        self.assertTrue(lines[1].endswith(" expired"))
        self.assertEqual((yield self.run_cli("fast", "revoke", "romeo", self.AGENTS[1].upper()))
                         [:2], (0, "revoked 1 FAST token of romeo@localhost\n"))
        self.assertEqual(self.tokens(), [("juliet", self.AGENTS[0]), ("romeo", self.AGENTS[0])])
        self.assertEqual((yield self.run_cli("fast", "revoke", "romeo"))[:2],
                         (0, "revoked 1 FAST token of romeo@localhost\n"))
        self.assertEqual(self.tokens(), [("juliet", self.AGENTS[0])])
        self.assertEqual((yield self.run_cli("fast", "list", "romeo"))[:2], (0, ""))

    @defer.inlineCallbacks
    def test_bad_input(self):
        yield self.run_cli("adduser", "romeo", "--password", "pw")
        code, _, err = yield self.run_cli("fast", "revoke", "romeo", "not-a-uuid")
        self.assertEqual(code, 2)
        self.assertIn("not a user-agent id", err)
        code, _, err = yield self.run_cli("fast", "list", "nobody")
        self.assertEqual(code, 1)
        self.assertIn("no account", err)


class MamCommandTests(CommandTestCase):
    """xmppdctl mam: deleting, counting and expiring message archives."""

    def fill(self):
        """Romeo's archive: 3 messages 10, 5 and 1 days old; a room's: 2, 10 and 1 days old."""
        from xmppd.mam.store import INSERT, ArchiveSequence, archive_row

        connection = sqlite3.connect(self.database)
        self.addCleanup(connection.close)
        now = time.time()
        rows = [("romeo@localhost", "romeo", days) for days in (10, 5, 1)]
        rows += [("verona@conference.localhost", None, days) for days in (10, 1)]
        sequence = ArchiveSequence()
        for owner, account, days in sorted(rows, key=lambda row: -row[2]):
            connection.execute(INSERT, archive_row(
                sequence, owner, stamp=now - days * 86400, with_jid="juliet@localhost/balcony",
                direction="in", stanza="<message/>", account=account))
        connection.commit()

    def sizes(self):
        return dict(self.rows("SELECT owner, COUNT(*) FROM mam_archive GROUP BY owner"))

    @defer.inlineCallbacks
    def test_count_and_delete(self):
        yield self.run_cli("adduser", "romeo", "--password", "pw")
        self.fill()
        self.assertEqual((yield self.run_cli("mam", "count", "Romeo"))[:2],
                         (0, "romeo@localhost: 3\n"))
        self.assertEqual((yield self.run_cli("mam", "count", "verona@conference.localhost"))[:2],
                         (0, "verona@conference.localhost: 2\n"))
        self.assertEqual((yield self.run_cli("mam", "delete", "romeo@localhost"))[:2],
                         (0, "deleted the archive of romeo@localhost (3 messages)\n"))
        self.assertEqual(self.sizes(), {"verona@conference.localhost": 2})
        self.assertEqual((yield self.run_cli("mam", "delete", "verona@conference.localhost"))[:2],
                         (0, "deleted the archive of verona@conference.localhost (2 messages)\n"))
        self.assertEqual(self.sizes(), {})

    @defer.inlineCallbacks
    def test_expire(self):
        yield self.run_cli("adduser", "romeo", "--password", "pw")
        self.fill()
        self.assertEqual((yield self.run_cli("mam", "expire", "7d", "--rooms"))[:2],
                         (0, "deleted 1 archived message older than 7d\n"))
        self.assertEqual(self.sizes(), {"romeo@localhost": 3, "verona@conference.localhost": 1})
        self.assertEqual((yield self.run_cli("mam", "expire", "2d", "--accounts"))[:2],
                         (0, "deleted 2 archived messages older than 2d\n"))
        self.assertEqual(self.sizes(), {"romeo@localhost": 1, "verona@conference.localhost": 1})
        self.assertEqual((yield self.run_cli("mam", "expire", "3600"))[:2],
                         (0, "deleted 2 archived messages older than 3600\n"))
        self.assertEqual(self.sizes(), {})

    @defer.inlineCallbacks
    def test_works_before_anything_was_archived(self):
        yield self.run_cli("adduser", "romeo", "--password", "pw")
        self.assertEqual((yield self.run_cli("mam", "count", "romeo"))[:2],
                         (0, "romeo@localhost: 0\n"))
        self.assertEqual((yield self.run_cli("mam", "expire", "1w"))[:2],
                         (0, "deleted 0 archived messages older than 1w\n"))

    @defer.inlineCallbacks
    def test_bad_input(self):
        for args in (("mam", "expire", "soon"), ("mam", "expire", "5x"),
                     ("mam", "expire", "inf"), ("mam", "count", "a@b@c/d"),
                     ("mam", "delete", "room@conference.localhost/nick")):
            code, out, err = yield self.run_cli(*args)
            self.assertEqual((code, out), (2, ""), args)
            self.assertTrue(err.startswith("xmppdctl: error: "), err)
        self.assertEqual(cli.parse_age("36h"), 36 * 3600)
        self.assertEqual(cli.parse_age("2W"), 14 * 86400)
        self.assertEqual(cli.parse_age("90"), 90)




class CheckTests(unittest.TestCase):
    """xmppdctl check: a report line per finding; exit 0 when clean, 1 with problems."""

    def setUp(self):
        # Short: the default control socket lies in the data folder.
        self.folder = short_folder(self).resolve()
        self.config = self.folder / "xmppd.toml"

    @defer.inlineCallbacks
    def run_cli(self, *args):
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        code = yield cli.run(["-c", str(self.config), *args])
        return code, out.getvalue(), err.getvalue()

    def write(self, text="", cert=None, key=None, listen="tcp:0:interface=127.0.0.1"):
        from tests.support import make_test_certificate

        if cert is None:
            cert, key = make_test_certificate(self)
        self.config.write_text(
            f'[tls]\ncertificate = "{cert}"\nkey = "{key}"\n'
            f'[c2s]\nlisten = "{listen}"\ndirect_tls_listen = ""\n'
            '[s2s]\nlisten = ""\n' + text
        )

    @defer.inlineCallbacks
    def test_example_config(self):
        self.config.write_bytes((REPO / "conf" / "xmppd.toml").read_bytes())
        code, out, err = yield self.run_cli("check")
        lines = out.splitlines()
        self.assertEqual(lines[0], f"ok    config: {self.config} is valid (domain localhost)")
        self.assertEqual(lines[1], f"note  database: {self.folder}/data/xmppd.sqlite does not "
                                   "exist yet; created on first start")
        self.assertEqual(lines[2], "note  tls: no certificate configured; a self-signed one for "
                                   f"{DOMAINS} is generated at "
                                   f"{self.folder}/data/localhost.crt on first start "
                                   "(or now: xmppdctl cert)")
        # The listeners: clean where the port is free. (A developer machine may
        # run another XMPP server on 5222: then the report must say so.)
        expected, problems = [], 0
        for key, port, interface in (("c2s.listen", 5222, ""),
                                     ("c2s.direct_tls_listen", 5223, ""),
                                     ("http.listen", 5280, "127.0.0.1"),
                                     ("s2s.listen", 5269, "")):
            description = f"tcp:{port}" + (f":interface={interface}" if interface else "")
            if port_is_free(port, interface):
                expected.append(f"ok    {key}: {description}: port {port} is free")
            else:
                problems += 1
                expected.append(f"FAIL  {key}: {description}: the port is in use "
                                "(is xmppd already running?)")
        self.assertEqual(lines[3:7], expected)
        self.assertEqual(lines[7:], ["no problems"] if not problems else [f"{problems} problem"
                                                                          + "s" * (problems > 1)])
        self.assertEqual((code, err), (1 if problems else 0, ""))
        self.assertFalse((self.folder / "data").exists())  # check changes nothing

    @defer.inlineCallbacks
    def test_clean_report(self):
        self.write()
        code, out, _ = yield self.run_cli("check")
        self.assertEqual(code, 0, out)
        self.assertTrue(all(line.startswith(("ok ", "note ")) for line in out.splitlines()[:-1]))
        self.assertIn("ok    tls.key: ", out)
        self.assertIn(f"ok    tls.certificate: covers {DOMAINS}", out)
        self.assertIn("ok    c2s.listen: tcp:0:interface=127.0.0.1: any free port", out)
        self.assertTrue(out.endswith("no problems\n"))

    @defer.inlineCallbacks
    def test_problems(self):
        from twisted.internet import protocol, reactor

        from tests.support import make_test_certificate

        blocker = reactor.listenTCP(0, protocol.Factory(), interface="127.0.0.1")
        self.addCleanup(blocker.stopListening)
        port = blocker.getHost().port
        cert, _ = make_test_certificate(self, ("example.org",))
        _, key = make_test_certificate(self)
        self.write(cert=cert, key=key, listen=f"tcp:{port}:interface=127.0.0.1")
        code, out, _ = yield self.run_cli("check")
        self.assertEqual(code, 1)
        self.assertIn(f"FAIL  tls: {key}: this key does not belong to {cert}", out)
        self.assertIn(f"FAIL  c2s.listen: tcp:{port}:interface=127.0.0.1: the port is in use",
                      out)
        self.assertTrue(out.endswith("2 problems\n"), out)

        own_cert, own_key = make_test_certificate(self, ("example.org",))
        self.write(cert=own_cert, key=own_key)
        code, out, _ = yield self.run_cli("check")
        self.assertEqual(code, 1)
        self.assertIn(f"FAIL  tls.certificate: not valid for {DOMAINS}", out)

    @defer.inlineCallbacks
    def test_invalid_config_and_newer_database(self):
        self.config.write_text("[c2s]\nprot = 1\n")
        code, out, _ = yield self.run_cli("check")
        self.assertEqual((code, out), (1, f"FAIL  config: {self.config}: c2s.prot: unknown key"
                                          "\n1 problem\n"))
        self.write()
        (self.folder / "data").mkdir()
        database = sqlite3.connect(self.folder / "data" / "xmppd.sqlite")
        database.execute("PRAGMA user_version = 999")
        database.commit()
        database.close()
        code, out, _ = yield self.run_cli("check")
        self.assertEqual(code, 1)
        self.assertIn("schema version 999 is newer than this xmppd knows", out)

    def test_expiry(self):
        import datetime

        from xmppd import check
        from xmppd.config import load_config

        self.write()
        config = load_config(self.config)
        soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3 * 365 - 5)
        later = soon + datetime.timedelta(days=30)
        levels = {f.level for f in check.check_certificate(config, soon)}
        self.assertIn("warn", levels)
        self.assertNotIn("FAIL", levels)
        expired = [str(f) for f in check.check_certificate(config, later) if f.level == "FAIL"]
        self.assertEqual(len(expired), 1)
        self.assertRegex(expired[0], r"^FAIL  tls.certificate: expired on \d{4}-\d\d-\d\d$")


class CertTests(unittest.TestCase):
    """xmppdctl cert: generate a self-signed certificate, or import one."""

    def setUp(self):
        self.folder = Path(self.mktemp()).resolve()
        self.folder.mkdir()
        self.config = self.folder / "xmppd.toml"
        self.config.write_bytes((REPO / "conf" / "xmppd.toml").read_bytes())
        self.cert = self.folder / "data" / "localhost.crt"
        self.key = self.folder / "data" / "localhost.key"

    run_cli = CheckTests.run_cli

    @defer.inlineCallbacks
    def test_generate(self):
        from xmppd import tls

        code, out, _ = yield self.run_cli("cert")
        self.assertEqual(code, 0)
        self.assertIn(f"generated a self-signed certificate for {DOMAINS}: {self.cert} "
                      f"(key: {self.key})", out)
        self.assertEqual(self.key.stat().st_mode & 0o777, 0o600)
        self.assertEqual(tls.certificate_mismatches(
            self.cert, ["localhost", "conference.localhost", "pubsub.localhost",
                        "upload.localhost"]), [])
        tls.server_tls_options(self.cert, self.key)
        first = self.cert.read_bytes()

        code, _, err = yield self.run_cli("cert", "generate")
        self.assertEqual((code, err), (1, f"xmppdctl: error: {self.cert} exists; use --force "
                                          "to replace it\n"))
        self.assertEqual(self.cert.read_bytes(), first)
        code, _, _ = yield self.run_cli("cert", "generate", "--force")
        self.assertEqual(code, 0)
        self.assertNotEqual(self.cert.read_bytes(), first)
        tls.server_tls_options(self.cert, self.key)
        self.assertEqual(sorted(p.name for p in self.cert.parent.iterdir()),
                         ["localhost.crt", "localhost.key"])

        code, out, _ = yield self.run_cli("check")
        self.assertIn(f"ok    tls.certificate: covers {DOMAINS}", out)

    @defer.inlineCallbacks
    def test_import(self):
        from tests.support import make_test_certificate

        cert, key = make_test_certificate(self)
        code, out, _ = yield self.run_cli("cert", "import", str(cert), str(key))
        self.assertEqual(code, 0, out)
        self.assertEqual(self.cert.read_bytes(), cert.read_bytes())
        self.assertEqual(self.key.read_bytes(), key.read_bytes())
        self.assertEqual(self.key.stat().st_mode & 0o777, 0o600)

        wrong_cert, wrong_key = make_test_certificate(self, ("example.org",))
        code, _, err = yield self.run_cli("cert", "import", str(wrong_cert), str(wrong_key))
        self.assertEqual(code, 1)
        self.assertIn(f"not valid for {DOMAINS}; use --force", err)
        self.assertEqual(self.cert.read_bytes(), cert.read_bytes())
        code, _, _ = yield self.run_cli("cert", "import", "--force", str(wrong_cert),
                                        str(wrong_key))
        self.assertEqual(code, 0)
        self.assertEqual(self.cert.read_bytes(), wrong_cert.read_bytes())

        code, _, err = yield self.run_cli("cert", "import", str(cert), str(wrong_key))
        self.assertEqual(code, 1)
        self.assertIn("does not belong to", err)
        garbage = self.folder / "garbage.pem"
        garbage.write_text("not a certificate")
        code, _, err = yield self.run_cli("cert", "import", str(garbage), str(key))
        self.assertEqual((code, err), (1, f"xmppdctl: error: {garbage}: not a PEM certificate\n"))
        self.assertEqual(self.cert.read_bytes(), wrong_cert.read_bytes())


class UploadCommandTests(CommandTestCase):
    """xmppdctl upload: listing and purging HTTP uploads (rows and files)."""

    def fill(self):
        """romeo: a file 10 days old and an open slot; juliet: a file 1 day old."""
        from xmppd.upload.store import UploadStore

        connection = sqlite3.connect(self.database)
        self.addCleanup(connection.close)
        now = time.time()
        folder = UploadStore(None, self.database.parent / "uploads").folder
        folder.mkdir(parents=True, exist_ok=True)
        rows = [("a" * 32, "romeo", now - 10 * 86400, now), ("b" * 32, "romeo", now, None),
                ("c" * 32, "juliet", now - 86400, now)]
        for slot, owner, created, uploaded in rows:
            connection.execute(
                "INSERT INTO uploads (id, owner, filename, size, content_type, created, "
                "slot_expires, uploaded) VALUES (?, ?, 'f.txt', 3, 'text/plain', ?, ?, ?)",
                (slot, owner, created, created + 300, uploaded))
            (folder / slot).write_bytes(b"abc")
        connection.commit()
        return folder

    @defer.inlineCallbacks
    def test_list_and_purge(self):
        yield self.run_cli("list")  # creates the database
        folder = self.fill()
        code, out, _ = yield self.run_cli("upload", "list")
        self.assertEqual(code, 0)
        self.assertEqual([line.split()[:2] for line in out.splitlines()],
                         [["a" * 32, "romeo@localhost"], ["c" * 32, "juliet@localhost"],
                          ["b" * 32, "romeo@localhost"]])
        code, out, _ = yield self.run_cli("upload", "list", "Juliet@localhost")
        self.assertEqual([line.split()[0] for line in out.splitlines()], ["c" * 32])
        self.assertIn(" uploaded f.txt", out)
        self.assertEqual((yield self.run_cli("upload", "purge", "--older-than", "2d"))[:2],
                         (0, "deleted 1 upload\n"))
        self.assertFalse((folder / ("a" * 32)).exists())
        self.assertEqual((yield self.run_cli("upload", "purge", "romeo"))[:2],
                         (0, "deleted 1 upload of romeo@localhost\n"))
        self.assertEqual(sorted(p.name for p in folder.iterdir()), ["c" * 32])
        self.assertEqual((yield self.run_cli("upload", "purge"))[0], 2)
        self.assertEqual((yield self.run_cli("upload", "purge", "--older-than", "soon"))[0], 2)

    @defer.inlineCallbacks
    def test_deluser_deletes_uploads(self):
        yield self.run_cli("adduser", "juliet", stdin="pw\n")
        folder = self.fill()
        self.assertEqual((yield self.run_cli("deluser", "juliet"))[0], 0)
        self.assertEqual(self.rows("SELECT id FROM uploads WHERE owner = 'juliet'"), [])
        self.assertFalse((folder / ("c" * 32)).exists())
