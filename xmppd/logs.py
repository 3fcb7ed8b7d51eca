"""xmppd's loggers: twisted.logger, filtered by the configured level.

twistd owns the log observers, so the level (``log.level``) is applied to
xmppd's own events on their way out: every module logs with
``Logger(observer=observer)``, whose events pass a level filter before they
reach the global publisher (and from there twistd's output or journald).

Output format: twistd's default observer writes one line per event with a
timestamp, ``[namespace#level]`` and the message. Under systemd's journal
(``$JOURNAL_STREAM`` names our standard output) :func:`journal_observer`
is used instead: no timestamp (journald adds its own) and a ``<N>`` syslog
priority prefix on every line, so ``journalctl -p warning`` works.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogPublisher,
)
from zope.interface import implementer

_levels = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)

#: The observer xmppd's loggers publish to.
observer = FilteringLogObserver(globalLogPublisher, [_levels])

#: syslog priorities (sd-daemon(3) prefixes) of twisted.logger levels.
_PRIORITIES = {
    LogLevel.debug: 7,
    LogLevel.info: 6,
    LogLevel.warn: 4,
    LogLevel.error: 3,
    LogLevel.critical: 2,
}


def logger(namespace: str) -> Logger:
    """A logger for an xmppd module (pass ``__name__``)."""
    return Logger(namespace=namespace, observer=observer)


def set_level(level: str) -> None:
    """Only pass events at this level or above (debug, info, warn, error, critical)."""
    _levels.setLogLevelForNamespace("xmppd", LogLevel.levelWithName(level))


def current_level() -> str:
    """The level xmppd's events currently pass at (e.g. ``"info"``)."""
    return _levels.logLevelForNamespace("xmppd").name


def is_enabled(level: str, namespace: str = "xmppd") -> bool:
    """Whether an event at this level in this namespace would be logged."""
    return LogLevel.levelWithName(level) >= _levels.logLevelForNamespace(namespace)


def format_journal_event(event: Mapping[str, Any]) -> str | None:
    """One event as journald lines: ``<priority>namespace: message`` each."""
    text = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        try:
            text += "\n" + failure.getTraceback().rstrip("\n")
        except Exception:
            text += "\n(unable to format the traceback)"
    if not text:
        return None
    priority = _PRIORITIES.get(event.get("log_level"), 6)
    namespace = event.get("log_namespace", "-")
    return "".join(f"<{priority}>{namespace}: {line}\n" for line in text.splitlines())


@implementer(ILogObserver)
class JournalObserver:
    """Writes events in the journald stream format (see :func:`format_journal_event`)."""

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def __call__(self, event: Mapping[str, Any]) -> None:
        """Write one event."""
        text = format_journal_event(event)
        if text:
            self.stream.write(text)
            self.stream.flush()


def under_journald(environ: Mapping[str, str] | None = None, stream: IO[Any] | None = None) -> bool:
    """Whether ``stream`` (standard output) is connected to systemd's journal.

    systemd sets ``$JOURNAL_STREAM`` to ``device:inode`` of the stream socket
    it gave the service as standard output/error.
    """
    environ = os.environ if environ is None else environ
    stream = sys.stdout if stream is None else stream
    value = environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        status = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (status.st_dev, status.st_ino) == (int(device), int(inode))


def journal_observer() -> JournalObserver:
    """A journald observer on standard output (``twistd --logger=xmppd.logs.journal_observer``)."""
    return JournalObserver(sys.stdout)


def peer_of(transport) -> str:
    """``host:port`` of a connection's peer, for log messages ("?" when unknown)."""
    try:
        peer = transport.getPeer()
        return f"{peer.host}:{peer.port}"
    except Exception:  # noqa: BLE001 - a log line must never fail
        return "?"
