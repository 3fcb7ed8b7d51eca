"""Configuration: one TOML file turned into typed, validated settings.

Every key has a default (the embedded default file, ``xmppd/default.toml``,
is the example config ``conf/xmppd.toml``). A bad value or an unknown key
raises :class:`ConfigError` whose message names the file and the key, so the
server can stop with a one-line error.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.words.protocols.jabber import jid as jidlib

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default.toml")

LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
CREATE_ROOMS = ("anyone", "local", "admins")


class ConfigError(Exception):
    """A configuration file that cannot be used; str() is a one-line message."""


@dataclass(frozen=True)
class TLSSettings:
    """Certificate and key paths (absolute, or None to generate one)."""

    certificate: Path | None
    key: Path | None


@dataclass(frozen=True)
class C2SSettings:
    """Client listener settings."""

    listen: str
    direct_tls_listen: str
    require_encryption: bool


@dataclass(frozen=True)
class ComponentSettings:
    """External component (XEP-0114) listener and per-domain secrets."""

    listen: str
    secrets: dict[str, str]


@dataclass(frozen=True)
class MUCSettings:
    """Multi-user chat service settings; domain is None when disabled."""

    domain: str | None
    create_rooms: str
    password_max_failures: int
    password_failure_window: float
    password_backoff: float
    password_backoff_max: float
    message_rate: float
    message_burst: int


@dataclass(frozen=True)
class LimitSettings:
    """Client stream limits ([limits]); 0 turns a timeout, rate or count limit off."""

    max_stanza_size: int
    max_depth: int
    max_attributes: int
    max_elements: int
    max_auth_attempts: int
    negotiation_timeout: float
    idle_timeout: float
    ping_timeout: float
    max_connections_per_ip: int
    max_sessions_per_account: int
    read_rate: int
    read_burst: int
    auth_backoff_after: int
    auth_backoff: float
    auth_backoff_max: float


@dataclass(frozen=True)
class Config:
    """The whole, validated server configuration."""

    path: Path | None
    domain: str
    data_dir: Path
    admins: tuple[str, ...]
    tls: TLSSettings
    c2s: C2SSettings
    components: ComponentSettings
    muc: MUCSettings
    registration_enabled: bool
    log_level: str
    limits: LimitSettings
    shutdown_timeout: float

    @property
    def database_path(self) -> Path:
        """The SQLite database file."""
        return self.data_dir / "xmppd.sqlite"

    @property
    def served_domains(self) -> tuple[str, ...]:
        """Every domain this server answers for (host first, then MUC)."""
        domains = [self.domain]
        if self.muc.domain:
            domains.append(self.muc.domain)
        return tuple(domains)

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed (used by tests)."""
        import dataclasses

        return dataclasses.replace(self, **changes)


# The schema: section -> key -> (type, default). The defaults are read from
# the embedded default file so that the file and the code cannot disagree.
_SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "server": {"domain": str, "data_dir": str, "admins": list, "shutdown_timeout": (int, float)},
    "tls": {"certificate": str, "key": str},
    "c2s": {"listen": str, "direct_tls_listen": str, "require_encryption": bool},
    "components": {"listen": str, "secrets": dict},
    "muc": {
        "domain": str,
        "create_rooms": str,
        "password_max_failures": int,
        "password_failure_window": (int, float),
        "password_backoff": (int, float),
        "password_backoff_max": (int, float),
        "message_rate": (int, float),
        "message_burst": int,
    },
    "registration": {"enabled": bool},
    "log": {"level": str},
    "limits": {
        "max_stanza_size": int,
        "max_depth": int,
        "max_attributes": int,
        "max_elements": int,
        "max_auth_attempts": int,
        "negotiation_timeout": (int, float),
        "idle_timeout": (int, float),
        "ping_timeout": (int, float),
        "max_connections_per_ip": int,
        "max_sessions_per_account": int,
        "read_rate": int,
        "read_burst": int,
        "auth_backoff_after": int,
        "auth_backoff": (int, float),
        "auth_backoff_max": (int, float),
    },
}

# Smallest accepted value of each [limits] key (a stream header must still
# fit through the parser, a client must still be able to log in).
_LIMIT_MINIMUMS: dict[str, float] = {
    "max_stanza_size": 4096,
    "max_depth": 4,
    "max_attributes": 8,
    "max_elements": 16,
    "max_auth_attempts": 1,
    "negotiation_timeout": 0,
    "idle_timeout": 0,
    "ping_timeout": 0,
    "max_connections_per_ip": 0,
    "max_sessions_per_account": 0,
    "read_rate": 0,
    "read_burst": 1,
    "auth_backoff_after": 1,
    "auth_backoff": 0.001,
    "auth_backoff_max": 0.001,
}


class _Reader:
    """Reads typed values out of parsed TOML, naming file:key in errors."""

    def __init__(self, source: str, data: dict[str, Any], defaults: dict[str, Any]):
        self.source = source
        self.data = data
        self.defaults = defaults

    def fail(self, key: str, message: str) -> ConfigError:
        """The error for a key, naming the file."""
        return ConfigError(f"{self.source}: {key}: {message}")

    def check_keys(self) -> None:
        """Refuse unknown sections and keys."""
        for section, value in self.data.items():
            if section not in _SCHEMA:
                raise self.fail(section, "unknown section")
            if not isinstance(value, dict):
                raise self.fail(section, "must be a table ([%s])" % section)
            for key in value:
                if key not in _SCHEMA[section]:
                    raise self.fail(f"{section}.{key}", "unknown key")

    def get(self, section: str, key: str) -> Any:
        """A key's value (or its default), type-checked."""
        expected = _SCHEMA[section][key]
        value = self.data.get(section, {}).get(key, self.defaults[section][key])
        # bool is a subclass of int: never accept one for the other.
        if not isinstance(value, expected) or (
            expected is not bool and isinstance(value, bool)
        ):
            raise self.fail(
                f"{section}.{key}",
                f"must be {_type_name(expected)}, not {_type_name(type(value))}",
            )
        return value


def _type_name(kind: Any) -> str:
    if kind == (int, float):
        return "a number"
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


def _domain(reader: _Reader, key: str, value: str) -> str:
    try:
        parsed = jidlib.JID(value)
    except Exception:
        raise reader.fail(key, f"{value!r} is not a valid domain") from None
    if parsed.user is not None or parsed.resource is not None or not parsed.host:
        raise reader.fail(key, f"{value!r} is not a bare domain")
    return parsed.host


def _endpoint(reader: _Reader, key: str, value: str, optional: bool) -> str:
    if value == "" and optional:
        return ""
    # Validate the description's grammar without creating anything.
    from twisted.internet import endpoints

    try:
        endpoints._parseServer(value, None)
    except Exception as e:
        raise reader.fail(key, f"{value!r} is not a Twisted endpoint description ({e})") from None
    return value


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate a config file; None loads the embedded default.

    Relative paths are resolved against the config file's folder; for the
    embedded default, against the current working directory.
    """
    defaults = _read_toml(DEFAULT_CONFIG_PATH)
    if path is None:
        data, source, base = defaults, "(embedded default)", Path.cwd()
    else:
        path = Path(path)
        data, source = _read_toml(path), str(path)
        base = path.absolute().parent
    return _build(_Reader(source, data, defaults), base, path)


def config_from_dict(data: dict[str, Any], base: Path) -> Config:
    """Build a Config from already-parsed TOML (tests write configs this way)."""
    return _build(_Reader("(dict)", data, _read_toml(DEFAULT_CONFIG_PATH)), base, None)


def _build(r: _Reader, base: Path, path: Path | None) -> Config:
    r.check_keys()
    domain = _domain(r, "server.domain", r.get("server", "domain"))
    data_dir_value = r.get("server", "data_dir")
    if not data_dir_value:
        raise r.fail("server.data_dir", "must not be empty")
    data_dir = (base / data_dir_value).resolve()

    admins = []
    for value in r.get("server", "admins"):
        if not isinstance(value, str):
            raise r.fail("server.admins", "must be a list of bare JIDs")
        try:
            admin = jidlib.JID(value)
        except Exception:
            raise r.fail("server.admins", f"{value!r} is not a valid JID") from None
        if admin.resource is not None:
            raise r.fail("server.admins", f"{value!r} must be a bare JID")
        admins.append(admin.userhost())

    cert, key = r.get("tls", "certificate"), r.get("tls", "key")
    if bool(cert) != bool(key):
        raise r.fail("tls.key" if cert else "tls.certificate",
                      "set both tls.certificate and tls.key, or neither")
    tls = TLSSettings(
        certificate=(base / cert).resolve() if cert else None,
        key=(base / key).resolve() if key else None,
    )

    c2s = C2SSettings(
        listen=_endpoint(r, "c2s.listen", r.get("c2s", "listen"), optional=False),
        direct_tls_listen=_endpoint(
            r, "c2s.direct_tls_listen", r.get("c2s", "direct_tls_listen"), optional=True
        ),
        require_encryption=r.get("c2s", "require_encryption"),
    )

    secrets = {}
    for comp_domain, secret in r.get("components", "secrets").items():
        key_name = f"components.secrets.{comp_domain}"
        if not isinstance(secret, str) or not secret:
            raise r.fail(key_name, "must be a non-empty string")
        secrets[_domain(r, key_name, comp_domain)] = secret
    components = ComponentSettings(
        listen=_endpoint(r, "components.listen", r.get("components", "listen"), optional=True),
        secrets=secrets,
    )

    muc_domain_value = r.get("muc", "domain")
    muc_domain = _domain(r, "muc.domain", muc_domain_value) if muc_domain_value else None
    create_rooms = r.get("muc", "create_rooms")
    if create_rooms not in CREATE_ROOMS:
        raise r.fail("muc.create_rooms", f"must be one of {', '.join(CREATE_ROOMS)}")
    if muc_domain == domain:
        raise r.fail("muc.domain", "must differ from server.domain")
    if muc_domain in secrets or domain in secrets:
        raise r.fail("components.secrets", "a component cannot take a served domain")
    muc = MUCSettings(
        domain=muc_domain,
        create_rooms=create_rooms,
        password_max_failures=int(_at_least(r, "muc", "password_max_failures", 1)),
        password_failure_window=_positive(r, "muc", "password_failure_window"),
        password_backoff=_positive(r, "muc", "password_backoff"),
        password_backoff_max=_positive(r, "muc", "password_backoff_max"),
        message_rate=_positive(r, "muc", "message_rate"),
        message_burst=int(_at_least(r, "muc", "message_burst", 1)),
    )
    if muc.password_backoff_max < muc.password_backoff:
        raise r.fail("muc.password_backoff_max", "must not be less than muc.password_backoff")

    level = r.get("log", "level")
    if level not in LOG_LEVELS:
        raise r.fail("log.level", f"must be one of {', '.join(LOG_LEVELS)}")

    limits = _limits(r)

    return Config(
        path=path,
        domain=domain,
        data_dir=data_dir,
        admins=tuple(admins),
        tls=tls,
        c2s=c2s,
        components=components,
        muc=muc,
        shutdown_timeout=_positive(r, "server", "shutdown_timeout"),
        registration_enabled=r.get("registration", "enabled"),
        log_level=level,
        limits=limits,
    )


def _at_least(r: _Reader, section: str, key: str, minimum: float) -> float:
    value = r.get(section, key)
    if value < minimum:
        raise r.fail(f"{section}.{key}", f"must be at least {minimum:g}")
    return value


def _positive(r: _Reader, section: str, key: str) -> float:
    value = r.get(section, key)
    if value <= 0:
        raise r.fail(f"{section}.{key}", "must be greater than 0")
    return float(value)


def _limits(r: _Reader) -> LimitSettings:
    values: dict[str, Any] = {}
    for key, kind in _SCHEMA["limits"].items():
        value = r.get("limits", key)
        minimum = _LIMIT_MINIMUMS[key]
        if value < minimum:
            raise r.fail(f"limits.{key}", f"must be at least {minimum:g}")
        values[key] = float(value) if kind == (int, float) else value
    if values["auth_backoff_max"] < values["auth_backoff"]:
        raise r.fail("limits.auth_backoff_max", "must not be less than limits.auth_backoff")
    return LimitSettings(**values)

