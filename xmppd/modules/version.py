"""Software version (XEP-0092): the server's name and version."""

from twisted.words.xish import domish

import xmppd
from xmppd.module import IQRequest, Module, Scope, iq_handler

NS_VERSION = "jabber:iq:version"


class Version(Module):
    """Answers ``jabber:iq:version`` queries to the server."""

    name = "version"
    features = {Scope.SERVER: [NS_VERSION]}

    @iq_handler("get", NS_VERSION, "query", Scope.SERVER)
    def version(self, request: IQRequest) -> domish.Element:
        """Our name and version (no operating system: it helps attackers)."""
        element = domish.Element((NS_VERSION, "query"))
        element.addElement("name", content="xmppd")
        element.addElement("version", content=xmppd.__version__)
        return element
