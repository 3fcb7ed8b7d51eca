"""Authentication through twisted.cred: a portal over the account store.

SASL mechanisms turn what the client proved into credentials and log in
through the portal, which answers with an :class:`IAccount` avatar:

* PLAIN gives ``twisted.cred.credentials.UsernamePassword``; the
  :class:`PasswordChecker` verifies it against the stored SCRAM keys.
* SCRAM-* verify the client's proof against the stored keys during the
  exchange, then present :class:`ScramVerified`; the :class:`ScramChecker`
  only confirms the account still exists (it may have been deleted while the
  exchange ran).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.cred import checkers, credentials, error, portal
from twisted.internet import defer
from zope.interface import Attribute, Interface, implementer

from xmppd.storage.accounts import AccountStore, InvalidUsername, prepare_username


class IAccount(Interface):
    """The avatar of an authenticated user."""

    username = Attribute("The account's normalised username (JID local part).")


@implementer(IAccount)
@dataclass(frozen=True)
class Account:
    """An authenticated account."""

    username: str


class IScramVerified(credentials.ICredentials):
    """A username whose SCRAM proof the SASL layer has already verified."""

    username = Attribute("The normalised username.")


@implementer(IScramVerified)
@dataclass(frozen=True)
class ScramVerified:
    """Credentials for a completed, successful SCRAM exchange."""

    username: str


@implementer(checkers.ICredentialsChecker)
class PasswordChecker:
    """Checks a username and clear-text password against stored SCRAM keys."""

    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(self, accounts: AccountStore):
        self.accounts = accounts

    @defer.inlineCallbacks
    def requestAvatarId(self, creds):
        """Fire with the normalised username, or fail with UnauthorizedLogin."""
        username = creds.username
        password = creds.password
        if isinstance(username, bytes):
            username = username.decode("utf-8")
        if isinstance(password, bytes):
            password = password.decode("utf-8")
        try:
            username = prepare_username(username)
        except InvalidUsername:
            raise error.UnauthorizedLogin() from None
        ok = yield self.accounts.check_password(username, password)
        if not ok:
            raise error.UnauthorizedLogin()
        return username


@implementer(checkers.ICredentialsChecker)
class ScramChecker:
    """Accepts a SCRAM-verified username whose account still exists."""

    credentialInterfaces = (IScramVerified,)

    def __init__(self, accounts: AccountStore):
        self.accounts = accounts

    @defer.inlineCallbacks
    def requestAvatarId(self, creds):
        """Fire with the username, or fail with UnauthorizedLogin."""
        exists = yield self.accounts.exists(creds.username)
        if not exists:
            raise error.UnauthorizedLogin()
        return creds.username


@implementer(portal.IRealm)
class AccountRealm:
    """Turns an authenticated username into an :class:`Account` avatar."""

    def requestAvatar(self, avatarId, mind, *interfaces):
        """Return (IAccount, Account, logout) for an authenticated username."""
        if IAccount not in interfaces:
            raise NotImplementedError("only IAccount avatars are offered")
        return IAccount, Account(avatarId), lambda: None


def make_portal(accounts: AccountStore) -> portal.Portal:
    """The portal the SASL layer logs in through."""
    return portal.Portal(AccountRealm(), [PasswordChecker(accounts), ScramChecker(accounts)])
