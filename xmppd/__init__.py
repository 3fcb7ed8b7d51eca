"""xmppd: an XMPP server built on Twisted Words and wokkel."""

from xmppd import compat as _compat  # noqa: F401  (must run before wokkel is imported)

__version__ = "0.1.0"
