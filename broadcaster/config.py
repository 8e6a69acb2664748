"""Loading and validating config.toml, with errors that name the file, line and key.

``${ENV_VAR}`` expands in any string. A variable that is not set is only an error where the
value is actually needed: a dry run needs no credentials, so the shipped example runs with
none set.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .configread import ConfigError as ConfigError
from .configread import ConfigProblem as ConfigProblem
from .configread import Missing, Reader, expand_tree
from .configread import Secret as Secret
from .configread import parse_duration as parse_duration
from .logs import register_secret
from .model import INCIDENT_STATUSES, SEVERITIES, ChannelInfo
from .statefile.syntax import MAX_STATE_BYTES

PLATFORMS = ("x", "mastodon", "dryrun")
DEFAULT_API_BASE = {"x": "https://api.x.com", "mastodon": None, "dryrun": None}
SECRET_KEYS = ("consumer_key", "consumer_secret", "access_token", "access_token_secret")


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    platform: str
    language: str
    api_base_url: str | None = None
    credentials: Mapping[str, Secret] = field(default_factory=dict)
    # Credentials whose ${VAR} was not set: an error only when the channel posts for real.
    missing_env: Mapping[str, str] = field(default_factory=dict)
    max_characters: int | None = None
    severities: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    visibility: str = "public"
    include_url: bool = True
    max_posts: tuple[int, timedelta] | None = None  # e.g. 17 posts per 24 h
    min_interval: timedelta | None = None
    # The longest thread one post may become: a longer one is refused at every door (and
    # never planned), not posted as dozens of replies.
    max_parts: int = 6
    timeout: timedelta = timedelta(seconds=10)
    # Backoff between tries of a post the platform did not confirm (5xx, timeout): the
    # first wait, doubling up to the longest, which also bounds the wait before re-trying
    # a channel whose credentials were refused.
    retry_initial: timedelta = timedelta(seconds=1)
    retry_max: timedelta = timedelta(minutes=5)

    def info(self) -> ChannelInfo:
        """What templates and the planner know of this channel."""
        return ChannelInfo(self.name, self.platform, self.language, self.include_url)

    def matches(self, severity: str, services: tuple[str, ...], regions: tuple[str, ...]) -> bool:
        """Whether an incident with these attributes belongs on this channel."""
        if self.severities and severity not in self.severities:
            return False
        if self.services and not set(self.services) & set(services):
            return False
        return not (self.regions and not set(self.regions) & set(regions))


DEFAULT_LONG_INCIDENT_INTERVAL = {"critical": "30m", "major": "1h", "minor": "1h"}


@dataclass(frozen=True)
class CadenceConfig:
    """Minutes between public updates while nothing changes (COMMS.md, GitLab CMOC table)."""

    every: Mapping[str, Mapping[str, timedelta]]
    maintenance: timedelta = timedelta(minutes=30)
    long_incident_after: timedelta = timedelta(hours=2)
    # The slower cadence of long incidents, by severity: a critical outage (a whole site
    # dark) stays at 30 minutes, the others go hourly.
    long_incident_interval: Mapping[str, timedelta] = field(
        default_factory=lambda: {
            sev: parse_duration(d) for sev, d in DEFAULT_LONG_INCIDENT_INTERVAL.items()
        }
    )
    maintenance_reminder_before: timedelta = timedelta(minutes=60)

    def longest_silence(self, status: str, severity: str) -> timedelta | None:
        """The longest a promise may be, even one ops gave (``next_update_at``): a critical
        incident is never left longer than its slowest cadence (30 min by default) until
        it is ``monitoring``. None: ops' promise stands as given."""
        if severity != "critical" or status not in ("investigating", "identified"):
            return None
        return self.interval(status, severity, self.long_incident_after)

    def interval(self, status: str, severity: str, elapsed: timedelta) -> timedelta:
        base = self.every.get(status, {}).get(severity) or timedelta(minutes=30)
        if elapsed >= self.long_incident_after:
            slow = self.long_incident_interval.get(severity) or timedelta(hours=1)
            return max(base, slow)
        return base


DEFAULT_CADENCE = {
    "investigating": {"critical": "15m", "major": "15m", "minor": "30m"},
    "identified": {"critical": "15m", "major": "30m", "minor": "30m"},
    "monitoring": {"critical": "30m", "major": "60m", "minor": "60m"},
}


@dataclass(frozen=True)
class IntakeConfig:
    """Queues that feed events to the daemon, beside the state file. All optional."""

    spool_directory: Path | None = None
    redis_url: str | None = None
    redis_stream: str = "broadcaster:events"
    redis_group: str = "broadcaster"
    redis_consumer: str = "broadcaster-1"
    redis_claim_idle: timedelta = timedelta(seconds=30)  # take over a dead consumer's events
    http_listen: str | None = None  # "127.0.0.1:8470"; also serves /healthz and /metrics
    http_token: Secret | None = None
    http_max_body: int = 64 * 1024

    @property
    def http_address(self) -> tuple[str, int] | None:
        if not self.http_listen:
            return None
        host, _, port = self.http_listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)


@dataclass(frozen=True)
class ConsoleConfig:
    """The drafting console (``broadcaster console``): where it listens, its login token."""

    listen: str = "127.0.0.1:8471"
    token: Secret | None = None  # required to start the console; never shown
    token_missing: str = ""  # the ${VAR} of a token whose variable is not set

    def require_token(self, path: Path) -> Secret:
        """The login token, or a ConfigError saying how to set it."""
        if self.token is not None:
            return self.token
        message = (
            f"environment variable {self.token_missing} is not set"
            if self.token_missing
            else 'required to run the console: a login token (e.g. "${BROADCASTER_CONSOLE_TOKEN}")'
        )
        raise ConfigError([ConfigProblem(str(path), None, "console.token", message)])

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)


@dataclass(frozen=True)
class StoreConfig:
    """Where the store lives: SQLite in ``data_dir`` (the default, one daemon), or a
    PostgreSQL database shared by any number of instances."""

    url: Secret | None = None  # postgresql://user:password@host:port/db?sslmode=...
    lease_ttl: timedelta = timedelta(seconds=15)  # a dead holder's channels move after this
    instance: str | None = None  # this instance's name in leases and status (default: host:pid)

    @property
    def display_url(self) -> str | None:
        """The URL without its password, for status pages and messages."""
        if self.url is None:
            return None
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", self.url.reveal())


@dataclass(frozen=True)
class Config:
    path: Path
    state_file: Path
    data_dir: Path
    templates_dir: Path
    timezone: ZoneInfo
    channels: Mapping[str, ChannelConfig]
    cadence: CadenceConfig
    poll_interval: timedelta = timedelta(milliseconds=250)
    # "auto": the kernel tells of changes (state file, spool; Redis blocks on its stream),
    # polling only where it cannot; "poll": poll every source at poll_interval.
    watch: str = "auto"
    intake: IntakeConfig = field(default_factory=IntakeConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    state_file_max_bytes: int = MAX_STATE_BYTES

    def languages(self) -> frozenset[str]:
        return frozenset(c.language for c in self.channels.values())


BROADCASTER_KEYS = (
    "state_file",
    "data_dir",
    "templates_dir",
    "timezone",
    "poll_interval",
    "watch",
    "state_file_max_bytes",
)
WATCH_MODES = ("auto", "poll")
CHANNEL_KEYS = (
    "platform",
    "language",
    "api_base_url",
    *SECRET_KEYS,
    "max_characters",
    "severities",
    "services",
    "regions",
    "visibility",
    "include_url",
    "max_posts",
    "min_interval",
    "max_parts",
    "timeout",
    "retry_initial",
    "retry_max",
    "enabled",
)
CADENCE_KEYS = (
    *INCIDENT_STATUSES[:-1],
    "maintenance",
    "long_incident_after",
    "long_incident_interval",
    "maintenance_reminder_before",
)
TOP_KEYS = ("broadcaster", "channels", "cadence", "intake", "console", "store")
STORE_KEYS = ("url", "lease_ttl", "instance")


def setup_problems(config: Config, *, dry_run: bool) -> list[ConfigProblem]:
    """What stops ``run`` that the config's syntax does not show, all at once: credentials
    whose ${VAR} is not set (for channels that post for real), a data directory that is not
    a writable directory."""
    path = str(config.path)
    problems: list[ConfigProblem] = []
    if not dry_run:
        for name, channel in config.channels.items():
            for key, variables in channel.missing_env.items():
                problems.append(
                    ConfigProblem(
                        path,
                        None,
                        f"channels.{name}.{key}",
                        f"{variables} is not set (run with --dry-run to post nowhere)",
                    )
                )
    data_dir = config.data_dir
    existing = data_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # created at start: its first existing parent must do
    if existing.exists() and not existing.is_dir():
        problems.append(
            ConfigProblem(path, None, "broadcaster.data_dir", f"{existing} is not a directory")
        )
    elif not os.access(existing, os.W_OK | os.X_OK):
        problems.append(
            ConfigProblem(path, None, "broadcaster.data_dir", f"{existing} is not writable")
        )
    return problems


def load_config(path: Path) -> Config:
    """Read and validate a config file. Raises ConfigError listing every problem found."""
    path = Path(path)
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as e:
        hint = ""
        if isinstance(e, FileNotFoundError):
            hint = " (copy config.example.toml there, or give --config FILE)"
        raise ConfigError(
            [ConfigProblem(str(path), None, "", f"cannot read: {e.strerror}{hint}")]
        ) from None
    try:
        raw = tomllib.loads(source)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"at line (\d+)", str(e))
        raise ConfigError(
            [ConfigProblem(str(path), int(m.group(1)) if m else None, "", f"TOML syntax: {e}")]
        ) from None
    r = Reader(path, source)
    raw = expand_tree(raw, r, "")
    base = path.resolve().parent
    for key in raw:
        if key not in TOP_KEYS:
            close = difflib.get_close_matches(key, TOP_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            r.problems.append(ConfigProblem(str(path), r.line_of(key), key, f"unknown table{hint}"))

    b = raw.get("broadcaster", {})
    r.unknown_keys("broadcaster", b, BROADCASTER_KEYS)
    state_file = base / r.path_setting("broadcaster", "state_file", b, "state.toml")
    data_dir = base / r.path_setting("broadcaster", "data_dir", b, "data")
    templates_dir = base / r.path_setting("broadcaster", "templates_dir", b, "message_templates")
    state_max = b.get("state_file_max_bytes", MAX_STATE_BYTES)
    if isinstance(state_max, bool) or not isinstance(state_max, int) or state_max < 1024:
        r.problem("broadcaster", "state_file_max_bytes", "expected a size in bytes, at least 1024")
        state_max = MAX_STATE_BYTES
    if not templates_dir.is_dir():
        r.problem("broadcaster", "templates_dir", f"no such directory: {templates_dir}")
    tz_name = b.get("timezone", "UTC")
    try:
        if not isinstance(tz_name, str):
            raise ValueError(tz_name)
        timezone = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        r.problem("broadcaster", "timezone", f"unknown timezone {tz_name!r} (e.g. 'Europe/Paris')")
        timezone = ZoneInfo("UTC")
    poll = r.duration("broadcaster", "poll_interval", b.get("poll_interval", "0.25s"))
    watch = b.get("watch", "auto")
    if watch not in WATCH_MODES:
        r.problem(
            "broadcaster", "watch", f"expected one of {', '.join(WATCH_MODES)}, not {watch!r}"
        )
        watch = "auto"

    cadence = _cadence(r, raw.get("cadence", {}))
    channels: dict[str, ChannelConfig] = {}
    for name, c in raw.get("channels", {}).items():
        table = f"channels.{name}"
        if not isinstance(c, dict):
            r.problem("channels", name, "expected a table [channels.NAME]")
            continue
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            r.problem(table, None, "channel names may use letters, digits, '-' and '_' only")
        channel = _channel(r, name, c)
        if channel is not None and c.get("enabled", True):
            channels[name] = channel
    if not raw.get("channels"):
        r.problem("channels", None, "no channel configured: add at least one [channels.NAME]")

    intake = _intake(r, raw.get("intake", {}), base)
    console = _console(r, raw.get("console", {}))
    store = _store(r, raw.get("store", {}))
    if r.problems:
        raise ConfigError(r.problems)
    return Config(
        path=path,
        state_file=state_file,
        data_dir=data_dir,
        templates_dir=templates_dir,
        timezone=timezone,
        channels=channels,
        cadence=cadence,
        poll_interval=poll or timedelta(milliseconds=250),
        watch=watch,
        intake=intake,
        console=console,
        store=store,
        state_file_max_bytes=state_max,
    )


def _cadence(r: Reader, c: Mapping[str, Any]) -> CadenceConfig:
    r.unknown_keys("cadence", c, CADENCE_KEYS)
    every = {
        status: _by_severity(r, status, c.get(status, {}), defaults)
        for status, defaults in DEFAULT_CADENCE.items()
    }

    def dur(key: str, default: str) -> timedelta:
        return r.duration("cadence", key, c.get(key, default)) or parse_duration(default)

    return CadenceConfig(
        every=every,
        maintenance=dur("maintenance", "30m"),
        long_incident_after=dur("long_incident_after", "2h"),
        long_incident_interval=_by_severity(
            r,
            "long_incident_interval",
            c.get("long_incident_interval", {}),
            DEFAULT_LONG_INCIDENT_INTERVAL,
        ),
        maintenance_reminder_before=dur("maintenance_reminder_before", "60m"),
    )


def _by_severity(
    r: Reader, key: str, given: Any, defaults: Mapping[str, str]
) -> dict[str, timedelta]:
    """A duration for every severity, from one duration (all severities) or a table."""
    if isinstance(given, str):
        given = dict.fromkeys(SEVERITIES, given)
    if not isinstance(given, dict):
        r.problem("cadence", key, "expected a duration or a table by severity")
        given = {}
    for sev in given:
        if sev not in SEVERITIES:
            r.problem(
                "cadence", key, f"unknown severity {sev!r} (expected {', '.join(SEVERITIES)})"
            )
    return {
        sev: r.duration("cadence", key, given.get(sev, defaults[sev]))
        or parse_duration(defaults[sev])
        for sev in SEVERITIES
    }


def _channel(r: Reader, name: str, c: Mapping[str, Any]) -> ChannelConfig | None:
    table = f"channels.{name}"
    r.unknown_keys(table, c, CHANNEL_KEYS)
    platform = c.get("platform")
    if platform not in PLATFORMS:
        r.problem(table, "platform", f"expected one of {', '.join(PLATFORMS)}, got {platform!r}")
        return None
    language = c.get("language")
    if not isinstance(language, str) or not re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]+)?", language):
        r.problem(
            table, "language", f"expected a language code such as 'en' or 'fr', got {language!r}"
        )
        return None
    credentials: dict[str, Secret] = {}
    missing: dict[str, str] = {}
    for key in SECRET_KEYS:
        value = c.get(key)
        if value is None:
            continue
        if isinstance(value, Missing):
            missing[key] = ", ".join(f"${{{v}}}" for v in value.variables)
            continue
        if not isinstance(value, str):
            r.problem(table, key, "expected a string")
            continue
        credentials[key] = Secret(value)
    max_chars = c.get("max_characters")
    if max_chars is not None and (not isinstance(max_chars, int) or max_chars < 50):
        r.problem(table, "max_characters", "expected a whole number of at least 50")
        max_chars = None
    api = c.get("api_base_url", DEFAULT_API_BASE[platform])
    if isinstance(api, Missing):
        r.problem(
            table, "api_base_url", f"environment variable {', '.join(api.variables)} is not set"
        )
    elif api is not None and not re.match(r"^https?://[^\s/]+", str(api)):
        r.problem(table, "api_base_url", f"expected an http(s) URL, got {api!r}")
    if platform == "mastodon" and not api:
        r.problem(
            table,
            "api_base_url",
            "required for Mastodon: your instance, e.g. 'https://mastodon.example'",
        )
    severities = r.string_list(table, "severities", c.get("severities", []))
    for sev in severities:
        if sev not in SEVERITIES:
            r.problem(
                table, "severities", f"unknown severity {sev!r} (expected {', '.join(SEVERITIES)})"
            )
    visibility = c.get("visibility", "public")
    if visibility not in ("public", "unlisted", "private", "direct"):
        r.problem(table, "visibility", "expected public, unlisted, private or direct")
    min_interval = c.get("min_interval")
    max_posts = None
    if "max_posts" in c:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\S+)\s*", str(c["max_posts"]))
        window = r.duration(table, "max_posts", m.group(2)) if m else None
        if m and window and int(m.group(1)) > 0:
            max_posts = (int(m.group(1)), window)
        elif not m:
            r.problem(table, "max_posts", "expected posts per window, e.g. '17/24h' or '50/15m'")
    max_parts = c.get("max_parts", 6)
    if isinstance(max_parts, bool) or not isinstance(max_parts, int) or max_parts < 1:
        r.problem(table, "max_parts", "expected a whole number of parts, at least 1")
        max_parts = 6
    timeout = r.duration(table, "timeout", c.get("timeout", "10s"))
    retry_initial = r.duration(table, "retry_initial", c.get("retry_initial", "1s"))
    retry_max = r.duration(table, "retry_max", c.get("retry_max", "5m"))
    if retry_initial and retry_max and retry_max < retry_initial:
        r.problem(table, "retry_max", "must not be shorter than retry_initial")
    return ChannelConfig(
        name=name,
        platform=platform,
        language=language,
        api_base_url=api,
        credentials=credentials,
        missing_env=missing,
        max_characters=max_chars,
        severities=severities,
        services=r.string_list(table, "services", c.get("services", [])),
        regions=r.string_list(table, "regions", c.get("regions", [])),
        visibility=visibility,
        include_url=bool(c.get("include_url", True)),
        max_posts=max_posts,
        min_interval=r.duration(table, "min_interval", min_interval) if min_interval else None,
        max_parts=max_parts,
        timeout=timeout or timedelta(seconds=10),
        retry_initial=retry_initial or timedelta(seconds=1),
        retry_max=retry_max or timedelta(minutes=5),
    )


INTAKE_KEYS = {
    "spool": ("directory",),
    "redis": ("url", "stream", "group", "consumer", "claim_idle"),
    "http": ("listen", "token", "max_body"),
}


def _intake(r: Reader, raw: Mapping[str, Any], base: Path) -> IntakeConfig:
    r.unknown_keys("intake", raw, tuple(INTAKE_KEYS))
    values: dict[str, Any] = {}
    for name, keys in INTAKE_KEYS.items():
        table = raw.get(name)
        if table is None:
            continue
        if not isinstance(table, dict):
            r.problem("intake", name, f"expected a table [intake.{name}]")
            continue
        r.unknown_keys(f"intake.{name}", table, keys)
        for key, value in table.items():
            if isinstance(value, Missing):
                r.problem(
                    f"intake.{name}",
                    key,
                    f"environment variable {', '.join(value.variables)} is not set",
                )
    spool = raw.get("spool") or {}
    if spool:
        if not isinstance(spool.get("directory"), str):
            r.problem("intake.spool", "directory", "required: the spool directory")
        else:
            values["spool_directory"] = base / spool["directory"]
    redis = raw.get("redis") or {}
    if redis:
        url = redis.get("url")
        if not isinstance(url, str) or not re.match(r"^rediss?://|^unix://", url):
            r.problem(
                "intake.redis", "url", "expected a redis:// URL, e.g. 'redis://127.0.0.1:6379/0'"
            )
        else:
            values["redis_url"] = url
        for key in ("stream", "group", "consumer"):
            if key in redis:
                values[f"redis_{key}"] = str(redis[key])
        if "claim_idle" in redis:
            idle = r.duration("intake.redis", "claim_idle", redis["claim_idle"])
            if idle is not None:
                values["redis_claim_idle"] = idle
    http = raw.get("http") or {}
    if http:
        listen = str(http.get("listen", "127.0.0.1:8470"))
        if (wrong := listen_problem(listen)) is not None:
            r.problem("intake.http", "listen", wrong)
        values["http_listen"] = listen
        token = http.get("token")
        if isinstance(token, str) and not isinstance(token, Missing):
            if len(token) < 16:
                r.problem("intake.http", "token", "too short: use at least 16 random characters")
            values["http_token"] = Secret(token)
        elif token is None:
            r.problem(
                "intake.http", "token", 'required: a bearer token (e.g. "${BROADCASTER_TOKEN}")'
            )
        if "max_body" in http:
            if not isinstance(http["max_body"], int) or http["max_body"] < 1024:
                r.problem("intake.http", "max_body", "expected a size in bytes, at least 1024")
            else:
                values["http_max_body"] = http["max_body"]
    return IntakeConfig(**values)


CONSOLE_KEYS = ("listen", "token")
_LISTEN = re.compile(r"(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}")


def listen_problem(listen: str) -> str | None:
    """What is wrong with a ``HOST:PORT`` to listen on, or None."""
    if not _LISTEN.fullmatch(listen):
        return f"expected HOST:PORT, got {listen!r}"
    if int(listen.rpartition(":")[2]) > 65535:
        return f"port out of range (0-65535) in {listen!r}"
    return None


def _console(r: Reader, raw: Any) -> ConsoleConfig:
    """``[console]``: checked here, but its token is only required to start the console."""
    if not isinstance(raw, dict):
        r.problem("console", None, "expected a table [console]")
        return ConsoleConfig()
    r.unknown_keys("console", raw, CONSOLE_KEYS)
    values: dict[str, Any] = {}
    if "listen" in raw:
        listen = str(raw["listen"])
        if (wrong := listen_problem(listen)) is not None:
            r.problem("console", "listen", wrong)
        else:
            values["listen"] = listen
    token = raw.get("token")
    if isinstance(token, Missing):
        # Only `broadcaster console` needs it: the daemon runs without it.
        values["token_missing"] = ", ".join(token.variables)
    elif isinstance(token, str):
        if len(token) < 16:
            r.problem("console", "token", "too short: use at least 16 random characters")
        else:
            values["token"] = Secret(token)
    elif token is not None:
        r.problem("console", "token", "expected a string")
    return ConsoleConfig(**values)


def _store(r: Reader, raw: Mapping[str, Any]) -> StoreConfig:
    if not isinstance(raw, dict):
        r.problem("store", None, "expected a table [store]")
        return StoreConfig()
    r.unknown_keys("store", raw, STORE_KEYS)
    values: dict[str, Any] = {}
    url = raw.get("url")
    if isinstance(url, Missing):
        r.problem("store", "url", f"environment variable {', '.join(url.variables)} is not set")
    elif url is not None:
        if not isinstance(url, str) or not re.match(r"^postgres(ql)?://", url):
            r.problem(
                "store",
                "url",
                "expected a postgresql:// URL, e.g. "
                "'postgresql://broadcaster:${PGPASSWORD}@db.example:5432/broadcaster'",
            )
        else:
            password = re.search(r"://[^:/@]*:([^@]*)@", url)
            if password:
                register_secret(password.group(1))  # never in logs, even inside the URL
            values["url"] = Secret(url)
    if "lease_ttl" in raw:
        ttl = r.duration("store", "lease_ttl", raw["lease_ttl"])
        if ttl is not None:
            if ttl < timedelta(seconds=1):
                r.problem("store", "lease_ttl", "too short: at least 1s")
            else:
                values["lease_ttl"] = ttl
    if "instance" in raw:
        name = raw["instance"]
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.:@-]{1,64}", name):
            r.problem("store", "instance", "expected a short name (letters, digits, '-_.:@')")
        else:
            values["instance"] = name
    return StoreConfig(**values)
