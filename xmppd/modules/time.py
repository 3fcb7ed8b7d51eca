"""Entity time (XEP-0202): the server's clock, in UTC."""

from datetime import UTC, datetime

from twisted.words.xish import domish

from xmppd.module import IQRequest, Module, Scope, iq_handler

NS_TIME = "urn:xmpp:time"


class EntityTime(Module):
    """Answers ``urn:xmpp:time`` requests to the server."""

    name = "time"
    features = {Scope.SERVER: [NS_TIME]}

    @iq_handler("get", NS_TIME, "time", Scope.SERVER)
    def time(self, request: IQRequest) -> domish.Element:
        """The current UTC time."""
        now = datetime.fromtimestamp(self.server.reactor.seconds(), UTC)
        element = domish.Element((NS_TIME, "time"))
        element.addElement("tzo", content="+00:00")
        element.addElement("utc", content=now.strftime("%Y-%m-%dT%H:%M:%SZ"))
        return element
