"""A real web client in a real browser: Converse.js in headless Chromium over WebSocket and BOSH.

A live xmppd (the full default configuration, with the HTTPS listener on)
serves a page that loads Converse.js (the npm package, installed outside the
repository: see README's "Browser test"). Headless Chromium opens the page,
driven over the DevTools protocol (a WebSocket, spoken with autobahn, which
xmppd already uses). Converse finds the WebSocket through XEP-0156 itself:
it fetches ``https://localhost/.well-known/host-meta`` (Chromium maps
``localhost`` to the server's HTTPS port with ``--host-resolver-rules`` and
accepts the test certificate) and connects to the ``wss://`` URL listed
there (a second case turns the WebSocket off: host-meta lists BOSH alone and
Converse logs in over ``https://localhost/http-bind``). The test waits until
romeo is logged in and his roster shows, saves a screenshot, opens the chat
with juliet, lets a slixmpp client log in as juliet and send a message, and
checks the text appears in the page.

Screenshots go to ``browser/`` in the trial temp dir (``_trial_temp/`` or
``_trial_temp/N/`` with ``-j``); the test logs their paths.

Skips, with what to install, when Chromium or Converse.js is missing.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import sys
from pathlib import Path

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, endpoints, protocol, reactor
from twisted.internet.error import ProcessExitedAlready
from twisted.python import log
from twisted.trial import unittest
from twisted.web import static

from tests.support import REPO, process_output, start_server

SEND = Path(__file__).resolve().parent / "interop" / "slixmpp_send.py"
#: Where README and .ci/run install Converse.js (npm install --prefix ...).
CONVERSE_PREFIXES = (
    REPO / "tests" / ".cache" / "converse",
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "xmppd-tests" / "converse",
)
#: Seconds for each step in the browser (start, login, message).
STEP = 30


def converse_dist() -> Path | None:
    """The ``dist`` folder of an installed converse.js package, or None."""
    candidates = [Path(os.environ["XMPPD_CONVERSE_DIST"])] if os.environ.get(
        "XMPPD_CONVERSE_DIST") else []
    candidates += [prefix / "node_modules" / "converse.js" / "dist"
                   for prefix in CONVERSE_PREFIXES]
    for folder in candidates:
        if (folder / "converse.min.js").is_file() and (folder / "converse.min.css").is_file():
            return folder
    return None


def chromium_binary() -> str | None:
    """The Chromium executable (``XMPPD_CHROMIUM`` or ``chromium`` on PATH), or None."""
    return os.environ.get("XMPPD_CHROMIUM") or shutil.which("chromium")


def missing() -> str | None:
    """Why the test cannot run, or None."""
    if chromium_binary() is None:
        return "Chromium is not installed (apt-get install chromium)"
    if converse_dist() is None:
        return ("Converse.js is not installed (apt-get install nodejs npm; "
                "npm install --prefix tests/.cache/converse converse.js@14.0.0)")
    return None


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>xmppd: Converse.js</title>
<link rel="stylesheet" href="/converse/dist/converse.min.css">
</head>
<body>
<script type="module">
// Converse.js is an ES module (since version 12).
import converse from "/converse/dist/converse.min.js";
// What the test reads: errors Converse reports and a promise per milestone.
window.xmppdTest = {errors: []};
window.xmppdTest.connected = new Promise((resolve, reject) => {
  converse.plugins.add("xmppd-test", {
    initialize() {
      const _converse = this._converse;
      window.xmppdTest.converse = _converse;
      const { api } = _converse;
      api.listen.on("connected", () => resolve(api.settings.get("websocket_url")
                                               || api.settings.get("bosh_service_url")));
      api.listen.on("disconnected", () => reject(new Error("disconnected")));
    }
  });
});
// Resolves once the page's text contains `text` (watched, not polled).
window.xmppdTest.waitForText = (text, ms) => new Promise((resolve, reject) => {
  const found = () => document.body.innerText.includes(text);
  if (found()) { resolve(true); return; }
  const observer = new MutationObserver(() => {
    if (found()) { observer.disconnect(); clearTimeout(timer); resolve(true); }
  });
  const timer = setTimeout(() => {
    observer.disconnect();
    reject(new Error(`no ${JSON.stringify(text)} in the page after ${ms} ms: ` +
                     document.body.innerText.slice(0, 500)));
  }, ms);
  observer.observe(document.body, {childList: true, subtree: true, characterData: true});
});
converse.initialize({
  assets_path: "/converse/dist/",
  discover_connection_methods: true,
  auto_login: true,
  auto_reconnect: false,
  jid: JID,
  password: PASSWORD,
  view_mode: "fullscreen",
  i18n: "en",
  play_sounds: false,
  show_controlbox_by_default: true,
  whitelisted_plugins: ["xmppd-test"],
  loglevel: "info",
});
</script>
</body>
</html>
"""


class DevToolsError(Exception):
    """A DevTools command failed, or script in the page threw."""


class DevTools(WebSocketClientProtocol):
    """A DevTools protocol client: ``call`` sends a command, fires with its result."""

    def __init__(self):
        super().__init__()
        self.opened: defer.Deferred = defer.Deferred()
        self.pending: dict[int, defer.Deferred] = {}
        self.last_id = 0
        #: Console lines and exceptions of the page, for failure messages.
        self.console: list[str] = []
        #: Event name -> Deferreds waiting for its next occurrence.
        self.waiting: dict[str, list[defer.Deferred]] = {}

    def onOpen(self):  # noqa: N802 - autobahn's API
        """Ready for commands."""
        self.opened.callback(self)

    def onMessage(self, payload, isBinary):  # noqa: N802, N803 - autobahn's API
        """A command's answer, or an event."""
        message = json.loads(payload)
        if "id" in message:
            waiting = self.pending.pop(message["id"], None)
            if waiting is None:
                return
            if "error" in message:
                waiting.errback(DevToolsError(message["error"]))
            else:
                waiting.callback(message.get("result", {}))
        elif message.get("method") in self.waiting:
            for waiting in self.waiting.pop(message["method"]):
                waiting.callback(message.get("params", {}))
        if message.get("method") == "Runtime.consoleAPICalled":
            params = message["params"]
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.console.append(f"console.{params['type']}: {text}"[:1000])
        elif message.get("method") == "Runtime.exceptionThrown":
            details = message["params"]["exceptionDetails"]
            self.console.append(f"exception: {details.get('exception', {}).get('description')}"
                                [:1000])

    def onClose(self, wasClean, code, reason):  # noqa: N802, N803 - autobahn's API
        """Fail what is still waiting."""
        if not self.opened.called:
            self.opened.errback(ConnectionError(f"DevTools: {reason}"))
        pending, self.pending = self.pending, {}
        for waiting in pending.values():
            waiting.errback(ConnectionError(f"DevTools closed: {reason}"))

    def next_event(self, method: str) -> defer.Deferred:
        """Fires with the parameters of the next event of that name."""
        waiting = defer.Deferred()
        self.waiting.setdefault(method, []).append(waiting)
        return waiting

    def call(self, method: str, session: str | None = None, **params) -> defer.Deferred:
        """Send a command (to a page's ``session``); fires with its result."""
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        waiting = defer.Deferred()
        self.pending[self.last_id] = waiting
        self.sendMessage(json.dumps(message).encode())
        return waiting

    @defer.inlineCallbacks
    def evaluate(self, session: str, expression: str):
        """Run script in the page, waiting for a promise; its JSON value."""
        result = yield self.call("Runtime.evaluate", session, expression=expression,
                                 awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise DevToolsError(details.get("exception", {}).get("description")
                                or details.get("text"))
        return result["result"].get("value")


class Chromium(protocol.ProcessProtocol):
    """A headless Chromium child: fires ``listening`` with its DevTools WebSocket URL."""

    def __init__(self):
        self.listening: defer.Deferred = defer.Deferred()
        self.ended: defer.Deferred = defer.Deferred()
        self.output = b""

    def errReceived(self, data):  # noqa: N802 - Twisted's API
        """Chromium prints the DevTools address on stderr."""
        self.output += data
        found = re.search(rb"DevTools listening on (ws://\S+)", self.output)
        if found and not self.listening.called:
            self.listening.callback(found.group(1).decode())

    outReceived = errReceived

    def processEnded(self, reason):  # noqa: N802 - Twisted's API
        """Chromium exited (before it listened: an error with its output)."""
        if not self.listening.called:
            self.listening.errback(RuntimeError(
                "Chromium exited: " + self.output.decode(errors="replace")[-3000:]))
        self.ended.callback(None)


class ConverseTests(unittest.TestCase):
    """Converse.js logs in over xmppd's WebSocket or BOSH and shows a message from slixmpp."""

    timeout = 120

    def setUp(self):
        reason = missing()
        if reason:
            raise unittest.SkipTest(reason)

    @defer.inlineCallbacks
    def start_server(self, **sections):
        """The server (defaults plus an HTTPS listener) with the page and romeo and juliet."""
        from xmppd.storage.roster import RosterItem

        server = start_server(self, http={"listen": "tcp:0:interface=127.0.0.1",
                                          "tls_listen": "tcp:0:interface=127.0.0.1"}, **sections)
        yield server.create_user("romeo", "r0meo-pw")
        yield server.create_user("juliet", "jul1et-pw")
        roster = server.server.session_manager.roster_store
        yield roster.save("romeo", RosterItem("juliet@localhost", name="Juliet",
                                              subscription="both"))
        yield roster.save("juliet", RosterItem("romeo@localhost", subscription="both"))
        page = PAGE.replace("JID", json.dumps("romeo@localhost")).replace(
            "PASSWORD", json.dumps("r0meo-pw"))
        http = server.server.http
        http.mount("/converse/dist", static.File(str(converse_dist())))
        http.mount("/converse/index.html", static.Data(page.encode(), "text/html; charset=utf-8"))
        return server

    @defer.inlineCallbacks
    def start_browser(self, https_port: int):
        """Headless Chromium, ``localhost`` mapped to the HTTPS port; its DevTools client."""
        profile = Path(self.mktemp()).resolve()
        profile.mkdir(parents=True)
        args = [
            chromium_binary(), "--headless", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--disable-background-networking", "--disable-component-update", "--mute-audio",
            f"--user-data-dir={profile}", "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
            # The test's self-signed certificate; https://localhost/ is the server.
            "--ignore-certificate-errors",
            f"--host-resolver-rules=MAP localhost 127.0.0.1:{https_port}",
            "--window-size=1280,800", "about:blank",
        ]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to sandbox as root
        chromium = Chromium()
        transport = reactor.spawnProcess(chromium, args[0], args, env=dict(os.environ))

        @defer.inlineCallbacks
        def stop():
            if chromium.ended.called:
                return
            try:
                transport.signalProcess("TERM")
            except ProcessExitedAlready:
                return
            try:
                yield chromium.ended.addTimeout(5, reactor)
            except defer.TimeoutError:
                try:
                    transport.signalProcess("KILL")
                except ProcessExitedAlready:
                    pass
                yield chromium.ended

        self.addCleanup(stop)
        url = yield chromium.listening.addTimeout(STEP, reactor)
        port = int(re.match(r"ws://[^:/]+:(\d+)/", url).group(1))
        factory = WebSocketClientFactory(url)
        factory.protocol = DevTools
        factory.setProtocolOptions(maxMessagePayloadSize=0, maxFramePayloadSize=0)
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        devtools = yield endpoint.connect(factory)
        self.addCleanup(lambda: devtools.transport.loseConnection())
        yield devtools.opened
        return devtools

    def screenshot(self, devtools: DevTools, session: str, name: str) -> defer.Deferred:
        """Save a PNG of the page to ``browser/NAME.png`` in the trial temp dir; fires with it."""
        folder = Path("browser").resolve()
        folder.mkdir(exist_ok=True)

        def save(result):
            path = folder / f"{name}.png"
            path.write_bytes(base64.b64decode(result["data"]))
            log.msg(f"screenshot: {path}")
            return path

        return devtools.call("Page.captureScreenshot", session, format="png").addCallback(save)

    def test_login_over_discovered_websocket_and_receive_a_message(self):
        return self.login_and_receive("xmpp-websocket", "wss", "")

    @defer.inlineCallbacks
    def test_login_over_discovered_bosh_and_receive_a_message(self):
        # Without the WebSocket, host-meta lists BOSH alone: Converse takes it.
        yield self.login_and_receive("http-bind", "https", "-bosh", websocket={"path": ""})
        self.assertIsNone(self.server.server.websocket)
        self.assertEqual(len(self.server.server.bosh.sessions), 1)

    @defer.inlineCallbacks
    def login_and_receive(self, path, scheme, suffix, **sections):
        """Converse logs in over the URL host-meta lists and shows a message from slixmpp."""
        server = self.server = yield self.start_server(**sections)
        https_port = server.port_of("https")
        devtools = yield self.start_browser(https_port)
        target = yield devtools.call("Target.createTarget", url="about:blank")
        attached = yield devtools.call("Target.attachToTarget",
                                       targetId=target["targetId"], flatten=True)
        session = attached["sessionId"]
        yield devtools.call("Runtime.enable", session)
        yield devtools.call("Page.enable", session)

        def page_log(failure):
            """Add the page's console to a failure."""
            raise DevToolsError(f"{failure.getErrorMessage()}\npage console:\n"
                                + "\n".join(devtools.console[-40:]))

        # The page is https://localhost/ (Chromium's mapping): host-meta is
        # fetched from the domain itself, as a real deployment would have it.
        loaded = devtools.next_event("Page.loadEventFired")
        navigated = yield devtools.call("Page.navigate", session,
                                        url="https://localhost/converse/index.html")
        self.assertNotIn("errorText", navigated)
        yield loaded.addTimeout(STEP, reactor)
        connected_url = yield devtools.evaluate(session, (
            "Promise.race([window.xmppdTest.connected, new Promise((_, reject) => "
            f"setTimeout(() => reject(new Error('not connected')), {STEP * 1000}))])"
        )).addErrback(page_log)
        # The URL Converse connected to is the one host-meta lists.
        self.assertEqual(connected_url, f"{scheme}://localhost:{https_port}/{path}")
        # Logged in: the roster in the control box lists juliet.
        yield devtools.evaluate(session, f"window.xmppdTest.waitForText('Juliet', {STEP * 1000})"
                                ).addErrback(page_log)
        yield self.screenshot(devtools, session, "converse-logged-in" + suffix)

        yield devtools.evaluate(
            session, "window.xmppdTest.converse.api.chats.open('juliet@localhost')"
            ".then(() => true)").addErrback(page_log)
        body = "Hello Romeo, from slixmpp over TCP"
        out, err, code = yield process_output(
            sys.executable,
            [str(SEND), "127.0.0.1", str(server.port), str(server.config.tls.certificate),
             "juliet@localhost", "jul1et-pw", "romeo@localhost", body],
            reactor=reactor,
        )
        self.assertEqual(code, 0, out.decode() + err.decode()[-3000:])

        yield devtools.evaluate(session, f"window.xmppdTest.waitForText({json.dumps(body)}, "
                                f"{STEP * 1000})").addErrback(page_log)
        # Converse's own state agrees: a message from juliet in the chat with her.
        sender = yield devtools.evaluate(session, (
            "(async () => { const chat = await window.xmppdTest.converse.api.chats.get("
            "'juliet@localhost');"
            f" const m = chat.messages.findWhere({{body: {json.dumps(body)}}});"
            " return m ? m.get('from') : null; })()"
        ))
        self.assertEqual(sender.split("/")[0], "juliet@localhost")
        yield self.screenshot(devtools, session, "converse-message" + suffix)
