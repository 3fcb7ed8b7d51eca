"""The room core's own disco entry: the MUC protocol itself (XEP-0045).

``http://jabber.org/protocol/muc`` for the service and for every room.
The room core (occupants, roles, affiliations, broadcasts) is
:class:`xmppd.muc.room.Room`; this module only says it is there.
"""

from __future__ import annotations

from xmppd.module import Scope
from xmppd.muc.feature import MUCModule
from xmppd.muc.stanzas import NS_MUC


class Core(MUCModule):
    """The muc feature of the service and the rooms."""

    name = "muc"
    essential = True
    features = {Scope.MUC_SERVICE: [NS_MUC], Scope.ROOM: [NS_MUC]}

