"""Client-to-server streams: stream negotiation, SASL, resource binding.

* :mod:`xmppd.c2s.stream` — :class:`~xmppd.c2s.stream.C2SFactory`, the stream
  protocol, its authenticator and :class:`~xmppd.c2s.stream.ClientSession`;
* :mod:`xmppd.c2s.sasl` — SCRAM-SHA-256, SCRAM-SHA-1 and PLAIN;
* :mod:`xmppd.c2s.bind` — resource binding helpers;
* :mod:`xmppd.c2s.registration` — pre-authentication in-band registration;
* :mod:`xmppd.c2s.xmlparser` — the restricted, bounded XML parser;
* :mod:`xmppd.c2s.guard` — limits shared across connections (per address,
  per account, back-off after failed logins).
"""
