"""xmppd.gcpolicy: the collector settings of a server process."""

import gc

from twisted.trial import unittest

from xmppd import gcpolicy


class TuneTests(unittest.TestCase):
    """tune_for_server freezes start-up objects and raises the thresholds; restore undoes it."""

    def test_tune_and_restore(self):
        before = gc.get_threshold()
        previous = gcpolicy.tune_for_server()
        self.addCleanup(gcpolicy.restore, previous)
        self.assertEqual(previous, before)
        self.assertEqual(gc.get_threshold(), (gcpolicy.YOUNG_THRESHOLD,
                                              gcpolicy.MIDDLE_THRESHOLD,
                                              gcpolicy.OLD_THRESHOLD))
        self.assertGreater(gc.get_freeze_count(), 0)
        gcpolicy.restore(previous)
        self.assertEqual(gc.get_threshold(), before)
        self.assertEqual(gc.get_freeze_count(), 0)


class ReturnFreeMemoryTests(unittest.TestCase):
    """return_free_memory: glibc's malloc_trim where there is one."""

    def test_on_this_system(self):
        import ctypes
        import ctypes.util

        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            expected = False
        else:
            expected = hasattr(libc, "malloc_trim")
        self.assertIs(gcpolicy.return_free_memory(), expected)
        self.assertIs(gcpolicy.return_free_memory(), expected)  # (looked up once)
