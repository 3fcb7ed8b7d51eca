"""Room configuration and the muc#roomconfig data form (XEP-0045 10.2, 16.5.3)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
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


def _bool_field(var: str, label: str, value: bool) -> data_form.Field:
    return data_form.Field("boolean", var=PREFIX + var, label=label, value=value)


def config_form(config: RoomConfig, title: str) -> data_form.Form:
    """The configuration form with the room's current values."""
    form = data_form.Form("form", title=title, formNamespace=NS_ROOMCONFIG)
    f = form.addField
    f(data_form.Field(var=PREFIX + "roomname", label="Title", value=config.name))
    f(data_form.Field(var=PREFIX + "roomdesc", label="Description", value=config.description))
    f(
        data_form.Field(
            var=PREFIX + "lang", label="Language tag for the room", value=config.language
        )
    )
    f(_bool_field("persistentroom", "Persistent (the room stays when empty)", config.persistent))
    f(_bool_field("publicroom", "Include the room in public lists", config.public))
    f(_bool_field("membersonly", "Only members may join", config.members_only))
    f(_bool_field("moderatedroom", "Only occupants with voice may speak", config.moderated))
    f(_bool_field("passwordprotectedroom", "Password protected", config.password_protected))
    f(
        data_form.Field(
            "text-private", var=PREFIX + "roomsecret", label="Password", value=config.password
        )
    )
    f(
        data_form.Field(
            "list-single",
            var=PREFIX + "whois",
            label="Who may discover the real JIDs of occupants",
            value=config.whois,
            options=[data_form.Option(v, label) for v, label in WHOIS_OPTIONS.items()],
        )
    )
    max_users = "none" if config.max_users is None else str(config.max_users)
    options = list(MAXUSERS_OPTIONS)
    if max_users not in options:
        options.insert(0, max_users)
    f(
        data_form.Field(
            "list-single",
            var=PREFIX + "maxusers",
            label="Maximum number of occupants",
            value=max_users,
            options=[data_form.Option(v) for v in options],
        )
    )
    f(_bool_field("changesubject", "Occupants may change the subject", config.change_subject))
    f(_bool_field("allowinvites", "Occupants may invite others", config.allow_invites))
    f(
        data_form.Field(
            "list-single",
            var=PREFIX + "allowpm",
            label="Who may send private messages",
            value=config.allow_pm,
            options=[data_form.Option(v, label) for v, label in ALLOWPM_OPTIONS.items()],
        )
    )
    f(
        data_form.Field(
            "list-multi",
            var=PREFIX + "presencebroadcast",
            label="Roles whose presence is broadcast",
            values=list(config.presence_broadcast),
            options=[data_form.Option(v, label) for v, label in BROADCAST_OPTIONS.items()],
        )
    )
    f(
        data_form.Field(
            var=PREFIX + "historylength",
            label=f"Number of messages kept as history (0-{MAX_HISTORY_LENGTH})",
            value=str(config.history_length),
        )
    )
    f(_bool_field("enablelogging", "Log the conversation", config.logging))
    return form


def _parse_bool(var: str, values: list[str]) -> bool:
    value = (values[0] if values else "").strip().lower()
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise StanzaError("not-acceptable", f"{var} must be a boolean")


def _single(values: list[str]) -> str:
    return values[0].strip() if values else ""


def _choice(var: str, values: list[str], options: dict[str, str]) -> str:
    value = _single(values)
    if value not in options:
        raise StanzaError("not-acceptable", f"invalid value for {var}")
    return value


def _parse_int(var: str, value: str, low: int, high: int | None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise StanzaError("not-acceptable", f"{var} must be a number") from None
    if number < low or (high is not None and number > high):
        raise StanzaError("not-acceptable", f"{var} is out of range")
    return number


def parse_config_form(element: domish.Element, current: RoomConfig) -> RoomConfig | None:
    """Apply a submitted muc#roomconfig form to ``current``.

    Returns the new configuration, or None for a ``cancel`` form. Fields that
    are absent keep their value; unknown fields are ignored. Raises
    :class:`StanzaError` (bad-request for a malformed form, not-acceptable for a
    bad value).
    """
    try:
        form = data_form.Form.fromElement(element)
    except data_form.Error:
        raise StanzaError("bad-request", "malformed data form") from None
    if form.formType == "cancel":
        return None
    if form.formType != "submit":
        raise StanzaError("bad-request", "expected a submitted form")
    fields = dict(form.fields)
    form_type = form.formNamespace
    type_field = fields.pop("FORM_TYPE", None)
    if type_field is not None and type_field.values:
        form_type = type_field.values[0]
    if form_type is not None and form_type != NS_ROOMCONFIG:
        raise StanzaError("bad-request", "form is not of type room configuration")

    values = {
        var[len(PREFIX) :]: fld.values for var, fld in fields.items() if var.startswith(PREFIX)
    }
    changes: dict[str, Any] = {}
    texts = {"roomname": "name", "roomdesc": "description", "lang": "language"}
    for key, attribute in texts.items():
        if key in values:
            changes[attribute] = _single(values[key])
    bools = {
        "persistentroom": "persistent",
        "publicroom": "public",
        "membersonly": "members_only",
        "moderatedroom": "moderated",
        "changesubject": "change_subject",
        "allowinvites": "allow_invites",
        "enablelogging": "logging",
    }
    for key, attribute in bools.items():
        if key in values:
            changes[attribute] = _parse_bool(PREFIX + key, values[key])
    if "whois" in values:
        changes["whois"] = _choice(PREFIX + "whois", values["whois"], WHOIS_OPTIONS)
    if "allowpm" in values:
        changes["allow_pm"] = _choice(PREFIX + "allowpm", values["allowpm"], ALLOWPM_OPTIONS)
    if "maxusers" in values:
        value = _single(values["maxusers"]).lower()
        if value in ("", "none", "0"):
            changes["max_users"] = None
        else:
            changes["max_users"] = _parse_int(PREFIX + "maxusers", value, 1, None)
    if "presencebroadcast" in values:
        roles = []
        for role in values["presencebroadcast"]:
            role = role.strip()
            if role not in BROADCAST_OPTIONS:
                raise StanzaError("not-acceptable", f"invalid value for {PREFIX}presencebroadcast")
            if role not in roles:
                roles.append(role)
        changes["presence_broadcast"] = tuple(r for r in BROADCAST_OPTIONS if r in roles)
    if "historylength" in values:
        value = _single(values["historylength"])
        changes["history_length"] = (
            DEFAULT_HISTORY_LENGTH
            if value == ""
            else _parse_int(PREFIX + "historylength", value, 0, MAX_HISTORY_LENGTH)
        )

    password = current.password
    if "roomsecret" in values:
        password = values["roomsecret"][0] if values["roomsecret"] else ""
    if "passwordprotectedroom" in values:
        protected = _parse_bool(PREFIX + "passwordprotectedroom", values["passwordprotectedroom"])
        if not protected:
            password = ""
        elif not password:
            raise StanzaError("not-acceptable", "a password-protected room needs a password")
    changes["password"] = password
    return current.replace(**changes)


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
    "NS_ROOMCONFIG",
    "RoomConfig",
    "config_form",
    "parse_config_form",
    "status_codes_for_change",
]
