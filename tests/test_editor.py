"""The editor joins planning, templates and length rules to the store (fake clock)."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from support import ROOT

from broadcaster.app import default_rule
from broadcaster.config import load_config
from broadcaster.editor import Editor
from broadcaster.model import Incident, Localized, PostKind, PostState
from broadcaster.render import Renderer
from broadcaster.sources.file import StateFileSource
from broadcaster.store import Store

PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2017, 11, 9, 7, 25, tzinfo=PARIS)


@pytest.fixture
def editor() -> Editor:
    config = load_config(ROOT / "config.example.toml")
    config = replace(config, channels={"x-en": config.channels["x-en"]})
    rules = {name: default_rule(c) for name, c in config.channels.items()}
    renderer = Renderer(config.templates_dir, config.timezone)
    return Editor(Store(":memory:"), renderer, config, rules)


def incident(**kw: object) -> Incident:
    base: dict[str, object] = dict(
        id="sbg",
        title=Localized.of("Power outage in SBG"),
        status="investigating",
        severity="critical",
        started_at=T0,
        services=("VPS",),
        regions=("SBG",),
        message=Localized.of("Power lost in both feeds."),
    )
    base.update(kw)
    return Incident(**base)  # type: ignore[arg-type]


def test_an_unsent_post_whose_promise_passed_is_replanned_with_a_fresh_one(editor: Editor) -> None:
    editor.ingest([incident()], T0)
    (opened,), wake = editor.run(T0)
    assert wake == opened.post.next_update_at
    # the channel was paused: nothing delivered by the promised time
    (again,), _ = editor.run(wake)
    assert again.post.kind is PostKind.OPENED, "an opening is never dropped, only refreshed"
    assert again.post.next_update_at > wake
    states = {p.key: p.state for p in editor.store.posts()}
    assert states[opened.keys[0]] is PostState.SUPERSEDED
    assert states[again.keys[0]] is PostState.PENDING
    assert "Next update by" in again.parts[0][0]


def test_a_delivered_post_is_never_replanned(editor: Editor) -> None:
    editor.ingest([incident()], T0)
    (opened,), wake = editor.run(T0)
    editor.store.mark_sent(opened.keys[0], "1", None, T0)
    (reminder,), _ = editor.run(wake)
    assert reminder.post.kind is PostKind.REMINDER
    assert reminder.post.sequence == 2


def test_a_repeated_text_is_stamped_so_the_platform_never_sees_a_duplicate(
    editor: Editor,
) -> None:
    editor.ingest([incident()], T0)
    (opened,), _ = editor.run(T0)
    snapshot = editor.store.snapshot("sbg")
    assert snapshot is not None
    parts = editor.compose(snapshot, opened.post)
    assert parts[0][0] != opened.parts[0][0]
    # The last resort, said as the time of posting on a line of its own, never mid-sentence.
    assert parts[0][0].endswith("\nPosted at 07:25 CET")
    assert parts[0][1] <= parts[0][2]


def outage(status: str = "investigating", more: str = "") -> str:
    """A one-incident state file, as ops would save it."""
    return (
        f'[[incidents]]\nid = "a"\ntitle = "Outage"\nstatus = "{status}"\n'
        f"started_at = 2017-11-09T07:23:00+01:00\n{more}"
    )


def committed(path: Path, text: str) -> StateFileSource:
    """A source that has read ``text`` at ``path`` and had it committed."""
    path.write_text(text)
    source = StateFileSource(path)
    batch = source.poll()
    assert batch is not None
    batch.ack()
    return source


def test_the_state_file_counts_as_read_only_once_the_store_committed_it(tmp_path: Path) -> None:
    path = tmp_path / "state.toml"
    path.write_text(outage())
    source = StateFileSource(path)
    first = source.poll()
    assert first is not None and [i.id for i in first.incidents] == ["a"]
    again = source.poll()  # the store failed to commit: it must be offered again
    assert again is not None
    again.ack()
    assert source.poll() is None


def test_a_second_same_size_save_within_one_timestamp_tick_is_not_missed(
    tmp_path: Path,
) -> None:
    """Two in-place saves of the same size inside one mtime tick look alike to stat: the
    second (here "identified" → "monitoring" in a time-stamped line of equal length) must
    still be read, not waved through as already seen."""
    path = tmp_path / "state.toml"
    first_text = outage("identified", 'cause = "Feed lost"\n')
    source = committed(path, first_text)
    before = path.stat()
    second_text = first_text.replace('"identified"', '"monitoring"')
    assert len(second_text) == len(first_text)
    with path.open("r+") as f:  # in place: same inode
        f.write(second_text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # same tick
    second = source.poll()
    assert second is not None and second.incidents[0].status == "monitoring"


def test_the_incidents_applied_are_those_of_the_bytes_whose_digest_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save landing while the file is being read must not pair one version's digest with
    another version's incidents (the later save would then look already applied)."""
    import broadcaster.sources.file as file_source

    path = tmp_path / "state.toml"
    text = outage()
    path.write_text(text)
    real_read = file_source.read_bytes

    def read_then_saved_again(*args: object, **kwargs: object) -> bytes:
        raw = real_read(*args, **kwargs)  # type: ignore[arg-type]
        path.write_text(text.replace('"investigating"', '"identified"'))
        return raw

    monkeypatch.setattr(file_source, "read_bytes", read_then_saved_again)
    batch = StateFileSource(path).poll()
    assert batch is not None and batch.incidents[0].status == "investigating"


def test_a_save_cut_short_before_the_message_keeps_the_last_good_state(tmp_path: Path) -> None:
    """A save cut on a line boundary is valid TOML that lost its last lines: posted, it
    would be an update with no message. Refused, with file, line and field."""
    path = tmp_path / "state.toml"
    whole = outage(more='message = "Power is lost."\n')
    source = committed(path, whole)
    path.write_text(whole.replace('"investigating"', '"identified"').rsplit("message", 1)[0])
    assert source.poll() is None, "nothing of the cut save is applied"
    error = source.last_error or ""
    assert f"{path}:1" in error and "'message'" in error and "save cut short" in error
    # A per-language message that loses a language is refused alike; one text for all is fine.
    path.write_text(whole.replace('"Power is lost."', '{ en = "Lost.", fr = "Coupé." }'))
    batch = source.poll()
    assert batch is not None and source.last_error is None
    batch.ack()
    path.write_text(whole.replace('"Power is lost."', '{ en = "Still lost." }'))
    assert source.poll() is None and "message in fr was removed" in (source.last_error or "")
    path.write_text(whole.replace('"Power is lost."', '"Back on one feed."'))
    assert source.poll() is not None and source.last_error is None


def test_two_incidents_with_the_same_long_message_share_no_part(editor: Editor) -> None:
    long = " ".join(["Power was lost on both feeds and the generators did not start."] * 12)
    editor.ingest(
        [
            incident(id="a", message=Localized.of(long)),
            incident(id="b", message=Localized.of(long)),
        ],
        T0,
    )
    recorded, _ = editor.run(T0)
    parts = [text for r in recorded for text, _, _ in r.parts]
    assert len(parts) > 4
    assert len(parts) == len(set(parts)), "X would refuse a repeated part as duplicate content"
    assert all(length <= limit for r in recorded for _, length, limit in r.parts)
    assert all(rule_ok for rule_ok in (length <= 280 for r in recorded for _, length, _ in r.parts))
    second = [text for text, _, _ in recorded[1].parts]
    assert all(text.endswith(f"({i}/{len(second)})") for i, text in enumerate(second, 1))


def test_two_stale_posts_of_one_thread_become_one_fresh_post(editor: Editor) -> None:
    editor.ingest([incident()], T0)
    (_opened,), wake = editor.run(T0)
    later = T0 + timedelta(minutes=3)
    editor.ingest([incident(status="identified")], later)
    (_update,), _ = editor.run(later)  # an update queued behind the unsent opening
    assert wake is not None
    refreshed, _ = editor.run(wake + timedelta(minutes=30))
    assert [r.post.kind for r in refreshed] == [PostKind.OPENED]
    pending = editor.store.posts(states=(PostState.PENDING,))
    assert [p.key for p in pending] == refreshed[0].keys
    assert len({p.sequence for p in editor.store.posts()}) == len(editor.store.posts())


def test_an_open_incident_cut_from_the_file_keeps_its_reminders(
    editor: Editor, tmp_path: Path
) -> None:
    path = tmp_path / "state.toml"
    path.write_text(
        '[[incidents]]\nid = "a"\ntitle = "Outage"\nstatus = "investigating"\n'
        'severity = "critical"\nstarted_at = 2017-11-09T07:23:00+01:00\n'
    )
    source = StateFileSource(path)
    batch = source.poll()
    assert batch is not None
    editor.ingest(batch.incidents, T0, source="file")
    (opened,), wake = editor.run(T0)
    editor.store.mark_sent(opened.keys[0], "1", None, T0)
    path.write_text("")  # someone cut the file by mistake
    batch = source.poll()
    assert batch is not None and batch.incidents == []
    editor.ingest(batch.incidents, T0, source="file")
    assert wake is not None
    (reminder,), _ = editor.run(wake)
    assert reminder.post.kind is PostKind.REMINDER, "never silent because of a bad save"


def test_preview_shows_the_next_post_of_a_thread_with_nothing_due_now(tmp_path: Path) -> None:
    from broadcaster.app import store_path
    from broadcaster.rehearsal import preview

    config = load_config(ROOT / "config.example.toml")
    config = replace(config, data_dir=tmp_path, channels={"x-en": config.channels["x-en"]})
    store = Store(store_path(config, dry_run=False))
    rules = {"x-en": default_rule(config.channels["x-en"])}
    real = Editor(store, Renderer(config.templates_dir, config.timezone), config, rules)
    real.ingest([incident()], T0)
    (opened,), wake = real.run(T0)
    store.mark_sent(opened.keys[0], "1", None, T0)
    store.close()
    (shown,) = preview(config, [incident()], T0 + timedelta(minutes=1))
    assert shown.recorded.post.kind is PostKind.REMINDER
    assert shown.at == wake


def test_an_update_behind_an_unsent_update_replaces_it_and_replies_to_the_opening(
    editor: Editor,
) -> None:
    editor.ingest([incident()], T0)
    (opened,), _ = editor.run(T0)
    editor.ingest([incident(status="identified")], T0 + timedelta(minutes=1))
    (first,), _ = editor.run(T0 + timedelta(minutes=1))
    editor.ingest(
        [incident(status="identified", message=Localized.of("Generators down."))],
        T0 + timedelta(minutes=2),
    )
    (second,), _ = editor.run(T0 + timedelta(minutes=2))
    posts = {p.key: p for p in editor.store.posts()}
    assert posts[opened.keys[0]].state is PostState.PENDING, "an opening is never dropped"
    assert posts[first.keys[0]].state is PostState.SUPERSEDED
    assert posts[second.keys[0]].reply_to_key == opened.keys[-1]
    thread = editor.store.threads()[("sbg", "x-en")]
    assert thread.last_post_key == second.keys[-1] and thread.post_count == 3


def test_a_reminder_whose_tail_would_repeat_is_cut_elsewhere_not_stamped(editor: Editor) -> None:
    # Ops' word fills the reminder's first part: cut naturally, every reminder would end
    # with the same last two sentences, a reply X refuses as a duplicate. The thread is cut
    # elsewhere instead (the "Latest update" line whole in the reply), never mid-sentence.
    message = (
        "Both power feeds of the Strasbourg site were lost at 07:23 and every server there"
        " went dark at once. Our electricians are on site with the power company and are"
        " checking each feed in turn. We will restart the racks room by room."
    )
    editor.ingest([incident(message=Localized.of(message))], T0)
    threads: list[list[str]] = []
    now: datetime | None = T0
    for _ in range(4):
        assert now is not None
        recorded, now = editor.run(now)
        for r in recorded:
            threads.append([text for text, _, _ in r.parts])
            assert all(length <= limit for _, length, limit in r.parts)
            for key in r.keys:
                editor.store.mark_sent(key, key[-12:], None, r.post.planned_at)
    every = [part for thread in threads for part in thread]
    assert len(every) == len(set(every)), "X would refuse a repeated part"
    assert not any("Posted at" in part for part in every)
    for thread in threads[2:]:  # the reminders cut elsewhere: ops' word whole in one part
        assert any(f"ago): {message} (" in part for part in thread), thread
    assert all(part[0].isupper() or not part[0].isalpha() for part in every)


def test_a_broken_save_reverted_to_the_last_good_bytes_clears_the_error(tmp_path: Path) -> None:
    """Ops undo a broken edit (`git checkout`, the editor's undo): the file is the last good
    one again, nothing to apply, but the source must stop reporting the old error (it feeds
    `broadcaster_source_ok` and `/healthz`)."""
    path = tmp_path / "state.toml"
    good = outage("identified", 'cause = "Feed lost"\n')
    source = committed(path, good)
    path.write_text(good.replace('"identified"', '"identified'))
    assert source.poll() is None
    assert source.last_error is not None and "state.toml:4" in source.last_error
    path.write_text(good)
    assert source.poll() is None  # nothing changed since the last good state
    assert source.last_error is None
