"""Interop: a real XMPP client library (slixmpp) against a live xmppd."""

import sys
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.trial import unittest

from tests.support import process_output, start_server

PAIR = Path(__file__).resolve().parent / "interop" / "slixmpp_pair.py"
SERVER_INFO = Path(__file__).resolve().parent / "interop" / "slixmpp_server_info.py"
CARBONS = Path(__file__).resolve().parent / "interop" / "slixmpp_carbons.py"
UPLOAD = Path(__file__).resolve().parent / "interop" / "slixmpp_upload.py"


@defer.inlineCallbacks
def pair_server(testcase, friends=False, **sections):
    """A live server (STARTTLS required) with romeo and juliet, optionally subscribed both ways."""
    from xmppd.storage.roster import RosterItem

    server = start_server(testcase, c2s={"require_encryption": True}, **sections)
    yield server.create_user("romeo", "r0meo-pw")
    yield server.create_user("juliet", "jul1et-pw")
    if friends:
        roster = server.server.session_manager.roster_store
        yield roster.save("romeo", RosterItem("juliet@localhost", subscription="both"))
        yield roster.save("juliet", RosterItem("romeo@localhost", subscription="both"))
    return server


@defer.inlineCallbacks
def run_script(testcase, server, script, *extra):
    """Run an interop script as romeo and juliet; its output (the test fails on exit != 0)."""
    out, err, code = yield process_output(
        sys.executable,
        [
            str(script), "127.0.0.1", str(server.port), str(server.config.tls.certificate),
            "romeo@localhost", "r0meo-pw", "juliet@localhost", "jul1et-pw", *extra,
        ],
        reactor=reactor,
    )
    output = out.decode()
    testcase.assertEqual(code, 0, output + err.decode()[-3000:])
    return output


class SlixmppTests(unittest.TestCase):
    """slixmpp logs in with SCRAM-SHA-256 over STARTTLS and chats."""

    timeout = 60

    @defer.inlineCallbacks
    def run_pair(self, romeo_password):
        """Run the slixmpp pair against a fresh server; fires with (stdout, stderr, code)."""
        server = start_server(self, c2s={"require_encryption": True})
        yield server.create_user("romeo", "r0meo-pw")
        yield server.create_user("juliet", "jul1et-pw")
        out, err, code = yield process_output(
            sys.executable,
            [
                str(PAIR), "127.0.0.1", str(server.port), str(server.config.tls.certificate),
                "romeo@localhost", romeo_password, "juliet@localhost", "jul1et-pw",
            ],
            reactor=reactor,
        )
        return out.decode(), err.decode(), code

    @defer.inlineCallbacks
    def test_login_subscribe_presence_and_chat(self):
        output, errors, code = yield self.run_pair("r0meo-pw")
        self.assertEqual(code, 0, output + errors[-3000:])
        self.assertIn("first online as romeo@localhost/", output)
        self.assertIn("mechanism=SCRAM-SHA-256", output)
        self.assertRegex(output, r"tls=TLSv1\.[23]")
        self.assertIn("second saw-presence romeo@localhost/", output)
        self.assertIn("first saw-presence juliet@localhost/", output)
        self.assertIn("second got-message from=romeo@localhost body=hello from slixmpp", output)

    @defer.inlineCallbacks
    def test_wrong_password_is_refused(self):
        output, errors, code = yield self.run_pair("wrong")
        # 2: the script saw its authentication refused (not a timeout, not a signal).
        self.assertEqual(code, 2, output + errors[-3000:])
        self.assertIn("first auth-failed", output)


class SlixmppServerInfoTests(unittest.TestCase):
    """slixmpp's XEP-0012, XEP-0092 and XEP-0030/0128 plugins against the new modules."""

    timeout = 60

    @defer.inlineCallbacks
    def test_uptime_version_contact_addresses_and_last_activity(self):
        from xmppd.storage.roster import RosterItem

        server = start_server(self, c2s={"require_encryption": True},
                              contact_info={"abuse": ["mailto:abuse@localhost"]})
        yield server.create_user("romeo", "r0meo-pw")
        yield server.create_user("juliet", "jul1et-pw")
        roster = server.server.session_manager.roster_store
        yield roster.save("juliet", RosterItem("romeo@localhost", subscription="from"))
        yield roster.save("romeo", RosterItem("juliet@localhost", subscription="to"))
        out, err, code = yield process_output(
            sys.executable,
            [
                str(SERVER_INFO), "127.0.0.1", str(server.port),
                str(server.config.tls.certificate),
                "romeo@localhost", "r0meo-pw", "juliet@localhost", "jul1et-pw",
            ],
            reactor=reactor,
        )
        output = out.decode()
        self.assertEqual(code, 0, output + err.decode()[-3000:])
        self.assertRegex(output, r"uptime seconds=\d+")
        self.assertIn("version name=xmppd", output)
        self.assertIn("jabber:iq:last", output)
        self.assertIn("abuse-addresses mailto:abuse@localhost", output)
        self.assertRegex(output, r"contact seconds=\d+ status=gone fishing")


class SlixmppCarbonsTests(unittest.TestCase):
    """slixmpp's XEP-0280 plugin: two resources of one user see each other's chats."""

    timeout = 60

    @defer.inlineCallbacks
    def test_received_and_sent_carbons(self):
        server = yield pair_server(self)
        output = yield run_script(self, server, CARBONS)
        self.assertIn("one carbons-enabled as romeo@localhost/one", output)
        self.assertIn("two carbons-enabled as romeo@localhost/two", output)
        self.assertRegex(output, r"two carbon-received from=juliet@localhost/\S+ "
                                 r"to=romeo@localhost/one body=to one")
        self.assertRegex(output, r"two carbon-sent from=romeo@localhost/one "
                                 r"to=juliet@localhost/\S+ body=answer from one")
        self.assertNotIn("one carbon-", output)
        self.assertNotIn("other carbon-", output)


PUSH = Path(__file__).resolve().parent / "interop" / "slixmpp_push.py"


class SlixmppPushTests(unittest.TestCase):
    """slixmpp's XEP-0352 plugin and an XEP-0357 registration; the app server a component."""

    timeout = 60

    @defer.inlineCallbacks
    def test_inactive_phone_gets_held_presence_first_and_a_push(self):
        from twisted.words.protocols.jabber import component, xmlstream

        server = yield pair_server(self, friends=True,
                                   components={"secrets": {"push.localhost": "s3cret"}})

        # The app server: an XEP-0114 component that answers every push.
        pushes = []
        authenticated = defer.Deferred()
        factory = component.componentFactory("push.localhost", "s3cret")

        def connected(xs):
            factory.stopTrying()
            self.addCleanup(lambda: xs.transport and xs.transport.loseConnection())

        def answer(xs, iq):
            pushes.append(iq)
            xs.send(xmlstream.toResponse(iq, "result"))

        def authd(xs):
            xs.addObserver("/iq[@type='set']", lambda iq: answer(xs, iq))
            authenticated.callback(xs)

        factory.addBootstrap(xmlstream.STREAM_CONNECTED_EVENT, connected)
        factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, authd)
        connector = reactor.connectTCP("127.0.0.1", server.port_of("components"), factory)
        self.addCleanup(connector.disconnect)
        yield authenticated

        output = yield run_script(self, server, PUSH)
        self.assertIn("phone online csi=True", output)
        self.assertIn("phone push-enabled type=result", output)
        # Held while inactive (with a delay), then the message that flushed it.
        self.assertIn("phone saw presence show=away delayed=True | message body=wake up", output)
        [note] = pushes
        self.assertEqual((note["from"], note["to"]), ("romeo@localhost", "push.localhost"))
        xml = note.toXml()
        self.assertIn("phone-node", xml)
        self.assertIn("urn:xmpp:push:summary", xml)
        self.assertRegex(xml, r"<field var=['\"]message-count['\"]><value>1</value>")
        self.assertIn("eruwieru", xml)
        self.assertNotIn("wake up", xml)  # no body by default


RESUME = Path(__file__).resolve().parent / "interop" / "slixmpp_resume.py"


class SlixmppResumeTests(unittest.TestCase):
    """slixmpp's XEP-0198 plugin: a killed connection loses nothing, doubles nothing."""

    timeout = 60

    @defer.inlineCallbacks
    def run_script(self, *extra, **sections):
        server = yield pair_server(self, friends=True, **sections)
        output = yield run_script(self, server, RESUME, *extra)
        return output

    @defer.inlineCallbacks
    def test_resume_after_a_killed_connection(self):
        output = yield self.run_script("resume", "100")
        self.assertIn("phone sm-enabled resumable=True", output)
        self.assertIn("phone resumed as romeo@localhost/phone", output)
        self.assertIn("phone got-message body=while you were gone 0 delayed=True", output)
        self.assertIn("phone in-order=True count=100", output)
        self.assertNotIn("other saw-unavailable from=romeo@localhost/phone", output)

    @defer.inlineCallbacks
    def test_expiry_then_offline_storage(self):
        output = yield self.run_script("expire", "100", sm={"resume_timeout": 1.0})
        self.assertIn("other saw-unavailable from=romeo@localhost/phone", output)
        self.assertNotIn("phone resumed", output)
        self.assertIn("phone got-message body=while you were gone 0 delayed=True", output)
        self.assertIn("phone in-order=True count=100", output)


class SlixmppUploadTests(unittest.TestCase):
    """slixmpp's xep_0363 plugin uploads; the files come back over HTTP."""

    timeout = 60

    @defer.inlineCallbacks
    def test_upload_and_download(self):
        server = yield pair_server(self, upload={"max_file_size": 300000})
        output = yield run_script(self, server, UPLOAD)
        self.assertIn("uploaded image service=upload.localhost max=300000", output)
        self.assertIn("uploaded text", output)
        self.assertIn("big file refused by the plugin", output)
        self.assertIn("image status=200 type=image/png same=True disposition=None", output)
        self.assertIn("range status=206 same=True", output)
        self.assertIn("text status=200 body=to be or not to be "
                      "disposition=attachment; filename*=UTF-8''notes.txt", output)
        uploads = yield server.server.upload.store.list("romeo")
        self.assertEqual(sorted((u.filename, u.size) for u in uploads),
                         [("notes.txt", 18), ("photo.png", 200000)])
