"""slixmpp asks a live xmppd about itself and a contact: XEP-0012, XEP-0157, XEP-0092.

Run by tests/test_interop.py as a subprocess:

    python slixmpp_server_info.py HOST PORT CA_CERT JID1 PASSWORD1 JID2 PASSWORD2

The second account logs in, goes unavailable with a status text and logs
out; then the first (subscribed to the second's presence beforehand by the
test) asks the server for its uptime, its version, its disco#info with the
contact-address form (XEP-0157, XEP-0128), and the second account's last
activity. One line per answer goes to stdout; exit code 0 if all came.
"""

import asyncio
import sys

from slixmpp import ClientXMPP
from slixmpp_main import report, run, starttls_only

TIME_LIMIT = 30
NS_DATA = "jabber:x:data"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"


class Client(ClientXMPP):
    """A slixmpp client with the plugins for the questions asked."""

    def __init__(self, jid, password, ca_cert):
        super().__init__(jid, password, sasl_mech="SCRAM-SHA-256")
        starttls_only(self, ca_cert)
        for plugin in ("xep_0012", "xep_0030", "xep_0092", "xep_0128"):
            self.register_plugin(plugin)
        self.online = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self.on_session_start)

    async def on_session_start(self, _event):
        self.send_presence()
        if not self.online.done():
            self.online.set_result(True)


def forms(query):
    """{FORM_TYPE: {var: [values]}} of a disco#info query element."""
    found = {}
    for x in query.findall(f"{{{NS_DATA}}}x"):
        fields = {}
        for field in x.findall(f"{{{NS_DATA}}}field"):
            fields[field.get("var")] = [v.text for v in field.findall(f"{{{NS_DATA}}}value")]
        found[fields.pop("FORM_TYPE", [None])[0]] = fields
    return found


async def scenario(host, port, ca_cert, jid1, password1, jid2, password2):
    """Log the second out with a status, then ask the questions as the first."""
    second = Client(jid2, password2, ca_cert)
    second.connect(host, port)
    await second.online
    second.send_presence(ptype="unavailable", pstatus="gone fishing")
    await asyncio.sleep(0)  # let the presence leave before the stream closes
    await second.disconnect()
    report("second logged out")

    first = Client(jid1, password1, ca_cert)
    first.connect(host, port)
    await first.online
    domain = first.boundjid.domain
    uptime = await first["xep_0012"].get_last_activity(domain)
    report(f"uptime seconds={uptime['last_activity']['seconds']}")
    version = await first["xep_0092"].get_version(domain)
    report(f"version name={version['software_version']['name']}")
    info = await first["xep_0030"].get_info(jid=domain)
    query = info.xml.find(f"{{{NS_DISCO_INFO}}}query")
    features = sorted(f.get("var") for f in query.findall(f"{{{NS_DISCO_INFO}}}feature"))
    report("features " + " ".join(features))
    serverinfo = forms(query).get("http://jabber.org/network/serverinfo", {})
    report(f"abuse-addresses {' '.join(serverinfo.get('abuse-addresses', []))}")
    last = await first["xep_0012"].get_last_activity(second.boundjid.bare)
    report(f"contact seconds={last['last_activity']['seconds']} "
           f"status={last['last_activity']['status']}")
    await first.disconnect()
    report("done")


def main(argv):
    """Run the scenario within TIME_LIMIT seconds; exit code 0 on success."""
    return run(scenario, argv, TIME_LIMIT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
