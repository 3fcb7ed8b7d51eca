"""Parse scansion scripts (``*.scs``) into client accounts and steps.

A script has a header and a body separated by a line of dashes::

    # Title of the script

    [Client] Romeo
        jid: user@localhost
        password: password

    -----

    Romeo connects

    Romeo sends:
        <presence/>

    Romeo receives:
        <presence from="${Romeo's full JID}"/>

XML blocks are parsed at parse time (so syntax errors are reported with the
line of the step) inside a wrapper whose default namespace is
``jabber:client`` and which declares the ``scansion`` prefix.  Variables
(``${...}``) are expanded at run time with :func:`expand_variables`.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field

from twisted.words.protocols.jabber.jid import JID, InvalidFormat
from twisted.words.xish import domish

DEFAULT_NS = "jabber:client"
SCANSION_NS = "https://matthewwild.co.uk/projects/scansion"

CONNECT = "connects"
DISCONNECT = "disconnects"
SEND = "sends"
RECEIVE = "receives"
RECEIVE_NOTHING = "receives nothing"

_DASHES = re.compile(r"^-{3,}\s*$")
_CLIENT = re.compile(r"^\[Client\]\s+(?P<name>\S.*?)\s*$")
_HEADER_KEY = re.compile(r"^\s+(?P<key>[A-Za-z_-]+)\s*:\s*(?P<value>.*?)\s*$")
_ACTION = re.compile(
    r"^(?P<action>connects|disconnects|sends|receives)\b(?P<colon>\s*:)?\s*(?P<rest>.*?)\s*$"
)
_VARIABLE = re.compile(r"\$\{(?P<name>[^}]+)\}")


class ScriptError(Exception):
    """A script could not be parsed or a step could not be prepared."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line

    def __str__(self) -> str:
        if self.line is None:
            return self.message
        return f"line {self.line}: {self.message}"


@dataclass
class ClientAccount:
    """One ``[Client]`` of the header: the account a script logs in with.

    ``jid`` is the bare JID (``user@domain``); a resource written in the
    ``jid:`` line or given by ``resource:`` is kept in ``resource``.
    """

    name: str
    jid: str
    password: str
    resource: str | None = None

    @property
    def username(self) -> str:
        """The local part of the JID (the account name)."""
        return JID(self.jid).user or ""

    @property
    def domain(self) -> str:
        """The domain part of the JID."""
        return JID(self.jid).host


@dataclass
class Step:
    """One action of the script body.

    ``action`` is one of :data:`CONNECT`, :data:`DISCONNECT`, :data:`SEND`,
    :data:`RECEIVE`, :data:`RECEIVE_NOTHING`.  ``xml`` is the dedented XML
    block as written and ``elements`` its parsed top-level elements.
    """

    line: int
    client: str
    action: str
    xml: str = ""
    elements: list[domish.Element] = field(default_factory=list)

    def describe(self) -> str:
        """A short human description such as ``Romeo receives``."""
        return f"{self.client} {self.action}"


@dataclass
class Script:
    """A parsed script: its title, client accounts and steps."""

    title: str
    clients: list[ClientAccount]
    steps: list[Step]

    def client(self, name: str) -> ClientAccount:
        """Return the account of the client called ``name``."""
        for account in self.clients:
            if account.name == name:
                return account
        raise KeyError(name)


def parse_script(text: str) -> Script:
    """Parse the text of a scansion script into a :class:`Script`.

    Raises :class:`ScriptError` (with the line number) on malformed input.
    """
    lines = text.splitlines()
    title, clients, body_start = _parse_header(lines)
    steps = _parse_body(lines, body_start, clients)
    return Script(title=title, clients=list(clients.values()), steps=steps)


def _parse_header(lines: list[str]) -> tuple[str, dict[str, ClientAccount], int]:
    """Parse the header; return title, clients by name and the body's index."""
    title = ""
    clients: dict[str, ClientAccount] = {}
    current: dict[str, str] | None = None
    current_line = 0
    raw: list[tuple[int, dict[str, str]]] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        number = index + 1
        stripped = line.strip()
        index += 1
        if not stripped:
            continue
        if _DASHES.match(line):
            break
        if stripped.startswith("#") and not line[0].isspace():
            if not title and not raw:
                title = stripped.lstrip("#").strip()
            continue
        match = _CLIENT.match(line)
        if match:
            current = {"name": match.group("name")}
            current_line = number
            raw.append((current_line, current))
            continue
        key_match = _HEADER_KEY.match(line)
        if key_match and current is not None:
            current[key_match.group("key").lower()] = key_match.group("value")
            continue
        raise ScriptError(f"unexpected line in the script header: {stripped!r}", number)
    else:
        raise ScriptError("the header is not ended by a line of dashes")

    for number, values in raw:
        account = _make_account(values, number)
        if account.name in clients:
            raise ScriptError(f"client {account.name!r} is declared twice", number)
        clients[account.name] = account
    return title, clients, index


def _make_account(values: dict[str, str], line: int) -> ClientAccount:
    """Build a :class:`ClientAccount` from the keys of one ``[Client]``."""
    name = values["name"]
    if "jid" not in values:
        raise ScriptError(f"client {name!r} has no jid", line)
    try:
        jid = JID(values["jid"])
    except InvalidFormat as exc:
        raise ScriptError(f"client {name!r} has an invalid jid: {exc}", line) from None
    if not jid.user:
        raise ScriptError(f"client {name!r}: the jid needs a user part", line)
    resource = values.get("resource") or jid.resource
    return ClientAccount(
        name=name,
        jid=jid.userhost(),
        password=values.get("password", ""),
        resource=resource or None,
    )


def _parse_body(lines: list[str], start: int, clients: Mapping[str, ClientAccount]) -> list[Step]:
    """Parse the action lines and their XML blocks."""
    steps: list[Step] = []
    # Longest names first so that "Romeo Two" wins over "Romeo".
    names = sorted(clients, key=len, reverse=True)
    index = start
    while index < len(lines):
        line = lines[index]
        number = index + 1
        index += 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0].isspace():
            raise ScriptError(f"indented line outside of an XML block: {stripped!r}", number)
        name, rest = _split_client(line, names, number)
        match = _ACTION.match(rest)
        if not match:
            raise ScriptError(f"unknown action: {stripped!r}", number)
        action = match.group("action")
        inline = match.group("rest")
        if action in (CONNECT, DISCONNECT):
            if inline:
                raise ScriptError(f"unexpected text after {action!r}: {inline!r}", number)
            steps.append(Step(line=number, client=name, action=action))
            continue
        if action == RECEIVE and inline.lower() == "nothing":
            steps.append(Step(line=number, client=name, action=RECEIVE_NOTHING))
            continue
        if inline and not inline.startswith("<"):
            raise ScriptError(f"unexpected text after {action!r}: {inline!r}", number)
        block, index = _take_block(lines, index)
        xml = "\n".join(part for part in (inline, block) if part)
        if not xml.strip():
            raise ScriptError(f"{name} {action}: missing XML block", number)
        elements = parse_xml_block(xml, number)
        steps.append(Step(line=number, client=name, action=action, xml=xml, elements=elements))
    return steps


def _split_client(line: str, names: list[str], number: int) -> tuple[str, str]:
    """Split an action line into the client name and the rest."""
    for name in names:
        if line.startswith(name) and line[len(name) : len(name) + 1].isspace():
            return name, line[len(name) :].strip()
    raise ScriptError(f"no declared client starts this line: {line.strip()!r}", number)


def _take_block(lines: list[str], index: int) -> tuple[str, int]:
    """Collect the indented block starting at ``index``; return it dedented."""
    block: list[str] = []
    while index < len(lines):
        line = lines[index]
        if line.strip() and not line[0].isspace():
            break
        block.append(line)
        index += 1
    while block and not block[-1].strip():
        block.pop()
    return textwrap.dedent("\n".join(block)).strip("\n"), index


def parse_xml_block(text: str, line: int | None = None) -> list[domish.Element]:
    """Parse an XML block of a script into domish elements.

    The block is parsed with ``jabber:client`` as default namespace and the
    ``scansion`` prefix declared; whitespace-only text nodes (indentation) are
    dropped.  Raises :class:`ScriptError` on malformed XML.
    """
    elements: list[domish.Element] = []
    stream = domish.elementStream()
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = elements.append
    stream.DocumentEndEvent = lambda: None
    wrapped = (
        f"<scansion-block xmlns='{DEFAULT_NS}' xmlns:scansion='{SCANSION_NS}'>"
        f"{text}</scansion-block>"
    )
    try:
        stream.parse(wrapped.encode("utf-8"))
    except domish.ParserError as exc:
        raise ScriptError(f"invalid XML: {exc}", line) from None
    if not elements:
        raise ScriptError("the XML block holds no element", line)
    for element in elements:
        _strip_whitespace(element)
    return elements


def _strip_whitespace(element: domish.Element) -> None:
    """Remove whitespace-only text children, recursively."""
    kept: list[object] = []
    for child in element.children:
        if isinstance(child, str):
            if child.strip():
                kept.append(child)
        else:
            _strip_whitespace(child)
            kept.append(child)
    element.children = kept


def find_variables(text: str) -> list[str]:
    """Return the names of the ``${...}`` variables used in ``text``."""
    return [match.group("name") for match in _VARIABLE.finditer(text)]


def expand_text(text: str, variables: Mapping[str, str]) -> str:
    """Replace every ``${name}`` in ``text`` by its value.

    Raises :class:`ScriptError` for a variable that is not (yet) defined.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        try:
            return variables[name]
        except KeyError:
            raise ScriptError(f"unknown variable ${{{name}}}") from None

    return _VARIABLE.sub(replace, text)


def expand_variables(
    element: domish.Element,
    variables: Mapping[str, str],
    *,
    strip_scansion: bool = False,
) -> domish.Element:
    """Return a copy of ``element`` with ``${...}`` expanded in attributes and text.

    With ``strip_scansion`` the attributes in the scansion namespace (such as
    ``scansion:strict``) are left out, as they must not go on the wire.
    """
    attributes = {}
    for key, value in element.attributes.items():
        if strip_scansion and isinstance(key, tuple) and key[0] == SCANSION_NS:
            continue
        attributes[key] = expand_text(value, variables)
    prefixes = {
        prefix: uri
        for prefix, uri in (element.localPrefixes or {}).items()
        if not (strip_scansion and uri == SCANSION_NS)
    }
    copy = domish.Element((element.uri, element.name), element.defaultUri, attributes, prefixes)
    for child in element.children:
        if isinstance(child, str):
            copy.addContent(expand_text(child, variables))
        else:
            copy.addChild(expand_variables(child, variables, strip_scansion=strip_scansion))
    return copy
