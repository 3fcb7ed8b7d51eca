"""What a MUC feature module is, and the boundary that answers its iqs.

A MUC feature module is a :class:`xmppd.module.Module` (see
:class:`MUCModule`) registered in :data:`xmppd.muc.features.MUC_MODULES`.
Its iq handlers are keyed with ``Scope.MUC_SERVICE`` (iqs to the
service's domain) or ``Scope.ROOM`` (iqs to a room's bare JID) and get a
:class:`MUCRequest`; its hooks are the MUC points of
:class:`xmppd.module.Point`, fired by the rooms.

:func:`answer` is the one boundary for both scopes: it runs the handler
through :meth:`ModuleHost.answer_iq`, so a returned payload becomes the
result and a :class:`~xmppd.errors.StanzaError` the error reply, ``by``
the room (or the service) as XEP-0045 wants; what a handler deferred with
:meth:`MUCRequest.after_reply` runs once the result is out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.words.xish import domish
from wokkel import disco

from xmppd.errors import StanzaError
from xmppd.logs import logger
from xmppd.module import IQRequest, Module, ModuleHost, Scope

if TYPE_CHECKING:
    from xmppd.muc.room import Room

log = logger(__name__)


class MUCModule(Module):
    """Base class of MUC feature modules.

    ``self.server`` is the :class:`~xmppd.muc.host.MUCContext` and
    ``self.config`` the ``[muc]`` section (:class:`~xmppd.config.MUCSettings`).
    """

    def node_items(
        self, scope: Scope, node: str, request: MUCRequest
    ) -> Iterable[disco.DiscoItem] | None:
        """The disco#items of a node this module serves, or None if the node is not its own."""
        return None

    def rooms_loaded(self) -> defer.Deferred | None:
        """The persistent rooms are loaded (at start-up): prepare what rooms need.

        May return a Deferred; the service takes no stanza before every
        module's has fired (a failure is logged).
        """
        return None


@dataclass
class MUCRequest(IQRequest):
    """An iq get/set to the MUC service or to a room (``room`` is None for the service)."""

    room: Room | None = None
    _after: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def after_reply(self, action: Callable[[], None]) -> None:
        """Run ``action`` right after the result is sent (never after an error reply).

        For what the others may only see once the requester has its answer
        (XEP-0045's order: the owner's result, then the room's 104 message).
        """
        self._after.append(action)


def answer(
    modules: ModuleHost,
    handler: Callable,
    request: MUCRequest,
    send: Callable[[domish.Element], None],
    by: str,
    internal_by: str,
) -> None:
    """Answer an iq with a module's handler (the MUC's iq boundary).

    Errors the handler raises are attributed to ``by`` (the room, or the
    service) unless they say otherwise; anything else it raises is logged
    and answered ``internal-server-error`` by ``internal_by`` (the service).
    The request's :meth:`~MUCRequest.after_reply` actions run once the
    result is sent; when the handler answered at once (every MUC handler
    does), they run before this returns, so what they raise reaches the
    caller.
    """
    succeeded: list[bool] = []

    def attributed(failure: Failure) -> Failure:
        if failure.check(StanzaError):
            if failure.value.by is None:
                failure.value.by = by
            return failure
        log.failure("error while processing an iq", failure)
        return Failure(StanzaError("internal-server-error", by=internal_by))

    def run(req: MUCRequest) -> defer.Deferred:
        d = defer.maybeDeferred(handler, req)
        d.addCallbacks(lambda result: succeeded.append(True) or result, attributed)
        return d

    def follow_up() -> None:
        if succeeded:
            for action in request._after:
                action()

    done: list[object] = []
    d = modules.answer_iq(run, request, send)
    d.addCallback(done.append)
    if done:
        follow_up()
    else:  # pragma: no cover - no MUC handler answers later yet
        d.addCallback(lambda _: follow_up())
        d.addErrback(lambda f: log.failure("after an iq reply", f))
