"""The names a module plugs into: whom a request is for (:class:`Scope`) and the
points of a stanza's path (:class:`Point`).

They are :mod:`xmppd.module`'s vocabulary (and re-exported there): a
module says ``@iq_handler(..., Scope.ACCOUNT)`` or ``@hook(Point.X)``. Each
point's comment says what its hooks receive and whether it is a filter.
"""

from __future__ import annotations

import enum


class Scope(enum.Enum):
    """Whom an iq or a disco entry is addressed to."""

    #: The server's own domain (``to='localhost'``).
    SERVER = "server"
    #: A user's bare JID (``to='romeo@localhost'``), or no 'to' at all from
    #: one of the user's own resources (RFC 6120 10.3.3).
    ACCOUNT = "account"
    #: The MUC service's own domain (``to='conference.localhost'``); its
    #: modules live in the MUC service's own :class:`ModuleHost`
    #: (see :mod:`xmppd.muc.features`).
    MUC_SERVICE = "muc-service"
    #: A room's bare JID (``to='room@conference.localhost'``); the request
    #: names the room (:class:`xmppd.muc.feature.MUCRequest`), and disco
    #: features may depend on it (``disco_features(Scope.ROOM, room)``).
    ROOM = "room"


class Point(enum.StrEnum):
    """Named points of the stanza's path where modules hook in.

    Handlers run by descending priority. Where a point is a *filter*
    (``fire`` returns True when a handler returned True), a True result
    means "handled here: stop", and the stanza goes no further.
    """

    #: A stanza a local client sent, stamped and checked, before routing
    #: (session state, stanza). Filter.
    CLIENT_STANZA = "client-stanza"
    #: A message/presence/iq about to be written to a local session
    #: (session state, stanza). Filter: True drops it.
    DELIVER_MESSAGE = "deliver-message"
    DELIVER_PRESENCE = "deliver-presence"
    DELIVER_IQ = "deliver-iq"
    #: A stanza for a local user's account or one of its resources, from
    #: anybody, before the inbound rules (delivery, offline storage, presence
    #: and subscription processing, the account's iq handlers) apply
    #: (stanza, sender JID, recipient JID); not presence a user's own
    #: resource sends (that has outbound processing first, and comes back
    #: here as it is routed). Filter: True = handled (dropped or answered).
    INBOUND_STANZA = "inbound-stanza"
    #: Presence the session manager routes on a local user's behalf or
    #: passes on (broadcasts, probes, presence after subscription changes,
    #: directed presence) (stanza). Filter: True drops it.
    ROUTE_PRESENCE = "route-presence"
    #: A message for a local user, about to be delivered by RFC 6121's rules
    #: (username, the sessions that get it: a list, empty when it goes to
    #: offline storage, the stanza): to a full JID with a session, or a
    #: chat/normal/headline message to the bare JID. Hooks may change the
    #: stanza (its targets get it as they leave it); the return value is
    #: ignored.
    LOCAL_MESSAGE = "local-message"
    #: A chat/normal message for a local user with no session to take it
    #: (username, stanza); may return a Deferred. Filter: True = stored.
    MESSAGE_UNDELIVERED = "message-undelivered"
    #: A resource was bound (session state).
    SESSION_BOUND = "session-bound"
    #: A resource sent available presence of non-negative priority for the
    #: first time (or after a negative one): it can now take messages
    #: (session state); may return a Deferred, awaited in the user's queue.
    #: Filter: True stops the later hooks (``mam`` keeps the offline
    #: messages stored for a session that synced from its archive).
    SESSION_AVAILABLE = "session-available"
    #: An available resource became unavailable, by its own unavailable
    #: presence or because it went away (session state, the unavailable
    #: presence); may return a Deferred.
    RESOURCE_UNAVAILABLE = "resource-unavailable"
    #: A bound session's stream ended and it is about to be unbound (session
    #: state): hooks hand on what they still hold of it (before the
    #: unavailable presence the server sends for it). Filter: True = stanzas
    #: were handed on; the session is then unbound in the user's queue, after
    #: them.
    SESSION_CLOSING = "session-closing"
    #: A bound session's connection went away without the stream being
    #: closed by either side (a dropped connection, a dead one the server
    #: timed out) (session state). Filter: True = a module keeps the session
    #: bound, detached from any connection (XEP-0198 resumption); it ends
    #: it later itself. Otherwise it is unbound as usual.
    SESSION_INTERRUPTED = "session-interrupted"
    #: A bound client has been silent for ``[limits] idle_timeout`` and is
    #: about to be pinged (session state). Filter: True = let it be (a
    #: client that said it sleeps: XEP-0352); it is asked again later.
    SESSION_IDLE = "session-idle"
    #: A resource was unbound (session state); may return a Deferred.
    SESSION_ENDED = "session-ended"
    #: The session manager is stopping: modules end what they keep alive
    #: (hibernating sessions) while the user queues still run (no args).
    STOPPING = "stopping"
    #: A session's entity capabilities (XEP-0115) became known or changed
    #: (session state, its disco features: a frozenset, empty when known
    #: features were lost); fired by the ``caps`` module, not when the set
    #: stays the same nor when it is cleared on unavailable presence.
    CAPS_CHANGED = "caps-changed"
    #: A remote resource's entity capabilities are known and its available
    #: presence reached local accounts (full JID, the usernames: a frozenset,
    #: its disco features: a frozenset); fired by the ``caps`` module when
    #: the features become known or change (for every account that gets the
    #: resource's presence) and when they are known already and its
    #: presence reaches an account for the first time (for that account). An
    #: empty set of features: the resource went unavailable for those
    #: accounts (or its caps could not be learnt).
    REMOTE_CAPS = "remote-caps"
    #: An account was deleted (username), after its rows were; modules drop
    #: what they keep of it in memory.
    ACCOUNT_DELETED = "account-deleted"
    #: An item was published to a PEP node (username, node name, the
    #: :class:`xmppd.pubsub.engine.Item`; its ``payload()`` parses it), after
    #: it was stored and its notifications sent.
    PEP_PUBLISHED = "pep-published"
    #: Items of a PEP node were retracted (username, node name, the ids, or
    #: None when the node was purged or deleted).
    PEP_RETRACTED = "pep-retracted"
    #: A private XML (XEP-0049) get from the account (username, the empty
    #: element naming what is fetched, the result's ``<query/>``), fired with
    #: ``fire_async`` before the module reads its table. Filter: True = the
    #: hook answered (it added the element to the query).
    PRIVATE_GET = "private-get"
    #: A private XML (XEP-0049) set from the account (username, the element
    #: to store), fired with ``fire_async`` before the module stores it (and
    #: before its size check). Filter: True = the hook stored it elsewhere;
    #: a hook refuses by raising :class:`~xmppd.errors.StanzaError`.
    PRIVATE_SET = "private-set"

    # -- MUC rooms: hooks of the MUC feature modules (xmppd.muc.features),
    # -- fired by the room core and, for the configuration form, the owner module.

    #: Someone asks to enter a room as a new occupant (room, attempt: a
    #: :class:`xmppd.muc.room.JoinAttempt`), after the lock and ban checks
    #: and before the nick, reservation and capacity checks; not for one
    #: more session of a user already in the room under that nick. A hook
    #: refuses by raising :class:`~xmppd.errors.StanzaError`.
    ROOM_JOIN_CHECK = "muc-room-join-check"
    #: A session entered a room (room, occupant, the session's full JID,
    #: the join's ``<x xmlns='http://jabber.org/protocol/muc'/>`` or None).
    #: It has had the occupants' presence and its own; what hooks send it
    #: (the discussion history) comes before the room's subject.
    ROOM_JOINED = "muc-room-joined"
    #: The configuration form's fields are collected (room, fields: the
    #: list of :class:`xmppd.muc.config.ConfigField` to extend). The form
    #: shows them, and a submitted form is read through them, in their
    #: ``order``.
    ROOM_CONFIG_FORM = "muc-room-config-form"
    #: An owner submitted a configuration form, read but not applied yet
    #: (room, submission: a :class:`xmppd.muc.config.ConfigSubmission`).
    #: Hooks may amend ``submission.config`` or refuse the whole form by
    #: raising :class:`~xmppd.errors.StanzaError`.
    ROOM_CONFIG_SUBMITTED = "muc-room-config-submitted"
    #: A changed configuration took effect (room, the old RoomConfig); the
    #: owner has had the iq result and the occupants the 104 message.
    ROOM_CONFIG_CHANGED = "muc-room-config-changed"
    #: A groupchat message or subject change was broadcast to the room
    #: (room, the sending occupant, the message as broadcast, without 'to').
    ROOM_MESSAGE = "muc-room-message"
    #: A presence about an occupant was built and is about to be sent
    #: (room, occupant, the presence without 'to'): joins, leaves, updates,
    #: nick changes, role and affiliation changes, probes. Hooks may add or
    #: remove children (occupant ids); every recipient gets a shallow copy
    #: of the stanza as the hooks leave it.
    ROOM_PRESENCE = "muc-room-presence"
    #: A message from an occupant is about to be relayed (room, the sending
    #: occupant, the message without 'to'): groupchat messages, subject
    #: changes and private messages, before any recipient gets it (and
    #: before ``ROOM_MESSAGE``). Hooks may add or remove children.
    ROOM_RELAY = "muc-room-relay"
    #: The room's subject, about to be sent to a joiner (room, the
    #: message; ``room.subject_by`` is who set it). Hooks may add children.
    ROOM_SUBJECT = "muc-room-subject"
    #: A message to the room's bare JID that is neither groupchat nor an
    #: error (room, sender JID, its occupant or None, the stanza): voice
    #: requests and approvals, invitations, declines. Filter: True =
    #: handled; nobody handled it: the room refuses it.
    ROOM_DIRECT_MESSAGE = "muc-room-direct-message"
    #: A room is gone for good (room): destroyed by its owner or an admin,
    #: or a temporary room that emptied; fired once the service forgot it.
    ROOM_DESTROYED = "muc-room-destroyed"
