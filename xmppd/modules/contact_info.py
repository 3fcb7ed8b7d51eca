"""Server contact addresses (XEP-0157) and outage status (XEP-0455) in disco#info.

``[contact_info]`` lists URIs (``mailto:``, ``xmpp:``, ``https:`` ...) per
kind of contact; they are published in the server's disco#info as the
``http://jabber.org/network/serverinfo`` form (XEP-0128). ``outage_status``
lists where the service's status is published outside XMPP; it becomes the
``urn:xmpp:sos:0`` form with ``external-status-addresses``. Nothing is
published while a form would be empty.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from urllib.parse import urlsplit

from wokkel import data_form

from xmppd.config import setting
from xmppd.module import Module, Scope

NS_SERVERINFO = "http://jabber.org/network/serverinfo"
NS_SOS = "urn:xmpp:sos:0"
#: The contact kinds of XEP-0157, each published as ``<kind>-addresses``.
KINDS = ("abuse", "admin", "feedback", "sales", "security", "status", "support")


@dataclass(frozen=True)
class ContactInfoSettings:
    """``[contact_info]``: URIs per kind of contact, and outage status pages."""

    abuse: tuple[str, ...] = setting((), "where to report abuse (URIs)", live=True)
    admin: tuple[str, ...] = setting((), "the administrators (URIs)", live=True)
    feedback: tuple[str, ...] = setting((), "where to send feedback (URIs)", live=True)
    sales: tuple[str, ...] = setting((), "sales contacts (URIs)", live=True)
    security: tuple[str, ...] = setting((), "where to report security issues (URIs)",
                                        live=True)
    status: tuple[str, ...] = setting((), "where the service status is told (URIs)",
                                      live=True)
    support: tuple[str, ...] = setting((), "where to get support (URIs)", live=True)
    outage_status: tuple[str, ...] = setting(
        (), "status pages outside XMPP (XEP-0455 `external-status-addresses`)", live=True)

    def check(self) -> tuple[str, str] | None:
        """(key, message) for the first value that is not a URI, else None."""
        for f in fields(self):
            for value in getattr(self, f.name):
                if not urlsplit(value).scheme or any(c.isspace() for c in value):
                    return f.name, f"{value!r} is not a URI (e.g. mailto:, xmpp:, https:)"
        return None


class ContactInfo(Module):
    """Publishes the contact addresses and outage status forms for the server."""

    name = "contact_info"
    settings = ContactInfoSettings

    def disco_forms(self, scope: Scope) -> list[data_form.Form]:
        """The serverinfo and sos forms, for the server's disco#info only."""
        if scope is not Scope.SERVER:
            return []
        forms = []
        if any(getattr(self.config, kind) for kind in KINDS):
            forms.append(_form(NS_SERVERINFO, [
                (f"{kind}-addresses", getattr(self.config, kind)) for kind in KINDS
            ]))
        if self.config.outage_status:
            forms.append(_form(NS_SOS, [("external-status-addresses",
                                         self.config.outage_status)]))
        return forms


def _form(namespace: str, values: list[tuple[str, tuple[str, ...]]]) -> data_form.Form:
    form = data_form.Form("result", formNamespace=namespace)
    for var, addresses in values:
        form.addField(data_form.Field("list-multi", var=var, values=list(addresses)))
    return form
