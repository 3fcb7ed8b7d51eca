"""Interop: two OMEMO clients (slixmpp with slixmpp-omemo) end to end.

tests/interop/omemo_pair.py is the client program (it says step by step
what it does); these tests run it in a subprocess against a live xmppd and,
as the reference the program is proven on, against Prosody 0.12
(tests/interop/omemo_prosody.py, which starts its own Prosody).

The exchanges the library performs, each client, each of the two OMEMO
versions (``urn:xmpp:omemo:2`` = omemo:2, ``eu.siacs.conversations.axolotl``
= legacy, the XEP-0384 v0.3 namespace Conversations uses), all iqs sent to
the account's own bare JID (PEP, XEP-0163) unless said otherwise:

* device list fetch: ``<items node='urn:xmpp:omemo:2:devices'
  max_items='1'/>`` and ``<items
  node='eu.siacs.conversations.axolotl.devicelist' max_items='1'/>``;
  item-not-found means "no list yet"; any other error is retried once
  without max_items.
* bundle publish: omemo:2 to node ``urn:xmpp:omemo:2:bundles``, item id =
  the device id, publish-options ``pubsub#access_model=open``,
  ``pubsub#persist_items=true``, ``pubsub#max_items=max``; legacy to node
  ``eu.siacs.conversations.axolotl.bundles:DEVICEID``, item id
  ``current``, the same options with ``pubsub#max_items=1``.
* device list publish: item id ``current`` (``<devices
  xmlns='urn:xmpp:omemo:2'><device id=.../></devices>`` resp. ``<list
  xmlns='eu.siacs.conversations.axolotl'><device id=.../></list>``),
  publish-options access_model=open, persist_items=true, max_items=1.
* Every publish: on ``precondition-not-met`` the library configures the
  node (pubsub#owner ``<configure>`` with the same fields as a node_config
  form) and publishes again; on any other error it publishes once more
  without ``pubsub#max_items``; then it gives up (setup fails).
* After publishing it fetches its own device lists and its own bundles
  again (data consistency check).
* Contacts: the library learns a contact's device lists from PEP
  notifications (``<message type='headline'><event
  xmlns='http://jabber.org/protocol/pubsub#event'><items node=...>``)
  when the subscription is 'both': its caps list
  ``urn:xmpp:omemo:2:devices+notify`` and
  ``eu.siacs.conversations.axolotl.devicelist+notify``. It fetches a
  contact's device list itself only without a 'both' subscription (and
  then subscribes to the node, XEP-0060 ``<subscribe>``).
* Before encrypting it fetches the contact's bundles (iq to the contact's
  bare JID): omemo:2 ``<items node='urn:xmpp:omemo:2:bundles'><item
  id='DEVICEID'/></items>``, legacy ``<items
  node='eu.siacs.conversations.axolotl.bundles:DEVICEID' max_items='1'/>``.
* Messages: legacy ``<encrypted xmlns='eu.siacs.conversations.axolotl'>``
  in a chat message with a fallback body and ``<store
  xmlns='urn:xmpp:hints'/>``; the receiver answers a key exchange with a
  body-less message (type normal) carrying only the OMEMO header.
"""

import importlib.util
import json
import sys
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.trial import unittest

from tests.support import process_output, start_server

INTEROP = Path(__file__).resolve().parent / "interop"
PAIR = INTEROP / "omemo_pair.py"
PROSODY_RUN = INTEROP / "omemo_prosody.py"
PASSWORD = "omemo-pw"

# Only looked up here: the clients import it in their own process (importing
# it into trial's process can break on what other test modules set up there).
# Installed but not importable there is a failure with the reason, no skip.
NO_OMEMO = None if importlib.util.find_spec("slixmpp_omemo") else (
    "slixmpp-omemo is not installed (pip install -e '.[test]')"
)


def pair_result(testcase, out: bytes, err: bytes, code: int) -> dict:
    """The pair's JSON result (its last stdout line); fails the test unless it ran ok."""
    lines = out.decode().strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        testcase.fail(f"no JSON result (exit {code}):\n{out.decode()}\n{err.decode()[-4000:]}")
    if code != 0 or result.get("ok") is not True:
        testcase.fail(
            f"omemo_pair failed (exit {code}) at step {result.get('step')!r}: "
            f"{result.get('reason')}\nlast stanzas:\n{err.decode()[-4000:]}"
        )
    return result


def check_conversation(testcase, result: dict) -> None:
    """Both messages were decrypted by the peer, from the sender's device, as legacy OMEMO."""
    devices = result["devices"]
    testcase.assertNotEqual(devices["alice"], devices["bob"])
    testcase.assertEqual(
        [(m["from"], m["plaintext"], m["sender_device"]) for m in result["messages"]],
        [("alice", "Hello bob, this is OMEMO.", devices["alice"]),
         ("bob", "Hello alice, I read you.", devices["bob"])],
    )
    for message in result["messages"]:
        testcase.assertIn("eu.siacs.conversations.axolotl", message["namespaces"])
    for namespace in ("urn:xmpp:omemo:2", "eu.siacs.conversations.axolotl"):
        testcase.assertIn(devices["bob"], result["fetched_by_alice"][namespace])


class OmemoXmppdTests(unittest.TestCase):
    """The OMEMO pair against a live xmppd (STARTTLS, certificate verified)."""

    timeout = 150
    skip = NO_OMEMO

    @defer.inlineCallbacks
    def test_two_clients_exchange_encrypted_messages(self):
        server = start_server(self, c2s={"require_encryption": True})
        yield server.create_user("alice", PASSWORD)
        yield server.create_user("bob", PASSWORD)
        out, err, code = yield process_output(
            sys.executable,
            [str(PAIR), "--server", f"127.0.0.1:{server.port}", "--domain", "localhost",
             "--ca-cert", str(server.config.tls.certificate), "--password", PASSWORD, "--trace"],
            reactor=reactor,
        )
        check_conversation(self, pair_result(self, out, err, code))



class OmemoProsodyTests(unittest.TestCase):
    """The same pair against Prosody 0.12 with mod_pep: proves the client program."""

    timeout = 150
    skip = NO_OMEMO

    @defer.inlineCallbacks
    def test_two_clients_exchange_encrypted_messages(self):
        from benchmarks.servers import ProsodyServer

        if not ProsodyServer.available():
            raise unittest.SkipTest("Prosody is not installed (apt-get install prosody)")
        out, err, code = yield process_output(
            sys.executable, [str(PROSODY_RUN), "--trace"], reactor=reactor,
        )
        check_conversation(self, pair_result(self, out, err, code))
