"""How long a post is on each platform, and whether it fits.

Pure: no I/O. Lengths are counted exactly as the platforms count them, because a post that
is one character too long is rejected, and rejection during an incident means silence. Text
that does not fit is never truncated (a cut-off status line can say the opposite of the
truth); ``textsplit.split`` makes it a thread whose parts each end with " (i/n)".
"""

from __future__ import annotations

import enum
import re
import threading
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

import regex
from twitter_text import extract_urls_with_indices, parse_tweet
from twitter_text.config import config as _TWITTER_CONFIG
from twitter_text.regexp.emoji import emoji as _TWITTER_EMOJI
from twitter_text.regexp.latin_accent_chars import latin_accent_chars as _LATIN_ACCENTS

__all__ = ["Counting", "LengthRule", "mastodon_rule", "rule_for", "url_spans", "x_rule"]


class Counting(enum.Enum):
    """How a rule counts; the platform name alone does not say (dry-run mimics Mastodon)."""

    X_V3 = "x-v3"  # X today: weighted, an emoji sequence weighs 2 whatever its code points
    X_V2 = "x-v2"  # X before emoji parsing; kept because the conformance suite still tests it
    GRAPHEMES = "graphemes"  # Mastodon


_INFERRED_COUNTING = {
    "x": Counting.X_V3,
    "mastodon": Counting.GRAPHEMES,
    "dryrun": Counting.GRAPHEMES,
}


@dataclass(frozen=True)
class LengthRule:
    """A platform's length limit and the way it counts toward it."""

    platform: str  # "x", "mastodon" or "dryrun"
    limit: int
    counting: Counting | None = None  # None: inferred from ``platform``
    url_length: int = 23  # what any http(s) URL counts for, on Mastodon

    def __post_init__(self) -> None:
        if self.counting is None:
            inferred = _INFERRED_COUNTING.get(self.platform)
            if inferred is None:
                raise ValueError(f"no counting known for platform {self.platform!r}")
            object.__setattr__(self, "counting", inferred)
        if self.limit < 1:
            raise ValueError(f"limit must be positive, got {self.limit}")
        if self.url_length < 0:
            raise ValueError(f"url_length must not be negative, got {self.url_length}")

    def count(self, text: str, spoiler_text: str = "") -> int:
        """The length the platform counts; ``spoiler_text`` (the CW) counts on Mastodon only."""
        if self.counting is Counting.GRAPHEMES:
            return _mastodon_count(spoiler_text + text, self.url_length)
        return _x_count(self._x_version, text)

    def fits(self, text: str, spoiler_text: str = "") -> bool:
        return self.count(text, spoiler_text) <= self.limit

    def valid(self, text: str, spoiler_text: str = "") -> bool:
        """Whether the platform would take ``text`` as a text-only post.

        Stricter than ``fits``: the text must not be blank, and on X it must not contain
        characters X refuses (such as U+FFFE).
        """
        if self.counting is Counting.GRAPHEMES:
            return not _is_blank(text) and self.fits(text, spoiler_text)
        return bool(parse_tweet(text, _x_options(self._x_version, self.limit)).valid)

    @property
    def _x_version(self) -> int:
        return 2 if self.counting is Counting.X_V2 else 3

    def units(self, text: str) -> tuple[Sequence[int], int]:
        """Per-code-point weights of ``text`` in 1/scale units, and the scale.

        Entities (URLs, emoji, mentions, grapheme clusters) carry their whole weight on their
        first code point, so a prefix sum over positions estimates any slice in O(1).
        """
        if self.counting is Counting.GRAPHEMES:
            return _mastodon_units(text, self.url_length), 1
        return _x_units(self._x_version, text), _x_weigher(self._x_version).scale


def x_rule(limit: int = 280, *, version: int = 3) -> LengthRule:
    """X's rule; ``version=2`` is the pre-emoji-parsing counting, for conformance checks."""
    if version not in (2, 3):
        raise ValueError(f"X counting version must be 2 or 3, got {version}")
    counting = Counting.X_V3 if version == 3 else Counting.X_V2
    return LengthRule("x", limit, counting, _x_weigher(version).url_length)


def mastodon_rule(limit: int = 500, url_length: int = 23) -> LengthRule:
    return LengthRule("mastodon", limit, Counting.GRAPHEMES, url_length)


def rule_for(platform: str, limit: int | None = None) -> LengthRule:
    if platform == "x":
        return x_rule(280 if limit is None else limit)
    if platform == "mastodon":
        return mastodon_rule(500 if limit is None else limit)
    if platform == "dryrun":
        return LengthRule("dryrun", 500 if limit is None else limit, Counting.GRAPHEMES)
    raise ValueError(f"unknown platform {platform!r}: expected 'x', 'mastodon' or 'dryrun'")


# --- X ----------------------------------------------------------------------------------

_LINE_ENDINGS = re.compile(r"\r\n|\r|\n")


@lru_cache(maxsize=4)
def _x_base_options(version: int) -> dict[str, Any]:
    if version == 3:
        return {**_TWITTER_CONFIG["defaults"], **_TWITTER_CONFIG["version3"]}
    # version2 has no emoji_parsing_enabled key: inheriting True from "defaults" would
    # silently turn it into version 3.
    return {
        **_TWITTER_CONFIG["defaults"],
        **_TWITTER_CONFIG["version2"],
        "emoji_parsing_enabled": False,
    }


@lru_cache(maxsize=64)
def _x_options(version: int, limit: int) -> dict[str, Any]:
    return {**_x_base_options(version), "max_weighted_tweet_length": limit}


@dataclass(frozen=True)
class _EmojiPrefilter:
    """Where twitter-text's emoji regex can match at all.

    parse_tweet tries that regex, an alternation of some 2,500 sequences and a class of
    1,400 code points, at every position: about 4 µs per character, most of its cost. Every
    alternative is a literal sequence or one character of the class, so a match at p needs
    text[p:p+2] to begin a sequence or text[p] to be in the class. Digits, '#' and '*' begin
    keycap sequences, so for ASCII the pair is what tells.
    """

    starter: re.Pattern[str]  # cheap over-approximation of the positions worth checking
    pairs: frozenset[str]  # first two characters of each multi-code-point sequence
    singles: frozenset[str]  # the single-code-point class, expanded


def _emoji_prefilter() -> _EmojiPrefilter | None:
    """None if the library's pattern no longer has the shape this relies on."""
    *sequences, class_ = _TWITTER_EMOJI.pattern.split("|")
    if _TWITTER_EMOJI.flags & ~re.UNICODE or not sequences:
        return None
    escape = re.compile(r"\\U([0-9A-Fa-f]{8})")
    pairs: set[str] = set()
    for sequence in sequences:
        code_points = escape.findall(sequence)
        if len(code_points) < 2 or "".join(rf"\U{cp}" for cp in code_points) != sequence:
            return None
        pairs.add(chr(int(code_points[0], 16)) + chr(int(code_points[1], 16)))
    item = re.compile(r"\\U([0-9A-Fa-f]{8})(?:-\\U([0-9A-Fa-f]{8}))?")
    body = class_[1:-1]
    if not (class_.startswith("[") and class_.endswith("]")) or item.sub("", body):
        return None
    singles: set[str] = set()
    for low, high in item.findall(body):
        singles.update(map(chr, range(int(low, 16), int(high or low, 16) + 1)))

    starts = {pair[0] for pair in pairs} | singles
    ascii_firsts = sorted({re.escape(pair[0]) for pair in pairs if pair[0].isascii()})
    ascii_seconds = sorted({re.escape(pair[1]) for pair in pairs if pair[0].isascii()})
    ascii_singles = sorted(re.escape(ch) for ch in singles if ch.isascii())
    lowest = min((ord(ch) for ch in starts if not ch.isascii()), default=0x110000)
    branches = [rf"[^\x00-\U{lowest - 1:08x}]"]
    if ascii_firsts:
        branches.append(f"[{''.join(ascii_firsts)}][{''.join(ascii_seconds)}]")
    if ascii_singles:
        branches.append(f"[{''.join(ascii_singles)}]")
    return _EmojiPrefilter(re.compile("|".join(branches)), frozenset(pairs), frozenset(singles))


_EMOJI_PREFILTER = _emoji_prefilter()


def _emoji_lengths(text: str) -> dict[int, int]:
    """Start -> length of each emoji that twitter-text's ``finditer`` would find."""
    prefilter = _EMOJI_PREFILTER
    if prefilter is None:
        return {m.start(): m.end() - m.start() for m in _TWITTER_EMOJI.finditer(text)}
    found: dict[int, int] = {}
    pos = 0
    while (hit := prefilter.starter.search(text, pos)) is not None:
        start = hit.start()
        pos = start + 1
        if text[start : start + 2] in prefilter.pairs or text[start] in prefilter.singles:
            match = _TWITTER_EMOJI.match(text, start)
            if match is not None:
                found[start] = match.end() - start
                pos = match.end()
    return found


def _url_prefilter() -> re.Pattern[str] | None:
    """What any URL twitter-text finds must contain: a dot, then the first letter of a
    top-level domain (or "x" of "xn--"). Most lines of a post have none, and the URL
    regex, tried at every position, is the slow part of counting. None if the library's
    patterns no longer have the shape this relies on."""
    from twitter_text.regexp.extract_url import extract_url
    from twitter_text.regexp.valid_cctld import valid_cctld
    from twitter_text.regexp.valid_domain import valid_domain
    from twitter_text.regexp.valid_domain_name import valid_domain_name
    from twitter_text.regexp.valid_gtld import valid_gtld
    from twitter_text.regexp.valid_punycode import valid_punycode

    firsts: set[str] = set()
    tail = ")(?=[^0-9a-zA-Z@+-]|$))"
    for tld in (valid_gtld.pattern, valid_cctld.pattern):
        if not (tld.startswith("(?:(?:") and tld.endswith(tail)):
            return None
        for alternative in tld[len("(?:(?:") : -len(tail)].split("|"):
            if not alternative or re.escape(alternative) != alternative.replace("-", "\\-"):
                return None
            firsts.add(alternative[0])
    shape = (
        valid_punycode.pattern.startswith("(?:xn--")
        and valid_domain_name.pattern.endswith("\\.)")
        and valid_domain.pattern.endswith(
            f"{valid_domain_name.pattern}(?:{valid_gtld.pattern}|{valid_cctld.pattern}"
            f"|{valid_punycode.pattern}))"
        )
        and f"({valid_domain.pattern})" in extract_url.pattern
    )
    if not shape:
        return None
    firsts.add("x")
    letters = "".join(sorted(re.escape(ch) for ch in firsts))
    # The same flags, so that case folding matches the same characters as the URL regex.
    return re.compile(rf"\.[{letters}]", extract_url.flags)


_URL_PREFILTER = _url_prefilter()


def _urls(text: str, without_protocol: bool = True) -> list[dict[str, Any]]:
    """``extract_urls_with_indices``, skipped where no URL can be."""
    if _URL_PREFILTER is not None and _URL_PREFILTER.search(text) is None:
        return []
    urls: list[dict[str, Any]] = extract_urls_with_indices(text, without_protocol)
    return urls


def url_spans(text: str) -> list[tuple[int, int]]:
    """Where each URL twitter-text finds in ``text`` starts and ends."""
    return [(e["indices"][0], e["indices"][1]) for e in _urls(text)]


class _XWeigher:
    """parse_tweet's weighted length, without its per-character emoji regex scan."""

    _CACHE_CAP = 8192

    def __init__(self, options: dict[str, Any]) -> None:
        self.scale: int = options["scale"]
        self.url_length: int = options["transformed_url_length"]
        self._default: int = options["default_weight"]
        self._emoji: bool = options["emoji_parsing_enabled"]
        self._ranges = tuple((r["start"], r["end"], r["weight"]) for r in options["ranges"])
        self._weights: dict[str, int] = {}

    def _char(self, ch: str) -> int:
        weight = self._weights.get(ch)
        if weight is None:
            cp = ord(ch)
            weight = next((w for lo, hi, w in self._ranges if lo <= cp <= hi), self._default)
            if len(self._weights) < self._CACHE_CAP:
                self._weights[ch] = weight
        return weight

    def units(self, text: str) -> list[int]:
        weight = self._weights.get
        out = [weight(ch) or self._char(ch) for ch in text]
        # Skip lengths come from the entity strings, as in parse_tweet: for some URLs without
        # a protocol the string and its indices disagree, and parse_tweet trusts the string.
        entities = {
            e["indices"][0]: (len(e["url"]), self.url_length * self.scale) for e in _urls(text)
        }
        if self._emoji:
            for start, length in _emoji_lengths(text).items():
                entities.setdefault(start, (length, self._default))  # a URL wins, as there
        covered = 0
        for start in sorted(entities):
            if start < covered:
                continue  # parse_tweet's walk skipped over this start
            length, entity_weight = entities[start]
            end = min(start + max(length, 1), len(text))
            out[start:end] = [entity_weight] + [0] * (end - start - 1)
            covered = end
        return out


@lru_cache(maxsize=4)
def _x_weigher(version: int) -> _XWeigher:
    return _XWeigher(_x_base_options(version))


# Posts are made of lines, and lines repeat: the same message, cause and status words in
# every post of a thread, in every part of a split, in the stamped variants. Counting works
# line by line, each line's weights remembered. That is exact because no entity (URL, emoji,
# mention, grapheme cluster) contains a line feed, and each line is weighed with the line
# feeds around it, since rules look at the character before a URL (a line's first
# character can be a URL's own, or the character "before" it, depending on what precedes).
# tests/test_textfit.py checks this against twitter-text itself. A carriage return could
# pair with a line feed into one grapheme: such a text is counted whole, as before.
_LINE_CACHE_CAP = 1024

_Line = tuple[str, bool, bool]  # (line, after a line feed, before a line feed)


class _LineCache:
    """Bounded maps from a line to its weights and to its count, forgotten wholesale when
    full. ``count`` defaults to the sum of the weights; Mastodon counts differently (the
    weights only guide the splitter there). Both functions take the line with its
    surrounding line feeds, and say what the line feeds alone weigh or count."""

    def __init__(
        self,
        weigh: Callable[[str], Sequence[int]],
        count: Callable[[str], int] | None = None,
    ) -> None:
        self._weigh = weigh
        self._count = count
        self._units: dict[_Line, tuple[int, ...]] = {}
        self._counts: dict[_Line, int] = {}
        self._lock = threading.Lock()

    def units(self, key: _Line) -> tuple[int, ...]:
        units = self._units.get(key)
        if units is None:
            line, before, after = key
            weights = self._weigh("\n" * before + line + "\n" * after)
            units = tuple(weights[before : len(weights) - after])
            with self._lock:
                if len(self._units) >= _LINE_CACHE_CAP:
                    self._units.clear()
                self._units[key] = units
        return units

    def count(self, key: _Line) -> int:
        count = self._counts.get(key)
        if count is None:
            if self._count is None:
                count = sum(self.units(key))
            else:
                line, before, after = key
                # A line feed is a grapheme cluster of its own, counted once.
                count = self._count("\n" * before + line + "\n" * after) - before - after
            with self._lock:
                if len(self._counts) >= _LINE_CACHE_CAP:
                    self._counts.clear()
                self._counts[key] = count
        return count

    @staticmethod
    def _lines(text: str) -> list[_Line]:
        lines = text.split("\n")
        last = len(lines) - 1
        return [(line, i > 0, i < last) for i, line in enumerate(lines)]

    def text_units(self, text: str, newline: int) -> tuple[int, ...]:
        """The weights of ``text``, line by line (``newline``: the weight of a line feed)."""
        if "\r" in text:
            return tuple(self._weigh(text))
        out: list[int] = []
        for key in self._lines(text):
            out += self.units(key)
            out.append(newline)
        out.pop()
        return tuple(out)

    def text_count(self, text: str, newline: int) -> int:
        if "\r" in text:
            return self._count(text) if self._count is not None else sum(self._weigh(text))
        lines = self._lines(text)
        return sum(map(self.count, lines)) + newline * (len(lines) - 1)


@lru_cache(maxsize=4)
def _x_lines(version: int) -> _LineCache:
    weigher = _x_weigher(version)
    return _LineCache(weigher.units)


@lru_cache(maxsize=4)
def _x_newline(version: int) -> int:
    return _x_weigher(version).units("\n")[0]


# split() counts the whole text to see whether it fits, then weighs it position by position:
# the same string twice. Same for Mastodon below.
@lru_cache(maxsize=32)
def _x_units(version: int, text: str) -> tuple[int, ...]:
    return _x_lines(version).text_units(text, _x_newline(version))


# The editor counts each part again once split, and the stamped variants of a part again.
@lru_cache(maxsize=256)
def _x_count(version: int, text: str) -> int:
    normalized = _LINE_ENDINGS.sub("\n", unicodedata.normalize("NFC", text))
    lines = _x_lines(version).text_count(normalized, _x_newline(version))
    return lines // _x_weigher(version).scale


# --- Mastodon ---------------------------------------------------------------------------

# Account::MENTION_RE, and twitter-text's end_mention_match that Mastodon's Extractor applies.
_MENTION = regex.compile(
    r"(?<=^|[^/\w])@(([a-z0-9_]+)(?:@[a-z0-9\.\-]+[a-z0-9]+)?)", regex.IGNORECASE
)
_MENTION_REJECTED_AFTER = regex.compile(
    r"[@＠]|[" + _LATIN_ACCENTS.pattern + r"]|://", regex.IGNORECASE
)
_GRAPHEME = regex.compile(r"\X")


def _is_blank(text: str) -> bool:
    return not text or text.isspace()


@lru_cache(maxsize=32)
def _mastodon_entities(text: str, url_length: int) -> tuple[tuple[int, int, str], ...]:
    """(start, end, stand-in) for what StatusLengthValidator rewrites before counting."""
    # Only URLs with a protocol count here, so no "://" means none; the URL regex is slow.
    urls = _urls(text, False) if "://" in text else []
    found = [(e["indices"][0], e["indices"][1], "x" * url_length) for e in urls]
    if "@" in text:
        for m in _MENTION.finditer(text):
            if _MENTION_REJECTED_AFTER.match(text, m.end()) is None:
                found.append((m.start(), m.end(), "@" + m.group(2)))
    found.sort(key=lambda entity: entity[0])
    kept: list[tuple[int, int, str]] = []
    for entity in found:  # remove_overlapping_entities: the earlier start wins
        if not kept or kept[-1][1] <= entity[0]:
            kept.append(entity)
    return tuple(kept)


def _mastodon_line_count(line: str, url_length: int) -> int:
    """Mastodon's StatusLengthValidator: entities rewritten, then grapheme clusters counted."""
    pieces: list[str] = []
    last = 0
    for start, end, stand_in in _mastodon_entities(line, url_length):
        pieces += (line[last:start], stand_in)
        last = end
    pieces.append(line[last:])
    return len(_GRAPHEME.findall("".join(pieces)))


def _mastodon_line_units(line: str, url_length: int) -> tuple[int, ...]:
    out = [0] * len(line)
    for m in _GRAPHEME.finditer(line):
        out[m.start()] = 1
    for start, end, stand_in in _mastodon_entities(line, url_length):
        out[start:end] = [len(stand_in)] + [0] * (end - start - 1)
    return tuple(out)


@lru_cache(maxsize=8)
def _mastodon_lines(url_length: int) -> _LineCache:
    return _LineCache(
        partial(_mastodon_line_units, url_length=url_length),
        partial(_mastodon_line_count, url_length=url_length),
    )


@lru_cache(maxsize=256)
def _mastodon_count(combined: str, url_length: int) -> int:
    if _is_blank(combined):  # Mastodon returns '' for a blank string before counting
        return 0
    return _mastodon_lines(url_length).text_count(combined, 1)


def _mastodon_units(text: str, url_length: int) -> tuple[int, ...]:
    return _mastodon_lines(url_length).text_units(text, 1)
