"""Two slixmpp clients with slixmpp-omemo (XEP-0384) against a live server.

Run by tests/test_interop_omemo.py as a subprocess, and by hand against any
server (Prosody: see tests/interop/omemo_prosody.py):

    python omemo_pair.py --server HOST:PORT --domain DOMAIN \\
        [--ca-cert PEM] [--user-prefix P] [--password PW] [--trace]

The accounts PREFIXalice@DOMAIN and PREFIXbob@DOMAIN (the prefix is empty
by default; both have the one password) must exist. With --ca-cert the clients require
STARTTLS and verify the server's certificate against that file; without it
they log in in plaintext (meant for a loopback Prosody without certificates).

What happens, in order (each step bounded in time; the first that fails
ends the run with its reason):

1. Both log in, fetch their roster and send initial presence (with XEP-0115
   caps that list ``urn:xmpp:omemo:2:devices+notify`` and
   ``eu.siacs.conversations.axolotl.devicelist+notify``).
2. Both set up OMEMO with empty in-memory storage, so each is a new device:
   for each of the two OMEMO versions the library publishes its bundle,
   fetches its own device list and publishes it with its device added
   (the exact iqs are listed in tests/test_interop_omemo.py).
3. alice subscribes to bob; bob approves and subscribes back (slixmpp's
   defaults), until both rosters say subscription='both'; then both
   send available presence again, as a client coming online does.
4. Each must receive the other's device lists, both versions, as PEP
   notifications (XEP-0163 auto-subscription through +notify): the plugin
   relies on them, it does not fetch the device lists of a contact with a
   'both' subscription itself.
5. alice fetches bob's device lists and bundles explicitly, both versions,
   as a client does before it builds a session: items of the device list
   node (max_items=1), the legacy bundle node (max_items=1) and the
   item named by the device id in the omemo:2 bundles node.
6. alice sends bob an OMEMO-encrypted chat message, bob decrypts it and
   checks the plaintext, then answers encrypted and alice decrypts that.
   Messages use the legacy ``eu.siacs.conversations.axolotl`` namespace
   (what Conversations sends today): slixmpp-omemo 2.x encrypts
   ``urn:xmpp:omemo:2`` messages only with Stanza Content Encryption,
   which it does not implement yet, so omemo:2 is covered up to device
   lists and bundles (steps 2, 4, 5).

Trust is blind trust before verification (BTBV): every new device is
trusted at once, so the run is deterministic. The last line on stdout is a
JSON object: ``{"ok": true, ...}`` with the devices and messages, or
``{"ok": false, "step": ..., "reason": ...}``; the exit code is 0 only when
ok. --trace writes every stanza both clients send and receive to stderr.
"""

import argparse
import asyncio
import json
import sys
from typing import Any

try:
    import oldmemo
    import twomemo
    from omemo.storage import Just, Maybe, Nothing, Storage
    from slixmpp import JID, ClientXMPP
    from slixmpp.exceptions import IqError, IqTimeout
    from slixmpp.plugins import register_plugin
    from slixmpp_omemo import XEP_0384, TrustLevel
    from slixmpp_omemo.xep_0384 import _download_bundle
except ImportError as missing:  # pragma: no cover - reported by the caller
    print(json.dumps({"ok": False, "step": "import", "reason": f"cannot import: {missing}"}))
    sys.exit(3)

OLD = oldmemo.oldmemo.NAMESPACE  # eu.siacs.conversations.axolotl
TWO = twomemo.twomemo.NAMESPACE  # urn:xmpp:omemo:2
DEVICE_LIST_NODES = {
    TWO: "urn:xmpp:omemo:2:devices",
    OLD: "eu.siacs.conversations.axolotl.devicelist",
}
STEP_TIMEOUT = 20
TIME_LIMIT = 90


class StepFailed(Exception):
    """A step of the scenario failed; the message says why."""


class MemoryStorage(Storage):
    """The OMEMO library's key/value storage, in a dict (a new device per run)."""

    def __init__(self):
        super().__init__(disable_cache=True)
        self.data: dict[str, Any] = {}

    async def _load(self, key: str) -> Maybe:
        return Just(self.data[key]) if key in self.data else Nothing()

    async def _store(self, key: str, value: Any) -> None:
        self.data[key] = value

    async def _delete(self, key: str) -> None:
        self.data.pop(key, None)


class OmemoPlugin(XEP_0384):
    """slixmpp-omemo's plugin with in-memory storage and blind trust (BTBV)."""

    name = "xep_0384"
    default_config = {"fallback_message": "This message is OMEMO encrypted."}

    def plugin_init(self) -> None:
        """Give this client its own storage, then set up the plugin."""
        self._memory = MemoryStorage()
        super().plugin_init()

    @property
    def storage(self) -> Storage:
        """This client's in-memory storage."""
        return self._memory

    @property
    def _btbv_enabled(self) -> bool:
        return True

    async def _prompt_manual_trust(self, manually_trusted, identifier) -> None:
        # Not reached with BTBV and fresh devices; trust anyway rather than hang.
        session_manager = await self.get_session_manager()
        for device in manually_trusted:
            await session_manager.set_trust(
                device.bare_jid, device.identity_key, TrustLevel.TRUSTED.value
            )


register_plugin(OmemoPlugin)


def iq_error_text(error: BaseException) -> str:
    """'TypeName: message' for an exception and its causes (the iq error condition included)."""
    parts = []
    seen = error
    while seen is not None:
        if isinstance(seen, IqError):
            iq_error = seen.iq["error"]
            parts.append(
                f"IqError: {iq_error['condition']} ({iq_error['type']}) "
                f"from {seen.iq['from']} {iq_error['text'] or ''}".rstrip()
            )
        elif isinstance(seen, IqTimeout):
            parts.append("IqTimeout: no answer")
        else:
            parts.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    return " <- ".join(parts)


class Client(ClientXMPP):
    """One account: logs in, sets up OMEMO and collects what it receives."""

    def __init__(self, name: str, jid: str, password: str, ca_cert: str | None, trace: bool):
        # Without TLS (a loopback Prosody without certificates) SCRAM is still fine.
        plugin_config = {} if ca_cert else {"feature_mechanisms": {"unencrypted_scram": True}}
        super().__init__(jid, password, plugin_config=plugin_config)
        self.name = name
        self.trace = trace
        if ca_cert:
            self.ca_certs = ca_cert
            self.enable_starttls = True
            self.enable_plaintext = False
        else:
            self.enable_starttls = False
            self.enable_plaintext = True
        self.enable_direct_tls = False
        loop = asyncio.get_event_loop()
        self.online = loop.create_future()
        self.auth_failed = loop.create_future()
        self.peer: str | None = None
        self.peer_presence = asyncio.Event()
        self.device_list_events = {TWO: asyncio.Event(), OLD: asyncio.Event()}
        self.plaintexts: asyncio.Queue = asyncio.Queue()
        self.register_plugin("xep_0384", module=sys.modules[__name__])
        self.add_event_handler("session_start", self.on_session_start)
        self.add_event_handler("failed_all_auth", self.on_auth_failed)
        self.add_event_handler("presence_available", self.on_presence)
        self.add_event_handler("twomemo_device_list_publish", self.on_device_list(TWO))
        self.add_event_handler("oldmemo_device_list_publish", self.on_device_list(OLD))
        self.add_event_handler("message", self.on_message)
        if trace:
            self.add_filter("in", self.trace_filter("<<"))
            self.add_filter("out_sync", self.trace_filter(">>"))  # after caps are added

    def trace_filter(self, direction: str):
        """A stanza filter that writes each stanza to stderr."""

        def show(stanza):
            print(f"{self.name} {direction} {stanza}", file=sys.stderr, flush=True)
            return stanza

        return show

    async def on_session_start(self, _event) -> None:
        await self.get_roster()
        # slixmpp-omemo declares its interest in the device list nodes (the
        # '+notify' disco features) when the plugin loads, before resource
        # binding, so slixmpp files them under the JID without resource and the
        # caps of our full JID lack them. Declare them again now and compute the
        # caps, so that the initial presence advertises them, as a PEP client's
        # presence does (Conversations' caps list both +notify features).
        self.plugin["xep_0163"].add_interest(list(DEVICE_LIST_NODES.values()))
        await self.plugin["xep_0115"].update_caps(broadcast=False)
        self.send_presence()
        if not self.online.done():
            self.online.set_result(True)

    def on_auth_failed(self, _event) -> None:
        if not self.auth_failed.done():
            self.auth_failed.set_result(True)

    def on_presence(self, presence) -> None:
        if self.peer and presence["from"].bare == self.peer:
            self.peer_presence.set()

    def on_device_list(self, namespace: str):
        """A handler noting a PEP notification of the peer's device list."""

        def noted(message) -> None:
            if message["from"].bare == self.peer:
                self.device_list_events[namespace].set()

        return noted

    async def on_message(self, message) -> None:
        if message["from"].bare != self.peer or message["type"] not in ("chat", "normal"):
            return
        omemo = self.plugin["xep_0384"]
        namespaces = omemo.is_encrypted(message)
        if not namespaces:
            await self.plaintexts.put(("unencrypted", None, message["body"], None))
            return
        try:
            decrypted, device = await omemo.decrypt_message(message)
        except Exception as error:  # noqa: BLE001 - reported as the step's failure
            await self.plaintexts.put(("error", sorted(namespaces), iq_error_text(error), None))
            return
        body = decrypted["body"]
        if body:  # key-exchange completions ("empty" OMEMO messages) carry no body
            await self.plaintexts.put(("ok", sorted(namespaces), body, device.device_id))

    async def session_manager(self):
        """The OMEMO library's session manager of this client (set up on first use)."""
        return await self.plugin["xep_0384"].get_session_manager()

    def subscription(self) -> str:
        """Our roster's subscription state for the peer."""
        roster = self.client_roster
        return roster[self.peer]["subscription"] if roster.has_jid(self.peer) else "none"


async def step(name: str, awaitable, timeout: float = STEP_TIMEOUT):
    """Await one step; StepFailed('name: why') on timeout or error."""
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except StepFailed:
        raise
    except TimeoutError as error:
        raise StepFailed(f"{name}: no result within {timeout}s") from error
    except Exception as error:
        raise StepFailed(f"{name}: {iq_error_text(error)}") from error


async def wait_until(predicate, interval: float = 0.05) -> None:
    """Poll a cheap local predicate (roster state) until it holds."""
    while not predicate():
        await asyncio.sleep(interval)


async def login(client: Client, host: str, port: int) -> None:
    """Connect and wait for session start (PermissionError on bad credentials)."""
    client.connect(host, port)
    done, _ = await asyncio.wait(
        [client.online, client.auth_failed], return_when=asyncio.FIRST_COMPLETED
    )
    if client.auth_failed in done:
        raise StepFailed(f"login: {client.boundjid.bare} authentication failed")


async def exchange(alice: Client, bob: Client, sender_name: str, text: str) -> dict:
    """The sender encrypts text for the peer; the peer decrypts and must read it."""
    sender, receiver = (alice, bob) if sender_name == "alice" else (bob, alice)
    stanza = sender.make_message(mto=JID(receiver.boundjid.bare), mtype="chat", mbody=text)
    encrypted, errors = await step(
        f"{sender.name} encrypts for {receiver.name}",
        sender.plugin["xep_0384"].encrypt_message(stanza, JID(receiver.boundjid.bare)),
    )
    if encrypted is None:
        raise StepFailed(f"{sender.name} encrypts: the library produced no message")
    if errors:
        raise StepFailed(f"{sender.name} encrypts: non-critical errors {sorted(map(str, errors))}")
    sent_namespaces = sorted(sender.plugin["xep_0384"].is_encrypted(encrypted))
    if text in str(encrypted):
        raise StepFailed(f"{sender.name} encrypts: the plaintext is visible in the stanza")
    encrypted.send()
    status, namespaces, body, device_id = await step(
        f"{receiver.name} receives the encrypted message", receiver.plaintexts.get()
    )
    if status != "ok":
        raise StepFailed(f"{receiver.name} decrypts: {status}: {body} (namespaces {namespaces})")
    if body != text:
        raise StepFailed(f"{receiver.name} decrypts: got {body!r}, expected {text!r}")
    own_device, _ = await (await sender.session_manager()).get_own_device_information()
    if device_id != own_device.device_id:
        raise StepFailed(
            f"{receiver.name} decrypts: sender device {device_id}, expected {own_device.device_id}"
        )
    return {"from": sender.name, "namespaces": sent_namespaces, "plaintext": body,
            "sender_device": device_id}


async def fetch_peer(alice: Client, bob_jid: str, bob_device: int) -> dict:
    """alice downloads bob's device lists and bundles, both versions, as the library does."""
    xep_0060 = alice.plugin["xep_0060"]
    found = {}
    for namespace, node in DEVICE_LIST_NODES.items():
        result = await step(
            f"alice fetches {node} of bob",
            xep_0060.get_items(JID(bob_jid), node, max_items=1),
        )
        items = result["pubsub"]["items"]
        payload = next(iter(items["item"].xml), None) if len(items) else None
        if payload is None:
            raise StepFailed(f"alice fetches {node} of bob: no item")
        parser = twomemo.etree if namespace == TWO else oldmemo.etree
        devices = parser.parse_device_list(payload)
        if bob_device not in devices:
            raise StepFailed(f"alice fetches {node} of bob: device {bob_device} not in {devices}")
        bundle = await step(
            f"alice fetches bob's {namespace} bundle",
            _download_bundle(xep_0060, namespace, bob_jid, bob_device),
        )
        if bundle.device_id != bob_device:
            raise StepFailed(f"bob's {namespace} bundle is for device {bundle.device_id}")
        found[namespace] = sorted(devices)
    return found


async def scenario(args, result: dict) -> None:
    """The whole exchange; raises StepFailed with the failing step."""
    host, port = args.server.rsplit(":", 1)
    alice = Client("alice", f"{args.user_prefix}alice@{args.domain}", args.password,
                   args.ca_cert, args.trace)
    bob = Client("bob", f"{args.user_prefix}bob@{args.domain}", args.password,
                 args.ca_cert, args.trace)
    alice.peer, bob.peer = bob.boundjid.bare, alice.boundjid.bare
    try:
        result["step"] = "login"
        await step("login", asyncio.gather(*(login(c, host, int(port)) for c in (alice, bob))))

        result["step"] = "omemo setup"
        devices = {}
        for client in (alice, bob):
            session_manager = await step(
                f"{client.name} OMEMO setup (publish bundles and device lists)",
                client.plugin["xep_0384"].get_session_manager(),
            )
            own, _ = await session_manager.get_own_device_information()
            if own.namespaces != frozenset({TWO, OLD}):
                raise StepFailed(
                    f"{client.name} OMEMO setup: active namespaces {sorted(own.namespaces)}"
                )
            devices[client.name] = own.device_id
        result["devices"] = devices

        result["step"] = "subscription"
        alice.send_presence(pto=bob.boundjid.bare, ptype="subscribe")
        await step("mutual subscription", asyncio.gather(
            wait_until(lambda: alice.subscription() == "both"),
            wait_until(lambda: bob.subscription() == "both"),
        ))
        for client in (alice, bob):
            client.send_presence()
        await step("presence from the peer", asyncio.gather(
            alice.peer_presence.wait(), bob.peer_presence.wait()
        ))

        result["step"] = "device list notifications"
        for client in (alice, bob):
            for namespace, node in DEVICE_LIST_NODES.items():
                await step(
                    f"{client.name} gets a PEP notification of {node} from {client.peer}",
                    client.device_list_events[namespace].wait(),
                )
            session_manager = await client.session_manager()
            peer_devices = await session_manager.get_device_information(client.peer)
            peer_name = "bob" if client is alice else "alice"
            if devices[peer_name] not in {device.device_id for device in peer_devices}:
                raise StepFailed(
                    f"{client.name} does not know {peer_name}'s device after the notifications"
                )

        result["step"] = "explicit fetch"
        result["fetched_by_alice"] = await fetch_peer(alice, bob.boundjid.bare, devices["bob"])

        result["step"] = "messages"
        result["messages"] = [
            await exchange(alice, bob, "alice", "Hello bob, this is OMEMO."),
            await exchange(alice, bob, "bob", "Hello alice, I read you."),
        ]
        for message in result["messages"]:
            if OLD not in message["namespaces"]:
                raise StepFailed(
                    f"{message['from']}'s message is not in {OLD}: {message['namespaces']}"
                )
        result["step"] = "done"
        result["ok"] = True
    finally:
        closing = [client.disconnect() for client in (alice, bob)]
        await asyncio.wait(closing, timeout=5)


def parse_args(argv):
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="HOST:PORT of the c2s listener")
    parser.add_argument("--domain", required=True, help="the accounts' domain")
    parser.add_argument("--ca-cert", help="require STARTTLS and verify against this PEM file")
    parser.add_argument("--user-prefix", default="", help="accounts are PREFIXalice and PREFIXbob")
    parser.add_argument("--password", default="omemo-pw", help="both accounts' password")
    parser.add_argument("--trace", action="store_true", help="every stanza to stderr")
    return parser.parse_args(argv)


def main(argv) -> int:
    """Run the scenario within TIME_LIMIT seconds; print the JSON result; 0 on success."""
    args = parse_args(argv)
    result: dict[str, Any] = {"ok": False, "step": "start"}
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # slixmpp-omemo also starts the OMEMO setup in a task of its own at resource
    # binding; its failure is the one the scenario reports: one line, no traceback.
    loop.set_exception_handler(lambda _loop, context: print(
        f"asyncio: {context.get('message')}: {context.get('exception')!r}", file=sys.stderr
    ))
    try:
        loop.run_until_complete(asyncio.wait_for(scenario(args, result), TIME_LIMIT))
    except StepFailed as failure:
        result["reason"] = str(failure)
    except TimeoutError:
        result["reason"] = f"{result['step']}: the whole run took longer than {TIME_LIMIT}s"
    except Exception as error:  # noqa: BLE001 - a harness error is a failure with its reason
        result["reason"] = f"{result['step']}: unexpected {iq_error_text(error)}"
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
