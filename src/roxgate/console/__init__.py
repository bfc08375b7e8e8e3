"""The operators' console: server-rendered pages under ``/console`` (docs/operators.md#console).

``console_mount`` is what ``roxgate serve`` mounts for the roles that take
requests; the gateway stays reachable as ``request.app.state.gateway``.
"""

from __future__ import annotations

from pathlib import Path

from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from roxgate.config import Settings
from roxgate.console import login, views
from roxgate.console.sessions import SessionPolicy
from roxgate.console.web import SecurityHeaders

STATIC_DIR = Path(__file__).parent / "static"


def console_mount(settings: Settings) -> Mount:
    SessionPolicy.from_settings(settings)  # a bad console setting stops start-up, not a request
    get, post = ["GET"], ["POST"]
    routes = [
        Route("/", views.overview, methods=get),
        Route("/login", login.login_form, methods=get),
        Route("/login", login.login, methods=post),
        Route("/logout", login.logout, methods=post),
        Route("/messages", views.messages, methods=get),
        Route("/messages/{sms_id}", views.message, methods=get),
        Route("/inbound", views.inbound, methods=get),
        Route("/callbacks", views.callbacks, methods=get),
        Route("/mail", views.mail, methods=get),
        Route("/accounts", views.accounts, methods=get),
        Route("/accounts/{account_id}", views.account, methods=get),
        Route("/accounts/{account_id}/suspend", views.suspend, methods=post),
        Route("/accounts/{account_id}/resume", views.resume, methods=post),
        Route("/reports", views.reports, methods=get),
        Route("/reports.csv", views.report_csv, methods=get),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="console-static"),
    ]
    return Mount("/console", routes=routes, middleware=[Middleware(SecurityHeaders)])


__all__ = ["console_mount"]
