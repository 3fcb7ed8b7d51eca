"""Federation: server-to-server streams (RFC 6120) between xmppd and other servers.

* :mod:`xmppd.s2s.manager` — :class:`~xmppd.s2s.manager.S2SManager`, the
  router's default route: one outgoing stream per (local domain, remote
  domain), a queue while it is set up, bounces when it cannot be;
  the listener factory for incoming streams;
* :mod:`xmppd.s2s.stream` — the S2S stream in both directions: restricted
  parser and limits as on c2s, STARTTLS, SASL EXTERNAL, Server Dialback;
* :mod:`xmppd.s2s.dialback` — dialback keys (XEP-0185);
* :mod:`xmppd.s2s.certificates` — checking a remote server's certificate;
* :mod:`xmppd.s2s.resolver` — where a remote domain's server is (static
  routes, SRV records, A/AAAA);
* :mod:`xmppd.s2s.status` — a stream's state as ``xmppdctl s2s`` shows it.
"""
