"""What a configuration reload (SIGHUP) may change, and what needs a restart.

:func:`config_changes` lists every key whose value differs between the
running and the newly read configuration, named ``section.key`` exactly as
in the file. Whether a key is applied to the running server comes from the
schema (``live=True`` in its :func:`xmppd.config.setting`); every other
change (listen addresses, domains, data directory, component secrets, and
any key added later that nobody marked live) is reported as "needs a
restart" and not applied: :func:`merged_config` keeps the running value of
those, so the next reload reports them again until a restart.

:func:`apply_reload` is what ``XMPPServer.reload`` (SIGHUP) does with them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from xmppd import logs
from xmppd.config import CORE_SECTIONS, Config, ConfigError, load_config, schema_keys
from xmppd.logs import logger

log = logger(__name__)


def live_keys() -> frozenset[str]:
    """The ``section.key`` names a reload applies, from the schema."""
    return frozenset(key.dotted for key in schema_keys() if key.live)


@dataclasses.dataclass(frozen=True)
class Change:
    """One configuration key whose value changed."""

    section: str
    name: str
    old: Any
    new: Any
    live: bool

    @property
    def key(self) -> str:
        """``section.key``, as in the file."""
        return f"{self.section}.{self.name}"

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


def _sections(config: Config) -> dict[str, Any]:
    found = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
             if dataclasses.is_dataclass(getattr(config, f.name))}
    found.update(config.module_settings)
    return found


def config_changes(old: Config, new: Config) -> list[Change]:
    """Every key whose value differs, section by section in schema order."""
    live = live_keys()
    before, after = _sections(old), _sections(new)
    changes: list[Change] = []
    for section, settings in before.items():
        other = after[section]
        for f in dataclasses.fields(settings):
            b, a = getattr(settings, f.name), getattr(other, f.name)
            if b != a:
                changes.append(Change(section, f.name, b, a, f"{section}.{f.name}" in live))
    return changes


def merged_config(running: Config, changes: list[Change], path: Any = None) -> Config:
    """The running config with the live changes applied (and ``path`` if given)."""
    sections = _sections(running)
    for change in changes:
        if change.live:
            sections[change.section] = dataclasses.replace(
                sections[change.section], **{change.name: change.new})
    core = {name: value for name, value in sections.items() if name in CORE_SECTIONS}
    modules = {name: value for name, value in sections.items() if name not in CORE_SECTIONS}
    merged = dataclasses.replace(running, **core, module_settings=modules)
    if path is not None:
        merged = dataclasses.replace(merged, path=path)
    return merged


@dataclass
class ReloadResult:
    """What a configuration reload did."""

    #: Why the new file was refused (the running configuration stays), or None.
    rejected: str | None = None
    #: Changes applied, as ``key: old -> new`` lines.
    applied: list[str] = field(default_factory=list)
    #: Changes that need a restart (not applied).
    needs_restart: list[str] = field(default_factory=list)
    #: Whether new connections now get a different certificate.
    new_certificate: bool = False


def apply_reload(server: Any) -> ReloadResult:
    """Re-read the server's configuration file and apply it (see ``XMPPServer.reload``)."""
    from xmppd.service import StartupError  # the server's start-up errors (no import cycle)

    path = server.config.path
    source = str(path) if path is not None else "(embedded default)"
    log.info("reloading the configuration from {source}", source=source)
    try:
        new = load_config(path)
    except ConfigError as e:
        return _reject(str(e))
    changes = config_changes(server.config, new)
    merged = merged_config(server.config, changes, path)
    running_paths = server.tls_paths
    try:
        tls_options, fingerprint = server._load_tls(merged)
        s2s_options = _s2s_tls_options(server)
    except StartupError as e:
        server.tls_paths = running_paths
        return _reject(str(e))

    result = ReloadResult()
    logs.set_level("debug" if server.force_debug else merged.log_level)
    for factory in server.client_factories():
        factory.tls_options = tls_options
        factory.config = merged
    server.tls_options = tls_options
    if s2s_options is not None:  # new S2S streams, both directions; open ones keep theirs
        server.s2s.replace_tls(*s2s_options)
    if server.session_manager is not None:
        for module in server.session_manager.modules:
            if module.settings is not None:
                module.config = merged.settings_for(type(module))
    if server.muc is not None:
        server.muc.reload(merged.muc, merged.admins)
    server.config = merged

    for change in changes:
        if change.live:
            result.applied.append(change.describe())
            log.info("reload: {change} (applied)", change=change.describe())
        else:
            result.needs_restart.append(change.describe())
            log.warn("reload: {change} needs a restart; not applied",
                     change=change.describe())
    if fingerprint != server.tls_fingerprint:
        result.new_certificate = True
        server.tls_fingerprint = fingerprint
        log.info("reload: new TLS certificate (SHA-256 {fingerprint}) for new connections",
                 fingerprint=fingerprint)
    if not (changes or result.new_certificate):
        log.info("reload: the configuration is unchanged")
    return result


def _s2s_tls_options(server: Any) -> Any:
    """The S2S TLS options for the (new) certificate, None without federation."""
    if server.s2s is None:
        return None
    from xmppd import tls
    from xmppd.s2s.setup import s2s_tls_options
    from xmppd.service import StartupError

    try:
        return s2s_tls_options(server.tls_paths)
    except tls.CertificateProblem as e:
        raise StartupError(f"tls: {e}") from None


def _reject(reason: str) -> ReloadResult:
    log.error("configuration reload rejected, the running configuration stays: {reason}",
              reason=reason)
    return ReloadResult(rejected=reason)
