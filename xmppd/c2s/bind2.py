"""What follows a SASL2 success (XEP-0388): inline requests and Bind 2 (XEP-0386).

:class:`SASL2Success` is a part of :class:`~xmppd.c2s.negotiation.C2SAuthenticator`
(a mixin: it uses the authenticator's stream, factory, session and
username): the modules' SASL2 inline handlers, the Bind 2 resource and its
inline handlers, then ``<success/>`` and the stream features.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.words.xish import domish

from xmppd.c2s import sasl, sasl2
from xmppd.logs import logger
from xmppd.module import Inline, InlineResult
from xmppd.sm.session import Session

log = logger("xmppd.c2s.negotiation")


class SASL2Success:
    """The SASL2 success path of the client stream's authenticator."""

    @defer.inlineCallbacks
    def _sasl2_success(self, result: sasl.Success):
        """Authenticated with SASL2: run the inline requests, bind, answer ``<success/>``.

        The SASL2 inline handlers (FAST tokens, then XEP-0198 resumption)
        run first; unless a session was resumed, a ``<bind/>`` binds a
        resource and runs Bind 2's inline handlers (carbons, CSI, stream
        management). Then ``<success/>`` carries their answers, and the
        stream features follow (no stream restart).
        """
        xs = self.xmlstream
        request = self.sasl2
        self.exchange = None
        self.username = result.username
        self.factory.guard.auth_succeeded(result.username)
        log.info(
            "{username} authenticated with {mechanism} (SASL2) from {peer}",
            username=result.username,
            mechanism=self.mechanism,
            peer=xs.peer_address,
        )
        modules = self._modules()
        answers: list[domish.Element] = []
        follow_ups = []
        handlers = []
        if modules is not None:
            for (uri, name), child in request.inline.items():
                entry = modules.inline_handler(Inline.SASL2, uri, name)
                if entry is not None:
                    handlers.append((-entry[0], len(handlers), entry[1], child))
        for _, _, handler, child in sorted(handlers, key=lambda e: e[:2]):
            try:
                answer = yield defer.maybeDeferred(handler, self, child)
            except Exception:
                log.failure("a SASL2 inline handler failed on {name}",
                            name=f"{{{child.uri}}}{child.name}")
                continue
            if xs.closing:
                return
            if isinstance(answer, InlineResult):
                if answer.element is not None:
                    answers.append(answer.element)
                if answer.then is not None:
                    follow_ups.append(answer.then)
            elif isinstance(answer, domish.Element):
                answers.append(answer)
        bound = None
        newly_bound = None
        bind = request.child(sasl2.NS_BIND2, "bind")
        if self.session is None and bind is not None:
            newly_bound = yield self._bind2(bind, request)
            if xs.closing:
                return
            if newly_bound is not None:
                bound = self._bind2_inline(newly_bound, bind, modules)
        if self.session is not None:
            identifier = self.session.jid.full()
        else:
            identifier = f"{self.username}@{self.factory.domain}"
        success = sasl2.success(identifier, result.data)
        if bound is not None:
            success.addChild(bound)
        for answer in answers:
            success.addChild(answer)
        xs.send(success)
        if newly_bound is not None:
            xs.bound(newly_bound)
        for follow_up in follow_ups:
            follow_up()
        xs.send(self.features_text())

    @defer.inlineCallbacks
    def _bind2(self, bind: domish.Element, request: sasl2.Authenticate):
        """Bind the Bind 2 resource; fire with the Session, or None when refused."""
        xs = self.xmlstream
        resource = sasl2.bind2_resource(bind, self.username, request.agent_id)
        guard = self.factory.guard
        if not guard.reserve_session(self.username, xs, resource):
            log.info("{username} has too many sessions: Bind 2 refused for {peer}",
                     username=self.username, peer=xs.peer_address)
            return None
        try:
            session = yield defer.maybeDeferred(
                self.factory.session_manager.bind, xs, self.username, resource)
        except Exception:
            log.failure("session manager failed to bind a resource (Bind 2)")
            guard.release_session(self.username, xs)
            return None
        self.session = session
        if xs.closing:
            if xs.lost:
                self.unbind()
            return None
        guard.session_bound(self.username, xs, session.jid.resource)
        return session

    def _bind2_inline(self, session: Session, bind: domish.Element,
                      modules: Any) -> domish.Element:
        """Run Bind 2's inline requests in the client's order; the ``<bound/>`` answer."""
        bound = domish.Element((sasl2.NS_BIND2, "bound"))
        if modules is None:
            return bound
        for child in bind.elements():
            if child.uri == sasl2.NS_BIND2:
                continue
            entry = modules.inline_handler(Inline.BIND2, child.uri, child.name)
            if entry is None:
                continue
            try:
                answer = entry[1](session, child)
            except Exception:
                log.failure("a Bind 2 inline handler failed on {name}",
                            name=f"{{{child.uri}}}{child.name}")
                continue
            if isinstance(answer, domish.Element):
                bound.addChild(answer)
        return bound
