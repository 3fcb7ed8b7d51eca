"""The twistd plugin: ``twistd -n xmppd [--config PATH] [--debug]`` runs the server.

``--debug`` logs at debug level whatever ``log.level`` says, including every
client stream's traffic with passwords and SASL payloads redacted.

This module is imported by every ``twistd`` invocation (to list plugins),
so it imports xmppd only when the service is actually made.
"""

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer


class Options(usage.Options):
    """Command-line options of ``twistd xmppd``."""

    optParameters = [
        ["config", "c", None, "The TOML configuration file (default: the embedded default)."],
    ]
    optFlags = [
        ["debug", "d", "Log at debug level, stanza traffic included (secrets redacted)."],
    ]


@implementer(IServiceMaker, IPlugin)
class XMPPServiceMaker:
    """Makes the xmppd service from the command-line options."""

    tapname = "xmppd"
    description = "An XMPP server (client streams, roster, presence, messages, MUC)."
    options = Options

    def makeService(self, options):
        """Load the configuration and build the server; exit 1 on a bad config."""
        from xmppd.config import ConfigError, load_config
        from xmppd.service import make_service

        try:
            config = load_config(options["config"])
        except ConfigError as e:
            raise SystemExit(f"xmppd: error: {e}") from None
        return make_service(config, debug=bool(options["debug"]))


serviceMaker = XMPPServiceMaker()
