"""Fakes and a base test case for the session manager's tests.

The session manager runs against a real :class:`xmppd.router.Router`, a real
SQLite database in a temporary file and :class:`FakeSession` objects standing
in for c2s streams. A :class:`Recorder` serves ``remote.example`` so tests can
see what would leave the server.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from twisted.internet import defer, task
from twisted.trial import unittest
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish
from wokkel.generic import parseXml

from xmppd.config import config_from_dict
from xmppd.router import Router
from xmppd.sm.manager import SessionManager
from xmppd.storage.accounts import AccountStore
from xmppd.storage.database import Database
from xmppd.storage.roster import RosterStore

DOMAIN = "localhost"
REMOTE = "remote.example"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
ROSTER_GET = "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>"


def stanza(xml: str) -> domish.Element:
    """Parse a stanza as a c2s stream would (default namespace jabber:client)."""
    root = parseXml(f"<wrapper xmlns='jabber:client'>{xml}</wrapper>".encode())
    return root.firstChildElement()


def error_condition(element: domish.Element) -> str | None:
    """The defined condition of a stanza error, or None if it is not an error."""
    if element.getAttribute("type") != "error":
        return None
    for child in element.elements():
        if child.name == "error":
            for condition in child.elements():
                if condition.uri == NS_STANZAS and condition.name != "text":
                    return condition.name
    return None


class TimerClock(task.Clock):
    """A fake clock for the session manager's timers (request timeouts).

    ``advance`` drives the timers; zero-delay calls (the manager's "idle
    yet?" check, which ``wait_idle`` relies on while the database works on
    real threads) still run on the real reactor's next turn.
    """

    def callLater(self, delay, f, *args, **kw):  # noqa: N802 - Twisted's API
        """Schedule a call: on this clock, or on the real reactor when due at once."""
        if delay <= 0:
            from twisted.internet import reactor

            return reactor.callLater(0, f, *args, **kw)
        return super().callLater(delay, f, *args, **kw)


class FakeSession:
    """Stands in for a client connection: records what is written to it.

    ``session`` is the :class:`~xmppd.sm.session.Session` bound on it.
    """

    def __init__(self) -> None:
        self.jid: jid.JID | None = None
        self.session = None
        self.closing = False
        self.sent: list[domish.Element] = []
        self.closed: list[tuple[str, str | None]] = []

    def write_stanza(self, element: domish.Element) -> None:
        """Record a stanza written to the client."""
        self.sent.append(element)

    def stream_error(self, condition: str, text: str | None = None) -> None:
        """Record a stream error."""
        self.closed.append((condition, text))

    def take(self, name: str | None = None) -> list[domish.Element]:
        """Return and forget what was sent (only elements with that name, if given)."""
        if name is None:
            taken, self.sent = self.sent, []
            return taken
        taken = [e for e in self.sent if e.name == name]
        self.sent = [e for e in self.sent if e.name != name]
        return taken


class Recorder:
    """A destination for a remote domain: records the stanzas routed to it."""

    def __init__(self) -> None:
        self.stanzas: list[domish.Element] = []

    def send(self, element: domish.Element) -> None:
        """Record a routed stanza."""
        self.stanzas.append(element)

    def take(self) -> list[domish.Element]:
        """Return and forget the recorded stanzas."""
        taken, self.stanzas = self.stanzas, []
        return taken


class SessionManagerTestCase(unittest.TestCase):
    """Sets up a database, stores, a router with the SM and a remote recorder."""

    users = ("alice", "bob", "carol")
    registration_enabled = True

    @defer.inlineCallbacks
    def setUp(self):
        self.db = Database(self.mktemp() + "/xmppd.sqlite")
        yield self.db.open()
        self.addCleanup(self.db.close)
        for user in self.users:
            yield self.db.execute(
                "INSERT INTO accounts (username, created) VALUES (?, ?)", user, time.time()
            )
        self.accounts = AccountStore(self.db)
        self.roster_store = RosterStore(self.db)
        self.router = Router()
        self.remote = Recorder()
        self.router.register(REMOTE, self.remote)
        self.sm = self.make_manager()
        self.sm.startService()
        self.addCleanup(lambda: self.sm.stopService())

    @property
    def offline_store(self):
        """The offline module's store of the current session manager."""
        return self.sm.modules["offline"].store

    def set_registration(self, enabled: bool) -> None:
        """Open or close account creation, as a reload would."""
        module = self.sm.modules["register"]
        module.config = dataclasses.replace(module.config, enabled=enabled)

    def make_manager(self, **sections) -> SessionManager:
        """A session manager on the test's router and database.

        Keyword arguments are config sections, e.g. ``modules={"disabled": ["version"]}``.
        """
        data = {"registration": {"enabled": self.registration_enabled}}
        data.update(sections)
        config = config_from_dict(data, Path(self.mktemp()))
        return SessionManager(
            config,
            router=self.router,
            database=self.db,
            accounts=self.accounts,
            disco_items=["conference.localhost"],
        )

    @defer.inlineCallbacks
    def connect(self, user, resource="res", presence=True, priority=None, roster=True):
        """Bind a fake session, optionally request the roster and send initial presence."""
        session = FakeSession()
        session.session = self.sm.bind(session, user, resource)
        session.jid = session.session.jid
        if roster:
            yield self.client_sends(session, ROSTER_GET)
        if presence:
            body = "" if priority is None else f"<priority>{priority}</priority>"
            yield self.client_sends(session, f"<presence>{body}</presence>")
        session.sent = []
        return session

    @defer.inlineCallbacks
    def client_sends(self, session: FakeSession, xml):
        """A client sends a stanza: 'from' stamped, routed, processing finished."""
        element = stanza(xml) if isinstance(xml, str) else xml
        element["from"] = session.jid.full()
        self.router.route(element)
        yield self.sm.wait_idle()
        return element

    @defer.inlineCallbacks
    def client_sends_out(self, session: FakeSession, xml):
        """A client sends a stanza through ``Session.receive`` (as c2s does)."""
        element = stanza(xml) if isinstance(xml, str) else xml
        session.session.receive(element)
        yield self.sm.wait_idle()
        return element

    @defer.inlineCallbacks
    def arrives(self, xml):
        """A stanza arrives from elsewhere (another domain, a component)."""
        element = stanza(xml) if isinstance(xml, str) else xml
        self.router.route(element)
        yield self.sm.wait_idle()
        return element

    @defer.inlineCallbacks
    def disconnect(self, session: FakeSession):
        """The session's stream ends."""
        self.sm.unbind(session.session)
        yield self.sm.wait_idle()

    @defer.inlineCallbacks
    def roster_items(self, user):
        """The stored roster of a user as {contact: (subscription, ask, approved)}."""
        items = yield self.roster_store.items(user)
        return {c: (i.subscription, i.ask, i.approved) for c, i in items.items()}
