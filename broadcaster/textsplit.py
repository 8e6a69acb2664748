"""Splitting a post that is too long into a thread whose parts each fit with " (i/n)".

Pure: no I/O. Parts are measured with the platform's own count (``textfit.LengthRule``);
text is never truncated, only cut at the most natural break that fits.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from functools import lru_cache, partial
from itertools import accumulate, pairwise

import regex

from .textfit import LengthRule, url_spans

__all__ = ["split"]

_GRAPHEME = regex.compile(r"\X")

# Break levels of a cut after a segment, weakest first.
_WORD, _SENTENCE, _PARAGRAPH, _END = range(4)

# A preferred (paragraph, sentence) break is taken only if it keeps at least this share of
# what the part could hold; otherwise an early full stop would waste most of a post.
_MIN_FILL = 0.5

# Breakable whitespace. No-break spaces are excluded: French puts them before ! ? ; : and
# inside « », and numbers like "10 000" use them; cutting there strands the punctuation.
_GAP = regex.compile(r"[^\S\u00a0\u2007\u202f]+")
_LINE_BREAK = regex.compile(r"\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")
_SENTENCE_END = regex.compile(r"[.!?…‽。！？][\"'”’»)\]」』]*$")
# CJK writes no spaces, so its full stops are the only natural cut points.
_CJK_STOP = regex.compile(r"[。！？]+[」』）】〕》〉”’]*(?=\S)")
# Tokens that must not start or end a part when a plain space separates them from a word
# ("Attention !", "« Bonjour »").
_CLOSING_ONLY = regex.compile(r"[!?;:.,…‽»)\]}”’」』]+")
_OPENING_ONLY = regex.compile(r"[«(\[{“‘「『¿¡]+")
# Spans a hard cut must not enter: mentions (with a domain) and hashtags; URLs come from
# twitter-text.
_ATOMIC = regex.compile(r"(?<![\w@])@\w+(?:@[\w\-]+(?:\.[\w\-]+)*)?|(?<![\w&])[#＃]\w+")
_NON_SPACE = re.compile(r"\S")


def split(
    text: str, rule: LengthRule, spoiler_text: str = "", *, head: int = 0, whole_words: bool = False
) -> list[str]:
    """``[text]`` if it fits; otherwise parts that each fit with their " (i/n)" suffix.

    The first ``head`` characters (the essentials: status, scope, next update, link) stay
    whole in the first part, which the rest fills as far as it fits; only what follows is
    cut into replies. A head too long for one part is cut like the rest.

    Cuts prefer paragraph breaks, then sentence ends, then spaces; they never fall inside a
    URL, a mention or a hashtag, and fall between grapheme clusters only when a single word
    cannot fit in a part (with ``whole_words``, ValueError instead: a caller trying other
    limits for a better cut must never get a torn word for it). Raises ValueError if the
    limit is too small for any numbered part.
    """
    if rule.fits(text, spoiler_text):
        return [text]
    stripped = text.strip()
    if stripped != text and rule.fits(stripped, spoiler_text):
        return [stripped]
    head = max(0, head - (len(text) - len(text.lstrip())))
    splitter = _Splitter(stripped, rule, spoiler_text, head, whole_words)
    # The suffix width depends on the number of digits of n, and n on the suffix width:
    # pack for a digit count, repack if n needs more digits. Wider suffixes never yield
    # fewer parts, so this settles in one or two passes.
    digits = 1
    while True:
        spans = splitter.pack(10**digits - 1)
        if len(str(len(spans))) <= digits:
            break
        digits = len(str(len(spans)))
    n = len(spans)
    return [f"{stripped[a:b].rstrip()} ({i}/{n})" for i, (a, b) in enumerate(spans, 1)]


# Most texts have no CJK full stop, and most gaps are one plain space: both are checked
# for first, before the regular expressions that decide the rare cases.
_CJK_STOP_CHAR = re.compile(r"[。！？]")
_CLOSING_FIRST = frozenset("!?;:.,…‽»)]}”’」』")
_OPENING_FIRST = frozenset("«([{“‘「『¿¡")


@lru_cache(maxsize=64)
def _segmentation(text: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Where each segment of ``text`` starts and ends, and the break level after it.

    Depends on the text alone: the editor splits one text for several limits (the stamped
    variants), and the packer only reads the result.
    """
    cjk = _CJK_STOP_CHAR.search(text) is not None
    tokens: list[tuple[int, int]] = []
    prev = 0
    for gap in _GAP.finditer(text):
        if gap.start() > prev:
            if cjk:
                tokens += _cjk_tokens(text, prev, gap.start())
            else:
                tokens.append((prev, gap.start()))
        prev = gap.end()
    if prev < len(text):
        tokens += _cjk_tokens(text, prev, len(text)) if cjk else [(prev, len(text))]

    starts: list[int] = []
    ends: list[int] = []
    opening = False  # the current segment ends with an opening-only token
    for start, end in tokens:
        glue = (
            starts
            and ends[-1] < start  # not a CJK full stop, which has no gap
            and (opening or _closing_only(text, start, end))
            and not _has_line_break(text, ends[-1], start)
        )
        if glue:
            ends[-1] = end
            opening = _opening_only(text, start, end)
            continue
        starts.append(start)
        ends.append(end)
        opening = _opening_only(text, start, end)

    last = len(starts) - 1
    levels = [_level(text, starts, ends, k) if k < last else _END for k in range(len(starts))]
    return tuple(starts), tuple(ends), tuple(levels)


def _closing_only(text: str, start: int, end: int) -> bool:
    return text[start] in _CLOSING_FIRST and _CLOSING_ONLY.fullmatch(text, start, end) is not None


def _opening_only(text: str, start: int, end: int) -> bool:
    return text[start] in _OPENING_FIRST and _OPENING_ONLY.fullmatch(text, start, end) is not None


def _has_line_break(text: str, start: int, end: int) -> bool:
    if end - start == 1 and text[start] == " ":
        return False
    return _LINE_BREAK.search(text, start, end) is not None


def _cjk_tokens(text: str, start: int, end: int) -> list[tuple[int, int]]:
    if end - start < 2:
        return [(start, end)]
    cuts = [
        m.end()
        for m in _CJK_STOP.finditer(text, start, end)
        if m.end() < end and not _inside_atomic(text, m.end())
    ]
    bounds = [start, *cuts, end]
    return list(pairwise(bounds))


def _level(text: str, starts: Sequence[int], ends: Sequence[int], k: int) -> int:
    """The break after segment ``k``, which is not the last."""
    gap_start, gap_end = ends[k], starts[k + 1]
    if gap_start == gap_end:
        return _SENTENCE  # a CJK full stop
    if gap_end - gap_start == 1 and text[gap_start] == " ":
        line_breaks = 0
    else:
        gap = text[gap_start:gap_end]
        line_breaks = len(_LINE_BREAK.findall(gap))
        if line_breaks >= 2 or "\u2029" in gap:
            return _PARAGRAPH
    tail = max(starts[k], ends[k] - 8)
    if line_breaks == 1 or _SENTENCE_END.search(text, tail, ends[k]):
        return _SENTENCE
    return _WORD


@lru_cache(maxsize=64)
def _blocked(text: str) -> bytes:
    """1 at each position inside a URL, mention or hashtag, where no cut may fall."""
    blocked = bytearray(len(text) + 1)
    spans = url_spans(text)
    spans += [m.span() for m in _ATOMIC.finditer(text)]
    for start, end in spans:
        blocked[start + 1 : end] = b"\x01" * max(end - start - 1, 0)
    return bytes(blocked)


def _inside_atomic(text: str, pos: int) -> bool:
    return bool(_blocked(text)[pos])


class _Splitter:
    """Greedy packing over segments (runs of text between breakable whitespace).

    A prefix sum of per-position weights estimates each candidate part in O(1); only the
    chosen part is counted exactly, so a long text costs about one exact count per part.
    """

    def __init__(
        self,
        text: str,
        rule: LengthRule,
        spoiler_text: str,
        head: int = 0,
        whole_words: bool = False,
    ) -> None:
        self.text = text
        self.whole_words = whole_words
        self.head = min(head, len(text))
        self.rule = rule
        self.spoiler_text = spoiler_text
        units, self.scale = rule.units(text)
        self.prefix = list(accumulate(units, initial=0))
        self.spoiler = rule.count("", spoiler_text)
        self._suffix_units: dict[str, int] = {}
        self.starts, self.ends, self.levels = _segmentation(text)
        self.end_units = [self.prefix[end] for end in self.ends]

    def _inside_atomic(self, pos: int) -> bool:
        return _inside_atomic(self.text, pos)

    # -- packing --

    def pack(self, n: int) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        pos = 0
        while pos < len(self.text):
            suffix = f" ({len(spans) + 1}/{n})"
            end = self._take_head(suffix) if pos == 0 and self.head else self._take(pos, suffix)
            spans.append((pos, end))
            next_start = _NON_SPACE.search(self.text, end)
            pos = next_start.start() if next_start else len(self.text)
        return spans

    def _budget(self, pos: int, suffix: str) -> int:
        """The largest prefix sum a part starting at ``pos`` may reach, by estimate."""
        suffix_units = self._suffix_units.get(suffix)
        if suffix_units is None:
            suffix_units = self._suffix_units[suffix] = sum(self.rule.units(suffix)[0])
        room = (self.rule.limit - self.spoiler + 1) * self.scale - 1 - suffix_units
        return self.prefix[pos] + room

    def _fits(self, pos: int, end: int, suffix: str) -> bool:
        part = self.text[pos:end].rstrip() + suffix
        return self.rule.fits(part, self.spoiler_text)

    def _take(self, pos: int, suffix: str) -> int:
        """Where the part starting at ``pos`` ends."""
        first = bisect_right(self.starts, pos) - 1
        last = bisect_right(self.end_units, self._budget(pos, suffix), lo=first) - 1
        if last >= first:
            chosen = self._prefer(pos, first, last)
            if self._fits(pos, self.ends[chosen], suffix):
                return self.ends[chosen]
            # The estimate was off (NFC or line-ending normalisation on X); search exactly.
            k = _last_true(first, chosen - 1, lambda k: self._fits(pos, self.ends[k], suffix))
            if k is not None:
                return self.ends[k]
        return self._hard_cut(pos, self.ends[first], suffix)

    def _take_head(self, suffix: str) -> int:
        """Where the first part ends when it must hold the head whole: at the end of the
        head or later (as much of the rest as fits), else wherever it would have."""
        floor = bisect_left(self.ends, self.head)
        last = bisect_right(self.end_units, self._budget(0, suffix), lo=floor) - 1
        if last >= floor:
            chosen = self._prefer(0, floor, last)
            if self._fits(0, self.ends[chosen], suffix):
                return self.ends[chosen]
            k = _last_true(floor, chosen - 1, lambda k: self._fits(0, self.ends[k], suffix))
            if k is not None:
                return self.ends[k]
        return self._take(0, suffix)

    def _prefer(self, pos: int, first: int, last: int) -> int:
        if self.levels[last] == _END:
            return last
        base = self.prefix[pos]
        room = self.end_units[last] - base
        for level in (_PARAGRAPH, _SENTENCE):
            for k in range(last, first - 1, -1):
                if self.levels[k] >= level:
                    if self.end_units[k] - base >= _MIN_FILL * room:
                        return k
                    break
        return last

    def _fits_at(self, pos: int, cuts: list[int], suffix: str, k: int) -> bool:
        return self._fits(pos, cuts[k], suffix)

    def _hard_cut(self, pos: int, end: int, suffix: str) -> int:
        """Cut a word too long for any part, between grapheme clusters, outside entities."""
        if self.whole_words:
            raise ValueError(f"a word at position {pos} is longer than a part")
        clusters: list[int] = [m.end() for m in _GRAPHEME.finditer(self.text, pos, end)]
        for cuts in ([c for c in clusters if not self._inside_atomic(c)], clusters):
            budget = self._budget(pos, suffix)
            j = bisect_right([self.prefix[c] for c in cuts], budget) - 1
            if j >= 0 and self._fits(pos, cuts[j], suffix):
                return cuts[j]
            k = _last_true(0, len(cuts) - 1, partial(self._fits_at, pos, cuts, suffix))
            if k is not None:
                return cuts[k]
        raise ValueError(
            f"limit {self.rule.limit} leaves no room for text at position {pos} "
            f"once the suffix {suffix!r} and the content warning are counted"
        )


def _last_true(lo: int, hi: int, test: Callable[[int], bool]) -> int | None:
    """The largest k in [lo, hi] with test(k), assuming test holds on a prefix of the range."""
    found = None
    while lo <= hi:
        mid = (lo + hi) // 2
        if test(mid):
            found, lo = mid, mid + 1
        else:
            hi = mid - 1
    return found
