"""From incident state to recorded posts: plan, render, fit, record.

The one place where the pure planner, the templates and the length rules meet the store.
The planner decides (what to post, what it supersedes, what it replies to); the editor
composes each post's exact parts (render, fit, stamp repeats) and records them. Nothing
here talks to a platform; delivery picks the recorded posts up.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import logging
import re
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from . import i18n, planner
from .advice import incident_advice
from .config import Config
from .fits import FitCheck, TooLong
from .model import ChannelInfo, Incident, OutboxPost, PlannedPost, Snapshot, ThreadState
from .render import Renderer, TemplateError
from .store import DataStore
from .textfit import LengthRule
from .textsplit import split

log = logging.getLogger("broadcaster.editor")

_NUMBERING = re.compile(r" \(\d+/\d+\)$")
# A plan of more incidents than this loads and plans them this many at a time (memory).
_CHUNK = 500
# How much shorter than the limit each re-cut of a thread that reads badly is tried.
_RECUT_STEP = 4


def _with_marker(part: str, marker: str) -> str:
    """``marker`` on a line of its own at the end of a part, before its "(i/n)": after the
    last full sentence, never inside one."""
    numbering = _NUMBERING.search(part)
    if numbering:
        return f"{part[: numbering.start()]}\n{marker}{numbering.group(0)}"
    return f"{part}\n{marker}"


class OverCap(Exception):
    """A post longer than its channel's thread cap: never recorded."""


class _Timers:
    """``planner.due`` over every active incident, as of the store's ``change_token``:
    when each incident is next due (a heap, so a plan's cost does not grow with them)."""

    def __init__(self, token: object, found: planner.Due) -> None:
        self.token = token
        self.later = dict(found.later)  # incident → when it is next due
        self.heap = [(at, i) for i, at in self.later.items()]
        heapq.heapify(self.heap)
        self.again = set(found.now)  # due at every plan (no thread yet, a post not recorded)

    def due(self, now: datetime) -> set[str]:
        ready = set(self.again)
        while self.heap and self.heap[0][0] <= now:
            at, incident_id = heapq.heappop(self.heap)
            if self.later.get(incident_id) == at:
                ready.add(incident_id)
        return ready

    def next(self) -> datetime | None:
        heap = self.heap
        while heap and self.later.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # superseded by a newer time for the same incident
        return heap[0][0] if heap else None

    def update(self, planned: Collection[str], found: planner.Due) -> None:
        """These incidents were planned: their timers as read again."""
        for incident_id in planned:
            self.later.pop(incident_id, None)
            self.again.discard(incident_id)
        self.again |= found.now
        for incident_id, at in found.later.items():
            self.later[incident_id] = at
            heapq.heappush(self.heap, (at, incident_id))
        if len(self.heap) > 2 * len(self.later) + 1000:
            self.heap = [(at, i) for i, at in self.later.items()]
            heapq.heapify(self.heap)


class _PartsAfter:
    """How many parts a plan records after its ``index``-th decision on the same channel:
    posts planned after it go out before its next post does, so a budget counts them.

    Asked only for budgeted channels; each channel's posts are composed once, when first
    asked, and summed from the end, so a plan of many incidents stays linear.
    """

    def __init__(
        self,
        editor: Editor,
        snapshots: Mapping[str, Snapshot],
        decisions: Sequence[planner.Decision],
    ) -> None:
        self._editor = editor
        self._snapshots = snapshots
        self._decisions = decisions
        self._after: dict[int, int] | None = None

    def __call__(self, index: int) -> int:
        if self._after is None:
            self._after = {}
        if index not in self._after:
            self._count(self._decisions[index].post.channel)
        return self._after[index]

    def _count(self, channel: str) -> None:
        assert self._after is not None
        total = 0
        for index in range(len(self._decisions) - 1, -1, -1):
            post = self._decisions[index].post
            if post.channel != channel:
                continue
            self._after[index] = total
            try:
                total += len(self._editor.compose(self._snapshots[post.incident_id], post))
            except TemplateError:
                total += 1  # reported when its own turn comes


class Recorded:
    """A post recorded by a plan: its exact parts (text, counted length, limit).

    A plan of many incidents returns many of these (20,000 at start with 10,000 open), so
    each is kept small: the texts held as UTF-8 (one emoji makes a Python string take four
    bytes per character), the keys worked out when asked.
    """

    __slots__ = ("_lengths", "_limits", "_texts", "post")

    def __init__(self, post: PlannedPost, parts: Sequence[tuple[str, int, int]]) -> None:
        self.post = post
        self._texts = tuple(text.encode() for text, _, _ in parts)
        self._lengths = tuple(length for _, length, _ in parts)
        limits = {limit for _, _, limit in parts}
        # One limit for every part (the channel's), held once.
        self._limits: int | tuple[int, ...] = (
            limits.pop() if len(limits) == 1 else tuple(limit for _, _, limit in parts)
        )

    @property
    def parts(self) -> list[tuple[str, int, int]]:
        limits = self._limits
        if isinstance(limits, int):
            limits = (limits,) * len(self._texts)
        return [
            (text.decode(), length, limit)
            for text, length, limit in zip(self._texts, self._lengths, limits, strict=True)
        ]

    @property
    def keys(self) -> list[str]:
        """Its parts' outbox keys, first to last."""
        return [self.post.key(i) for i in range(1, len(self._texts) + 1)]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Recorded):
            return NotImplemented
        return self.post == other.post and self.parts == other.parts

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Recorded(post={self.post!r}, parts={self.parts!r})"


class Editor:
    def __init__(
        self,
        store: DataStore,
        renderer: Renderer,
        config: Config,
        rules: Mapping[str, LengthRule],
    ) -> None:
        self.store = store
        self.renderer = renderer
        self.config = config
        self.rules = dict(rules)
        self._lock = threading.Lock()
        self._changes_lock = threading.Lock()
        self._reported: set[str] = set()
        self._advised: set[tuple[str, int]] = set()  # (incident, revision) already advised
        # (incident, channel) → why its post cannot be recorded: shown by /healthz, the
        # metrics and the logs (once per revision), retried at every plan.
        self.unplannable: dict[tuple[str, str], str] = {}
        # Incidents changed through ``ingest`` since the last plan, and those whose post
        # could not be recorded at the last one: the next plan sees them whatever it is told.
        self._changed: set[str] = set()
        self._failed: set[str] = set()
        # ``planner.due`` over every active incident, kept up to date plan after plan while
        # nothing else writes to the store (``DataStore.change_token``).
        self._timers: _Timers | None = None
        self.fits = FitCheck(config, renderer, rules)

    def check_fits(self, incident: Incident, now: datetime) -> list[TooLong]:
        """Why ``incident`` cannot be accepted: posts longer than a channel's thread cap
        (``max_parts``). Every door asks this before accepting an incident."""
        return self.fits.problems(incident, now)

    def channel_info(self, name: str) -> ChannelInfo:
        return self.config.channels[name].info()

    def ingest(
        self, incidents: Iterable[Incident], now: datetime, *, source: str | None = None
    ) -> list[str]:
        changed = self.store.apply_incidents(incidents, now, source=source)
        with self._changes_lock:
            self._changed.update(changed)
        return changed

    def compose(self, snapshot: Snapshot, post: PlannedPost) -> list[tuple[str, int, int]]:
        """The exact parts of one post: (text, counted length, limit)."""
        channel = self.channel_info(post.channel)
        rendered = self.renderer.render_post(snapshot, post, channel, post.planned_at)
        text, head = rendered.text, rendered.head
        rule = self.rules[post.channel]
        parts = split(text, rule, head=head)
        seen: dict[str, bool] = {}  # part → already out on the channel (one lookup each)
        if len(parts) > 1:
            parts = self._recut(text, head, rule, post, parts, seen)
        if any(self._repeats(post.channel, part, parts, seen) for part in parts):
            parts = self._stamped(text, head, rule, post, channel.language)
        return [(part, rule.count(part), rule.limit) for part in parts]

    def _recut(
        self,
        text: str,
        head: int,
        rule: LengthRule,
        post: PlannedPost,
        parts: list[str],
        seen: dict[str, bool],
    ) -> list[str]:
        """The same thread cut elsewhere when the natural cut reads badly: a part that
        repeats an earlier one, a reply too short to say anything, a line torn between
        two replies. The first part keeps the head and gives up some of its last lines, the
        replies are cut a little short of the limit: a line moves to its neighbour's part
        (the elapsed time joins the cause, ops' word stays whole), so the parts differ in
        words and no "Posted at" stamp is needed. Never more parts than the natural cut,
        so the thread cap checked on acceptance still holds."""
        # The text's own lines, as parts end them (right-stripped): a part ending
        # elsewhere tore one. Worked out once for every cut tried.
        lines = frozenset(line.rstrip() for line in text.splitlines())
        best, score = parts, self._flaws(post.channel, lines, parts, rule, seen)
        if not any(score):
            return parts
        body = text.strip()
        essentials = text[:head].strip()
        first = _NUMBERING.sub("", parts[0])
        # Where the first part may end: at each line break from the end of the head on.
        ends = [len(first)]
        ends += [m.start() for m in re.finditer(r"\n", first) if m.start() >= len(essentials)]
        step = max(_RECUT_STEP, rule.limit // 16)
        tried: set[tuple[str, ...]] = {tuple(parts)}
        for end in sorted(set(ends), reverse=True):
            rest = body[end:].strip()
            if not rest:
                continue
            for limit in range(rule.limit, rule.limit // 2, -step):
                try:
                    replies = split(rest, replace(rule, limit=limit), whole_words=True)
                except ValueError:
                    break
                n = 1 + len(replies)
                if n > len(parts):
                    break  # shorter still only cuts more
                m = len(replies)  # their own numbering, taken off exactly: never words
                contents = [body[:end].rstrip()] + [
                    r.removesuffix(f" ({i}/{m})") if m > 1 else r for i, r in enumerate(replies, 1)
                ]
                cut = [f"{c} ({i}/{n})" for i, c in enumerate(contents, 1)]
                if tuple(cut) in tried or not all(rule.fits(c) for c in cut):
                    continue
                tried.add(tuple(cut))
                flaws = self._flaws(post.channel, lines, cut, rule, seen)
                if flaws < score:
                    best, score = cut, flaws
                    if not any(flaws):
                        return best
        return best

    def _flaws(
        self,
        channel: str,
        lines: frozenset[str],
        parts: list[str],
        rule: LengthRule,
        seen: dict[str, bool],
    ) -> tuple[int, int, int]:
        """How badly a thread reads, worst first: repeated parts, orphans (a reply of one
        line under a quarter of the limit), lines torn between two replies."""
        repeats = sum(self._repeats(channel, part, parts, seen) for part in parts)
        short = sum(
            "\n" not in part and rule.count(_NUMBERING.sub("", part)) < rule.limit // 4
            for part in parts[1:]
        )
        # The first part holds as much as fits (ops' news where most people read it):
        # only a line torn between two replies counts.
        torn = sum(_NUMBERING.sub("", part).splitlines()[-1] not in lines for part in parts[1:-1])
        return repeats, short, torn

    def _repeats(
        self, channel: str, part: str, parts: list[str], seen: dict[str, bool] | None = None
    ) -> bool:
        if parts.count(part) > 1:
            return True
        if seen is None:
            return self.store.is_duplicate_text(channel, part)
        if part not in seen:
            seen[part] = self.store.is_duplicate_text(channel, part)
        return seen[part]

    def _stamped(
        self, text: str, head: int, rule: LengthRule, post: PlannedPost, language: str
    ) -> list[str]:
        """Parts made unique by a "Posted at 15:30" line on each repeated part.

        The last resort: the templates make each post differ in words (elapsed time, next
        update), but X refuses duplicate content, and two incidents with the same long
        message share middle parts, so every repeated part is stamped, not just the last.
        The stamp is a line of its own saying when the part was posted, so it never reads
        as a deadline. Room for it is kept in every part.
        """
        local = post.planned_at.astimezone(self.config.timezone)
        posted = i18n.posted(local, language)
        exact = i18n.posted(local, language, seconds=True)
        # The last marker carries a short hash of the incident id: unique even for many
        # incidents sharing one long message in the same second, and short whatever the id.
        markers = (
            posted,
            exact,
            f"{exact} · {hashlib.sha256(post.incident_id.encode()).hexdigest()[:6]}",
        )
        # Room for the short stamp first, so the head keeps its place in part 1; for the
        # longer ones only when the short one is not enough.
        for tried in (markers[:1], markers):
            room = max(rule.count(f"\n{m}") for m in tried) + 1
            parts = split(text, replace(rule, limit=rule.limit - room), head=head)
            result: list[str] = []
            for index, part in enumerate(parts):
                stamped = part
                for marker in tried:
                    if self._unique(
                        post.channel, stamped, parts[:index] + parts[index + 1 :] + result
                    ):
                        break
                    stamped = _with_marker(part, marker)  # each marker on the original part
                result.append(stamped)
            if all(
                self._unique(post.channel, part, result[:index] + result[index + 1 :])
                for index, part in enumerate(result)
            ):
                break
        return result

    def _unique(self, channel: str, part: str, others: list[str]) -> bool:
        return part not in others and not self.store.is_duplicate_text(channel, part)

    def _report(self, post: PlannedPost, error: TemplateError) -> None:
        # Retried at the next plan; logged once: loud, not spammy.
        if str(error) not in self._reported:
            self._reported.add(str(error))
            log.error(
                "cannot render %s for %s on %s: %s",
                post.kind,
                post.incident_id,
                post.channel,
                error,
            )

    def _within_budget(
        self,
        snapshot: Snapshot,
        decision: planner.Decision,
        parts: list[tuple[str, int, int]],
        following: Callable[[], int],
    ) -> tuple[planner.Decision, list[tuple[str, int, int]]]:
        """The decision with a promise its channel's budget can keep, and its parts.
        ``following``: how many parts this plan records after it on its channel."""
        post = decision.post
        budget = planner.Budget.of(self.config.channels[post.channel])
        if not budget.horizon or post.next_update_at is None:
            return decision, parts
        after = following()
        gone = set(decision.supersedes)
        waiting = self.store.posts(channel=post.channel, states=planner.UNSENT)
        reserved = [
            thread.promised_at
            for (incident_id, channel), thread in self.store.threads().items()
            if channel == post.channel and incident_id != post.incident_id
            if not thread.closed and thread.promised_at is not None
        ]
        load = planner.Load(
            self.store.sent_times(post.channel, post.planned_at - budget.horizon),
            sum(1 for part in waiting if part.key not in gone),
            reserved,
            after,
        )
        for _ in range(3):  # a later time may render longer: until the parts agree
            kept = planner.keep_within_budget(decision, budget, load, len(parts), post.planned_at)
            if kept.post == decision.post:
                break
            decision = kept
            parts = self.compose(snapshot, decision.post)
        return decision, parts

    def _record(
        self,
        snapshot: Snapshot,
        decision: planner.Decision,
        following: Callable[[], int] = lambda: 0,
    ) -> Recorded | None:
        post = decision.post
        try:
            parts = self.compose(snapshot, post)
            decision, parts = self._within_budget(snapshot, decision, parts, following)
            post = decision.post
            self._refuse_over_cap(snapshot, post, parts)
            language = self.config.channels[post.channel].language
            # The thread remembers its last part: known only now that the post is split.
            thread = replace(decision.thread, last_post_key=post.key(len(parts)))
            self.store.record_post(
                post,
                parts,
                language,
                thread,
                reply_to=decision.reply_to,
                supersedes=decision.supersedes,
            )
        except TemplateError as e:
            self._report(post, e)
            return None
        except OverCap as e:
            self.unplannable[(post.incident_id, post.channel)] = str(e)
            once = f"{post.incident_id}|{snapshot.revision}|{post.channel}|cap"
            if once not in self._reported:
                self._reported.add(once)
                log.error(
                    "cannot post %s for %s on %s (revision %d): %s",
                    post.kind.value,
                    post.incident_id,
                    post.channel,
                    snapshot.revision,
                    e,
                )
            return None
        except Exception as e:
            if not self.store.in_transaction():
                raise  # the whole plan was rolled back (disk full...): retried as a whole
            # One bad incident must not stop every other one: its own write is undone
            # (a savepoint), the rest of the plan goes on, and it is retried next plan.
            # Logged once per revision of the incident, not at every plan.
            where = (post.incident_id, post.channel)
            self.unplannable[where] = f"cannot record {post.kind.value}: {type(e).__name__}: {e}"
            once = f"{post.incident_id}|{snapshot.revision}|{post.channel}|{post.kind.value}"
            if once not in self._reported:
                self._reported.add(once)
                log.exception(
                    "cannot record %s for %s on %s (revision %d; retried at every plan, "
                    "logged again at its next revision)",
                    post.kind.value,
                    post.incident_id,
                    post.channel,
                    snapshot.revision,
                )
            return None
        self.unplannable.pop((post.incident_id, post.channel), None)
        return Recorded(post, parts)

    def _refuse_over_cap(
        self, snapshot: Snapshot, post: PlannedPost, parts: list[tuple[str, int, int]]
    ) -> None:
        """Never a post cut short, nor one longer than its channel's thread cap: one that
        got past the doors (templates changed by a reload) is refused with its reason."""
        cap = self.config.channels[post.channel].max_parts
        if len(parts) > cap:
            problems = self.check_fits(snapshot.incident, post.planned_at)
            how = f"; {problems[0].field}: {problems[0].message}" if problems else ""
            raise OverCap(
                f"its {post.kind.value} post would be a {len(parts)}-part thread, at most "
                f"{cap} (channels.{post.channel}.max_parts){how}"
            )

    def _refresh_stale(
        self,
        stale_posts: list[list[OutboxPost]],
        snapshots: dict[str, Snapshot],
        threads: dict[tuple[str, str], ThreadState],
        now: datetime,
    ) -> list[Recorded]:
        """Record the planner's fresh plan for each unsent post whose promise passed."""
        recorded: list[Recorded] = []
        for stale in stale_posts:
            first = stale[0]
            thread_key = (first.incident_id, first.channel)
            # Read again for each: re-planning one post may have superseded the next.
            tail = self.store.thread_tail(*thread_key)
            decision = planner.replan_stale(
                stale,
                snapshots.get(first.incident_id),
                threads.get(thread_key),
                tail,
                self.config.channels,
                self.config.cadence,
                now,
            )
            if decision is None:
                continue
            item = self._record(snapshots[first.incident_id], decision)
            if item is not None:
                threads[thread_key] = decision.thread
                log.info(
                    "re-planned %s for %s on %s: its promise passed while it waited",
                    item.post.kind.value,
                    item.post.incident_id,
                    item.post.channel,
                )
                recorded.append(item)
        return recorded

    def _advise(self, snapshots: Iterable[Snapshot], now: datetime) -> None:
        """Log what ops should fix (``advice``), once per incident revision."""
        for snapshot in snapshots:
            seen = (snapshot.incident.id, snapshot.revision)
            if seen in self._advised:
                continue
            self._advised.add(seen)
            for item in incident_advice(
                snapshot.incident, self.config.channels, self.config.cadence, now
            ):
                log.warning("%s", item)

    def slices(self, size: int) -> list[list[str]]:
        """Every active incident, first seen first, in slices of ``size``: planning each
        slice (``run(now, changed=slice)``) plans everything, a slice at a time. Called
        with ingest held still; what it ingested so far is in a slice, so no longer due."""
        ids = list(dict.fromkeys(t.incident_id for t in self.store.thread_timings()))
        with self._changes_lock:
            self._changed.clear()
        return [ids[i : i + size] for i in range(0, len(ids), size)]

    def _chunkable(self) -> bool:
        """Whether a plan may go a chunk of incidents at a time: no channel has a budget."""
        return not any(planner.Budget.of(c).horizon for c in self.config.channels.values())

    def _active_order(self, ids: Collection[str] | None) -> list[str] | None:
        """The active incidents among ``ids`` (all with None), first seen first, as
        ``snapshots`` orders them; None when they fit in one chunk."""
        timings = (
            self.store.thread_timings(ids=ids) if ids is not None else self.store.thread_timings()
        )
        order = list(dict.fromkeys(t.incident_id for t in timings))
        return order if len(order) > _CHUNK else None

    def _plan_part(
        self,
        snapshots: dict[str, Snapshot],
        threads: dict[tuple[str, str], ThreadState],
        now: datetime,
        recorded: list[Recorded],
        failed: set[str],
    ) -> tuple[list[Recorded], datetime | None]:
        """Plan these incidents and record their posts (after ``recorded``)."""
        result = planner.plan(
            list(snapshots.values()),
            threads,
            self.config.channels,
            self.config.cadence,
            now,
            self.store.thread_tail,
        )
        following = _PartsAfter(self, snapshots, result.decisions)
        for index, decision in enumerate(result.decisions):
            item = self._record(
                snapshots[decision.post.incident_id],
                decision,
                functools.partial(following, index),
            )
            if item is not None:
                recorded.append(item)
            else:
                failed.add(decision.post.incident_id)
        return recorded, result.wake_at

    def run(
        self, now: datetime, changed: Collection[str] | None = None, *, due: bool = True
    ) -> tuple[list[Recorded], datetime | None]:
        """Plan at ``now`` and record every post due. Returns them and the next wake time.

        ``changed`` None plans every active incident (start, reload). Otherwise only the
        incidents in ``changed`` (and those changed through ``ingest`` since the last plan)
        are planned, with those whose timers are due (``planner.due``) and those whose
        post could not be recorded last time: the same posts as planning everything, at
        a cost that grows with what changed, not with everything open. ``due`` False
        plans only those changed (start plans everything a slice at a time).
        """
        with self._lock:
            try:
                return self._run(now, changed, due)
            except BaseException:
                self._timers = None
                raise

    def _run(
        self, now: datetime, changed: Collection[str] | None, due: bool
    ) -> tuple[list[Recorded], datetime | None]:
        with self.store.batch():
            with self._changes_lock:
                ingested = set(self._changed)
            token = self.store.change_token()
            timers = self._timers if token is not None else None
            stale = self.store.stale_posts(now)
            wanted: set[str] = set()
            order: list[str] | None = None
            snapshots: dict[str, Snapshot] = {}
            threads: dict[tuple[str, str], ThreadState] = {}
            if changed is None:
                timers = None
                if self._chunkable():
                    order = self._active_order(None)
                if order is None:
                    snapshots = {s.incident.id: s for s in self.store.snapshots(active_only=True)}
                    threads = self.store.threads()
            else:
                if timers is None or timers.token != token:
                    found = planner.due(self.store.thread_timings(), self.config.channels, now)
                    timers = _Timers(token, found)
                wanted = {*changed, *ingested}
                if due:
                    wanted |= {*self._failed, *timers.due(now)}
                    wanted.update(post[0].incident_id for post in stale)
                if len(wanted) > _CHUNK and self._chunkable():
                    order = self._active_order(wanted)  # None: few of them active, one pass
                if order is None:
                    loaded = self.store.snapshots(active_only=True, ids=wanted) if wanted else []
                    snapshots = {s.incident.id: s for s in loaded}
                    threads = self.store.threads(ids=snapshots) if snapshots else {}
            failed: set[str] = set()
            if order is None:
                self._advise(snapshots.values(), now)
                recorded = self._refresh_stale(stale, snapshots, threads, now)
                if recorded and changed is not None:
                    threads = self.store.threads(ids=snapshots)
                elif recorded:
                    threads = self.store.threads()
                recorded, wake_at = self._plan_part(snapshots, threads, now, recorded, failed)
            else:
                # Many incidents: planned a chunk at a time, in the order planning them all
                # at once would take (first seen first), so that no more than a chunk of
                # them is held whole. No channel has a budget (whose count of what follows
                # spans the whole plan), so each post is the one a single pass records.
                scope = set(order)
                stale_ids = {post[0].incident_id for post in stale} & scope
                loaded = self.store.snapshots(active_only=True, ids=stale_ids) if stale_ids else []
                stale_snapshots = {s.incident.id: s for s in loaded}
                recorded = self._refresh_stale(
                    stale, stale_snapshots, self.store.threads(ids=stale_snapshots), now
                )
                del loaded, stale_snapshots
                wake_at = None
                for start in range(0, len(order), _CHUNK):
                    chunk = order[start : start + _CHUNK]
                    snapshots = {
                        s.incident.id: s for s in self.store.snapshots(active_only=True, ids=chunk)
                    }
                    self._advise(snapshots.values(), now)
                    threads = self.store.threads(ids=snapshots) if snapshots else {}
                    recorded, at = self._plan_part(snapshots, threads, now, recorded, failed)
                    if at is not None and (wake_at is None or at < wake_at):
                        wake_at = at
            if timers is not None:
                # Their threads and promises changed: read again.
                planned = {*wanted, *(snapshots if order is None else order)}
                if planned:
                    timings = self.store.thread_timings(ids=planned)
                    timers.update(planned, planner.due(timings, self.config.channels, now))
                # Over every open incident: a thread just posted on may be due before the
                # promise it made (an update ops asked for, kept back by the budget).
                at = timers.next()
                if at is not None and (wake_at is None or at < wake_at):
                    wake_at = at
        # Planned (the batch committed): what changed before it is taken care of.
        self._timers = timers
        self._failed = failed if due or changed is None else self._failed | failed
        with self._changes_lock:
            self._changed -= ingested
        return recorded, wake_at
