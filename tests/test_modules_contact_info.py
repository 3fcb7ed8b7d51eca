"""xmppd.modules.contact_info: XEP-0157 and XEP-0455 forms in the server's disco#info."""

from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from tests.test_sm_iq import DISCO_INFO, IQTestCase, iq
from xmppd.config import ConfigError, config_from_dict

NS_DATA = "jabber:x:data"


def forms(reply):
    """{FORM_TYPE: {var: [values]}} of a disco#info result."""
    found = {}
    for x in reply.query.elements(NS_DATA, "x"):
        fields = {}
        for f in x.elements(NS_DATA, "field"):
            fields[f["var"]] = [str(v) for v in f.elements(NS_DATA, "value")]
        found[fields.pop("FORM_TYPE")[0]] = fields
    return found


class ContactInfoTests(IQTestCase):
    """The forms appear when configured, with the configured URIs."""

    contact_info = {
        "abuse": ["mailto:abuse@example.org", "xmpp:abuse@example.org"],
        "security": ["https://example.org/security"],
        "outage_status": ["https://status.example.org/"],
    }

    def make_manager(self, **sections):
        sections.setdefault("contact_info", self.contact_info)
        return super().make_manager(**sections)

    @defer.inlineCallbacks
    def test_serverinfo_and_sos_forms(self):
        reply = yield self.asks(iq("localhost", DISCO_INFO))
        found = forms(reply)
        serverinfo = found["http://jabber.org/network/serverinfo"]
        self.assertEqual(serverinfo["abuse-addresses"],
                         ["mailto:abuse@example.org", "xmpp:abuse@example.org"])
        self.assertEqual(serverinfo["security-addresses"], ["https://example.org/security"])
        self.assertEqual(serverinfo["support-addresses"], [])
        self.assertEqual(set(serverinfo), {f"{k}-addresses" for k in (
            "abuse", "admin", "feedback", "sales", "security", "status", "support")})
        self.assertEqual(found["urn:xmpp:sos:0"],
                         {"external-status-addresses": ["https://status.example.org/"]})

    @defer.inlineCallbacks
    def test_not_on_a_users_bare_jid(self):
        reply = yield self.asks(iq("alice@localhost", DISCO_INFO))
        self.assertEqual(forms(reply), {})

    @defer.inlineCallbacks
    def test_nothing_configured_nothing_published(self):
        yield self.sm.stopService()
        self.sm = self.make_manager(contact_info={})
        self.sm.startService()
        self.alice = yield self.connect("alice")
        reply = yield self.asks(iq("localhost", DISCO_INFO))
        self.assertEqual(forms(reply), {})


class ContactInfoConfigTests(unittest.TestCase):
    """[contact_info] values must be lists of URIs."""

    def error(self, **values):
        with self.assertRaises(ConfigError) as caught:
            config_from_dict({"contact_info": values}, Path("."))
        return str(caught.exception)

    def test_not_a_uri(self):
        self.assertIn("contact_info.admin: 'admin@example.org' is not a URI",
                      self.error(admin=["admin@example.org"]))

    def test_not_a_list(self):
        self.assertIn("contact_info.abuse: must be a list", self.error(abuse="mailto:a@b"))

    def test_unknown_kind(self):
        self.assertIn("contact_info.sale: unknown key", self.error(sale=["mailto:a@b"]))
