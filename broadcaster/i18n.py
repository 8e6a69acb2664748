"""Words, times and typography in the audience's language, for the message templates.

Everything is written out by hand (day and month names, labels) rather than taken from the
system locale: a daemon in a container usually has only ``C.UTF-8``, and a post must read
the same on every machine. English is the fallback for any language not listed here.

Times are shown in the zone of the datetimes given: the renderer converts them to the
configured timezone first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

DEFAULT_LANGUAGE = "en"

STATUS_LABELS: dict[str, dict[str, str]] = {
    "en": {
        "investigating": "Investigating",
        "identified": "Cause identified",
        "monitoring": "Monitoring",
        "resolved": "Resolved",
        "scheduled": "Scheduled",
        "in_progress": "In progress",
        "completed": "Completed",
    },
    "fr": {
        "investigating": "Analyse en cours",
        "identified": "Cause identifiée",
        "monitoring": "Rétablissement en cours",
        "resolved": "Résolu",
        "scheduled": "Planifiée",
        "in_progress": "En cours",
        "completed": "Terminée",
    },
}

SEVERITY_LABELS: dict[str, dict[str, str]] = {
    "en": {"minor": "Minor", "major": "Major", "critical": "Critical"},
    "fr": {"minor": "Mineur", "major": "Majeur", "critical": "Critique"},
}

_DAYS = {
    "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
    "fr": ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
}
_MONTHS = {
    "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    "fr": (
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ),
}

# French readers of a French account live on Paris time: naming the zone there is noise.
# Any other zone is named, so "10 h 30" never silently means UTC.
_IMPLICIT_FR_ZONES = frozenset({"CET", "CEST"})

NBSP = "\u00a0"  # before ":" in French
NNBSP = "\u202f"  # narrow no-break space, before ";", "?" and "!" in French


def base_language(language: str) -> str:
    """The language these tables know for ``language``: "fr-CA" → "fr", "de" → "en"."""
    base = language.replace("_", "-").split("-")[0].lower()
    return base if base in _DAYS else DEFAULT_LANGUAGE


def status_label(status: str, language: str) -> str:
    labels = STATUS_LABELS[base_language(language)]
    return labels.get(status) or status.replace("_", " ").capitalize()


def severity_label(severity: str, language: str) -> str:
    labels = SEVERITY_LABELS[base_language(language)]
    return labels.get(severity) or severity.capitalize()


# -- times ------------------------------------------------------------------------------------


def _aware(dt: datetime) -> datetime:
    # A naive datetime here is a bug upstream; reading it as UTC is at least predictable,
    # where astimezone() would silently use the host's zone.
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def _zone(dt: datetime) -> str:
    name = dt.tzname() or ""
    # Zones without an abbreviation give "+03": "UTC+03" is what a reader understands.
    return f"UTC{name}" if name[:1] in "+-" and name else name


def _time(dt: datetime, lang: str) -> str:
    if lang == "fr":
        # French style: no leading zero, "10 h" on the hour ("Prochain point à 11 h").
        return f"{dt.hour} h" if dt.minute == 0 else f"{dt.hour} h {dt.minute:02d}"
    return f"{dt.hour:02d}:{dt.minute:02d}"


def _zone_suffix(dt: datetime, lang: str) -> str:
    zone = _zone(dt)
    if not zone or (lang == "fr" and zone in _IMPLICIT_FR_ZONES):
        return ""
    return f" {zone}"


# Beyond this, "Sun 10 Mar" could be this year or the next: the year is written out.
_YEAR_AFTER = timedelta(days=180)


def _date(dt: datetime, lang: str, now: datetime) -> str:
    day = _DAYS[lang][dt.weekday()]
    month = _MONTHS[lang][dt.month - 1]
    year = f" {dt.year}" if abs(dt - now) > _YEAR_AFTER else ""
    if lang == "fr":
        number = "1er" if dt.day == 1 else str(dt.day)
        return f"{day} {number} {month}{year}"
    return f"{day} {dt.day} {month}{year}"


def _same_day(dt: datetime, now: datetime) -> bool:
    return dt.astimezone(now.tzinfo).date() == now.date()


def _local(dt: datetime, now: datetime) -> tuple[datetime, datetime]:
    dt, now = _aware(dt), _aware(now)
    return dt.astimezone(now.tzinfo), now


def clock(dt: datetime, language: str) -> str:
    """Time of day: en "10:30 CET", fr "10 h 30" (zone named only outside CET/CEST)."""
    lang = base_language(language)
    dt = _aware(dt)
    return _time(dt, lang) + _zone_suffix(dt, lang)


def _dated(dt: datetime, lang: str, now: datetime) -> str:
    if lang == "fr":
        return f"{_date(dt, lang, now)} à {clock(dt, lang)}"
    return f"{_date(dt, lang, now)}, {clock(dt, lang)}"


def is_same_day(dt: datetime, now: datetime) -> bool:
    """Whether ``dt`` falls on ``now``'s local calendar day."""
    dt, now = _local(dt, now)
    return _same_day(dt, now)


def when(dt: datetime, now: datetime, language: str) -> str:
    """A clock time, with the date when it is not today.

    en "10:30 CET" / "Thu 9 Nov, 10:30 CET"; fr "10 h 30" / "jeudi 9 novembre à 10 h 30".
    """
    lang = base_language(language)
    dt, now = _local(dt, now)
    return clock(dt, lang) if _same_day(dt, now) else _dated(dt, lang, now)


def at(dt: datetime, now: datetime, language: str) -> str:
    """``when`` with its preposition, which French chooses by the form of the time.

    en "at 10:30 CET" / "on Thu 9 Nov at 10:30 CET";
    fr "à 10 h 30" / "le jeudi 9 novembre à 10 h 30".
    """
    lang = base_language(language)
    dt, now = _local(dt, now)
    if _same_day(dt, now):
        return ("à " if lang == "fr" else "at ") + clock(dt, lang)
    if lang == "fr":
        return f"le {_dated(dt, lang, now)}"
    return f"on {_date(dt, lang, now)} at {clock(dt, lang)}"


def since(dt: datetime, now: datetime, language: str) -> str:
    """en "since 07:23 CET" / "since Thu 9 Nov, 07:23 CET";
    fr "depuis 7 h 23" / "depuis le jeudi 9 novembre à 7 h 23"."""
    lang = base_language(language)
    dt, now = _local(dt, now)
    if lang == "fr":
        if _same_day(dt, now):
            return f"depuis {clock(dt, lang)}"
        return f"depuis le {_dated(dt, lang, now)}"
    return "since " + when(dt, now, lang)


def until(dt: datetime, now: datetime, language: str) -> str:
    """en "until 23:30 CET" / "until Fri 10 Nov, 01:00 CET";
    fr "jusqu’à 23 h 30" / "jusqu’au vendredi 10 novembre à 1 h"."""
    lang = base_language(language)
    dt, now = _local(dt, now)
    if lang == "fr":
        if _same_day(dt, now):
            return f"jusqu’à {clock(dt, lang)}"
        return f"jusqu’au {_dated(dt, lang, now)}"
    return "until " + when(dt, now, lang)


def window(start: datetime, end: datetime | None, now: datetime, language: str) -> str:
    """A time range with its prepositions, as short as the dates allow.

    en "from 22:00 to 23:30 CET" / "on Thu 16 Nov from 22:00 to 23:30 CET" /
       "from Thu 16 Nov, 22:00 CET to Fri 17 Nov, 02:00 CET" / "from 22:00 CET";
    fr "de 22 h à 23 h 30" / "le jeudi 16 novembre de 22 h à 23 h 30" /
       "du jeudi 16 novembre à 22 h au vendredi 17 novembre à 2 h" / "à partir de 22 h".
    """
    lang = base_language(language)
    start, now = _local(start, now)
    today = _same_day(start, now)
    if end is None:
        if lang == "fr":
            return (
                f"à partir de {clock(start, lang)}"
                if today
                else (f"à partir du {_dated(start, lang, now)}")
            )
        return f"from {when(start, now, lang)}"
    end = _aware(end).astimezone(start.tzinfo)
    if end.date() != start.date():
        if lang == "fr":
            return f"du {_dated(start, lang, now)} au {_dated(end, lang, now)}"
        return f"from {_dated(start, lang, now)} to {_dated(end, lang, now)}"
    # Same day: name the zone once, at the end, unless a DST switch falls inside the window.
    first = _time(start, lang)
    if _zone(start) != _zone(end):
        first += _zone_suffix(start, lang)
    last = clock(end, lang)
    if lang == "fr":
        span = f"de {first} à {last}"
        return span if today else f"le {_date(start, lang, now)} {span}"
    span = f"from {first} to {last}"
    return span if today else f"on {_date(start, lang, now)} {span}"


def _unit(count: int, unit: str, lang: str) -> str:
    names = {
        "day": ("jour", "jours") if lang == "fr" else ("day", "days"),
        "hour": ("heure", "heures") if lang == "fr" else ("hour", "hours"),
        "minute": ("minute", "minutes"),
    }[unit]
    return f"{count} {names[count != 1]}"


def duration(delta: timedelta, language: str) -> str:
    """An exact duration in words, so it never reads as a clock time (COMMS: "durations
    written differently from times"): en "2 hours 15 minutes", "45 minutes", "3 days
    4 hours"; fr "2 heures et 15 minutes", "45 minutes", "3 jours et 4 heures".

    Rounded to the minute; past a day, to the hour, as nobody needs minutes then.
    """
    lang = base_language(language)
    minutes = max(0, round(delta.total_seconds() / 60))
    if minutes == 0:
        return "moins d’une minute" if lang == "fr" else "less than a minute"
    if minutes < 24 * 60:
        big, rest = divmod(minutes, 60)
        units = ("hour", "minute")
    else:
        big, rest = divmod(round(minutes / 60), 24)
        units = ("day", "hour")
    if big == 0:
        return _unit(rest, units[1], lang)
    if rest == 0:
        return _unit(big, units[0], lang)
    joiner = " et " if lang == "fr" else " "
    return _unit(big, units[0], lang) + joiner + _unit(rest, units[1], lang)


def _hours(count: int, lang: str) -> str:
    if lang == "fr":
        return "une heure" if count == 1 else f"{count} heures"
    return "an hour" if count == 1 else f"{count} hours"


def _and_a_half(count: int, lang: str) -> str:
    if lang == "fr":
        return "une heure et demie" if count == 1 else f"{count} heures et demie"
    return "an hour and a half" if count == 1 else f"{count} and a half hours"


def _days(count: int, lang: str) -> str:
    if lang == "fr":
        return "un jour" if count == 1 else f"{count} jours"
    return "a day" if count == 1 else f"{count} days"


def rough(delta: timedelta, language: str) -> str:
    """A duration in words, as said aloud: en "17 minutes", "over 7 hours", "3 hours",
    "over 7 and a half hours", "over 2 days"; fr "17 minutes", "plus de 7 heures",
    "3 heures", "plus de 7 heures et demie", "plus de 2 jours".

    Never mistaken for a clock time ("depuis 7 h 15, soit plus de 7 heures").
    """
    lang = base_language(language)
    minutes = max(0, int(delta.total_seconds() // 60))
    if minutes < 1:
        return "moins d’une minute" if lang == "fr" else "less than a minute"
    if minutes < 60:
        return f"{minutes} minute" + ("s" if minutes > 1 else "")
    if minutes < 24 * 60:
        text, rest = _hours(minutes // 60, lang), minutes % 60
        if rest >= 30:
            # Half hours: reminders 30 minutes apart must not say the same duration twice.
            text, rest = _and_a_half(minutes // 60, lang), rest - 30
    else:
        text, rest = _days(minutes // (24 * 60), lang), minutes % (24 * 60)
    if rest == 0:
        return text
    if lang == "fr":
        return ("plus d’" if text.startswith("un") else "plus de ") + text
    return "over " + text


def ago(dt: datetime, now: datetime, language: str) -> str:
    """How long before ``now``, in words: en "40 minutes ago"; fr "il y a 40 minutes"."""
    lang = base_language(language)
    delta = _aware(now).astimezone(UTC) - _aware(dt).astimezone(UTC)
    words = rough(delta, lang)
    if delta < timedelta(minutes=1):
        return "à l’instant" if lang == "fr" else "just now"
    return f"il y a {words}" if lang == "fr" else f"{words} ago"


# French names of the zone, as French readers say it. Any other zone in CET/CEST is "heure
# d’Europe centrale"; a zone outside it is named by its abbreviation, as in English.
_FR_ZONE_NAMES = {
    "Europe/Paris": "heure de Paris",
    "Europe/Brussels": "heure de Bruxelles",
    "Europe/Luxembourg": "heure de Luxembourg",
    "Europe/Monaco": "heure de Monaco",
    "Europe/Zurich": "heure de Zurich",
}


def zone_words(dt: datetime, language: str) -> str:
    """The zone of ``dt`` as a phrase to follow a time, for the one place a post names it.

    fr ", heure de Paris" in CET/CEST, where ``clock`` names no zone; empty otherwise (the
    clock already says "UTC", "CET"...). English always names the zone in the clock.
    """
    if base_language(language) != "fr":
        return ""
    dt = _aware(dt)
    if _zone(dt) not in _IMPLICIT_FR_ZONES:
        return ""
    key = getattr(dt.tzinfo, "key", "")
    return ", " + _FR_ZONE_NAMES.get(key, "heure d’Europe centrale")


def posted(dt: datetime, language: str, *, seconds: bool = False) -> str:
    """When a post went out, as a line to make a repeated text unique: en "Posted at
    15:30 CET" / "Posted at 15:30:12 CET"; fr "Publié à 15 h 30" (on the hour "Publié à 15 h") /
    "Publié à 15 h 30 min 12 s"."""
    lang = base_language(language)
    dt = _aware(dt)
    if lang == "fr":
        if seconds:
            time = f"{dt.hour} h {dt.minute:02d} min {dt.second} s"
        else:  # like every other time in French posts: "15 h", "15 h 30"
            time = f"{dt.hour} h" + (f" {dt.minute:02d}" if dt.minute else "")
        return f"Publié à {time}{_zone_suffix(dt, lang)}"
    time = f"{dt:%H:%M:%S}" if seconds else f"{dt:%H:%M}"
    return f"Posted at {time}{_zone_suffix(dt, lang)}"


def join_and(items: Iterable[str], language: str) -> str:
    """en "A, B and C"; fr "A, B et C"."""
    words = [str(item) for item in items]
    if len(words) <= 1:
        return "".join(words)
    conjunction = " et " if base_language(language) == "fr" else " and "
    return ", ".join(words[:-1]) + conjunction + words[-1]


# French words that start a sentence but take a lower case after a colon; anything else
# (a proper noun, an acronym, a word not listed) keeps its capital.
_FR_LOWER_AFTER_COLON = frozenset(
    [
        "le",
        "la",
        "les",
        "l",
        "un",
        "une",
        "des",
        "du",
        "de",
        "d",
        "nos",
        "notre",
        "votre",
        "vos",
        "si",
        "nous",
        "vous",
        "tous",
        "toutes",
        "tout",
        "certains",
        "certaines",
        "aucun",
        "aucune",
        "il",
        "elle",
        "ils",
        "elles",
        "ce",
        "cet",
        "cette",
        "ces",
        "on",
        "en",
        "à",
        "au",
        "aux",
        "pour",
        "depuis",
        "après",
        "avant",
        "plusieurs",
        "quelques",
        "redémarrez",
        "basculez",
        "utilisez",
        "merci",
    ]
)
_FIRST_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def after_colon(text: str, language: str) -> str:
    """``text`` as it reads after a colon: French puts a lower case there ("Cause : le site
    a perdu…"), unless a proper noun follows, so only known common words are lowered."""
    if base_language(language) != "fr" or not text:
        return text
    word = _FIRST_WORD.match(text)
    if word is None or word.group(0).lower() not in _FR_LOWER_AFTER_COLON:
        return text
    return text[0].lower() + text[1:]


def sentence(text: str) -> str:
    """``text`` ending with a full stop, for ops' fragments such as "a failed power feed".

    Left alone when it already ends with punctuation, an emoji or a URL-ish character.
    """
    text = text.rstrip()
    if text and (text[-1].isalnum() or text[-1] == ")"):
        return text + "."
    return text


# -- French typography ------------------------------------------------------------------------

# URLs are matched first and passed through untouched: "https://", "?q=" and "#!" are syntax.
_URL = r"(?:[A-Za-z][A-Za-z0-9+.\-]*://|www\.)[^\s<>\"]+"
_SPACES = "[ \t\u00a0\u202f\u2009\u2007]*"
_TYPOGRAPHY = re.compile(
    rf"(?P<url>{_URL})"
    # A colon only as punctuation (followed by a space or the end): never "10:30", "fe80::1"
    # or "mailto:". The char before must be text, so a line starting with ":" is left alone.
    rf"|(?<=[^\s:;?!])(?P<colon_space>{_SPACES}):(?=\s|$)"
    # ";", "?", "!" likewise, or doubled ("?!"): only the first of a run gets the space.
    rf"|(?<=[^\s:;?!])(?P<mark_space>{_SPACES})(?P<mark>[;?!])(?=[\s?!.,;:)\]»\"”’']|$)"
    # "%" after a number: "50 %".
    rf"|(?<=\d)(?P<percent_space>{_SPACES})%"
    # Inside « guillemets ».
    rf"|«(?P<open_space>{_SPACES})(?=\S)"
    rf"|(?<=\S)(?P<close_space>{_SPACES})»"
    # A straight apostrophe between letters: "l'incident" → "l’incident".
    r"|(?<=[^\W\d_])'(?=[^\W\d_]|«)"
)


def _typography_sub(match: re.Match[str]) -> str:
    if match.group("url") is not None:
        return match.group("url")
    if match.group("colon_space") is not None:
        return NBSP + ":"
    if match.group("mark") is not None:
        return NNBSP + match.group("mark")
    if match.group("percent_space") is not None:
        return NBSP + "%"
    if match.group("open_space") is not None:
        return "«" + NBSP
    if match.group("close_space") is not None:
        return NBSP + "»"
    return "’"


# Posts repeat lines (status words, durations, ops' message in every post of a thread):
# the pass runs line by line, each line's result remembered. No rule above reaches across
# a line feed: it is a space to the lookarounds, and at a line's ends they see the same
# as at the text's ends.
_TYPOGRAPHY_CACHE_CAP = 1024
_typography_lines: dict[str, str] = {}


def _french_line(line: str) -> str:
    done = _typography_lines.get(line)
    if done is None:
        done = _TYPOGRAPHY.sub(_typography_sub, line)
        if len(_typography_lines) >= _TYPOGRAPHY_CACHE_CAP:
            _typography_lines.clear()
        _typography_lines[line] = done
    return done


def french_typography(text: str) -> str:
    """French typography: a no-break space before ":" and "%" and inside « », a narrow one
    before ";", "?" and "!", and typographic apostrophes (’).

    Existing ordinary spaces there are replaced, missing ones added; URLs, clock times and
    other colons inside words are left alone. Idempotent.
    """
    if "\n" not in text:
        return _french_line(text)
    return "\n".join(map(_french_line, text.split("\n")))


def typography(text: str, language: str) -> str:
    """The typographic pass for ``language`` (only French has one)."""
    return french_typography(text) if base_language(language) == "fr" else text
