"""From a planned post to its exact text, through the Jinja2 templates in ``templates_dir``.

Templates are looked up as ``<lang>/<platform>/<kind>.j2`` then ``<lang>/<kind>.j2`` and run
in Jinja2's sandbox: whoever edits them cannot reach Python, and a mistake (a typo in a
variable, a syntax error) is a ``TemplateError`` naming the file and line, found by
``check()`` at start and on reload rather than in the middle of an outage.

Incident text (title, message, cause...) is data handed to the template as plain strings,
never compiled: ops can write ``{{`` in a message and it is posted as written.

The context and filters are documented in ``message_templates/README.md``.
"""

from __future__ import annotations

import functools
import re
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, make_dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import FileSystemLoader, StrictUndefined, Template, pass_context
from jinja2.exceptions import (
    SecurityError,
    TemplateNotFound,
    TemplateRuntimeError,
    TemplateSyntaxError,
    UndefinedError,
)
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from . import i18n
from .clock import utcnow
from .model import (
    INCIDENT_FIELDS,
    ChannelInfo,
    FieldKind,
    Incident,
    Localized,
    PlannedPost,
    PostKind,
    Snapshot,
    names_in,
)
from .planner import window_passed
from .problems import Problem, ProblemsError
from .samples import samples_for

__all__ = ["Rendered", "Renderer", "TemplateError", "TemplateProblem", "samples_for", "tidy"]

# Languages and platforms become path components: no separators, no "..".
_PATH_PIECE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_MANY_NEWLINES = re.compile(r"\n{3,}")
# Where the ``head`` block starts and ends in a rendered text: private-use characters, taken
# out of the text once found (and out of ops' text, should it ever hold one).
_HEAD_START = "\ue000"
_HEAD_END = "\ue001"
HEAD_BLOCK = "head"


@dataclass(frozen=True)
class Rendered:
    """A rendered post: ``text``, whose first ``head`` characters are the template's
    ``{% block head %}``, the lines that must stay whole in the first part (0: no head)."""

    text: str
    head: int = 0


@dataclass(frozen=True)
class TemplateProblem(Problem):
    """One thing wrong with a template, at a line of its file."""

    path: str
    line: int | None
    message: str


class TemplateError(ProblemsError[TemplateProblem]):
    """A template that cannot be found, compiled or rendered. ``str()`` reads like a compiler
    error: ``message_templates/en/opened.j2:4: 'incident.titel' is undefined``."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        super().__init__([TemplateProblem(path, line, message)])


def _view_names() -> list[str]:
    names: list[str] = []
    for name, rule in INCIDENT_FIELDS.items():
        if rule.in_view:
            names.append(name)
            if rule.labelled:
                names.append(f"{name}_label")
    return [*names, "previous_status", "previous_status_label", "updated_at"]


# The incident as templates see it: texts in the channel's language, times local. One
# attribute per declared incident field (``model.Incident``), ``<field>_label`` for a
# labelled one, and ``previous_status`` (with its label). Read-only. Generated from the
# schema as a slotted dataclass, not a ``__getattr__`` over a dict: templates read these
# attributes on every post, and the sandbox makes a missed lookup expensive.
IncidentView = make_dataclass(
    "IncidentView", [(name, Any) for name in _view_names()], frozen=True, slots=True
)


@dataclass(frozen=True)
class PostView:
    kind: str
    sequence: int  # 1 = the first post of the thread
    is_reply: bool


# The fields templates see, in declaration order: looked up once, not at every post.
_VIEW_FIELDS = tuple((name, rule) for name, rule in INCIDENT_FIELDS.items() if rule.in_view)

# Fields shown through a translated label; i18n has a ``<field>_label`` function for each.
_LABELLED = tuple(name for name, rule in INCIDENT_FIELDS.items() if rule.labelled)


def _label(name: str, value: str, *, language: str) -> str:
    label: Callable[[str, str], str] = getattr(i18n, f"{name}_label")
    return label(value, language)


def _refuse_none(value: Any) -> Any:
    # "None" in a public post is a template bug (an optional field printed unguarded);
    # failing makes check() find it before customers do.
    if value is None:
        raise TemplateRuntimeError(
            "printed None: this field is optional, guard it with {% if ... %}"
        )
    return value


def _text(value: Localized | None, language: str) -> str | None:
    """The text for ``language``; failing that English, failing that any text at all.

    The state file is validated per language upstream; this fallback only keeps a thread
    alive (rather than silent) if a translation is missing anyway.
    """
    if value is None:
        return None
    text = value.get(language)
    if text is None:
        text = value.get(i18n.base_language(language)) or value.get(i18n.DEFAULT_LANGUAGE)
    if text is None and value.values:
        text = next(iter(value.values.values()))
    return text or None


def between(start: datetime, end: datetime) -> timedelta:
    """Real time elapsed from ``start`` to ``end``.

    Subtracting two datetimes of the same zone in Python gives wall-clock time, an hour off
    across a DST change; going through UTC does not.
    """
    return end.astimezone(UTC) - start.astimezone(UTC)


def tidy(text: str) -> str:
    """Trailing spaces off each line, at most one blank line in a row, no outer blank lines."""
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _MANY_NEWLINES.sub("\n\n", text).strip()


class Renderer:
    def __init__(self, templates_dir: Path, timezone: ZoneInfo) -> None:
        self.templates_dir = Path(templates_dir).resolve()
        self.timezone = timezone
        self._envs: dict[str, SandboxedEnvironment] = {}
        self._paths: dict[tuple[str, str, PostKind], Path] = {}
        # (language, platform, kind) -> its compiled template: Jinja2's own cache is keyed
        # by name, and the name by a path computation, on every post.
        self._templates: dict[tuple[str, str, PostKind], tuple[Path, Template]] = {}

    def reload(self) -> None:
        """Forget compiled templates, so edited files are read again (SIGHUP)."""
        self._envs = {}
        self._paths = {}
        self._templates = {}

    # -- lookup ------------------------------------------------------------------------------

    def template_path(self, language: str, platform: str, kind: PostKind) -> Path:
        # Two stats per post add up at 10,000 incidents; the answer only changes on reload.
        key = (language, platform, PostKind(kind))
        path = self._paths.get(key)
        if path is None:
            path = self._paths[key] = self._find(language, platform, PostKind(kind))
        return path

    def _find(self, language: str, platform: str, kind: PostKind) -> Path:
        for label, piece in (("language", language), ("platform", platform)):
            if not _PATH_PIECE.fullmatch(piece):
                raise TemplateError(
                    self._display(self.templates_dir), None, f"invalid {label} {piece!r}"
                )
        candidates = (
            self.templates_dir / language / platform / f"{kind.value}.j2",
            self.templates_dir / language / f"{kind.value}.j2",
        )
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise TemplateError(
            self._display(candidates[1]),
            None,
            f"no template (looked for {self._display(candidates[0])} and "
            f"{self._display(candidates[1])})",
        )

    # -- rendering ---------------------------------------------------------------------------

    def render(
        self, snapshot: Snapshot, post: PlannedPost, channel: ChannelInfo, now: datetime
    ) -> str:
        return self.render_post(snapshot, post, channel, now).text

    def render_post(
        self, snapshot: Snapshot, post: PlannedPost, channel: ChannelInfo, now: datetime
    ) -> Rendered:
        """The post's text and where its head (the lines for the first part) ends."""
        key = (channel.language, channel.platform, post.kind)
        found = self._templates.get(key)
        if found is None:
            path = self.template_path(*key)
            found = self._templates[key] = (path, self._load(channel.language, path))
        path, template = found
        context = self.context(snapshot, post, channel, now)
        return self._render_parts(template, path, context, channel.language)

    def context(
        self, snapshot: Snapshot, post: PlannedPost, channel: ChannelInfo, now: datetime
    ) -> dict[str, Any]:
        """The variables a template sees (documented in message_templates/README.md)."""
        incident = snapshot.incident
        language = channel.language
        local_now = self._local(now)
        started = self._local(incident.started_at)
        ended = self._local(incident.resolved_at) if incident.is_final else None
        elapsed = max(between(started, ended or local_now), timedelta(0))
        previous = snapshot.previous_status
        view = IncidentView(
            **self._fields_view(incident, channel),
            previous_status=previous,
            # When ops last changed what the incident says (status, message, cause...).
            updated_at=self._local(snapshot.changed_at),
            previous_status_label=i18n.status_label(previous, language) if previous else None,
        )
        promised = None if post.kind.is_final else post.next_update_at
        return {
            "incident": view,
            "post": PostView(post.kind.value, post.sequence, post.sequence > 1),
            "now": local_now,
            "elapsed": elapsed,
            "next_update": self._local(promised),
            # A maintenance still "scheduled" once its window ended: the last post until ops act.
            "window_passed": window_passed(snapshot, now),
            "channel": channel,
            "language": language,
            "timezone": self.timezone.key,
        }

    def _fields_view(self, incident: Incident, channel: ChannelInfo) -> dict[str, Any]:
        """Each declared field as templates see it, by its kind."""
        language = channel.language
        view: dict[str, Any] = {}
        for name, rule in _VIEW_FIELDS:
            value = getattr(incident, name)
            kind = rule.kind
            if kind is FieldKind.LOCALIZED:
                value = _text(value, language)
                if value is None and rule.always_required:
                    value = incident.id  # never an empty required text (e.g. a title)
            elif kind is FieldKind.KIND:
                value = str(value.value)
            elif kind is FieldKind.STRINGS:
                value = list(value)
            elif kind is FieldKind.NAMES:
                value = list(names_in(value, language))
            elif kind is FieldKind.DATETIME:
                value = self._local(value)
            elif kind is FieldKind.URL:
                shown = channel.include_url or not rule.status_link
                value = (value or None) if shown else None
            view[name] = value
            if rule.labelled:
                view[f"{name}_label"] = _label(name, value, language=language)
        return view

    def _local(self, dt: datetime | None) -> Any:
        if dt is None:
            return None
        return (dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt).astimezone(self.timezone)

    def _render_parts(
        self, template: Template, path: Path, context: dict[str, Any], language: str
    ) -> Rendered:
        try:
            raw = _render_marking_head(template, context)
        except TemplateSyntaxError as e:  # in a template imported or included at run time
            raise self._syntax_error(e, path) from e
        except Exception as e:
            raise self._runtime_error(e, path) from e
        start = raw.find(_HEAD_START)
        end = raw.find(_HEAD_END, start + 1) if start >= 0 else -1
        if start < 0 or end < 0:
            return Rendered(self._finish(raw, language))
        head = self._finish(raw[start + 1 : end], language)
        body = self._finish(raw[:start] + raw[end + 1 :], language)
        if not head:
            return Rendered(body)
        if not body:
            return Rendered(head, len(head))
        return Rendered(f"{head}\n{body}", len(head))

    @staticmethod
    def _finish(text: str, language: str) -> str:
        text = text.replace(_HEAD_START, "").replace(_HEAD_END, "")
        return tidy(i18n.typography(text, language))

    # -- environments and errors -------------------------------------------------------------

    def _load(self, language: str, path: Path) -> Template:
        name = path.relative_to(self.templates_dir).as_posix()
        try:
            return self._env(language).get_template(name)
        except TemplateSyntaxError as e:
            raise self._syntax_error(e, path) from e
        except TemplateNotFound as e:
            raise TemplateError(self._display(path), None, f"template not found: {e}") from e
        except (OSError, UnicodeDecodeError) as e:
            raise TemplateError(self._display(path), None, f"cannot read: {e}") from e

    def _env(self, language: str) -> SandboxedEnvironment:
        env = self._envs.get(language)
        if env is None:
            env = self._envs[language] = self._make_env(language)
        return env

    def _make_env(self, language: str) -> SandboxedEnvironment:
        env = SandboxedEnvironment(
            loader=FileSystemLoader(str(self.templates_dir)),
            undefined=StrictUndefined,
            autoescape=False,  # plain text for social networks, not HTML
            trim_blocks=True,
            lstrip_blocks=True,
            finalize=_refuse_none,
            # Edits take effect on reload() (SIGHUP), after check() has vetted them, never
            # half-saved in the middle of an incident.
            auto_reload=False,
        )
        local = self._local
        tz = self.timezone

        def now_of(context: Context) -> datetime:
            value = context.get("now")
            return value if isinstance(value, datetime) else utcnow().astimezone(tz)

        def relative(fn: Callable[[datetime, datetime, str], str]) -> Callable[..., str]:
            # Filters whose wording depends on whether a time is today need the render's now.
            @pass_context
            def apply(context: Context, dt: datetime) -> str:
                return fn(local(dt), now_of(context), language)

            return apply

        @pass_context
        def window(context: Context, start: datetime, end: datetime | None = None) -> str:
            return i18n.window(local(start), local(end), now_of(context), language)

        @pass_context
        def is_today(context: Context, dt: datetime) -> bool:
            return i18n.is_same_day(local(dt), now_of(context))

        env.filters.update(
            clock=lambda dt: i18n.clock(local(dt), language),
            when=relative(i18n.when),
            at=relative(i18n.at),
            since=relative(i18n.since),
            until=relative(i18n.until),
            window=window,
            duration=lambda delta: i18n.duration(delta, language),
            rough=lambda delta: i18n.rough(delta, language),
            ago=relative(i18n.ago),
            zone=lambda dt: i18n.zone_words(local(dt), language),
            join_and=lambda items: i18n.join_and(items, language),
            sentence=i18n.sentence,
            after_colon=lambda text: i18n.after_colon(text, language),
            nbsp=i18n.french_typography,
        )
        # A ``<field>_label`` filter per labelled field (status_label, severity_label).
        for name in _LABELLED:
            env.filters[f"{name}_label"] = functools.partial(_label, name, language=language)
        env.tests["today"] = is_today
        env.globals["between"] = between
        return env

    def _display(self, path: Path | str) -> str:
        """Paths in errors: relative to the templates directory's parent, as ops see them."""
        p = Path(path)
        try:
            return p.resolve().relative_to(self.templates_dir.parent).as_posix()
        except (ValueError, OSError):
            return str(p)

    def _is_template_file(self, filename: str) -> bool:
        try:
            return Path(filename).resolve().is_relative_to(self.templates_dir)
        except (ValueError, OSError):
            return False

    def _syntax_error(self, e: TemplateSyntaxError, path: Path) -> TemplateError:
        return TemplateError(
            self._display(e.filename or path), e.lineno, f"syntax error: {e.message}"
        )

    def _runtime_error(self, e: Exception, path: Path) -> TemplateError:
        # Jinja2 rewrites tracebacks so that template frames carry the template's file name
        # and line: the innermost such frame is where the template went wrong.
        for frame in reversed(traceback.extract_tb(e.__traceback__)):
            if self._is_template_file(frame.filename):
                return TemplateError(self._display(frame.filename), frame.lineno, _describe(e))
        return TemplateError(self._display(path), None, _describe(e))

    # -- check -------------------------------------------------------------------------------

    def check(self, channels: Iterable[ChannelInfo]) -> list[TemplateError]:
        """Every problem of every template the channels can use, found by rendering each
        against built-in sample incidents. Empty when all is well."""
        problems: list[TemplateError] = []
        seen: set[tuple[str, int | None, str]] = set()

        def report(error: TemplateError, sample: str | None = None, fault: str = "") -> None:
            # One report per fault, not one per sample or channel that trips over it.
            key = (error.path, error.line, fault or error.message)
            if key in seen:
                return
            seen.add(key)
            message = error.message if sample is None else f"{error.message} [sample: {sample}]"
            problems.append(TemplateError(error.path, error.line, message))

        done: set[tuple[str, str]] = set()
        for channel in channels:
            if (channel.language, channel.platform) in done:
                continue
            done.add((channel.language, channel.platform))
            for kind in PostKind:
                try:
                    path = self.template_path(channel.language, channel.platform, kind)
                    template = self._load(channel.language, path)
                except TemplateError as e:
                    report(e)
                    continue
                for sample in samples_for(kind):
                    snapshot, post = sample.planned(kind, channel.name)
                    context = self.context(snapshot, post, channel, sample.now)
                    try:
                        rendered = self._render_parts(template, path, context, channel.language)
                    except TemplateError as e:
                        report(e, sample.label)
                        continue
                    text = rendered.text
                    if not text:
                        report(
                            TemplateError(self._display(path), None, "renders empty"), sample.label
                        )
                        continue
                    promised = context["next_update"]
                    if promised is not None:
                        expected = i18n.clock(promised, channel.language)
                        if expected not in text:
                            report(
                                TemplateError(
                                    self._display(path),
                                    None,
                                    f"a {kind.value} post must say when the next update comes "
                                    f"({expected!r}, e.g. {{{{ next_update|when }}}}), "
                                    f"but this text does not: {text!r}",
                                ),
                                sample.label,
                                "broken promise",
                            )
                        elif rendered.head and expected not in text[: rendered.head]:
                            report(
                                TemplateError(
                                    self._display(path),
                                    None,
                                    f"the next update time ({expected!r}) must be in the "
                                    f"{{% block {HEAD_BLOCK} %}}, which stays in the first "
                                    f"part, but this head does not say it: "
                                    f"{text[: rendered.head]!r}",
                                ),
                                sample.label,
                                "promise outside the head",
                            )
        return problems


def _render_marking_head(template: Template, context: dict[str, Any]) -> str:
    """``template.render(context)``, with the ``head`` block's output between markers."""
    ctx = template.new_context(context)
    blocks = ctx.blocks.get(HEAD_BLOCK)
    if blocks:
        inner = blocks[0]

        def marked(block_context: Context) -> Iterator[str]:
            yield _HEAD_START
            yield from inner(block_context)
            yield _HEAD_END

        blocks[0] = marked
    try:
        return template.environment.concat(template.root_render_func(ctx))
    except Exception:
        template.environment.handle_exception()
        raise  # handle_exception always raises; this keeps type checkers informed


def _describe(e: Exception) -> str:
    if isinstance(e, SecurityError):
        return f"not allowed in templates: {e}"
    if isinstance(e, UndefinedError):
        return f"{e} (the template context is listed in message_templates/README.md)"
    if isinstance(e, TemplateRuntimeError):
        return str(e)
    return f"{type(e).__name__}: {e}"
