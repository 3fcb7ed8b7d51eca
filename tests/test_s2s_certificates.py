"""Remote certificates: trusted chain, validity period, and a name for the domain."""

import datetime

from twisted.trial import unittest

from tests.s2s_fakes import NOW, der_string, make_certificate, make_key
from xmppd.s2s.certificates import certificate_problem, names_domain

ID_ON_XMPPADDR = "1.3.6.1.5.5.7.8.5"
ID_ON_DNSSRV = "1.3.6.1.5.5.7.8.7"


class CertificateTests(unittest.TestCase):
    """certificate_problem() is None only for a trusted, current certificate naming the domain."""

    def setUp(self):
        self.ca_key = make_key()
        self.ca = make_certificate("Test CA", self.ca_key, ca=True)
        self.key = make_key()

    def issued(self, **kwargs):
        return make_certificate("b.example", self.key, ("Test CA", self.ca_key), **kwargs)

    def test_valid(self):
        leaf = self.issued(dns=("b.example",))
        self.assertIsNone(certificate_problem([leaf], "b.example", [self.ca], NOW))

    def test_wildcard_dns_id(self):
        leaf = self.issued(dns=("*.b.example",))
        self.assertIsNone(certificate_problem([leaf], "conference.b.example", [self.ca], NOW))
        self.assertIn("does not name",
                      certificate_problem([leaf], "b.example", [self.ca], NOW))

    def test_wrong_domain(self):
        leaf = self.issued(dns=("c.example",))
        self.assertEqual(certificate_problem([leaf], "b.example", [self.ca], NOW),
                         "certificate does not name b.example")

    def test_expired(self):
        leaf = self.issued(dns=("b.example",), not_before=NOW - datetime.timedelta(days=60),
                           not_after=NOW - datetime.timedelta(days=1))
        self.assertEqual(certificate_problem([leaf], "b.example", [self.ca], NOW),
                         "certificate expired")

    def test_not_yet_valid(self):
        leaf = self.issued(dns=("b.example",), not_before=NOW + datetime.timedelta(days=1))
        self.assertEqual(certificate_problem([leaf], "b.example", [self.ca], NOW),
                         "certificate not yet valid")

    def test_self_signed(self):
        leaf = make_certificate("b.example", self.key, dns=("b.example",))
        problem = certificate_problem([leaf], "b.example", [self.ca], NOW)
        self.assertTrue(problem.startswith("certificate not trusted"), problem)
        # ... unless it is itself trusted (a private federation's pinned certificate).
        self.assertIsNone(certificate_problem([leaf], "b.example", [leaf], NOW))

    def test_unknown_authority(self):
        other_key = make_key()
        other_ca = make_certificate("Other CA", other_key, ca=True)
        leaf = self.issued(dns=("b.example",))
        problem = certificate_problem([leaf], "b.example", [other_ca], NOW)
        self.assertTrue(problem.startswith("certificate not trusted"), problem)

    def test_intermediate_from_the_chain(self):
        middle_key = make_key()
        middle = make_certificate("Middle CA", middle_key, ("Test CA", self.ca_key), ca=True)
        leaf = make_certificate("b.example", self.key, ("Middle CA", middle_key),
                                dns=("b.example",))
        self.assertIsNone(certificate_problem([leaf, middle], "b.example", [self.ca], NOW))
        self.assertIsNotNone(certificate_problem([leaf], "b.example", [self.ca], NOW))

    def test_no_certificate(self):
        self.assertEqual(certificate_problem([], "b.example", [self.ca], NOW), "no certificate")


class NameTests(unittest.TestCase):
    """RFC 7712 name forms: DNS-ID, SRV-ID for _xmpp-server, XmppAddr."""

    def setUp(self):
        self.key = make_key()

    def test_srv_id(self):
        cert = make_certificate("x", self.key, other_names=(
            (ID_ON_DNSSRV, der_string(22, "_xmpp-server.b.example")),))
        self.assertTrue(names_domain(cert, "b.example"))
        self.assertFalse(names_domain(cert, "c.example"))

    def test_srv_id_for_another_service_does_not_count(self):
        cert = make_certificate("x", self.key, other_names=(
            (ID_ON_DNSSRV, der_string(22, "_xmpp-client.b.example")),))
        self.assertFalse(names_domain(cert, "b.example"))

    def test_xmppaddr(self):
        cert = make_certificate("x", self.key, other_names=(
            (ID_ON_XMPPADDR, der_string(12, "b.example")),))
        self.assertTrue(names_domain(cert, "b.example"))
        self.assertFalse(names_domain(cert, "c.example"))

    def test_common_name_alone_is_not_enough(self):
        cert = make_certificate("b.example", self.key)
        self.assertFalse(names_domain(cert, "b.example"))


class ClientTLSCreatorTests(unittest.TestCase):
    """Outgoing TLS names the remote domain (SNI) and, on direct TLS, offers ALPN
    ``xmpp-server`` (XEP-0368): a real handshake in memory against the S2S server context."""

    def handshake(self, creator):
        from OpenSSL import SSL

        from tests.support import make_test_certificate, pump_handshake
        from xmppd import tls
        from xmppd.s2s.manager import client_tls_options, server_tls_options

        cert, key = make_test_certificate(self, ("b.example",))
        server_options = server_tls_options(tls.server_tls_options(cert, key))
        server = SSL.Connection(server_options.getContext(), None)
        server.set_accept_state()
        creator.options = client_tls_options(tls.load_private_key(key),
                                             tls.load_certificate_chain(cert))
        client = creator.clientConnectionForTLS(None)
        pump_handshake(client, server)
        return server.get_servername(), client.get_alpn_proto_negotiated(), \
            server.get_alpn_proto_negotiated()

    def test_sni_and_alpn_on_direct_tls(self):
        from xmppd.s2s.certificates import ClientTLSCreator

        creator = ClientTLSCreator(None, "b.example", alpn=(b"xmpp-server",))
        self.assertEqual(self.handshake(creator), (b"b.example", b"xmpp-server",
                                                   b"xmpp-server"))

    def test_sni_without_alpn_after_starttls(self):
        from xmppd.s2s.certificates import ClientTLSCreator

        self.assertEqual(self.handshake(ClientTLSCreator(None, "b.example")),
                         (b"b.example", b"", b""))
