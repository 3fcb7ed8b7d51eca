"""HTTP file upload (XEP-0363, ``urn:xmpp:http:upload:0``).

* :mod:`xmppd.upload.store` — the slots and files: metadata rows in the
  database, the files under ``DATA_DIR/uploads``;
* :mod:`xmppd.upload.service` — the XMPP side at ``[upload] domain``:
  disco and slot requests;
* :mod:`xmppd.upload.resource` — the HTTP side at ``/upload/``: PUT into a
  slot, GET/HEAD (ranges too) of the file.
"""

NS_UPLOAD = "urn:xmpp:http:upload:0"
