"""Who may see a console page: the signed-in guard for pages, and for forms
the same plus the CSRF check.

A page endpoint is ``async def page(request, session)``; a form endpoint
``async def action(request, session, form)`` and runs only after the form's
token and the request's origin were checked.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from roxgate.config import Settings
from roxgate.console import csrf, sessions
from roxgate.console.sessions import Session, SessionPolicy
from roxgate.console.web import problem, read_form
from roxgate.store.ids import now_ms

if TYPE_CHECKING:
    from roxgate.api.gateway import Gateway

LOGIN_PATH = "/console/login"
Page = Callable[[Request, Session], Awaitable[Response]]
Action = Callable[[Request, Session, FormData], Awaitable[Response]]


def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


def policy_of(request: Request) -> SessionPolicy:
    return _policy(gateway_of(request).settings)


@functools.lru_cache(maxsize=4)
def _policy(settings: Settings) -> SessionPolicy:
    return SessionPolicy.from_settings(settings)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: only a console path of ours (no open redirect)."""
    if (
        target
        and target.startswith("/console/")
        and not target.startswith(LOGIN_PATH)
        and "\\" not in target
        and all(ch.isprintable() for ch in target)
    ):
        return target
    return "/console/"


def to_login(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{LOGIN_PATH}?next={quote(safe_next(here), safe='/')}", 303)


async def current_session(request: Request) -> Session | None:
    """The live session the request's cookie names, or None. An expired one is
    deleted here; a live one has its last-seen time renewed now and then."""
    token = sessions.cookie_token(request)
    if token is None:
        return None
    gateway = gateway_of(request)
    policy = policy_of(request)
    session = await gateway.read(sessions.load, gateway.engine, sessions.token_hash(token))
    if session is None:
        return None
    now = now_ms()
    if not sessions.alive(session, policy, now):
        await gateway.writer.do(sessions.end, session.id)
        return None
    if now - session.last_seen_at >= policy.touch_every_ms:
        await gateway.writer.do(sessions.touch, session.id, now)
    request.state.console_session = session
    return session


def page(endpoint: Page) -> Callable[[Request], Awaitable[Response]]:
    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        session = await current_session(request)
        if session is None:
            return to_login(request)
        return await endpoint(request, session)

    return guarded


def action(endpoint: Action) -> Callable[[Request], Awaitable[Response]]:
    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        session = await current_session(request)
        if session is None:
            return RedirectResponse(LOGIN_PATH, 303)
        refused = await check_form(request, session.csrf_token)
        if isinstance(refused, Response):
            return refused
        return await endpoint(request, session, refused)

    return guarded


async def check_form(request: Request, expected_token: str | None) -> FormData | Response:
    """The request's form if it passes the CSRF checks, else the 4xx answer."""
    if not csrf.same_origin(request):
        return problem(request, 403, "Refused", "This form was not sent from the console.")
    form = await read_form(request)
    if form is None:
        return problem(request, 400, "Bad request", "Not a console form.")
    if not csrf.same(expected_token, form.get(csrf.FIELD)):
        return problem(
            request,
            403,
            "Refused",
            "The form's security token is missing or out of date. Go back, reload the page "
            "and try again.",
        )
    return form
