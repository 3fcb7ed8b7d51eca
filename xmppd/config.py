"""Configuration: one TOML file turned into typed, validated settings.

The schema is defined once, as dataclasses: one per section, one field per
key, with its type, its default and, in the field's metadata, its one-line
description, its bounds and whether a reload (SIGHUP) applies it. Core
sections are defined in :mod:`xmppd.sections`; each feature module with settings declares
its own section the same way (``Module.settings``, see :mod:`xmppd.module`).
Everything else is derived from that schema: reading and type-checking
(:func:`load_config`), the reload's list of live keys
(:mod:`xmppd.reload`), and the tests that keep ``conf/xmppd.toml`` (the
embedded default) and README's table in step with it.

A bad value or an unknown key raises :class:`ConfigError` whose message
names the file and the key, so the server can stop with a one-line error.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.words.protocols.jabber import jid as jidlib

from xmppd.sections import (  # noqa: F401 - re-exported: the schema is read from here
    CORE_SECTIONS,
    CREATE_ROOMS,
    LOG_LEVELS,
    BoshSettings,
    C2SSettings,
    ComponentSettings,
    HTTPSettings,
    LimitSettings,
    LogSettings,
    MetricsSettings,
    ModulesSettings,
    MUCSettings,
    PubSubSettings,
    S2SSettings,
    ServerSettings,
    TLSSettings,
    UploadSettings,
    WebSocketSettings,
    setting,
)

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default.toml")




class ConfigError(Exception):
    """A configuration file that cannot be used; str() is a one-line message."""


def module_sections() -> dict[str, type]:
    """The sections the feature modules declare: name -> settings class."""
    from xmppd.modules import MODULES

    return {cls.section or cls.name: cls.settings for cls in MODULES if cls.settings is not None}


def sections() -> dict[str, type]:
    """Every section of the schema, core sections first."""
    return {**CORE_SECTIONS, **module_sections()}


@dataclass(frozen=True)
class Key:
    """One key of the schema, as README and the reload see it."""

    section: str
    name: str
    default: Any
    doc: str
    live: bool

    @property
    def dotted(self) -> str:
        """``section.name``."""
        return f"{self.section}.{self.name}"


def schema_keys() -> Iterator[Key]:
    """Every key of the schema with its default, description and liveness."""
    for section, cls in sections().items():
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            yield Key(section, f.name, default, f.metadata.get("doc", ""),
                      bool(f.metadata.get("live")))


def _show_default(value: Any) -> str:
    if value is None or value == "":
        return '`""`'
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, tuple | list):
        return "`[" + ", ".join(f'"{v}"' for v in value) + "]`"
    if isinstance(value, dict):
        return "`{}`" if not value else f"`{value}`"
    return f"`{value}`"


def markdown_table() -> str:
    """README's table of every key: default, meaning, and whether a reload applies it."""
    rows = ["| key | default | meaning | reload |", "|---|---|---|---|"]
    for key in schema_keys():
        rows.append(f"| `{key.dotted}` | {_show_default(key.default)} | {key.doc} | "
                    f"{'applied' if key.live else 'restart'} |")
    return "\n".join(rows)


@dataclass(frozen=True)
class Config:
    """The whole, validated server configuration: one settings object per section."""

    path: Path | None
    server: ServerSettings
    tls: TLSSettings
    c2s: C2SSettings
    components: ComponentSettings
    muc: MUCSettings
    pubsub: PubSubSettings
    log: LogSettings
    limits: LimitSettings
    modules: ModulesSettings
    #: The feature modules' sections: section name -> settings object.
    module_settings: dict[str, Any] = field(default_factory=dict)
    #: server.data_dir resolved against the config file's folder.
    data_dir: Path = Path("data")
    http: HTTPSettings = field(default_factory=HTTPSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    upload: UploadSettings = field(default_factory=lambda: UploadSettings(domain=None))
    websocket: WebSocketSettings = field(default_factory=WebSocketSettings)
    bosh: BoshSettings = field(default_factory=BoshSettings)
    s2s: S2SSettings = field(default_factory=S2SSettings)

    @property
    def domain(self) -> str:
        """The domain users live on."""
        return self.server.domain

    @property
    def admins(self) -> tuple[str, ...]:
        """Bare JIDs with service administrator rights."""
        return self.server.admins

    @property
    def shutdown_timeout(self) -> float:
        """Seconds a graceful shutdown may take."""
        return self.server.shutdown_timeout

    @property
    def log_level(self) -> str:
        """The log level."""
        return self.log.level

    def section(self, name: str) -> Any:
        """A feature module's settings by section name."""
        return self.module_settings[name]

    def settings_for(self, module_class: Any) -> Any:
        """A module class's settings object (None if it has no section)."""
        if module_class.settings is None:
            return None
        return self.module_settings[module_class.section or module_class.name]

    @property
    def registration_enabled(self) -> bool:
        """Whether account creation over client connections is open."""
        return "register" not in self.modules.disabled and self.section("registration").enabled

    @property
    def database_path(self) -> Path:
        """The SQLite database file."""
        return self.data_dir / "xmppd.sqlite"

    @property
    def served_domains(self) -> tuple[str, ...]:
        """Every domain this server answers for: host, MUC, pubsub, upload.

        The upload domain counts only with an HTTP listener (without one
        there is no upload service). External components' domains are
        not included: they are served by the components themselves.
        """
        domains = [self.domain]
        if self.muc.domain:
            domains.append(self.muc.domain)
        if self.pubsub.domain:
            domains.append(self.pubsub.domain)
        if self.upload.domain and (self.http.listen or self.http.tls_listen):
            domains.append(self.upload.domain)
        return tuple(domains)

    @property
    def control_socket(self) -> Path | None:
        """The control socket's path (``server.control_socket`` in ``data_dir``), or None."""
        if not self.server.control_socket:
            return None
        return self.data_dir / self.server.control_socket

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


# -- reading -------------------------------------------------------------------------


class _Reader:
    """Reads typed values out of parsed TOML, naming file:key in errors."""

    def __init__(self, source: str, data: dict[str, Any]):
        self.source = source
        self.data = data
        self.sections = sections()

    def fail(self, key: str, message: str) -> ConfigError:
        """The error for a key, naming the file."""
        return ConfigError(f"{self.source}: {key}: {message}")

    def check_keys(self) -> None:
        """Refuse unknown sections and keys."""
        for section, value in self.data.items():
            if section not in self.sections:
                raise self.fail(section, "unknown section")
            if not isinstance(value, dict):
                raise self.fail(section, "must be a table ([%s])" % section)
            known = {f.name for f in dataclasses.fields(self.sections[section])}
            for key in value:
                if key not in known:
                    raise self.fail(f"{section}.{key}", "unknown key")

    def section(self, name: str) -> Any:
        """A section's settings object: every key type-checked and bounded."""
        cls = self.sections[name]
        given = self.data.get(name, {})
        hints = typing.get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            key = f"{name}.{f.name}"
            if f.name not in given:
                continue
            values[f.name] = self._check(key, hints[f.name], given[f.name], f.metadata)
        return cls(**values)

    def _check(self, key: str, hint: Any, value: Any, meta: Any) -> Any:
        value = _coerce(self, key, hint, value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            minimum = meta.get("minimum")
            if minimum is not None and value < minimum:
                raise self.fail(key, f"must be at least {minimum:g}")
            if meta.get("positive") and value <= 0:
                raise self.fail(key, "must be greater than 0")
        choices = meta.get("choices")
        if choices and value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}")
        return value


def _coerce(r: _Reader, key: str, hint: Any, value: Any) -> Any:
    """Type-check a TOML value against a field's annotation (bool is never an int)."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):  # X | None: TOML has no null, "" stands for it
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
        origin = typing.get_origin(hint)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise r.fail(key, f"must be a number, not {_type_name(type(value))}")
        return float(value)
    if hint is Path:
        hint = str
    if origin is tuple:
        if not isinstance(value, list):
            raise r.fail(key, f"must be a list, not {_type_name(type(value))}")
        item = typing.get_args(hint)[0]
        if item is dict or typing.get_origin(item) is dict:
            if not all(isinstance(v, dict) for v in value):
                raise r.fail(key, "must be a list of tables")
            return tuple(dict(v) for v in value)
        if not all(isinstance(v, str) for v in value):
            raise r.fail(key, "must be a list of strings")
        return tuple(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise r.fail(key, f"must be a table, not {_type_name(type(value))}")
        return dict(value)
    if not isinstance(value, hint) or (hint is not bool and isinstance(value, bool)):
        raise r.fail(key, f"must be {_type_name(hint)}, not {_type_name(type(value))}")
    return value


def _type_name(kind: Any) -> str:
    return {
        str: "a string",
        bool: "true or false",
        list: "a list",
        dict: "a table",
        int: "an integer",
        float: "a number",
    }.get(kind, getattr(kind, "__name__", str(kind)))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate a config file; None loads the embedded default.

    Relative paths are resolved against the config file's folder; for the
    embedded default, against the current working directory.
    """
    if path is None:
        data, source, base = _read_toml(DEFAULT_CONFIG_PATH), "(embedded default)", Path.cwd()
    else:
        path = Path(path)
        data, source = _read_toml(path), str(path)
        base = path.absolute().parent
    return _build(_Reader(source, data), base, path)


def config_from_dict(data: dict[str, Any], base: Path) -> Config:
    """Build a Config from already-parsed TOML (tests write configs this way)."""
    return _build(_Reader("(dict)", data), base, None)


# -- checks that span keys or need more than a type --------------------------------------

def _domain(r: _Reader, key: str, value: str) -> str:
    try:
        parsed = jidlib.JID(value)
    except Exception:
        raise r.fail(key, f"{value!r} is not a valid domain") from None
    if parsed.user is not None or parsed.resource is not None or not parsed.host:
        raise r.fail(key, f"{value!r} is not a bare domain")
    return parsed.host


def _endpoint(r: _Reader, key: str, value: str, optional: bool) -> str:
    if value == "" and optional:
        return ""
    from twisted.internet import endpoints

    try:
        endpoints._parseServer(value, None)
    except Exception as e:
        raise r.fail(key, f"{value!r} is not a Twisted endpoint description ({e})") from None
    return value


def _server(r: _Reader, base: Path) -> tuple[ServerSettings, Path]:
    server = r.section("server")
    if not server.data_dir:
        raise r.fail("server.data_dir", "must not be empty")
    admins = []
    for value in server.admins:
        try:
            admin = jidlib.JID(value)
        except Exception:
            raise r.fail("server.admins", f"{value!r} is not a valid JID") from None
        if admin.resource is not None:
            raise r.fail("server.admins", f"{value!r} must be a bare JID")
        admins.append(admin.userhost())
    server = dataclasses.replace(server, domain=_domain(r, "server.domain", server.domain),
                                 admins=tuple(admins))
    return server, (base / server.data_dir).resolve()


def _tls(r: _Reader, base: Path) -> TLSSettings:
    raw = r.data.get("tls", {})
    r.section("tls")  # type checks
    cert, key = raw.get("certificate", ""), raw.get("key", "")
    if bool(cert) != bool(key):
        raise r.fail("tls.key" if cert else "tls.certificate",
                     "set both tls.certificate and tls.key, or neither")
    return TLSSettings(certificate=(base / cert).resolve() if cert else None,
                       key=(base / key).resolve() if key else None)


def _components(r: _Reader) -> ComponentSettings:
    components = r.section("components")
    secrets = {}
    for comp_domain, secret in components.secrets.items():
        key_name = f"components.secrets.{comp_domain}"
        if not isinstance(secret, str) or not secret:
            raise r.fail(key_name, "must be a non-empty string")
        secrets[_domain(r, key_name, comp_domain)] = secret
    listen = _endpoint(r, "components.listen", components.listen, optional=True)
    return ComponentSettings(listen=listen, secrets=secrets)


def _muc(r: _Reader, domain: str, secrets: dict[str, str]) -> MUCSettings:
    muc = r.section("muc")
    muc_domain = _domain(r, "muc.domain", muc.domain) if muc.domain else None
    if muc_domain == domain:
        raise r.fail("muc.domain", "must differ from server.domain")
    if muc_domain in secrets or domain in secrets:
        raise r.fail("components.secrets", "a component cannot take a served domain")
    if muc.password_backoff_max < muc.password_backoff:
        raise r.fail("muc.password_backoff_max", "must not be less than muc.password_backoff")
    return dataclasses.replace(muc, domain=muc_domain)


def _pubsub(r: _Reader, domain: str, muc: str | None,
            secrets: dict[str, str]) -> PubSubSettings:
    pubsub = r.section("pubsub")
    pubsub_domain = _domain(r, "pubsub.domain", pubsub.domain) if pubsub.domain else None
    if pubsub_domain == domain or (pubsub_domain and pubsub_domain == muc):
        raise r.fail("pubsub.domain", "must differ from server.domain and muc.domain")
    if pubsub_domain in secrets:
        raise r.fail("components.secrets", "a component cannot take a served domain")
    return dataclasses.replace(pubsub, domain=pubsub_domain)


def _s2s(r: _Reader, base: Path, served: tuple[str | None, ...]) -> S2SSettings:
    s2s = r.section("s2s")
    listen = _endpoint(r, "s2s.listen", s2s.listen, optional=True)
    direct_tls_listen = _endpoint(r, "s2s.direct_tls_listen", s2s.direct_tls_listen,
                                  optional=True)
    routes = {}
    for remote, endpoint in s2s.routes.items():
        key = f"s2s.routes.{remote}"
        if not isinstance(endpoint, str) or not endpoint:
            raise r.fail(key, "must be a non-empty string")
        remote = _domain(r, key, remote)
        if remote in served:
            raise r.fail(key, "a served domain cannot be a remote one")
        try:
            from twisted.internet import endpoints

            endpoints.clientFromString(None, endpoint)
        except Exception as e:
            raise r.fail(key, f"{endpoint!r} is not a Twisted client endpoint ({e})") from None
        routes[remote] = endpoint
    trusted = tuple(_domain(r, "s2s.trusted_domains", d) for d in s2s.trusted_domains)
    insecure = tuple(_domain(r, "s2s.insecure_domains", d) for d in s2s.insecure_domains)
    both = set(trusted) & set(insecure)
    if both:
        raise r.fail("s2s.insecure_domains", f"{sorted(both)[0]!r} is also trusted")
    ca_file = str((base / s2s.ca_file).resolve()) if s2s.ca_file else ""
    if ca_file and not Path(ca_file).is_file():
        raise r.fail("s2s.ca_file", f"{ca_file}: no such file")
    return dataclasses.replace(s2s, listen=listen, direct_tls_listen=direct_tls_listen,
                               routes=routes, trusted_domains=trusted,
                               insecure_domains=insecure, ca_file=ca_file)


def _modules(r: _Reader) -> ModulesSettings:
    from xmppd.modules import switchable_modules

    modules = r.section("modules")
    known = switchable_modules()
    for name in modules.disabled:
        if name not in known:
            raise r.fail("modules.disabled",
                         f"no module is called {name!r} (known: {', '.join(sorted(known))})")
        if known[name].essential:
            raise r.fail("modules.disabled", f"{name!r} cannot be switched off")
    return modules


def _build(r: _Reader, base: Path, path: Path | None) -> Config:
    # The web sections' checks live with the web (they use this module's reader).
    from xmppd.webconfig import (
        bosh_settings,
        http_settings,
        metrics_settings,
        upload_settings,
        websocket_settings,
    )

    r.check_keys()
    server, data_dir = _server(r, base)
    c2s = r.section("c2s")
    c2s = dataclasses.replace(
        c2s,
        listen=_endpoint(r, "c2s.listen", c2s.listen, optional=False),
        direct_tls_listen=_endpoint(r, "c2s.direct_tls_listen", c2s.direct_tls_listen,
                                    optional=True),
    )
    components = _components(r)
    limits = r.section("limits")
    if limits.auth_backoff_max < limits.auth_backoff:
        raise r.fail("limits.auth_backoff_max", "must not be less than limits.auth_backoff")
    muc = _muc(r, server.domain, components.secrets)
    pubsub = _pubsub(r, server.domain, muc.domain, components.secrets)
    module_settings = {}
    for name, cls in module_sections().items():
        settings = r.section(name)
        check = getattr(cls, "check", None)
        if check is not None:
            problem = check(settings)
            if problem:
                key, message = problem
                raise r.fail(f"{name}.{key}", message)
        module_settings[name] = settings
    upload = upload_settings(r, (server.domain, muc.domain, pubsub.domain), components.secrets)
    return Config(
        path=path,
        server=server,
        tls=_tls(r, base),
        c2s=c2s,
        components=components,
        muc=muc,
        pubsub=pubsub,
        log=r.section("log"),
        limits=limits,
        modules=_modules(r),
        module_settings=module_settings,
        data_dir=data_dir,
        http=http_settings(r),
        upload=upload,
        metrics=metrics_settings(r),
        websocket=websocket_settings(r),
        bosh=bosh_settings(r),
        s2s=_s2s(r, base, (server.domain, muc.domain, pubsub.domain, upload.domain)),
    )
