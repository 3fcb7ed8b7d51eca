"""xmppd.modules.external_services: STUN/TURN discovery and TURN REST credentials (XEP-0215)."""

import base64
import hashlib
import hmac
from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from tests.sm_fakes import REMOTE, error_condition
from tests.test_sm_iq import DISCO_INFO, IQTestCase, iq
from xmppd.config import ConfigError, config_from_dict
from xmppd.modules.external_services import NS_EXTDISCO, turn_credentials

DISCO = "http://jabber.org/protocol/disco#info"

SERVICES = {
    "host": "turn.example.org",
    "secret": "s3cret",
    "ttl": 3600,
    "services": [
        {"type": "stun", "transport": "udp"},
        {"type": "turn", "transport": "udp", "secret": True, "username": "xmppd"},
        {"type": "turns", "transport": "tcp", "port": 5349, "secret": "other"},
        {"type": "ftp", "host": "files.example.org", "port": 21, "username": "guest",
         "password": "guest", "name": "Files"},
    ],
}


def services(reply, name="services"):
    """The <service/> attributes of an answer, in order."""
    (payload,) = reply.elements(NS_EXTDISCO, name)
    return [dict(s.attributes) for s in payload.elements(NS_EXTDISCO, "service")]


class ServicesTests(IQTestCase):
    """What local users get."""

    def make_manager(self, **sections):
        sections.setdefault("external_services", SERVICES)
        return super().make_manager(**sections)

    @property
    def now(self):
        return int(self.sm.modules["external_services"].server.reactor.seconds())

    def assertTurnCredentials(self, service, secret, suffix=""):
        expires, _, rest = service["username"].partition(":")
        self.assertEqual(rest, suffix)
        self.assertTrue(self.now + 3600 - 5 <= int(expires) <= self.now + 3600,
                        (expires, self.now))
        digest = hmac.new(secret.encode(), service["username"].encode(), hashlib.sha1).digest()
        self.assertEqual(service["password"], base64.b64encode(digest).decode())
        self.assertEqual(service["restricted"], "1")
        self.assertTrue(service["expires"].endswith("Z"))

    @defer.inlineCallbacks
    def test_every_service_with_defaults_and_credentials(self):
        reply = yield self.asks(iq("localhost", f"<services xmlns='{NS_EXTDISCO}'/>"))
        self.assertEqual(reply["type"], "result")
        stun, turn, turns, ftp = services(reply)
        self.assertEqual(stun, {"type": "stun", "host": "turn.example.org", "port": "3478",
                                "transport": "udp"})
        self.assertEqual((turn["host"], turn["port"], turn["transport"]),
                         ("turn.example.org", "3478", "udp"))
        self.assertTurnCredentials(turn, "s3cret", "xmppd")
        self.assertEqual(turns["port"], "5349")
        self.assertTurnCredentials(turns, "other")
        self.assertEqual(ftp, {"type": "ftp", "host": "files.example.org", "port": "21",
                               "username": "guest", "password": "guest", "name": "Files",
                               "restricted": "1"})

    @defer.inlineCallbacks
    def test_filtered_by_type(self):
        reply = yield self.asks(iq("localhost", f"<services xmlns='{NS_EXTDISCO}' type='turn'/>"))
        (payload,) = reply.elements(NS_EXTDISCO, "services")
        self.assertEqual(payload["type"], "turn")
        self.assertEqual([s["type"] for s in services(reply)], ["turn"])
        reply = yield self.asks(iq("localhost", f"<services xmlns='{NS_EXTDISCO}' type='x'/>"))
        self.assertEqual(services(reply), [])

    @defer.inlineCallbacks
    def test_credentials_for_a_named_service(self):
        ask = (f"<credentials xmlns='{NS_EXTDISCO}'>"
               "<service host='turn.example.org' type='turn'/></credentials>")
        reply = yield self.asks(iq("localhost", ask))
        (turn,) = services(reply, "credentials")
        self.assertTurnCredentials(turn, "s3cret", "xmppd")
        ask = (f"<credentials xmlns='{NS_EXTDISCO}'>"
               "<service host='turn.example.org' type='turns' port='5349'/></credentials>")
        (turns,) = services((yield self.asks(iq("localhost", ask))), "credentials")
        self.assertEqual(turns["type"], "turns")

    @defer.inlineCallbacks
    def test_credentials_errors(self):
        cases = [
            ("<service host='turn.example.org'/>", "bad-request"),  # no type
            ("<service type='turn'/>", "bad-request"),  # no host
            ("<service host='turn.example.org' type='turn' port='x'/>", "bad-request"),
            ("", "bad-request"),  # nothing named
            ("<service host='turn.example.org' type='stun'/>", "item-not-found"),  # open
            ("<service host='elsewhere.example' type='turn'/>", "item-not-found"),
            ("<service host='turn.example.org' type='turns' port='1'/>", "item-not-found"),
        ]
        for inner, condition in cases:
            reply = yield self.asks(
                iq("localhost", f"<credentials xmlns='{NS_EXTDISCO}'>{inner}</credentials>"))
            self.assertEqual(error_condition(reply), condition, inner)

    @defer.inlineCallbacks
    def test_nothing_for_other_servers_users(self):
        yield self.arrives(f"<iq type='get' id='r1' from='eve@{REMOTE}/x' to='localhost'>"
                           f"<services xmlns='{NS_EXTDISCO}'/></iq>")
        (reply,) = self.remote.take()
        self.assertEqual(error_condition(reply), "forbidden")
        self.assertEqual(list(reply.elements(NS_EXTDISCO, "services")), [])

    @defer.inlineCallbacks
    def test_disco_feature_once_configured(self):
        reply = yield self.asks(iq("localhost", DISCO_INFO))
        features = [f["var"] for f in reply.query.elements(DISCO, "feature")]
        self.assertIn(NS_EXTDISCO, features)
        yield self.sm.stopService()
        self.sm = self.make_manager(external_services={})
        self.sm.startService()
        self.alice = yield self.connect("alice")
        reply = yield self.asks(iq("localhost", DISCO_INFO))
        features = [f["var"] for f in reply.query.elements(DISCO, "feature")]
        self.assertNotIn(NS_EXTDISCO, features)


class CredentialTests(unittest.TestCase):
    """The TURN REST API computation (coturn's use-auth-secret)."""

    def test_known_value(self):
        # HMAC-SHA1("s3cret", "1700000000:alice"), base64, computed independently.
        user, password = turn_credentials("s3cret", 1700000000, "alice")
        self.assertEqual(user, "1700000000:alice")
        expected = base64.b64encode(
            hmac.new(b"s3cret", b"1700000000:alice", hashlib.sha1).digest()).decode()
        self.assertEqual(password, expected)
        self.assertEqual(turn_credentials("s3cret", 5)[0], "5")


class ConfigTests(unittest.TestCase):
    """Malformed service tables are refused at start-up with the key named."""

    def error(self, **values):
        with self.assertRaises(ConfigError) as caught:
            config_from_dict({"external_services": values}, Path("."))
        return str(caught.exception)

    def test_errors(self):
        cases = [
            ({"services": "stun"}, "must be a list"),
            ({"services": ["stun"]}, "must be a list of tables"),
            ({"services": [{"transport": "udp"}]}, "needs a type"),
            ({"services": [{"type": "stun", "colour": "red"}]}, "unknown key 'colour'"),
            ({"services": [{"type": "stun", "port": "80"}]}, "port has the wrong type"),
            ({"services": [{"type": "stun", "port": 70000}]}, "port must be 1-65535"),
            ({"services": [{"type": "turn", "secret": True}]}, "secret is empty"),
            ({"services": [{"type": "stun", "secret": "x"}]}, "only computes TURN"),
            ({"services": [{"type": "turn", "restricted": "yes"}]}, "wrong type"),
        ]
        for values, message in cases:
            found = self.error(**values)
            self.assertIn("external_services.services", found)
            self.assertIn(message, found)
