"""xmppd.muc.feature: the MUC's iq boundary, and disco features that depend on a target."""

from __future__ import annotations

from twisted.trial import unittest
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from tests.muc_fakes import error_condition
from xmppd.errors import StanzaError
from xmppd.module import ModuleHost, Scope, iq_handler
from xmppd.muc.feature import MUCModule, MUCRequest, answer

NS = "urn:example:muc-test"
ROOM = "room@conference.localhost"


class Sample(MUCModule):
    """A room module whose disco features follow the room it is asked about."""

    name = "sample"
    features = {Scope.MUC_SERVICE: [NS]}

    def disco_features(self, scope, target=None):
        if scope is Scope.ROOM:
            return ["sample_on" if target["on"] else "sample_off"]
        return super().disco_features(scope)

    @iq_handler("get", NS, "ok", Scope.ROOM)
    def ok(self, request):
        request.after_reply(lambda: self.log.append("after"))
        self.log.append("handler")
        return domish.Element((NS, "ok"))

    @iq_handler("get", NS, "refuse", Scope.ROOM)
    def refuse(self, request):
        request.after_reply(lambda: self.log.append("after"))
        raise StanzaError("forbidden")

    @iq_handler("get", NS, "elsewhere", Scope.ROOM)
    def elsewhere(self, request):
        raise StanzaError("forbidden", by="someone@else")

    @iq_handler("get", NS, "broken", Scope.ROOM)
    def broken(self, request):
        raise RuntimeError("bug")


class Legacy(MUCModule):
    """A module whose disco_features takes no target (as the session manager's do)."""

    name = "legacy"

    def disco_features(self, scope):
        return ["legacy"] if scope is Scope.MUC_SERVICE else []


def iq(name):
    stanza = domish.Element((None, "iq"))
    stanza["type"], stanza["id"] = "get", "i1"
    stanza["from"], stanza["to"] = "romeo@localhost/r", ROOM
    payload = stanza.addElement((NS, name))
    return MUCRequest(stanza, jid.JID("romeo@localhost/r"), jid.JID(ROOM), payload, Scope.ROOM,
                      None)


class AnswerTests(unittest.TestCase):
    def setUp(self):
        self.host = ModuleHost(None, [Sample])
        self.module = self.host["sample"]
        self.module.log = []
        self.sent = []

    def run_request(self, name):
        request = iq(name)
        handler = self.host.iq_handler("get", request.payload, Scope.ROOM)
        answer(self.host, handler, request,
               lambda s: (self.module.log.append("sent"), self.sent.append(s)),
               ROOM, "conference.localhost")
        (reply,) = self.sent
        return reply

    def test_result_then_after_reply(self):
        reply = self.run_request("ok")
        self.assertEqual(reply["type"], "result")
        self.assertEqual(reply["from"], ROOM)
        self.assertEqual(self.module.log, ["handler", "sent", "after"])

    def test_error_by_the_room_and_no_after_reply(self):
        reply = self.run_request("refuse")
        self.assertEqual(error_condition(reply), "forbidden")
        self.assertEqual(reply.error["by"], ROOM)
        self.assertEqual(self.module.log, ["sent"])
        self.assertEqual(list(reply.elements(NS, "refuse")), [])

    def test_error_keeps_its_own_by(self):
        reply = self.run_request("elsewhere")
        self.assertEqual(reply.error["by"], "someone@else")

    def test_unexpected_exception_is_an_internal_error_by_the_service(self):
        reply = self.run_request("broken")
        self.assertEqual(error_condition(reply), "internal-server-error")
        self.assertEqual(reply.error["by"], "conference.localhost")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class TargetTests(unittest.TestCase):
    def test_features_follow_the_target(self):
        host = ModuleHost(None, [Sample])
        self.assertEqual(host.features(Scope.ROOM, {"on": True}), ["sample_on"])
        self.assertEqual(host.features(Scope.ROOM, {"on": False}), ["sample_off"])

    def test_modules_without_target_keep_working(self):
        host = ModuleHost(None, [Sample, Legacy])
        self.assertEqual(host.features(Scope.MUC_SERVICE), [NS, "legacy"])
