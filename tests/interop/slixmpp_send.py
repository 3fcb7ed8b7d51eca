"""One slixmpp client logs in, sends one chat message, and leaves.

Run by tests/test_browser_converse.py as a subprocess:

    python slixmpp_send.py HOST PORT CA_CERT JID PASSWORD TO BODY

The client connects with STARTTLS (the certificate is verified against
CA_CERT) and SCRAM-SHA-256, sends BODY to TO as a chat message, then waits
for the answer to a roster request (the server handles a stream's stanzas in
order, so the message has been routed by then) before it disconnects. Exit
code 0 only if all of it happened within the time limit.
"""

import asyncio
import sys

from slixmpp import ClientXMPP
from slixmpp_main import report, starttls_only

TIME_LIMIT = 30


async def send(host, port, ca_cert, jid, password, to, body):
    """Log in, send, make sure it was routed, disconnect."""
    client = ClientXMPP(jid, password, sasl_mech="SCRAM-SHA-256")
    starttls_only(client, ca_cert)
    online = asyncio.get_event_loop().create_future()
    client.add_event_handler("session_start", lambda _: online.done() or online.set_result(True))
    client.add_event_handler(
        "failed_all_auth",
        lambda _: online.done() or online.set_exception(PermissionError("authentication failed")),
    )
    client.connect(host, port)
    await online
    report(f"online as {client.boundjid.full}")
    client.send_message(mto=to, mbody=body, mtype="chat")
    await client.get_roster()
    report(f"sent to={to}")
    await client.disconnect()


def main(argv):
    """Exit code 0 when sent, 1 on timeout, 2 on an authentication failure."""
    host, port, ca_cert, jid, password, to, body = argv
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(asyncio.wait_for(
            send(host, int(port), ca_cert, jid, password, to, body), TIME_LIMIT))
    except TimeoutError:
        report("timeout")
        return 1
    except PermissionError:
        report("auth-failed")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
