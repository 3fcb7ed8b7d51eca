"""Two slixmpp clients against a live xmppd: login, subscribe, presence, chat.

Run by tests/test_interop.py as a subprocess:

    python slixmpp_pair.py HOST PORT CA_CERT JID1 PASSWORD1 JID2 PASSWORD2

Both clients connect with STARTTLS (the certificate is verified against
CA_CERT) and SCRAM-SHA-256 only. The first subscribes to the second; the
second approves and subscribes back (slixmpp's defaults); each must then see
the other's available presence, and a chat message from the first to the
second's bare JID must arrive. Progress goes to stdout one line per event;
the exit code is 0 only if everything happened within the time limit.
"""

import asyncio
import ssl
import sys

from slixmpp import ClientXMPP
from slixmpp_main import report, run, starttls_only

TIME_LIMIT = 30


class Client(ClientXMPP):
    """A slixmpp client that reports what it sees."""

    def __init__(self, name, jid, password, ca_cert):
        super().__init__(jid, password, sasl_mech="SCRAM-SHA-256")
        self.name = name
        starttls_only(self, ca_cert)
        self.online = asyncio.get_event_loop().create_future()
        self.saw_presence = asyncio.get_event_loop().create_future()
        self.got_message = asyncio.get_event_loop().create_future()
        self.peer = None
        self.add_event_handler("session_start", self.on_session_start)
        self.add_event_handler("presence_available", self.on_presence)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("failed_all_auth", self.on_auth_failed)

    async def on_session_start(self, _event):
        mechanism = self["feature_mechanisms"].mech.name
        tls = self.socket.version() if isinstance(self.socket, ssl.SSLSocket) else None
        tls = tls or getattr(self.transport.get_extra_info("ssl_object"), "version", lambda: None)()
        report(f"{self.name} online as {self.boundjid.full} mechanism={mechanism} tls={tls}")
        await self.get_roster()
        self.send_presence()
        if not self.online.done():
            self.online.set_result(True)

    def on_auth_failed(self, _event):
        report(f"{self.name} auth-failed")
        if not self.online.done():
            self.online.set_exception(PermissionError(f"{self.name}: authentication failed"))

    def on_presence(self, presence):
        if self.peer and presence["from"].bare == self.peer and not self.saw_presence.done():
            report(f"{self.name} saw-presence {presence['from'].full}")
            self.saw_presence.set_result(True)

    def on_message(self, message):
        if message["type"] in ("chat", "normal") and not self.got_message.done():
            report(f"{self.name} got-message from={message['from'].bare} body={message['body']}")
            self.got_message.set_result(message["body"])


async def scenario(host, port, ca_cert, jid1, password1, jid2, password2):
    """The whole exchange; raises on timeout."""
    first = Client("first", jid1, password1, ca_cert)
    second = Client("second", jid2, password2, ca_cert)
    first.peer, second.peer = second.boundjid.bare, first.boundjid.bare
    for client in (first, second):
        client.connect(host, port)
    await asyncio.gather(first.online, second.online)
    first.send_presence(pto=second.boundjid.bare, ptype="subscribe")
    await asyncio.gather(first.saw_presence, second.saw_presence)
    first.send_message(mto=second.boundjid.bare, mbody="hello from slixmpp", mtype="chat")
    body = await second.got_message
    report(f"done body={body}")
    for client in (first, second):
        client.disconnect()


def main(argv):
    """Run the scenario within TIME_LIMIT seconds; exit code 0 on success."""
    return run(scenario, argv, TIME_LIMIT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
