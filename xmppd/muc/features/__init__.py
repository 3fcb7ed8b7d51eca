"""The MUC feature modules, one file each, and the one MUC module list.

Each module is a :class:`xmppd.muc.feature.MUCModule`: iq handlers for the
service (``Scope.MUC_SERVICE``) or a room (``Scope.ROOM``), disco entries
for both (a room's may depend on its configuration), and hooks at the
room's points (``Point.ROOM_*``). The MUC service's own
:class:`~xmppd.module.ModuleHost` holds them.
"""

from xmppd.muc.features.adhoc import AdHoc
from xmppd.muc.features.admin import Admin
from xmppd.muc.features.core import Core
from xmppd.muc.features.disco import Disco
from xmppd.muc.features.history import RoomHistory
from xmppd.muc.features.invitations import Invitations
from xmppd.muc.features.logging import ConversationLog
from xmppd.muc.features.members_only import MembersOnly
from xmppd.muc.features.moderation import Moderation
from xmppd.muc.features.owner import Owner
from xmppd.muc.features.password import Password
from xmppd.muc.features.register import Register

#: Every MUC module, in the order their disco features are listed.
MUC_MODULES = (
    Disco, Register, Core, AdHoc, Password, MembersOnly, Moderation, Owner, Admin, Invitations,
    RoomHistory, ConversationLog,
)

#: Module name -> class.
BY_NAME = {cls.name: cls for cls in MUC_MODULES}
