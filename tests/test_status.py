"""One read model for ``status``, /healthz and /metrics: counts, waits, due times, budgets."""

from __future__ import annotations

from datetime import timedelta

from store_contract import PROMISE, T0, incident, record

from broadcaster.config import ChannelConfig
from broadcaster.model import IncidentKind, PostKind, PostState
from broadcaster.status import read_status
from broadcaster.store import ChannelChange, ChannelState, Store

CHANNELS = {
    "x-en": ChannelConfig(
        name="x-en", platform="x", language="en", max_posts=(3, timedelta(hours=1))
    ),
    "mastodon-en": ChannelConfig(name="mastodon-en", platform="mastodon", language="en"),
}


def test_counts_waits_due_times_and_budgets_per_channel() -> None:
    store = Store(":memory:")
    store.apply_incidents([incident()], T0)
    opened = record(store, PostKind.OPENED, 1)
    update = record(store, PostKind.UPDATE, 2, revision=2, at=T0 + timedelta(minutes=1))
    store.mark_sending(opened.key(1))
    store.mark_sent(opened.key(1), "1", "https://x/1", T0)
    store.update_channel("x-en", ChannelChange(last_error="timeout"), T0)
    record(store, PostKind.OPENED, 1, channel="retired")  # no longer configured
    now = T0 + timedelta(minutes=1) + PROMISE + timedelta(seconds=10)

    status = read_status(store, CHANNELS, now)

    assert list(status.channels) == ["x-en", "mastodon-en", "retired"]
    x = status.channels["x-en"]
    assert x.state == ChannelState("x-en", last_error="timeout")
    assert (x.count(PostState.SENT), x.waiting, x.count(PostState.FAILED)) == (1, 1, 0)
    assert x.oldest_waiting_at == T0 + timedelta(minutes=1)
    assert x.due_times == (T0 + timedelta(minutes=1) + PROMISE,)
    assert x.overdue(now, timedelta(seconds=5)) == 1
    assert x.overdue(now, timedelta(seconds=30)) == 0
    assert x.budget_left == 2
    quiet = status.channels["mastodon-en"]
    assert (quiet.state, quiet.waiting, quiet.budget_left) == (
        ChannelState("mastodon-en"),
        0,
        None,
    )
    (sbg,) = status.incidents
    assert sbg.threads["x-en"].next_due_at == x.due_times[0]
    assert sbg.threads["x-en"].link is None, "links are read only when asked for"
    assert status.undelivered == []

    detailed = read_status(store, CHANNELS, now, detailed=True)
    assert detailed.incidents[0].threads["x-en"].link == "https://x/1"
    assert [p.key for p in detailed.undelivered] == [update.key(1), "sbg:r1:retired:opened.1:p1"]


def test_probes_read_the_same_due_times_without_reading_incidents_whole() -> None:
    store = Store(":memory:")
    asked = T0 + timedelta(minutes=7)
    store.apply_incidents([incident(), incident(id="soon", next_update_at=asked)], T0)
    maintenance = incident(
        id="works",
        kind=IncidentKind.MAINTENANCE,
        status="scheduled",
        starts_at=T0 + timedelta(minutes=5),
        ends_at=T0 + timedelta(hours=2),
    )
    store.apply_incidents([maintenance], T0)
    record(store, PostKind.OPENED, 1)
    record(store, PostKind.OPENED, 1, incident_id="soon")
    record(store, PostKind.OPENED, 1, incident_id="soon", channel="mastodon-en")
    record(store, PostKind.OPENED, 1, channel="retired")
    now = T0 + timedelta(minutes=20)

    full = read_status(store, CHANNELS, now)
    probe = read_status(store, CHANNELS, now, incidents=False)

    assert probe.incidents == [] and len(full.incidents) == 3
    assert probe.not_started == full.not_started == ("works",)
    assert {n: sorted(c.due_times) for n, c in probe.channels.items()} == {
        n: sorted(c.due_times) for n, c in full.channels.items()
    }
    assert asked in full.channels["mastodon-en"].due_times
