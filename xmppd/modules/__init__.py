"""The feature modules of the session manager, one file each.

:data:`MODULES` is the module list: adding a feature means writing its
module and adding its class here (see README's Development section).
``[modules] disabled`` switches any of them off by name.
"""

from xmppd.modules.contact_info import ContactInfo
from xmppd.modules.disco import Disco
from xmppd.modules.last import LastActivity
from xmppd.modules.offline import Offline
from xmppd.modules.ping import Ping
from xmppd.modules.register import Register
from xmppd.modules.roster import Roster
from xmppd.modules.time import EntityTime
from xmppd.modules.version import Version

#: Every module, in the order their disco entries are listed.
MODULES = (Disco, Roster, Version, Ping, EntityTime, LastActivity, Offline, Register, ContactInfo)

#: Module name -> class.
BY_NAME = {cls.name: cls for cls in MODULES}


def enabled_modules(config) -> list:
    """The module classes a configuration enables (``[modules] disabled`` left out)."""
    disabled = set(config.modules.disabled)
    return [cls for cls in MODULES if cls.name not in disabled]
