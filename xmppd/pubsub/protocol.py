"""The pubsub wire format: requests in, errors and event payloads out.

:func:`parse_request` turns the ``<pubsub/>`` (or ``<pubsub
xmlns='…#owner'/>``) child of an iq into a :class:`Request`: the verb
(XEP-0060's use case), its element and the node it names. The engine reads
the verb's own attributes and children through the helpers here.

wokkel's ``PubSubRequest`` parses the same verbs, but it puts every JID it
reads (the stanza's addresses, a subscriber, each affiliation) into Twisted's
process-wide JID intern table, which never shrinks: a store any client
could fill. It also strips the namespace of the stanza it parses in place
and knows neither ``publish-options`` nor retract's ``notify`` nor delete's
``redirect``. The verb table below is XEP-0060's.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish
from wokkel import data_form

from xmppd.addresses import parse_jid
from xmppd.errors import StanzaError
from xmppd.pubsub import (
    NS_NODE_CONFIG,
    NS_PUBLISH_OPTIONS,
    NS_PUBSUB,
    NS_PUBSUB_ERRORS,
    NS_PUBSUB_OWNER,
    NS_SUBSCRIBE_OPTIONS,
)
from xmppd.sm.stanzas import child_elements

#: (iq type, namespace, element) -> verb.
VERBS = {
    ("set", NS_PUBSUB, "publish"): "publish",
    ("set", NS_PUBSUB, "subscribe"): "subscribe",
    ("set", NS_PUBSUB, "unsubscribe"): "unsubscribe",
    ("get", NS_PUBSUB, "options"): "options-get",
    ("set", NS_PUBSUB, "options"): "options-set",
    ("get", NS_PUBSUB, "subscriptions"): "subscriptions",
    ("get", NS_PUBSUB, "affiliations"): "affiliations",
    ("set", NS_PUBSUB, "create"): "create",
    ("get", NS_PUBSUB, "items"): "items",
    ("set", NS_PUBSUB, "retract"): "retract",
    ("get", NS_PUBSUB_OWNER, "default"): "default",
    ("get", NS_PUBSUB_OWNER, "configure"): "configure-get",
    ("set", NS_PUBSUB_OWNER, "configure"): "configure-set",
    ("set", NS_PUBSUB_OWNER, "purge"): "purge",
    ("set", NS_PUBSUB_OWNER, "delete"): "delete",
    ("get", NS_PUBSUB_OWNER, "affiliations"): "owner-affiliations-get",
    ("set", NS_PUBSUB_OWNER, "affiliations"): "owner-affiliations-set",
    ("get", NS_PUBSUB_OWNER, "subscriptions"): "owner-subscriptions-get",
    ("set", NS_PUBSUB_OWNER, "subscriptions"): "owner-subscriptions-set",
}

#: Companion elements that may follow a verb in the same ``<pubsub/>``.
COMPANIONS = {
    "publish": ("publish-options",),
    "create": ("configure",),
    "subscribe": ("options",),
}


def pubsub_error(condition: str, pubsub_condition: str | None = None, text: str | None = None,
                 *, feature: str | None = None, type: str | None = None) -> StanzaError:  # noqa: A002
    """A stanza error with a pubsub-specific condition (XEP-0060 §7-8's tables)."""
    app = None
    if pubsub_condition is not None:
        app = domish.Element((NS_PUBSUB_ERRORS, pubsub_condition))
        if feature is not None:
            app["feature"] = feature
    return StanzaError(condition, text, type=type, app_condition=app)


def unsupported(feature: str, text: str | None = None) -> StanzaError:
    """``feature-not-implemented`` + ``unsupported feature='…'``."""
    return pubsub_error("feature-not-implemented", "unsupported", text, feature=feature,
                        type="cancel")


def nodeid_required() -> StanzaError:
    """``bad-request`` + ``nodeid-required``."""
    return pubsub_error("bad-request", "nodeid-required")


@dataclass
class Request:
    """One pubsub request: its verb, the verb's element and what goes with it."""

    verb: str
    element: domish.Element
    #: The companion element (publish-options, configure, options) or None.
    companion: domish.Element | None = None

    @property
    def node(self) -> str | None:
        """The node the verb names (None when absent or empty)."""
        return self.element.getAttribute("node") or None

    def required_node(self) -> str:
        """The node, or ``nodeid-required``."""
        node = self.node
        if node is None:
            raise nodeid_required()
        return node

    def form(self, namespace: str) -> data_form.Form | None:
        """The data form of that FORM_TYPE in the verb or its companion."""
        for place in (self.companion, self.element):
            if place is None:
                continue
            form = data_form.findForm(place, namespace)
            if form is not None:
                return form
        return None

    def config_form(self) -> data_form.Form | None:
        """A ``pubsub#node_config`` submission (create+configure, configure-set)."""
        form = self.form(NS_NODE_CONFIG)
        if form is not None and form.formType not in ("submit", "cancel"):
            raise StanzaError("bad-request", f"unexpected form type {form.formType!r}")
        return form

    def publish_options(self) -> data_form.Form | None:
        """The ``publish-options`` form, if any (XEP-0060 §7.1.5)."""
        if self.companion is None:
            return None
        form = data_form.findForm(self.companion, NS_PUBLISH_OPTIONS)
        if form is None and child_elements(self.companion):
            raise pubsub_error("bad-request", "invalid-options", "publish-options need a "
                               "form of type " + NS_PUBLISH_OPTIONS)
        return form

    def subscribe_options(self) -> data_form.Form | None:
        """A ``pubsub#subscribe_options`` form, if any."""
        return self.form(NS_SUBSCRIBE_OPTIONS)

    def jid(self, required: bool = True) -> jid.JID | None:
        """The verb's 'jid' attribute (subscribe, unsubscribe, options)."""
        value = self.element.getAttribute("jid")
        if value is None:
            if required:
                raise pubsub_error("bad-request", "jid-required")
            return None
        address = parse_jid(value)
        if address is None:
            raise pubsub_error("bad-request", "invalid-jid")
        return address

    def items(self) -> list[domish.Element]:
        """The verb's ``<item/>`` children."""
        return [child for child in child_elements(self.element)
                if child.name == "item" and child.uri in (NS_PUBSUB, NS_PUBSUB_OWNER)]

    def item_ids(self) -> list[str]:
        """The ids of the verb's items (an item without id: ``item-required``, §7.2.3.4)."""
        ids = []
        for item in self.items():
            item_id = item.getAttribute("id")
            if not item_id:
                raise pubsub_error("bad-request", "item-required", "an item needs an id")
            ids.append(item_id)
        return ids

    def max_items(self) -> int | None:
        """The items request's ``max_items`` (a positive number) or None."""
        value = self.element.getAttribute("max_items")
        if value is None:
            return None
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number < 1:
            raise StanzaError("bad-request", "max_items must be a positive number")
        return number

    def flag(self, name: str) -> bool | None:
        """A boolean attribute ('true'/'1', 'false'/'0') or None when absent."""
        value = self.element.getAttribute(name)
        if value is None:
            return None
        return value in ("true", "1")


def parse_request(kind: str, pubsub: domish.Element) -> Request:
    """The request in a ``<pubsub/>`` element of an iq of that type.

    Exactly one verb is allowed (with its companion element); anything else
    is ``bad-request``; a verb xmppd does not know is ``feature-not-implemented``.
    """
    verb = None
    companion = None
    found_verbs = [(VERBS[(kind, child.uri, child.name)], child)
                   for child in child_elements(pubsub) if (kind, child.uri, child.name) in VERBS]
    if len(found_verbs) == 2:
        # subscribe + options (§6.3.7): <options/> is also a verb of its own.
        names = {name for name, _ in found_verbs}
        if names == {"subscribe", "options-set"}:
            found_verbs = [pair for pair in found_verbs if pair[0] == "subscribe"]
    if len(found_verbs) > 1:
        raise StanzaError("bad-request", "one pubsub verb per request")
    if found_verbs:
        verb, element = found_verbs[0]
    if verb is None:
        raise pubsub_error("feature-not-implemented", "unsupported", type="cancel",
                           text="no pubsub request this service knows")
    allowed = COMPANIONS.get(verb, ())
    for child in child_elements(pubsub):
        if child is element:
            continue
        if child.uri == pubsub.uri and child.name in allowed and companion is None:
            companion = child
        else:
            raise StanzaError("bad-request", f"unexpected <{child.name}/> with <{element.name}/>")
    return Request(verb, element, companion)


def subscription_element(uri: str, node: str | None, subscriber: str, state: str,
                         subid: str | None = None) -> domish.Element:
    """``<subscription node jid subscription [subid]/>`` in a namespace."""
    element = domish.Element((uri, "subscription"))
    if node is not None:
        element["node"] = node
    element["jid"] = subscriber
    element["subscription"] = state
    if subid is not None:
        element["subid"] = subid
    return element
