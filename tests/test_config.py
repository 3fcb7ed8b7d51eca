"""Tests for xmppd.config: defaults, path resolution and one-line errors."""

from pathlib import Path

from twisted.trial import unittest

from xmppd.config import DEFAULT_CONFIG_PATH, ConfigError, config_from_dict, load_config

REPO = Path(__file__).resolve().parent.parent


class DefaultsTests(unittest.TestCase):
    """The embedded default is the example config."""

    def test_embedded_default_is_the_example_config(self):
        self.assertEqual(
            DEFAULT_CONFIG_PATH.read_bytes(), (REPO / "conf" / "xmppd.toml").read_bytes()
        )

    def test_defaults(self):
        config = load_config(None)
        self.assertEqual(config.domain, "localhost")
        self.assertEqual(config.muc.domain, "conference.localhost")
        self.assertEqual(config.c2s.listen, "tcp:5222")
        self.assertEqual(config.c2s.direct_tls_listen, "tcp:5223")
        self.assertTrue(config.c2s.require_encryption)
        self.assertFalse(config.registration_enabled)
        self.assertEqual(config.served_domains, ("localhost", "conference.localhost",
                                                 "pubsub.localhost", "upload.localhost"))
        self.assertEqual(config.data_dir, (Path.cwd() / "data").resolve())

    def test_relative_paths_follow_the_config_file(self):
        folder = Path(self.mktemp())
        folder.mkdir()
        path = folder / "x.toml"
        path.write_text(
            '[server]\ndata_dir = "state"\n[tls]\ncertificate = "c.pem"\nkey = "k.pem"\n'
        )
        config = load_config(path)
        self.assertEqual(config.data_dir, (folder / "state").resolve())
        self.assertEqual(config.database_path, (folder / "state" / "xmppd.sqlite").resolve())
        self.assertEqual(config.tls.certificate, (folder / "c.pem").resolve())
        self.assertEqual(config.tls.key, (folder / "k.pem").resolve())

    def test_domains_are_normalised(self):
        config = config_from_dict({"server": {"domain": "Example.ORG"},
                                   "muc": {"domain": "MUC.example.org"}}, Path("."))
        self.assertEqual(config.domain, "example.org")
        self.assertEqual(config.muc.domain, "muc.example.org")

    def test_muc_can_be_disabled(self):
        config = config_from_dict({"muc": {"domain": ""}}, Path("."))
        self.assertIsNone(config.muc.domain)
        self.assertEqual(config.served_domains,
                         ("localhost", "pubsub.localhost", "upload.localhost"))

    def test_upload_domain_is_served_with_an_http_listener(self):
        served = config_from_dict({"http": {"listen": "", "tls_listen": "tcp:5281"}},
                                  Path(".")).served_domains
        self.assertIn("upload.localhost", served)
        # Without HTTP there is no upload service, so no upload domain.
        no_http = config_from_dict({"http": {"listen": ""}}, Path("."))
        self.assertEqual(no_http.upload.domain, "upload.localhost")
        self.assertNotIn("upload.localhost", no_http.served_domains)
        off = config_from_dict({"upload": {"domain": ""}}, Path("."))
        self.assertEqual(off.served_domains,
                         ("localhost", "conference.localhost", "pubsub.localhost"))
        # A static S2S route cannot name it (it is local).
        with self.assertRaises(ConfigError) as raised:
            config_from_dict({"s2s": {"routes": {"upload.localhost": "tcp:host=h:port=1"}}},
                             Path("."))
        self.assertIn("a served domain cannot be a remote one", str(raised.exception))

    def test_control_socket_path(self):
        folder = Path("/srv/xmppd")
        config = config_from_dict({"server": {"data_dir": "state"}}, folder)
        self.assertEqual(config.control_socket, (folder / "state").resolve() / "control.sock")
        config = config_from_dict({"server": {"control_socket": "/run/xmppd/ctl"}}, folder)
        self.assertEqual(config.control_socket, Path("/run/xmppd/ctl"))
        config = config_from_dict({"server": {"control_socket": ""}}, folder)
        self.assertIsNone(config.control_socket)

    def test_pubsub_can_be_disabled(self):
        config = config_from_dict({"pubsub": {"domain": ""}}, Path("."))
        self.assertIsNone(config.pubsub.domain)
        self.assertEqual(config.served_domains,
                         ("localhost", "conference.localhost", "upload.localhost"))

    def test_pubsub_domain_must_differ(self):
        for domain in ("localhost", "conference.localhost"):
            with self.assertRaises(ConfigError) as caught:
                config_from_dict({"pubsub": {"domain": domain}}, Path("."))
            self.assertIn("pubsub.domain", str(caught.exception))


class ErrorTests(unittest.TestCase):
    """A bad config names the file and the key in one line."""

    def error_for(self, text):
        path = Path(self.mktemp())
        path.write_text(text)
        with self.assertRaises(ConfigError) as caught:
            load_config(path)
        message = str(caught.exception)
        self.assertNotIn("\n", message)
        self.assertTrue(message.startswith(str(path) + ": "), message)
        return message

    def test_unknown_key(self):
        self.assertIn("c2s.prot: unknown key", self.error_for("[c2s]\nprot = 1\n"))

    def test_unknown_section(self):
        self.assertIn("federation: unknown section", self.error_for("[federation]\nport = 1\n"))

    def test_wrong_type(self):
        self.assertIn("c2s.listen: must be a string", self.error_for("[c2s]\nlisten = 5222\n"))

    def test_int_is_not_bool(self):
        self.assertIn("registration.enabled: must be true or false",
                      self.error_for("[registration]\nenabled = 1\n"))

    def test_bad_endpoint(self):
        self.assertIn("c2s.listen:", self.error_for('[c2s]\nlisten = "nonsense:1"\n'))

    def test_bad_domain(self):
        self.assertIn("server.domain:", self.error_for('[server]\ndomain = "a@b"\n'))

    def test_bad_choice(self):
        self.assertIn("muc.create_rooms: must be one of",
                      self.error_for('[muc]\ncreate_rooms = "everybody"\n'))

    def test_certificate_without_key(self):
        self.assertIn("tls.key:", self.error_for('[tls]\ncertificate = "c.pem"\n'))

    def test_muc_domain_equal_to_host(self):
        self.assertIn("muc.domain:", self.error_for('[muc]\ndomain = "localhost"\n'))

    def test_admins_must_be_bare_jids(self):
        self.assertIn("server.admins:", self.error_for('[server]\nadmins = ["a@b/c"]\n'))

    def test_component_secret(self):
        self.assertIn("components.secrets.gw.localhost:",
                      self.error_for('[components]\nsecrets = { "gw.localhost" = "" }\n'))

    def test_log_level(self):
        self.assertIn("log.level:", self.error_for('[log]\nlevel = "loud"\n'))

    def test_invalid_toml(self):
        self.assertIn("invalid TOML", self.error_for("[server\n"))

    def test_missing_file(self):
        path = Path(self.mktemp())
        with self.assertRaises(ConfigError) as caught:
            load_config(path)
        self.assertEqual(str(caught.exception), f"{path}: file not found")


class LogLevelTests(unittest.TestCase):
    """log.level filters xmppd's own events."""

    def test_level_filters_xmppd_events(self):
        from twisted.logger import globalLogPublisher

        from xmppd import logs

        seen = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        self.addCleanup(logs.set_level, "info")
        log = logs.logger("xmppd.example")
        logs.set_level("warn")
        log.info("quiet {n}", n=1)
        log.warn("loud {n}", n=2)
        logs.set_level("debug")
        log.debug("chatty {n}", n=3)
        self.assertEqual([e["log_format"] for e in seen if e.get("log_namespace") ==
                          "xmppd.example"], ["loud {n}", "chatty {n}"])


class LimitsTests(unittest.TestCase):
    """[limits]: defaults, overrides and range checks."""

    def test_defaults(self):
        limits = load_config(None).limits
        self.assertEqual(limits.max_stanza_size, 256 * 1024)
        self.assertEqual(limits.max_depth, 64)
        self.assertEqual(limits.max_attributes, 64)
        self.assertEqual(limits.max_elements, 4096)
        self.assertEqual(limits.max_auth_attempts, 5)
        self.assertEqual(limits.negotiation_timeout, 30.0)
        self.assertEqual(limits.idle_timeout, 300.0)
        self.assertEqual(limits.ping_timeout, 60.0)
        self.assertEqual(limits.max_connections_per_ip, 20)
        self.assertEqual(limits.max_sessions_per_account, 10)
        self.assertEqual(limits.read_rate, 64 * 1024)
        self.assertEqual(limits.read_burst, 256 * 1024)
        self.assertEqual(limits.auth_backoff_after, 3)
        self.assertEqual(limits.auth_backoff, 2.0)
        self.assertEqual(limits.auth_backoff_max, 300.0)

    def test_every_key_is_documented_in_the_example(self):
        import tomllib

        from xmppd.config import LimitSettings

        example = tomllib.loads((REPO / "conf" / "xmppd.toml").read_text())
        self.assertEqual(set(example["limits"]), set(LimitSettings.__dataclass_fields__))

    def test_overrides(self):
        config = config_from_dict(
            {"limits": {"max_stanza_size": 10000, "idle_timeout": 0, "ping_timeout": 2.5,
                        "max_connections_per_ip": 0}},
            Path("."),
        )
        self.assertEqual(config.limits.max_stanza_size, 10000)
        self.assertEqual(config.limits.idle_timeout, 0.0)
        self.assertEqual(config.limits.ping_timeout, 2.5)
        self.assertIsInstance(config.limits.ping_timeout, float)
        self.assertEqual(config.limits.max_connections_per_ip, 0)

    def error(self, **limits):
        with self.assertRaises(ConfigError) as caught:
            config_from_dict({"limits": limits}, Path("."))
        return str(caught.exception)

    def test_too_small(self):
        self.assertIn("limits.max_stanza_size: must be at least 4096",
                      self.error(max_stanza_size=100))
        self.assertIn("limits.idle_timeout: must be at least 0", self.error(idle_timeout=-1))
        self.assertIn("limits.auth_backoff_after: must be at least 1",
                      self.error(auth_backoff_after=0))

    def test_types(self):
        self.assertIn("limits.max_depth: must be an integer", self.error(max_depth=10.5))
        self.assertIn("limits.idle_timeout: must be a number", self.error(idle_timeout="5"))
        self.assertIn("limits.read_rate: must be an integer", self.error(read_rate=True))

    def test_backoff_max_not_below_base(self):
        self.assertIn("limits.auth_backoff_max:",
                      self.error(auth_backoff=10, auth_backoff_max=5))

    def test_unknown_key(self):
        self.assertIn("limits.max_stanzas: unknown key", self.error(max_stanzas=1))


class MUCAndShutdownSettingsTests(unittest.TestCase):
    """The MUC abuse limits and the shutdown bound are read and checked."""

    def test_defaults(self):
        config = load_config(None)
        self.assertEqual(config.shutdown_timeout, 15.0)
        muc = config.muc
        self.assertEqual(
            (muc.password_max_failures, muc.password_failure_window, muc.password_backoff,
             muc.password_backoff_max, muc.message_rate, muc.message_burst),
            (5, 60.0, 10.0, 3600.0, 5.0, 20),
        )

    def test_bad_values(self):
        cases = [
            ({"muc": {"password_max_failures": 0}},
             "muc.password_max_failures: must be at least 1"),
            ({"muc": {"message_rate": 0}}, "muc.message_rate: must be greater than 0"),
            ({"muc": {"message_burst": 2.5}}, "muc.message_burst: must be an integer"),
            ({"muc": {"password_backoff": 20, "password_backoff_max": 10}},
             "muc.password_backoff_max: must not be less than muc.password_backoff"),
            ({"server": {"shutdown_timeout": -1}},
             "server.shutdown_timeout: must be greater than 0"),
        ]
        for data, message in cases:
            with self.assertRaises(ConfigError) as caught:
                config_from_dict(data, Path("."))
            self.assertIn(message, str(caught.exception))

    def test_service_gets_the_muc_settings(self):
        from tests.support import make_test_config
        from xmppd.service import XMPPServer

        config = make_test_config(
            self, muc={"password_max_failures": 2, "message_burst": 3},
            server={"shutdown_timeout": 4},
        )
        server = XMPPServer(config)
        server.privilegedStartService()
        self.addCleanup(server.stopService)
        server.startService()
        self.assertEqual(server.muc.password_backoff.threshold, 2)
        self.assertEqual(server.muc.message_burst, 3)
        self.assertEqual(server.shutdown_timeout, 4)


class HTTPAndUploadSettingsTests(unittest.TestCase):
    """``[http]`` and ``[upload]``: defaults and checks."""

    def test_defaults(self):
        config = config_from_dict({}, Path("."))
        self.assertEqual(config.http.listen, "tcp:5280:interface=127.0.0.1")
        self.assertEqual((config.http.tls_listen, config.http.external_url), ("", ""))
        self.assertEqual(config.upload.domain, "upload.localhost")
        self.assertEqual(config.upload.max_file_size, 10 * 1024 * 1024)

    def test_external_url_gets_its_slash(self):
        config = config_from_dict({"http": {"external_url": "https://x.example/xmpp"}},
                                  Path("."))
        self.assertEqual(config.http.external_url, "https://x.example/xmpp/")

    def test_bad_values(self):
        for section, values, key in (
                ("http", {"external_url": "ftp://x.example/"}, "http.external_url"),
                ("http", {"external_url": "https://x.example/?a=b"}, "http.external_url"),
                ("http", {"external_url": "/relative"}, "http.external_url"),
                ("http", {"trusted_proxies": ["10.0.0.0/33"]}, "http.trusted_proxies"),
                ("http", {"trusted_proxies": ["proxy.example"]}, "http.trusted_proxies"),
                ("http", {"listen": "nonsense:1"}, "http.listen"),
                ("http", {"tls_listen": "nonsense:1"}, "http.tls_listen"),
                ("http", {"max_request_size": 10}, "http.max_request_size"),
                ("upload", {"domain": "localhost"}, "upload.domain"),
                ("upload", {"domain": "conference.localhost"}, "upload.domain"),
                ("upload", {"domain": "a@b"}, "upload.domain"),
                ("upload", {"allowed_types": ["image"]}, "upload.allowed_types"),
                ("upload", {"allowed_types": ["*/png"]}, "upload.allowed_types"),
                ("upload", {"max_file_size": 0}, "upload.max_file_size")):
            with self.assertRaises(ConfigError, msg=str(values)) as caught:
                config_from_dict({section: values}, Path("."))
            self.assertIn(key + ":", str(caught.exception))

    def test_allowed_types_lowercased(self):
        config = config_from_dict({"upload": {"allowed_types": ["Image/*", "video/MP4"]}},
                                  Path("."))
        self.assertEqual(config.upload.allowed_types, ("image/*", "video/mp4"))

    def test_upload_can_be_disabled(self):
        self.assertIsNone(config_from_dict({"upload": {"domain": ""}}, Path(".")).upload.domain)


class SchemaTests(unittest.TestCase):
    """The schema is defined once: README's table and the example file follow it."""

    def test_readme_table_is_the_schema(self):
        from xmppd.config import markdown_table

        readme = (REPO / "README.md").read_text()
        self.assertIn(markdown_table(), readme)

    def test_example_file_lists_every_key_with_its_default(self):
        import tomllib

        from xmppd.config import schema_keys

        example = tomllib.loads((REPO / "conf" / "xmppd.toml").read_text())
        keys = list(schema_keys())
        self.assertEqual({f"{s}.{k}" for s, table in example.items() for k in table},
                         {key.dotted for key in keys})
        for key in keys:
            value = example[key.section][key.name]
            if isinstance(value, list):
                value = tuple(value)
            default = "" if key.default is None else key.default
            self.assertEqual(value, default, key.dotted)

    def test_reload_names_keys_as_in_the_file(self):
        from xmppd.reload import config_changes

        old = config_from_dict({}, Path("."))
        new = config_from_dict({"server": {"shutdown_timeout": 3},
                                "contact_info": {"abuse": ["mailto:a@b"]}}, Path("."))
        changes = {c.key: c.live for c in config_changes(old, new)}
        self.assertEqual(changes, {"server.shutdown_timeout": False, "contact_info.abuse": True})


class WebSocketConfigTests(unittest.TestCase):
    """``[websocket]``: the path, origins and ping timers are checked at load."""

    def load(self, **websocket):
        return config_from_dict({"websocket": websocket}, Path(self.mktemp()))

    def test_defaults_and_normalised_path(self):
        settings = self.load().websocket
        self.assertEqual((settings.path, settings.allowed_origins, settings.secure_from_trusted,
                          settings.ping_interval, settings.ping_timeout),
                         ("/xmpp-websocket", (), True, 30.0, 30.0))
        self.assertEqual(self.load(path="/ws/xmpp/").websocket.path, "/ws/xmpp")
        self.assertEqual(self.load(path="").websocket.path, "")

    def test_bad_values(self):
        for key, value in (("path", "xmpp"), ("path", "/upload"), ("path", "/.well-known/x"),
                           ("path", "/a//b"), ("path", "/a b"), ("path", "/../x"),
                           ("allowed_origins", ["chat.example.org"]),
                           ("allowed_origins", ["ftp://chat.example.org"]),
                           ("allowed_origins", ["https://chat.example.org/path"]),
                           ("allowed_origins", ["https://chat.example.org:99999"]),
                           ("ping_interval", 0.5), ("ping_interval", -1),
                           ("ping_timeout", 0.5)):
            with self.assertRaises(ConfigError) as caught:
                self.load(**{key: value})
            self.assertIn(f"websocket.{key}", str(caught.exception))
        self.assertEqual(self.load(allowed_origins=["https://*.example.org:8443"])
                         .websocket.allowed_origins, ("https://*.example.org:8443",))


class BoshConfigTests(unittest.TestCase):
    """``[bosh]``: the path and CORS origins are checked at load."""

    def load(self, websocket=None, **bosh):
        return config_from_dict({"bosh": bosh, "websocket": websocket or {}},
                                Path(self.mktemp()))

    def test_defaults_and_normalised_path(self):
        settings = self.load().bosh
        self.assertEqual((settings.path, settings.max_wait, settings.max_inactivity,
                          settings.max_hold, settings.max_requests, settings.max_pause,
                          settings.polling, settings.cors_origins),
                         ("/http-bind", 120, 60, 1, 2, 300, 5, ("*",)))
        self.assertEqual(self.load(path="/bosh/").bosh.path, "/bosh")
        self.assertEqual(self.load(path="").bosh.path, "")

    def test_bad_values(self):
        for key, value in (("path", "http-bind"), ("path", "/upload"), ("path", "/a//b"),
                           ("path", "/.well-known/x"), ("path", "/xmpp-websocket"),
                           ("cors_origins", ["chat.example.org"]),
                           ("cors_origins", ["https://chat.example.org/path"]),
                           ("max_wait", 0), ("max_requests", 0), ("max_hold", -1)):
            with self.assertRaises(ConfigError) as caught:
                self.load(**{key: value})
            self.assertIn(f"bosh.{key}", str(caught.exception))
        self.assertEqual(self.load(path="/xmpp-websocket", websocket={"path": "/ws"}).bosh.path,
                         "/xmpp-websocket")


class S2SConfigTests(unittest.TestCase):
    """``[s2s]``: routes, domain lists and the CA file are checked at load."""

    def load(self, **s2s):
        return config_from_dict({"s2s": s2s}, Path(self.mktemp()))

    def test_defaults(self):
        settings = self.load().s2s
        self.assertEqual((settings.enabled, settings.listen, settings.routes,
                          settings.require_encryption, settings.allow_dialback, settings.secret),
                         (True, "tcp:5269", {}, True, True, ""))

    def test_direct_tls_listener(self):
        self.assertEqual(self.load().s2s.direct_tls_listen, "")
        self.assertEqual(self.load(direct_tls_listen="tcp:5270").s2s.direct_tls_listen,
                         "tcp:5270")

    def test_routes_are_normalised(self):
        settings = self.load(routes={"B.Example": "tcp:host=127.0.0.2:port=5269"}).s2s
        self.assertEqual(settings.routes, {"b.example": "tcp:host=127.0.0.2:port=5269"})

    def test_bad_values(self):
        for key, value in (("routes", {"b.example": "nonsense:x"}),
                           ("routes", {"b.example": ""}),
                           ("routes", {"localhost": "tcp:host=127.0.0.2:port=5269"}),
                           ("routes", {"a@b": "tcp:host=127.0.0.2:port=5269"}),
                           ("trusted_domains", ["not a domain@"]),
                           ("listen", "nonsense:1"), ("ca_file", "missing.pem"),
                           ("direct_tls_listen", "nonsense:1"),
                           ("max_incoming_per_domain", 0), ("domain_read_rate", -1),
                           ("domain_read_burst", 0),
                           ("max_queue", 0), ("connect_timeout", 0), ("idle_timeout", -1)):
            with self.assertRaises(ConfigError, msg=f"{key}={value!r}") as caught:
                self.load(**{key: value})
            self.assertIn(f"s2s.{key}", str(caught.exception))

    def test_a_domain_cannot_be_trusted_and_insecure(self):
        with self.assertRaises(ConfigError) as caught:
            self.load(trusted_domains=["b.example"], insecure_domains=["b.example"])
        self.assertIn("s2s.insecure_domains", str(caught.exception))
