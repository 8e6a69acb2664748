"""The ``broadcaster`` command: parses arguments, calls the app, prints. Exit 2 on bad input."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .advice import advice
from .clock import utcnow as _now
from .config import Config, listen_problem, load_config, setup_problems
from .instancelock import AlreadyRunning
from .model import ID_FIELD, INCIDENT_FIELDS, ChannelInfo, FieldKind, Incident, PostState, opened
from .problems import ProblemsError
from .statefile import Check, StateFileError, load_state, load_timeline
from .timeinput import aware_argument, hours_argument

if TYPE_CHECKING:
    from .rehearsal import Shown

EXIT_OK = 0
EXIT_BAD_INPUT = 2


class UsageError(Exception):
    pass


# The incident fields ``draft`` can set: (name, option, kind), derived from the model: its
# declared option (in its order) first, then every other field as ``--<name>``.
_DRAFT_FIELDS = [
    (name, rule.draft_option or "--" + name.replace("_", "-"), rule.kind)
    for name, rule in sorted(
        INCIDENT_FIELDS.items(),
        key=lambda item: (item[1].draft_option is None, item[1].draft_order),
    )
    if rule.kind is not FieldKind.ID
]
_DRAFT_HELP = {
    FieldKind.LOCALIZED: "LANG=TEXT, once per language (or TEXT with --lang/--all-languages)",
    FieldKind.DATETIME: "ISO 8601, HH:MM or +30m (in the configured timezone)",
    FieldKind.STRINGS: "comma-separated",
    FieldKind.NAMES: "comma-separated, for every language; or LANG=A,B once per language",
    FieldKind.BOOL: "true or false",
}


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=Path("config.toml"),
        help="config file (default: ./config.toml)",
    )
    common.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format (default: text)"
    )
    common.add_argument("--log-format", choices=("text", "json"), default="text")
    common.add_argument("-v", "--verbose", action="store_true")

    p = argparse.ArgumentParser(
        prog="broadcaster",
        description="Regular, truthful incident updates on X and Mastodon.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    c = sub.add_parser("check", parents=[common], help="validate config, state file and templates")
    c.add_argument(
        "--dry-run",
        action="store_true",
        help="for a config only run with --dry-run: unset credentials are not problems",
    )
    pv = sub.add_parser("preview", parents=[common], help="what would be posted now")
    pv.add_argument("incident_id", nargs="?")
    pv.add_argument(
        "--at", type=aware_argument, help="pretend it is this time (ISO 8601 with offset)"
    )

    d = sub.add_parser("draft", parents=[common], help="render the update some changes would make")
    d.add_argument("incident_id")
    d.add_argument("--new", action="store_true", help="open a new incident with this id")
    for name, option, kind in _DRAFT_FIELDS:
        localized = kind in (FieldKind.LOCALIZED, FieldKind.NAMES)
        d.add_argument(
            option,
            dest=name,
            action="append" if localized else "store",
            help=_DRAFT_HELP.get(kind),
        )
    texts = "/".join(option for _, option, kind in _DRAFT_FIELDS if kind is FieldKind.LOCALIZED)
    d.add_argument("--lang", help=f"language of a plain {texts} text")
    d.add_argument(
        "--all-languages",
        action="store_true",
        help=f"a plain {texts} text is meant for every language",
    )
    d.add_argument("--write", action="store_true", help="apply the changes to the state file")
    d.add_argument("--at", type=aware_argument)

    s = sub.add_parser("simulate", parents=[common], help="replay posts on a virtual clock")
    s.add_argument("--hours", type=hours_argument, default=6.0)
    s.add_argument("--timeline", type=Path, help="a timeline file of successive states")
    s.add_argument(
        "--start",
        type=aware_argument,
        help="virtual start time (default: now, or the timeline's first step)",
    )

    r = sub.add_parser("run", parents=[common], help="run the daemon")
    r.add_argument("--dry-run", action="store_true", help="print posts instead of publishing")

    st = sub.add_parser("status", parents=[common], help="what the store holds")
    st.add_argument("--dry-run", action="store_true", help="show the dry-run store")

    co = sub.add_parser(
        "console", parents=[common], help="the drafting console (a web page) on its own"
    )
    co.add_argument("--listen", help="HOST:PORT (default: [console] listen, 127.0.0.1:8471)")
    sub.add_parser("migrate", parents=[common], help="bring the store's schema up to date")

    sb = sub.add_parser(
        "sandbox", parents=[common], help="run local X and Mastodon API servers for drills"
    )
    sb.add_argument("--x-port", type=int, default=8481)
    sb.add_argument("--mastodon-port", type=int, default=8482)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.log_format, args.verbose)
    try:
        return COMMANDS[args.command](args)
    # Bad config, state file, event or template (each a ProblemsError), a bad command line,
    # or a daemon that refuses to start.
    except (ProblemsError, UsageError, AlreadyRunning) as e:
        _error(args, str(e))
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # `status --format json | head`: the reader left; say so once, without a traceback
        # (and without a second one when Python flushes stdout at exit).
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print("error: output closed early (broken pipe)", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:
        # A port in use, an unreadable or unwritable file: the OS's words, on one line.
        where = f"{e.filename}: " if e.filename else ""
        _error(args, f"{where}{e.strerror or e}")
        return EXIT_BAD_INPUT


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("broadcaster")
    except PackageNotFoundError:
        return "unknown"


def _setup_logging(fmt: str, verbose: bool) -> None:
    from .logs import configure

    configure(fmt, logging.DEBUG if verbose else logging.INFO)


def _error(args: argparse.Namespace, message: str) -> None:
    from .logs import redact

    message = redact(message)
    if args.format == "json":
        print(json.dumps({"error": message}, ensure_ascii=False))
    else:
        print(f"error: {message}", file=sys.stderr)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.format == "json":
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(text, end="" if text.endswith("\n") or not text else "\n")


def _load(args: argparse.Namespace) -> tuple[Config, list[Incident]]:
    config = load_config(args.config)
    incidents = load_state(
        config.state_file,
        config.languages(),
        config.state_file_max_bytes,
        check=_fit_check(config),  # a post over its thread cap: refused, as the daemon does
    )
    return config, incidents


_FIT_CHECKS: dict[int, tuple[Config, Check]] = {}


def _fit_check(config: Config) -> Check:
    """The daemon's thread-cap check (``app.fit_check``), built once per config."""
    from .app import fit_check

    known = _FIT_CHECKS.get(id(config))
    if known is None or known[0] is not config:
        known = _FIT_CHECKS[id(config)] = (config, fit_check(config))
    return known[1]


def _refuse_too_long(config: Config, incident: Incident, origin: str) -> None:
    """``draft``: an update whose posts exceed a thread cap is refused before anything."""
    from .statefile import Problem

    problems = _fit_check(config)(incident)
    if problems:
        raise StateFileError(
            Problem(origin, None, incident.id, field, message) for field, message in problems
        )


def _channel_infos(config: Config) -> list[ChannelInfo]:
    return [c.info() for c in config.channels.values()]


# -- commands --------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    from .app import renderer_for

    problems: list[str] = []
    config = load_config(args.config)
    try:
        incidents = load_state(
            config.state_file,
            config.languages(),
            config.state_file_max_bytes,
            check=_fit_check(config),
        )
    except StateFileError as e:
        problems += [str(p) for p in e.problems]
        incidents = []
    renderer = renderer_for(config)
    problems += [str(p) for p in renderer.check(_channel_infos(config))]
    problems += [str(p) for p in setup_problems(config, dry_run=args.dry_run)]
    warnings = [str(a) for a in advice(incidents, config, _now())]
    summary = {
        "ok": not problems,
        "config": str(config.path),
        "state_file": str(config.state_file),
        "incidents": len(incidents),
        "channels": sorted(config.channels),
        "problems": problems,
        "warnings": warnings,
    }
    if problems:
        text = "\n".join(problems) + f"\n{len(problems)} problem(s) found"
    else:
        text = (
            f"ok: {args.config}, {len(incidents)} incident(s) in {config.state_file}, "
            f"{len(config.channels)} channel(s), templates render in "
            f"{', '.join(sorted(config.languages()))}"
        )
    if args.format == "text":
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
    if problems and args.format == "text":
        print(text, file=sys.stderr)
    else:
        _emit(args, summary, text)
    return EXIT_BAD_INPUT if problems else EXIT_OK


def _text_posts(shown: list[Shown], tz: tzinfo | None) -> str:
    """Each post's channel, parts and lengths; with ``tz``, when it goes, in that zone."""
    blocks = []
    for s in shown:
        d = s.to_json()
        when = f"{s.at.astimezone(tz).isoformat(timespec='seconds')}  " if tz else ""
        head = (
            f"{when}{d['channel']} ({d['platform']}, {d['language']}) · "
            f"{d['incident_id']} · {d['kind']}"
        )
        parts = d["parts"]
        lines = [head]
        for i, part in enumerate(parts, start=1):
            label = f"[{i}/{len(parts)}] " if len(parts) > 1 else ""
            lines.append(
                f"  {label}{part['length']}/{part['limit']} characters"
                + (" · reply in thread" if i > 1 or s.recorded.post.sequence > 1 else "")
            )
            lines += ["  │ " + line for line in part["text"].splitlines()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "nothing to post\n")


def _no_incident(
    incident_id: str, incidents: Sequence[Incident], path: Path, drafting: bool = False
) -> str:
    """``no incident 'x' in state.toml (did you mean 'y'?)``, or the ids there are."""
    import difflib

    ids = sorted(i.id for i in incidents)
    close = difflib.get_close_matches(incident_id, ids, n=1)
    if close:
        return f"no incident {incident_id!r} in {path} (did you mean {close[0]!r}?)"
    listed = (
        f"ids there: {', '.join(ids[:10])}{', …' if len(ids) > 10 else ''}" if ids else "none there"
    )
    new = f"; draft --new {incident_id} … opens it" if drafting else ""
    return f"no incident {incident_id!r} in {path} ({listed}{new})"


def cmd_preview(args: argparse.Namespace) -> int:
    from .rehearsal import preview

    config, incidents = _load(args)
    if args.incident_id and args.incident_id not in {i.id for i in incidents}:
        raise UsageError(_no_incident(args.incident_id, incidents, config.state_file))
    shown = preview(config, incidents, args.at or _now(), args.incident_id)
    data = [{k: v for k, v in s.to_json().items() if k != "text"} for s in shown]
    _emit(args, data, _text_posts(shown, config.timezone))
    return EXIT_OK


def cmd_draft(args: argparse.Namespace) -> int:
    from .rehearsal import draft, preview
    from .statefile import append_incident, apply_changes, parse_incident

    config, incidents = _load(args)
    now = args.at or _now()
    changes = _draft_changes(args, config, now)
    known = {i.id for i in incidents}
    if args.new:
        if args.incident_id in known:
            raise UsageError(f"incident {args.incident_id!r} already exists in {config.state_file}")
        started = now.astimezone(config.timezone).replace(microsecond=0)
        data = opened({ID_FIELD: args.incident_id, **changes}, started)
        origin = f"draft --new {args.incident_id}"
        incident = parse_incident(data, origin=origin, languages=config.languages())
        _refuse_too_long(config, incident, origin)
        shown = preview(config, [*incidents, incident], now, incident.id)
        if args.write:
            append_incident(config.state_file, data, languages=config.languages())
    else:
        if not changes:
            options = [option for _, option, _ in _DRAFT_FIELDS]
            raise UsageError(f"nothing to draft: give {', '.join(options[:-1])} or {options[-1]}")
        if args.incident_id not in known:
            raise UsageError(_no_incident(args.incident_id, incidents, config.state_file, True))
        _validate_changes(config, incidents, args.incident_id, changes)
        shown = draft(config, incidents, args.incident_id, changes, now)
        if args.write:
            apply_changes(
                config.state_file, args.incident_id, changes, languages=config.languages()
            )
    data_out = {"posts": [s.to_json() for s in shown], "written": bool(args.write)}
    text = _text_posts(shown, None)
    if args.write:
        text += f"written to {config.state_file}\n"
    _emit(args, data_out, text)
    return EXIT_OK


def _draft_changes(args: argparse.Namespace, config: Config, now: datetime) -> dict[str, Any]:
    """The fields the command line sets, read as the state file would hold them."""
    from .timeinput import parse_time

    languages = sorted(config.languages())
    changes: dict[str, Any] = {}
    for name, option, kind in _DRAFT_FIELDS:
        value = getattr(args, name)
        if value is None:
            continue
        if kind is FieldKind.LOCALIZED:
            changes[name] = _localized(option, value, languages, args.lang, args.all_languages)
        elif kind is FieldKind.DATETIME:
            try:
                changes[name] = parse_time(
                    value, now, config.timezone, future=INCIDENT_FIELDS[name].to_come
                )
            except ValueError as e:
                raise UsageError(f"{option}: {e}") from None
        elif kind is FieldKind.STRINGS:
            changes[name] = _comma_list(value)
        elif kind is FieldKind.NAMES:
            changes[name] = _names(option, value, languages)
        elif kind is FieldKind.BOOL:
            if value not in ("true", "false"):
                raise UsageError(f"{option}: expected true or false, got {value!r}")
            changes[name] = value == "true"
        else:
            changes[name] = value
    return changes


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _refuse_other_languages(option: str, plain: list[str], languages: list[str]) -> None:
    """``--message de=…`` when no channel posts in German: a mistake, never a text."""
    for item in plain:
        if m := re.fullmatch(r"([a-z]{2,3}(?:[-_][A-Za-z]{2,4})?)=.*", item, re.DOTALL):
            listed = ", ".join(languages)
            raise UsageError(
                f"{option}: {m[1]!r} is not a language the channels post in ({listed})"
            )


def _names(option: str, given: list[str], languages: list[str]) -> Any:
    """``--services "Dedicated servers,VPS"`` (every language) or, once per language,
    ``--services "en=Dedicated servers" --services "fr=Serveurs dédiés"``."""
    by_language: dict[str, list[str]] = {}
    plain: list[str] = []
    for item in given:
        code, sep, names = item.partition("=")
        if sep and code in languages:
            if code in by_language:
                raise UsageError(f"{option}: {code}= given twice")
            by_language[code] = _comma_list(names)
        else:
            plain.append(item)
    _refuse_other_languages(option, plain, languages)
    if plain and by_language:
        raise UsageError(f"{option}: give every list as LANG=A,B ({', '.join(languages)})")
    if len(plain) > 1:
        raise UsageError(f"{option} given {len(plain)} times without LANG=")
    return by_language or _comma_list(plain[0])


def _localized(
    option: str, given: list[str], languages: list[str], lang: str | None, everywhere: bool
) -> str | dict[str, str]:
    """``--message en=… --message fr=…`` as a text by language; a plain text only where it
    cannot land on the wrong channel (one language, ``--lang`` or ``--all-languages``)."""
    texts: dict[str, str] = {}
    plain: list[str] = []
    for item in given:
        code, sep, text = item.partition("=")
        if sep and code in languages:
            if code in texts:
                raise UsageError(f"{option}: {code}= given twice")
            texts[code] = text
        else:
            plain.append(item)
    _refuse_other_languages(option, plain, languages)
    if plain and texts:
        raise UsageError(f"{option}: give every text as LANG=TEXT ({', '.join(languages)})")
    if len(plain) > 1:
        raise UsageError(f"{option} given {len(plain)} times without LANG=")
    if texts:
        return texts
    if lang:
        return {lang: plain[0]}
    if everywhere or len(languages) <= 1:
        return plain[0]
    examples = " ".join(f"{option} {code}=…" for code in languages)
    raise UsageError(
        f"{option}: the channels post in {', '.join(languages)}: give one text per language "
        f"({examples}), or add --all-languages to post this one text in every language"
    )


def _validate_changes(
    config: Config, incidents: list[Incident], incident_id: str, changes: dict[str, Any]
) -> None:
    """Changes must make a valid incident, checked as the state file would be."""
    from .statefile import parse_incident

    incident = next(i for i in incidents if i.id == incident_id)
    changed = parse_incident(
        {},
        origin=f"draft {incident_id}",
        languages=config.languages(),
        current=incident.with_changes(changes),
    )
    _refuse_too_long(config, changed, f"draft {incident_id}")


def cmd_simulate(args: argparse.Namespace) -> int:
    from .rehearsal import simulate

    config = load_config(args.config)
    if args.timeline:
        steps = load_timeline(args.timeline, config.languages())
        start = args.start or (steps[0][0] if steps else _now())
    else:
        start = args.start or _now()
        steps = [
            (start, load_state(config.state_file, config.languages(), config.state_file_max_bytes))
        ]
    end = start + timedelta(hours=args.hours)
    shown = simulate(config, steps, start, end)
    # Each post as preview shows it: where it goes and its exact parts, beside its text.
    data = [s.to_json() for s in shown]
    text = _text_posts(shown, config.timezone)
    tz = config.timezone
    first, last = (t.astimezone(tz).isoformat(timespec="seconds") for t in (start, end))
    _emit(args, data, text + f"{len(shown)} post(s) from {first} to {last}\n")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from .app import service

    service(args.config, dry_run=args.dry_run).daemon.run_forever()
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from .app import open_store, store_exists, store_location
    from .status import read_status

    config = load_config(args.config)
    path = store_location(config, args.dry_run)
    if not store_exists(config, args.dry_run):
        hint = (
            "nothing recorded yet: no daemon has run with this config"
            if args.dry_run
            else "nothing recorded yet: no daemon has run with this config; a dry run "
            "(broadcaster run --dry-run) keeps its own store: see it with "
            "broadcaster status --dry-run"
        )
        _emit(
            args,
            {"store": str(path), "incidents": [], "channels": {}, "hint": hint},
            f"{path}: {hint}\n",
        )
        return EXIT_OK
    tz = config.timezone

    def local(at: datetime | None) -> str | None:
        """A time as people read it: in the configured timezone, like the posts."""
        return at.astimezone(tz).isoformat() if at is not None else None

    store = open_store(config, args.dry_run)
    try:
        status = read_status(store, config.channels, _now(), detailed=True)
        leases = store.leases()
        instances = store.instances()
    finally:
        store.close()
    channels: dict[str, Any] = {}
    for name in sorted(status.channels):
        c = status.channels[name]
        channels[name] = {
            "healthy": c.state.healthy,
            "never_delivered": c.never_delivered,
            "paused_until": local(c.state.paused_until),
            "last_error": c.state.last_error,
            "replies_refused": c.state.replies_refused,
            "budget_left": c.budget_left,
            **{state.value: c.count(state) for state in PostState},
        }
    incidents = []
    for inc in status.incidents:
        i = inc.snapshot.incident
        entry: dict[str, Any] = {
            "id": i.id,
            "status": i.status,
            "revision": inc.snapshot.revision,
            "threads": {},
        }
        if not i.is_final:  # what the daemon cannot post: over a thread cap (max_parts)
            entry["unplannable"] = [f"{f}: {m}" for f, m in _fit_check(config)(i)]
        for channel, t in inc.threads.items():
            entry["threads"][channel] = {
                "link": t.link,
                "posts": t.thread.post_count,
                "last_kind": t.thread.last_kind.value,
                "closed": t.thread.closed,
                "next_due_at": local(t.next_due_at),
            }
        incidents.append(entry)
    lines = [f"store: {path}", "", "channels:"]
    for name, ch in channels.items():
        state = "healthy" if ch["healthy"] else "UNHEALTHY"
        if ch["never_delivered"]:
            state += ", NEVER DELIVERED (no post got through yet)"
        paused = f", paused until {ch['paused_until']}" if ch["paused_until"] else ""
        budget = f" · budget left {ch['budget_left']}" if ch["budget_left"] is not None else ""
        lines.append(
            f"  {name}: {state}{paused}{budget} · sent {ch['sent']} · pending "
            f"{ch['pending'] + ch['sending']} · failed {ch['failed']}"
            + (f" · last error: {ch['last_error']}" if ch["last_error"] else "")
        )
    if instances:
        lines += ["", "instances:"]
        lines += [f"  {name}: alive until {local(at)}" for name, at in instances.items()]
    if leases:
        lines += ["", "delivery (lease holders):"]
        lines += [
            f"  {name}: {lease.holder} until {local(lease.expires_at)} (token {lease.token})"
            for name, lease in sorted(leases.items())
        ]
    lines += ["", "incidents:"]
    for entry in incidents:
        lines.append(f"  {entry['id']} ({entry['status']}, revision {entry['revision']})")
        lines += [f"    CANNOT BE POSTED: {why}" for why in entry.get("unplannable", ())]
        for channel, t in entry["threads"].items():
            nxt = "closed" if t["closed"] else f"next update due {t['next_due_at']}"
            link = f" · {t['link']}" if t["link"] else ""
            lines.append(f"    {channel}: {t['posts']} post(s), last {t['last_kind']}, {nxt}{link}")
    posts = status.undelivered
    if posts:
        lines += ["", "undelivered:"]
        for p in posts:
            lines.append(
                f"  {p.key} [{p.state.value}]" + (f" {p.last_error}" if p.last_error else "")
            )
    data = {
        "store": str(path),
        "instances": {name: local(at) for name, at in instances.items()},
        "leases": {
            name: {
                "holder": lease.holder,
                "until": local(lease.expires_at),
                "token": lease.token,
            }
            for name, lease in sorted(leases.items())
        },
        "channels": channels,
        "incidents": incidents,
        "undelivered": [
            {"key": p.key, "state": p.state.value, "error": p.last_error} for p in posts
        ],
    }
    _emit(args, data, "\n".join(lines) + "\n")
    return EXIT_OK


def cmd_console(args: argparse.Namespace) -> int:
    from .web.console import create_app
    from .web.server import listen_socket, serve

    config = load_config(args.config)
    token = config.console.require_token(config.path)
    listen = args.listen or config.console.listen
    if (wrong := listen_problem(listen)) is not None:
        raise UsageError(f"--listen: {wrong}")
    host, _, port = listen.rpartition(":")
    app = create_app(config, token)
    try:
        sock = listen_socket(host.strip("[]"), int(port))
    except OSError as e:  # a port in use: one `error:` line naming it, before any banner
        raise OSError(e.errno, f"cannot listen on {listen}: {e.strerror or e}") from None
    # uvicorn stops cleanly on Ctrl-C, then raises it again: that is the normal end.
    with contextlib.suppress(KeyboardInterrupt):
        print(f"console on http://{listen}/ (state file {config.state_file})", file=sys.stderr)
        serve(app, sock)
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    """Bring the store's schema up to date now (every start does it too, under a lock)."""
    from .app import open_store, store_location

    config = load_config(args.config)
    store = open_store(config, dry_run=False)
    try:
        version = store.schema_version()
    finally:
        store.close()
    where = store_location(config, dry_run=False)
    _emit(args, {"store": where, "schema_version": version}, f"{where}: schema version {version}\n")
    return EXIT_OK


def cmd_sandbox(args: argparse.Namespace) -> int:
    from .sandbox import run_sandboxes

    run_sandboxes(args.x_port, args.mastodon_port)
    return EXIT_OK


COMMANDS = {
    "check": cmd_check,
    "preview": cmd_preview,
    "draft": cmd_draft,
    "simulate": cmd_simulate,
    "run": cmd_run,
    "status": cmd_status,
    "migrate": cmd_migrate,
    "sandbox": cmd_sandbox,
    "console": cmd_console,
}
