"""Stream management (XEP-0198) resumption with slixmpp's xep_0198 plugin against a live xmppd.

Run by tests/test_interop.py as a subprocess:

    python slixmpp_resume.py HOST PORT CA_CERT JID1 PASSWORD1 JID2 PASSWORD2 [MODE COUNT]

JID1 (the "phone") enables stream management with resumption; its TCP
connection is then killed (no closing tag, as when a phone changes
networks); JID2 sends it COUNT chat messages (default 1) while it is gone.

* MODE ``resume`` (default): the phone connects again and resumes (slixmpp
  does it by itself, having the id) and must get every message exactly
  once, in order, with a delay; JID2 must never see the phone go
  unavailable.
* MODE ``expire``: JID2 waits until it sees the phone go unavailable (the
  server's resumption window ended); the phone then connects again, its
  resumption fails, it binds a new session and must get every message
  from offline storage, exactly once, in order.

Progress goes to stdout one line per event.
"""

import asyncio
import sys

from slixmpp import ClientXMPP
from slixmpp_main import report, run, starttls_only

TIME_LIMIT = 30


class Client(ClientXMPP):
    """A slixmpp client (with stream management when asked) that reports what it sees."""

    def __init__(self, name, jid, password, ca_cert, sm=False):
        super().__init__(jid, password, sasl_mech="SCRAM-SHA-256")
        self.name = name
        starttls_only(self, ca_cert)
        self.register_plugin("xep_0199")
        if sm:
            self.register_plugin("xep_0198")
        loop = asyncio.get_event_loop()
        self.online = loop.create_future()
        self.sm_enabled = loop.create_future()
        self.resumed = loop.create_future()
        self.messages = []
        self.expected = None
        self.all_messages = loop.create_future()
        self.phone_gone = loop.create_future()
        self.add_event_handler("session_start", self.on_session_start)
        self.add_event_handler("sm_enabled", self.on_sm_enabled)
        self.add_event_handler("session_resumed", self.on_resumed)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("presence_unavailable", self.on_unavailable)
        self.add_event_handler("failed_all_auth", self.on_auth_failed)

    async def on_session_start(self, _event):
        self.send_presence()
        report(f"{self.name} online as {self.boundjid.full}")
        if not self.online.done():
            self.online.set_result(True)

    def on_auth_failed(self, _event):
        if not self.online.done():
            self.online.set_exception(PermissionError(f"{self.name}: authentication failed"))

    def on_sm_enabled(self, _stanza):
        report(f"{self.name} sm-enabled resumable={bool(self['xep_0198'].sm_id)}")
        if not self.sm_enabled.done():
            self.sm_enabled.set_result(True)

    def on_resumed(self, _stanza):
        report(f"{self.name} resumed as {self.boundjid.full}")
        if not self.resumed.done():
            self.resumed.set_result(True)

    def on_unavailable(self, presence):
        report(f"{self.name} saw-unavailable from={presence['from'].full}")
        if presence["from"].resource == "phone" and not self.phone_gone.done():
            self.phone_gone.set_result(True)

    def on_message(self, message):
        if message["type"] == "chat" and message["body"]:
            delayed = message.xml.find("{urn:xmpp:delay}delay") is not None
            self.messages.append(message["body"])
            if len(self.messages) <= 2:
                report(f"{self.name} got-message body={message['body']} delayed={delayed}")
            if self.expected is not None and len(self.messages) >= self.expected \
                    and not self.all_messages.done():
                self.all_messages.set_result(True)


def make_scenario(mode, count):
    """The exchange for a mode and a number of messages."""

    async def scenario(host, port, ca_cert, jid1, password1, jid2, password2):
        phone = Client("phone", jid1 + "/phone", password1, ca_cert, sm=True)
        other = Client("other", jid2 + "/desk", password2, ca_cert)
        for client in (phone, other):
            client.connect(host, port)
        await asyncio.gather(phone.online, other.online, phone.sm_enabled)
        await other["xep_0199"].ping(other.boundjid.domain)
        phone.abort()
        report("phone connection killed")
        sent = [f"while you were gone {i}" for i in range(count)]
        for body in sent:
            other.send_message(mto=phone.boundjid.full, mbody=body, mtype="chat")
        await other["xep_0199"].ping(other.boundjid.domain)
        if mode == "expire":
            await other.phone_gone
            phone.online = asyncio.get_event_loop().create_future()
        phone.all_messages = asyncio.get_event_loop().create_future()
        phone.expected = count
        phone.connect(host, port)
        await (phone.resumed if mode == "resume" else phone.online)
        await phone.all_messages
        await phone["xep_0199"].ping(phone.boundjid.domain)  # anything sent twice is here now
        report(f"phone in-order={phone.messages == sent} count={len(phone.messages)}")
        report("done")
        for client in (phone, other):
            client.disconnect()

    return scenario


def main(argv):
    """Run the scenario within TIME_LIMIT seconds; exit code 0 on success."""
    mode = argv[7] if len(argv) > 7 else "resume"
    count = int(argv[8]) if len(argv) > 8 else 1
    return run(make_scenario(mode, count), argv[:7], TIME_LIMIT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
