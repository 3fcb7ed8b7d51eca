"""The MUC feature modules, one file each, and the one MUC module list.

Each module is a :class:`xmppd.muc.feature.MUCModule`: iq handlers for the
service (``Scope.MUC_SERVICE``) or a room (``Scope.ROOM``), disco entries
for both (a room's may depend on its configuration: ``disco_features``
gets the room as ``target``), configuration fields, and hooks at the
room's points (``Point.ROOM_*``, see :class:`xmppd.module.Point`). The MUC
service's own :class:`~xmppd.module.ModuleHost` holds them; a module
reaches the service through ``self.server``
(:class:`~xmppd.muc.host.MUCContext`) and rooms through their written-down
interface (:mod:`xmppd.muc.room`).

Adding a MUC feature: a file here and its class in :data:`MUC_MODULES`
(where its disco features belong in the lists; ``disco``, ``register`` and
``muc`` come first because clients read the service's and rooms' features
in that order), its tests in ``tests/test_muc_features_<name>.py``. A
configuration field is a :class:`~xmppd.muc.config.ConfigField` the module
adds at ``Point.ROOM_CONFIG_FORM`` (its ``order`` places it in the form,
see :mod:`xmppd.muc.config`); its setting is a :class:`RoomConfig`
attribute, stored with the room.
"""

from xmppd.muc.features.adhoc import AdHoc
from xmppd.muc.features.admin import Admin
from xmppd.muc.features.archive import RoomArchive
from xmppd.muc.features.core import Core
from xmppd.muc.features.disco import Disco
from xmppd.muc.features.history import RoomHistory
from xmppd.muc.features.invitations import Invitations
from xmppd.muc.features.members_only import MembersOnly
from xmppd.muc.features.message_moderation import MessageModeration
from xmppd.muc.features.moderation import Moderation
from xmppd.muc.features.occupant_id import OccupantId
from xmppd.muc.features.owner import Owner
from xmppd.muc.features.password import Password
from xmppd.muc.features.register import Register

#: Every MUC module, in the order their disco features are listed.
MUC_MODULES = (
    Disco, Register, Core, AdHoc, Password, MembersOnly, Moderation, Owner, Admin, Invitations,
    RoomHistory, RoomArchive, MessageModeration, OccupantId,
)

#: Module name -> class.
BY_NAME = {cls.name: cls for cls in MUC_MODULES}
