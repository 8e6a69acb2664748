"""The composition point: the one place where config, store, templates, sources, channels,
delivery, the daemon and its service shell are built and wired together. Everything else
receives what it needs as arguments.

- ``build(config)``: the components that serve one configuration (an ``App``);
- ``service(config_path)``: the daemon that runs them (rebuilding them at each reload
  through an ``Assembly``), with its service shell (HTTP intake, health, metrics, systemd);
- ``rehearsal(config)``: the in-memory store and editor of preview, draft and simulate;
- ``open_store``, ``renderer_for``: what ``status`` and ``check`` read on their own.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TextIO

from .channels.base import Channel
from .channels.dryrun import DryRunChannel, DryRunJournal
from .clock import Clock, utcnow
from .components import App
from .config import ChannelConfig, Config, ConfigError, ConfigProblem
from .daemon import Daemon, ReloadError
from .delivery import Backoff, Budget, ChannelWorker, Delivery, default_instance, lease_holder
from .editor import Editor
from .fits import FitCheck
from .metrics import Metrics
from .notify import Notifier
from .render import Renderer
from .service import ServiceShell
from .sources.base import PullSource
from .sources.file import StateFileSource
from .sources.http import HttpIntake
from .statefile import Check
from .store import ChannelChange, DataStore, Store
from .textfit import LengthRule, rule_for

__all__ = ["App", "Assembly", "Service", "build", "service"]

log = logging.getLogger("broadcaster.app")

STORE_FILE = "broadcaster.sqlite3"
DRY_RUN_STORE_FILE = "dry-run.sqlite3"
DRY_RUN_JOURNAL = "dry-run.jsonl"


def store_path(config: Config, dry_run: bool) -> Path:
    # A dry run keeps its own records: it must never mark a real post as sent.
    return config.data_dir / (DRY_RUN_STORE_FILE if dry_run else STORE_FILE)


def store_location(config: Config, dry_run: bool) -> str:
    """Where ``open_store`` finds the store, for people: a path, or the URL sans password."""
    if config.store.url is not None and not dry_run:
        return config.store.display_url or "postgresql"
    return str(store_path(config, dry_run))


def store_exists(config: Config, dry_run: bool) -> bool:
    return (config.store.url is not None and not dry_run) or store_path(config, dry_run).exists()


def open_store(config: Config, dry_run: bool) -> DataStore:
    """The store ``config`` names: PostgreSQL with ``[store] url`` (shared by instances),
    else SQLite in ``data_dir``. A dry run always keeps its own SQLite file. The schema is
    brought up to date on open (under the backend's lock); ``StoreError`` if it cannot be."""
    if config.store.url is not None and not dry_run:
        from .store.postgres import PostgresStore

        return PostgresStore(config.store.url.reveal(), display=store_location(config, dry_run))
    return Store(store_path(config, dry_run))


def renderer_for(config: Config) -> Renderer:
    """The renderer of ``config``'s templates, not yet checked (see ``checked_renderer``)."""
    return Renderer(config.templates_dir, config.timezone)


def real_channel(config: Config, channel: ChannelConfig) -> Channel:
    """Build the channel that really posts. Credentials are required here, not before."""
    missing = [f"{k} ({v} is not set)" for k, v in channel.missing_env.items()]
    if missing:
        raise ConfigError(
            [
                ConfigProblem(
                    str(config.path),
                    None,
                    f"channels.{channel.name}",
                    "missing credentials: " + "; ".join(missing),
                )
            ]
        )
    if channel.platform == "x":
        from .channels.x import XChannel

        return XChannel(channel)
    if channel.platform == "mastodon":
        from .channels.mastodon import MastodonChannel

        return MastodonChannel(channel)
    return DryRunChannel(
        channel.name,
        channel.platform,
        channel.language,
        default_rule(channel),
        DryRunJournal(config.data_dir / DRY_RUN_JOURNAL),
    )


def default_rule(channel: ChannelConfig, seen_limit: int | None = None) -> LengthRule:
    """The channel's rule without asking the platform: config, else the limit the real
    daemon last read from the server (so previews split exactly as it would), else the
    platform's default."""
    return rule_for(channel.platform, channel.max_characters or seen_limit)


def seen_limits(config: Config) -> dict[str, int]:
    """Limits the real daemon read from the servers (e.g. Mastodon's max_characters)."""
    if not store_exists(config, dry_run=False):
        return {}
    store = open_store(config, dry_run=False)
    try:
        states = store.channel_states()
    finally:
        store.close()
    return {name: s.max_characters for name, s in states.items() if s.max_characters}


def backoff_for(channel: ChannelConfig) -> Backoff:
    cap = channel.retry_max.total_seconds()
    return Backoff(
        base=channel.retry_initial.total_seconds(),
        cap=cap,
        unhealthy_retry=min(Backoff.unhealthy_retry, cap),
    )


def build(
    config: Config,
    *,
    dry_run: bool,
    out: TextIO | None = None,
    clock: Clock = utcnow,
    store: DataStore | None = None,
    backoff: Backoff | None = None,
    renderer: Renderer | None = None,
    on_lease: Callable[[str, bool, bool], None] | None = None,
) -> App:
    """The components that serve ``config``; delivery is not started. Whatever is opened
    here is closed by ``App.close`` in reverse order (or at once if the build fails)."""
    with ExitStack() as opened:
        if dry_run:
            journal = DryRunJournal(config.data_dir / DRY_RUN_JOURNAL, out or sys.stdout)
            limits = seen_limits(config)
        channels: dict[str, Channel] = {}
        for name, c in config.channels.items():
            if dry_run:
                rule = default_rule(c, limits.get(name))
                channels[name] = DryRunChannel(name, c.platform, c.language, rule, journal)
            else:
                channels[name] = real_channel(config, c)
            opened.callback(channels[name].close)
        # Reads each server's own limits (Mastodon's max_characters), all at once: a hanging
        # instance must not hold up the other platforms for its timeout.
        with ThreadPoolExecutor(max_workers=max(1, len(channels))) as pool:
            list(pool.map(lambda channel: channel.start(), channels.values()))
        store = store or open_store(config, dry_run)
        opened.callback(store.close)
        renderer = renderer or renderer_for(config)
        rules = {name: channel.length_rule() for name, channel in channels.items()}
        if not dry_run:
            now = clock()
            for name, rule in rules.items():
                store.update_channel(name, ChannelChange(max_characters=rule.limit), now)
        editor = Editor(store, renderer, config, rules)
        sources = sources_for(config, check=fits_of(editor, clock))
        for source in sources:
            opened.callback(source.close)
        instance = lease_holder(config.store.instance or default_instance())
        shared = config.store.url is not None and not dry_run
        workers = {
            name: ChannelWorker(
                channel,
                store,
                clock=clock,
                backoff=backoff or backoff_for(config.channels[name]),
                budget=Budget.of(config.channels[name]),
                holder=instance,
                lease_ttl=config.store.lease_ttl,
                on_lease=on_lease,
                # Shared store only: another instance may be alive but cut off, its publish
                # still waiting: up to two create calls (the second when the parent was
                # deleted), each a connect then a read, each up to the timeout. With SQLite
                # the former holder is a dead process (flock), its connection closed.
                settle=4 * config.channels[name].timeout if shared else timedelta(0),
            )
            for name, channel in channels.items()
        }
        return App(
            config,
            store,
            renderer,
            editor,
            channels,
            Delivery(workers),
            sources,
            dry_run,
            resources=opened.pop_all(),
        )


def fits_of(editor: Editor, clock: Clock = utcnow) -> Check:
    """The thread-cap check (``Editor.check_fits``) as the state file's validator takes it."""
    return lambda incident: [(p.field, p.message) for p in editor.check_fits(incident, clock())]


def fit_check(config: Config) -> Check:
    """The thread-cap check of ``check``, ``preview``, ``draft`` and the console: the
    daemon's, with the channel rules a rehearsal uses (config, limits last read)."""
    seen = seen_limits(config)
    rules = {name: default_rule(c, seen.get(name)) for name, c in config.channels.items()}
    fits = FitCheck(config, renderer_for(config), rules)
    return lambda incident: [(p.field, p.message) for p in fits.problems(incident, utcnow())]


def sources_for(config: Config, check: Check | None = None) -> list[PullSource]:
    """The polled sources; the HTTP intake (a push source) is opened by the service shell.
    ``check``: what the state file's incidents need beyond the schema (the thread cap)."""
    sources: list[PullSource] = [
        StateFileSource(config.state_file, config.languages(), config.state_file_max_bytes, check)
    ]
    intake = config.intake
    if intake.spool_directory is not None:
        from .sources.spool import SpoolSource

        sources.append(SpoolSource(intake.spool_directory))
    if intake.redis_url is not None:
        from .sources.redis import RedisStreamSource

        sources.append(
            RedisStreamSource(
                intake.redis_url,
                intake.redis_stream,
                intake.redis_group,
                intake.redis_consumer,
                claim_idle=intake.redis_claim_idle,
            )
        )
    return sources


def checked_renderer(config: Config) -> Renderer:
    """The renderer for ``config``, once every channel's templates are known to render.

    Raises ``ReloadError`` otherwise: better the old config than silence.
    """
    renderer = renderer_for(config)
    problems = renderer.check([c.info() for c in config.channels.values()])
    if problems:
        raise ReloadError(p for error in problems for p in error.problems)
    return renderer


def rehearsal(config: Config, *, fresh: bool = False) -> tuple[DataStore, Editor]:
    """A private in-memory store and the very Editor the daemon would use on it, for
    preview, draft and simulate: a copy of the real store (so what is posted counts), or an
    empty one when ``fresh``. Channel rules come from config and the limits the real daemon
    last read, without asking the platforms. The caller closes the store."""
    if fresh or not store_exists(config, dry_run=False):
        store: DataStore = Store(":memory:")
    else:
        real = open_store(config, dry_run=False)
        try:
            store = real.copy_to_memory()
        finally:
            real.close()
    seen = {n: s.max_characters for n, s in store.channel_states().items()}
    rules = {name: default_rule(c, seen.get(name)) for name, c in config.channels.items()}
    return store, Editor(store, renderer_for(config), config, rules)


class Assembly:
    """How the daemon gets an ``App`` for each configuration it loads (start, reload)."""

    def __init__(
        self,
        *,
        dry_run: bool,
        out: TextIO | None,
        clock: Clock,
        on_lease: Callable[[str, bool, bool], None] | None = None,
    ) -> None:
        self.on_lease = on_lease
        self.dry_run = dry_run
        self.out = out
        self.clock = clock
        # The renderer that ``check`` built, reused by ``build`` for the same config.
        self._checked: tuple[Config, Renderer] | None = None

    def check(self, config: Config) -> None:
        self._checked = (config, checked_renderer(config))

    def build(self, config: Config) -> App:
        checked, self._checked = self._checked, None
        renderer = checked[1] if checked is not None and checked[0] is config else None
        return build(
            config,
            dry_run=self.dry_run,
            out=self.out,
            clock=self.clock,
            renderer=renderer,
            on_lease=self.on_lease,
        )


@dataclass(frozen=True)
class Service:
    """The daemon and the service shell attached to it."""

    daemon: Daemon
    shell: ServiceShell


def service(
    config_path: Path,
    *,
    dry_run: bool,
    out: TextIO | None = None,
    clock: Clock = utcnow,
    environ: Mapping[str, str] | None = None,
) -> Service:
    """The daemon for ``config_path`` with its service shell; ``daemon.start()`` (or
    ``run_forever()``) starts both. ``environ`` is where systemd's variables are read."""
    metrics = Metrics()
    daemon = Daemon(
        config_path,
        dry_run=dry_run,
        assembler=Assembly(dry_run=dry_run, out=out, clock=clock, on_lease=metrics.lease_changed),
        clock=clock,
        events=metrics,
    )
    shell = ServiceShell(daemon, metrics=metrics, notifier=Notifier(environ), listen=HttpIntake)
    metrics.watch_health(shell.inspect)
    daemon.attach(shell)
    return Service(daemon, shell)
