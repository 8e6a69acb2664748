"""The console's routes: login, incident list, edit/new with live preview, publish."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ...clock import utcnow
from ...config import Config, Secret
from ...model import ID_FIELD, KIND_FIELD, IncidentKind
from ..security import SecurityHeaders
from .forms import FIELDS, describe, new_values, values_of
from .sessions import COOKIE, LoginLimiter, Session, Sessions
from .workspace import Outcome, Workspace

HERE = Path(__file__).parent
MAX_NAME = 80


def create_app(
    config: Config,
    token: Secret,
    *,
    limiter: LoginLimiter | None = None,
) -> Any:
    """The console as an ASGI app (security headers included)."""
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    sessions = Sessions()
    limiter = limiter or LoginLimiter()
    work = Workspace(config)
    tz = config.timezone

    def when(value: Any) -> str:
        return value.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") if value else ""

    env.filters["when"] = when

    def page(
        request: Request, session: Session, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        html = env.get_template(template).render(
            session=session, csrf=session.csrf, config=config, **context
        )
        response = HTMLResponse(html, status_code=status)
        _set_cookie(response, session)
        return response

    def current(request: Request) -> Session:
        return sessions.get(request.cookies.get(COOKIE)) or sessions.new()

    Handler = Callable[[Request, Session], Awaitable[Response]]

    def logged_in(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            session = sessions.get(request.cookies.get(COOKIE))
            if session is None or not session.authenticated:
                if request.method == "GET" and "application/json" not in request.headers.get(
                    "accept", ""
                ):
                    return RedirectResponse("/login", status_code=303)
                return JSONResponse({"error": "not logged in"}, status_code=401)
            if request.method == "POST":
                given = request.headers.get("x-csrf-token")
                if given is None:
                    form = await request.form()
                    value = form.get("csrf")
                    given = value if isinstance(value, str) else None
                if not session.csrf_ok(given):
                    return Response("refused: missing or wrong CSRF token", status_code=403)
            return await handler(request, session)

        return wrapped

    # -- login ---------------------------------------------------------------------------

    async def login_page(request: Request) -> Response:
        return page(request, current(request), "login.html", error=None, name="")

    async def login(request: Request) -> Response:
        session = current(request)
        form = await request.form()
        client = request.client.host if request.client else "?"
        wait = limiter.retry_after(client)
        if wait:
            response = page(
                request,
                session,
                "login.html",
                status=429,
                error=f"too many attempts: try again in {int(wait) + 1} s",
                name="",
            )
            response.headers["retry-after"] = str(int(wait) + 1)
            return response
        csrf = form.get("csrf")
        if not session.csrf_ok(csrf if isinstance(csrf, str) else None):
            return Response("refused: missing or wrong CSRF token", status_code=403)
        given = form.get("token")
        name = str(form.get("name") or "").strip()[:MAX_NAME]
        good = isinstance(given, str) and hmac.compare_digest(
            given.encode(), token.reveal().encode()
        )
        if not good or not name:
            limiter.failed(client)
            error = "wrong token" if not good else "your name is needed for the audit log"
            return page(request, session, "login.html", status=401, error=error, name=name)
        limiter.succeeded(client)
        sessions.drop(session)  # a new id once logged in: no session fixation
        fresh = sessions.new(name)
        redirect = RedirectResponse("/", status_code=303)
        _set_cookie(redirect, fresh)
        return redirect

    async def logout(request: Request, session: Session) -> Response:
        sessions.drop(session)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, httponly=True, samesite="strict")
        return response

    # -- pages ---------------------------------------------------------------------------

    async def index(request: Request, session: Session) -> Response:
        view = work.state()
        summary = work.store_summary(utcnow())
        return page(request, session, "list.html", view=view, summary=summary, now=utcnow())

    def editor(
        request: Request,
        session: Session,
        incident_id: str | None,
        values: dict[str, str],
        base_hash: str,
        outcome: Outcome | None = None,
        status: int = 200,
    ) -> HTMLResponse:
        posted = work.posted(incident_id) if incident_id else []
        summary = work.store_summary(utcnow()).get(incident_id or "", {})
        return page(
            request,
            session,
            "edit.html",
            status=status,
            incident_id=incident_id,
            fields=FIELDS,
            languages=work.languages,
            values=values,
            base_hash=base_hash,
            outcome=outcome,
            posted=posted,
            saved=describe(outcome.saved, tz) if outcome and outcome.saved else [],
            summary=summary,
            now=utcnow(),
            channels=config.channels,
        )

    async def edit_page(request: Request, session: Session) -> Response:
        incident_id = request.path_params["incident_id"]
        view = work.state()
        incident = view.incident(incident_id)
        if incident is None:
            return page(request, session, "missing.html", status=404, incident_id=incident_id)
        return editor(
            request, session, incident_id, values_of(incident, work.languages, tz), view.hash
        )

    async def new_page(request: Request, session: Session) -> Response:
        view = work.state()
        asked = request.query_params.get(KIND_FIELD)
        kind = IncidentKind.MAINTENANCE if asked == "maintenance" else IncidentKind.INCIDENT
        values = new_values(kind, utcnow(), work.languages, tz)
        return editor(request, session, None, values, view.hash)

    async def publish(request: Request, session: Session) -> Response:
        incident_id = request.path_params.get("incident_id")
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        base_hash = form.get("base_hash", "")
        assert session.name is not None
        outcome = await run_in_threadpool(work.publish, form, incident_id, base_hash, session.name)
        if outcome.ok:
            saved_id = incident_id or form.get(ID_FIELD, "").strip()
            view = work.state()
            incident = view.incident(saved_id)
            values = values_of(incident, work.languages, tz)
            return editor(request, session, saved_id, values, view.hash, outcome)
        if outcome.conflict is not None:
            # Their save with this person's edits on top, against the file it comes from;
            # when what the page showed is unknown, the page cannot publish over it.
            values = outcome.rebased or form
            return editor(
                request,
                session,
                incident_id,
                values,
                outcome.rebased_hash or base_hash,
                outcome,
                409,
            )
        return editor(request, session, incident_id, form, base_hash, outcome, 422)

    async def preview(request: Request, session: Session) -> Response:
        data = await request.json()
        form = data.get("form") if isinstance(data, dict) else None
        if not isinstance(form, dict):
            return JSONResponse({"error": "expected {form: {...}}"}, status_code=400)
        fields = {str(k): str(v) for k, v in form.items() if isinstance(v, str)}
        incident_id = data.get("incident_id")
        # Rendering every channel's posts takes a few tens of ms: off the event loop.
        result = await run_in_threadpool(
            work.preview, fields, incident_id if isinstance(incident_id, str) else None
        )
        return JSONResponse(result)

    routes = [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logged_in(logout), methods=["POST"]),
        Route("/", logged_in(index), methods=["GET"]),
        Route("/new", logged_in(new_page), methods=["GET"]),
        Route("/new", logged_in(publish), methods=["POST"]),
        Route("/preview", logged_in(preview), methods=["POST"]),
        Route("/incidents/{incident_id}", logged_in(edit_page), methods=["GET"]),
        Route("/incidents/{incident_id}", logged_in(publish), methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return SecurityHeaders(Starlette(routes=routes))


def _set_cookie(response: Response, session: Session) -> None:
    response.set_cookie(
        COOKIE, session.id, httponly=True, samesite="strict", path="/", max_age=12 * 3600
    )
