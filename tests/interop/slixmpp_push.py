"""Client State Indication (XEP-0352) and push (XEP-0357) with slixmpp against a live xmppd.

Run by tests/test_interop.py as a subprocess:

    python slixmpp_push.py HOST PORT CA_CERT JID1 PASSWORD1 JID2 PASSWORD2

JID1 (the "phone") registers the app server ``push.localhost`` (node
``phone-node``, a publish-options form with a secret), finds CSI in the
stream features (slixmpp's xep_0352 plugin enables itself only then) and
says it is inactive; JID2 sends it a presence update (which the server
holds) and then a chat message (which the phone gets at once, after the
held presence, while the server pushes to the app server). Progress goes to
stdout one line per event; exit code 0 only if everything happened in time.
"""

import asyncio
import sys
import xml.etree.ElementTree as ET

from slixmpp import ClientXMPP
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath
from slixmpp_main import report, run, starttls_only

TIME_LIMIT = 30
ENABLE = (
    "<enable xmlns='urn:xmpp:push:0' jid='push.localhost' node='phone-node'>"
    "<x xmlns='jabber:x:data' type='submit'>"
    "<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value>"
    "</field><field var='secret'><value>eruwieru</value></field></x></enable>"
)


class Client(ClientXMPP):
    """A slixmpp client that reports the stanzas it gets."""

    def __init__(self, name, jid, password, ca_cert):
        super().__init__(jid, password, sasl_mech="SCRAM-SHA-256")
        self.name = name
        starttls_only(self, ca_cert)
        self.register_plugin("xep_0352")
        self.register_plugin("xep_0199")
        loop = asyncio.get_event_loop()
        self.online = loop.create_future()
        self.got_message = loop.create_future()
        self.got_presence = loop.create_future()
        self.seen = []
        self.add_event_handler("session_start", self.on_session_start)
        self.add_event_handler("message", self.on_message)
        self.register_handler(Callback("every presence", MatchXPath("{jabber:client}presence"),
                                       self.on_presence))
        self.add_event_handler("failed_all_auth", self.on_auth_failed)

    async def on_session_start(self, _event):
        self.send_presence()
        report(f"{self.name} online csi={self['xep_0352'].enabled}")
        if not self.online.done():
            self.online.set_result(True)

    def on_auth_failed(self, _event):
        if not self.online.done():
            self.online.set_exception(PermissionError(f"{self.name}: authentication failed"))

    def on_presence(self, presence):
        if presence["from"].bare != self.boundjid.bare:
            delayed = bool(presence.xml.find("{urn:xmpp:delay}delay") is not None)
            self.seen.append(f"presence show={presence['show'] or '-'} delayed={delayed}")
            if not self.got_presence.done():
                self.got_presence.set_result(presence)

    def on_message(self, message):
        if message["type"] == "chat" and message["body"]:
            self.seen.append(f"message body={message['body']}")
            report(f"{self.name} saw {' | '.join(self.seen)}")
            if not self.got_message.done():
                self.got_message.set_result(message)


async def scenario(host, port, ca_cert, jid1, password1, jid2, password2):
    """The whole exchange; raises on timeout."""
    phone = Client("phone", jid1 + "/phone", password1, ca_cert)
    other = Client("other", jid2 + "/desk", password2, ca_cert)
    for client in (phone, other):
        client.connect(host, port)
    await asyncio.gather(phone.online, other.online)
    # The other's initial presence must reach the phone while it is active
    # (else it is held too, and comes before the away below).
    await phone.got_presence
    iq = phone.make_iq_set()
    iq.xml.append(ET.fromstring(ENABLE))
    result = await iq.send()
    report(f"phone push-enabled type={result['type']}")
    phone["xep_0352"].send_inactive()
    await phone["xep_0199"].ping(phone.boundjid.domain)  # the server has read <inactive/>
    phone.seen.clear()
    report("phone inactive")
    other.send_presence(pshow="away")
    await other["xep_0199"].ping(other.boundjid.domain)
    other.send_message(mto=jid1, mbody="wake up", mtype="chat")
    await phone.got_message
    report("done")
    for client in (phone, other):
        client.disconnect()


def main(argv):
    """Run the scenario within TIME_LIMIT seconds; exit code 0 on success."""
    return run(scenario, argv, TIME_LIMIT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
