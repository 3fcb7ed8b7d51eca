"""Room configuration and the muc#roomconfig data form (XEP-0045 10.2, 16.5.3).

:class:`RoomConfig` is a room's settings (what is stored). Every
``muc#roomconfig_*`` field is defined once, as a :class:`ConfigField`: its
name, type, label and options, the RoomConfig attribute it shows and sets,
and the coercion of a submitted value. The same list of fields builds the
form (:func:`config_form`) and reads a submitted one
(:func:`parse_config_form`). The core's fields are :data:`CORE_FIELDS`;
feature modules add theirs at ``Point.ROOM_CONFIG_FORM``; ``order`` puts
them in the form's place, the positions being:

====  ======================  ====  ==========================
  10  roomname                 100  whois
  20  roomdesc                 110  maxusers
  30  lang                     120  changesubject
  40  persistentroom           130  allowinvites (invitations)
  50  publicroom               140  allowpm
  60  membersonly (members)    150  presencebroadcast
  70  moderatedroom (mod.)     160  historylength (history)
  80  passwordprotectedroom    170  enablelogging (archive)
  90  roomsecret (password)    171  enablearchiving (archive; an alias read on
                                     submit, not shown)
====  ======================  ====  ==========================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.words.xish import domish
from wokkel import data_form

from xmppd.errors import StanzaError

NS_ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig"
PREFIX = "muc#roomconfig_"

WHOIS_OPTIONS = {"moderators": "Moderators only", "anyone": "Anyone"}
ALLOWPM_OPTIONS = {
    "anyone": "Everyone",
    "participants": "Participants and moderators",
    "moderators": "Moderators only",
    "none": "Nobody",
}
BROADCAST_OPTIONS = {"moderator": "Moderator", "participant": "Participant", "visitor": "Visitor"}
MAXUSERS_OPTIONS = ("10", "20", "30", "50", "100", "none")
DEFAULT_HISTORY_LENGTH = 20
MAX_HISTORY_LENGTH = 100


@dataclass
class RoomConfig:
    """The settings of one room (defaults as Prosody's: public, open, semi-anonymous)."""

    name: str = ""
    description: str = ""
    language: str = ""
    persistent: bool = False
    public: bool = True
    members_only: bool = False
    moderated: bool = False
    password: str = ""
    whois: str = "moderators"
    max_users: int | None = None
    change_subject: bool = False
    allow_invites: bool = False
    allow_pm: str = "anyone"
    presence_broadcast: tuple[str, ...] = ("moderator", "participant", "visitor")
    history_length: int = DEFAULT_HISTORY_LENGTH
    logging: bool = False

    @property
    def password_protected(self) -> bool:
        """True when joining needs the room secret."""
        return bool(self.password)

    @property
    def non_anonymous(self) -> bool:
        """True when every occupant sees the others' real JIDs."""
        return self.whois == "anyone"

    def replace(self, **changes: Any) -> RoomConfig:
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (for storage)."""
        data = dataclasses.asdict(self)
        data["presence_broadcast"] = list(self.presence_broadcast)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoomConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "presence_broadcast" in values:
            values["presence_broadcast"] = tuple(values["presence_broadcast"])
        return cls(**values)


# -- coercions: (var, submitted values) -> value; StanzaError not-acceptable ----------


def read_text(var: str, values: list[str]) -> str:
    """A text field's value, stripped ('' when absent)."""
    return values[0].strip() if values else ""


def read_boolean(var: str, values: list[str]) -> bool:
    """A boolean field: 1/true or 0/false (XEP-0004), anything else not-acceptable."""
    value = (values[0] if values else "").strip().lower()
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise StanzaError("not-acceptable", f"{var} must be a boolean")


def read_secret(var: str, values: list[str]) -> str:
    """A password as typed (not stripped)."""
    return values[0] if values else ""


def read_int(var: str, value: str, low: int, high: int | None) -> int:
    """A number within [low, high] (high None: no upper bound)."""
    try:
        number = int(value)
    except ValueError:
        raise StanzaError("not-acceptable", f"{var} must be a number") from None
    if number < low or (high is not None and number > high):
        raise StanzaError("not-acceptable", f"{var} is out of range")
    return number


def _read_max_users(var: str, values: list[str]) -> int | None:
    value = read_text(var, values).lower()
    if value in ("", "none", "0"):
        return None
    return read_int(var, value, 1, None)


def _read_roles(var: str, values: list[str]) -> tuple[str, ...]:
    roles = []
    for role in values:
        role = role.strip()
        if role not in BROADCAST_OPTIONS:
            raise StanzaError("not-acceptable", f"invalid value for {var}")
        if role not in roles:
            roles.append(role)
    return tuple(r for r in BROADCAST_OPTIONS if r in roles)


def _max_users_options(config: RoomConfig) -> list[tuple[str, None]]:
    current = "none" if config.max_users is None else str(config.max_users)
    options = list(MAXUSERS_OPTIONS)
    if current not in options:
        options.insert(0, current)
    return [(value, None) for value in options]


#: (value, label) pairs of a list field's options.
Choices = Sequence[tuple[str, str | None]]
Options = Choices | Callable[[RoomConfig], Choices]


@dataclass(frozen=True)
class ConfigField:
    """One ``muc#roomconfig_*`` field: how the form shows it, how a submitted value is read.

    ``attribute`` is the :class:`RoomConfig` attribute the field shows and
    sets (None: a field whose meaning a module's hook gives, such as
    ``passwordprotectedroom``; ``show`` then says what the form shows).
    ``options`` are (value, label) pairs of a list field (or a function of
    the configuration giving them). ``read`` coerces the submitted values;
    by default a list-single value must be one of the options.

    The coercions are these functions rather than wokkel's
    ``Form.typeCheck``: that one refuses a field whose submitted type
    differs from the definition's and takes values as sent, where the room
    has always ignored submitted types and stripped whitespace.
    """

    name: str
    label: str
    order: int
    kind: str = "text-single"
    attribute: str | None = None
    options: Options = ()
    show: Callable[[RoomConfig], Any] | None = None
    read: Callable[[str, list[str]], Any] | None = None
    #: False for a field read on submit but not shown in the form (an alias).
    in_form: bool = True

    @property
    def var(self) -> str:
        """The field's var: ``muc#roomconfig_`` and the name."""
        return PREFIX + self.name

    def choices(self, config: RoomConfig) -> Choices:
        """The options as (value, label) pairs."""
        return self.options(config) if callable(self.options) else self.options

    def form_field(self, config: RoomConfig) -> data_form.Field:
        """The data form field showing ``config``'s value."""
        value = self.show(config) if self.show is not None else getattr(config, self.attribute)
        options = [data_form.Option(v, label) for v, label in self.choices(config)] or None
        if self.kind == "list-multi":
            return data_form.Field(self.kind, var=self.var, label=self.label,
                                   values=list(value), options=options)
        return data_form.Field(self.kind, var=self.var, label=self.label, value=value,
                               options=options)

    def coerce(self, values: list[str], config: RoomConfig) -> Any:
        """The submitted values as the setting's value (StanzaError not-acceptable if bad)."""
        if self.read is not None:
            return self.read(self.var, values)
        if self.kind == "boolean":
            return read_boolean(self.var, values)
        value = read_text(self.var, values)
        if self.kind == "list-single" and value not in dict(self.choices(config)):
            raise StanzaError("not-acceptable", f"invalid value for {self.var}")
        return value


def boolean_field(name: str, label: str, order: int, attribute: str) -> ConfigField:
    """A boolean field for a boolean RoomConfig attribute."""
    return ConfigField(name, label, order, "boolean", attribute)


#: The room core's fields (feature modules add theirs at Point.ROOM_CONFIG_FORM).
CORE_FIELDS: tuple[ConfigField, ...] = (
    ConfigField("roomname", "Title", 10, attribute="name"),
    ConfigField("roomdesc", "Description", 20, attribute="description"),
    ConfigField("lang", "Language tag for the room", 30, attribute="language"),
    boolean_field("persistentroom", "Persistent (the room stays when empty)", 40, "persistent"),
    boolean_field("publicroom", "Include the room in public lists", 50, "public"),
    ConfigField("whois", "Who may discover the real JIDs of occupants", 100, "list-single",
                "whois", tuple(WHOIS_OPTIONS.items())),
    ConfigField("maxusers", "Maximum number of occupants", 110, "list-single", "max_users",
                _max_users_options,
                show=lambda c: "none" if c.max_users is None else str(c.max_users),
                read=_read_max_users),
    boolean_field("changesubject", "Occupants may change the subject", 120, "change_subject"),
    ConfigField("allowpm", "Who may send private messages", 140, "list-single", "allow_pm",
                tuple(ALLOWPM_OPTIONS.items())),
    ConfigField("presencebroadcast", "Roles whose presence is broadcast", 150, "list-multi",
                "presence_broadcast", tuple(BROADCAST_OPTIONS.items()), read=_read_roles),
)


def config_form(config: RoomConfig, title: str, fields: Iterable[ConfigField]) -> data_form.Form:
    """The configuration form with the room's current values, fields in their order."""
    form = data_form.Form("form", title=title, formNamespace=NS_ROOMCONFIG)
    for definition in sorted(fields, key=lambda f: f.order):
        if definition.in_form:
            form.addField(definition.form_field(config))
    return form


@dataclass
class ConfigSubmission:
    """A submitted configuration form, read through the fields but not applied yet.

    ``values`` are the submitted fields' coerced values by name (without
    the ``muc#roomconfig_`` prefix); ``config`` is the new configuration
    (``old`` with the attributes of the submitted fields set), which the
    hooks at ``Point.ROOM_CONFIG_SUBMITTED`` may still amend.
    """

    old: RoomConfig
    config: RoomConfig
    values: dict[str, Any] = field(default_factory=dict)


def parse_config_form(
    element: domish.Element, current: RoomConfig, fields: Iterable[ConfigField]
) -> ConfigSubmission | None:
    """Read a submitted muc#roomconfig form against ``current``.

    Returns None for a ``cancel`` form. Fields that are absent keep their
    value; unknown fields are ignored. Raises :class:`StanzaError`
    (bad-request for a malformed form, not-acceptable for a bad value).
    """
    try:
        form = data_form.Form.fromElement(element)
    except data_form.Error:
        raise StanzaError("bad-request", "malformed data form") from None
    if form.formType == "cancel":
        return None
    if form.formType != "submit":
        raise StanzaError("bad-request", "expected a submitted form")
    submitted = dict(form.fields)
    form_type = form.formNamespace
    type_field = submitted.pop("FORM_TYPE", None)
    if type_field is not None and type_field.values:
        form_type = type_field.values[0]
    if form_type is not None and form_type != NS_ROOMCONFIG:
        raise StanzaError("bad-request", "form is not of type room configuration")
    values: dict[str, Any] = {}
    changes: dict[str, Any] = {}
    for definition in sorted(fields, key=lambda f: f.order):
        if definition.var not in submitted:
            continue
        value = definition.coerce(submitted[definition.var].values, current)
        values[definition.name] = value
        if definition.attribute is not None:
            changes[definition.attribute] = value
    return ConfigSubmission(current, current.replace(**changes), values)


def status_codes_for_change(old: RoomConfig, new: RoomConfig) -> list[str]:
    """Status codes announcing a configuration change (104, 170-173), or [] if none."""
    if old == new:
        return []
    codes = ["104"]
    if old.logging != new.logging:
        codes.append("170" if new.logging else "171")
    if old.whois != new.whois:
        codes.append("172" if new.whois == "anyone" else "173")
    return codes


__all__ = [
    "CORE_FIELDS",
    "NS_ROOMCONFIG",
    "ConfigField",
    "ConfigSubmission",
    "RoomConfig",
    "config_form",
    "parse_config_form",
    "status_codes_for_change",
]
