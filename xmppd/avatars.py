"""User avatars (XEP-0084): reading images and building and reading their PEP payloads.

The vcard module converts between these and the vCard's PHOTO (XEP-0398).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct

from twisted.words.xish import domish

#: XEP-0084's PEP nodes (and payload namespaces).
NS_AVATAR_METADATA = "urn:xmpp:avatar:metadata"
NS_AVATAR_DATA = "urn:xmpp:avatar:data"
#: An avatar's id: the SHA-1 of its bytes, in hex.
SHA1_HEX = re.compile(r"[0-9a-fA-F]{40}")
#: JPEG start-of-frame markers (they carry the image's size).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def decode_base64(text: str) -> bytes | None:
    """Strict base64 with whitespace ignored; None when it is not base64."""
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def image_facts(data: bytes) -> tuple[str | None, int | None, int | None]:
    """(MIME type, width, height) as the image's own PNG, GIF or JPEG header says them.

    None for whatever the header does not say (an unknown format, a
    truncated header, a JPEG without a frame header before its end).
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(data) >= 24 and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return "image/png", width or None, height or None
        return "image/png", None, None
    if data[:6] in (b"GIF87a", b"GIF89a"):
        if len(data) >= 10:
            width, height = struct.unpack("<HH", data[6:10])
            return "image/gif", width or None, height or None
        return "image/gif", None, None
    if data.startswith(b"\xff\xd8\xff"):
        index = 2
        while index + 4 <= len(data) and data[index] == 0xFF:
            marker = data[index + 1]
            if marker == 0xFF:  # fill byte
                index += 1
                continue
            if marker in _JPEG_SOF:
                if index + 9 > len(data):
                    break
                height, width = struct.unpack(">HH", data[index + 5:index + 9])
                return "image/jpeg", width or None, height or None
            if marker == 0xD9 or marker == 0xDA:  # end of image, start of scan
                break
            if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
                index += 2
                continue
            index += 2 + struct.unpack(">H", data[index + 2:index + 4])[0]
        return "image/jpeg", None, None
    return None, None, None


def avatar_items(data: bytes, declared_type: str | None,
                 ) -> tuple[str, domish.Element, domish.Element]:
    """(SHA-1 hex, ``<data/>`` payload, ``<metadata/>`` payload) of an image (XEP-0084)."""
    sha1_hex = hashlib.sha1(data).hexdigest()
    payload = domish.Element((NS_AVATAR_DATA, "data"))
    payload.addContent(base64.b64encode(data).decode("ascii"))
    sniffed, width, height = image_facts(data)
    metadata = domish.Element((NS_AVATAR_METADATA, "metadata"))
    info = metadata.addElement("info")
    info["bytes"] = str(len(data))
    info["id"] = sha1_hex
    kind = declared_type or sniffed
    if kind:
        info["type"] = kind
    if width and height:
        info["width"] = str(width)
        info["height"] = str(height)
    return sha1_hex, payload, metadata


def chosen_info(metadata: domish.Element | None) -> domish.Element | None:
    """The ``<info/>`` of a metadata payload that stands for the avatar, or None.

    The first one without a 'url' and with an id (XEP-0398 §3.1: the one
    whose data is in PEP), else the first with a 'url' (an avatar hosted
    elsewhere); None for ``<metadata/>`` (disabled) or a malformed payload.
    """
    if metadata is None or (metadata.uri, metadata.name) != (NS_AVATAR_METADATA, "metadata"):
        return None
    infos = [info for info in metadata.elements(NS_AVATAR_METADATA, "info")
             if info.getAttribute("id")]
    for info in infos:
        if not info.getAttribute("url"):
            return info
    return infos[0] if infos else None


def metadata_hash(metadata: domish.Element | None) -> str | None:
    """The presence hash a metadata payload stands for: its chosen info's SHA-1 id."""
    info = chosen_info(metadata)
    if info is None or not SHA1_HEX.fullmatch(info["id"]):
        return None
    return info["id"].lower()
