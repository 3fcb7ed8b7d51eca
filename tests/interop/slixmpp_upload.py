"""HTTP file upload (XEP-0363) with slixmpp's xep_0363 plugin against a live xmppd.

Run by tests/test_interop.py as a subprocess:

    python slixmpp_upload.py HOST PORT CA_CERT JID1 PASSWORD1 JID2 PASSWORD2

JID1 finds the upload service through disco, uploads a 200 kB image and a
text file with the plugin, and tries a file over the service's advertised
max-file-size (the plugin must refuse it from the disco form). JID2
downloads both files over HTTP (the whole image, a range of it, the text
file's headers) and compares. Progress goes to stdout one line per event;
the exit code is 0 only if everything happened within the time limit.
"""

import asyncio
import hashlib
import io
import os
import sys

import aiohttp
from slixmpp import ClientXMPP
from slixmpp.plugins.xep_0363.http_upload import FileTooBig
from slixmpp_main import report, run, starttls_only

TIME_LIMIT = 40


class Client(ClientXMPP):
    """A slixmpp client with the HTTP upload plugin."""

    def __init__(self, jid, password, ca_cert):
        super().__init__(jid, password, sasl_mech="SCRAM-SHA-256")
        starttls_only(self, ca_cert)
        self.register_plugin("xep_0363")
        self.online = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", lambda _: self.online.set_result(True))


async def scenario(host, port, ca_cert, jid1, password1, jid2, password2):
    """Upload with the plugin, download with aiohttp."""
    romeo = Client(jid1, password1, ca_cert)
    romeo.connect(host, port)
    await romeo.online
    image = os.urandom(200_000)
    image_url = await romeo["xep_0363"].upload_file(
        "photo.png", input_file=io.BytesIO(image), size=len(image), content_type="image/png")
    report(f"uploaded image service={romeo['xep_0363'].upload_service} "
           f"max={romeo['xep_0363'].max_file_size}")
    text_url = await romeo["xep_0363"].upload_file(
        "notes.txt", input_file=io.BytesIO(b"to be or not to be"), size=18)
    report("uploaded text")
    try:
        await romeo["xep_0363"].upload_file(
            "big.bin", input_file=io.BytesIO(b"x"), size=romeo["xep_0363"].max_file_size + 1)
        report("big file was not refused")
    except FileTooBig:
        report("big file refused by the plugin")
    romeo.disconnect()
    async with aiohttp.ClientSession() as session:
        async with session.get(image_url) as response:
            body = await response.read()
            report(f"image status={response.status} type={response.content_type} "
                   f"same={hashlib.sha256(body).digest() == hashlib.sha256(image).digest()} "
                   f"disposition={response.headers.get('Content-Disposition')}")
        async with session.get(image_url, headers={"Range": "bytes=100-199"}) as response:
            body = await response.read()
            report(f"range status={response.status} same={body == image[100:200]}")
        async with session.get(text_url) as response:
            body = await response.read()
            report(f"text status={response.status} body={body.decode()} "
                   f"disposition={response.headers.get('Content-Disposition')}")
    report("done")


def main(argv):
    """Run the scenario within TIME_LIMIT seconds; exit code 0 on success."""
    return run(scenario, argv, TIME_LIMIT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
