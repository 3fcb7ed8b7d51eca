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
        """An account's identity and features, for itself and its contacts.

        With a node: the first module whose ``disco_node_info(request, node)``
        answers (PEP nodes), else ``item-not-found``.
        """
        yield self._check_access(request)
        node = request.payload.getAttribute("node")
        if not node:
            return self.server.modules.disco_info(Scope.ACCOUNT).toElement()
        for module in self.server.modules.modules.values():
            answer = getattr(module, "disco_node_info", None)
            info = None if answer is None else (yield answer(request, node))
            if info is not None:
                element = info.toElement()
                element["node"] = node
                return element
        raise StanzaError("item-not-found")

    @iq_handler("get", NS_DISCO_ITEMS, "query", Scope.ACCOUNT)
    @defer.inlineCallbacks
    def account_items(self, request: IQRequest):
        """An account's items (its PEP nodes), for itself and its contacts.

        Modules contribute through ``disco_node_items(request, node)``: a
        list of items, or None for a node that is not theirs.
        """
        yield self._check_access(request)
        node = request.payload.getAttribute("node") or None
        items = disco.DiscoItems()
        found = node is None
        for module in self.server.modules.modules.values():
            answer = getattr(module, "disco_node_items", None)
            listed = None if answer is None else (yield answer(request, node))
            if listed is not None:
                found = True
                for item in listed:
                    items.append(item)
        if not found:
            raise StanzaError("item-not-found")
        element = items.toElement()
        if node is not None:
            element["node"] = node
        return element

    @defer.inlineCallbacks
    def _check_access(self, request: IQRequest):
        allowed = yield self.server.sessions.may_see_account(request.account, request.sender)
        if not allowed:
            raise StanzaError("service-unavailable")


def _no_nodes(request: IQRequest) -> None:
    if request.payload.getAttribute("node"):
        raise StanzaError("item-not-found")
