"""Where a remote server is: static routes, SRV records in RFC 2782 order, the domain."""

from twisted.internet import defer
from twisted.names import dns
from twisted.names import error as dns_error
from twisted.trial import unittest

from xmppd.s2s.resolver import NoSuchServer, Resolver, SRVRecord, Target, order_srv


class FakeDNS:
    """Answers lookupService from a table: name -> list of (priority, weight, port, target)."""

    def __init__(self, table):
        self.table = table
        self.asked = []

    def lookupService(self, name):
        """SRV answers, or NXDOMAIN for names not in the table."""
        self.asked.append(name)
        if name not in self.table:
            return defer.fail(dns_error.DomainError(name))
        answers = [dns.RRHeader(name, dns.SRV, payload=dns.Record_SRV(p, w, port, target))
                   for p, w, port, target in self.table[name]]
        return defer.succeed((answers, [], []))


class OrderTests(unittest.TestCase):
    """RFC 2782: lowest priority first; within one, weighted random choice."""

    def test_priority_first(self):
        records = [SRVRecord(20, 0, 1, "c"), SRVRecord(10, 0, 1, "a"), SRVRecord(15, 0, 1, "b")]
        self.assertEqual([r.target for r in order_srv(records, lambda: 0.5)], ["a", "b", "c"])

    def test_weights_choose(self):
        records = [SRVRecord(10, 1, 1, "light"), SRVRecord(10, 9, 1, "heavy")]
        # Running sums 1 (light), 10 (heavy): a draw up to 1 picks light, above it heavy.
        self.assertEqual([r.target for r in order_srv(records, lambda: 0.05)],
                         ["light", "heavy"])
        self.assertEqual([r.target for r in order_srv(records, lambda: 0.5)],
                         ["heavy", "light"])

    def test_zero_weight_first_only_on_a_zero_draw(self):
        records = [SRVRecord(10, 5, 1, "weighted"), SRVRecord(10, 0, 1, "zero")]
        self.assertEqual([r.target for r in order_srv(records, lambda: 0.0)][0], "zero")
        self.assertEqual([r.target for r in order_srv(records, lambda: 0.3)],
                         ["weighted", "zero"])

    def test_distribution_follows_weights(self):
        import random

        rng = random.Random(7)
        records = [SRVRecord(1, 3, 1, "a"), SRVRecord(1, 1, 1, "b")]
        firsts = [order_srv(records, rng.random)[0].target for _ in range(4000)]
        share = firsts.count("a") / 4000
        self.assertTrue(0.72 < share < 0.78, share)


class ResolveTests(unittest.TestCase):
    """The order of sources."""

    def resolve(self, domain, table=None, routes=None):
        fake = FakeDNS(table or {})
        resolver = Resolver(routes, dns_resolver=fake, choose=lambda: 0.0)
        return resolver.resolve(domain), fake

    def test_static_route_wins(self):
        d, fake = self.resolve("b.org", routes={"b.org": "tcp:host=10.0.0.2:port=5999"})
        self.assertEqual(self.successResultOf(d),
                         [Target("b.org", 5269, endpoint="tcp:host=10.0.0.2:port=5999")])
        self.assertEqual(fake.asked, [])

    def test_direct_tls_then_starttls_records(self):
        table = {
            "_xmpps-server._tcp.b.org": [(5, 0, 443, "tls.b.org.")],
            "_xmpp-server._tcp.b.org": [(20, 0, 5270, "two.b.org."), (10, 0, 5269, "one.b.org.")],
        }
        d, fake = self.resolve("b.org", table)
        self.assertEqual(self.successResultOf(d), [
            Target("tls.b.org", 443, True), Target("one.b.org", 5269), Target("two.b.org", 5270)])
        self.assertEqual(fake.asked, ["_xmpps-server._tcp.b.org", "_xmpp-server._tcp.b.org"])

    def test_no_records_fall_back_to_the_domain(self):
        d, _ = self.resolve("b.org")
        self.assertEqual(self.successResultOf(d), [Target("b.org", 5269)])

    def test_dot_target_means_no_service(self):
        d, _ = self.resolve("b.org", {"_xmpp-server._tcp.b.org": [(0, 0, 0, b"")]})
        self.failureResultOf(d, NoSuchServer)

    def test_special_use_names_are_not_looked_up(self):
        for domain in ("nowhere.invalid", "x.example", "b.test", "example.org"):
            d, fake = self.resolve(domain)
            self.failureResultOf(d, NoSuchServer)
            self.assertEqual(fake.asked, [])
