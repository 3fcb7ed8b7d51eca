"""Client-to-server streams: stream negotiation, SASL, resource binding.

* :mod:`xmppd.c2s.factory` — :class:`~xmppd.c2s.factory.C2SFactory`, the
  listener's factory with its configuration and limits;
* :mod:`xmppd.c2s.stream` — :class:`~xmppd.c2s.stream.C2SStream`, one
  connection: parsing, limits, output, stream errors;
* :mod:`xmppd.c2s.negotiation` — the authenticator: header, features,
  STARTTLS, SASL, bind (then stanzas go to the bound ``Session``);
* :mod:`xmppd.c2s.sasl` — SCRAM-SHA-256, SCRAM-SHA-1 and PLAIN;
* :mod:`xmppd.c2s.bind` — resource binding helpers;
* :mod:`xmppd.c2s.registration` — pre-authentication in-band registration;
* :mod:`xmppd.c2s.xmlparser` — the restricted, bounded XML parser;
* :mod:`xmppd.c2s.guard` — limits shared across connections (per address,
  per account, back-off after failed logins).
"""
