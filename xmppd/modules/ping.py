"""XMPP ping (XEP-0199) to the server and, for contacts, to a user's account."""

from twisted.internet import defer

from xmppd.errors import StanzaError
from xmppd.module import IQRequest, Module, Scope, iq_handler

NS_PING = "urn:xmpp:ping"


class Ping(Module):
    """Answers pings to the server, and to a bare JID for whoever may see it."""

    name = "ping"
    features = {Scope.SERVER: [NS_PING]}

    @iq_handler("get", NS_PING, "ping", Scope.SERVER)
    def ping_server(self, request: IQRequest) -> None:
        """The server is there."""

    @iq_handler("get", NS_PING, "ping", Scope.ACCOUNT)
    @defer.inlineCallbacks
    def ping_account(self, request: IQRequest):
        """The account answers its owner and contacts subscribed to its presence."""
        allowed = yield self.server.sessions.may_see_account(request.account, request.sender)
        if not allowed:
            raise StanzaError("service-unavailable")
