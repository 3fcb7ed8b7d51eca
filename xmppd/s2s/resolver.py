"""Where a remote domain's XMPP server is: static route, SRV records, or the domain itself.

Order (XEP-0368, RFC 6120 section 3.2): a static route from ``[s2s.routes]``;
else the ``_xmpps-server._tcp`` SRV records (direct TLS) followed by the
``_xmpp-server._tcp`` ones (STARTTLS), each set in RFC 2782 order (priority,
then weighted random); else the domain's A/AAAA addresses on port 5269.
A single SRV record with target ``.`` means the domain offers no such
service. Special-use names (RFC 6761: ``.example``, ``.invalid``, ``.test``,
``.localhost``, ``example.org``...) have no server unless a static route names
one: DNS is not asked. DNS goes through ``twisted.names``; tests pass a fake resolver with
the same ``lookupService`` method.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.names import dns
from twisted.names import error as dns_error

DEFAULT_PORT = 5269


class NoSuchServer(Exception):
    """DNS says the domain has no XMPP server."""


@dataclass(frozen=True)
class Target:
    """One place to try: a host and port (direct TLS or not), or a static endpoint."""

    host: str
    port: int
    direct_tls: bool = False
    #: A Twisted client endpoint description from [s2s.routes] (host/port unused).
    endpoint: str | None = None


@dataclass(frozen=True)
class SRVRecord:
    """The fields of an SRV record that ordering needs."""

    priority: int
    weight: int
    port: int
    target: str


def order_srv(records: Sequence[SRVRecord],
              choose: Callable[[], float] = random.random) -> list[SRVRecord]:
    """RFC 2782 order: ascending priority; within one, weighted random selection.

    ``choose`` returns a float in [0, 1) (injectable for tests).
    """
    ordered: list[SRVRecord] = []
    for priority in sorted({r.priority for r in records}):
        # Zero-weight records first, as RFC 2782 says, then pick by running sums.
        group = sorted((r for r in records if r.priority == priority),
                       key=lambda r: r.weight != 0)
        while group:
            total = sum(r.weight for r in group)
            threshold = choose() * total
            running, chosen = 0, len(group) - 1
            for position, record in enumerate(group):
                running += record.weight
                if running >= threshold:
                    chosen = position
                    break
            ordered.append(group.pop(chosen))
    return ordered


#: RFC 6761 (and RFC 2606) names that never have servers in the public DNS.
SPECIAL_USE = ("example", "invalid", "test", "localhost", "example.com", "example.net",
               "example.org", "local")


def is_special_use(domain: str) -> bool:
    """Whether a domain is (under) a special-use name, so DNS is not asked about it."""
    return any(domain == name or domain.endswith("." + name) for name in SPECIAL_USE)


class Resolver:
    """Resolves a remote domain to the targets to try, in order.

    ``dns_resolver`` has ``lookupService(name)`` (twisted.names' client by
    default); ``routes`` maps domains to static endpoint descriptions.
    """

    def __init__(self, routes: dict[str, str] | None = None, dns_resolver: Any = None,
                 choose: Callable[[], float] = random.random, reactor: Any = None):
        self.routes = dict(routes or {})
        self._dns = dns_resolver
        self._own_dns = False
        self.choose = choose
        self.reactor = reactor

    @property
    def dns(self) -> Any:
        """The DNS resolver (twisted.names' client on resolv.conf, made on first use)."""
        if self._dns is None:
            from twisted.names import client

            self._dns = client.Resolver(resolv="/etc/resolv.conf", reactor=self.reactor)
            self._own_dns = True
        return self._dns

    def close(self) -> None:
        """Stop the DNS client's periodic re-reading of resolv.conf (if we made it)."""
        call = getattr(self._dns, "_parseCall", None) if self._own_dns else None
        if call is not None and call.active():
            call.cancel()

    @defer.inlineCallbacks
    def resolve(self, domain: str) -> Any:
        """Fire with the list of :class:`Target` to try (NoSuchServer if none)."""
        if domain in self.routes:
            return [Target(domain, DEFAULT_PORT, endpoint=self.routes[domain])]
        if is_special_use(domain):
            raise NoSuchServer(f"{domain} is a special-use name (RFC 6761): no DNS for it")
        targets: list[Target] = []
        refused = 0
        for service, direct_tls in (("_xmpps-server._tcp.", True), ("_xmpp-server._tcp.", False)):
            records = yield self._srv(service + domain)
            if records is None:
                continue
            if len(records) == 1 and records[0].target in ("", "."):
                refused += 1
                continue
            targets.extend(Target(r.target, r.port, direct_tls)
                           for r in order_srv(records, self.choose))
        if targets:
            return targets
        if refused:
            raise NoSuchServer(f"{domain} publishes that it offers no XMPP server")
        return [Target(domain, DEFAULT_PORT)]

    @defer.inlineCallbacks
    def _srv(self, name: str) -> Any:
        """The SRV records of a name (None when there are none or DNS fails)."""
        try:
            answers, _authority, _additional = yield self.dns.lookupService(name)
        except (dns_error.DomainError, dns_error.DNSNameError, dns_error.DNSServerError,
                dns_error.DNSQueryRefusedError, dns_error.DNSNotImplementedError,
                dns_error.DNSUnknownError, dns_error.DNSFormatError, defer.TimeoutError):
            return None
        except Exception:
            return None
        records = [SRVRecord(a.payload.priority, a.payload.weight, a.payload.port,
                             str(a.payload.target).rstrip(".") or ".")
                   for a in answers if a.type == dns.SRV]
        return records or None
