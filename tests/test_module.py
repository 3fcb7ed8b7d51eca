"""xmppd.module: handler and hook tables, the iq boundary, disco from modules."""

from dataclasses import dataclass

from twisted.internet import defer
from twisted.trial import unittest
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from xmppd.errors import StanzaError
from xmppd.module import (
    ALREADY_ANSWERED,
    Inline,
    InlineResult,
    IQRequest,
    Module,
    ModuleHost,
    Point,
    Scope,
    hook,
    inline_handler,
    iq_handler,
)

NS = "urn:example:test"


def request(kind="get", name="q", scope=Scope.SERVER):
    stanza = domish.Element((None, "iq"))
    stanza["type"], stanza["id"] = kind, "i1"
    stanza["from"], stanza["to"] = "romeo@localhost/orchard", "localhost"
    payload = stanza.addElement((NS, name))
    return IQRequest(stanza, jid.JID("romeo@localhost/orchard"), jid.JID("localhost"), payload,
                     scope, None)


@dataclass(frozen=True)
class EchoSettings:
    greeting: str = "hi"


class Echo(Module):
    """A test module with a handler of each kind and two hooks."""

    name = "echo"
    features = {Scope.SERVER: [NS, "shared"], Scope.ACCOUNT: [NS]}
    identities = {Scope.SERVER: [("server", "im", "test")]}
    settings = EchoSettings
    seen: list

    @iq_handler("get", NS, "q", Scope.SERVER, Scope.ACCOUNT)
    def answer(self, req):
        element = domish.Element((NS, "q"))
        element["greeting"] = self.config.greeting
        return element

    @iq_handler("set", NS, "q", Scope.SERVER)
    def empty(self, req):
        return None

    @iq_handler("get", NS, "refuse", Scope.SERVER)
    def refuse(self, req):
        raise StanzaError("forbidden", "not you")

    @iq_handler("get", NS, "later", Scope.SERVER)
    def later(self, req):
        return defer.succeed(domish.Element((NS, "later")))

    @iq_handler("get", NS, "broken", Scope.SERVER)
    def broken(self, req):
        raise RuntimeError("bug")

    @iq_handler("get", NS, "self", Scope.SERVER)
    def answers_itself(self, req):
        return ALREADY_ANSWERED

    @hook(Point.SESSION_BOUND, priority=1)
    def low(self, state):
        state.append("echo-low")

    @hook(Point.CLIENT_STANZA, priority=5)
    def stop(self, state, stanza):
        state.append("echo-stop")
        return stanza == "stop"


class Other(Module):
    """A second module: a hook of higher priority, a feature twice, a form."""

    name = "other"
    features = {Scope.SERVER: ["shared", "other"]}

    @hook(Point.SESSION_BOUND, priority=10)
    def high(self, state):
        state.append("other-high")

    @hook(Point.CLIENT_STANZA, priority=0)
    def after(self, state, stanza):
        state.append("other-after")

    @hook(Point.SESSION_AVAILABLE)
    def slow(self, state):
        d = defer.Deferred()
        state.append(d)
        return d

    def disco_forms(self, scope):
        from wokkel import data_form

        if scope is Scope.SERVER:
            return [data_form.Form("result", formNamespace="urn:example:form")]
        return []


class HostTests(unittest.TestCase):
    """Building the tables and running hooks."""

    def setUp(self):
        self.host = ModuleHost(object(), [Echo, Other],
                               lambda cls: EchoSettings("hello") if cls.settings else None)

    def test_modules_by_name_with_their_settings(self):
        self.assertEqual(list(self.host.modules), ["echo", "other"])
        self.assertEqual(self.host["echo"].config, EchoSettings("hello"))
        self.assertIsNone(self.host["other"].config)
        self.assertIsNone(self.host.get("missing"))

    def test_handler_lookup_by_type_namespace_name_and_scope(self):
        q = domish.Element((NS, "q"))
        self.assertEqual(self.host.iq_handler("get", q, Scope.SERVER), self.host["echo"].answer)
        self.assertEqual(self.host.iq_handler("get", q, Scope.ACCOUNT), self.host["echo"].answer)
        self.assertIsNone(self.host.iq_handler("set", q, Scope.ACCOUNT))
        self.assertIsNone(self.host.iq_handler("get", domish.Element(("urn:x", "q")),
                                               Scope.SERVER))
        self.assertTrue(self.host.handles(q, Scope.ACCOUNT))
        self.assertFalse(self.host.handles(domish.Element(("urn:x", "q")), Scope.SERVER))

    def test_two_handlers_for_one_key_are_refused(self):
        class Twin(Echo):
            name = "twin"

        with self.assertRaises(ValueError):
            ModuleHost(object(), [Echo, Twin], lambda cls: EchoSettings())

    def test_two_modules_with_one_name_are_refused(self):
        class Again(Other):
            pass

        with self.assertRaises(ValueError):
            ModuleHost(object(), [Other, Again])

    def test_hooks_run_by_priority(self):
        seen = []
        self.assertFalse(self.host.fire(Point.SESSION_BOUND, seen))
        self.assertEqual(seen, ["other-high", "echo-low"])

    def test_a_true_result_stops_the_point(self):
        seen = []
        self.assertTrue(self.host.fire(Point.CLIENT_STANZA, seen, "stop"))
        self.assertEqual(seen, ["echo-stop"])
        seen = []
        self.assertFalse(self.host.fire(Point.CLIENT_STANZA, seen, "go"))
        self.assertEqual(seen, ["echo-stop", "other-after"])

    def test_added_hooks_run_by_priority_after_modules_of_equal_priority(self):
        self.host.add_hook(Point.SESSION_BOUND, lambda state: state.append("added-1"), 1)
        self.host.add_hook(Point.SESSION_BOUND, lambda state: state.append("added-20"), 20)
        self.host.add_hook(Point.DELIVER_MESSAGE, lambda state, stanza: state.append("new"))
        seen = []
        self.host.fire(Point.SESSION_BOUND, seen)
        self.assertEqual(seen, ["added-20", "other-high", "echo-low", "added-1"])
        self.assertTrue(self.host.has_hooks(Point.DELIVER_MESSAGE))
        seen = []
        self.host.fire(Point.DELIVER_MESSAGE, seen, None)
        self.assertEqual(seen, ["new"])

    def test_points_without_hooks(self):
        self.assertFalse(self.host.has_hooks(Point.DELIVER_MESSAGE))
        self.assertTrue(self.host.has_hooks(Point.CLIENT_STANZA))
        self.assertFalse(self.host.fire(Point.DELIVER_MESSAGE, None, None))

    def test_fire_async_waits_for_deferreds(self):
        seen = []
        d = self.host.fire_async(Point.SESSION_AVAILABLE, seen)
        self.assertNoResult(d)
        seen[0].callback(None)
        self.assertFalse(self.successResultOf(d))


class BoundaryTests(unittest.TestCase):
    """answer_iq: results, errors and bugs become replies in one place."""

    def setUp(self):
        self.host = ModuleHost(object(), [Echo], lambda cls: EchoSettings("hello"))
        self.sent = []

    def answer(self, name, kind="get"):
        req = request(kind, name)
        handler = self.host.iq_handler(kind, req.payload, Scope.SERVER)
        d = self.host.answer_iq(handler, req, self.sent.append)
        self.successResultOf(d)
        return self.sent

    def test_payload_result(self):
        [reply] = self.answer("q")
        self.assertEqual((reply["type"], reply["id"], reply["to"]),
                         ("result", "i1", "romeo@localhost/orchard"))
        self.assertEqual(reply.firstChildElement()["greeting"], "hello")

    def test_empty_result(self):
        [reply] = self.answer("q", "set")
        self.assertEqual(reply["type"], "result")
        self.assertEqual(list(reply.elements()), [])

    def test_deferred_result(self):
        [reply] = self.answer("later")
        self.assertEqual(reply.firstChildElement().name, "later")

    def test_stanza_error_becomes_the_error_reply(self):
        [reply] = self.answer("refuse")
        self.assertEqual(reply["type"], "error")
        self.assertEqual(reply.error["type"], "auth")
        self.assertEqual(reply.error.firstChildElement().name, "forbidden")
        self.assertEqual([c.name for c in reply.elements()], ["error"])

    def test_a_bug_is_logged_and_answered_internal_server_error(self):
        [reply] = self.answer("broken")
        self.assertEqual(reply.error.firstChildElement().name, "internal-server-error")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_a_handler_that_answered_itself(self):
        self.assertEqual(self.answer("self"), [])


class DiscoTests(unittest.TestCase):
    """disco#info is computed from the modules."""

    def test_identities_features_and_forms(self):
        host = ModuleHost(object(), [Echo, Other], lambda cls: EchoSettings())
        info = host.disco_info(Scope.SERVER)
        self.assertEqual(host.features(Scope.SERVER), [NS, "shared", "other"])
        element = info.toElement()
        self.assertEqual([(i["category"], i["type"], i["name"]) for i in element.elements()
                          if i.name == "identity"], [("server", "im", "test")])
        self.assertEqual(list(info.extensions), ["urn:example:form"])
        self.assertEqual(host.features(Scope.ACCOUNT), [NS])

    def test_a_disabled_module_is_gone_from_disco(self):
        host = ModuleHost(object(), [Other])
        self.assertEqual(host.features(Scope.SERVER), ["shared", "other"])


class Inlined(Module):
    """A module with SASL2 and Bind 2 inline handlers and a SASL2 mechanism."""

    name = "inlined"

    @inline_handler(Inline.SASL2, NS, "early", priority=5)
    def early(self, negotiator, element):
        return InlineResult(domish.Element((NS, "done")))

    @inline_handler(Inline.BIND2, NS, "on", feature=NS)
    @inline_handler(Inline.BIND2, NS, "quiet")
    def switch(self, session, element):
        return None

    def sasl2_features(self, negotiator):
        return [domish.Element((NS, "offer"))]

    def sasl2_mechanisms(self, negotiator):
        return ["X-TEST"]

    def sasl2_exchange(self, negotiator, mechanism, gate):
        return (mechanism, negotiator)


class InlineTests(unittest.TestCase):
    """SASL2 / Bind 2 inline handlers and SASL2 mechanisms gathered from modules."""

    def setUp(self):
        self.host = ModuleHost(object(), [Other, Inlined])

    def test_lookup(self):
        module = self.host["inlined"]
        self.assertEqual(self.host.inline_handler(Inline.SASL2, NS, "early"),
                         (5, module.early))
        self.assertEqual(self.host.inline_handler(Inline.BIND2, NS, "on"), (0, module.switch))
        self.assertIsNone(self.host.inline_handler(Inline.BIND2, NS, "early"))
        self.assertIsNone(self.host.inline_handler(Inline.SASL2, NS, "on"))

    def test_offers(self):
        self.assertEqual(self.host.bind2_features(), [NS])  # "quiet" advertises nothing
        self.assertEqual([e.name for e in self.host.sasl2_features(None)], ["offer"])
        self.assertEqual(self.host.sasl2_mechanisms(None), ["X-TEST"])
        self.assertEqual(self.host.sasl2_exchange("n", "X-TEST", None), ("X-TEST", "n"))
        self.assertIsNone(self.host.sasl2_exchange("n", "PLAIN", None))

    def test_two_handlers_for_one_element_are_refused(self):
        class Twin(Inlined):
            name = "twin"

        with self.assertRaises(ValueError):
            ModuleHost(object(), [Inlined, Twin])
