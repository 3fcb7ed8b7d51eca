"""XEP-0082 date-times: the one formatter and parser of time stamps.

Delays (XEP-0203), archive filters (XEP-0313) and MUC history's ``since``
(XEP-0045) all use XEP-0082's DateTime profile: ``CCYY-MM-DDThh:mm:ss``, an
optional fraction of a second, and a time zone (``Z`` or ``±hh:mm``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_DATETIME = re.compile(
    r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})?")


def format_stamp(seconds: float) -> str:
    """XEP-0082 DateTime (UTC, with microseconds when there are any)."""
    moment = datetime.fromtimestamp(seconds, UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text: str, *, zone_required: bool = True) -> float | None:
    """POSIX time of an XEP-0082 DateTime; None unless it is one.

    XEP-0082 requires the zone; ``zone_required=False`` reads a DateTime
    without one as UTC (what some clients send in MUC history requests).
    """
    match = _DATETIME.fullmatch(text.strip())
    if match is None:
        return None
    base, fraction, zone = match.groups()
    if zone is None:
        if zone_required:
            return None
        zone = "+00:00"
    elif zone in ("Z", "z"):
        zone = "+00:00"
    fraction = (fraction or "")[:6].ljust(6, "0")  # fromisoformat takes at most 6 digits
    try:
        return datetime.fromisoformat(f"{base}.{fraction}{zone}").timestamp()
    except ValueError:
        return None
