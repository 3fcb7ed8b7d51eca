"""What a configuration reload (SIGHUP) may change, and what needs a restart.

:func:`config_changes` lists every key whose value differs between the
running and the newly read configuration. Keys in :data:`LIVE_KEYS` are
applied to the running server (see ``XMPPServer.reload``); every other
change (listen addresses, domains, data directory, component secrets, and
any key added later that nobody taught the reload about) is reported as
"needs a restart" and not applied: :func:`merged_config` keeps the running
value of those, so the next reload reports them again until a restart.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from xmppd.config import Config

#: Keys applied on reload -> the attribute path in :class:`Config`.
LIVE_KEYS: dict[str, tuple[str, ...]] = {
    "log.level": ("log_level",),
    "registration.enabled": ("registration_enabled",),
    "server.admins": ("admins",),
    "muc.create_rooms": ("muc", "create_rooms"),
    "c2s.require_encryption": ("c2s", "require_encryption"),
    "tls.certificate": ("tls", "certificate"),
    "tls.key": ("tls", "key"),
}

#: Top-level Config fields -> their TOML key (nested sections use section.key).
_TOP_LEVEL_KEYS = {
    "domain": "server.domain",
    "data_dir": "server.data_dir",
    "admins": "server.admins",
    "registration_enabled": "registration.enabled",
    "log_level": "log.level",
}
_IGNORED = frozenset({"path"})


@dataclasses.dataclass(frozen=True)
class Change:
    """One configuration key whose value changed."""

    key: str
    path: tuple[str, ...]
    old: Any
    new: Any

    @property
    def live(self) -> bool:
        """Whether the running server can apply this change."""
        return self.key in LIVE_KEYS

    def describe(self) -> str:
        """``key: old -> new`` (secret values are not shown)."""
        if "secret" in self.key:
            return f"{self.key}: changed"
        return f"{self.key}: {_show(self.old)} -> {_show(self.new)}"


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return repr(value) if isinstance(value, str) else str(value)


def config_changes(old: Config, new: Config) -> list[Change]:
    """Every key whose value differs, in the order of the Config fields."""
    changes: list[Change] = []
    for field in dataclasses.fields(old):
        name = field.name
        if name in _IGNORED:
            continue
        before, after = getattr(old, name), getattr(new, name)
        if dataclasses.is_dataclass(before) and dataclasses.is_dataclass(after):
            for sub in dataclasses.fields(before):
                b, a = getattr(before, sub.name), getattr(after, sub.name)
                if b != a:
                    changes.append(Change(f"{name}.{sub.name}", (name, sub.name), b, a))
        elif before != after:
            changes.append(Change(_TOP_LEVEL_KEYS.get(name, name), (name,), before, after))
    return changes


def _with(config: Any, path: tuple[str, ...], value: Any) -> Any:
    if len(path) == 1:
        return dataclasses.replace(config, **{path[0]: value})
    inner = _with(getattr(config, path[0]), path[1:], value)
    return dataclasses.replace(config, **{path[0]: inner})


def merged_config(running: Config, changes: list[Change], path: Any = None) -> Config:
    """The running config with the live changes applied (and ``path`` if given)."""
    merged = running
    for change in changes:
        if change.live:
            merged = _with(merged, change.path, change.new)
    if path is not None:
        merged = dataclasses.replace(merged, path=path)
    return merged
