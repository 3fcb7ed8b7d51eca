"""xmppd.mam.query: parsing XEP-0313 queries and building the answers."""

from twisted.internet import defer
from twisted.trial import unittest
from twisted.words.xish import domish

from tests.test_mam_store import OWNER, ArchiveTestCase
from xmppd.errors import StanzaError
from xmppd.mam.query import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    NS_DATA,
    NS_DELAY,
    NS_FORWARD,
    NS_MAM,
    NS_RSM,
    Preferences,
    fin_element,
    format_stamp,
    metadata_element,
    parse_query,
    parse_stamp,
    query_form,
    result_messages,
    run_query,
)
from xmppd.mam.store import ArchiveBounds
from xmppd.sm.stanzas import child_elements, deserialise

REQUESTER = "alice@localhost/laptop"


def query(fields=None, rsm=None, queryid="q1", flip=False, form_type=NS_MAM, raw=""):
    """A <query/> element from form fields ({var: [values]}) and RSM children ({name: text})."""
    xml = f"<query xmlns='{NS_MAM}'" + (f" queryid='{queryid}'" if queryid else "") + ">"
    if fields is not None:
        xml += f"<x xmlns='{NS_DATA}' type='submit'>"
        if form_type is not None:
            xml += (f"<field var='FORM_TYPE' type='hidden'><value>{form_type}</value></field>")
        for var, values in fields.items():
            xml += f"<field var='{var}'>" + "".join(
                f"<value>{v}</value>" for v in values) + "</field>"
        xml += "</x>"
    if rsm is not None:
        xml += f"<set xmlns='{NS_RSM}'>" + "".join(
            f"<{name}>{text}</{name}>" for name, text in rsm) + "</set>"
    if flip:
        xml += "<flip-page/>"
    return deserialise(xml + raw + "</query>")


class StampTests(unittest.TestCase):
    def test_round_trip_and_zones(self):
        self.assertEqual(parse_stamp("2010-06-07T00:00:00Z"), 1275868800.0)
        self.assertEqual(parse_stamp("2010-06-07T02:00:00+02:00"), 1275868800.0)
        self.assertEqual(parse_stamp("2010-06-07T00:00:00.5Z"), 1275868800.5)
        self.assertEqual(parse_stamp("2010-06-07T00:00:00.1234567Z"), 1275868800.123456)
        self.assertEqual(format_stamp(1275868800.0), "2010-06-07T00:00:00Z")
        self.assertEqual(format_stamp(1275868800.25), "2010-06-07T00:00:00.250000Z")

    def test_not_datetimes(self):
        for text in ("2010-06-07", "2010-06-07T00:00:00", "yesterday", "",
                     "2010-13-07T00:00:00Z", "2010-06-07T00:00:00+2", "2010-06-07 00:00:00Z"):
            self.assertIsNone(parse_stamp(text), text)


class ParseTests(unittest.TestCase):
    def assertBad(self, element, condition="bad-request", **kwargs):
        error = self.assertRaises(StanzaError, parse_query, element, **kwargs)
        self.assertEqual(error.condition, condition)
        return error

    def test_defaults(self):
        parsed = parse_query(query(queryid=None))
        self.assertEqual((parsed.queryid, parsed.with_, parsed.start, parsed.end, parsed.after_id,
                          parsed.before_id, parsed.ids, parsed.max, parsed.after, parsed.before,
                          parsed.index, parsed.flip, parsed.reverse),
                         (None, None, None, None, None, None, None, DEFAULT_PAGE_SIZE, None, None,
                          None, False, False))

    def test_every_field(self):
        parsed = parse_query(query({
            "with": ["Juliet@Capulet.lit/Balcony"],
            "start": ["2010-06-07T00:00:00Z"],
            "end": ["2010-07-07T13:23:54Z"],
            "after-id": ["a1"], "before-id": ["b2"], "ids": ["x", "y"],
        }, rsm=[("max", "10"), ("after", "c3")], flip=True))
        self.assertEqual(parsed.queryid, "q1")
        self.assertEqual(parsed.with_, "juliet@capulet.lit/Balcony")
        self.assertEqual((parsed.start, parsed.end), (1275868800.0, 1278509034.0))
        self.assertEqual((parsed.after_id, parsed.before_id, parsed.ids), ("a1", "b2", ["x", "y"]))
        self.assertEqual((parsed.max, parsed.after, parsed.before), (10, "c3", None))
        self.assertTrue(parsed.flip)
        self.assertFalse(parsed.reverse)

    def test_field_without_value_is_absent(self):
        parsed = parse_query(query({"with": [], "start": [], "ids": []}))
        self.assertEqual((parsed.with_, parsed.start, parsed.ids), (None, None, None))

    def test_before_empty_is_the_last_page(self):
        parsed = parse_query(query(rsm=[("before", "")]))
        self.assertEqual(parsed.before, "")
        self.assertTrue(parsed.reverse)
        parsed = parse_query(query(rsm=[("before", "abc"), ("max", "0")]))
        self.assertEqual((parsed.before, parsed.max, parsed.reverse), ("abc", 0, True))

    def test_max_is_capped(self):
        self.assertEqual(parse_query(query(rsm=[("max", "100000")])).max, MAX_PAGE_SIZE)
        self.assertEqual(parse_query(query(rsm=[("max", "7")]), max_max=5).max, 5)
        self.assertEqual(parse_query(query(), default_max=30, max_max=10).max, 10)

    def test_index(self):
        self.assertEqual(parse_query(query(rsm=[("index", "3")])).index, 3)

    def test_unknown_field(self):
        for var in ("withtext", "include-groupchat", "{urn:example}free-text-search"):
            error = self.assertBad(query({var: ["x"]}), "feature-not-implemented")
            self.assertIn(var, error.text)

    def test_form_type(self):
        self.assertBad(query({"with": ["a@b"]}, form_type=None))
        self.assertBad(query({"with": ["a@b"]}, form_type="urn:xmpp:mam:1"))
        form = query({})
        form.x["type"] = "cancel"
        self.assertBad(form)

    def test_two_forms(self):
        self.assertBad(query({}, raw=f"<x xmlns='{NS_DATA}' type='submit'/>"))

    def test_field_twice_or_too_many_values(self):
        self.assertBad(query({"with": ["a@b", "c@d"]}))
        element = query({"start": ["2010-06-07T00:00:00Z"]})
        element.x.addChild(deserialise(
            f"<field xmlns='{NS_DATA}' var='start'><value>2010-06-07T00:00:00Z</value></field>"))
        self.assertBad(element)
        element = query({})
        element.x.addElement("field").addElement("value", content="x")
        self.assertBad(element)  # no var

    def test_malformed_with(self):
        for bad in ("@localhost", "a@b@c", "", "user@/res", "a@" + "x" * 1100):
            self.assertBad(query({"with": [bad]}), "jid-malformed")

    def test_malformed_dates(self):
        for var in ("start", "end"):
            for bad in ("2010-06-07", "tomorrow", "", "2010-06-07T25:00:00Z"):
                self.assertBad(query({var: [bad]}))

    def test_empty_ids(self):
        self.assertBad(query({"after-id": [""]}))
        self.assertBad(query({"before-id": [" "]}))
        self.assertBad(query({"ids": ["a", ""]}))
        self.assertBad(query({"ids": ["a", "b", "c"]}), max_ids=2)

    def test_bad_rsm(self):
        for rsm in ([("max", "ten")], [("max", "-1")], [("max", "")], [("max", "1.5")],
                    [("max", "\u0661")], [("index", "x")], [("after", "")],
                    [("index", "1"), ("after", "a")], [("index", "0"), ("before", "")],
                    [("max", "1"), ("max", "2")]):
            self.assertBad(query(rsm=rsm))
        self.assertBad(query(raw=f"<set xmlns='{NS_RSM}'/><set xmlns='{NS_RSM}'/>"))

    def test_elements_in_other_namespaces_are_ignored(self):
        parsed = parse_query(query(raw="<x xmlns='urn:other'/><set xmlns='urn:other'>"
                                       "<max>x</max></set><flip-page xmlns='urn:other'/>"))
        self.assertEqual((parsed.max, parsed.flip), (DEFAULT_PAGE_SIZE, False))


class AnswerTests(ArchiveTestCase):
    """Queries run on a real archive: the result messages and the <fin/>."""

    @defer.inlineCallbacks
    def answer(self, element):
        parsed = parse_query(element)
        page = yield run_query(self.store, OWNER, parsed)
        return result_messages(page, parsed, REQUESTER), fin_element(page)

    def result_ids(self, messages):
        return [m.result["id"] for m in messages]

    def rsm(self, fin):
        """(complete, first, first index, last, count) of a <fin/>."""
        rsm = fin.set
        first = rsm.first
        return (fin.getAttribute("complete"),
                str(first) if first else None, first.getAttribute("index") if first else None,
                str(rsm.last) if rsm.last else None, str(rsm.count))

    @defer.inlineCallbacks
    def test_result_message_shape(self):
        (archive_id,) = yield self.fill(1)
        messages, fin = yield self.answer(query())
        (message,) = messages
        self.assertEqual((message.name, message.uri, message["to"], message.getAttribute("from")),
                         ("message", "jabber:client", REQUESTER, None))
        (result,) = child_elements(message)
        self.assertEqual((result.uri, result.name, result["queryid"], result["id"]),
                         (NS_MAM, "result", "q1", archive_id))
        (forwarded,) = child_elements(result)
        self.assertEqual((forwarded.uri, forwarded.name), (NS_FORWARD, "forwarded"))
        delay, original = child_elements(forwarded)
        self.assertEqual((delay.uri, delay.name, delay["stamp"]),
                         (NS_DELAY, "delay", "1970-01-01T00:16:40Z"))
        self.assertEqual((original.uri, original.name, original["id"], str(original.body)),
                         ("jabber:client", "message", "m0", "0"))
        self.assertEqual((fin.uri, fin.name), (NS_MAM, "fin"))
        self.assertEqual(fin.set.uri, NS_RSM)
        self.assertEqual(self.rsm(fin), ("true", archive_id, "0", archive_id, "1"))

    @defer.inlineCallbacks
    def test_room_archive_results_come_from_the_room(self):
        yield self.fill(1)
        parsed = parse_query(query(queryid=None))
        page = yield run_query(self.store, OWNER, parsed)
        (message,) = result_messages(page, parsed, REQUESTER, sender="room@muc.localhost")
        self.assertEqual(message["from"], "room@muc.localhost")
        self.assertFalse(message.result.hasAttribute("queryid"))

    @defer.inlineCallbacks
    def test_paging_forwards(self):
        ids = yield self.fill(7)
        messages, fin = yield self.answer(query(rsm=[("max", "3")]))
        self.assertEqual(self.result_ids(messages), ids[0:3])
        self.assertEqual(self.rsm(fin), (None, ids[0], "0", ids[2], "7"))
        messages, fin = yield self.answer(query(rsm=[("max", "3"), ("after", ids[2])]))
        self.assertEqual(self.result_ids(messages), ids[3:6])
        self.assertEqual(self.rsm(fin), (None, ids[3], "3", ids[5], "7"))
        messages, fin = yield self.answer(query(rsm=[("max", "3"), ("after", ids[5])]))
        self.assertEqual(self.result_ids(messages), ids[6:7])
        self.assertEqual(self.rsm(fin), ("true", ids[6], "6", ids[6], "7"))

    @defer.inlineCallbacks
    def test_paging_backwards(self):
        ids = yield self.fill(7)
        messages, fin = yield self.answer(query(rsm=[("max", "3"), ("before", "")]))
        self.assertEqual(self.result_ids(messages), ids[4:7])
        self.assertEqual(self.rsm(fin), (None, ids[4], "4", ids[6], "7"))
        messages, fin = yield self.answer(query(rsm=[("max", "3"), ("before", ids[4])]))
        self.assertEqual(self.result_ids(messages), ids[1:4])
        self.assertEqual(self.rsm(fin), (None, ids[1], "1", ids[3], "7"))
        messages, fin = yield self.answer(query(rsm=[("max", "3"), ("before", ids[1])]))
        self.assertEqual(self.result_ids(messages), ids[0:1])
        self.assertEqual(self.rsm(fin), ("true", ids[0], "0", ids[0], "7"))

    @defer.inlineCallbacks
    def test_flip_page_reverses_sending_order_only(self):
        ids = yield self.fill(7)
        messages, fin = yield self.answer(query(rsm=[("max", "3"), ("before", "")], flip=True))
        self.assertEqual(self.result_ids(messages), [ids[6], ids[5], ids[4]])
        self.assertEqual(self.rsm(fin), (None, ids[4], "4", ids[6], "7"))
        messages, fin = yield self.answer(query(rsm=[("max", "3")], flip=True))
        self.assertEqual(self.result_ids(messages), [ids[2], ids[1], ids[0]])
        self.assertEqual(self.rsm(fin), (None, ids[0], "0", ids[2], "7"))

    @defer.inlineCallbacks
    def test_filters_through_the_form(self):
        ids = yield self.fill(6)  # stamps 1000 .. 1005, with bob@localhost/phone
        yield self.fill(2, with_jid="carol@localhost/x")
        messages, fin = yield self.answer(query({
            "with": ["bob@localhost"],
            "start": [format_stamp(1001)], "end": [format_stamp(1004)],
        }))
        self.assertEqual(self.result_ids(messages), ids[1:5])
        self.assertEqual(self.rsm(fin), ("true", ids[1], "0", ids[4], "4"))
        messages, fin = yield self.answer(query({"ids": [ids[3], ids[0], ids[3]]}))
        self.assertEqual(self.result_ids(messages), [ids[0], ids[3]])
        self.assertEqual(self.rsm(fin), ("true", ids[0], "0", ids[3], "2"))
        messages, fin = yield self.answer(query({"after-id": ids[3:4]}))
        self.assertEqual(self.result_ids(messages)[:2], ids[4:6])
        self.assertEqual(self.rsm(fin)[4], "4")  # ids[4], ids[5] and carol's two
        messages, fin = yield self.answer(query({"with": ["bob@localhost/laptop"]}))
        self.assertEqual(messages, [])

    @defer.inlineCallbacks
    def test_empty_result(self):
        messages, fin = yield self.answer(query())
        self.assertEqual(messages, [])
        self.assertEqual(fin.toXml(),
                         f"<fin xmlns='{NS_MAM}' complete='true'><set xmlns='{NS_RSM}'>"
                         "<count>0</count></set></fin>")

    @defer.inlineCallbacks
    def test_index(self):
        ids = yield self.fill(5)
        messages, fin = yield self.answer(query(rsm=[("max", "2"), ("index", "2")]))
        self.assertEqual(self.result_ids(messages), ids[2:4])
        self.assertEqual(self.rsm(fin), (None, ids[2], "2", ids[3], "5"))
        for past_the_end in ("5", "9" * 40):
            messages, fin = yield self.answer(query(rsm=[("index", past_the_end)]))
            self.assertEqual(messages, [])
            self.assertEqual(self.rsm(fin), ("true", None, None, None, "5"))

    @defer.inlineCallbacks
    def test_max_zero_gives_the_count(self):
        yield self.fill(4)
        messages, fin = yield self.answer(query(rsm=[("max", "0")]))
        self.assertEqual(messages, [])
        self.assertEqual(self.rsm(fin), (None, None, None, None, "4"))

    @defer.inlineCallbacks
    def test_unknown_ids_are_item_not_found(self):
        ids = yield self.fill(2)
        for element in (query(rsm=[("after", "nope")]), query(rsm=[("before", "nope")]),
                        query({"after-id": ["nope"]}), query({"before-id": ["nope"]}),
                        query({"ids": [ids[0], "nope"]})):
            error = yield self.assertFailure(self.answer(element), StanzaError)
            self.assertEqual((error.condition, error.type), ("item-not-found", "cancel"))
        messages, _fin = yield self.answer(query(rsm=[("after", ids[0])]))
        self.assertEqual(self.result_ids(messages), ids[1:])

    @defer.inlineCallbacks
    def test_unparsable_rows_are_skipped(self):
        yield self.store.append(OWNER, stamp=1, with_jid="bob@localhost", direction="in",
                                stanza="<message><broken", account="alice")
        good = yield self.fill(1)
        messages, fin = yield self.answer(query())
        self.assertEqual(self.result_ids(messages), good)
        self.assertEqual(self.rsm(fin)[4], "2")


class FormAndMetadataTests(unittest.TestCase):
    def test_query_form(self):
        element = query_form()
        self.assertEqual((element.uri, element.name), (NS_MAM, "query"))
        form = element.x
        self.assertEqual((form.uri, form["type"]), (NS_DATA, "form"))
        fields = {f["var"]: f.getAttribute("type") for f in child_elements(form)}
        self.assertEqual(fields, {
            "FORM_TYPE": "hidden", "with": "jid-single", "start": "text-single",
            "end": "text-single", "before-id": "text-single", "after-id": "text-single",
            "ids": "list-multi"})
        self.assertEqual(str(form.field.value), NS_MAM)
        basic = {f["var"] for f in child_elements(query_form(extended=False).x)}
        self.assertEqual(basic, {"FORM_TYPE", "with", "start", "end"})

    def test_the_form_parses_back_when_filled(self):
        form = query_form().x
        form["type"] = "submit"
        for f in child_elements(form):
            if f["var"] == "with":
                f.addElement("value", content="bob@localhost")
        wrapper = domish.Element((NS_MAM, "query"))
        wrapper.addChild(form)
        self.assertEqual(parse_query(wrapper).with_, "bob@localhost")

    def test_metadata(self):
        self.assertEqual(metadata_element(ArchiveBounds()).toXml(),
                         f"<metadata xmlns='{NS_MAM}'/>")
        element = metadata_element(ArchiveBounds("a", 0.0, "b", 1275868800.0))
        self.assertEqual(element.toXml(),
                         f"<metadata xmlns='{NS_MAM}'>"
                         "<start id='a' timestamp='1970-01-01T00:00:00Z'/>"
                         "<end id='b' timestamp='2010-06-07T00:00:00Z'/></metadata>")


class PreferencesTests(unittest.TestCase):
    def prefs(self, xml):
        return deserialise(f"<prefs xmlns='{NS_MAM}' {xml}</prefs>")

    def test_round_trip(self):
        prefs = Preferences.from_element(self.prefs(
            "default='roster'><always><jid>Romeo@Montague.lit</jid></always>"
            "<never><jid>montague.lit</jid><jid>tybalt@capulet.lit/x</jid></never>"))
        self.assertEqual(prefs, Preferences("roster", {"romeo@montague.lit"},
                                            {"montague.lit", "tybalt@capulet.lit/x"}))
        self.assertEqual(prefs.to_element().toXml(),
                         f"<prefs xmlns='{NS_MAM}' default='roster'><always>"
                         "<jid>romeo@montague.lit</jid></always><never><jid>montague.lit</jid>"
                         "<jid>tybalt@capulet.lit/x</jid></never></prefs>")
        self.assertEqual(Preferences().to_element().toXml(),
                         f"<prefs xmlns='{NS_MAM}' default='always'><always/><never/></prefs>")

    def test_missing_default_keeps_the_current_one(self):
        prefs = Preferences.from_element(self.prefs(">"), current=Preferences("never"))
        self.assertEqual(prefs.default, "never")
        self.assertEqual(Preferences.from_element(self.prefs(">")).default, "always")

    def test_bad_prefs(self):
        for xml, condition in (
            ("default='sometimes'>", "bad-request"),
            ("default='always'><always><jid>@bad</jid></always>", "jid-malformed"),
            ("default='always'><always><jid>a@b</jid></always><never><jid>A@b</jid></never>",
             "bad-request"),
        ):
            error = self.assertRaises(StanzaError, Preferences.from_element, self.prefs(xml))
            self.assertEqual(error.condition, condition, xml)
        error = self.assertRaises(
            StanzaError, Preferences.from_element,
            self.prefs("><always><jid>a@b</jid><jid>c@d</jid></always>"), max_jids=1)
        self.assertEqual(error.condition, "not-acceptable")

    def test_archives(self):
        prefs = Preferences("roster", {"friend@x", "tybalt@y/phone"}, {"tybalt@y", "spam@x/r"})
        self.assertTrue(prefs.archives("friend@x/any"))
        self.assertTrue(prefs.archives("tybalt@y/phone"))  # full JID beats its bare JID
        self.assertFalse(prefs.archives("tybalt@y/laptop"))
        self.assertFalse(prefs.archives("spam@x/r"))
        self.assertFalse(prefs.archives("other@z"))
        self.assertTrue(prefs.archives("other@z", in_roster=True))
        self.assertTrue(Preferences("always").archives("other@z"))
        self.assertFalse(Preferences("never").archives("other@z", in_roster=True))
