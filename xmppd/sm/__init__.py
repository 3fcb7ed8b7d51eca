"""The session manager: users' sessions, presence, rosters, messages, server iqs.

:class:`xmppd.sm.manager.SessionManager` is the entry point; the modules next
to it each handle one part of RFC 6121 (see their docstrings).
"""
