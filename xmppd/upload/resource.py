"""The HTTP side of the upload service, mounted at ``/upload/SLOT_ID/FILENAME``.

* ``PUT`` with the slot's ``Authorization`` header (checked with the headers,
  before the body is read: 401 without it, 403 when it is wrong or expired;
  409 while another PUT into the slot is under way), a body of exactly the
  slot's size (413 larger, 400 smaller) and its content type (400
  otherwise), into a slot not used yet (409 after a first PUT; 404 for an
  unknown slot). The body streams into a temporary file in the uploads
  folder, renamed to the slot's id once complete: 201.
* ``GET``/``HEAD`` of an uploaded file, with ``Range`` support (206) from
  twisted.web's static files: its content type, ``Content-Disposition:
  attachment`` unless it is an image (but not SVG), audio or video,
  ``X-Content-Type-Options:
  nosniff`` and ``Content-Security-Policy: default-src 'none'``.
* ``OPTIONS``: the CORS preflight of browser clients; every answer carries
  ``Access-Control-Allow-Origin: *``.

The filename part of the path is not used: only the slot id (validated
against :data:`xmppd.upload.store.ID_LENGTH` URL-safe characters) names a file,
so no path can reach outside the uploads folder.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any
from urllib.parse import quote

from twisted.internet import defer, threads
from twisted.web import resource, server, static

from xmppd.http.site import status_body
from xmppd.logs import logger
from xmppd.upload.service import DEFAULT_TYPE
from xmppd.upload.store import TEMP_PREFIX, valid_slot_id

log = logger(__name__)

#: Types a browser may show inline; anything else is downloaded.
INLINE_TYPES = ("image/", "audio/", "video/")
#: Images that are documents (SVG may carry scripts and links): downloaded too.
ATTACHMENT_ONLY = frozenset({"image/svg+xml"})


def _slot_of(path: bytes) -> str | None:
    """The slot id of ``/upload/ID[/name]`` (query removed), or None."""
    segments = [s for s in path.split(b"?", 1)[0].split(b"/") if s]
    if len(segments) < 2 or segments[0] != b"upload" or len(segments) > 3:
        return None
    slot = segments[1].decode("ascii", "replace")
    return slot if valid_slot_id(slot) else None


def _cors(request: server.Request) -> None:
    request.setHeader(b"access-control-allow-origin", b"*")
    request.setHeader(b"access-control-allow-methods", b"GET, HEAD, PUT, OPTIONS")
    request.setHeader(b"access-control-allow-headers", b"Authorization, Content-Type")
    request.setHeader(b"access-control-expose-headers",
                      b"Content-Length, Content-Type, Content-Range")


class UploadResource(resource.Resource):
    """``/upload``: PUT into slots, GET/HEAD files (see the module docstring)."""

    isLeaf = True

    def __init__(self, upload_service: Any):
        super().__init__()
        self.service = upload_service
        self.store = upload_service.store
        #: Slots with a PUT under way.
        self.active: set[str] = set()

    # -- hooks of the listener (before the body) ----------------------------------

    def max_body_size(self, method: bytes) -> int | None:
        """PUT bodies up to ``[upload] max_file_size``."""
        return self.service.settings.max_file_size if method == b"PUT" else None

    def refuse_early(self, request: server.Request, method: bytes,
                     path: bytes) -> tuple[int, str] | None:
        """A PUT's slot and authorisation, from the headers alone."""
        if method != b"PUT":
            return None
        slot = _slot_of(path)
        if slot is None:
            return 404, "no such slot"
        auth = request.requestHeaders.getRawHeaders(b"authorization", [None])[0]
        problem = self.service.signer.check(
            slot, auth.decode("latin-1") if auth else None, self.service.now())
        if problem == "missing":
            return 401, "this slot needs its Authorization header"
        if problem is not None:
            return 403, f"{problem} authorisation for this slot"
        if slot in self.active:
            return 409, "an upload into this slot is under way"
        self.active.add(slot)
        request.notifyFinish().addBoth(lambda _: self.active.discard(slot))
        return None

    def content_file(self, method: bytes, path: bytes, length: int | None) -> Any:
        """A PUT's body goes into a temporary file in the uploads folder."""
        if method != b"PUT":
            return None
        return tempfile.NamedTemporaryFile(dir=self.store.folder, prefix=TEMP_PREFIX,
                                           delete=False)

    # -- methods ------------------------------------------------------------------

    def render_OPTIONS(self, request: server.Request) -> bytes:  # noqa: N802
        """CORS preflight."""
        _cors(request)
        request.setHeader(b"access-control-max-age", b"86400")
        request.setResponseCode(204)
        return b""

    def render_PUT(self, request: server.Request) -> Any:  # noqa: N802
        """Store the body as the slot's file."""
        _cors(request)
        slot = _slot_of(request.path)
        if slot is None:
            return status_body(request, 404, "no such slot")
        self._finish(request, self._put(request, slot))
        return server.NOT_DONE_YET

    @defer.inlineCallbacks
    def _put(self, request: server.Request, slot: str):
        upload = yield self.store.get(slot)
        if upload is None:
            return status_body(request, 404, "no such slot")
        if upload.uploaded is not None:
            return status_body(request, 409, "this slot was used already")
        content = request.content
        content.seek(0, os.SEEK_END)
        size = content.tell()
        if size > upload.size:
            return status_body(request, 413, f"the slot is for {upload.size} bytes")
        if size < upload.size:
            return status_body(request, 400, f"the slot is for {upload.size} bytes")
        given = (request.getHeader(b"content-type") or b"").decode("latin-1").strip()
        if given.lower() != upload.content_type.lower() and not (
                not given and upload.content_type == DEFAULT_TYPE):
            return status_body(request, 400, f"the slot is for {upload.content_type}")
        final = self.store.path(slot)
        # Writing the file to disk can take a while: not on the reactor's thread.
        yield threads.deferToThread(_keep, content, final)
        stored = yield self.store.mark_uploaded(slot, self.service.now())
        if not stored:  # swept or used meanwhile
            os.unlink(final)
            return status_body(request, 409, "this slot is no longer open")
        log.info("upload {id}: {size} bytes of {type} from {user}", id=slot, size=size,
                 type=upload.content_type, user=upload.owner)
        request.setResponseCode(201)
        return b""

    def render_GET(self, request: server.Request) -> Any:  # noqa: N802
        """The file (HEAD: its headers; ranges too)."""
        _cors(request)
        slot = _slot_of(request.path)
        if slot is None:
            return status_body(request, 404, "not found")
        self._finish(request, self._get(request, slot))
        return server.NOT_DONE_YET

    render_HEAD = render_GET  # noqa: N815 - Twisted's API

    @defer.inlineCallbacks
    def _get(self, request: server.Request, slot: str):
        upload = yield self.store.get(slot)
        path = self.store.path(slot)
        if upload is None or upload.uploaded is None or not path.is_file():
            return status_body(request, 404, "not found")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"content-security-policy", b"default-src 'none'")
        base = upload.content_type.split(";", 1)[0].strip().lower()
        if not base.startswith(INLINE_TYPES) or base in ATTACHMENT_ONLY:
            request.setHeader(b"content-disposition",
                              f"attachment; filename*=UTF-8''{quote(upload.filename, safe='')}"
                              .encode())
        file = static.File(str(path), defaultType=upload.content_type)
        file.type = upload.content_type
        file.encoding = None
        return file.render(request)

    def _finish(self, request: server.Request, d: defer.Deferred) -> None:
        def done(body: Any) -> None:
            if body is server.NOT_DONE_YET or request.finished or request._disconnected:
                return
            if body:
                request.write(body)
            request.finish()

        def failed(failure: Any) -> None:
            log.failure("an upload request failed", failure)
            if not (request.finished or request._disconnected):
                request.setResponseCode(500)
                request.finish()

        d.addCallbacks(done, failed)


def _keep(content: Any, final: Any) -> None:
    """Flush a PUT's temporary file to disk and give it its final name (in a thread)."""
    content.flush()
    os.fsync(content.fileno())
    content.close()
    os.replace(content.name, final)
