"""The module system: every feature is one module, registered in one place.

A **module** is a class in one file (see :mod:`xmppd.modules`) that says,
in its own body, everything the server needs to know about the feature:

* ``name`` — what ``[modules] disabled`` calls it;
* ``features`` and ``identities`` — its service discovery entries, per
  :class:`Scope` (the server's domain, a user's bare JID, the MUC service,
  a room);
* ``stream_features`` — (namespace, name) of elements offered in the
  stream features after authentication, with bind (e.g. roster versioning);
* iq handlers — methods decorated with :func:`iq_handler`, keyed by
  (``get``/``set``, namespace, element, scope);
* nonza handlers — methods decorated with :func:`nonza_handler`, for
  top-level elements a bound client sends that are not stanzas (e.g. XEP-0352
  ``<inactive/>``), keyed by (namespace, element);
* hooks — methods decorated with :func:`hook`, run with a priority at the
  named points of a stanza's path (:class:`Point`; it and :class:`Scope`
  are defined in :mod:`xmppd.points`);
* inline handlers — methods decorated with :func:`inline_handler`, for
  elements a client puts inside a SASL2 ``<authenticate/>`` (XEP-0388,
  e.g. XEP-0198 ``<resume/>``) or a Bind 2 ``<bind/>`` (XEP-0386, e.g.
  ``<enable xmlns='urn:xmpp:carbons:2'/>``), keyed by (namespace, element);
  with ``sasl2_features`` and ``sasl2_mechanisms``/``sasl2_exchange`` a
  module also adds to the SASL2 offer (XEP-0484 FAST);
* ``settings`` — the dataclass of its config section, if it has one
  (its fields are the section's keys, see :mod:`xmppd.config`);
* storage — ``schema``, its own tables (created at start-up), and the
  stores it opens on ``server.database``.

Modules are Twisted services (children of the server), so they start and
stop with it. The :class:`ModuleHost` instantiates the enabled modules,
builds the handler and hook tables once, answers service discovery from
them, and is the one boundary where iq handlers' results and
:class:`~xmppd.errors.StanzaError` become replies.

Why this shape: wokkel's ``XMPPHandler`` + ``IQHandlerMixin`` + ``Disco``
aggregation ties handlers to XPath observers on one XML stream, which fits a
client or a component but not a server whose stanzas arrive already routed
from many streams (and an XPath match per stanza costs more than a dict
lookup). Prosody's ``module:hook``/``module:add_feature`` model fits a
server; this is that model with Python's declarative tools: one class body
per feature, decorators for handlers and hooks, a dataclass for settings.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from twisted.application import service
from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish
from wokkel import data_form, disco

from xmppd.errors import StanzaError, error_reply
from xmppd.logs import logger
from xmppd.points import Point, Scope  # re-exported: modules import them from here
from xmppd.sm.stanzas import result_for

log = logger(__name__)


#: What an iq handler returns when it has sent its reply itself.
ALREADY_ANSWERED = object()


@dataclass(frozen=True)
class IQKey:
    """What an iq handler answers: type, payload namespace and name, scope."""

    kind: str
    namespace: str
    name: str
    scope: Scope


@dataclass
class IQRequest:
    """An iq get/set handed to a module's handler.

    ``recipient`` is None when the iq had no 'to' (processed on behalf of
    the sender's own account); ``account`` is then the sender's username,
    else the addressed user's (None for the server scope).
    """

    stanza: domish.Element
    sender: jid.JID
    recipient: jid.JID | None
    payload: domish.Element
    scope: Scope
    account: str | None

    @property
    def kind(self) -> str:
        """``get`` or ``set``."""
        return self.stanza.getAttribute("type")

    @property
    def from_owner(self) -> bool:
        """True when a resource of the addressed account itself sent it."""
        return self.account is not None and self.sender.user == self.account and (
            self.recipient is None or self.sender.host == self.recipient.host
        )


def iq_handler(kind: str, namespace: str, name: str, *scopes: Scope) -> Callable:
    """Declare a method as the handler of an iq (in one or more scopes).

    The method takes an :class:`IQRequest` and returns the result payload
    (a ``domish.Element``), None for an empty result, :data:`ALREADY_ANSWERED`
    when it sent its reply itself, or a Deferred of these; it raises
    :class:`~xmppd.errors.StanzaError` to refuse.
    """

    def mark(function: Callable) -> Callable:
        keys = getattr(function, "_xmppd_iq", [])
        keys.extend(IQKey(kind, namespace, name, scope) for scope in scopes)
        function._xmppd_iq = keys
        return function

    return mark


def nonza_handler(namespace: str, name: str, before_bind: bool = False) -> Callable:
    """Declare a method as the handler of a top-level non-stanza element (a nonza).

    By default the method takes the bound :class:`~xmppd.sm.session.Session`
    and the element, and runs after resource binding only. With
    ``before_bind`` it handles the element on an authenticated stream that
    has no resource yet (XEP-0198 ``<resume/>``) and takes the stream's
    negotiator (:class:`~xmppd.c2s.negotiation.C2SAuthenticator`) and the
    element. Elsewhere the stream answers with ``unsupported-stanza-type``.
    The return value is ignored.
    """

    def mark(function: Callable) -> Callable:
        keys = getattr(function, "_xmppd_nonza", [])
        keys.append((namespace, name, before_bind))
        function._xmppd_nonza = keys
        return function

    return mark


class Inline(enum.Enum):
    """Where an inline element sits: in SASL2's ``<authenticate/>`` or Bind 2's ``<bind/>``."""

    #: A child of ``<authenticate xmlns='urn:xmpp:sasl:2'/>``; the handler
    #: runs once the client is authenticated, before any resource is bound.
    SASL2 = "sasl2"
    #: A child of ``<bind xmlns='urn:xmpp:bind:0'/>``; the handler runs
    #: once the resource is bound.
    BIND2 = "bind2"


@dataclass
class InlineResult:
    """What a SASL2 inline handler answers: an element for ``<success/>`` and a follow-up.

    ``then`` (if any) runs right after ``<success/>`` was written (XEP-0198
    resumption sends the unacknowledged stanzas again there).
    """

    element: domish.Element | None = None
    then: Callable[[], None] | None = None


def inline_handler(where: Inline, namespace: str, name: str, *, feature: str | None = None,
                   priority: int = 0) -> Callable:
    """Declare a method as the handler of an element inlined in SASL2 or Bind 2.

    ``Inline.SASL2``: the method takes the stream's negotiator (its
    ``sasl2`` is the :class:`~xmppd.c2s.sasl2.Authenticate` request) and the
    element; it returns an :class:`InlineResult`, a ``domish.Element`` for
    ``<success/>``, None, or a Deferred of these. Handlers run by descending
    ``priority`` (a handler that may bind a resource, like XEP-0198
    resumption, runs after those that wait for storage).

    ``Inline.BIND2``: the method takes the new :class:`~xmppd.sm.session.Session`
    and the element and returns an element for ``<bound/>`` or None (no
    Deferred: nothing may be written to the session before ``<success/>``).
    ``feature`` is the ``<feature var=…/>`` advertised in Bind 2's
    ``<inline/>``.
    """

    def mark(function: Callable) -> Callable:
        keys = getattr(function, "_xmppd_inline", [])
        keys.append((where, namespace, name, feature, priority))
        function._xmppd_inline = keys
        return function

    return mark


def hook(point: Point, priority: int = 0) -> Callable:
    """Declare a method as a hook at a point of the stanza's path."""

    def mark(function: Callable) -> Callable:
        marks = getattr(function, "_xmppd_hooks", [])
        marks.append((point, priority))
        function._xmppd_hooks = marks
        return function

    return mark


@dataclass
class ServerContext:
    """What modules may use of the running server (a small, written-down interface)."""

    domain: str
    reactor: Any
    router: Any
    database: Any
    accounts: Any
    #: The session manager: sessions, presence, rosters, routing and replies.
    sessions: Any
    #: The :class:`ModuleHost` (set once it is built).
    modules: Any = None


class Module(service.Service):
    """Base class of a feature module (see the module docstring).

    ``server`` is what a module may use of the running server: ``domain``,
    ``reactor``, ``database``, ``accounts``, ``router``, ``sessions`` (the
    session manager), ``modules`` (the :class:`ModuleHost`) and ``config``.
    ``settings`` is the module's config section (an instance of the
    class attribute ``settings``) or None.
    """

    name: ClassVar[str] = ""
    #: Disco features per scope.
    features: ClassVar[dict[Scope, Sequence[str]]] = {}
    #: Disco identities per scope: (category, type, name or None).
    identities: ClassVar[dict[Scope, Sequence[tuple[str, str, str | None]]]] = {}
    #: The dataclass of the module's config section, or None.
    settings: ClassVar[type | None] = None
    #: The config section's name, if it is not the module's name.
    section: ClassVar[str | None] = None
    #: True for a module the service cannot work without (not switched off).
    essential: ClassVar[bool] = False
    #: The module's own tables: idempotent SQL (``CREATE TABLE IF NOT
    #: EXISTS``), run at start-up before any query of the module.
    schema: ClassVar[Sequence[str]] = ()
    #: Stream features offered to clients after authentication, with bind:
    #: (namespace, element name) pairs.
    stream_features: ClassVar[Sequence[tuple[str, str]]] = ()

    def __init__(self, server: Any, settings: Any = None):
        self.server = server
        self.config = settings

    def disco_features(self, scope: Scope, target: Any = None) -> Iterable[str]:
        """This module's disco features in a scope (override for dynamic ones).

        ``target`` is what the scope addresses when the features depend on
        it (the :class:`~xmppd.muc.room.Room` for ``Scope.ROOM``); it is only
        passed when not None, so overrides without it keep working.
        """
        return self.features.get(scope, ())

    def disco_forms(self, scope: Scope, target: Any = None) -> Iterable[data_form.Form]:
        """Extended service discovery forms (XEP-0128) for a scope (and target)."""
        return ()

    def iq_handlers(self) -> Iterator[tuple[IQKey, Callable]]:
        """The bound handler methods with their keys."""
        for _, method in self._marked("_xmppd_iq"):
            for key in method._xmppd_iq:
                yield key, method

    def nonza_handlers(self) -> Iterator[tuple[tuple[str, str, bool], Callable]]:
        """The bound nonza handler methods with their (namespace, name, before_bind)."""
        for _, method in self._marked("_xmppd_nonza"):
            for key in method._xmppd_nonza:
                yield key, method

    def inline_handlers(self) -> Iterator[tuple[tuple, Callable]]:
        """The bound inline handler methods with (where, namespace, name, feature, priority)."""
        for _, method in self._marked("_xmppd_inline"):
            for key in method._xmppd_inline:
                yield key, method

    def sasl2_features(self, negotiator: Any) -> Iterable[domish.Element]:
        """Elements for SASL2's ``<inline/>`` offer on this stream (XEP-0388)."""
        return ()

    def sasl2_mechanisms(self, negotiator: Any) -> Iterable[str]:
        """Extra SASL mechanisms this module runs, on SASL2 only (XEP-0484 FAST)."""
        return ()

    def sasl2_exchange(self, negotiator: Any, mechanism: str, gate: Callable) -> Any:
        """A new exchange for one of :meth:`sasl2_mechanisms` (see :mod:`xmppd.c2s.sasl`)."""
        return None

    def hooks(self) -> Iterator[tuple[Point, int, Callable]]:
        """The bound hook methods with their points and priorities."""
        for _, method in self._marked("_xmppd_hooks"):
            for point, priority in method._xmppd_hooks:
                yield point, priority, method

    def _marked(self, attribute: str) -> Iterator[tuple[str, Callable]]:
        for attr in dir(type(self)):
            function = getattr(type(self), attr, None)
            if callable(function) and hasattr(function, attribute):
                yield attr, getattr(self, attr)


class ModuleHost(service.MultiService):
    """The enabled modules, their handler and hook tables, and the iq boundary."""

    def __init__(self, server: Any, module_classes: Iterable[type[Module]],
                 settings_of: Callable[[type[Module]], Any] = lambda cls: None):
        super().__init__()
        self._server = server
        self.modules: dict[str, Module] = {}
        self._iq: dict[IQKey, Callable] = {}
        self._nonzas: dict[tuple[str | None, str, bool], Callable] = {}
        self._hooks: dict[Point, list[tuple[int, int, Callable]]] = {}
        #: (where, namespace, name) -> (priority, feature, handler).
        self._inline: dict[tuple[Inline, str, str], tuple[int, str | None, Callable]] = {}
        order = 0
        for cls in module_classes:
            module = cls(server, settings_of(cls))
            if module.name in self.modules:
                raise ValueError(f"two modules are called {module.name!r}")
            self.modules[module.name] = module
            module.setServiceParent(self)
            for key, handler in module.iq_handlers():
                if key in self._iq:
                    raise ValueError(f"two handlers for {key}")
                self._iq[key] = handler
            for element, handler in module.nonza_handlers():
                if element in self._nonzas:
                    raise ValueError(f"two handlers for the nonza {element}")
                self._nonzas[element] = handler
            for (where, namespace, name, feature, priority), handler in \
                    module.inline_handlers():
                if (where, namespace, name) in self._inline:
                    raise ValueError(f"two inline handlers for {where.value} {namespace} {name}")
                self._inline[(where, namespace, name)] = (priority, feature, handler)
            for point, priority, function in module.hooks():
                order += 1
                self._hooks.setdefault(point, []).append((-priority, order, function))
        for handlers in self._hooks.values():
            handlers.sort(key=lambda entry: entry[:2])
        self._index_hooks()

    def _index_hooks(self) -> None:
        #: Point -> its hook functions in running order (what :meth:`fire` walks).
        self._hook_functions: dict[Point, tuple[Callable, ...]] = {
            point: tuple(entry[2] for entry in handlers) for point, handlers in self._hooks.items()
        }

    def startService(self) -> None:  # noqa: N802 - Twisted's API
        """Create the modules' tables (queued before any query), then start them."""
        database = getattr(self._server, "database", None)
        for module in self.modules.values():
            for statement in module.schema:
                if database is not None:
                    database.execute(statement).addErrback(
                        lambda f, name=module.name: log.failure(
                            "creating the tables of module {name} failed", f, name=name))
        super().startService()

    def __getitem__(self, name: str) -> Module:
        return self.modules[name]

    def get(self, name: str) -> Module | None:
        """The enabled module of that name, or None."""
        return self.modules.get(name)

    def stream_features(self) -> list[tuple[str, str]]:
        """The enabled modules' post-authentication stream features, in module order."""
        return [feature for module in self.modules.values() for feature in module.stream_features]

    def nonza_handler(self, namespace: str | None, name: str,
                      before_bind: bool = False) -> Callable | None:
        """The handler of a client's top-level non-stanza element, or None.

        ``before_bind``: for an authenticated stream without a resource.
        """
        return self._nonzas.get((namespace, name, before_bind))

    # -- SASL2 and Bind 2 (XEP-0388, XEP-0386) -----------------------------------

    def inline_handler(self, where: Inline, namespace: str | None,
                       name: str) -> tuple[int, Callable] | None:
        """(priority, handler) of an element inlined in SASL2 or Bind 2, or None."""
        entry = self._inline.get((where, namespace, name))
        return None if entry is None else (entry[0], entry[2])

    def bind2_features(self) -> list[str]:
        """The ``<feature var=…/>`` values Bind 2 offers inline, in module order."""
        return [feature for (where, _, _), (_, feature, _) in self._inline.items()
                if where is Inline.BIND2 and feature is not None]

    def sasl2_features(self, negotiator: Any) -> list[domish.Element]:
        """The modules' elements for SASL2's ``<inline/>`` on this stream."""
        return [element for module in self.modules.values()
                for element in module.sasl2_features(negotiator)]

    def sasl2_mechanisms(self, negotiator: Any) -> list[str]:
        """The modules' extra SASL2 mechanisms on this stream."""
        return [name for module in self.modules.values()
                for name in module.sasl2_mechanisms(negotiator)]

    def sasl2_exchange(self, negotiator: Any, mechanism: str, gate: Callable) -> Any:
        """A new exchange of a module's SASL2 mechanism, or None if no module has it."""
        for module in self.modules.values():
            if mechanism in module.sasl2_mechanisms(negotiator):
                return module.sasl2_exchange(negotiator, mechanism, gate)
        return None

    # -- hooks -----------------------------------------------------------------

    def add_hook(self, point: Point, function: Callable, priority: int = 0) -> None:
        """Hook a function that is not a module's (a sibling service's) at a point.

        It runs after the modules' hooks of the same priority.
        """
        handlers = self._hooks.setdefault(point, [])
        order = max((entry[1] for entry in handlers), default=0) + 1
        handlers.append((-priority, order, function))
        handlers.sort(key=lambda entry: entry[:2])
        self._index_hooks()

    def has_hooks(self, point: Point) -> bool:
        """True if any module hooks that point (lets hot paths skip the call)."""
        return point in self._hooks

    def fire(self, point: Point, *args: Any) -> bool:
        """Run a point's hooks in order; True as soon as one returns True."""
        for function in self._hook_functions.get(point, ()):
            if function(*args) is True:
                return True
        return False

    @defer.inlineCallbacks
    def fire_async(self, point: Point, *args: Any):
        """Run a point's hooks one after another, waiting for Deferreds.

        Fires with True as soon as one hook's result is True.
        """
        for function in self._hook_functions.get(point, ()):
            result = yield function(*args)
            if result is True:
                return True
        return False

    # -- iq --------------------------------------------------------------------

    def iq_handler(self, kind: str, payload: domish.Element, scope: Scope) -> Callable | None:
        """The handler for an iq's payload in a scope, or None."""
        return self._iq.get(IQKey(kind, payload.uri, payload.name, scope))

    def handles(self, payload: domish.Element, scope: Scope) -> bool:
        """True if some module answers this payload (get or set) in the scope."""
        return any(
            IQKey(kind, payload.uri, payload.name, scope) in self._iq for kind in ("get", "set")
        )

    def answer_iq(
        self, handler: Callable, request: IQRequest, send: Callable[[domish.Element], None]
    ) -> defer.Deferred:
        """Run a handler and send its result or error reply (the one boundary).

        The returned Deferred fires (with None) once the reply was sent; it
        never fails.
        """
        stanza = request.stanza

        def answered(payload: domish.Element | None) -> None:
            if payload is ALREADY_ANSWERED:
                return
            reply = result_for(stanza)
            if payload is not None:
                reply.addChild(payload)
            send(reply)

        def refused(failure: Failure) -> None:
            if failure.check(StanzaError):
                err = failure.value
            else:
                log.failure("an iq handler failed on {key}", failure,
                            key=f"{{{request.payload.uri}}}{request.payload.name}")
                err = StanzaError("internal-server-error")
            reply = error_reply(stanza, err)
            if reply is not None:
                send(reply)

        d = defer.maybeDeferred(handler, request)
        d.addCallbacks(answered, refused)
        d.addErrback(lambda failure: log.failure("sending an iq reply failed", failure))
        return d

    # -- service discovery ---------------------------------------------------------

    def disco_info(self, scope: Scope, target: Any = None) -> disco.DiscoInfo:
        """The disco#info of a scope, computed from the enabled modules.

        ``target`` (e.g. a room) is handed to the modules' ``disco_features``
        and ``disco_forms`` when given.
        """
        extra = () if target is None else (target,)
        info = disco.DiscoInfo()
        seen: set[str] = set()
        for module in self.modules.values():
            for category, kind, name in module.identities.get(scope, ()):
                info.append(disco.DiscoIdentity(category, kind, name))
        for module in self.modules.values():
            for feature in module.disco_features(scope, *extra):
                if feature not in seen:
                    seen.add(feature)
                    info.append(disco.DiscoFeature(feature))
        for module in self.modules.values():
            for form in module.disco_forms(scope, *extra):
                info.append(form)
        return info

    def features(self, scope: Scope, target: Any = None) -> list[str]:
        """Just the feature names of a scope (in module order)."""
        info = self.disco_info(scope, target)
        return [str(item) for item in info if isinstance(item, disco.DiscoFeature)]
