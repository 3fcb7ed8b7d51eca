"""xmppd.domainservice: the iq boundary shared by the pubsub and upload services."""

from twisted.internet import defer
from twisted.trial import unittest
from wokkel.generic import parseXml

from xmppd.domainservice import Answer, DomainService
from xmppd.errors import StanzaError

NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


class Router:
    def __init__(self):
        self.routes, self.sent = {}, []

    def register(self, domain, destination):
        self.routes[domain] = destination

    def unregister(self, domain, destination):
        self.routes.pop(domain, None)

    def route(self, stanza):
        self.sent.append(stanza)


class Echo(DomainService):
    """Answers <echo/> with itself, <fail/> with a StanzaError, <crash/> with a bug."""

    kind = "echo"

    def __init__(self, router):
        super().__init__("echo.localhost", router)
        self.after = []

    def handle_iq(self, kind, sender, payload, stanza):
        if payload.name == "echo":
            return defer.succeed(Answer(payload, (lambda: self.after.append(sender.full()),)))
        if payload.name == "empty":
            return defer.succeed(None)
        if payload.name == "fail":
            return defer.fail(StanzaError("not-allowed"))
        if payload.name == "crash":
            return defer.maybeDeferred(lambda: 1 / 0)
        return None


def stanza(xml):
    return parseXml(xml.encode())


def condition(reply):
    error = next(reply.elements(None, "error"))
    return next(e.name for e in error.elements() if e.uri == NS_STANZAS)


class DomainServiceTests(unittest.TestCase):
    def setUp(self):
        self.router = Router()
        self.service = Echo(self.router)
        self.service.startService()

    def ask(self, xml):
        self.service.send(stanza(xml))
        sent, self.router.sent = self.router.sent, []
        return sent

    def test_registers_and_unregisters_its_domain(self):
        self.assertIs(self.router.routes["echo.localhost"], self.service)
        self.service.stopService()
        self.assertEqual(self.router.routes, {})

    def test_result_with_payload_then_the_actions(self):
        [reply] = self.ask("<iq type='get' id='1' from='a@x/r' to='echo.localhost'>"
                           "<echo xmlns='urn:e'/></iq>")
        self.assertEqual((reply["type"], reply["id"], reply["to"]), ("result", "1", "a@x/r"))
        self.assertEqual(reply.firstChildElement().name, "echo")
        self.assertEqual(self.service.after, ["a@x/r"])

    def test_empty_result(self):
        [reply] = self.ask("<iq type='set' id='1' from='a@x/r' to='echo.localhost'>"
                           "<empty xmlns='urn:e'/></iq>")
        self.assertEqual((reply["type"], reply.firstChildElement()), ("result", None))

    def test_errors(self):
        cases = [
            ("<iq type='get' id='1' from='a@x/r' to='echo.localhost'><fail xmlns='urn:e'/></iq>",
             "not-allowed"),
            ("<iq type='get' id='1' from='a@x/r' to='echo.localhost'><other xmlns='urn:e'/></iq>",
             "service-unavailable"),
            ("<iq type='get' id='1' from='a@x/r' to='u@echo.localhost'><echo xmlns='urn:e'/></iq>",
             "service-unavailable"),
            ("<iq type='get' id='1' from='a@x/r' to='echo.localhost/r'><echo xmlns='urn:e'/></iq>",
             "service-unavailable"),
            ("<iq type='get' id='1' from='a@x/r' to='echo.localhost'/>", "bad-request"),
            ("<iq type='get' id='1' from='a@x/r' to='echo.localhost'><echo xmlns='urn:e'/>"
             "<echo xmlns='urn:e'/></iq>", "bad-request"),
            ("<message from='a@x/r' to='echo.localhost'><body>hi</body></message>",
             "service-unavailable"),
        ]
        for xml, expected in cases:
            [reply] = self.ask(xml)
            self.assertEqual((reply["type"], condition(reply)), ("error", expected), xml)

    def test_a_bug_is_internal_server_error(self):
        [reply] = self.ask("<iq type='get' id='1' from='a@x/r' to='echo.localhost'>"
                           "<crash xmlns='urn:e'/></iq>")
        self.assertEqual(condition(reply), "internal-server-error")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_nothing_answers_what_must_not_be_answered(self):
        for xml in ("<iq type='result' id='1' from='a@x/r' to='echo.localhost'/>",
                    "<iq type='error' id='1' from='a@x/r' to='echo.localhost'/>",
                    "<message type='error' from='a@x/r' to='echo.localhost'/>",
                    "<presence from='a@x/r' to='echo.localhost'/>",
                    "<iq type='get' id='1' to='echo.localhost'><echo xmlns='urn:e'/></iq>"):
            self.assertEqual(self.ask(xml), [], xml)
