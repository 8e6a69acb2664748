"""Counting and splitting edge cases a reader (or a platform refusing a post) would notice.

Every test here starts with textfit's caches empty, so that each count is computed afresh
rather than served from what another test (or the import of a test module) filled: a
wrong weight table or emoji shortcut shows here even when the other tests ran first.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from twitter_text import parse_tweet
from twitter_text.config import config as twitter_config

from broadcaster import textfit, textsplit
from broadcaster.textfit import Counting, LengthRule, rule_for, x_rule
from broadcaster.textsplit import split


@pytest.fixture(autouse=True)
def cold_caches() -> Iterator[None]:
    for value in [*vars(textfit).values(), *vars(textsplit).values()]:
        clear = getattr(value, "cache_clear", None)
        if callable(clear):
            clear()
    yield


def test_x_weighs_each_kind_of_character_as_x_does_from_a_cold_start() -> None:
    for version in (3, 2):
        rule = x_rule(version=version)
        assert rule.count("l’été coûte 10 €") == 17, "Latin and typographic quotes 1, € 2"
        assert rule.count("‘quoted’ — dash") == 15
        assert rule.count("日本") == 4
        assert rule.count("see https://example.com/x") == 4 + 23
        assert rule.count("🙂") == 2
    assert x_rule().count("👨\u200d👩\u200d👧") == 2, "an emoji sequence weighs 2 today"
    assert x_rule(version=2).count("👨\u200d👩\u200d👧") == 8, "its code points, before"


def test_the_emoji_shortcut_understands_twitter_texts_pattern_and_misses_no_emoji(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from twitter_text.regexp.emoji import emoji_list

    fresh = textfit._emoji_prefilter()
    assert fresh is not None, "the fast emoji scan no longer fits twitter-text's pattern"
    monkeypatch.setattr(textfit, "_EMOJI_PREFILTER", fresh)
    emojis = [entry.emoji for entry in emoji_list]
    fillers = ["a", "1", "#", "*", " ", "日", "\u200d", "\ufe0f", "\u20e3", "\u00a9"]
    v3 = {**twitter_config["defaults"], **twitter_config["version3"]}
    for start in range(0, len(emojis), 300):
        chunk = emojis[start : start + 300]
        text = "".join(e + fillers[i % len(fillers)] for i, e in enumerate(chunk))
        assert x_rule().count(text) == parse_tweet(text, v3).weightedLength
    for text in ("#1 *2 3\u20e3 ©️ ®", "1\u20e3#\u20e3*\u20e3", "a\u00a9\ufe0fb"):
        assert x_rule().count(text) == parse_tweet(text, v3).weightedLength, text


def test_the_dry_run_counts_like_mastodon_with_its_own_limit() -> None:
    assert rule_for("dryrun") == LengthRule("dryrun", 500, Counting.GRAPHEMES)
    assert rule_for("dryrun", 300).limit == 300
    assert rule_for("dryrun").count("e\u0301" * 3) == 3, "grapheme clusters, as Mastodon"


def test_an_unknown_platform_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown platform 'telegram'"):
        rule_for("telegram")


# Devanagari QA (U+0958) is one code point that NFC turns into two, and X counts after NFC:
# the per-character estimate is too low, and only the exact count tells where parts end.
QA = "\u0958"
HEAD = "Statut : panne en cours. Prochaine mise à jour 10 h 30.\n"


def _assert_full_parts(parts: list[str], words: list[str], rule: LengthRule) -> None:
    """Every part fits, the words come in order, and no part could have taken one more."""
    n = len(parts)
    bodies = [p.removesuffix(f" ({i}/{n})") for i, p in enumerate(parts, 1)]
    assert all(rule.fits(p) for p in parts)
    assert " ".join(bodies).split() == words
    for i, body in enumerate(bodies[:-1], 1):
        more = f"{body} {bodies[i].split()[0]} ({i}/{n})"
        assert not rule.fits(more), f"part {i} could have held one more word"


@pytest.mark.parametrize("head", [0, len(HEAD)], ids=["no head", "head"])
def test_text_that_x_lengthens_when_normalising_is_still_cut_into_full_parts(head: int) -> None:
    rule = x_rule()
    text = HEAD + " ".join([QA * 4] * 150)
    parts = split(text, rule, head=head)
    assert parts[0].startswith(HEAD)
    _assert_full_parts(parts, text.split(), rule)


def test_a_single_word_x_lengthens_is_cut_where_x_still_accepts_it() -> None:
    rule = x_rule()
    parts = split(QA * 300, rule)
    assert [rule.count(p) for p in parts] == [280, 280, 58]
    assert "".join(p.rsplit(" (", 1)[0] for p in parts) == QA * 300


def test_mastodons_rule_counts_graphemes_and_urls_at_the_instances_length() -> None:
    assert textfit.mastodon_rule() == rule_for("mastodon") == LengthRule("mastodon", 500)
    wide = textfit.mastodon_rule(300, url_length=30)
    assert (wide.limit, wide.count("see https://status.example.com/a/very/long/path")) == (
        300,
        4 + 30,
    )


def test_mastodon_parts_with_accents_and_links_are_as_full_as_they_may_be() -> None:
    rule = textfit.mastodon_rule(limit=120)
    # decomposed accents (two code points, one character) and links (23 whatever their size)
    words = ["re\u0301seau", "e\u0301lectrique", "https://status.example.com/incidents/1234"]
    text = " ".join(words[i % 3] for i in range(60))
    parts = split(text, rule)
    _assert_full_parts(parts, text.split(), rule)


def test_the_head_stays_whole_even_where_x_lengthens_the_words_after_it() -> None:
    rule = x_rule()
    # a head with a paragraph break past the middle of a part (where a cut without a head
    # would go), then words X lengthens when normalising, with a full stop among them
    summary = "Power outage in Strasbourg: SBG1, SBG2 and SBG4 are down, SBG3 on generators."
    head = f"{summary} {summary}\n\nNext update by 10:30. https://status.example.com/sbg\n"
    text = head + " ".join([QA * 2] * 18) + ". " + " ".join([QA * 2] * 40)
    parts = split(text, rule, head=len(head))
    assert parts[0].startswith(head)
    assert all(rule.fits(p) for p in parts)
    assert " ".join(p.rsplit(" (", 1)[0] for p in parts).split() == text.split()


def test_after_a_short_head_the_first_part_is_filled_with_as_many_words_as_fit() -> None:
    rule = x_rule()
    head = "Monitoring: Power outage in SBG.\n"
    text = head + " ".join(["datacenter"] * 60)
    parts = split(text, rule, head=len(head))
    assert parts[0].startswith(head)
    _assert_full_parts(parts, text.split(), rule)


def test_a_post_is_valid_up_to_its_limit_content_warning_included() -> None:
    mastodon = textfit.mastodon_rule(limit=500)
    assert mastodon.valid("x" * 500) and not mastodon.valid("x" * 501)
    assert not mastodon.valid("x" * 490, spoiler_text="Power outage in SBG")
    short_x = x_rule(100)
    assert short_x.valid("x" * 100) and not short_x.valid("x" * 101)


def test_with_whole_words_a_word_longer_than_a_part_is_refused_not_torn() -> None:
    """The editor tries shorter limits for a thread that reads better; a word (here a CJK
    sentence, which has no spaces) torn between graphemes must never be the price of it."""
    sentence = "両方の給電系統が停止しデータセンター内のすべてのサーバーが停止しました" * 5 + "。"
    rule = x_rule()
    assert len(split(sentence, rule)) > 1  # torn as a last resort
    with pytest.raises(ValueError, match="longer than a part"):
        split(sentence, rule, whole_words=True)
