"""xmppd's loggers: twisted.logger, filtered by the configured level.

twistd owns the log observers, so the level (``log.level``) is applied to
xmppd's own events on their way out: every module logs with
``Logger(observer=observer)``, whose events pass a level filter before they
reach the global publisher (and from there twistd's output or journald).
"""

from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)

_levels = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)

#: The observer xmppd's loggers publish to.
observer = FilteringLogObserver(globalLogPublisher, [_levels])


def logger(namespace: str) -> Logger:
    """A logger for an xmppd module (pass ``__name__``)."""
    return Logger(namespace=namespace, observer=observer)


def set_level(level: str) -> None:
    """Only pass events at this level or above (debug, info, warn, error, critical)."""
    _levels.setLogLevelForNamespace("xmppd", LogLevel.levelWithName(level))
