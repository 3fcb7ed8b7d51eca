"""xmppd.pubsub.nodeconfig: the configuration form and publish-options preconditions."""

import dataclasses

from twisted.trial import unittest

import xmppd  # noqa: F401  (compat shim first, before wokkel)

# isort: split
from wokkel import data_form
from wokkel.generic import parseXml

from xmppd.errors import StanzaError
from xmppd.pubsub import NS_NODE_CONFIG, NS_PUBLISH_OPTIONS, NS_PUBSUB_ERRORS
from xmppd.pubsub.nodeconfig import (
    FIELDS,
    NodeConfig,
    apply_form,
    check_preconditions,
    config_form,
    meta_data_form,
    read_preconditions,
    with_preconditions,
)


def submitted(fields, namespace=NS_NODE_CONFIG):
    """A submitted form parsed from XML: {var: value or [values]}."""
    xml = [f"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
           f"<value>{namespace}</value></field>"]
    for var, value in fields.items():
        values = value if isinstance(value, list) else [value]
        xml.append(f"<field var='{var}'>" + "".join(f"<value>{v}</value>" for v in values)
                   + "</field>")
    xml.append("</x>")
    return data_form.Form.fromElement(parseXml("".join(xml).encode()))


def app_condition(error):
    app = error.appCondition
    return None if app is None else (app.uri, app.name)


class ConfigFormTests(unittest.TestCase):
    """The form shows a configuration; a submitted form changes it."""

    def test_round_trip(self):
        config = NodeConfig(title="T", description="D", access_model="whitelist",
                            roster_groups_allowed=("a", "b"), publish_model="open",
                            max_items=7, persist_items=False, deliver_payloads=False,
                            notify_config=True, notify_delete=False, notify_retract=False,
                            send_last_published_item="on_sub", notification_type="normal",
                            itemreply="publisher")
        element = config_form(config).toElement()
        form = data_form.Form.fromElement(parseXml(element.toXml().encode()))
        self.assertEqual(form.formNamespace, NS_NODE_CONFIG)
        self.assertEqual({f.var for f in FIELDS}, set(form.fields) - {"FORM_TYPE"})
        form.formType = "submit"
        self.assertEqual(apply_form(NodeConfig(), form), config)

    def test_max_keeps_the_word(self):
        form = config_form(NodeConfig(max_items=None))
        self.assertEqual(form.fields["pubsub#max_items"].value, "max")
        config = apply_form(NodeConfig(), submitted({"pubsub#max_items": "max"}))
        self.assertIsNone(config.max_items)
        self.assertEqual(config.item_limit(256), 256)
        self.assertEqual(NodeConfig(max_items=1000).item_limit(256), 256)
        self.assertEqual(NodeConfig(max_items=3).item_limit(256), 3)

    def test_partial_form_changes_only_its_fields(self):
        config = apply_form(NodeConfig(title="old"), submitted({"pubsub#persist_items": "0",
                                                                "pubsub#max_items": "5"}))
        self.assertEqual(config, NodeConfig(title="old", persist_items=False, max_items=5))

    def test_boolean_spellings(self):
        for text, value in (("1", True), ("true", True), ("0", False), ("false", False)):
            config = apply_form(NodeConfig(), submitted({"pubsub#notify_config": text}))
            self.assertEqual(config.notify_config, value, text)

    def test_fields_without_a_value(self):
        """An empty single-valued field changes nothing; an empty list-multi empties it."""
        config = NodeConfig(title="kept", roster_groups_allowed=("a",))
        self.assertEqual(apply_form(config, submitted({"pubsub#title": [],
                                                       "pubsub#persist_items": []})), config)
        self.assertEqual(apply_form(config, submitted({"pubsub#roster_groups_allowed": []})),
                         NodeConfig(title="kept"))
        self.assertEqual(read_preconditions(submitted({"pubsub#access_model": []},
                                                      NS_PUBLISH_OPTIONS)), {})

    def test_unknown_fields_ignored(self):
        config = apply_form(NodeConfig(), submitted({"pubsub#other_server": "x",
                                                     "pubsub#title": "t"}))
        self.assertEqual(config, NodeConfig(title="t"))

    def test_collections_unsupported(self):
        with self.assertRaises(StanzaError) as caught:
            apply_form(NodeConfig(), submitted({"pubsub#node_type": "collection"}))
        error = caught.exception
        self.assertEqual((error.condition, error.type), ("feature-not-implemented", "cancel"))
        self.assertEqual((error.appCondition.uri, error.appCondition.name,
                          error.appCondition["feature"]),
                         (NS_PUBSUB_ERRORS, "unsupported", "collections"))
        self.assertEqual(apply_form(NodeConfig(), submitted({"pubsub#node_type": "leaf"})),
                         NodeConfig())

    def test_invalid_values_not_acceptable(self):
        for var, value in (
            ("pubsub#access_model", "authorize"),
            ("pubsub#publish_model", "everyone"),
            ("pubsub#max_items", "0"),
            ("pubsub#max_items", "-3"),
            ("pubsub#max_items", "many"),
            ("pubsub#persist_items", "yes"),
            ("pubsub#send_last_published_item", "always"),
            ("pubsub#notification_type", "chat"),
            ("pubsub#itemreply", "nobody"),
            ("pubsub#title", "x" * 1025),
            ("pubsub#title", ["a", "b"]),
        ):
            error = self.assertRaises(StanzaError, apply_form, NodeConfig(),
                                      submitted({var: value}))
            self.assertEqual(error.condition, "not-acceptable", (var, value))

    def test_json_round_trip_and_fallback(self):
        config = NodeConfig(title="x", roster_groups_allowed=("g",), max_items=None)
        self.assertEqual(NodeConfig.from_json(config.to_json(), NodeConfig()), config)
        default = NodeConfig(title="default")
        self.assertEqual(NodeConfig.from_json("not json", default), default)
        self.assertEqual(NodeConfig.from_json('{"title": "y", "future": 1}', default),
                         dataclasses.replace(default, title="y"))
        self.assertEqual(NodeConfig.from_json("[1]", default), default)

    def test_meta_data(self):
        form = meta_data_form(NodeConfig(title="T", access_model="whitelist"), ["a@b"])
        self.assertEqual(form.formType, "result")
        self.assertEqual(form.fields["pubsub#owner"].values, ["a@b"])
        self.assertEqual(form.fields["pubsub#access_model"].value, "whitelist")


class PreconditionTests(unittest.TestCase):
    """publish-options: all must match the node, else precondition-not-met."""

    def assertUnmet(self, function, *args):
        error = self.assertRaises(StanzaError, function, *args)
        self.assertEqual(error.condition, "conflict")
        self.assertEqual(app_condition(error), (NS_PUBSUB_ERRORS, "precondition-not-met"))

    def test_read(self):
        wanted = read_preconditions(submitted({"pubsub#access_model": "open",
                                               "pubsub#max_items": "max",
                                               "pubsub#persist_items": "true"},
                                              NS_PUBLISH_OPTIONS))
        self.assertEqual(wanted, {"access_model": "open", "max_items": None,
                                  "persist_items": True})

    def test_unknown_field_is_unmet(self):
        self.assertUnmet(read_preconditions,
                         submitted({"pubsub#whatever": "1"}, NS_PUBLISH_OPTIONS))

    def test_invalid_value_is_unmet(self):
        self.assertUnmet(read_preconditions,
                         submitted({"pubsub#access_model": "bogus"}, NS_PUBLISH_OPTIONS))

    def test_match(self):
        config = NodeConfig(access_model="open", max_items=1)
        check_preconditions(config, {"access_model": "open", "max_items": 1}, 256)
        self.assertUnmet(check_preconditions, config, {"access_model": "presence"}, 256)
        self.assertUnmet(check_preconditions, config, {"max_items": 2}, 256)

    def test_max_items_max(self):
        """``max`` matches a node kept at the server's maximum, by either spelling."""
        check_preconditions(NodeConfig(max_items=None), {"max_items": None}, 256)
        check_preconditions(NodeConfig(max_items=256), {"max_items": None}, 256)
        check_preconditions(NodeConfig(max_items=None), {"max_items": 256}, 256)
        self.assertUnmet(check_preconditions, NodeConfig(max_items=10), {"max_items": None},
                         256)

    def test_roster_groups_as_sets(self):
        config = NodeConfig(roster_groups_allowed=("a", "b"))
        check_preconditions(config, {"roster_groups_allowed": ("b", "a")}, 256)
        self.assertUnmet(check_preconditions, config, {"roster_groups_allowed": ("a",)}, 256)

    def test_new_node_configuration(self):
        config = with_preconditions(NodeConfig(max_items=1), {"access_model": "whitelist",
                                                              "max_items": None})
        self.assertEqual(config, NodeConfig(access_model="whitelist", max_items=None))
