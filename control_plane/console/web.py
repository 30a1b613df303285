"""What every console page shares: its route class, the session cookie, CSRF, headers, rendering.

``ConsoleRoute`` runs each request in the API's per-request transaction (``TransactionalRoute``)
and answers in HTML: a missing, expired or signed-out session redirects to the sign-in page
(303, or ``HX-Redirect`` for htmx requests); a ``ProblemError`` from a service (403, 404, 409,
422 ...) becomes an error page with the same status, so the console answers exactly what the API
would. Every answer carries the console's Content-Security-Policy (no inline script or style),
``X-Frame-Options: DENY`` and ``Cache-Control: no-store``.

The session cookie is ``HttpOnly``, ``SameSite=Strict``, scoped to ``/console`` and ``Secure``
unless the service runs in development or is reached over plain http on a loopback host (a
browser keeps no Secure cookie set over http).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from control_plane.auth.principals import Capability, OperatorPrincipal
from control_plane.config import Environment
from control_plane.console import service
from control_plane.kit.database import kit_state
from control_plane.kit.errors import Forbidden, ProblemError
from control_plane.kit.routing import Session, TransactionalRoute
from control_plane.kit.time import aware, utcnow

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
COOKIE = "acp_console"
PRE_COOKIE = "acp_console_signin"  # double-submit token of the sign-in form (no session yet)
CSRF_FIELD = "csrf_token"
MAX_FORM_BYTES = 16_384

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

templates = Jinja2Templates(directory=HERE / "templates")


def _age(value: datetime | None) -> str:
    """'3m', '2h 5m', '4d': how long ago (or, negative, how long until) ``value`` is."""
    if value is None:
        return "-"
    seconds = int((utcnow() - aware(value)).total_seconds())
    sign = "" if seconds >= 0 else "in "
    seconds = abs(seconds)
    if seconds < 60:
        text = f"{seconds}s"
    elif seconds < 3600:
        text = f"{seconds // 60}m"
    elif seconds < 86400:
        text = f"{seconds // 3600}h {seconds % 3600 // 60}m"
    else:
        text = f"{seconds // 86400}d"
    return sign + text


def _when(value: datetime | None) -> str:
    return "-" if value is None else aware(value).strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["age"] = _age
templates.env.filters["when"] = _when
templates.env.filters["pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True, default=str)


class SignInRequired(Exception):
    """No live session: the wrapper answers with a redirect to the sign-in page."""


@dataclass(frozen=True)
class Viewer:
    """The signed-in operator of a console request."""

    principal: OperatorPrincipal
    session_id: str

    @property
    def csrf(self) -> str:
        return service.csrf_token(self.session_id)

    def can(self, capability: str) -> bool:
        return self.principal.can(Capability(capability))


def cookie_secure(request: Request) -> bool:
    """Secure outside development, except over plain http to a loopback host."""
    settings = kit_state(request.app).settings
    if settings.environment is Environment.development:
        return False
    loopback = request.url.hostname in ("localhost", "127.0.0.1", "::1")
    return not (request.url.scheme == "http" and loopback)


async def current_viewer(request: Request, session: Session) -> Viewer:
    session_id = request.cookies.get(COOKIE, "")
    principal = await service.principal_of(session, session_id) if session_id else None
    if principal is None:
        raise SignInRequired()
    viewer = Viewer(principal=principal, session_id=session_id)
    request.state.console_viewer = viewer  # error pages keep the navigation
    return viewer


CurrentViewer = Annotated[Viewer, Depends(current_viewer)]


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (last value wins); 403 for any
    other body, so a form can only arrive as a browser sends it."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if kind != "application/x-www-form-urlencoded" or len(body) > MAX_FORM_BYTES:
        raise Forbidden("The console accepts only its own forms.")
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        raise Forbidden("The console accepts only its own forms.") from None


async def checked_form(request: Request, viewer: CurrentViewer) -> dict[str, str]:
    """The posted form, once its CSRF token (field or ``X-CSRF-Token``) matches the session's."""
    form = await read_form(request)
    presented = form.get(CSRF_FIELD) or request.headers.get("x-csrf-token")
    if not service.csrf_valid(viewer.session_id, presented):
        raise Forbidden("The form's CSRF token is missing or wrong; reload the page and retry.")
    return form


CheckedForm = Annotated[dict[str, str], Depends(checked_form)]


def render(
    request: Request,
    name: str,
    context: Mapping[str, Any],
    *,
    status_code: int = 200,
    viewer: Viewer | None = None,
) -> HTMLResponse:
    page = dict(context)
    page["viewer"] = viewer
    page["path"] = request.url.path
    response = templates.TemplateResponse(request, name, page, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


def redirect(url: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    response.headers.update(SECURITY_HEADERS)
    return response


def _sign_in_redirect(request: Request) -> Response:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    url = "/console/sign-in?next=" + quote(target, safe="")
    if request.headers.get("hx-request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": url, **SECURITY_HEADERS})
    return redirect(url)


class ConsoleRoute(TransactionalRoute):
    """A console page: the API's transaction, answered in HTML (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        inner = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await inner(request)
            except SignInRequired:
                return _sign_in_redirect(request)
            except ProblemError as exc:
                return _error(request, exc.status, exc.title, exc.detail, exc.headers)
            except RequestValidationError:
                return _error(request, 404, "Not found", "No such page.", {})
            response.headers.update(SECURITY_HEADERS)
            return response

        return route


def _error(
    request: Request, status: int, title: str, detail: str | None, headers: Mapping[str, str]
) -> Response:
    response = render(
        request,
        "error.html",
        {"status": status, "title": title, "detail": detail},
        status_code=status,
        viewer=getattr(request.state, "console_viewer", None),
    )
    if "Retry-After" in headers:
        response.headers["Retry-After"] = headers["Retry-After"]
    return response
