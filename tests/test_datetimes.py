"""xmppd.datetimes: XEP-0082 date-times, formatted and parsed in one place."""

from twisted.trial import unittest

from xmppd.datetimes import format_stamp, parse_stamp


class StampTests(unittest.TestCase):
    """Round trips, zones and what is refused."""

    def test_format(self):
        self.assertEqual(format_stamp(0), "1970-01-01T00:00:00Z")
        self.assertEqual(format_stamp(1275868800.25), "2010-06-07T00:00:00.250000Z")

    def test_parse(self):
        self.assertEqual(parse_stamp("2010-06-07T00:00:00Z"), 1275868800.0)
        self.assertEqual(parse_stamp("2010-06-07T02:00:00+02:00"), 1275868800.0)
        self.assertEqual(parse_stamp(" 2010-06-07T00:00:00.5z "), 1275868800.5)
        self.assertEqual(parse_stamp(format_stamp(1275868800.25)), 1275868800.25)

    def test_zone(self):
        self.assertIsNone(parse_stamp("2010-06-07T00:00:00"))
        self.assertEqual(parse_stamp("2010-06-07T00:00:00", zone_required=False), 1275868800.0)

    def test_refused(self):
        for text in ("", "yesterday", "2010-06-07", "2010-06-07 00:00:00Z",
                     "2010-13-07T00:00:00Z", "2010-06-07T25:00:00Z", "2010-06-07T00:00:00+2"):
            self.assertIsNone(parse_stamp(text), text)
            self.assertIsNone(parse_stamp(text, zone_required=False), text)
