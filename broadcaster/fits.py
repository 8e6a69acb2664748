"""Whether an incident's posts fit in each channel's thread cap (``max_parts``).

A 60 KB message would otherwise become a thread of hundreds of replies. Every door (the
state file, the spool, Redis, HTTP, ``draft``, the console, ``check`` and ``preview``) asks
this one check before accepting an incident, so what is accepted can be posted: the posts
the incident can produce now (an opening, an update, a reminder, or its closing post) are
rendered with the very templates and length rules the daemon uses, and counted in parts.

The count is deliberately a little pessimistic, so a post accepted now still fits later,
when its texts say "2 hours 15 minutes" instead of "10 minutes": each part keeps room for the
"Posted at …" stamp that makes a repeated part unique, and the text gets a few spare
characters. The planner checks the cap again on the exact post (``Editor``), and refuses
one that does not fit rather than posting it cut or as a huge thread.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from . import i18n, planner
from .config import ChannelConfig, Config
from .model import (
    INCIDENT_FIELDS,
    MESSAGE_FIELD,
    FieldKind,
    Incident,
    IncidentKind,
    Localized,
    Names,
    PlannedPost,
    PostKind,
    Snapshot,
    names_in,
)
from .render import Renderer, TemplateError
from .textfit import LengthRule
from .textsplit import split

# Spare characters in every rendered text: what the texts that change with time (elapsed,
# "since", the next update) may grow by between the check and a later post.
SLACK = 40
_FILLER = "\n" + "0" * SLACK

# The kinds of field whose length ops control (texts, and lists of names).
_TEXT_KINDS = (FieldKind.LOCALIZED, FieldKind.NAMES)


@dataclass(frozen=True)
class TooLong:
    """One incident whose posts would exceed a channel's thread cap."""

    incident_id: str
    field: str  # the longest text of the incident in that channel's language
    channel: str
    parts: int  # at least this many parts
    cap: int
    shorten_by: int | None  # characters to cut from ``field``; None: not enough alone

    @property
    def message(self) -> str:
        where = f"channels.{self.channel}.max_parts = {self.cap}"
        if self.shorten_by is None:
            return (
                f"too long: its posts would need at least {self.parts} parts on "
                f"{self.channel} (at most {self.cap}: {where}) even with an empty "
                f"{self.field}: shorten the "
                "texts (title, message, cause, workaround, services, regions)"
            )
        return (
            f"too long: its posts would need at least {self.parts} parts on {self.channel} "
            f"(at most {self.cap}: {where}): make it at least {self.shorten_by} "
            "character(s) shorter"
        )


def _kinds(incident: Incident) -> tuple[PostKind, ...]:
    """The kinds of post this incident can produce from now on, its text as it is."""
    if incident.kind is IncidentKind.MAINTENANCE:
        if incident.is_final:
            return (PostKind.COMPLETED,)
        first = PostKind.STARTED if incident.status == "in_progress" else PostKind.SCHEDULED
        return (first, PostKind.UPDATE, PostKind.REMINDER)
    if incident.is_final:
        return (PostKind.RESOLVED,)
    return (PostKind.OPENED, PostKind.UPDATE, PostKind.REMINDER)


def _text_length(incident: Incident, name: str, language: str) -> int:
    value = getattr(incident, name)
    if isinstance(value, Localized):
        return len(value.get(language) or "")
    if INCIDENT_FIELDS[name].kind is FieldKind.NAMES:
        return sum(len(n) for n in names_in(value, language))
    return 0


def _cut(incident: Incident, name: str, language: str, keep: int) -> Incident:
    """The incident with ``name``'s text in ``language`` cut to ``keep`` characters."""
    value = getattr(incident, name)
    if not value:
        return incident
    if isinstance(value, Localized):
        text = value.get(language) or ""
        changed: dict[str, Any] = {name: Localized({**value.values, language: text[:keep]})}
        return replace(incident, **changed)
    kept: list[str] = []
    left = keep
    for item in names_in(value, language):
        if left <= 0:
            break
        kept.append(item[:left])
        left -= len(item)
    table = dict(value.by_language) if isinstance(value, Names) else {}
    names: dict[str, Any] = {name: Names({**table, language: kept})}
    return replace(incident, **names)


def _texts(incident: Incident, language: str) -> list[tuple[str, str]]:
    """(field, text) of each text ops wrote that the posts show, in ``language``."""
    found = []
    for name, rule in INCIDENT_FIELDS.items():
        if rule.kind not in _TEXT_KINDS or not rule.in_view:
            continue
        value = getattr(incident, name)
        if isinstance(value, Localized):
            text = value.get(language)
            if text:
                found.append((name, text))
        elif value:
            found += [(name, item) for item in names_in(value, language)]
    return found


def _filled(incident: Incident, name: str, language: str, text: str) -> Incident:
    """The incident with ``name`` holding just ``text`` in ``language``."""
    value: Any = (
        Localized({language: text})
        if INCIDENT_FIELDS[name].kind is FieldKind.LOCALIZED
        else Names({language: [text]})
    )
    return replace(incident, **{name: value})


class FitCheck:
    """The check every door runs: ``problems(incident, now)``; results are remembered per
    incident content, so a state file read again costs nothing for unchanged incidents."""

    def __init__(self, config: Config, renderer: Renderer, rules: Mapping[str, LengthRule]) -> None:
        self.config = config
        self.renderer = renderer
        self.rules = dict(rules)
        self._seen: OrderedDict[str, tuple[TooLong, ...]] = OrderedDict()
        self._lock = threading.Lock()  # the state file's poll and the intake both ask
        # (channel, kind, status, texts present) → (fixed, per character) of the estimate.
        self._lines: dict[tuple[Any, ...], tuple[float, float] | None] = {}

    def problems(self, incident: Incident, now: datetime) -> list[TooLong]:
        """Why ``incident`` cannot be accepted (empty: its posts fit every channel)."""
        key = hashlib.sha256(
            json.dumps(incident.to_json(), sort_keys=True, default=str).encode(
                "utf-8", "surrogatepass"
            )
        ).hexdigest()
        with self._lock:
            found = self._seen.get(key)
        if found is None:
            found = tuple(self._check(incident, now))
            with self._lock:
                self._seen[key] = found
                while len(self._seen) > 4096:
                    self._seen.popitem(last=False)
        return list(found)

    def _check(self, incident: Incident, now: datetime) -> list[TooLong]:
        worst: dict[str, TooLong] = {}  # by field: the channel that needs most cut
        for name, channel in self.config.channels.items():
            if name not in self.rules:
                continue
            if not channel.matches(incident.severity, incident.services, incident.regions):
                continue
            parts = self.parts(incident, channel, now)
            if parts <= channel.max_parts:
                continue
            problem = self._blame(incident, channel, parts, now)
            seen = worst.get(problem.field)
            if seen is None or (problem.shorten_by or 1 << 62) > (seen.shorten_by or 1 << 62):
                worst[problem.field] = problem
        return list(worst.values())

    def parts(self, incident: Incident, channel: ChannelConfig, now: datetime) -> int:
        """The most parts any post of ``incident`` on ``channel`` can take (pessimistic)."""
        if self._surely_short(incident, channel, now):
            return 1
        counted, texts = self._rendered(incident, channel, now)
        if not texts or max(texts)[0] <= counted.limit:
            return 1 if texts else 0  # every post in one part: nothing to split
        # The longest text first; the others too only near the cap (splitting costs).
        texts.sort(key=lambda t: t[0], reverse=True)
        if texts[0][0] > channel.max_parts * counted.limit:
            return -(-texts[0][0] // counted.limit)  # at least this many: no need to split
        most = 0
        for _, text, head in texts:
            try:
                most = max(most, len(split(text, counted, head=head)))
            except ValueError:
                continue  # a limit too small for any part: the planner reports it
            if most != channel.max_parts:
                break  # well within the cap, or over it already
        return most

    def _counted_rule(self, channel: ChannelConfig, now: datetime) -> LengthRule:
        """The channel's rule less the room every part keeps for a "Posted at" stamp."""
        rule = self.rules[channel.name]
        local = now.astimezone(self.config.timezone)
        stamp = f"{i18n.posted(local, channel.language, seconds=True)} · 000000"
        room = rule.count(f"\n{stamp}") + 1
        return replace(rule, limit=rule.limit - room) if rule.limit - room >= 30 else rule

    def _rendered(
        self, incident: Incident, channel: ChannelConfig, now: datetime
    ) -> tuple[LengthRule, list[tuple[int, str, int]]]:
        """The counting rule, and (counted length, text, head) of each post it can make."""
        counted = self._counted_rule(channel, now)
        info = channel.info()
        snapshot = Snapshot(incident, 1, now, now, None)
        try:
            promise = planner.promise(snapshot, self.config.cadence, now, None)
        except (ValueError, ArithmeticError):
            return counted, []  # refused by validation first; planning reports it if reached
        texts: list[tuple[int, str, int]] = []
        for kind in _kinds(incident):
            post = PlannedPost(
                incident.id,
                channel.name,
                kind,
                1,
                1 if kind in (PostKind.OPENED, PostKind.SCHEDULED) else 2,
                now,
                None if kind.is_final else promise,
            )
            try:
                rendered = self.renderer.render_post(snapshot, post, info, now)
            except TemplateError:
                continue  # a broken template is reported on its own; planning checks again
            text = rendered.text + _FILLER
            texts.append((counted.count(text), text, rendered.head))
        return counted, texts

    # -- the shortcut: most incidents are far from any cap ---------------------------------

    def _surely_short(self, incident: Incident, channel: ChannelConfig, now: datetime) -> bool:
        """Whether, by an estimate, every post is at most a third of what the cap holds:
        then, with a cap of 4 parts or more, even an estimate off by half and a split that
        leaves parts half empty stay within the cap, and nothing needs rendering.

        The estimate is linear in the length of ops' texts, its two coefficients measured
        once per channel and shape of incident (kind, status, which texts are present) by
        rendering it with short and long placeholder texts.
        """
        if channel.max_parts < 4:
            return False
        texts = _texts(incident, channel.language)
        fields = tuple(dict.fromkeys(n for n, _ in texts))
        shape = (channel.name, incident.kind, incident.status, fields)
        with self._lock:
            known = shape in self._lines
            line = self._lines.get(shape)
        if not known:
            line = self._measure(incident, channel, fields, now)
            with self._lock:
                if len(self._lines) > 1024:
                    self._lines.clear()
                self._lines[shape] = line
        if line is None:
            return False
        rule = self.rules[channel.name]
        fixed, per_char = line
        length = sum(rule.count(t) for _, t in texts)
        # A third of what the cap holds: split at worst half full, still within the cap.
        room = self._counted_rule(channel, now).limit * channel.max_parts / 3
        return fixed + per_char * length <= room

    def _measure(
        self, incident: Incident, channel: ChannelConfig, names: tuple[str, ...], now: datetime
    ) -> tuple[float, float] | None:
        counts = []
        for size in (1, 101):
            variant = incident
            for name in names:
                variant = _filled(variant, name, channel.language, "w" * size)
            _, texts = self._rendered(variant, channel, now)
            if not texts:
                return None
            counts.append(max(t[0] for t in texts))
        per_char = max(1.0, (counts[1] - counts[0]) / (100 * max(1, len(names))))
        return counts[0] - per_char * len(names), per_char

    def _blame(
        self, incident: Incident, channel: ChannelConfig, parts: int, now: datetime
    ) -> TooLong:
        """The problem naming the longest text, and how much shorter it must be."""
        language = channel.language
        lengths = {
            name: _text_length(incident, name, language)
            for name, rule in INCIDENT_FIELDS.items()
            if rule.kind in _TEXT_KINDS and rule.in_view
        }
        # The message is what ops write most, and what the cap is mostly about: blamed
        # unless another text is longer.
        field = max(lengths, key=lambda n: (lengths[n], n == MESSAGE_FIELD))
        total = lengths[field]
        if self.parts(_cut(incident, field, language, 0), channel, now) > channel.max_parts:
            return TooLong(incident.id, field, channel.name, parts, channel.max_parts, None)
        low, high = 0, total  # low fits, high does not
        # What can fit is a few thousand characters: search there first, not in 60 KB.
        guess = min(total - 1, 2 * channel.max_parts * self.rules[channel.name].limit)
        if guess > 0:
            if (
                self.parts(_cut(incident, field, language, guess), channel, now)
                <= channel.max_parts
            ):
                low = guess
            else:
                high = guess
        while high - low > 1:
            middle = (low + high) // 2
            cut = _cut(incident, field, language, middle)
            if self.parts(cut, channel, now) <= channel.max_parts:
                low = middle
            else:
                high = middle
        return TooLong(incident.id, field, channel.name, parts, channel.max_parts, total - low)
