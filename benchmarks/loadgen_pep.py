"""The ``pep`` workload of loadgen.py: PEP (XEP-0163) notifications to contacts with caps."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import re
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from benchclient import BenchConnection, HandshakeError, is_result
from loadcore import Meter, close_all, login_many, percentiles, problems, username

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_CAPS = "http://jabber.org/protocol/caps"
PEP_NODE = "urn:xmpp:bench:pep"
CAPS_NODE = "https://xmppd.example/bench"
CAPS_IDENTITIES = (("client", "bot", "", "xmppd bench"),)
CAPS_FEATURES = (NS_DISCO_INFO, PEP_NODE, PEP_NODE + "+notify")
PUBLISH_TIMEOUT = 10.0
SUBSCRIBE_WAIT = 10.0
ATTRIBUTE = re.compile(rb"""([\w:.-]+)\s*=\s*(?:'([^']*)'|"([^"]*)")""")
ROSTER_ITEM = re.compile(rb"<item\b[^>]*>")
SUBSCRIBE = re.compile(rb"<presence\b[^>]*\btype=['\"]subscribe['\"][^>]*>")
# What a contact scans for: one event element per notification, the time
# stamp and number of the item in it (not an attribute named 'stamp':
# Prosody's archive storage overwrites that one), and the iq and query start
# tags of the server's disco#info query (answered on the spot).
EVENT = b"/protocol/pubsub#event"
ITEM_SENT = re.compile(rb"<entry\b[^>]*\bsent=['\"](\d+):(\d+)['\"]")
IQ_TAGS = re.compile(rb"<iq\b([^>]*)>|<query\b([^>]*)>")
PUBLISH_ANSWER = re.compile(rb"<iq\b[^>]*\bid=['\"]p\d+['\"]")
XML_ESCAPES = {"&amp;": "&", "&lt;": "<", "&gt;": ">", "&apos;": "'", "&quot;": '"'}


def caps_ver(identities: Iterable[tuple[str, str, str, str]], features: Iterable[str]) -> str:
    """The XEP-0115 (§5.1) verification string of a disco#info result, SHA-1, base64."""
    text = "".join(f"{c}/{t}/{lang}/{name}<" for c, t, lang, name in sorted(identities))
    text += "".join(f"{feature}<" for feature in sorted(features))
    return base64.b64encode(hashlib.sha1(text.encode()).digest()).decode()


CAPS_VER = caps_ver(CAPS_IDENTITIES, CAPS_FEATURES)


def xml_attrs(tag: bytes) -> dict[str, str]:
    """The attributes of a start tag (or of the inside of one), unescaped."""
    attrs = {}
    for name, single, double in ATTRIBUTE.findall(tag):
        value = (single or double).decode(errors="replace")
        if "&" in value:
            value = re.sub("&(amp|lt|gt|apos|quot);", lambda m: XML_ESCAPES[m.group(0)], value)
        attrs[name.decode()] = value
    return attrs


def xml_escape(value: str) -> str:
    """Escape for an attribute value in single quotes."""
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace("'", "&apos;"))


def caps_presence() -> bytes:
    """Available presence with the contact's XEP-0115 caps."""
    return (
        f"<presence><c xmlns='{NS_CAPS}' hash='sha-1' node='{CAPS_NODE}' "
        f"ver='{CAPS_VER}'/></presence>"
    ).encode()


def disco_info_result(iq: dict[str, str], node: str | None) -> bytes:
    """Our answer to a disco#info query: the identity and the caps features."""
    to = f" to='{xml_escape(iq['from'])}'" if iq.get("from") else ""
    at = f" node='{xml_escape(node)}'" if node else ""
    identities = "".join(
        f"<identity category='{c}' type='{t}' name='{name}'/>"
        for c, t, _, name in CAPS_IDENTITIES
    )
    features = "".join(f"<feature var='{f}'/>" for f in CAPS_FEATURES)
    return (
        f"<iq type='result' id='{xml_escape(iq.get('id', ''))}'{to}>"
        f"<query xmlns='{NS_DISCO_INFO}'{at}>{identities}{features}</query></iq>"
    ).encode()


class PepRun:
    """Shared state of the pep workload."""

    def __init__(self, window: int, contacts: int, owner: str, domain: str):
        self.window = window
        self.contacts = contacts
        self.owner = owner
        self.domain = domain
        self.sending = False
        self.measuring = False
        self.publishing_started = False
        self.delivered = 0
        self.distinct = 0
        self.published = 0
        self.errors = 0
        self.latencies: list[int] = []
        self.notified = 0
        self.notified_before_publish = 0
        self.all_notified = asyncio.Event()
        self.disco_queries: Counter[str] = Counter()

    def first_notification(self) -> None:
        """A contact got its first notification."""
        self.notified += 1
        if not self.publishing_started:
            self.notified_before_publish += 1
        if self.notified == self.contacts:
            self.all_notified.set()

    def note_disco(self, contact: BenchConnection, iq: dict[str, str], node: str | None) -> None:
        """Count a disco#info query by who asked (relative to the contact) and for what."""
        sender = iq.get("from", "")
        bare = contact.jid.split("/")[0]
        if not sender:
            who = "no from"
        elif sender == self.owner:
            who = "the owner's bare JID"
        elif sender.split("/")[0] == self.owner:
            who = "an owner's full JID"
        elif sender == bare:
            who = "the contact's own bare JID"
        elif sender == self.domain:
            who = "the server"
        else:
            who = sender
        what = "node#ver" if node == f"{CAPS_NODE}#{CAPS_VER}" else (node or "no node")
        self.disco_queries[f"from {who}, {what}"] += 1

    def errors_received(self, conn: BenchConnection, count: int) -> None:
        """Error stanzas (refused publishes): counted (their window slots come back anyway)."""
        self.errors += count


class PepContact:
    """A contact's receiving side: answers disco#info queries, counts notifications.

    A notification is distinct when its item number is above the last one this
    contact saw (items are numbered in publishing order); another copy of an
    item already seen (Prosody sends one to the bare and one to the full JID)
    only counts as a notification stanza.
    """

    def __init__(self, run: PepRun, conn: BenchConnection):
        self.run = run
        self.conn = conn
        self.notifications = 0
        self.last_item = 0
        self.pending_get: dict[str, str] | None = None

    def on_region(self, conn: BenchConnection, region: bytes) -> None:
        """A run of complete tags: count notifications, answer disco#info queries."""
        run = self.run
        events = region.count(EVENT)
        if events:
            if self.notifications == 0:
                run.first_notification()
            self.notifications += events
            if run.measuring:
                run.delivered += events
        if b"<entry" in region:
            now = time.monotonic_ns()
            last = self.last_item
            for stamp, number in ITEM_SENT.findall(region):
                item = int(number)
                if item > last:
                    last = item
                    if run.measuring:
                        run.distinct += 1
                        run.latencies.append(now - int(stamp))
            self.last_item = last
        if b"<iq" in region or self.pending_get is not None:
            for iq, query in IQ_TAGS.findall(region):
                if iq:
                    attrs = xml_attrs(iq)
                    self.pending_get = attrs if attrs.get("type") == "get" else None
                elif query:
                    get, self.pending_get = self.pending_get, None
                    if get is not None and NS_DISCO_INFO.encode() in query:
                        node = xml_attrs(query).get("node")
                        conn.write(disco_info_result(get, node))
                        run.note_disco(conn, get, node)


class PepPublisher:
    """The owner: publishes items to PEP_NODE keeping a window of publishes outstanding.

    Items are numbered from the wall clock in microseconds, so that numbers
    grow across runs too (the server may resend the last item of a run before).
    """

    def __init__(self, run: PepRun, conn: BenchConnection, payload: int):
        self.run = run
        self.conn = conn
        self.number = time.time_ns() // 1000
        self.outstanding = 0
        head = f"<entry xmlns='{PEP_NODE}' sent='%d:%d'>"
        sample = (head % (time.monotonic_ns(), self.number) + "</entry>").encode()
        pad = "x" * max(0, payload - len(sample))
        self.template = (
            f"<iq type='set' id='p%d'><pubsub xmlns='{NS_PUBSUB}'>"
            f"<publish node='{PEP_NODE}'><item id='current'>{head}{pad}</entry>"
            "</item></publish></pubsub></iq>"
        ).encode()

    def stanza(self) -> bytes:
        """The next publish, stamped now."""
        self.number += 1
        return self.template % (self.number, time.monotonic_ns(), self.number)

    def send(self, count: int) -> None:
        """Send ``count`` publishes (one write)."""
        if count <= 0:
            return
        self.conn.write(b"".join([self.stanza() for _ in range(count)]))
        self.outstanding += count

    def on_region(self, conn: BenchConnection, region: bytes) -> None:
        """Publish results (or errors) came back: refill the window."""
        count = len(PUBLISH_ANSWER.findall(region))
        if not count:
            return
        self.outstanding -= count
        run = self.run
        if run.measuring:
            run.published += count
        if run.sending:
            self.send(min(count, run.window - self.outstanding))


async def roster_states(conn: BenchConnection, iq_id: str) -> dict[str, str]:
    """The subscription state of every item of the connected user's roster."""
    answer = await conn.iq(
        iq_id, f"<iq type='get' id='{iq_id}'><query xmlns='jabber:iq:roster'/></iq>".encode()
    )
    if not is_result(answer):
        raise HandshakeError(f"roster get refused: {answer[:300]!r}")
    states = {}
    for tag in ROSTER_ITEM.findall(answer):
        attrs = xml_attrs(tag)
        if "jid" in attrs:
            states[attrs["jid"]] = attrs.get("subscription", "none")
    return states


async def ensure_subscriptions(args: argparse.Namespace, contacts: list[int]) -> int:
    """Mutual presence subscription between account 0 and every contact; how many were made.

    Kept in the server's data, so only the first run on a server does the
    exchange (subscribe/subscribed both ways, on connections of their own
    with resource ``setup``, closed afterwards).
    """
    setup = argparse.Namespace(**{**vars(args), "resource": "setup"})
    owner_bare = f"{username(args, 0)}@{args.domain}"
    wanted = {f"{username(args, i)}@{args.domain}": i for i in contacts}
    (owner,), _ = await login_many(setup, [0], presence=True)
    conns = [owner]
    try:
        states = await roster_states(owner, "r0")
        missing = [jid for jid in wanted if states.get(jid) != "both"]
        if not missing:
            return 0
        peers, _ = await login_many(setup, [wanted[jid] for jid in missing], presence=True)
        conns += peers
        owner.write(b"".join(f"<presence to='{jid}' type='subscribe'/>".encode()
                             for jid in missing))

        async def contact_side(conn: BenchConnection) -> None:
            try:  # the owner's request first, so that our approval is not a pre-approval
                await asyncio.wait_for(conn.expect(SUBSCRIBE, "subscribe"), SUBSCRIBE_WAIT)
            except TimeoutError:
                pass  # approved before: the server answered for us
            conn.write(f"<presence to='{owner_bare}' type='subscribed'/>"
                       f"<presence to='{owner_bare}' type='subscribe'/>".encode())

        async def owner_side() -> None:
            left = set(missing)
            while left:
                try:
                    tag = await asyncio.wait_for(owner.expect(SUBSCRIBE, "subscribe"),
                                                 SUBSCRIBE_WAIT)
                except TimeoutError:
                    return  # the rest were approved before
                sender = xml_attrs(tag).get("from", "").split("/")[0]
                if sender in left:
                    left.discard(sender)
                    owner.write(f"<presence to='{sender}' type='subscribed'/>".encode())

        await asyncio.gather(owner_side(), *(contact_side(c) for c in peers))
        deadline = time.monotonic() + 2 * SUBSCRIBE_WAIT
        attempt = 0
        while True:
            attempt += 1
            states = await roster_states(owner, f"r{attempt}")
            still = [jid for jid in wanted if states.get(jid) != "both"]
            if not still:
                return len(missing)
            if time.monotonic() > deadline:
                raise HandshakeError(
                    f"{len(still)} contacts are not in mutual subscription with {owner_bare} "
                    f"after the set-up, e.g. {still[0]}: {states.get(still[0], 'no item')}"
                )
            await asyncio.sleep(0.2)
    finally:
        close_all(conns)
        await asyncio.sleep(0.5)  # let the server end the set-up sessions


async def workload_pep(args: argparse.Namespace) -> dict[str, Any]:
    """PEP notifications from one owner to C contacts with +notify caps."""
    contacts_range = range(1, args.contacts + 1)
    meter = Meter(args.server_pid)
    made = await ensure_subscriptions(args, list(contacts_range))
    setup_seconds = meter.figures()["seconds"]
    owner_jid = f"{username(args, 0)}@{args.domain}"
    run = PepRun(args.window, args.contacts, owner_jid, args.domain)
    conns: list[BenchConnection] = []
    try:
        (owner,), _ = await login_many(args, [0], presence=True)
        conns.append(owner)
        contacts, _ = await login_many(args, contacts_range, presence=False)
        conns += contacts
        presence = caps_presence()
        for conn in contacts:
            conn.tag = PepContact(run, conn)
            conn.start_tag_counting(conn.tag.on_region)
            conn.write(presence)
        await asyncio.sleep(args.settle)

        publisher = PepPublisher(run, owner, args.payload)
        run.publishing_started = True
        started = time.monotonic()
        try:
            first = publisher.stanza()
            answer = await asyncio.wait_for(owner.iq(f"p{publisher.number}", first),
                                            PUBLISH_TIMEOUT)
        except TimeoutError:
            raise HandshakeError(
                f"no answer to a PEP publish to {PEP_NODE} within {PUBLISH_TIMEOUT:g} s"
            ) from None
        if not is_result(answer):
            raise HandshakeError(
                "the server refused a PEP publish (XEP-0163), so the pep workload cannot run "
                f"against it: {answer[:400].decode(errors='replace')}"
            )
        owner.start_tag_counting(publisher.on_region, run.errors_received)
        run.sending = True
        publisher.send(run.window)
        try:
            await asyncio.wait_for(run.all_notified.wait(), args.warmup_timeout)
        except TimeoutError:
            silent = sum(1 for c in contacts if c.tag.notifications == 0)
            raise HandshakeError(
                f"{silent} of {args.contacts} contacts had no PEP notification "
                f"{args.warmup_timeout:g} s after the first publish (disco#info queries "
                f"answered: {dict(run.disco_queries) or 'none'}); does the server "
                "resolve XEP-0115 caps and honour +notify?"
            ) from None
        warmup_seconds = round(time.monotonic() - started, 3)
        await asyncio.sleep(args.warmup)

        meter = Meter(args.server_pid)
        run.measuring = True
        await asyncio.sleep(args.duration)
        run.measuring = False
        figures = meter.figures()
        run.sending = False
        await asyncio.sleep(args.drain)
        seconds = figures["seconds"]
        result: dict[str, Any] = {
            "notifications_per_s": round(run.distinct / seconds, 1),
            "notification_stanzas_per_s": round(run.delivered / seconds, 1),
            "publishes_per_s": round(run.published / seconds, 1),
            "fanout": round(run.distinct / run.published, 2) if run.published else None,
            "copies_per_notification": (
                round(run.delivered / run.distinct, 2) if run.distinct else None
            ),
            # distinct notifications per second of server CPU: comparable across
            # runs where other processes took part of the server's core
            "notifications_per_server_cpu_s": (
                round(run.distinct / (figures["server_cpu"] * seconds), 1)
                if figures.get("server_cpu") else None
            ),
            **percentiles(run.latencies),
            **figures,
            "error_stanzas": run.errors,
            "subscriptions_made": made,
            "setup_seconds": setup_seconds,
            "first_notification_seconds": warmup_seconds,
            "notified_before_first_publish": run.notified_before_publish,
            "disco_queries": dict(run.disco_queries),
            "caps_ver": CAPS_VER,
        }
        result.update(problems(conns))
        return result
    finally:
        close_all(conns)
