"""Test support for the MUC service: a router, a fake user domain, a clock.

:class:`MUCHarness` starts a real :class:`~xmppd.muc.service.MUCService` on
``conference.localhost`` behind a real :class:`~xmppd.router.Router`; the
user domain ``localhost`` is served by :class:`FakeDestination`, which keeps
every stanza the service sends, serialised and re-parsed as a client would
see it.
"""

from __future__ import annotations

from collections import defaultdict

from twisted.internet import task
from twisted.words.xish import domish

from xmppd.config import MUCSettings
from xmppd.muc.service import MUCService
from xmppd.router import Router
from xmppd.testing.scansion.parser import parse_xml_block

MUC = "conference.localhost"

#: The room and the users most tests use.
ROOM = f"room@{MUC}"
ROMEO = "romeo@localhost/r"
JULIET = "juliet@localhost/j"
NURSE = "nurse@localhost/n"
TYBALT = "tybalt@localhost/t"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = NS_MUC + "#user"
NS_MUC_OWNER = NS_MUC + "#owner"
NS_MUC_ADMIN = NS_MUC + "#admin"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_X_DATA = "jabber:x:data"


def parse(xml: str) -> domish.Element:
    """One stanza parsed as it would arrive from a client stream."""
    (element,) = parse_xml_block(xml)
    return element


class FakeDestination:
    """Stands in for the session manager: records stanzas per 'to'."""

    def __init__(self) -> None:
        self.received: dict[str, list[domish.Element]] = defaultdict(list)
        self.log: list[domish.Element] = []

    def send(self, stanza: domish.Element) -> None:
        copy = parse(stanza.toXml())
        self.log.append(copy)
        self.received[stanza["to"]].append(copy)


class MUCHarness:
    """A started MUC service with a fake user domain and a task.Clock."""

    def __init__(self, testcase, database=None, admins=(), modules=None, **options) -> None:
        """``options`` are ``[muc]`` keys (:class:`~xmppd.config.MUCSettings`);
        ``modules`` the MUC module classes (default: all)."""
        self.router = Router()
        self.users = FakeDestination()
        self.router.register("localhost", self.users)
        self.clock = task.Clock()
        self.clock.advance(1_000_000_000)
        self.service = MUCService(
            MUCSettings(domain=MUC, **options),
            router=self.router,
            server_domain="localhost",
            database=database,
            admins=admins,
            reactor=self.clock,
            **({} if modules is None else {"modules": modules}),
        )
        self.service.startService()
        testcase.addCleanup(self.stop)

    def stop(self):
        if self.service.running:
            return self.service.stopService()
        return None

    def send(self, sender: str, xml: str) -> None:
        """Route a stanza from the full JID ``sender``."""
        stanza = parse(xml)
        stanza["from"] = sender
        self.router.route(stanza)

    def take(self, full: str) -> list[domish.Element]:
        """Everything delivered to ``full`` since the last take."""
        stanzas = self.users.received.pop(full, [])
        return stanzas

    def clear(self) -> None:
        """Forget every delivered stanza."""
        self.users.received.clear()

    # conveniences for common steps
    def join(
        self, full: str, nick: str, room: str = "room", password: str | None = None, extra: str = ""
    ) -> list[domish.Element]:
        """Send a join presence and return what ``full`` received."""
        pw = f"<password>{password}</password>" if password is not None else ""
        self.send(
            full,
            f"<presence to='{room}@{MUC}/{nick}'><x xmlns='{NS_MUC}'>{pw}{extra}</x></presence>",
        )
        return self.take(full)

    def configure(
        self, owner: str, room: str = "room", fields: dict | None = None, iq_id: str = "cfg"
    ) -> list[domish.Element]:
        """Submit a configuration form (``fields``: var -> value or list)."""
        body = ""
        if fields is not None:
            body = f"<field var='FORM_TYPE'><value>{NS_MUC}#roomconfig</value></field>"
            for var, value in fields.items():
                values = value if isinstance(value, list) else [value]
                inner = "".join(f"<value>{v}</value>" for v in values)
                body += f"<field var='{var}'>{inner}</field>"
        self.send(
            owner,
            f"<iq type='set' id='{iq_id}' to='{room}@{MUC}'><query xmlns='{NS_MUC_OWNER}'>"
            f"<x xmlns='{NS_X_DATA}' type='submit'>{body}</x></query></iq>",
        )
        return self.take(owner)

    def create(self, owner: str, nick: str, room: str = "room", fields: dict | None = None) -> None:
        """Create and unlock a room (instant unless ``fields`` are given)."""
        self.join(owner, nick, room)
        self.configure(owner, room, fields)
        self.clear()


def kinds(stanzas: list[domish.Element]) -> list[tuple]:
    """(name, from, type) of each stanza: the shape of a conversation, for assertions."""
    return [(s.name, s.getAttribute("from"), s.getAttribute("type")) for s in stanzas]


def status_codes(stanza: domish.Element) -> list[str]:
    """The muc#user status codes of a stanza, in order."""
    x = muc_user_x(stanza)
    if x is None:
        return []
    return [s["code"] for s in x.elements(NS_MUC_USER, "status")]


def muc_user_x(stanza: domish.Element):
    for x in stanza.elements(NS_MUC_USER, "x"):
        return x
    return None


def item_of(stanza: domish.Element):
    x = muc_user_x(stanza)
    if x is None:
        return None
    for item in x.elements(NS_MUC_USER, "item"):
        return item
    return None


def error_condition(stanza: domish.Element) -> str | None:
    """The defined condition of an error stanza."""
    for error in stanza.elements(None, "error"):
        for child in error.elements():
            if child.uri == NS_STANZAS and child.name != "text":
                return child.name
    for error in stanza.elements("jabber:client", "error"):
        for child in error.elements():
            if child.uri == NS_STANZAS and child.name != "text":
                return child.name
    return None
