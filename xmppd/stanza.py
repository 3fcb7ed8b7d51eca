"""Writing stanzas into a stream, whatever stream they were read from.

A stanza parsed from a client stream carries the ``jabber:client``
namespace, one from a component stream ``jabber:component:accept``, one
built by the server often none at all. In every stream the stanza
namespace is the stream's default namespace, so a stanza is written
without declaring its own: it takes the namespace of the stream it goes
into (RFC 6120 4.8.3, XEP-0114).
"""

from twisted.words.xish import domish

STANZA_NAMESPACES = frozenset(
    {None, "", "jabber:client", "jabber:server", "jabber:component:accept"}
)


def serialize(stanza: domish.Element) -> str:
    """The stanza as XML text in whatever default namespace the stream has."""
    if stanza.uri in STANZA_NAMESPACES:
        # A stanza built by the server has no namespace; the children it
        # copied from a client stanza are in jabber:client: both inherit.
        return stanza.toXml(defaultUri=stanza.uri or "jabber:client")
    return stanza.toXml()


XML_NS = "http://www.w3.org/XML/1998/namespace"


def xml_text(element: domish.Element, namespace: str | None = None,
             in_scope: str | None = None) -> str:
    """An element as XML text, its root in ``namespace`` (default: its own).

    ``in_scope`` is the default namespace around it (a stream's): elements
    in it are written without declaring it.

    The same XML as domish's ``toXml`` in three times less time (it runs
    for every archived and every stored message): every namespace is
    written as a default namespace declaration where it changes, never as a
    prefix (an equal document, and what every stanza a client sends looks
    like). Attributes in a namespace other than ``xml:`` get a prefix
    declared on their element. Children that are
    :class:`~twisted.words.xish.domish.SerializedXML` are written as they are.
    """
    out: list[str] = []
    _write(element, namespace if namespace is not None else element.uri, in_scope, out)
    return "".join(out)


#: The streams namespace, written with the ``stream:`` prefix its header declares.
NS_STREAMS = "http://etherx.jabber.org/streams"


def stream_child_text(element: domish.Element, in_scope: str) -> str:
    """A direct child of a stream's root (features, a SASL step, an SM ack) as XML text.

    What Twisted's ``XmlStream.send`` writes for it, with :func:`xml_text`'s
    writer: an element in the streams namespace takes the ``stream:`` prefix
    the stream header declared (``<stream:features>``); elements in
    ``in_scope`` (the stream's default namespace) declare nothing.
    """
    if element.uri != NS_STREAMS:
        return xml_text(element, None, in_scope)
    out: list[str] = []
    _write(element, in_scope, in_scope, out)
    name = element.name
    out[0] = "<stream:" + name
    if out[-1] != "/>":
        out[-1] = "</stream:" + name + ">"
    return "".join(out)


def _write(element: domish.Element, uri: str | None, inherited: str | None,
           out: list[str]) -> None:
    name = element.name
    out.append("<" + name)
    if uri is not None and uri != inherited:
        out.append(" xmlns='" + escape_attribute(uri) + "'")
        inherited = uri
    prefixes = 0
    for key, value in element.attributes.items():
        if key.__class__ is tuple:
            namespace, local = key
            if namespace == XML_NS:
                key = "xml:" + local
            else:
                key = f"a{prefixes}:{local}"
                out.append(f" xmlns:a{prefixes}='" + escape_attribute(namespace) + "'")
                prefixes += 1
        out.append(" " + key + "='" + escape_attribute(value) + "'")
    children = element.children
    if not children:
        out.append("/>")
        return
    out.append(">")
    _write_children(children, inherited, out)
    out.append("</" + name + ">")


def _write_children(children: list, inherited: str | None, out: list[str]) -> None:
    for child in children:
        if child.__class__ is str:
            out.append(_escape(child))
        elif isinstance(child, domish.SerializedXML):
            out.append(child)
        elif isinstance(child, str):
            out.append(_escape(child))
        else:
            _write(child, child.uri, inherited, out)


def release(element: domish.Element) -> None:
    """Drop the ``parent`` links below ``element``: it is no longer a reference cycle.

    domish links every child added with ``addChild``/``addElement`` back to
    its parent, so each tree the server builds (a roster push, stream
    features, an iq result) is a cycle that only the cycle collector can
    free, and a busy server builds tens of thousands a second: the
    collector's passes grew to 100-400 ms in the presence-storm benchmark.
    Nothing in xmppd reads ``parent`` of an element it has written (wokkel's
    pubsub request parsing reads it on incoming requests only), so a
    stream calls this once the element is serialised; what it says is
    unchanged.
    """
    pending = [element]
    while pending:
        for child in pending.pop().children:
            if not isinstance(child, str):
                child.parent = None
                if child.children:
                    pending.append(child)


NS_CLIENT = "jabber:client"


def remember_xml(element: domish.Element, text: str) -> None:
    """Note ``text`` as the element's stored form (``xml_text(element, 'jabber:client')``).

    The message path serialises an archived message for the archive and
    again for the recipient's stream, and the two differ at most in the
    root's namespace declaration: :func:`remembered_xml` hands the text
    out again for as long as the element is unchanged (same children list
    and length, equal attributes), so a stanza is serialised once. The
    caller vouches that ``text`` is what :func:`xml_text` would write.
    """
    element._xmppd_xml = (element.children, len(element.children),
                          dict(element.attributes), text)


def remembered_xml(element: domish.Element, in_scope: str | None = None) -> str | None:
    """The text :func:`remember_xml` noted, if the element is unchanged since; else None.

    ``in_scope`` None gives the stored form (the root declares
    ``jabber:client``); ``'jabber:client'`` the form for a client stream
    (``xml_text(element, None, 'jabber:client')``), for a root in
    ``jabber:client`` or in no namespace. Anything else: None.
    """
    noted = element.__dict__.get("_xmppd_xml")
    if noted is None:
        if in_scope == NS_CLIENT and element.uri in (NS_CLIENT, None):
            return _from_shared_children(element)
        return None
    children, length, attributes, text = noted
    if (children is not element.children or length != len(children)
            or attributes != element.attributes):
        return None
    if in_scope is None:
        return text
    if in_scope != NS_CLIENT or element.uri not in (NS_CLIENT, None):
        return None
    # "<name xmlns='jabber:client'..." -> "<name..."
    cut = len(element.name) + 1
    return text[:cut] + text[cut + len(_CLIENT_DECLARATION):]


_CLIENT_DECLARATION = " xmlns='" + NS_CLIENT + "'"


def share_children_xml(element: domish.Element) -> None:
    """Serialise the children once for every copy of a broadcast (in ``jabber:client``).

    A room sends one stanza to many sessions as shallow copies that differ
    only in their root's attributes (``to``) and share the children
    (:func:`~xmppd.muc.stanzas.shallow_copy`). The children's text is
    written once here; :func:`remembered_xml` then writes a copy for a
    client stream as its root tag plus that text, as long as the copy still
    holds exactly these children (a module that adds or removes one makes
    it serialise in full). The shared children must not change while the
    copies are out, which sharing them already requires. Only for a root in
    ``jabber:client`` or in no namespace (others are left alone).
    """
    if element.uri not in (NS_CLIENT, None):
        return
    out: list[str] = []
    _write_children(element.children, NS_CLIENT, out)
    element._xmppd_children = (list(element.children), "".join(out))


def _from_shared_children(element: domish.Element) -> str | None:
    noted = element.__dict__.get("_xmppd_children")
    if noted is None:
        return None
    shared, text = noted
    if element.children != shared:  # item for item (elements compare by identity)
        return None
    name = element.name
    out = ["<" + name]
    for key, value in element.attributes.items():
        if key.__class__ is tuple:
            return None  # namespaced attributes: the full writer declares them
        out.append(" " + key + "='" + escape_attribute(value) + "'")
    if not shared:
        out.append("/>")
    else:
        out.append(">" + text + "</" + name + ">")
    return "".join(out)


def fast_element(uri: str, name: str, attributes: dict[str, str]) -> domish.Element:
    """``domish.Element((uri, name), None, attributes)`` without its generic set-up."""
    element = _new_element(domish.Element)
    element.localPrefixes = {}
    element.uri = element.defaultUri = uri
    element.name = name
    element.attributes = attributes
    element.children = []
    element.parent = None
    return element


_new_element = domish.Element.__new__


def shallow_copy(element: domish.Element) -> domish.Element:
    """A shallow copy: own attributes and child list, shared children.

    Children written once for every copy (:func:`share_children_xml`) stay
    shared with the copy.
    """
    copy = fast_element(element.uri, element.name, dict(element.attributes))
    if element.defaultUri is not None:  # (domish's rule: None means the element's uri)
        copy.defaultUri = element.defaultUri
    copy.children = list(element.children)
    shared = element.__dict__.get("_xmppd_children")
    if shared is not None:
        copy._xmppd_children = shared
    return copy


def _escape(text: str) -> str:
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


def escape_attribute(text: str) -> str:
    """Text escaped for an attribute value in single or double quotes."""
    text = _escape(text)
    if "'" in text:
        text = text.replace("'", "&apos;")
    if '"' in text:
        text = text.replace('"', "&quot;")
    return text


def describe(stanza: domish.Element) -> str:
    """A one-line summary for logs: kind and addresses, never the content.

    Stanza payloads can hold passwords (MUC joins, registration) and private
    messages, so logs name stanzas with this instead of serialising them.
    """
    parts = [stanza.name or "?"]
    for attribute in ("type", "id", "from", "to"):
        value = stanza.getAttribute(attribute)
        if value is not None:
            parts.append(f"{attribute}={value[:200]!r}")
    payload = next((c for c in stanza.elements() if c.uri not in STANZA_NAMESPACES), None)
    if payload is not None:
        parts.append(f"payload={{{payload.uri}}}{payload.name}")
    return "<" + " ".join(parts) + ">"
