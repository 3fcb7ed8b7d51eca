"""Message archives (XEP-0313): storage, protocol, policy and the batched writer.

What exists:

* :mod:`xmppd.mam.store`: :class:`~xmppd.mam.store.ArchiveStore`, the
  ``mam_archive`` table (``SCHEMA``, for a module's ``schema``): append with
  a random, unguessable archive id (the XEP-0359 stanza-id), paged queries
  with the XEP-0313 filters and what RSM reports (first/last, index, count,
  complete), the metadata bounds, deleting an archive, expiry by age and
  trimming an archive to a size. Personal archives go with their account.
* :mod:`xmppd.mam.query`: parsing archive queries (data form, RSM,
  flip-page) with the standard errors for bad input, running them on a
  store, and building the result messages, the ``<fin/>``, the form-fields
  answer, the metadata answer and archiving preferences (``<prefs/>``).
* :mod:`xmppd.mam.policy`: which messages a personal archive keeps
  (:func:`~xmppd.mam.policy.archivable`) and stripping/stamping
  ``<stanza-id/>`` (XEP-0359).
* :mod:`xmppd.mam.writer`: :class:`~xmppd.mam.writer.ArchiveWriter`, the
  write-behind buffer anything archives through: ``append(...)`` returns
  the archive id at once (and, on request, a Deferred for the commit); the
  rows of a reactor turn are written in one transaction; ``flush()`` before
  a query.

The personal side is wired by :mod:`xmppd.modules.mam` (module ``mam``).
What the modules must wire (room archives: still to come in the MUC code):

* archiving on the message path, both directions (incoming when delivered
  or stored offline, outgoing when sent), written asynchronously: chat and
  normal messages with a body or other archivable payload; never
  groupchat (neither what a room delivers to a full JID nor what the user
  sends to a room), never errors; honouring ``<no-store/>`` and
  ``<no-permanent-store/>`` (XEP-0334) and the user's preferences;
* stamping ``<stanza-id by=archive JID id=archive id/>`` (XEP-0359) on
  archived messages and stripping any with the same ``by`` from outside;
* the iq handlers (query set/get, metadata, prefs get/set) for the
  account's own resources only, and the disco features
  ``urn:xmpp:mam:2`` and ``urn:xmpp:mam:2#extended``;
* storing preferences, ``[mam]`` settings (page sizes, ``expire_after``,
  a per-user size cap) with expiry and trimming in the background;
* room archives on the room JID (room config field, occupant access,
  hiding real JIDs, MUC join history from the archive): store the
  broadcast form without 'to' and with any client-supplied muc#user
  ``<x/>`` stripped (XEP-0313 §5.1.2), ``with_jid`` the occupant;
* ``with_jid`` of a personal archive's row is the other party, so a
  message to oneself has the account's own JID there and ``with`` = own
  JID matches exactly those (XEP-0313 §4.1.1);
* disco ``urn:xmpp:mam:2`` and ``#extended`` (never the
  ``include-groupchat`` field, which the parser refuses as unknown).
"""
