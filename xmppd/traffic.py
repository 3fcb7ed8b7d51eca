"""Debug logging of client stream traffic, with secrets redacted.

When xmppd logs at ``debug`` level, every client stream opened from then on
logs what it receives and sends, one log event per chunk, in the namespace
``xmppd.traffic``. The twisted.words ``XmlStream`` calls ``rawDataInFn`` and
``rawDataOutFn`` with the bytes it reads and writes (after TLS decryption);
:func:`trace_factory` sets those on each new stream of a factory.

:class:`Redactor` rewrites that XML text chunk by chunk (chunks may split a
tag or a character anywhere): markup is kept so the exchange stays readable,
but the character data of anything secret becomes ``[redacted]``:

* SASL payloads: ``<auth>``, ``<response>``, ``<challenge>``, ``<success>``;
* ``<password>`` (``jabber:iq:register``, MUC join passwords), ``<digest>``
  and ``<handshake>``;
* the values of data form fields whose ``var`` mentions a password or a
  secret (``muc#roomconfig_roomsecret``, registration forms).
"""

from __future__ import annotations

import codecs
import re
from typing import Any

from xmppd import logs

log = logs.logger("xmppd.traffic")

REDACTED = "[redacted]"

#: Elements whose whole text content is secret (local names, any namespace).
SECRET_ELEMENTS = frozenset(
    {"auth", "response", "challenge", "success", "password", "digest", "handshake"}
)
#: Data form fields (``<field var='...'>``) whose values are secret.
SECRET_FIELD = re.compile(r"pass|secret", re.IGNORECASE)

#: An incomplete tag longer than this is dropped rather than buffered.
MAX_PENDING = 65536

_NAME = re.compile(r"<\s*/?\s*([^\s/>]+)")
_VAR = re.compile(r"""\svar\s*=\s*(?:"([^"]*)"|'([^']*)')""")


class Redactor:
    """Rewrites one direction of an XML stream, hiding secret character data."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending = ""
        #: One entry per open element: whether its content is secret.
        self._open: list[bool] = []

    @property
    def secret(self) -> bool:
        """Whether the current position is inside a secret element."""
        return bool(self._open) and self._open[-1]

    def feed(self, data: bytes) -> str:
        """The redacted text of the next chunk (an unfinished tag waits for the next)."""
        text = self._pending + self._decoder.decode(data)
        self._pending = ""
        out: list[str] = []
        position = 0
        while position < len(text):
            start = text.find("<", position)
            if start == -1:
                out.append(self._text(text[position:]))
                break
            if start > position:
                out.append(self._text(text[position:start]))
            end = _markup_end(text, start)
            if end == -1:
                rest = text[start:]
                if len(rest) <= MAX_PENDING:
                    self._pending = rest
                else:
                    out.append("[...]")
                break
            out.append(self._markup(text[start:end]))
            position = end
        return "".join(out)

    def _text(self, text: str) -> str:
        if self.secret and text.strip():
            return REDACTED
        return text

    def _markup(self, markup: str) -> str:
        if markup.startswith("<![CDATA["):
            return REDACTED if self.secret else markup
        if markup.startswith(("<?", "<!")):
            return markup
        found = _NAME.match(markup)
        local = found.group(1).rpartition(":")[2] if found else ""
        if markup.startswith("</"):
            if self._open:
                self._open.pop()
            return markup
        if local == "stream":
            self._open = []  # a (re)started stream: nothing is open any more
        secret = self.secret or local in SECRET_ELEMENTS
        if local == "field":
            var = _VAR.search(markup)
            if var and SECRET_FIELD.search(var.group(1) or var.group(2) or ""):
                secret = True
        if not markup.endswith("/>"):
            self._open.append(secret)
        return markup


def _markup_end(text: str, start: int) -> int:
    """The index just past the markup starting at ``start``, or -1 if unfinished."""
    for opening, closing in (("<![CDATA[", "]]>"), ("<!--", "-->"), ("<?", "?>")):
        if text.startswith(opening, start):
            end = text.find(closing, start + len(opening))
            return -1 if end == -1 else end + len(closing)
    if len(text) - start < 9 and "<![CDATA[".startswith(text[start:]):
        return -1  # could still become a CDATA section
    quote = None
    for index in range(start + 1, len(text)):
        char = text[index]
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == ">":
            return index + 1
    return -1


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


class StreamTracer:
    """Logs one stream's traffic in both directions, redacted."""

    def __init__(self, stream: Any, peer: str, kind: str = "c2s"):
        self.stream = stream
        self.label = f"{kind} {peer}"
        self.incoming = Redactor()
        self.outgoing = Redactor()

    def attach(self) -> None:
        """Start logging this stream's traffic."""
        self.stream.rawDataInFn = self.data_in
        self.stream.rawDataOutFn = self.data_out

    def detach(self) -> None:
        """Stop logging (the level went above debug: a redactor cannot resume mid-stream)."""
        if self.stream.rawDataInFn == self.data_in:
            self.stream.rawDataInFn = None
        if self.stream.rawDataOutFn == self.data_out:
            self.stream.rawDataOutFn = None

    def data_in(self, data: bytes) -> None:
        """Bytes read from the client."""
        self._log("recv", self.incoming, data)

    def data_out(self, data: bytes) -> None:
        """Bytes written to the client."""
        self._log("send", self.outgoing, data)

    def _log(self, direction: str, redactor: Redactor, data: bytes) -> None:
        if not logs.is_enabled("debug", "xmppd.traffic"):
            self.detach()
            return
        text = redactor.feed(data)
        if text:
            log.debug(
                "{stream} {direction}: {data}",
                stream=self.label, direction=direction, data=_one_line(text),
            )


def trace_factory(factory: Any, kind: str = "c2s") -> None:
    """Make every stream the factory builds log its traffic while debug is on."""
    build = factory.buildProtocol

    def buildProtocol(addr: Any) -> Any:  # noqa: N802 (Twisted API)
        stream = build(addr)
        if stream is not None and logs.is_enabled("debug", "xmppd.traffic"):
            peer = f"{getattr(addr, 'host', '?')}:{getattr(addr, 'port', '?')}"
            StreamTracer(stream, peer, kind).attach()
        return stream

    factory.buildProtocol = buildProtocol
