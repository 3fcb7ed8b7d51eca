"""xmppd.muc.features.core: the muc feature of the service and of every room."""

from __future__ import annotations

from twisted.trial import unittest

from xmppd.module import ModuleHost, Scope
from xmppd.muc.features import BY_NAME, MUC_MODULES
from xmppd.muc.features.core import Core

NS_MUC = "http://jabber.org/protocol/muc"


class CoreTests(unittest.TestCase):
    def test_muc_feature_in_both_scopes(self):
        host = ModuleHost(None, [Core])
        self.assertEqual(host.features(Scope.MUC_SERVICE), [NS_MUC])
        self.assertEqual(host.features(Scope.ROOM, object()), [NS_MUC])

    def test_module_list(self):
        self.assertEqual(len(BY_NAME), len(MUC_MODULES))
        self.assertEqual(
            list(BY_NAME),
            ["disco", "register", "muc", "adhoc", "password", "members-only", "moderation",
             "owner", "admin", "invitations", "history", "archive",
             "message-moderation", "occupant-id"],
        )
