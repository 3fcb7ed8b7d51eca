"""xmppd.errors: one StanzaError, one rule for error replies (never echo the payload)."""

from twisted.trial import unittest
from twisted.words.xish import domish

from xmppd.errors import NS_STANZAS, StanzaError, bounce, error_reply, must_not_answer


def stanza(name="message", kind=None, sender="romeo@localhost/orchard", to="x@y"):
    element = domish.Element(("jabber:client", name))
    if sender is not None:
        element["from"] = sender
    if to is not None:
        element["to"] = to
    if kind is not None:
        element["type"] = kind
    element["id"] = "s1"
    return element


class StanzaErrorTests(unittest.TestCase):
    """The <error/> element: type, legacy code, by, text."""

    def test_type_and_legacy_code_from_the_condition(self):
        element = StanzaError("forbidden").getElement()
        self.assertEqual((element["type"], element["code"]), ("auth", "403"))
        self.assertEqual(element.firstChildElement().uri, NS_STANZAS)
        self.assertEqual(element.firstChildElement().name, "forbidden")

    def test_conditions_missing_from_twisteds_table(self):
        self.assertEqual(StanzaError("policy-violation").getElement()["code"], "406")
        self.assertEqual(StanzaError("policy-violation").type, "modify")
        self.assertEqual(StanzaError("gone").type, "cancel")
        self.assertEqual(StanzaError("undefined-condition").type, "cancel")

    def test_explicit_type_and_by(self):
        element = StanzaError("service-unavailable", type="wait", by="room@muc").getElement()
        self.assertEqual(element["type"], "wait")
        self.assertEqual(element["by"], "room@muc")

    def test_text(self):
        element = StanzaError("bad-request", "needs a jid").getElement()
        texts = [c for c in element.elements() if c.name == "text"]
        self.assertEqual([str(t) for t in texts], ["needs a jid"])
        self.assertEqual(str(StanzaError("bad-request", "needs a jid")), "bad-request: needs a jid")

    def test_is_twisteds_stanza_error(self):
        from twisted.words.protocols.jabber import error

        self.assertIsInstance(StanzaError("conflict"), error.StanzaError)


class ErrorReplyTests(unittest.TestCase):
    """The one rule: addresses swapped, id kept, payload never echoed."""

    def test_addresses_swapped_and_id_kept(self):
        reply = error_reply(stanza(), StanzaError("item-not-found"))
        self.assertEqual(
            (reply.name, reply["type"], reply["to"], reply["from"], reply["id"]),
            ("message", "error", "romeo@localhost/orchard", "x@y", "s1"),
        )

    def test_payload_is_never_echoed(self):
        join = stanza("presence")
        x = join.addElement(("http://jabber.org/protocol/muc", "x"))
        x.addElement("password", content="hunter2")
        reply = error_reply(join, StanzaError("not-authorized", by="room@muc"))
        self.assertEqual([c.name for c in reply.elements()], ["error"])
        self.assertNotIn("hunter2", reply.toXml())

    def test_errors_and_results_are_not_answered(self):
        self.assertIsNone(error_reply(stanza(kind="error"), StanzaError("bad-request")))
        self.assertIsNone(error_reply(stanza("iq", "result"), StanzaError("bad-request")))
        self.assertTrue(must_not_answer(stanza("presence", "error")))
        self.assertFalse(must_not_answer(stanza("iq", "get")))

    def test_no_from_gives_a_reply_without_to(self):
        reply = error_reply(stanza(sender=None), StanzaError("not-authorized"))
        self.assertIsNone(reply.getAttribute("to"))
        self.assertEqual(reply["from"], "x@y")


class BounceTests(unittest.TestCase):
    """bounce(): the error reply to route back, if there is anyone to route it to."""

    def test_no_from_no_answer(self):
        self.assertIsNone(bounce(stanza(sender=None), "service-unavailable"))

    def test_iq_result_is_not_answered(self):
        self.assertIsNone(bounce(stanza("iq", "result"), "service-unavailable"))

    def test_message_bounce_carries_only_the_error(self):
        message = stanza()
        message.addElement("body", content="private words")
        reply = bounce(message, "service-unavailable", "nobody here")
        self.assertEqual(reply["type"], "error")
        self.assertEqual([c.name for c in reply.elements()], ["error"])
        self.assertNotIn("private words", reply.toXml())
        self.assertIn("nobody here", reply.toXml())
