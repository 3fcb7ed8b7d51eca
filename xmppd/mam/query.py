"""The XEP-0313 protocol: parsing requests and building answers, whatever the archive.

* :func:`parse_query` reads an archive query (``<query xmlns='urn:xmpp:mam:2'/>``
  in an iq set): its data form (``FORM_TYPE`` ``urn:xmpp:mam:2``; ``with``,
  ``start``, ``end``, ``before-id``, ``after-id``, ``ids``), its RSM
  ``<set/>`` (XEP-0059: ``max``, ``after``, ``before``, ``index``) and
  ``<flip-page/>``. Bad input raises :class:`~xmppd.errors.StanzaError`:
  a wrong ``FORM_TYPE``, a malformed date, a field given twice or a
  single-value field with several values, a bad RSM value, or ``index``
  together with ``after``/``before``: ``bad-request``; a malformed ``with``:
  ``jid-malformed``; a field this server does not know (``include-groupchat``
  among them): ``feature-not-implemented`` (XEP-0313 §4.1.5). ``max`` above the maximum page size is
  lowered to it (as Prosody does with ``max_archive_query_results``).
* :func:`run_query` runs it against an :class:`~xmppd.mam.store.ArchiveStore`:
  an id in ``after-id``, ``before-id``, ``ids`` or RSM ``after``/``before``
  that is not in the archive fails with ``item-not-found``.
* :func:`result_messages` and :func:`fin_element` build the answer
  (XEP-0313 §4.2-4.3): one ``<message/>`` per item, each with
  ``<result queryid id><forwarded><delay stamp/>original</forwarded></result>``,
  then the iq result's ``<fin/>`` with ``complete='true'`` when the page
  reaches the end of the result set in the paging direction and the RSM
  ``<set/>`` (``first`` with its ``index``, ``last``, ``count``). The page
  is sent oldest first; ``<flip-page/>`` reverses that order, not which
  items are on the page nor ``first``/``last``.
* :func:`query_form` is the answer to an iq get of ``<query/>`` (the fields
  supported), :func:`metadata_element` to ``<metadata/>`` (XEP-0313 §6),
  :class:`Preferences` parses and renders ``<prefs/>`` (XEP-0313 §7) and
  decides whether a message to or from a JID is archived.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from twisted.internet import defer
from twisted.words.xish import domish

from xmppd.addresses import parse_jid
from xmppd.datetimes import format_stamp, parse_stamp
from xmppd.errors import StanzaError
from xmppd.mam.store import ArchiveBounds, ArchivePage, ArchiveStore, UnknownArchiveId
from xmppd.sm.stanzas import NS_CLIENT, child_elements, deserialise

NS_MAM = "urn:xmpp:mam:2"
NS_MAM_EXTENDED = "urn:xmpp:mam:2#extended"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DELAY = "urn:xmpp:delay"
NS_DATA = "jabber:x:data"
NS_XDATA_VALIDATE = "http://jabber.org/protocol/xdata-validate"

#: Page size when the query gives no RSM ``max``, and the largest allowed
#: (Prosody's defaults: 20, and ``max_archive_query_results`` 50).
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 50
#: RSM ``<index/>`` values above this are taken as this (an empty page either way).
MAX_INDEX = 2**62
#: At most this many ids in the ``ids`` field (XEP-0313 #extended).
MAX_IDS = 250
#: At most this many JIDs in the ``always`` and ``never`` lists together.
MAX_PREFS_JIDS = 1000

#: The fields the query form accepts, besides FORM_TYPE.
SINGLE_FIELDS = ("with", "start", "end", "before-id", "after-id")
MULTI_FIELDS = ("ids",)

#: XEP-0082 DateTime: date, time, optional fraction, mandatory zone.
@dataclass
class ArchiveQuery:
    """A parsed archive query: the result set's filters and the page wanted."""

    queryid: str | None = None
    with_: str | None = None
    start: float | None = None
    end: float | None = None
    after_id: str | None = None
    before_id: str | None = None
    ids: list[str] | None = None
    max: int = DEFAULT_PAGE_SIZE
    after: str | None = None
    #: None: no ``<before/>``; "": an empty one (the last page); else an id.
    before: str | None = None
    index: int | None = None
    flip: bool = False

    @property
    def reverse(self) -> bool:
        """Whether the page is taken from the end (RSM ``<before/>``)."""
        return self.before is not None


def _text(element: domish.Element) -> str:
    return "".join(str(c) for c in element.children if isinstance(c, str))


def _values(field_element: domish.Element) -> list[str]:
    return [_text(v) for v in child_elements(field_element)
            if v.name == "value" and v.uri == NS_DATA]


def _form_values(form: domish.Element) -> dict[str, list[str]]:
    """The submitted fields of the query form; raises bad-request for bad forms."""
    if form.getAttribute("type", "submit") != "submit":
        raise StanzaError("bad-request", "the query form must be of type 'submit'")
    fields: dict[str, list[str]] = {}
    for element in child_elements(form):
        if element.name != "field" or element.uri != NS_DATA:
            continue
        var = element.getAttribute("var")
        if not var:
            raise StanzaError("bad-request", "a form field without 'var'")
        if var in fields:
            raise StanzaError("bad-request", f"field {var!r} given twice")
        fields[var] = _values(element)
    form_type = fields.pop("FORM_TYPE", None)
    if form_type != [NS_MAM]:
        raise StanzaError("bad-request", f"the form's FORM_TYPE must be {NS_MAM!r}")
    for var, values in fields.items():
        if var in SINGLE_FIELDS:
            if len(values) > 1:
                raise StanzaError("bad-request", f"field {var!r} takes one value")
        elif var not in MULTI_FIELDS:  # XEP-0313 §4.1.5
            raise StanzaError("feature-not-implemented", f"unknown field {var!r}")
    return fields


def _single(fields: dict[str, list[str]], var: str) -> str | None:
    values = fields.get(var)
    return values[0].strip() if values else None


def _stamp_field(fields: dict[str, list[str]], var: str) -> float | None:
    text = _single(fields, var)
    if text is None:
        return None
    stamp = parse_stamp(text)
    if stamp is None:
        raise StanzaError("bad-request", f"field {var!r} is not an XEP-0082 DateTime")
    return stamp


def _id_field(fields: dict[str, list[str]], var: str) -> str | None:
    text = _single(fields, var)
    if text == "":
        raise StanzaError("bad-request", f"field {var!r} is empty")
    return text


def _rsm_int(element: domish.Element) -> int:
    text = _text(element).strip()
    if not text.isascii() or not text.isdigit():
        raise StanzaError("bad-request", f"RSM <{element.name}/> must be a non-negative integer")
    return int(text)


def parse_query(query: domish.Element, *, default_max: int = DEFAULT_PAGE_SIZE,
                max_max: int = MAX_PAGE_SIZE, max_ids: int = MAX_IDS) -> ArchiveQuery:
    """Parse a ``<query xmlns='urn:xmpp:mam:2'/>`` set; raises StanzaError for bad input."""
    parsed = ArchiveQuery(queryid=query.getAttribute("queryid"), max=min(default_max, max_max))
    forms = [c for c in child_elements(query) if c.name == "x" and c.uri == NS_DATA]
    if len(forms) > 1:
        raise StanzaError("bad-request", "more than one data form")
    if forms:
        fields = _form_values(forms[0])
        with_ = _single(fields, "with")
        if with_ is not None:
            address = parse_jid(with_)
            if address is None:
                raise StanzaError("jid-malformed", "the 'with' field is not a valid JID")
            parsed.with_ = address.full()
        parsed.start = _stamp_field(fields, "start")
        parsed.end = _stamp_field(fields, "end")
        parsed.after_id = _id_field(fields, "after-id")
        parsed.before_id = _id_field(fields, "before-id")
        if fields.get("ids"):
            ids = [value.strip() for value in fields["ids"]]
            if not all(ids):
                raise StanzaError("bad-request", "the 'ids' field needs non-empty values")
            if len(ids) > max_ids:
                raise StanzaError("bad-request", f"at most {max_ids} ids per query")
            parsed.ids = ids
    rsm = [c for c in child_elements(query) if c.name == "set" and c.uri == NS_RSM]
    if len(rsm) > 1:
        raise StanzaError("bad-request", "more than one RSM <set/>")
    if rsm:
        _parse_rsm(rsm[0], parsed, max_max)
    parsed.flip = any(c.name == "flip-page" and c.uri == NS_MAM for c in child_elements(query))
    return parsed


def _parse_rsm(rsm: domish.Element, parsed: ArchiveQuery, max_max: int) -> None:
    seen: set[str] = set()
    for element in child_elements(rsm):
        if element.uri != NS_RSM or element.name not in ("max", "after", "before", "index"):
            continue
        if element.name in seen:
            raise StanzaError("bad-request", f"RSM <{element.name}/> given twice")
        seen.add(element.name)
        if element.name == "max":
            parsed.max = min(_rsm_int(element), max_max)
        elif element.name == "index":
            # Past the end is an empty page (XEP-0059 §2.6); keep it in SQLite's range.
            parsed.index = min(_rsm_int(element), MAX_INDEX)
        elif element.name == "after":
            parsed.after = _text(element).strip()
            if not parsed.after:
                raise StanzaError("bad-request", "RSM <after/> needs an id")
        else:
            parsed.before = _text(element).strip()
    if parsed.index is not None and (parsed.after is not None or parsed.before is not None):
        raise StanzaError("bad-request", "RSM <index/> cannot be combined with <after/>/<before/>")


def run_query(store: ArchiveStore, owner: str, query: ArchiveQuery) -> defer.Deferred:
    """Run a parsed query on an archive; fires with an ArchivePage.

    Fails with StanzaError ``item-not-found`` when an id it names is not
    in the archive (XEP-0313 §4.1.3-4.1.4).
    """
    d = store.query(owner, with_=query.with_, start=query.start, end=query.end,
                    after_id=query.after_id, before_id=query.before_id, ids=query.ids,
                    after=query.after, before=query.before or None, index=query.index,
                    limit=query.max, reverse=query.reverse)

    def unknown(failure):
        failure.trap(UnknownArchiveId)
        raise StanzaError("item-not-found", "no message with that id in the archive")

    return d.addErrback(unknown)


def result_messages(page: ArchivePage, query: ArchiveQuery, to: str,
                    sender: str | None = None) -> list[domish.Element]:
    """The ``<message/>`` per item that answers a query, in sending order.

    ``to`` is the requester's full JID; ``sender`` the archive's JID for a
    room archive (None for a personal one: the account's own server speaks).
    A stored stanza that no longer parses is skipped.
    """
    messages = []
    for item in page.items:
        original = deserialise(item.stanza)
        if original is None:
            continue
        original.defaultUri = original.uri = NS_CLIENT
        message = domish.Element((NS_CLIENT, "message"))
        message["to"] = to
        if sender:
            message["from"] = sender
        result = message.addElement((NS_MAM, "result"))
        if query.queryid is not None:
            result["queryid"] = query.queryid
        result["id"] = item.id
        forwarded = result.addElement((NS_FORWARD, "forwarded"))
        forwarded.addElement((NS_DELAY, "delay"))["stamp"] = format_stamp(item.stamp)
        forwarded.addChild(original)
        messages.append(message)
    if query.flip:
        messages.reverse()
    return messages


def fin_element(page: ArchivePage, with_index: bool = True) -> domish.Element:
    """The iq result's ``<fin/>`` for a page (XEP-0313 §4.3, XEP-0059 §2).

    ``with_index=False`` leaves out the first item's (optional) ``index``.
    """
    fin = domish.Element((NS_MAM, "fin"))
    if page.complete:
        fin["complete"] = "true"
    rsm = fin.addElement((NS_RSM, "set"))
    if page.items:
        first = rsm.addElement("first", content=page.first)
        if page.index is not None and with_index:
            first["index"] = str(page.index)
        rsm.addElement("last", content=page.last)
    rsm.addElement("count", content=str(page.count))
    return fin


def query_form(extended: bool = True) -> domish.Element:
    """The ``<query/>`` answering an iq get: the form with the supported fields (§4.1.5)."""
    query = domish.Element((NS_MAM, "query"))
    form = query.addElement((NS_DATA, "x"))
    form["type"] = "form"
    hidden = form.addElement("field")
    hidden["type"] = "hidden"
    hidden["var"] = "FORM_TYPE"
    hidden.addElement("value", content=NS_MAM)
    kinds = [("with", "jid-single"), ("start", "text-single"), ("end", "text-single")]
    if extended:
        kinds += [("before-id", "text-single"), ("after-id", "text-single"),
                  ("ids", "list-multi")]
    for var, kind in kinds:
        element = form.addElement("field")
        element["type"] = kind
        element["var"] = var
        if var in ("start", "end"):
            element.addElement((NS_XDATA_VALIDATE, "validate"))["datatype"] = "xs:dateTime"
        elif var == "ids":
            validate = element.addElement((NS_XDATA_VALIDATE, "validate"))
            validate["datatype"] = "xs:string"
            validate.addElement("open")
    return query


def metadata_element(bounds: ArchiveBounds) -> domish.Element:
    """``<metadata/>``: the archive's first and last message (empty for an empty archive)."""
    metadata = domish.Element((NS_MAM, "metadata"))
    if bounds.first_id is not None:
        for name, archive_id, stamp in (("start", bounds.first_id, bounds.first_stamp),
                                        ("end", bounds.last_id, bounds.last_stamp)):
            element = metadata.addElement(name)
            element["id"] = archive_id
            element["timestamp"] = format_stamp(stamp)
    return metadata


DEFAULTS = ("always", "never", "roster")


@dataclass
class Preferences:
    """Archiving preferences (XEP-0313 §7): a default and JIDs always or never archived."""

    default: str = "always"
    always: set[str] = field(default_factory=set)
    never: set[str] = field(default_factory=set)

    @classmethod
    def from_element(cls, prefs: domish.Element, current: Preferences | None = None,
                     max_jids: int = MAX_PREFS_JIDS) -> Preferences:
        """Parse a ``<prefs/>`` set; a missing ``default`` keeps ``current``'s.

        Raises StanzaError: ``bad-request`` for an unknown default, a JID in
        both lists, or more than ``max_jids`` JIDs (``not-acceptable``);
        ``jid-malformed`` for a bad JID.
        """
        default = prefs.getAttribute("default")
        if default is None:
            default = current.default if current is not None else "always"
        elif default not in DEFAULTS:
            raise StanzaError("bad-request", "default must be always, never or roster")
        lists: dict[str, set[str]] = {"always": set(), "never": set()}
        for element in child_elements(prefs):
            if element.uri != NS_MAM or element.name not in lists:
                continue
            for item in child_elements(element):
                if item.name != "jid" or item.uri != NS_MAM:
                    continue
                address = parse_jid(_text(item).strip())
                if address is None:
                    raise StanzaError("jid-malformed", "a preference JID is not valid")
                lists[element.name].add(address.full())
        if lists["always"] & lists["never"]:
            raise StanzaError("bad-request", "a JID cannot be in both always and never")
        if len(lists["always"]) + len(lists["never"]) > max_jids:
            raise StanzaError("not-acceptable", f"at most {max_jids} JIDs in the preferences")
        return cls(default, lists["always"], lists["never"])

    def to_element(self) -> domish.Element:
        """The ``<prefs/>`` element (both lists always present, JIDs sorted)."""
        prefs = domish.Element((NS_MAM, "prefs"))
        prefs["default"] = self.default
        for name, jids in (("always", self.always), ("never", self.never)):
            holder = prefs.addElement(name)
            for address in sorted(jids):
                holder.addElement("jid", content=address)
        return prefs

    def rule_for(self, other: str) -> bool | None:
        """True/False when ``always``/``never`` lists ``other`` (full JID first), else None."""
        bare = other.split("/", 1)[0]
        for candidate in _specific_first(other, bare):
            if candidate in self.never:
                return False
            if candidate in self.always:
                return True
        return None

    def archives(self, other: str, in_roster: bool = False) -> bool:
        """Whether a message with ``other`` (a full or bare JID) is archived.

        A listed full JID wins over its bare JID; ``never`` over ``always``
        for the same JID; otherwise the default (``roster``: if the contact
        is in the user's roster).
        """
        rule = self.rule_for(other)
        if rule is not None:
            return rule
        if self.default == "roster":
            return in_roster
        return self.default == "always"


def _specific_first(other: str, bare: str) -> Iterable[str]:
    return (other, bare) if other != bare else (bare,)

