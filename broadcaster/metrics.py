"""Prometheus metrics for ``GET /metrics``, on a registry of our own.

Post counts, outbox depth, pauses and overdue promises are read from the store at scrape
time by a custom collector (through the same health check as ``/healthz``): the store is
the truth, so the series survive restarts and cannot drift from it. Only what the store
does not record (events accepted or refused, reload results, HTTP requests) is counted
in memory here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .clock import utcnow
from .health import Health

HTTP_ROUTES = ("/v1/events", "/healthz", "/metrics")


class Metrics:
    """The daemon's metrics. ``event_accepted``/``event_rejected`` are called per event;
    the store's series come from the health check given to ``watch_health``."""

    def __init__(self) -> None:
        # Private, not prometheus_client's global REGISTRY: two daemons in one process (tests,
        # benchmarks) must not collide, and nothing else's metrics leak into ours.
        self.registry = CollectorRegistry(auto_describe=False)
        self._events_accepted = Counter(
            "broadcaster_events_accepted",
            "Pushed events (HTTP, spool, Redis) applied to the store, by source.",
            ["source"],
            registry=self.registry,
        )
        self._events_rejected = Counter(
            "broadcaster_events_rejected",
            "Pushed events refused (invalid JSON, too large, failed validation), by source.",
            ["source"],
            registry=self.registry,
        )
        self._reload_ok = Gauge(
            "broadcaster_config_last_reload_successful",
            "1 if the last configuration load (start or SIGHUP) succeeded, else 0.",
            registry=self.registry,
        )
        self._reload_at = Gauge(
            "broadcaster_config_last_reload_timestamp_seconds",
            "When the configuration was last loaded or a reload was last tried (Unix time).",
            registry=self.registry,
        )
        self._reload_ok_at = Gauge(
            "broadcaster_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully (Unix time).",
            registry=self.registry,
        )
        self._http = Counter(
            "broadcaster_http_requests",
            "HTTP requests answered, by route and status code.",
            ["route", "code"],
            registry=self.registry,
        )

        self._lease_held = Gauge(
            "broadcaster_channel_lease_held",
            "1 while this instance holds the channel's delivery lease (delivers it), else 0.",
            ["channel"],
            registry=self.registry,
        )
        self._takeovers = Counter(
            "broadcaster_channel_lease_takeovers",
            "Times this instance took a channel over from another whose lease ran out.",
            ["channel"],
            registry=self.registry,
        )

    def lease_changed(self, channel: str, held: bool, takeover: bool) -> None:
        """This instance took (``held``) or lost a channel's lease; ``takeover``: from
        another instance."""
        self._lease_held.labels(channel=channel).set(1 if held else 0)
        counter = self._takeovers.labels(channel=channel)
        if takeover:
            counter.inc()

    def watch_health(self, inspect: Callable[[], Health | None]) -> None:
        """Read the store's series (and ``broadcaster_healthy``) from this check at scrape
        time. Once: the service shell's check, wired by ``app.py``."""
        self.registry.register(_StoreCollector(inspect))

    def event_accepted(self, source: str) -> None:
        self._events_accepted.labels(source=source).inc()

    def event_rejected(self, source: str) -> None:
        self._events_rejected.labels(source=source).inc()

    def touch_sources(self, sources: Iterable[str]) -> None:
        for source in sources:
            self._events_accepted.labels(source=source)
            self._events_rejected.labels(source=source)

    def reloaded(self, ok: bool, at: float | None = None) -> None:
        at = utcnow().timestamp() if at is None else at
        self._reload_ok.set(1 if ok else 0)
        self._reload_at.set(at)
        if ok:
            self._reload_ok_at.set(at)

    def http_request(self, path: str, code: int) -> None:
        # Unknown paths share one label: a scanner must not mint a series per URL.
        route = path if path in HTTP_ROUTES else "other"
        self._http.labels(route=route, code=str(code)).inc()

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition in the format the scraper asked for (text, or OpenMetrics)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _StoreCollector(Collector):
    def __init__(self, inspect: Callable[[], Health | None]) -> None:
        self._inspect = inspect

    def describe(self) -> Iterable[Metric]:
        return []  # no store read at registration time

    def collect(self) -> Iterator[Metric]:
        health = self._inspect()
        up = GaugeMetricFamily(
            "broadcaster_healthy",
            "1 when the daemon is healthy (what /healthz and the systemd watchdog use), else 0.",
        )
        up.add_metric([], 1 if health is not None and health.ok else 0)
        yield up
        if health is None:
            return
        unplannable = GaugeMetricFamily(
            "broadcaster_threads_unplannable",
            "Incident threads whose next post cannot be recorded (see /healthz); "
            "retried at every plan.",
        )
        unplannable.add_metric([], len(health.unplannable))
        yield unplannable
        sent = CounterMetricFamily(
            "broadcaster_posts_sent", "Posts confirmed by the platform.", labels=["channel"]
        )
        failed = CounterMetricFamily(
            "broadcaster_posts_failed", "Posts the platform refused for good.", labels=["channel"]
        )
        depth = GaugeMetricFamily(
            "broadcaster_outbox_depth",
            "Posts recorded but not yet confirmed (pending + sending).",
            labels=["channel"],
        )
        oldest = GaugeMetricFamily(
            "broadcaster_outbox_oldest_seconds",
            "Age of the oldest undelivered post (0 when the outbox is empty).",
            labels=["channel"],
        )
        paused = GaugeMetricFamily(
            "broadcaster_channel_paused",
            "1 while the channel waits out a platform rate limit, else 0.",
            labels=["channel"],
        )
        remaining = GaugeMetricFamily(
            "broadcaster_channel_pause_remaining_seconds",
            "Seconds until the channel's rate-limit pause ends (0 when not paused).",
            labels=["channel"],
        )
        overdue = GaugeMetricFamily(
            "broadcaster_updates_overdue",
            "Open threads whose promised next update is more than 5 s late and not planned.",
            labels=["channel"],
        )
        healthy = GaugeMetricFamily(
            "broadcaster_channel_healthy",
            "1 when the channel's delivery worker runs and the platform accepts our "
            "credentials, else 0.",
            labels=["channel"],
        )
        worker = GaugeMetricFamily(
            "broadcaster_delivery_worker_up",
            "1 while the channel's delivery worker thread is alive.",
            labels=["channel"],
        )
        for name, c in health.channels.items():
            left = c.pause_remaining(health.checked_at)
            sent.add_metric([name], c.sent)
            failed.add_metric([name], c.failed)
            depth.add_metric([name], c.undelivered)
            oldest.add_metric([name], c.oldest_undelivered_seconds)
            paused.add_metric([name], 1 if left > 0 else 0)
            remaining.add_metric([name], left)
            overdue.add_metric([name], c.overdue)
            healthy.add_metric([name], 1 if c.healthy else 0)
            worker.add_metric([name], 1 if c.worker_alive else 0)
        yield from (sent, failed, depth, oldest, paused, remaining, overdue, healthy, worker)
        late = GaugeMetricFamily(
            "broadcaster_maintenances_not_started",
            "Maintenances still scheduled after their start time: start, move or cancel them "
            "(once their window ends, customers are told a new date will follow).",
        )
        late.add_metric([], health.maintenances_not_started)
        yield late
        sources = GaugeMetricFamily(
            "broadcaster_source_ok",
            "1 when the source's last input was valid (0: running on the last good state).",
            labels=["source"],
        )
        for name, error in health.sources.items():
            sources.add_metric([name], 0 if error else 1)
        yield sources
