"""The upload service (XEP-0363) at ``[upload] domain``: disco and slot requests.

A router destination like the pubsub service. Rules (XEP-0363 §4-5,
Prosody's mod_http_file_share where the XEP leaves a choice):

* only accounts of the server's domain get slots; anyone else gets
  ``forbidden`` (auth);
* ``filename`` (non-empty, no ``/``, at most 255 characters) and ``size``
  (a positive integer) are required, ``content-type`` is optional
  (``application/octet-stream``); anything malformed is ``bad-request``;
* a size over ``max_file_size`` gets ``not-acceptable`` with
  ``<file-too-large><max-file-size/></file-too-large>``; a type outside
  ``allowed_types`` gets ``not-acceptable``;
* a slot that would take the account over its ``quota`` (kept files plus
  open slots), or more than ``max_open_slots`` open slots, gets
  ``resource-constraint`` (wait);
* the slot's PUT URL carries the slot id; its ``Authorization`` header is
  ``Bearer EXPIRES.MAC``, an HMAC-SHA256 over the slot id and its expiry
  with the service's secret (``DATA_DIR/upload.secret``), valid for
  ``slot_lifetime`` seconds; the GET URL is the same path.

A background sweep every ``expire_interval`` seconds deletes expired files
(``expire_after``), unused slots and the uploads of deleted accounts; an
account deleted while the server runs loses its uploads at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

from twisted.internet import defer, task
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish
from wokkel import data_form, disco

from xmppd.domainservice import DomainService
from xmppd.errors import StanzaError
from xmppd.logs import logger
from xmppd.upload import NS_UPLOAD
from xmppd.upload.store import Upload, UploadStore, new_slot_id

log = logger(__name__)

#: The HTTP path the files live under.
HTTP_PATH = "/upload"
DEFAULT_TYPE = "application/octet-stream"
MAX_FILENAME = 255
_CONTENT_TYPE = re.compile(
    r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+"
    r"(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=(\"[^\"\\\r\n]*\"|[A-Za-z0-9!#$&^_.+-]+))*")


def valid_content_type(text: str) -> bool:
    """A ``type/subtype[; param=value]`` of at most 255 characters."""
    return len(text) <= 255 and bool(_CONTENT_TYPE.fullmatch(text))


def type_allowed(content_type: str, allowed: tuple[str, ...]) -> bool:
    """Whether a content type matches the allow-list (empty: any; ``image/*`` matches)."""
    if not allowed:
        return True
    base = content_type.split(";", 1)[0].strip().lower()
    major = base.split("/", 1)[0]
    return base in allowed or f"{major}/*" in allowed


def load_secret(path: Path) -> bytes:
    """The service's HMAC key: read from ``path``, created (mode 0600) if missing."""
    try:
        secret = path.read_bytes()
        if len(secret) >= 32:
            return secret
    except FileNotFoundError:
        pass
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    return secret


class SlotSigner:
    """Makes and checks the PUT ``Authorization`` value of a slot."""

    def __init__(self, secret: bytes):
        self.secret = secret

    def _mac(self, slot_id: str, expires: int) -> str:
        digest = hmac.new(self.secret, f"{slot_id}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(self, slot_id: str, expires: float) -> str:
        """The header value for a slot valid until ``expires`` (POSIX seconds)."""
        whole = int(expires)
        return f"Bearer {whole}.{self._mac(slot_id, whole)}"

    def check(self, slot_id: str, value: str | None, now: float) -> str | None:
        """None if the value authorises a PUT into the slot now, else why not."""
        if not value or not value.startswith("Bearer "):
            return "missing"
        expires, _, mac = value[len("Bearer "):].strip().partition(".")
        if not expires.isdigit() or not hmac.compare_digest(mac, self._mac(slot_id, int(expires))):
            return "invalid"
        if int(expires) <= now:
            return "expired"
        return None


class UploadService(DomainService):
    """The upload component: slot requests over XMPP, the sweep in the background."""

    kind = "upload"

    def __init__(self, settings: Any, *, router: Any, database: Any, server_domain: str,
                 data_dir: Path, http: Any, reactor: Any = None):
        if reactor is None:
            from twisted.internet import reactor
        super().__init__(settings.domain, router)
        self.settings = settings
        self.server_domain = server_domain
        self.http = http
        self.reactor = reactor
        self.store = UploadStore(database, Path(data_dir) / "uploads")
        self.signer = SlotSigner(load_secret(Path(data_dir) / "upload.secret"))
        self._sweep: task.LoopingCall | None = None
        self._sweeping: defer.Deferred | None = None
        from xmppd.upload.resource import UploadResource

        self.resource = UploadResource(self)
        http.mount(HTTP_PATH, self.resource)

    def now(self) -> float:
        """The reactor's time (a fake clock in tests)."""
        return self.reactor.seconds()

    def startService(self) -> None:  # noqa: N802 - Twisted's API
        """Serve the domain and the HTTP path; start the background sweep."""
        self.store.ensure_folder()
        self.store.remove_stray_temp_files()
        super().startService()
        self._sweep = task.LoopingCall(self.sweep)
        self._sweep.clock = self.reactor
        self._sweep.start(self.settings.expire_interval, now=True).addErrback(
            lambda f: log.failure("the upload sweep stopped", f))

    def stopService(self):  # noqa: N802 - Twisted's API
        """Stop serving the domain and sweeping; wait for a sweep under way."""
        if self._sweep is not None and self._sweep.running:
            self._sweep.stop()
        super().stopService()
        if self._sweeping is not None:
            return self._sweeping
        return None

    @defer.inlineCallbacks
    def sweep(self):
        """Delete expired files, unused slots and uploads of deleted accounts."""
        done: defer.Deferred = defer.Deferred()
        self._sweeping = done
        try:
            ids = yield self.store.expire(self.now(), self.settings.expire_after)
            if ids:
                log.info("upload sweep: deleted {count} files and slots", count=len(ids))
        except Exception:
            log.failure("the upload sweep failed")
        finally:
            self._sweeping = None
            done.callback(None)

    @defer.inlineCallbacks
    def account_deleted(self, username: str):
        """A local account was deleted: its files and slots go."""
        ids = yield self.store.delete_owner(username)
        if ids:
            log.info("deleted {count} uploads of {user}", count=len(ids), user=username)

    # -- stanzas ----------------------------------------------------------------

    def handle_iq(self, kind: str, sender: jid.JID, payload: domish.Element,
                  stanza: domish.Element) -> defer.Deferred | None:
        """Slot requests, disco#info and disco#items (all ``get``)."""
        key = (kind, payload.uri, payload.name)
        if key == ("get", NS_UPLOAD, "request"):
            return defer.maybeDeferred(self.request_slot, sender, payload)
        if key == ("get", disco.NS_DISCO_INFO, "query"):
            return defer.maybeDeferred(self.disco_info, payload)
        if key == ("get", disco.NS_DISCO_ITEMS, "query"):
            return defer.maybeDeferred(self.disco_items, payload)
        return None

    # -- disco ------------------------------------------------------------------

    def disco_info(self, payload: domish.Element) -> domish.Element:
        """The service's identity, feature and form (``max-file-size``)."""
        if payload.getAttribute("node"):
            raise StanzaError("item-not-found")
        info = disco.DiscoInfo()
        info.append(disco.DiscoIdentity("store", "file", "HTTP File Upload"))
        for feature in (disco.NS_DISCO_INFO, disco.NS_DISCO_ITEMS, NS_UPLOAD):
            info.append(disco.DiscoFeature(feature))
        form = data_form.Form("result", formNamespace=NS_UPLOAD)
        form.addField(data_form.Field(var="max-file-size",
                                      value=str(self.settings.max_file_size)))
        info.append(form)
        return info.toElement()

    def disco_items(self, payload: domish.Element) -> domish.Element:
        """No items."""
        if payload.getAttribute("node"):
            raise StanzaError("item-not-found")
        return disco.DiscoItems().toElement()

    # -- slots ------------------------------------------------------------------

    @defer.inlineCallbacks
    def request_slot(self, sender: jid.JID, request: domish.Element):
        """Check a slot request and hand out a slot (see the module docstring)."""
        if not sender.user or sender.host != self.server_domain:
            raise StanzaError("forbidden", "only local accounts may upload", type="auth")
        filename = request.getAttribute("filename") or ""
        size_text = request.getAttribute("size") or ""
        content_type = (request.getAttribute("content-type") or "").strip() or DEFAULT_TYPE
        if (not filename or "/" in filename or len(filename) > MAX_FILENAME
                or any(ord(c) < 32 or ord(c) == 127 for c in filename)):
            raise StanzaError("bad-request", "missing or invalid filename", type="modify")
        if not size_text.isascii() or not size_text.isdigit() or int(size_text) < 1:
            raise StanzaError("bad-request", "missing or invalid size", type="modify")
        size = int(size_text)
        if not valid_content_type(content_type):
            raise StanzaError("bad-request", "invalid content-type", type="modify")
        limit = self.settings.max_file_size
        if size > limit:
            too_large = domish.Element((NS_UPLOAD, "file-too-large"))
            too_large.addElement("max-file-size", content=str(limit))
            raise StanzaError("not-acceptable", f"file too large, the limit is {limit} bytes",
                              type="modify", app_condition=too_large)
        if not type_allowed(content_type, self.settings.allowed_types):
            raise StanzaError("not-acceptable", "file type not allowed", type="modify")
        now = self.now()
        slot_id = new_slot_id()
        expires = now + self.settings.slot_lifetime
        quota = self.settings.quota
        lacking = yield self.store.reserve(
            Upload(slot_id, sender.user, filename, size, content_type, now, expires, None),
            quota, self.settings.max_open_slots)
        if lacking == "quota":
            raise StanzaError("resource-constraint",
                              f"over your upload quota of {quota} bytes", type="wait")
        if lacking == "slots":
            raise StanzaError("resource-constraint", "too many slots not uploaded yet",
                              type="wait")
        url = self.http.url_for(f"{HTTP_PATH}/{slot_id}/{quote(filename, safe='')}")
        slot = domish.Element((NS_UPLOAD, "slot"))
        put = slot.addElement("put")
        put["url"] = url
        header = put.addElement("header", content=self.signer.sign(slot_id, expires))
        header["name"] = "Authorization"
        slot.addElement("get")["url"] = url
        log.debug("upload slot {id} for {user}: {size} bytes of {type}", id=slot_id,
                  user=sender.user, size=size, type=content_type)
        return slot
