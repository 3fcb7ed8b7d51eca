"""Multi-user chat (XEP-0045): the MUC service, the room core and the MUC feature modules.

* :mod:`xmppd.muc.service` — the service: routing, rooms' lifecycle, storage;
* :mod:`xmppd.muc.host` — the interfaces it offers rooms and modules;
* :mod:`xmppd.muc.room` (with :mod:`~xmppd.muc.messages`,
  :mod:`~xmppd.muc.nicks`, :mod:`~xmppd.muc.forwarding`,
  :mod:`~xmppd.muc.outgoing`, :mod:`~xmppd.muc.affiliations`,
  :mod:`~xmppd.muc.occupant`) — the room core;
* :mod:`xmppd.muc.config` — a room's settings and the configuration form's field table;
* :mod:`xmppd.muc.feature` — the MUC module base class and the iq boundary;
* :mod:`xmppd.muc.features` — the feature modules and the MUC module list.
"""
