"""Compare an expected stanza (from a script) with a received one.

Rules:

* Names and namespaces must be equal.
* Elements in the stanza's default namespace (``jabber:client``) match
  non-strictly: the expected attributes must be present with equal values,
  each expected child must be matched by a distinct received child (order
  ignored), extra attributes and children are ignored.
* An element that opens another namespace matches strictly: exactly the
  expected attributes (namespace declarations are not attributes) and exactly
  the expected children, in order.  Children in the same namespace inherit
  the strictness of their parent; a child opening yet another namespace is
  strict again (or non-strict if that namespace is ``jabber:client``).
* ``scansion:strict="true|false"`` on an expected element overrides this for
  the element (and its children in the same namespace).
* Text must be equal (after stripping surrounding whitespace) when the
  expected element has text; a strict element with no expected text must
  have no received text.
* An expected stanza without ``id`` ignores the received ``id``.
* Attribute value ``{scansion:any}`` accepts any value; the text
  ``{scansion:any}`` accepts any text.  ``{scansion:capture:NAME}`` accepts
  any value the first time and records it as variable ``NAME``; if ``NAME``
  is already known the received value must be equal to it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from twisted.words.xish import domish

from xmppd.testing.scansion.parser import DEFAULT_NS, SCANSION_NS

ANY = "{scansion:any}"
_CAPTURE = re.compile(r"^\{scansion:capture:(?P<name>[^}]+)\}$")
_STRICT = (SCANSION_NS, "strict")


@dataclass
class MatchResult:
    """The outcome of a comparison.

    ``matched`` tells whether the stanza matched; ``reason`` says why not;
    ``captures`` holds the variables captured by a successful match.
    """

    matched: bool
    reason: str = ""
    captures: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.matched


def match_stanza(
    expected: domish.Element,
    received: domish.Element,
    variables: Mapping[str, str] | None = None,
    default_ns: str = DEFAULT_NS,
) -> MatchResult:
    """Match ``received`` against the ``expected`` stanza.

    ``expected`` must already have its ``${...}`` variables expanded;
    ``variables`` is used to check ``{scansion:capture:x}`` against values
    captured earlier.
    """
    matcher = _Matcher(variables or {}, default_ns)
    reason, captures = matcher.match(expected, received, None, False, {}, top=True)
    if reason is None:
        return MatchResult(True, "", captures)
    return MatchResult(False, reason, {})


def describe(element: domish.Element, default_ns: str = DEFAULT_NS) -> str:
    """Serialise an element for messages, omitting the default namespace."""
    return element.toXml(defaultUri=default_ns)


def _label(element: domish.Element, default_ns: str) -> str:
    """A short name for an element: ``name`` or ``name[namespace]``."""
    if element.uri in (default_ns, None, ""):
        return element.name
    return f"{element.name}[{element.uri}]"


def _text(element: domish.Element) -> str:
    """The element's own text, stripped."""
    return "".join(child for child in element.children if isinstance(child, str)).strip()


class _Matcher:
    """Recursive comparison with capture bookkeeping and backtracking."""

    def __init__(self, variables: Mapping[str, str], default_ns: str) -> None:
        self.variables = variables
        self.default_ns = default_ns

    def is_strict(
        self, expected: domish.Element, parent_uri: str | None, parent_strict: bool
    ) -> bool:
        """Decide whether ``expected`` is matched strictly."""
        flag = expected.attributes.get(_STRICT)
        if flag is not None:
            return flag.strip().lower() not in ("false", "0", "no")
        if parent_uri is not None and expected.uri == parent_uri:
            return parent_strict
        return expected.uri != self.default_ns

    def match(
        self,
        expected: domish.Element,
        received: domish.Element,
        parent_uri: str | None,
        parent_strict: bool,
        captures: dict[str, str],
        *,
        top: bool = False,
        path: str = "",
    ) -> tuple[str | None, dict[str, str]]:
        """Compare one element; return ``(reason or None, captures)``."""
        here = (
            f"{path}/{_label(expected, self.default_ns)}"
            if path
            else _label(expected, self.default_ns)
        )
        if (expected.uri, expected.name) != (received.uri, received.name):
            return (
                f"{here}: expected element <{_label(expected, self.default_ns)}>, "
                f"got <{_label(received, self.default_ns)}>",
                captures,
            )
        strict = self.is_strict(expected, parent_uri, parent_strict)
        captures = dict(captures)
        reason = self.match_attributes(expected, received, strict, captures, top, here)
        if reason:
            return reason, captures
        reason = self.match_text(expected, received, strict, here)
        if reason:
            return reason, captures
        expected_children = list(expected.elements())
        received_children = list(received.elements())
        if strict:
            return self.match_ordered(
                expected_children, received_children, expected.uri, captures, here
            )
        return self.match_unordered(
            expected_children, received_children, expected.uri, captures, here
        )

    def match_attributes(
        self,
        expected: domish.Element,
        received: domish.Element,
        strict: bool,
        captures: dict[str, str],
        top: bool,
        here: str,
    ) -> str | None:
        """Compare attributes, recording captures into ``captures``."""
        wanted = {
            key: value
            for key, value in expected.attributes.items()
            if not (isinstance(key, tuple) and key[0] == SCANSION_NS)
        }
        for key, value in wanted.items():
            name = _attribute_name(key)
            if key not in received.attributes:
                return f"{here}: missing attribute {name}={value!r}"
            actual = received.attributes[key]
            if value == ANY:
                continue
            capture = _CAPTURE.match(value)
            if capture:
                variable = capture.group("name")
                known = captures.get(variable, self.variables.get(variable))
                if known is not None and known != actual:
                    return (
                        f"{here}: attribute {name}: capture {variable!r} changed "
                        f"from {known!r} to {actual!r}"
                    )
                captures[variable] = actual
                continue
            if actual != value:
                return f"{here}: attribute {name}: expected {value!r}, got {actual!r}"
        if strict:
            extra = [
                key
                for key in received.attributes
                if key not in wanted and not (top and key == "id")
            ]
            if extra:
                names = ", ".join(
                    f"{_attribute_name(key)}={received.attributes[key]!r}" for key in extra
                )
                return f"{here}: unexpected attribute(s) {names}"
        return None

    @staticmethod
    def match_text(
        expected: domish.Element, received: domish.Element, strict: bool, here: str
    ) -> str | None:
        """Compare the text content."""
        wanted = _text(expected)
        actual = _text(received)
        if wanted:
            if wanted != ANY and wanted != actual:
                return f"{here}: expected text {wanted!r}, got {actual!r}"
        elif strict and actual:
            return f"{here}: unexpected text {actual!r}"
        return None

    def match_ordered(
        self,
        expected: Sequence[domish.Element],
        received: Sequence[domish.Element],
        parent_uri: str,
        captures: dict[str, str],
        here: str,
    ) -> tuple[str | None, dict[str, str]]:
        """Strict children: same number, same order, each matching."""
        strict_parent = True
        for index, (want, got) in enumerate(zip(expected, received, strict=False)):
            reason, captures = self.match(want, got, parent_uri, strict_parent, captures, path=here)
            if reason:
                return f"{reason} (child {index + 1} of a strict element)", captures
        if len(received) > len(expected):
            extra = received[len(expected)]
            return (
                f"{here}: unexpected child {describe(extra, self.default_ns)} "
                f"(strict: {len(expected)} child element(s) expected, got {len(received)})",
                captures,
            )
        if len(expected) > len(received):
            missing = expected[len(received)]
            return (
                f"{here}: missing child {describe(missing, self.default_ns)} "
                f"(strict: {len(expected)} child element(s) expected, got {len(received)})",
                captures,
            )
        return None, captures

    def match_unordered(
        self,
        expected: Sequence[domish.Element],
        received: Sequence[domish.Element],
        parent_uri: str,
        captures: dict[str, str],
        here: str,
    ) -> tuple[str | None, dict[str, str]]:
        """Non-strict children: each expected child needs its own received child.

        Backtracks, so that an early expected child does not take a received
        child that a later one needed.
        """
        if not expected:
            return None, captures
        first, rest = expected[0], expected[1:]
        closest: str | None = None
        deeper: str | None = None
        for index, candidate in enumerate(received):
            reason, found = self.match(first, candidate, parent_uri, False, captures, path=here)
            if reason is not None:
                if closest is None and (candidate.uri, candidate.name) == (
                    first.uri,
                    first.name,
                ):
                    closest = reason
                continue
            remaining = list(received[:index]) + list(received[index + 1 :])
            reason, found = self.match_unordered(rest, remaining, parent_uri, found, here)
            if reason is None:
                return None, found
            deeper = deeper or reason
        if deeper is not None and closest is None:
            return deeper, captures
        message = f"{here}: no received child matches {describe(first, self.default_ns)}"
        if closest:
            message += f" (closest: {closest})"
        return message, captures


def _attribute_name(key: str | tuple[str, str]) -> str:
    """Printable name of a (possibly namespaced) attribute key."""
    if isinstance(key, tuple):
        uri, name = key
        if uri == "http://www.w3.org/XML/1998/namespace":
            return f"xml:{name}"
        return f"{{{uri}}}{name}"
    return key
