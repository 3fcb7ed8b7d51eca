"""xmppd.pubsub.protocol: reading a pubsub request and the pubsub errors."""

from twisted.trial import unittest

from tests.sm_fakes import stanza
from xmppd.errors import StanzaError
from xmppd.pubsub import NS_PUBSUB, NS_PUBSUB_ERRORS, NS_PUBSUB_OWNER
from xmppd.pubsub.protocol import VERBS, parse_request, pubsub_error, unsupported

OPTIONS_FORM = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
                "<value>http://jabber.org/protocol/pubsub#subscribe_options</value></field>"
                "<field var='pubsub#deliver'><value>0</value></field></x>")


def pubsub(inner, owner=False):
    uri = NS_PUBSUB_OWNER if owner else NS_PUBSUB
    return stanza(f"<pubsub xmlns='{uri}'>{inner}</pubsub>")


def parse(kind, inner, owner=False):
    return parse_request(kind, pubsub(inner, owner))


def app(error):
    element = error.appCondition
    return None if element is None else (element.uri, element.name)


class VerbTests(unittest.TestCase):
    """Each of XEP-0060's requests is recognised by iq type, namespace and element."""

    def test_every_verb(self):
        for (kind, uri, name), verb in VERBS.items():
            request = parse_request(kind, stanza(f"<pubsub xmlns='{uri}'><{name} node='n'/>"
                                                 "</pubsub>"))
            self.assertEqual(request.verb, verb)
            self.assertEqual(request.node, "n")
            self.assertIsNone(request.companion)

    def test_wrong_type_or_namespace_is_unknown(self):
        for kind, inner, owner in (
            ("get", "<publish node='n'/>", False),
            ("set", "<items node='n'/>", False),
            ("set", "<publish node='n'/>", True),
            ("set", "<configure node='n'/>", False),
            ("set", "<frobnicate/>", False),
            ("get", "", False),
        ):
            error = self.assertRaises(StanzaError, parse, kind, inner, owner)
            self.assertEqual(error.condition, "feature-not-implemented", inner)
            self.assertEqual(app(error), (NS_PUBSUB_ERRORS, "unsupported"))

    def test_two_verbs(self):
        error = self.assertRaises(StanzaError, parse, "set",
                                  "<publish node='a'/><retract node='a'/>")
        self.assertEqual(error.condition, "bad-request")

    def test_companions(self):
        request = parse("set", "<create node='n'/><configure/>")
        self.assertEqual((request.verb, request.companion.name), ("create", "configure"))
        request = parse("set", "<publish node='n'><item/></publish><publish-options/>")
        self.assertEqual((request.verb, request.companion.name), ("publish", "publish-options"))
        self.assertIsNone(request.publish_options())

    def test_subscribe_with_options(self):
        """§6.3.7 subscribe-and-configure: <options/> goes with <subscribe/>."""
        request = parse("set", f"<subscribe node='n' jid='a@b'/><options>{OPTIONS_FORM}"
                               "</options>")
        self.assertEqual((request.verb, request.companion.name), ("subscribe", "options"))
        form = request.subscribe_options()
        self.assertEqual(str(form.fields["pubsub#deliver"].value), "0")
        request = parse("set", f"<options>{OPTIONS_FORM}</options><subscribe node='n' "
                               "jid='a@b'/>")
        self.assertEqual((request.verb, request.companion.name), ("subscribe", "options"))

    def test_unexpected_companions(self):
        for inner in (
            "<publish node='n'/><configure/>",
            "<create node='n'/><configure/><configure/>",
            "<items node='n'/><x xmlns='urn:other'/>",
            "<create node='n'/><publish-options/>",
        ):
            kind = "get" if "items" in inner else "set"
            error = self.assertRaises(StanzaError, parse, kind, inner)
            self.assertEqual(error.condition, "bad-request", inner)

    def test_publish_options_without_form(self):
        request = parse("set", "<publish node='n'/><publish-options><x xmlns='a:b'/>"
                               "</publish-options>")
        error = self.assertRaises(StanzaError, request.publish_options)
        self.assertEqual(error.condition, "bad-request")
        self.assertEqual(app(error), (NS_PUBSUB_ERRORS, "invalid-options"))


class AttributeTests(unittest.TestCase):
    """The helpers reading the verb's attributes and children."""

    def test_node(self):
        self.assertIsNone(parse("get", "<items node=''/>").node)
        error = self.assertRaises(StanzaError, parse("get", "<items/>").required_node)
        self.assertEqual(error.condition, "bad-request")
        self.assertEqual(app(error), (NS_PUBSUB_ERRORS, "nodeid-required"))

    def test_jid(self):
        self.assertEqual(parse("set", "<subscribe node='n' jid='a@b/c'/>").jid().full(),
                         "a@b/c")
        error = self.assertRaises(StanzaError, parse("set", "<subscribe node='n'/>").jid)
        self.assertEqual(app(error), (NS_PUBSUB_ERRORS, "jid-required"))
        self.assertIsNone(parse("set", "<subscribe node='n'/>").jid(required=False))
        for bad in ("", "@b", "a@", "a@b@c", "a@b/"):
            request = parse("set", f"<subscribe node='n' jid='{bad}'/>")
            error = self.assertRaises(StanzaError, request.jid)
            self.assertEqual(error.condition, "bad-request", bad)
            self.assertEqual(app(error), (NS_PUBSUB_ERRORS, "invalid-jid"))

    def test_max_items(self):
        self.assertIsNone(parse("get", "<items node='n'/>").max_items())
        self.assertEqual(parse("get", "<items node='n' max_items='3'/>").max_items(), 3)
        for bad in ("0", "-1", "x", ""):
            request = parse("get", f"<items node='n' max_items='{bad}'/>")
            error = self.assertRaises(StanzaError, request.max_items)
            self.assertEqual(error.condition, "bad-request", bad)

    def test_item_ids(self):
        request = parse("get", "<items node='n'><item id='a'/><item id='b'/>"
                               "<item xmlns='urn:other' id='c'/></items>")
        self.assertEqual(request.item_ids(), ["a", "b"])
        request = parse("set", "<retract node='n'><item/></retract>")
        error = self.assertRaises(StanzaError, request.item_ids)
        self.assertEqual((error.condition, app(error)),
                         ("bad-request", (NS_PUBSUB_ERRORS, "item-required")))

    def test_flag(self):
        self.assertIsNone(parse("set", "<retract node='n'/>").flag("notify"))
        for text, value in (("true", True), ("1", True), ("false", False), ("0", False)):
            request = parse("set", f"<retract node='n' notify='{text}'/>")
            self.assertEqual(request.flag("notify"), value)

    def test_config_form_type(self):
        request = parse("set", "<create node='n'/><configure><x xmlns='jabber:x:data' "
                               "type='form'><field var='FORM_TYPE' type='hidden'><value>"
                               "http://jabber.org/protocol/pubsub#node_config</value>"
                               "</field></x></configure>")
        self.assertEqual(self.assertRaises(StanzaError, request.config_form).condition,
                         "bad-request")


class ErrorTests(unittest.TestCase):
    """Pubsub errors carry their condition in the pubsub#errors namespace."""

    def test_pubsub_error(self):
        error = pubsub_error("not-authorized", "presence-subscription-required")
        self.assertEqual((error.condition, error.type), ("not-authorized", "auth"))
        self.assertEqual(app(error), (NS_PUBSUB_ERRORS, "presence-subscription-required"))
        self.assertIsNone(pubsub_error("forbidden").appCondition)

    def test_unsupported(self):
        error = unsupported("purge-nodes")
        self.assertEqual((error.condition, error.type), ("feature-not-implemented", "cancel"))
        self.assertEqual(error.appCondition["feature"], "purge-nodes")
