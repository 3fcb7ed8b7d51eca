"""Message archives (XEP-0313): storage, protocol, policy and the batched writer.

What exists:

* :mod:`xmppd.mam.store`: :class:`~xmppd.mam.store.ArchiveStore`, the
  ``mam_archive`` table (created by the core schema, migration 7, rebuilt
  lean by migration 8): append with an unguessable archive id (the XEP-0359
  stanza-id) that names the row's ``seq``, the archive time in
  microseconds (:class:`~xmppd.mam.store.ArchiveSequence`), paged queries
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
  rows of 0.1 s are written in one transaction; ``flush()`` before a query.

Who uses it:

* :mod:`xmppd.modules.mam` (module ``mam``): personal archives on the
  message path, both directions, stanza-ids by the account, the iq
  handlers, preferences, retention and the per-user cap;
* :mod:`xmppd.muc.features.archive` (module ``muc.archive``): room archives
  on the room JID, stanza-ids by the room, the join history from the
  archive, retention and the per-room cap;
* :mod:`xmppd.muc.features.message_moderation`: XEP-0425 tombstones
  (:meth:`~xmppd.mam.store.ArchiveStore.replace`);
* ``xmppdctl mam count|delete|expire`` (:mod:`xmppd.cli`).

The one table holds both kinds: a personal archive's rows carry the
``account`` (they go with it), a room's do not. ``with_jid`` of a personal
archive's row is the other party, so a message to oneself has the
account's own JID there and ``with`` = own JID matches exactly those
(XEP-0313 §4.1.1); a room's is the occupant's room JID.
"""
