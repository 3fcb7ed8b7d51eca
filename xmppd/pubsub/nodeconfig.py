"""A node's configuration: its options, its form, and publish-options.

:class:`NodeConfig` holds the options xmppd supports (XEP-0060 §16.4.4's
``pubsub#node_config`` fields of the same names). The configuration form
(§8.2) is built from it and read back into it with the same table, and
``publish-options`` (§7.1.5) are compared with it through that table too:

* a submitted form or publish-options field with a value outside what the
  field allows is refused: ``not-acceptable`` for a configuration form
  (§8.2.5.3), ``conflict`` + ``precondition-not-met`` for a publish
  precondition (§7.1.5: it cannot be met);
* fields xmppd does not know are ignored in a configuration form (clients
  submit whole forms, including fields of other servers) but are unmet
  preconditions in publish-options;
* ``pubsub#max_items`` accepts a number or ``max`` (XEP-0060 1.20: the
  service's maximum, ``[pubsub] max_items``); ``max`` is kept as such, so a
  node configured with it follows the server's limit.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.words.xish import domish
from wokkel import data_form

from xmppd.errors import StanzaError
from xmppd.pubsub import NS_META_DATA, NS_NODE_CONFIG, NS_PUBSUB_ERRORS

ACCESS_MODELS = ("open", "presence", "roster", "whitelist")
PUBLISH_MODELS = ("publishers", "subscribers", "open")
SEND_LAST = ("never", "on_sub", "on_sub_and_presence")
NOTIFICATION_TYPES = ("headline", "normal")
ITEM_REPLY = ("owner", "publisher")


@dataclass(frozen=True)
class NodeConfig:
    """The options of one node (``max_items`` None means ``max``)."""

    title: str = ""
    description: str = ""
    access_model: str = "open"
    roster_groups_allowed: tuple[str, ...] = ()
    publish_model: str = "publishers"
    max_items: int | None = 20
    persist_items: bool = True
    deliver_payloads: bool = True
    deliver_notifications: bool = True
    notify_config: bool = False
    notify_delete: bool = True
    notify_retract: bool = True
    send_last_published_item: str = "never"
    notification_type: str = "headline"
    itemreply: str = "owner"

    def item_limit(self, maximum: int) -> int:
        """How many items the node keeps, within the server's maximum."""
        return maximum if self.max_items is None else min(self.max_items, maximum)

    def to_json(self) -> str:
        """The configuration as stored."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, default: NodeConfig) -> NodeConfig:
        """A stored configuration; unknown or unusable keys fall back to ``default``."""
        try:
            stored = json.loads(text)
        except ValueError:
            return default
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in stored.items() if k in known} if isinstance(stored, dict) else {}
        if "roster_groups_allowed" in values:
            values["roster_groups_allowed"] = tuple(values["roster_groups_allowed"])
        try:
            return dataclasses.replace(default, **values)
        except TypeError:
            return default


# -- the fields: var -> (attribute, form type, label, parse, render, options) -------------


def _bool(value: str) -> bool:
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise ValueError(value)


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in options:
            raise ValueError(value)
        return value

    return parse


def _max_items(value: str) -> int | None:
    if value == "max":
        return None
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


def _text(value: str) -> str:
    if len(value) > 1024:
        raise ValueError("too long")
    return value


@dataclass(frozen=True)
class _Field:
    attribute: str
    kind: str
    label: str
    parse: Callable[[str], Any]
    options: tuple[str, ...] = ()
    multi: bool = False

    @property
    def var(self) -> str:
        return "pubsub#" + self.attribute


FIELDS = (
    _Field("title", "text-single", "A friendly name for the node", _text),
    _Field("description", "text-single", "A description of the node", _text),
    _Field("access_model", "list-single", "Who may subscribe and retrieve items",
           _choice(ACCESS_MODELS), ACCESS_MODELS),
    _Field("roster_groups_allowed", "list-multi",
           "Roster groups allowed to subscribe (access model 'roster')", _text, multi=True),
    _Field("publish_model", "list-single", "Who may publish items",
           _choice(PUBLISH_MODELS), PUBLISH_MODELS),
    _Field("max_items", "text-single", "Maximum number of items kept ('max' for the "
           "server's maximum)", _max_items),
    _Field("persist_items", "boolean", "Keep items in storage", _bool),
    _Field("deliver_payloads", "boolean", "Deliver payloads with event notifications", _bool),
    _Field("deliver_notifications", "boolean", "Deliver event notifications", _bool),
    _Field("notify_config", "boolean", "Notify subscribers when the configuration changes",
           _bool),
    _Field("notify_delete", "boolean", "Notify subscribers when the node is deleted", _bool),
    _Field("notify_retract", "boolean", "Notify subscribers when items are removed", _bool),
    _Field("send_last_published_item", "list-single", "When to send the last published item",
           _choice(SEND_LAST), SEND_LAST),
    _Field("notification_type", "list-single", "The message type of event notifications",
           _choice(NOTIFICATION_TYPES), NOTIFICATION_TYPES),
    _Field("itemreply", "list-single", "Whom replies to items go to (and whether items show "
           "their publisher)", _choice(ITEM_REPLY), ITEM_REPLY),
)
_BY_VAR = {field.var: field for field in FIELDS}


def _render(field: _Field, config: NodeConfig) -> list[str]:
    value = getattr(config, field.attribute)
    if field.multi:
        return list(value)
    if isinstance(value, bool):
        return ["1" if value else "0"]
    if value is None:
        return ["max"]
    return [str(value)]


def config_form(config: NodeConfig, form_type: str = "form") -> data_form.Form:
    """The ``pubsub#node_config`` form showing a configuration."""
    form = data_form.Form(form_type, formNamespace=NS_NODE_CONFIG)
    for field in FIELDS:
        values = _render(field, config)
        options = [data_form.Option(option) for option in field.options]
        if field.multi:
            form.addField(data_form.Field(field.kind, var=field.var, label=field.label,
                                          values=values))
        else:
            form.addField(data_form.Field(field.kind, var=field.var, label=field.label,
                                          value=values[0] if values else None,
                                          options=options or None))
    return form


def meta_data_form(config: NodeConfig, owners: list[str]) -> data_form.Form:
    """The node's ``pubsub#meta-data`` form for disco#info (XEP-0060 §5.4)."""
    form = data_form.Form("result", formNamespace=NS_META_DATA)
    form.addField(data_form.Field("text-single", var="pubsub#type", value=""))
    form.addField(data_form.Field("jid-multi", var="pubsub#owner", values=owners))
    form.addField(data_form.Field("text-single", var="pubsub#title", value=config.title))
    form.addField(data_form.Field("text-single", var="pubsub#description",
                                  value=config.description))
    form.addField(data_form.Field("list-single", var="pubsub#access_model",
                                  value=config.access_model))
    form.addField(data_form.Field("list-single", var="pubsub#publish_model",
                                  value=config.publish_model))
    return form


def _submitted(form: data_form.Form) -> dict[str, list[str]]:
    """The submitted fields' values (without FORM_TYPE).

    A single-valued field submitted without a value is left out: it changes
    nothing and asks for nothing (as Prosody reads such forms); a multi-valued
    field without values means "none".
    """
    values = {}
    for var, field in form.fields.items():
        if var == "FORM_TYPE":
            continue
        known = _BY_VAR.get(var)
        if not field.values and (known is None or not known.multi):
            continue
        values[var] = [str(value) for value in field.values]
    return values


def _parse(field: _Field, values: list[str]) -> Any:
    if field.multi:
        return tuple(field.parse(value) for value in values)
    if len(values) != 1:
        raise ValueError("one value expected")
    return field.parse(values[0])


def apply_form(config: NodeConfig, form: data_form.Form) -> NodeConfig:
    """A submitted configuration form applied to a configuration.

    Unknown fields are ignored; a field with a value it does not allow is
    refused with ``not-acceptable`` (XEP-0060 §8.2.5.3). Nodes are leaves:
    asking for a collection gets ``feature-not-implemented`` + ``unsupported
    feature='collections'`` (XEP-0248 is not supported).
    """
    changes = {}
    for var, values in _submitted(form).items():
        if var == "pubsub#node_type" and values not in ([], [""], ["leaf"]):
            app = domish.Element((NS_PUBSUB_ERRORS, "unsupported"))
            app["feature"] = "collections"
            raise StanzaError("feature-not-implemented", "only leaf nodes", type="cancel",
                              app_condition=app)
        field = _BY_VAR.get(var)
        if field is None:
            continue
        try:
            changes[field.attribute] = _parse(field, values)
        except ValueError:
            raise StanzaError("not-acceptable", f"unsupported value for {var}") from None
    return dataclasses.replace(config, **changes)


def precondition_error(var: str) -> StanzaError:
    """``conflict`` + ``precondition-not-met`` (XEP-0060 §7.1.5)."""
    return StanzaError(
        "conflict", f"the node's {var} does not match the publish options", type="cancel",
        app_condition=domish.Element((NS_PUBSUB_ERRORS, "precondition-not-met")))


def read_preconditions(form: data_form.Form) -> dict[str, Any]:
    """publish-options as (attribute -> wanted value); unknown or invalid: unmet."""
    wanted = {}
    for var, values in _submitted(form).items():
        field = _BY_VAR.get(var)
        if field is None:
            raise precondition_error(var)
        try:
            wanted[field.attribute] = _parse(field, values)
        except ValueError:
            raise precondition_error(var) from None
    return wanted


def check_preconditions(config: NodeConfig, wanted: dict[str, Any], maximum: int) -> None:
    """Raise ``precondition-not-met`` unless the node matches every wanted option."""
    for attribute, value in wanted.items():
        have = getattr(config, attribute)
        if attribute == "max_items":
            if config.item_limit(maximum) == (maximum if value is None else value):
                continue
        elif attribute == "roster_groups_allowed":
            if set(have) == set(value):
                continue
        elif have == value:
            continue
        raise precondition_error("pubsub#" + attribute)


def with_preconditions(config: NodeConfig, wanted: dict[str, Any]) -> NodeConfig:
    """A new node's configuration: the defaults with the wanted options applied."""
    return dataclasses.replace(config, **wanted)
