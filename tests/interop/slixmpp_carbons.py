"""Message Carbons (XEP-0280) with slixmpp's xep_0280 plugin against a live xmppd.

Run by tests/test_interop.py as a subprocess:

    python slixmpp_carbons.py HOST PORT CA_CERT JID1 PASSWORD1 JID2 PASSWORD2

JID1 logs in twice (resources ``one`` and ``two``), both enable carbons with
the plugin; JID2 sends a chat message to ``one``, and ``two`` must see it as
a received carbon; ``one`` answers, and ``two`` must see that as a sent
carbon. Progress goes to stdout one line per event; the exit code is 0 only
if everything happened within the time limit.
"""

import asyncio
import sys

from slixmpp import ClientXMPP
from slixmpp_main import report, run, starttls_only

TIME_LIMIT = 30


class Client(ClientXMPP):
    """A slixmpp client with the carbons plugin that reports what it sees."""

    def __init__(self, name, jid, password, ca_cert):
        super().__init__(jid, password, sasl_mech="SCRAM-SHA-256")
        self.name = name
        starttls_only(self, ca_cert)
        self.register_plugin("xep_0280")
        loop = asyncio.get_event_loop()
        self.online = loop.create_future()
        self.got_message = loop.create_future()
        self.carbons = {"received": loop.create_future(), "sent": loop.create_future()}
        self.add_event_handler("session_start", self.on_session_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("carbon_received", self.on_carbon_received)
        self.add_event_handler("carbon_sent", self.on_carbon_sent)
        self.add_event_handler("failed_all_auth", self.on_auth_failed)

    async def on_session_start(self, _event):
        self.send_presence()
        await self["xep_0280"].enable()
        report(f"{self.name} carbons-enabled as {self.boundjid.full}")
        if not self.online.done():
            self.online.set_result(True)

    def on_auth_failed(self, _event):
        report(f"{self.name} auth-failed")
        if not self.online.done():
            self.online.set_exception(PermissionError(f"{self.name}: authentication failed"))

    def on_message(self, message):
        if message["type"] == "chat" and message["body"] and not self.got_message.done():
            report(f"{self.name} got-message from={message['from'].full} body={message['body']}")
            self.got_message.set_result(message)

    def carbon(self, kind, forwarded):
        report(f"{self.name} carbon-{kind} from={forwarded['from'].full} "
               f"to={forwarded['to'].full} body={forwarded['body']}")
        if not self.carbons[kind].done():
            self.carbons[kind].set_result(forwarded)

    def on_carbon_received(self, message):
        self.carbon("received", message["carbon_received"])

    def on_carbon_sent(self, message):
        self.carbon("sent", message["carbon_sent"])


async def scenario(host, port, ca_cert, jid1, password1, jid2, password2):
    """The whole exchange; raises on timeout."""
    one = Client("one", jid1 + "/one", password1, ca_cert)
    two = Client("two", jid1 + "/two", password1, ca_cert)
    other = Client("other", jid2, password2, ca_cert)
    for client in (one, two, other):
        client.connect(host, port)
    await asyncio.gather(one.online, two.online, other.online)
    other.send_message(mto=one.boundjid.full, mbody="to one", mtype="chat")
    await one.got_message
    await two.carbons["received"]
    one.send_message(mto=other.boundjid.full, mbody="answer from one", mtype="chat")
    await other.got_message
    await two.carbons["sent"]
    report("done")
    for client in (one, two, other):
        client.disconnect()


def main(argv):
    """Run the scenario within TIME_LIMIT seconds; exit code 0 on success."""
    return run(scenario, argv, TIME_LIMIT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
