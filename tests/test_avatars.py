"""xmppd.avatars: reading images for XEP-0084 avatar metadata."""

from twisted.trial import unittest

from tests.test_modules_vcard import PNG
from xmppd.avatars import image_facts


class ImageFactsTests(unittest.TestCase):
    """image_facts reads type and size from PNG, GIF and JPEG headers, and guesses nothing."""

    def test_png_and_gif(self):
        self.assertEqual(image_facts(PNG), ("image/png", 3, 2))
        self.assertEqual(image_facts(PNG[:20]), ("image/png", None, None))
        self.assertEqual(image_facts(b"GIF89a\x10\x00\x20\x00rest"), ("image/gif", 16, 32))
        self.assertEqual(image_facts(b"GIF87a\x01"), ("image/gif", None, None))

    def test_jpeg(self):
        app0 = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
        sof = b"\xff\xc2\x00\x11\x08\x00\x30\x00\x40\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
        self.assertEqual(image_facts(b"\xff\xd8" + app0 + b"\xff\xff" + sof),
                         ("image/jpeg", 64, 48))
        self.assertEqual(image_facts(b"\xff\xd8" + app0 + b"\xff\xda\x00\x02"),
                         ("image/jpeg", None, None))
        self.assertEqual(image_facts(b"\xff\xd8" + app0[:5]), ("image/jpeg", None, None))

    def test_others(self):
        for data in (b"", b"abc", b"RIFF\x00\x00\x00\x00WEBPVP8 "):
            self.assertEqual(image_facts(data), (None, None, None))
