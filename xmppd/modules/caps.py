"""Entity capabilities (XEP-0115) of the local users' sessions, for other modules.

A client announces what it supports in its broadcast presence with
``<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='…' ver='…'/>``;
the server learns the features behind a ``ver`` once, by asking one
session (``<iq type='get' from='USER@DOMAIN' to='FULL JID'>`` with a
disco#info ``<query node='NODE#VER'/>``), and remembers them for every
session that presents the same ``ver``. PEP's filtered notifications
(XEP-0163 §4) are what needs it: notifications of a node go to the
resources whose features include ``NODE+notify``.

Public API, for other modules (``self.server.modules.get("caps")``):

* ``features_of(full_jid: str) -> frozenset[str] | None`` — the disco
  features of a local session (its full JID as ``Session.full`` spells
  it) or of a remote resource, None while they are not known (no caps,
  query pending or failed, resource unavailable).
* ``wants(full_jid: str, node: str) -> bool`` — True when the session's
  (or remote resource's) features include ``node + '+notify'``.
* ``remote_resources(bare: str, username: str) -> list[str]`` — the full
  JIDs of a remote contact's resources whose available presence (with
  caps) reached that local account, and whose features are known.
* The hook point :attr:`xmppd.module.Point.CAPS_CHANGED` (session,
  features frozenset) fires whenever a session's feature set becomes known
  or changes to another set, not when it stays the same; when known
  features are lost because a new ``ver`` could not be learnt, it fires
  with an empty frozenset. Clearing on unavailable presence or at the end
  of the session does not fire it.
* The hook point :attr:`xmppd.module.Point.REMOTE_CAPS` (full JID,
  usernames, features) is its counterpart for remote resources (see
  below).

How it behaves (Prosody keeps its caps cache in memory too):

* Only available presence a local session broadcasts (no 'to', no type) is
  read, at ``Point.CLIENT_STANZA`` (never consumed), and processed in the
  user's serial queue, so it is ordered with the presence broadcast and
  with ``RESOURCE_UNAVAILABLE``. Presence without ``<c/>`` leaves what is
  known as it is (XEP-0115 §8.4: not every presence carries it).
* Remote resources (federation, as Prosody's mod_pep): available presence
  with caps from a remote full JID to a local account's bare JID (a
  contact's broadcast, or directed presence; not MUC occupants' presence,
  which goes to full JIDs), seen at ``Point.INBOUND_STANZA`` (never
  consumed; after blocking, which drops presence from blocked addresses),
  makes the server follow that resource for that account; the features
  behind its ``ver`` come from the same cache, or from a disco#info query
  sent from the account's bare JID across S2S (one in flight per
  resource). Its unavailable presence to an account, or the account's
  deletion, ends following it for that account (and forgets it when no
  account is left); presence without caps changes nothing. At most
  ``[caps] max_remote`` (resource, account) pairs are followed at once:
  beyond that, the resources whose presence came longest ago are followed
  no more (a server that went away never sends their unavailable presence).
* A ``hash`` the server can compute (``sha-1``, ``sha-224``, ``sha-256``,
  ``sha-384``, ``sha-512``) is verified with the XEP-0115 §5.1 algorithm
  (with §5.4's checks for ill-formed answers); a verified answer is cached
  by (hash, ver) in a bounded LRU, ``[caps] cache_size`` entries. Any other
  answer (legacy caps without ``hash``, an unknown algorithm, a mismatch,
  an ill-formed answer) serves the session that gave it and is never
  cached for others.
* Sessions presenting the same unknown verifiable ``ver`` share one query;
  if it fails, the next of them is asked. A session has at most one query
  in flight: a client that keeps changing its ``ver`` gets the next query
  only when the current one is over, for the ``ver`` it presents then
  (latest wins). A failed or timed-out query, or an answer listing more
  than ``[caps] max_features`` features, leaves the session with no known
  features (logged at debug level).
* The module advertises no disco feature.
"""

from __future__ import annotations

import base64
import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from twisted.python.failure import Failure
from twisted.words.xish import domish

from xmppd.config import setting
from xmppd.logs import logger
from xmppd.module import Module, Point, hook
from xmppd.sm.presence import parse_priority

log = logger(__name__)

NS_CAPS = "http://jabber.org/protocol/caps"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DATA = "jabber:x:data"
NS_XML = "http://www.w3.org/XML/1998/namespace"

#: The ``hash`` values whose ``ver`` the server can verify -> hashlib names
#: (the IANA hash function textual names XEP-0115 uses; MD5 is left out).
HASHES = {
    "sha-1": "sha1",
    "sha-224": "sha224",
    "sha-256": "sha256",
    "sha-384": "sha384",
    "sha-512": "sha512",
}
#: Longest ``ver`` and ``node`` read from presence (a SHA-512 ``ver`` has 88
#: characters); caps with longer ones are ignored.
MAX_VER_LENGTH = 256
MAX_NODE_LENGTH = 1024
#: Longest feature name accepted in an answer; a longer one makes it unusable.
MAX_FEATURE_LENGTH = 1024
#: Seconds a session has to answer the server's disco#info query.
QUERY_TIMEOUT = 30.0


@dataclass(frozen=True)
class CapsSettings:
    """``[caps]``: how much the server remembers of clients' capabilities."""

    cache_size: int = setting(
        10000, "verified entity capabilities (XEP-0115 `ver` strings) kept in memory, "
        "least recently used dropped first", minimum=1, live=True)
    max_features: int = setting(
        256, "disco features one client may announce (XEP-0115); an answer with more "
        "is not used", minimum=1, live=True)
    max_remote: int = setting(
        10000, "(remote resource, local account) pairs whose entity capabilities are "
        "followed at once (for PEP notifications across servers); beyond that the "
        "resource heard of longest ago is dropped", minimum=1, live=True)


@dataclass(frozen=True)
class Caps:
    """What a ``<c/>`` element announces: hash algorithm (None: legacy), node, ver."""

    hash: str | None
    node: str
    ver: str

    @property
    def verifiable(self) -> bool:
        """True when the server can compute the ``ver`` (and may cache the answer)."""
        return self.hash in HASHES

    @property
    def key(self) -> tuple[str | None, str]:
        """The cache key: (hash, ver)."""
        return self.hash, self.ver


def caps_of(stanza: domish.Element) -> Caps | None:
    """The caps a presence announces, or None (none, or unusable attributes)."""
    for child in stanza.elements():
        if child.name == "c" and child.uri == NS_CAPS:
            node = child.getAttribute("node")
            ver = child.getAttribute("ver")
            if not node or not ver or len(node) > MAX_NODE_LENGTH or len(ver) > MAX_VER_LENGTH:
                return None
            return Caps(child.getAttribute("hash"), node, ver)
    return None


def features_in(query: domish.Element) -> list[str]:
    """The feature names a disco#info ``<query/>`` lists (in order, duplicates kept)."""
    return [
        child.getAttribute("var") or ""
        for child in query.elements()
        if child.name == "feature" and child.uri == NS_DISCO_INFO
    ]


def verification_string(query: domish.Element) -> str | None:
    """The string S of XEP-0115 §5.1 for a disco#info ``<query/>``.

    None when §5.4 calls the answer ill-formed: an identity or a feature
    listed twice, an identity without category or type, two extended forms
    (XEP-0128) with the same FORM_TYPE, or a FORM_TYPE with differing
    values. Forms whose FORM_TYPE is not hidden, or that have none, are left
    out.
    """
    identities: list[tuple[str, str, str, str]] = []
    features: list[str] = []
    forms: dict[str, list[tuple[str, list[str]]]] = {}
    for child in query.elements():
        if child.uri == NS_DISCO_INFO and child.name == "identity":
            category, kind = child.getAttribute("category"), child.getAttribute("type")
            if not category or not kind:
                return None
            identities.append((category, kind, child.getAttribute((NS_XML, "lang")) or "",
                               child.getAttribute("name") or ""))
        elif child.uri == NS_DISCO_INFO and child.name == "feature":
            var = child.getAttribute("var")
            if not var:
                return None
            features.append(var)
        elif child.uri == NS_DATA and child.name == "x":
            form = _extended_form(child)
            if form is None:
                return None
            if form == ():
                continue
            form_type, fields = form
            if form_type in forms:
                return None
            forms[form_type] = fields
    if len(set(identities)) != len(identities) or len(set(features)) != len(features):
        return None
    parts = ["/".join(identity) for identity in sorted(identities)]
    parts += sorted(features)
    for form_type in sorted(forms):
        parts.append(form_type)
        for var, values in sorted(forms[form_type], key=lambda field: field[0]):
            parts.append(var)
            parts += sorted(values)
    return "".join(part + "<" for part in parts)


def _extended_form(form: domish.Element) -> Any:
    """(FORM_TYPE, [(var, values)]) of a form; () to leave it out; None if ill-formed."""
    form_type = None
    fields: list[tuple[str, list[str]]] = []
    for field in form.elements():
        if field.uri != NS_DATA or field.name != "field":
            continue
        values = [str(value) for value in field.elements() if value.name == "value"]
        var = field.getAttribute("var")
        if var == "FORM_TYPE":
            if len(set(values)) > 1:
                return None
            if field.getAttribute("type") != "hidden" or not values:
                return ()
            form_type = values[0]
        elif var:
            fields.append((var, values))
    if form_type is None:
        return ()
    return form_type, fields


def compute_ver(query: domish.Element, algorithm: str = "sha-1") -> str | None:
    """The ``ver`` of a disco#info ``<query/>`` by XEP-0115 §5.1 (None: ill-formed).

    ``algorithm`` is one of :data:`HASHES`.
    """
    string = verification_string(query)
    if string is None:
        return None
    digest = hashlib.new(HASHES[algorithm], string.encode("utf-8")).digest()
    return base64.b64encode(digest).decode("ascii")


class _Entity:
    """What the module knows of one session."""

    __slots__ = ("session", "features", "presented", "asking")

    def __init__(self, session: Any):
        self.session = session
        #: The known features, or None.
        self.features: frozenset[str] | None = None
        #: The caps the session presents now (the latest), or None.
        self.presented: Caps | None = None
        #: True while a query to this session is in flight.
        self.asking = False


class _Remote:
    """What the module knows of one remote resource (a full JID of another server)."""

    __slots__ = ("full", "features", "presented", "asking", "accounts")

    def __init__(self, full: str):
        self.full = full
        #: The known features, or None.
        self.features: frozenset[str] | None = None
        #: The caps it presents now (the latest), or None.
        self.presented: Caps | None = None
        #: True while a query to it is in flight.
        self.asking = False
        #: The local usernames its available presence reached.
        self.accounts: set[str] = set()


class EntityCapabilities(Module):
    """Learns and caches the disco features behind local sessions' caps (XEP-0115)."""

    name = "caps"
    settings = CapsSettings

    def __init__(self, server: Any, settings: Any = None):
        super().__init__(server, settings)
        self._entities: dict[str, _Entity] = {}
        #: Verified answers: (hash, ver) -> features, least recently used first.
        self._cache: OrderedDict[tuple[str | None, str], frozenset[str]] = OrderedDict()
        #: Queries in flight for a verifiable ver: (hash, ver) -> full JIDs waiting for it.
        self._lookups: dict[tuple[str | None, str], set[str]] = {}
        #: Remote resources followed: full JID -> what is known of it.
        #: (The one whose presence came longest ago first.)
        self._remote: OrderedDict[str, _Remote] = OrderedDict()
        #: Bare JID of a remote contact -> the full JIDs of it in ``_remote``.
        self._remote_of: dict[str, set[str]] = {}
        #: How many (remote resource, account) pairs are followed.
        self._remote_pairs = 0

    # -- the public API --------------------------------------------------------------

    def features_of(self, full_jid: str) -> frozenset[str] | None:
        """The known disco features of a local session or a remote resource, or None."""
        entity = self._entities.get(full_jid)
        if entity is None:
            remote = self._remote.get(full_jid)
            return remote.features if remote is not None else None
        return entity.features

    def remote_resources(self, bare: str, username: str) -> list[str]:
        """A remote contact's resources with known features whose presence reached the account."""
        found = []
        for full in sorted(self._remote_of.get(bare, ())):
            remote = self._remote[full]
            if remote.features is not None and username in remote.accounts:
                found.append(full)
        return found

    def wants(self, full_jid: str, node: str) -> bool:
        """True when the session's features include ``node + '+notify'`` (XEP-0163 §4)."""
        features = self.features_of(full_jid)
        return features is not None and node + "+notify" in features

    # -- hooks -------------------------------------------------------------------------

    @hook(Point.CLIENT_STANZA)
    def client_stanza(self, session: Any, stanza: domish.Element) -> None:
        """Broadcast available presence with caps: learn them, in the user's queue."""
        if (stanza.name != "presence" or stanza.getAttribute("type") is not None
                or stanza.getAttribute("to") is not None or not session.bound):
            return
        caps = caps_of(stanza)
        if caps is None or parse_priority(stanza) is None:
            return  # no caps, or a presence the broadcast refuses
        self.server.sessions.run(session.username, None, self._presented, session, caps)

    @hook(Point.RESOURCE_UNAVAILABLE)
    def resource_unavailable(self, session: Any, presence: domish.Element) -> None:
        """The resource went unavailable: forget its features and caps."""
        entity = self._entities.get(session.full)
        if entity is not None and entity.session is session:
            entity.features = None
            entity.presented = None

    @hook(Point.SESSION_ENDED)
    def session_ended(self, session: Any) -> None:
        """The session went away: forget it (its query fails in the session manager)."""
        entity = self._entities.get(session.full)
        if entity is not None and entity.session is session:
            del self._entities[session.full]

    @hook(Point.INBOUND_STANZA)
    def inbound(self, stanza: domish.Element, sender: Any, recipient: Any) -> bool:
        """Presence from a remote resource to a local account: follow its caps."""
        if (stanza.name != "presence" or sender.host == self.server.domain
                or sender.user is None or sender.resource is None
                or recipient.resource is not None):
            return False
        kind = stanza.getAttribute("type")
        if kind is None:
            caps = caps_of(stanza)
            if caps is not None:
                self._remote_available(sender.full(), sender.userhost(), recipient.user, caps)
            elif sender.full() in self._remote:
                self._remote.move_to_end(sender.full())  # still there
        elif kind == "unavailable":
            self._remote_unavailable(sender.full(), recipient.user)
        return False

    @hook(Point.ACCOUNT_DELETED)
    def account_deleted(self, username: str) -> None:
        """A deleted account follows no remote resource any more."""
        for full in [f for f, remote in self._remote.items() if username in remote.accounts]:
            self._remote_unavailable(full, username)

    # -- remote resources ----------------------------------------------------------------

    def _remote_available(self, full: str, bare: str, username: str, caps: Caps) -> None:
        remote = self._remote.get(full)
        if remote is not None:
            self._remote.move_to_end(full)  # heard of lately: evicted last
        new_account = remote is None or username not in remote.accounts
        if new_account:
            while self._remote_pairs >= self.config.max_remote:
                oldest = next(iter(self._remote))
                if oldest == full:
                    log.debug("not following the caps of {jid}: [caps] max_remote reached",
                              jid=full)
                    return
                log.debug("[caps] max_remote reached: no longer following {jid}", jid=oldest)
                for account in sorted(self._remote[oldest].accounts):
                    self._remote_unavailable(oldest, account)
            if remote is None:
                remote = self._remote[full] = _Remote(full)
                self._remote_of.setdefault(bare, set()).add(full)
            remote.accounts.add(username)
            self._remote_pairs += 1
        if remote.presented != caps:
            remote.presented = caps
            self._resolve_remote(remote)
        elif new_account and remote.features:
            self._remote_changed(remote, frozenset((username,)), remote.features)

    def _remote_unavailable(self, full: str, username: str) -> None:
        remote = self._remote.get(full)
        if remote is None or username not in remote.accounts:
            return
        remote.accounts.discard(username)
        self._remote_pairs -= 1
        if not remote.accounts:
            del self._remote[full]
            bare = full.split("/", 1)[0]
            fulls = self._remote_of[bare]
            fulls.discard(full)
            if not fulls:
                del self._remote_of[bare]
        if remote.features:
            self._remote_changed(remote, frozenset((username,)), frozenset())

    def _resolve_remote(self, remote: _Remote) -> None:
        """Apply the cache to the resource's current caps, or ask it (one query at a time)."""
        caps = remote.presented
        if caps is None:
            return
        if caps.verifiable:
            known = self._cache.get(caps.key)
            if known is not None:
                self._cache.move_to_end(caps.key)
                self._set_remote(remote, known)
                return
        if remote.asking or not remote.accounts:
            return  # the current query's end resolves the latest caps
        remote.asking = True
        iq = domish.Element((None, "iq"))
        iq["type"] = "get"
        iq["from"] = f"{min(remote.accounts)}@{self.server.domain}"
        iq["to"] = remote.full
        iq.addElement((NS_DISCO_INFO, "query"))["node"] = f"{caps.node}#{caps.ver}"
        d = self.server.sessions.request(iq, timeout=QUERY_TIMEOUT)
        d.addBoth(self._remote_answered, remote, caps)
        d.addErrback(lambda failure: log.failure("learning remote caps failed", failure))

    def _remote_answered(self, result: Any, remote: _Remote, caps: Caps) -> None:
        remote.asking = False
        features, verified = self._read(result, remote.full, caps)
        if verified:
            self._remember(caps.key, features)
        if self._remote.get(remote.full) is not remote:
            return  # gone meanwhile
        if remote.presented != caps:
            self._resolve_remote(remote)
        elif features is None:
            had = remote.features
            remote.features = None
            if had:
                self._remote_changed(remote, frozenset(remote.accounts), frozenset())
        else:
            self._set_remote(remote, features)

    def _set_remote(self, remote: _Remote, features: frozenset[str]) -> None:
        if remote.features == features:
            return
        remote.features = features
        self._remote_changed(remote, frozenset(remote.accounts), features)

    def _remote_changed(self, remote: _Remote, accounts: frozenset[str],
                        features: frozenset[str]) -> None:
        try:
            self.server.modules.fire(Point.REMOTE_CAPS, remote.full, accounts, features)
        except Exception:
            log.failure("a REMOTE_CAPS hook failed for {jid}", jid=remote.full)

    # -- learning ----------------------------------------------------------------------

    def _presented(self, session: Any, caps: Caps) -> None:
        if not session.bound:
            return
        entity = self._entities.get(session.full)
        if entity is None or entity.session is not session:
            entity = self._entities[session.full] = _Entity(session)
        if entity.presented == caps:
            return  # known, being learnt, or failed already: no new query
        entity.presented = caps
        self._resolve(entity)

    def _resolve(self, entity: _Entity) -> None:
        """Apply the cache to the entity's current caps, or wait for or start a query."""
        caps = entity.presented
        if caps is None or not entity.session.bound:
            return
        if caps.verifiable:
            known = self._cache.get(caps.key)
            if known is not None:
                self._cache.move_to_end(caps.key)
                self._set(entity, known)
                return
            waiting = self._lookups.get(caps.key)
            if waiting is not None:
                waiting.add(entity.session.full)
                return
        if entity.asking:
            return  # the current query's end resolves the latest caps
        self._ask(entity, caps)

    def _ask(self, entity: _Entity, caps: Caps) -> None:
        session = entity.session
        entity.asking = True
        waiting: set[str] | None = None
        if caps.verifiable:
            waiting = self._lookups[caps.key] = set()
        iq = domish.Element((None, "iq"))
        iq["type"] = "get"
        iq["from"] = session.bare
        iq["to"] = session.full
        iq.addElement((NS_DISCO_INFO, "query"))["node"] = f"{caps.node}#{caps.ver}"
        d = self.server.sessions.request(iq, timeout=QUERY_TIMEOUT)
        d.addBoth(self._answered, entity, caps, waiting)
        d.addErrback(lambda failure: log.failure("learning caps failed", failure))

    def _answered(self, result: Any, entity: _Entity, caps: Caps,
                  waiting: set[str] | None) -> None:
        entity.asking = False
        if waiting is not None and self._lookups.get(caps.key) is waiting:
            del self._lookups[caps.key]
        features, verified = self._read(result, entity.session.full, caps)
        if verified:
            self._remember(caps.key, features)
        if self._entities.get(entity.session.full) is entity and entity.session.bound:
            if entity.presented == caps:
                if features is None:
                    self._lose(entity)
                else:
                    self._set(entity, features)
            else:
                self._resolve(entity)
        for full in sorted(waiting or ()):
            other = self._entities.get(full)
            if (other is None or other.presented is None or other.presented.key != caps.key
                    or not other.session.bound):
                continue
            if verified:
                self._set(other, features)
            else:
                self._resolve(other)  # the next one of them is asked

    def _read(self, result: Any, full: str, caps: Caps) -> tuple[frozenset[str] | None, bool]:
        """(features or None, verified) of a query's outcome."""
        if isinstance(result, Failure):
            log.debug("no caps from {jid} for {ver}: {why}", jid=full, ver=caps.ver,
                      why=result.getErrorMessage() or result.type.__name__)
            return None, False
        query = next((child for child in result.elements()
                      if child.name == "query" and child.uri == NS_DISCO_INFO), None)
        if query is None:
            log.debug("no disco#info in the caps answer of {jid}", jid=full)
            return None, False
        names = features_in(query)
        if len(names) > self.config.max_features or any(
                not name or len(name) > MAX_FEATURE_LENGTH for name in names):
            log.debug("unusable caps answer from {jid}: {count} features", jid=full,
                      count=len(names))
            return None, False
        features = frozenset(names)
        verified = caps.verifiable and compute_ver(query, caps.hash) == caps.ver
        if caps.verifiable and not verified:
            log.debug("caps of {jid} do not match their ver {ver}", jid=full, ver=caps.ver)
        return features, verified

    def _remember(self, key: tuple[str | None, str], features: frozenset[str]) -> None:
        self._cache[key] = features
        self._cache.move_to_end(key)
        while len(self._cache) > self.config.cache_size:
            self._cache.popitem(last=False)

    def _set(self, entity: _Entity, features: frozenset[str]) -> None:
        if entity.features == features:
            return
        entity.features = features
        self._changed(entity.session, features)

    def _lose(self, entity: _Entity) -> None:
        had = entity.features
        entity.features = None
        if had:
            self._changed(entity.session, frozenset())

    def _changed(self, session: Any, features: frozenset[str]) -> None:
        try:
            self.server.modules.fire(Point.CAPS_CHANGED, session, features)
        except Exception:
            log.failure("a CAPS_CHANGED hook failed for {jid}", jid=session.full)

    def cached(self) -> Iterable[tuple[str | None, str]]:
        """The cached (hash, ver) keys, least recently used first (for tests and debugging)."""
        return list(self._cache)
