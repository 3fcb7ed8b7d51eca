"""Service discovery (XEP-0030) for the server and on behalf of accounts.

The answers are computed from the enabled modules (:class:`ModuleHost`):
nothing here lists another module's features.
"""

from twisted.internet import defer
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish
from wokkel import disco

from xmppd.errors import StanzaError
from xmppd.module import IQRequest, Module, Scope, iq_handler

NS_DISCO_INFO = disco.NS_DISCO_INFO
NS_DISCO_ITEMS = disco.NS_DISCO_ITEMS


class Disco(Module):
    """disco#info and disco#items for the server and for users' bare JIDs."""

    name = "disco"
    features = {
        Scope.SERVER: [NS_DISCO_INFO, NS_DISCO_ITEMS],
        Scope.ACCOUNT: [NS_DISCO_INFO, NS_DISCO_ITEMS],
    }
    identities = {
        Scope.SERVER: [("server", "im", "xmppd")],
        Scope.ACCOUNT: [("account", "registered", None)],
    }

    @iq_handler("get", NS_DISCO_INFO, "query", Scope.SERVER)
    def server_info(self, request: IQRequest) -> domish.Element:
        """The server's identity and the features of every enabled module."""
        _no_nodes(request)
        return self.server.modules.disco_info(Scope.SERVER).toElement()

    @iq_handler("get", NS_DISCO_ITEMS, "query", Scope.SERVER)
    def server_items(self, request: IQRequest) -> domish.Element:
        """The services under the server's domain (MUC, components)."""
        _no_nodes(request)
        items = disco.DiscoItems()
        for address in self.server.sessions.services():
            items.append(disco.DiscoItem(jid.JID(address)))
        return items.toElement()

    @iq_handler("get", NS_DISCO_INFO, "query", Scope.ACCOUNT)
    @defer.inlineCallbacks
    def account_info(self, request: IQRequest):
        """An account's identity and features, for itself and its contacts."""
        yield self._check_access(request)
        return self.server.modules.disco_info(Scope.ACCOUNT).toElement()

    @iq_handler("get", NS_DISCO_ITEMS, "query", Scope.ACCOUNT)
    @defer.inlineCallbacks
    def account_items(self, request: IQRequest):
        """An account's items (none yet), for itself and its contacts."""
        yield self._check_access(request)
        return disco.DiscoItems().toElement()

    @defer.inlineCallbacks
    def _check_access(self, request: IQRequest):
        allowed = yield self.server.sessions.may_see_account(request.account, request.sender)
        if not allowed:
            raise StanzaError("service-unavailable")
        _no_nodes(request)


def _no_nodes(request: IQRequest) -> None:
    if request.payload.getAttribute("node"):
        raise StanzaError("item-not-found")
