"""HTTP: one listener (plain and TLS) that modules and services mount paths on.

:mod:`xmppd.http.site` is the listener (limits, trusted proxies, access log)
and :class:`~xmppd.http.site.HTTPService` its seam (``mount``); the
XEP-0156 host-meta documents are in :mod:`xmppd.http.hostmeta`.
"""
