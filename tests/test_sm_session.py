"""xmppd.sm.session: what Session.receive checks and stamps (through a c2s stream)."""

from __future__ import annotations

from twisted.trial import unittest

from tests.c2s_fakes import (
    DOMAIN,
    Client,
    make_factory,
    stanza_error_condition,
    stream_error_condition,
)


class BoundStanzaTests(unittest.TestCase):
    """After bind: 'from' stamped, 'to' checked, iq rules, routing."""

    def setUp(self):
        self.factory = make_factory()
        self.router = self.factory.session_manager.router
        self.client = Client(self.factory)
        self.full = self.client.login()

    def test_from_is_stamped(self):
        self.client.send("<message from='mallory@evil.example' to='bob@example.org'/>")
        self.assertEqual(self.router.routed[0]["from"], self.full)

    def test_to_is_normalised(self):
        self.client.send("<message to='Bob@Example.ORG/Phone'/>")
        self.assertEqual(self.router.routed[0]["to"], "bob@example.org/Phone")

    def test_no_to_is_routed(self):
        self.client.send("<presence/>")
        self.assertEqual(len(self.router.routed), 1)
        self.assertFalse(self.router.routed[0].hasAttribute("to"))

    def test_malformed_to(self):
        events = self.client.send("<message to='a@b@c' id='m1'><body>x</body></message>")
        self.assertEqual(events[0].name, "message")
        self.assertEqual(events[0]["type"], "error")
        self.assertEqual(events[0]["to"], self.full)
        self.assertEqual(events[0]["from"], DOMAIN)
        self.assertEqual(stanza_error_condition(events[0]), "jid-malformed")
        self.assertEqual(self.router.routed, [])
        self.assertFalse(self.client.closed)

    def test_empty_domain_label_is_malformed(self):
        """'a..b' makes Twisted's stringprep raise IndexError: still jid-malformed."""
        for to in ("bob@a..b", "a..b", "room@./nick"):
            events = self.client.send(f"<message to='{to}' id='m1'><body>x</body></message>")
            self.assertEqual(stanza_error_condition(events[0]), "jid-malformed", to)
        self.assertEqual(self.router.routed, [])
        self.assertFalse(self.client.closed)

    def test_malformed_to_on_error_stanza_is_dropped(self):
        events = self.client.send("<message to='a@b@c' type='error'/>")
        self.assertEqual(events, [])
        self.assertEqual(self.router.routed, [])

    def test_iq_without_id(self):
        events = self.client.send("<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>")
        self.assertEqual(stanza_error_condition(events[0]), "bad-request")
        self.assertEqual(self.router.routed, [])

    def test_iq_bad_type(self):
        events = self.client.send("<iq type='fetch' id='1'><ping xmlns='urn:xmpp:ping'/></iq>")
        self.assertEqual(stanza_error_condition(events[0]), "bad-request")
        self.assertEqual(events[0]["id"], "1")

    def test_iq_get_without_payload(self):
        events = self.client.send("<iq type='get' id='1'/>")
        self.assertEqual(stanza_error_condition(events[0]), "bad-request")

    def test_iq_result_is_routed(self):
        self.client.send("<iq type='result' id='1' to='bob@example.org/x'/>")
        self.assertEqual(len(self.router.routed), 1)

    def test_unknown_top_level_element(self):
        events = self.client.send("<foo xmlns='urn:example'/>")
        self.assertEqual(stream_error_condition(events), "unsupported-stanza-type")

    def test_nonza_goes_to_its_module_handler(self):
        events = self.client.send("<nonza xmlns='urn:example:nonza'/>")
        self.assertEqual(events, [])
        [(session, element)] = self.factory.session_manager.nonzas
        self.assertEqual(session.full, self.full)
        self.assertEqual((element.uri, element.name), ("urn:example:nonza", "nonza"))
        self.assertEqual(self.router.routed, [])

    def test_stanza_in_wrong_namespace(self):
        events = self.client.send("<message xmlns='jabber:server' to='bob@example.org'/>")
        self.assertEqual(stream_error_condition(events), "unsupported-stanza-type")
        self.assertEqual(self.router.routed, [])

    def test_auth_after_bind(self):
        events = self.client.auth_plain()
        self.assertEqual(stream_error_condition(events), "policy-violation")

    def test_client_stream_error(self):
        events = self.client.send(
            "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
        )
        self.assertEqual(events, [("end",)])
        self.assertTrue(self.client.closed)

    def test_whitespace_keepalive(self):
        for _ in range(10):
            self.assertEqual(self.client.send(" \n "), [])
        self.assertFalse(self.client.closed)

    def test_client_closes_stream(self):
        events = self.client.send("</stream:stream>")
        self.assertEqual(events, [("end",)])
        self.assertTrue(self.client.closed)
        self.client.lose()
        self.assertEqual(len(self.factory.session_manager.unbound), 1)

    def test_router_crash(self):
        def crash(stanza):
            raise RuntimeError("router bug")

        self.router.route = crash
        events = self.client.send("<message to='bob@example.org'/>")
        self.assertEqual(stream_error_condition(events), "internal-server-error")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class FakeConnection:
    """Records what the session writes and the stream errors it asks for."""

    def __init__(self):
        self.closing = False
        self.written = []
        self.errors = []

    def write_stanza(self, stanza):
        self.written.append(stanza)

    def stream_error(self, condition, text=None):
        self.errors.append(condition)
        self.closing = True


class RecordingManager:
    """The part of the session manager a Session calls."""

    domain = DOMAIN

    def __init__(self):
        self.received = []
        self.hooked = []

    def deliver(self, session, stanza):
        self.hooked.append(stanza)
        session.write(stanza)

    def from_client(self, session, stanza):
        self.received.append(stanza)


class SessionConnectionTests(unittest.TestCase):
    """A session outlives its connection: attach, detach, close, deliver, receive."""

    def setUp(self):
        from twisted.words.protocols.jabber import jid

        from xmppd.sm.session import Session

        self.manager = RecordingManager()
        self.received = self.manager.received
        self.first = FakeConnection()
        self.session = Session(self.manager, jid.JID(f"romeo@{DOMAIN}/orchard"), self.first)

    def message(self):
        from twisted.words.xish import domish

        element = domish.Element((None, "message"))
        element["to"] = f"juliet@{DOMAIN}"
        element["id"] = "m1"
        return element

    def test_deliver_goes_through_the_manager_to_the_connection(self):
        stanza = self.message()
        self.session.deliver(stanza)
        self.assertEqual(self.manager.hooked, [stanza])
        self.assertEqual(self.first.written, [stanza])

    def test_detached_session_keeps_its_state_and_drops_writes(self):
        self.session.available = True
        self.assertIs(self.session.detach(), self.first)
        self.assertTrue(self.session.closed)
        self.session.deliver(self.message())
        self.assertEqual(self.first.written, [])
        self.assertTrue(self.session.available)
        self.session.close("conflict")  # nothing to close: no error
        self.assertEqual(self.first.errors, [])

    def test_attach_a_new_connection(self):
        self.session.detach()
        second = FakeConnection()
        self.session.attach(second)
        self.assertFalse(self.session.closed)
        stanza = self.message()
        self.session.deliver(stanza)
        self.assertEqual((self.first.written, second.written), ([], [stanza]))
        self.session.close("conflict")
        self.assertEqual(second.errors, ["conflict"])
        self.assertTrue(self.session.closed)

    def test_receive_stamps_and_hands_over(self):
        stanza = self.message()
        stanza["from"] = "mallory@evil.example"
        self.session.receive(stanza)
        self.assertEqual(self.received, [stanza])
        self.assertEqual(stanza["from"], f"romeo@{DOMAIN}/orchard")

    def test_receive_refuses_a_malformed_to_from_the_server(self):
        stanza = self.message()
        stanza["to"] = "a@b@c"
        self.session.receive(stanza)
        self.assertEqual(self.received, [])
        [reply] = self.first.written
        self.assertEqual((reply["type"], reply["from"], reply["to"]),
                         ("error", DOMAIN, f"romeo@{DOMAIN}/orchard"))
        self.assertEqual(reply.error.firstChildElement().name, "jid-malformed")


class NewerUnicodeResourcepartTests(unittest.TestCase):
    """A resourcepart RFC 7622 allows but Unicode 3.2's resourceprep lacks (issue 11).

    Such an address (an emoji MUC nick) is routed on, for its destination to
    judge; everything else that resourceprep refuses is still ``jid-malformed``
    from the server's domain, and localparts and domainparts stay strict.
    """

    def setUp(self):
        self.factory = make_factory()
        self.router = self.factory.session_manager.router
        self.client = Client(self.factory)
        self.full = self.client.login()

    def assert_routed(self, to, expected):
        events = self.client.send(f"<presence to='{to}'/>")
        self.assertEqual(events, [])
        [routed] = self.router.routed
        self.assertEqual(routed["to"], expected)
        self.router.routed.clear()

    def assert_malformed(self, to):
        events = self.client.send(f"<presence to='{to}'/>")
        self.assertEqual(len(events), 1, to)
        self.assertEqual(events[0]["type"], "error")
        self.assertEqual(events[0]["from"], DOMAIN)
        self.assertEqual(stanza_error_condition(events[0]), "jid-malformed", to)
        self.assertEqual(self.router.routed, [], to)

    def test_emoji_nick_reaches_the_room(self):
        room = "room@conference.example.org"
        self.assert_routed(f"{room}/\U0001f339", f"{room}/\U0001f339")

    def test_rest_of_the_address_is_normalised(self):
        """Localpart and domainpart are prepared; the resourcepart gets resourceprep's mapping."""
        self.assert_routed(
            "Room@Conference.EXAMPLE.org/\ufb01 \U0001f339",
            "room@conference.example.org/fi \U0001f339",
        )

    def test_letters_newer_than_unicode_3_2(self):
        """Not only emoji: U+0221 (a letter assigned in Unicode 4.0)."""
        room = "room@conference.example.org"
        self.assert_routed(f"{room}/\u0221", f"{room}/\u0221")

    def test_truly_malformed_addresses_are_still_refused(self):
        for to in (
            "room@conference.example.org/x\ufffd",  # prohibited (C.6), assigned in 3.2
            "room@conference.example.org/\ufffd\U0001f339",  # an emoji does not excuse it
            "room@conference.example.org/\U000f0001",  # private use
            "room@conference.example.org/\U000e0101",  # a variation selector
            "room@conference.example.org/\u05d0\U0001f339",  # bidi: RTL must end RTL
            "room@conference.example.org/" + "\U0001f339" * 256,  # 1024 octets
            "ro\U0001f339m@conference.example.org/nick",  # localparts stay strict
            "@conference.example.org/\U0001f339",  # empty localpart
            "a@b@c/\U0001f339",
        ):
            self.assert_malformed(to)

    def test_longest_allowed(self):
        nick = "\U0001f339" * 255 + "abc"  # 1023 octets
        room = "room@conference.example.org"
        self.assert_routed(f"{room}/{nick}", f"{room}/{nick}")

    def test_normal_jids_take_the_cached_path(self):
        from xmppd.addresses import parse_jid

        address = "cached@example.org/path"
        self.assert_routed(address, address)
        before = parse_jid.cache_info().hits
        self.assert_routed(address, address)
        self.assertGreater(parse_jid.cache_info().hits, before)
