"""xmppd.muc.config: one field table builds the configuration form and reads it."""

from __future__ import annotations

from twisted.trial import unittest

from tests.muc_fakes import parse
from xmppd.errors import StanzaError
from xmppd.muc.config import (
    CORE_FIELDS,
    DEFAULT_HISTORY_LENGTH,
    NS_ROOMCONFIG,
    ConfigField,
    RoomConfig,
    config_form,
    parse_config_form,
    status_codes_for_change,
)

NS_X_DATA = "jabber:x:data"


def submitted(fields: dict, form_type: str | None = NS_ROOMCONFIG, kind: str = "submit"):
    body = ""
    if form_type is not None:
        body = f"<field var='FORM_TYPE'><value>{form_type}</value></field>"
    for var, value in fields.items():
        values = value if isinstance(value, list) else [value]
        inner = "".join(f"<value>{v}</value>" for v in values)
        body += f"<field var='muc#roomconfig_{var}'>{inner}</field>"
    return parse(f"<x xmlns='{NS_X_DATA}' type='{kind}'>{body}</x>")


def read(fields: dict, current: RoomConfig | None = None):
    return parse_config_form(submitted(fields), current or RoomConfig(), CORE_FIELDS)


class FormTests(unittest.TestCase):
    def test_fields_in_their_order_whatever_the_list_order(self):
        form = config_form(RoomConfig(), "t", reversed(CORE_FIELDS))
        self.assertEqual(
            [f.var for f in form.fieldList],
            [f.var for f in sorted(CORE_FIELDS, key=lambda f: f.order)],
        )

    def test_values_shown(self):
        config = RoomConfig(name="Balcony", public=False, max_users=42,
                            presence_broadcast=("moderator",))
        form = config_form(config, "t", CORE_FIELDS)
        self.assertEqual(form.fields["muc#roomconfig_roomname"].value, "Balcony")
        self.assertIs(form.fields["muc#roomconfig_publicroom"].value, False)
        self.assertEqual(form.fields["muc#roomconfig_maxusers"].value, "42")
        options = [o.value for o in form.fields["muc#roomconfig_maxusers"].options]
        self.assertEqual(options[0], "42")  # an unusual current value is offered first
        self.assertEqual(form.fields["muc#roomconfig_presencebroadcast"].values, ["moderator"])
        self.assertEqual(form.formNamespace, NS_ROOMCONFIG)

    def test_module_field(self):
        extra = ConfigField("custom", "A module's field", 55, "boolean", "logging")
        form = config_form(RoomConfig(logging=True), "t", [*CORE_FIELDS, extra])
        names = [f.var for f in form.fieldList]
        self.assertEqual(names.index("muc#roomconfig_custom"),
                         names.index("muc#roomconfig_publicroom") + 1)
        submission = parse_config_form(
            submitted({"custom": "0"}), RoomConfig(logging=True), [*CORE_FIELDS, extra]
        )
        self.assertFalse(submission.config.logging)
        self.assertEqual(submission.values, {"custom": False})


class ParseTests(unittest.TestCase):
    def test_absent_fields_keep_their_value(self):
        current = RoomConfig(name="Old", persistent=True)
        submission = read({"roomdesc": " About "}, current)
        self.assertEqual(submission.old, current)
        self.assertEqual(submission.config, current.replace(description="About"))
        self.assertEqual(submission.values, {"roomdesc": "About"})

    def test_coercions(self):
        config = read({
            "persistentroom": "true",
            "publicroom": "0",
            "whois": " anyone ",
            "maxusers": "none",
            "presencebroadcast": ["visitor", "moderator", "visitor"],
            "allowpm": "moderators",
        }).config
        self.assertTrue(config.persistent)
        self.assertFalse(config.public)
        self.assertEqual(config.whois, "anyone")
        self.assertIsNone(config.max_users)
        self.assertEqual(config.presence_broadcast, ("moderator", "visitor"))
        self.assertEqual(config.allow_pm, "moderators")
        self.assertEqual(read({"maxusers": "30"}).config.max_users, 30)
        self.assertIsNone(read({"maxusers": "0"}).config.max_users)

    def test_bad_values_are_not_acceptable(self):
        for fields in (
            {"persistentroom": "maybe"},
            {"publicroom": []},
            {"whois": "everybody"},
            {"maxusers": "-1"},
            {"allowpm": "all"},
            {"presencebroadcast": ["king"]},
        ):
            exc = self.assertRaises(StanzaError, read, fields)
            self.assertEqual(exc.condition, "not-acceptable", fields)

    def test_form_shape(self):
        self.assertIsNone(
            parse_config_form(submitted({}, kind="cancel"), RoomConfig(), CORE_FIELDS)
        )
        for element in (
            submitted({}, kind="form"),
            submitted({}, form_type="urn:other"),
            parse(f"<form xmlns='{NS_X_DATA}' type='submit'/>"),
        ):
            exc = self.assertRaises(StanzaError, parse_config_form, element, RoomConfig(),
                                    CORE_FIELDS)
            self.assertEqual(exc.condition, "bad-request")
        # no FORM_TYPE at all is accepted
        element = submitted({"roomname": "x"}, form_type=None)
        self.assertEqual(parse_config_form(element, RoomConfig(), CORE_FIELDS).config.name, "x")

    def test_status_codes(self):
        old = RoomConfig()
        self.assertEqual(status_codes_for_change(old, old), [])
        self.assertEqual(status_codes_for_change(old, old.replace(name="x")), ["104"])
        self.assertEqual(
            status_codes_for_change(old, old.replace(logging=True, whois="anyone")),
            ["104", "170", "172"],
        )
        self.assertEqual(
            status_codes_for_change(old.replace(logging=True, whois="anyone"), old),
            ["104", "171", "173"],
        )

    def test_default_history_length(self):
        self.assertEqual(RoomConfig().history_length, DEFAULT_HISTORY_LENGTH)
