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


def test_the_url_shortcut_understands_twitter_texts_pattern_and_misses_no_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A line the shortcut wrongly skips would count a link at its own length, not 23."""
    fresh = textfit._url_prefilter()
    assert fresh is not None, "the fast URL scan no longer fits twitter-text's pattern"
    monkeypatch.setattr(textfit, "_URL_PREFILTER", fresh)
    v3 = {**twitter_config["defaults"], **twitter_config["version3"]}
    urls = [
        "https://status.example.com/incidents/1234",
        "status.example.com",
        "STATUS.EXAMPLE.COM/SBG",
        "Example.Org",
        "http://xn--bcher-kva.example",
        "www.exemple.xn--p1ai/page",
        "exemple.рф",
        "https://192.168.0.1/status",
        "ovh.co.uk.",
        "(voir ovh.net/status)",
        "t.co/abc",
        "a.zw b.ye c.yt d.wf e.vn f.ua g.tz",
        "q.qa j.jp k.kr l.ly m.mx n.nl o.om p.pl",
        "ovh.ie, ovh.it; ovh.fr! ovh.de? ovh.es…",
    ]
    for url in urls:
        for text in (url, f"Voir {url} maintenant", f"ligne\n{url}\nfin"):
            assert x_rule().count(text) == parse_tweet(text, v3).weightedLength, text
    assert textfit.url_spans("see https://example.com/a now") == [(4, 25)]


def test_a_rule_refuses_a_limit_below_one_and_a_negative_link_length_by_name() -> None:
    assert LengthRule("x", 1).limit == 1
    assert LengthRule("mastodon", 500, url_length=0).count("https://example.com") == 0
    with pytest.raises(ValueError, match="limit must be positive, got 0"):
        LengthRule("x", 0)
    with pytest.raises(ValueError, match="url_length must not be negative, got -1"):
        LengthRule("mastodon", 500, url_length=-1)
    with pytest.raises(ValueError, match="must be 2 or 3, got 4"):
        x_rule(version=4)
    assert x_rule().platform == "x" and x_rule().counting is Counting.X_V3


def test_weights_line_up_with_the_characters_and_add_up_to_the_count() -> None:
    """The splitter cuts by these weights: one per character, summing to the platform's count."""
    family = "👨\u200d👩\u200d👧"
    text = f"Panne {family} voir https://status.example.com/sbg @ovh@mastodon.social é\u0301"
    for rule in (x_rule(), textfit.mastodon_rule()):
        units, scale = rule.units(text)
        assert len(units) == len(text)
        assert sum(units) // scale == rule.count(text), rule
    units, scale = x_rule().units(family)
    assert sum(units) == 2 * scale, "an emoji sequence weighs 2 today"


def test_mastodon_counts_a_carriage_return_line_feed_as_one_character() -> None:
    rule = textfit.mastodon_rule()
    assert rule.count("Panne\r\nen cours") == 14
    assert rule.count("Panne\ren cours\r") == 15
    parts = split("mot\r\n" * 30, textfit.mastodon_rule(40))
    assert all(rule.count(p) <= 40 for p in parts) and "".join(parts).count("mot") == 30


def test_trailing_spaces_that_make_a_post_too_long_are_dropped_not_split() -> None:
    assert split("0123456789   ", x_rule(10)) == ["0123456789"]


def test_parts_fit_with_the_content_warning_counted_and_hold_as_much_as_they_may() -> None:
    rule = textfit.mastodon_rule(limit=100)
    cw = "Panne électrique à Strasbourg"
    text = " ".join(["datacenter"] * 40)
    parts = split(text, rule, spoiler_text=cw)
    n = len(parts)
    assert all(rule.fits(p, cw) for p in parts)
    bodies = [p.removesuffix(f" ({i}/{n})") for i, p in enumerate(parts, 1)]
    assert " ".join(bodies).split() == text.split()
    for i, body in enumerate(bodies[:-1], 1):
        assert not rule.fits(f"{body} datacenter ({i}/{n})", cw), f"part {i} not full"


def test_a_thread_of_more_than_a_hundred_parts_counts_its_three_digit_suffixes() -> None:
    # three words fill a part exactly while the suffix has two digits; past part 99 the
    # suffix takes one more character and a part holds two
    rule = x_rule(29)
    text = " ".join(f"mot{i:03d}" for i in range(330))
    parts = split(text, rule)
    assert len(parts) >= 100 and parts[-1].endswith(f"/{len(parts)})")
    _assert_full_parts(parts, text.split(), rule)


def test_a_limit_too_small_for_any_text_says_so_by_name() -> None:
    with pytest.raises(ValueError, match="limit 6 leaves no room for text at position 0"):
        split("abcdefghijklmnop", x_rule(6))


def test_a_head_that_nearly_fills_a_part_stays_whole_despite_its_own_full_stops() -> None:
    rule = x_rule()
    head = ("Power outage in Strasbourg. " * 7) + "Next update 10:30.\n"
    assert rule.count(head) < 280 - len(" (1/2)")
    text = head + " ".join(["datacenter"] * 30)
    parts = split(text, rule, head=len(head))
    assert parts[0].startswith(head.rstrip())
    assert all(rule.fits(p) for p in parts)


@pytest.mark.parametrize("separator", ["\n", " \n", "\u2028"], ids=["lf", "space-lf", "ls"])
def test_parts_end_at_line_ends_rather_than_mid_line(separator: str) -> None:
    rule = x_rule()
    lines = [f"ligne {i} " + " ".join(["serveur"] * 8) for i in range(12)]
    parts = split(separator.join(lines), rule)
    bodies = [p.rsplit(" (", 1)[0] for p in parts]
    for body in bodies:
        assert body.endswith("serveur") and body.split(separator)[0].startswith("ligne"), body


@pytest.mark.parametrize("separator", ["\n\n", " \n\n", "\u2029"], ids=["blank", "space", "ps"])
def test_parts_end_at_paragraph_ends_rather_than_at_a_line_end(separator: str) -> None:
    rule = x_rule()
    paragraph = "\n".join(f"ligne {i} " + " ".join(["serveur"] * 3) for i in range(4))
    text = separator.join([paragraph] * 5)
    parts = split(text, rule)
    assert all(p.startswith("ligne 0 ") for p in parts), parts


def test_a_quoted_line_opening_with_a_guillemet_still_starts_a_part() -> None:
    """« » glue to the word beside them across a space, never across a line break."""
    rule = x_rule()
    lines = ["» " + " ".join(["citation"] * 9) for _ in range(10)]
    parts = split("\n".join(lines), rule)
    assert all(p.startswith("» citation") for p in parts), parts


def test_a_post_that_fits_only_without_its_content_warning_is_still_split() -> None:
    rule = textfit.mastodon_rule(limit=100)
    cw = "Panne électrique à Strasbourg"
    for text in (" ".join(["serveur"] * 11), " ".join(["serveur"] * 11) + "    "):
        assert rule.fits(text) and not rule.fits(text, cw)
        parts = split(text, rule, spoiler_text=cw)
        assert len(parts) == 2 and all(rule.fits(p, cw) for p in parts), parts


def test_a_head_after_leading_blank_lines_stays_whole_and_its_part_is_filled() -> None:
    rule = x_rule()
    summary = "Power outage in Strasbourg: SBG1, SBG2 and SBG4 are down."
    head = f"{summary} {summary} Next update by 10:30.\n"
    text = "\n\n  " + head + " ".join(["datacenter"] * 40)
    parts = split(text, rule, head=len("\n\n  " + head))
    assert parts[0].startswith(head)
    _assert_full_parts(parts, text.split(), rule)


def test_a_head_longer_than_a_part_is_cut_into_parts_that_fit_exactly() -> None:
    rule = x_rule()
    text = " ".join(["a"] * 400)
    parts = split(text, rule, head=len(text))
    assert [rule.count(p) for p in parts[:2]] == [279, 279]
    assert " ".join(p.rsplit(" (", 1)[0] for p in parts).split() == text.split()
