"""The feature modules of the session manager, one file each.

:data:`MODULES` is the module list: adding a feature means writing its
module and adding its class here (see README's Development section).
``[modules] disabled`` switches any of them off by name.
"""

from xmppd.modules.blocking import Blocking
from xmppd.modules.bookmarks import Bookmarks
from xmppd.modules.caps import EntityCapabilities
from xmppd.modules.carbons import Carbons
from xmppd.modules.contact_info import ContactInfo
from xmppd.modules.csi import ClientStateIndication
from xmppd.modules.disco import Disco
from xmppd.modules.external_services import ExternalServices
from xmppd.modules.fast import FastTokens
from xmppd.modules.last import LastActivity
from xmppd.modules.mam import MessageArchive
from xmppd.modules.offline import Offline
from xmppd.modules.pep import PEP
from xmppd.modules.ping import Ping
from xmppd.modules.private import PrivateStorage
from xmppd.modules.push import PushNotifications
from xmppd.modules.register import Register
from xmppd.modules.roster import Roster
from xmppd.modules.stream_management import StreamManagement
from xmppd.modules.time import EntityTime
from xmppd.modules.vcard import VCard
from xmppd.modules.version import Version

#: Every module, in the order their disco entries are listed (and their
#: hooks run at equal priority): a module comes before those that use it.
MODULES = (Disco, Roster, Version, Ping, EntityTime, LastActivity, Offline, Register, ContactInfo,
           VCard, PrivateStorage, EntityCapabilities, PEP, Bookmarks, Blocking, MessageArchive,
           Carbons, ClientStateIndication, PushNotifications, StreamManagement, FastTokens,
           ExternalServices)

#: Module name -> class.
BY_NAME = {cls.name: cls for cls in MODULES}


#: How ``[modules] disabled`` names the MUC service's modules: ``muc.NAME``.
MUC_PREFIX = "muc."


def enabled_modules(config) -> list:
    """The session manager's module classes a configuration enables."""
    disabled = set(config.modules.disabled)
    return [cls for cls in MODULES if cls.name not in disabled]


def enabled_muc_modules(config) -> list:
    """The MUC service's module classes a configuration enables (``muc.NAME``)."""
    from xmppd.muc.features import MUC_MODULES

    disabled = set(config.modules.disabled)
    return [cls for cls in MUC_MODULES if MUC_PREFIX + cls.name not in disabled]


def switchable_modules() -> dict:
    """Every name ``[modules] disabled`` accepts -> the module class."""
    from xmppd.muc.features import MUC_MODULES

    names = dict(BY_NAME)
    names.update({MUC_PREFIX + cls.name: cls for cls in MUC_MODULES})
    return names
