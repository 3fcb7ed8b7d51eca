"""Tests for the router: delivery by domain and the errors it answers."""

from twisted.trial import unittest
from twisted.words.xish import domish, utility

from xmppd.router import Router


class Recorder:
    """A destination that records what it is sent."""

    def __init__(self):
        self.received = []

    def send(self, stanza):
        self.received.append(stanza)


def message(to=None, sender="romeo@localhost/orchard", kind=None):
    element = domish.Element(("jabber:client", "message"))
    if to is not None:
        element["to"] = to
    if sender is not None:
        element["from"] = sender
    if kind is not None:
        element["type"] = kind
    element.addElement("body", content="hi")
    return element


class RouterTests(unittest.TestCase):
    """Routing by the domain of 'to'."""

    def setUp(self):
        self.router = Router()
        self.local = Recorder()
        self.muc = Recorder()
        self.router.register("localhost", self.local)
        self.router.register("conference.localhost", self.muc)

    def test_by_domain(self):
        first = message("juliet@localhost/balcony")
        second = message("room@conference.localhost/nick")
        self.router.route(first)
        self.router.route(second)
        self.assertEqual(self.local.received, [first])
        self.assertEqual(self.muc.received, [second])
        self.assertIs(self.local.received[0], first)  # passed on, not copied

    def test_domain_is_normalised(self):
        stanza = message("juliet@LocalHost")
        self.router.route(stanza)
        self.assertEqual(self.local.received, [stanza])

    def test_no_to_goes_to_the_senders_domain(self):
        stanza = message(None)
        self.router.route(stanza)
        self.assertEqual(self.local.received, [stanza])

    def test_unknown_domain_is_answered(self):
        self.router.route(message("someone@elsewhere.example"))
        [reply] = self.local.received
        self.assertEqual(reply["type"], "error")
        self.assertEqual(reply["to"], "romeo@localhost/orchard")
        self.assertEqual(reply["from"], "someone@elsewhere.example")
        error = reply.error
        self.assertEqual(error["type"], "cancel")
        self.assertEqual(
            [(c.uri, c.name) for c in error.elements()],
            [("urn:ietf:params:xml:ns:xmpp-stanzas", "remote-server-not-found")],
        )

    def test_errors_are_never_answered(self):
        self.router.route(message("someone@elsewhere.example", kind="error"))
        self.assertEqual(self.local.received, [])

    def test_malformed_to(self):
        self.router.route(message("a@b@c@@"))
        [reply] = self.local.received
        self.assertEqual(reply["type"], "error")
        self.assertEqual(reply.error.firstChildElement().name, "jid-malformed")
        self.assertFalse(reply.hasAttribute("from"))

    def test_default_route(self):
        remote = Recorder()
        self.router.register(None, remote)
        stanza = message("someone@elsewhere.example")
        self.router.route(stanza)
        self.assertEqual(remote.received, [stanza])

    def test_unregister(self):
        self.router.unregister("conference.localhost", Recorder())  # not the registered one
        self.assertTrue(self.router.serves("conference.localhost"))
        self.router.unregister("conference.localhost", self.muc)
        self.assertFalse(self.router.serves("conference.localhost"))


class ComponentRouteTests(unittest.TestCase):
    """Streams registered with addRoute (wokkel's protocol)."""

    def setUp(self):
        self.router = Router()
        self.local = Recorder()
        self.router.register("localhost", self.local)
        self.pipe = utility.XmlPipe()
        self.from_router = []
        self.pipe.source.addObserver("/*", self.from_router.append)
        self.router.addRoute("gw.localhost", self.pipe.sink)

    def test_component_receives_and_sends(self):
        stanza = message("user@gw.localhost")
        self.router.route(stanza)
        self.assertEqual(self.from_router, [stanza])
        reply = message("romeo@localhost/orchard", sender="user@gw.localhost")
        self.pipe.source.send(reply)
        self.assertEqual(self.local.received, [reply])

    def test_component_may_not_forge_from(self):
        errors = []
        self.pipe.sink.sendStreamError = errors.append
        self.pipe.source.send(message("juliet@localhost", sender="romeo@localhost/x"))
        self.assertEqual(self.local.received, [])
        self.assertEqual([e.condition for e in errors], ["invalid-from"])

    def test_subdomain_of_component_is_allowed(self):
        reply = message("romeo@localhost", sender="x@sub.gw.localhost")
        self.pipe.source.send(reply)
        self.assertEqual(self.local.received, [reply])

    def test_inbound_is_the_same_path_without_the_pipe(self):
        inbound = self.router.inbound(self.pipe.sink)
        reply = message("romeo@localhost", sender="user@gw.localhost")
        inbound(reply)
        self.assertEqual(self.local.received, [reply])
        errors = []
        self.pipe.sink.sendStreamError = errors.append
        inbound(message("juliet@localhost", sender="romeo@localhost/x"))
        self.assertEqual([e.condition for e in errors], ["invalid-from"])
        self.assertEqual(self.local.received, [reply])
        self.router.removeRoute("gw.localhost", self.pipe.sink)
        self.assertIsNone(self.router.inbound(self.pipe.sink))

    def test_remove_route(self):
        self.router.removeRoute("gw.localhost", self.pipe.sink)
        self.pipe.source.send(message("juliet@localhost", sender="a@gw.localhost"))
        self.assertEqual(self.local.received, [])
        self.router.route(message("user@gw.localhost"))
        self.assertEqual(self.local.received[0]["type"], "error")


class SerializeTests(unittest.TestCase):
    """Stanzas are written without their stanza namespace."""

    def test_client_and_component_stanzas(self):
        from xmppd.stanza import serialize

        for uri in ("jabber:client", "jabber:component:accept"):
            stanza = domish.Element((uri, "message"))
            stanza.addElement("body", content="x")
            stanza.addElement(("urn:example", "extra"))
            self.assertEqual(
                serialize(stanza), "<message><body>x</body><extra xmlns='urn:example'/></message>"
            )

    def test_server_built_stanza_with_client_children(self):
        from xmppd.stanza import serialize

        stanza = domish.Element((None, "message"))
        stanza.addChild(message("a@b").body)
        self.assertEqual(serialize(stanza), "<message><body>hi</body></message>")

    def test_describe_hides_content(self):
        from xmppd.stanza import describe

        stanza = message("juliet@localhost", kind="chat")
        stanza.addElement(("http://jabber.org/protocol/muc", "x")).addElement(
            "password", content="secret")
        text = describe(stanza)
        self.assertNotIn("secret", text)
        self.assertNotIn("hi", text.replace("orchard", ""))
        self.assertIn("type='chat'", text)
        self.assertIn("payload={http://jabber.org/protocol/muc}x", text)


class ComponentFromNormalisationTests(unittest.TestCase):
    """The fast path of the component 'from' check keeps its strictness."""

    def setUp(self):
        self.router = Router()
        self.local = Recorder()
        self.router.register("localhost", self.local)
        self.pipe = utility.XmlPipe()
        self.errors = []
        self.pipe.sink.sendStreamError = self.errors.append
        self.router.addRoute("gw.localhost", self.pipe.sink)

    def test_unnormalised_own_domain_is_accepted(self):
        stanza = message("romeo@localhost", sender="user@GW.LocalHost")
        self.pipe.source.send(stanza)
        self.assertEqual(self.local.received, [stanza])
        self.assertEqual(self.errors, [])

    def test_lookalike_domain_is_refused(self):
        self.pipe.source.send(message("romeo@localhost", sender="user@evilgw.localhost"))
        self.assertEqual(self.local.received, [])
        self.assertEqual([e.condition for e in self.errors], ["invalid-from"])
