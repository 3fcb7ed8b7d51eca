"""xmppd.stanza: writing stanzas as XML text."""

import gc
import weakref

from twisted.trial import unittest
from twisted.words.xish import domish
from wokkel.generic import parseXml

from tests.support import without_collector
from xmppd.sm.stanzas import serialise
from xmppd.stanza import (
    XML_NS,
    describe,
    fast_element,
    release,
    remember_xml,
    remembered_xml,
    shallow_copy,
    share_children_xml,
    stream_child_text,
    xml_text,
)

NS_CLIENT = "jabber:client"


def parsed(xml: str) -> domish.Element:
    return parseXml(xml.encode("utf-8"))


def shape(element: domish.Element) -> tuple:
    """What a document means: names, namespaces, attributes, text, in order."""
    children = []
    for child in element.children:
        if isinstance(child, domish.Element):
            children.append(shape(child))
        elif children and isinstance(children[-1], str):
            children[-1] += child
        else:
            children.append(str(child))
    return (element.uri, element.name, sorted(element.attributes.items(), key=repr), children)


class XmlTextTests(unittest.TestCase):
    """xml_text writes the same document as domish's toXml."""

    def assertSameDocument(self, element: domish.Element, namespace=None):
        text = xml_text(element, namespace)
        expected = element.toXml() if namespace is None else None
        self.assertEqual(shape(parsed(text)), shape(parsed(expected or text)))
        return text

    def test_a_client_message(self):
        message = parsed(
            "<message xmlns='jabber:client' to='b@x/r' type='chat' id='1' xml:lang='en'>"
            "<body>a &amp; b &lt;c&gt; 'q' \"d\"</body>"
            "<request xmlns='urn:xmpp:receipts'/>"
            "<x xmlns='jabber:x:data' type='submit'><field var='a&apos;b'><value>1</value>"
            "</field></x><thread parent='p'>t</thread></message>")
        text = self.assertSameDocument(message)
        self.assertTrue(text.startswith(
            "<message xmlns='jabber:client' to='b@x/r' type='chat' id='1' xml:lang='en'>"), text)
        self.assertIn("<body>a &amp; b &lt;c&gt; 'q' \"d\"</body>", text)
        self.assertIn("<field var='a&apos;b'>", text)
        self.assertIn("<thread parent='p'>t</thread>", text)  # inherits jabber:client

    def test_prefixed_input_is_written_with_default_namespaces(self):
        element = parsed("<a:root xmlns:a='urn:a' xmlns='urn:d'><a:x/><y><a:z b='1'/></y>"
                         "</a:root>")
        text = self.assertSameDocument(element)
        self.assertEqual(text, "<root xmlns='urn:a'><x/><y xmlns='urn:d'><z xmlns='urn:a' "
                               "b='1'/></y></root>")

    def test_namespaced_attributes(self):
        element = domish.Element(("urn:a", "e"))
        element[(XML_NS, "lang")] = "de"
        element[("urn:other", "flag")] = "<yes>"
        text = self.assertSameDocument(element)
        self.assertIn(" xml:lang='de'", text)
        self.assertIn(" xmlns:a0='urn:other' a0:flag='&lt;yes&gt;'", text)

    def test_children_without_a_namespace_inherit(self):
        message = domish.Element((None, "message"))
        message.addElement("body", content="hi")
        message.addElement(("urn:x", "x")).addElement("y")
        self.assertEqual(xml_text(message, NS_CLIENT),
                         "<message xmlns='jabber:client'><body>hi</body>"
                         "<x xmlns='urn:x'><y/></x></message>")
        self.assertEqual(xml_text(message), "<message><body>hi</body><x xmlns='urn:x'><y/></x>"
                                            "</message>")

    def test_an_empty_namespace_is_declared(self):
        root = domish.Element(("urn:a", "root"))
        root.addChild(domish.Element(("", "plain")))
        self.assertEqual(xml_text(root), "<root xmlns='urn:a'><plain xmlns=''/></root>")

    def test_raw_xml_children_are_written_as_they_are(self):
        root = domish.Element(("urn:a", "root"))
        root.addRawXml("<b>&amp;</b>")
        root.addElement("c", content="&")
        self.assertEqual(xml_text(root), "<root xmlns='urn:a'><b>&amp;</b><c>&amp;</c></root>")

    def test_serialise_puts_the_root_in_jabber_client(self):
        for uri in (None, NS_CLIENT, "jabber:component:accept"):
            message = domish.Element((uri, "message"))
            message["to"] = "a@b"
            message.addElement((NS_CLIENT, "body"), content="x")
            stored = serialise(message)
            self.assertTrue(stored.startswith("<message xmlns='jabber:client' to='a@b'>"),
                            stored)
            self.assertEqual(parsed(stored).uri, NS_CLIENT)

    def test_describe_names_kind_and_addresses_only(self):
        message = parsed("<message xmlns='jabber:client' to='b@x' id='1'><body>secret</body>"
                         "<x xmlns='urn:x'/></message>")
        self.assertEqual(describe(message), "<message id='1' to='b@x' payload={urn:x}x>")


class RememberedXmlTests(unittest.TestCase):
    """remember_xml / remembered_xml: a stanza serialised once, for as long as it is unchanged."""

    def message(self) -> domish.Element:
        return parsed("<message xmlns='jabber:client' to='b@x/r' from='a@x/r' type='chat'>"
                      "<body>hi &amp; bye</body><thread>t</thread></message>")

    def test_both_forms_equal_what_xml_text_writes(self):
        message = self.message()
        remember_xml(message, serialise(message))
        self.assertEqual(remembered_xml(message), serialise(message))
        self.assertEqual(remembered_xml(message, NS_CLIENT), xml_text(message, None, NS_CLIENT))

    def test_a_server_built_stanza_in_no_namespace(self):
        message = domish.Element((None, "message"), attribs={"to": "b@x", "type": "chat"})
        message.addElement("body", content="x")
        remember_xml(message, serialise(message))
        self.assertEqual(remembered_xml(message, NS_CLIENT), xml_text(message, None, NS_CLIENT))

    def test_the_noted_text_is_what_is_handed_out(self):
        message = self.message()
        remember_xml(message, "<message xmlns='jabber:client' marked='1'/>")
        self.assertEqual(remembered_xml(message, NS_CLIENT), "<message marked='1'/>")

    def test_nothing_noted(self):
        self.assertIsNone(remembered_xml(self.message()))

    def test_a_changed_attribute_forgets(self):
        message = self.message()
        remember_xml(message, serialise(message))
        message["to"] = "c@x"
        self.assertIsNone(remembered_xml(message))
        self.assertIsNone(remembered_xml(message, NS_CLIENT))

    def test_a_child_added_in_place_forgets(self):
        message = self.message()
        remember_xml(message, serialise(message))
        message.addElement(("urn:xmpp:delay", "delay"))
        self.assertIsNone(remembered_xml(message))

    def test_a_new_children_list_forgets(self):
        message = self.message()
        remember_xml(message, serialise(message))
        message.children = list(message.children)
        self.assertIsNone(remembered_xml(message))

    def test_other_streams_serialise_themselves(self):
        message = self.message()
        remember_xml(message, serialise(message))
        self.assertIsNone(remembered_xml(message, "jabber:component:accept"))
        server = parsed("<message xmlns='jabber:server' to='b@x'><body>x</body></message>")
        remember_xml(server, serialise(server))
        self.assertIsNone(remembered_xml(server, NS_CLIENT))

    def test_serialise_uses_the_noted_text(self):
        message = self.message()
        remember_xml(message, "<message xmlns='jabber:client' noted='1'/>")
        self.assertEqual(serialise(message), "<message xmlns='jabber:client' noted='1'/>")


class SharedChildrenTests(unittest.TestCase):
    """share_children_xml: a broadcast's children written once for all its copies."""

    def presence(self) -> domish.Element:
        presence = domish.Element((None, "presence"), attribs={"from": "r@c.x/nick"})
        presence.addElement("status", content="out & <about>")
        x = presence.addElement(("http://jabber.org/protocol/muc#user", "x"))
        x.addElement("item")["role"] = "participant"
        presence.addChild(domish.SerializedXML("<c xmlns='urn:x' ver='1'/>"))
        return presence

    def test_copies_written_as_xml_text_writes_them(self):
        presence = self.presence()
        share_children_xml(presence)
        for to in ("a@x/r", "b@x/'quoted'&"):
            copy = shallow_copy(presence)
            copy["to"] = to
            self.assertEqual(remembered_xml(copy, NS_CLIENT), xml_text(copy, None, NS_CLIENT))
        empty = domish.Element((NS_CLIENT, "presence"), attribs={"type": "unavailable"})
        share_children_xml(empty)
        self.assertEqual(remembered_xml(shallow_copy(empty), NS_CLIENT),
                         "<presence type='unavailable'/>")

    def test_session_manager_copies_share_them_too(self):
        """readdress (presence broadcast, probe answers) keeps the shared children."""
        from xmppd.sm.stanzas import readdress

        presence = self.presence()
        share_children_xml(presence)
        copy = readdress(readdress(presence, to="a@x"), sender="b@x/r")
        self.assertIsNotNone(remembered_xml(copy, NS_CLIENT))
        self.assertEqual(remembered_xml(copy, NS_CLIENT), xml_text(copy, None, NS_CLIENT))
        self.assertIsNone(remembered_xml(readdress(self.presence(), to="a@x"), NS_CLIENT))

    def test_a_copy_with_other_children_is_written_in_full(self):
        presence = self.presence()
        share_children_xml(presence)
        added = shallow_copy(presence)
        added.addElement("delay")
        self.assertIsNone(remembered_xml(added, NS_CLIENT))
        replaced = shallow_copy(presence)
        replaced.children[0] = domish.Element((None, "status"))
        self.assertIsNone(remembered_xml(replaced, NS_CLIENT))
        namespaced = shallow_copy(presence)
        namespaced[(XML_NS, "lang")] = "en"
        self.assertIsNone(remembered_xml(namespaced, NS_CLIENT))

    def test_only_for_client_streams_and_stanzas(self):
        presence = self.presence()
        share_children_xml(presence)
        self.assertIsNone(remembered_xml(presence))  # the stored form: written in full
        other = domish.Element(("urn:other", "thing"))
        share_children_xml(other)
        self.assertIsNone(remembered_xml(other, NS_CLIENT))

    def test_shared_again_after_a_change(self):
        """Each broadcast writes the children anew: a change in between is seen."""
        presence = self.presence()
        share_children_xml(presence)
        presence.children[0].children[0] = "changed"
        share_children_xml(presence)
        self.assertIn(">changed</status>", remembered_xml(presence, NS_CLIENT))


class StreamChildTextTests(unittest.TestCase):
    """stream_child_text writes what Twisted's XmlStream.send writes for a stream's child."""

    def twisted_text(self, element: domish.Element) -> str:
        from twisted.words.protocols.jabber import xmlstream

        return element.toXml(prefixes={xmlstream.NS_STREAMS: "stream"},
                             defaultUri=NS_CLIENT, prefixesInScope=["stream"])

    def test_same_text_as_twisted(self):
        from twisted.words.protocols.jabber import xmlstream

        features = domish.Element((xmlstream.NS_STREAMS, "features"))
        features.addElement(("urn:ietf:params:xml:ns:xmpp-tls", "starttls")).addElement(
            "required")
        mechanisms = features.addElement(("urn:ietf:params:xml:ns:xmpp-sasl", "mechanisms"))
        mechanisms.addElement("mechanism", content="SCRAM-SHA-256")
        error = domish.Element((xmlstream.NS_STREAMS, "error"))
        error.addElement(("urn:ietf:params:xml:ns:xmpp-streams", "conflict"))
        text = error.addElement(("urn:ietf:params:xml:ns:xmpp-streams", "text"),
                                content="<a> & 'b'")
        text[(XML_NS, "lang")] = "en"
        challenge = domish.Element(("urn:ietf:params:xml:ns:xmpp-sasl", "challenge"))
        challenge.addContent("cj0xMjM=")
        iq = domish.Element((NS_CLIENT, "iq"), attribs={"type": "result", "id": "b&1"})
        for element in (features, error, challenge, iq,
                        domish.Element((xmlstream.NS_STREAMS, "features")),
                        domish.Element(("urn:xmpp:sm:3", "r"))):
            self.assertEqual(stream_child_text(element, NS_CLIENT), self.twisted_text(element))
        self.assertTrue(stream_child_text(features, NS_CLIENT).startswith("<stream:features>"))


class ShallowCopyTests(unittest.TestCase):
    """shallow_copy: own attributes and child list, the children themselves shared."""

    def test_shallow_copy(self):
        stanza = parseXml("<message to='a@b'><body>x</body></message>")
        copy = shallow_copy(stanza)
        copy["to"] = "c@d"
        self.assertEqual(stanza["to"], "a@b")
        self.assertIs(copy.children[0], stanza.children[0])
        copy.children.append("more")
        self.assertEqual(len(stanza.children), 1)


class FastElementTests(unittest.TestCase):
    """fast_element builds the element domish would."""

    def test_same_as_domish(self):
        fast = fast_element("urn:xmpp:sid:0", "stanza-id", {"by": "a@x", "id": "1"})
        slow = domish.Element(("urn:xmpp:sid:0", "stanza-id"), None, {"by": "a@x", "id": "1"})
        for name in ("uri", "name", "defaultUri", "attributes", "children", "parent",
                     "localPrefixes"):
            self.assertEqual(getattr(fast, name), getattr(slow, name), name)
        self.assertEqual(fast.toXml(), slow.toXml())


class ReleaseTests(unittest.TestCase):
    """release(): a built tree without parent links, freed by reference counting."""

    def test_tree_freed_without_the_collector(self):
        without_collector(self)
        iq = domish.Element((None, "iq"))
        query = iq.addElement(("jabber:iq:roster", "query"))
        item = query.addElement("item")
        item.addElement("group", content="Friends")
        iq.addChild(domish.SerializedXML("<x/>"))
        before = iq.toXml()
        release(iq)
        self.assertEqual(iq.toXml(), before)
        self.assertIsNone(query.parent)
        self.assertIsNone(item.parent)
        self.assertIsNone(item.group.parent)
        gone, gone_item = weakref.ref(iq), weakref.ref(item)
        del iq, query, item
        self.assertIsNone(gone())
        self.assertIsNone(gone_item())

    def test_built_tree_is_a_cycle_without_it(self):
        """Why: domish links children to their parent."""
        without_collector(self)
        iq = domish.Element((None, "iq"))
        iq.addElement("query")
        gone = weakref.ref(iq)
        del iq
        self.assertIsNotNone(gone())
        gc.collect()
        self.assertIsNone(gone())
