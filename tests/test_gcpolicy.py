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
