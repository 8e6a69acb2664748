"""The composition point: the one place where config, store, templates, sources, channels and
delivery are wired together. Everything else receives what it needs as arguments."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

from .channels.base import Channel
from .channels.dryrun import DryRunChannel, DryRunJournal
from .config import ChannelConfig, Config, ConfigError, ConfigProblem
from .delivery import Backoff, Budget, ChannelWorker, Delivery, utcnow
from .editor import Editor
from .render import Renderer
from .sources.base import Source
from .sources.file import StateFileSource
from .store import ChannelChange, Store
from .textfit import LengthRule, rule_for

log = logging.getLogger("broadcaster.app")

STORE_FILE = "broadcaster.sqlite3"
DRY_RUN_STORE_FILE = "dry-run.sqlite3"
DRY_RUN_JOURNAL = "dry-run.jsonl"


def store_path(config: Config, dry_run: bool) -> Path:
    # A dry run keeps its own records: it must never mark a real post as sent.
    return config.data_dir / (DRY_RUN_STORE_FILE if dry_run else STORE_FILE)


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
    path = store_path(config, dry_run=False)
    if not path.exists():
        return {}
    store = Store(path)
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


def budget_for(channel: ChannelConfig) -> Budget:
    posts, window = channel.max_posts or (None, None)
    return Budget(max_posts=posts, window=window, min_interval=channel.min_interval)


@dataclass
class App:
    config: Config
    store: Store
    renderer: Renderer
    editor: Editor
    channels: dict[str, Channel]
    delivery: Delivery
    sources: list[Source]
    dry_run: bool

    def close(self, *, wait: float = 10.0) -> None:
        if not self.delivery.stop(wait):
            log.warning(
                "a post was still in flight after %.0fs; it will be checked on the "
                "platform before any re-send",
                wait,
            )
        for source in self.sources:
            source.close()
        for channel in self.channels.values():
            channel.close()
        self.store.close()


def build(
    config: Config,
    *,
    dry_run: bool,
    out: TextIO | None = None,
    clock: Callable[[], datetime] = utcnow,
    store: Store | None = None,
    backoff: Backoff | None = None,
) -> App:
    if dry_run:
        journal = DryRunJournal(config.data_dir / DRY_RUN_JOURNAL, out or sys.stdout)
        limits = seen_limits(config)
        channels: dict[str, Channel] = {
            name: DryRunChannel(
                name, c.platform, c.language, default_rule(c, limits.get(name)), journal
            )
            for name, c in config.channels.items()
        }
    else:
        channels = {name: real_channel(config, c) for name, c in config.channels.items()}
    # Reads each server's own limits (Mastodon's max_characters), all at once: a hanging
    # instance must not hold up the other platforms for its timeout.
    with ThreadPoolExecutor(max_workers=max(1, len(channels))) as pool:
        list(pool.map(lambda channel: channel.start(), channels.values()))
    store = store or Store(store_path(config, dry_run))
    renderer = Renderer(config.templates_dir, config.timezone)
    rules = {name: channel.length_rule() for name, channel in channels.items()}
    if not dry_run:
        now = clock()
        for name, rule in rules.items():
            store.update_channel(name, ChannelChange(max_characters=rule.limit), now)
    editor = Editor(store, renderer, config, rules)
    workers = {
        name: ChannelWorker(
            channel,
            store,
            clock=clock,
            backoff=backoff or backoff_for(config.channels[name]),
            budget=budget_for(config.channels[name]),
        )
        for name, channel in channels.items()
    }
    return App(
        config, store, renderer, editor, channels, Delivery(workers), sources_for(config), dry_run
    )


def sources_for(config: Config) -> list[Source]:
    sources: list[Source] = [StateFileSource(config.state_file, config.languages())]
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
