"""The console's HTML plumbing: templates, security headers, bounded form reading."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.datastructures import FormData, MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A console form is a few short fields; anything bigger is not one of ours.
MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 20

# No inline script or style anywhere: the charts are SVG styled by the
# stylesheet, and the pages need no JavaScript.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
STATIC_PREFIX = "/console/static/"


def when(ms: int | None) -> str:
    """A stored time (ms since the epoch) as UTC for a person: 2026-11-25 11:14:56."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def number(value: int | float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def rate(value: float) -> str:
    """A per-minute or per-second average: small ones keep two decimals (0.02, not 0)."""
    if value == 0:
        return "0"
    if value < 0.01:
        return "<0.01"
    return f"{value:.2f}" if value < 10 else f"{value:,.1f}"


templates = Environment(
    loader=PackageLoader("roxgate.console", "templates"),
    autoescape=select_autoescape(["html"], default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["when"] = when
templates.filters["number"] = number
templates.filters["rate"] = rate


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    session = getattr(request.state, "console_session", None)
    page = templates.get_template(template).render(
        request=request,
        path=request.url.path,
        operator=session.username if session is not None else None,
        csrf_token=session.csrf_token if session is not None else "",
        **context,
    )
    return HTMLResponse(page, status_code=status_code)


def problem(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    return render(request, "problem.html", status_code=status, title=title, detail=detail)


async def read_form(request: Request) -> FormData | None:
    """The posted form, or None when it is not a small urlencoded form.

    The length must be declared (browsers always do for forms) so that an
    oversized or endless body is refused before any of it is read.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    declared = request.headers.get("content-length", "")
    chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
    if declared == "0" or (not declared and not chunked):
        # No body at all (HTTP/1.1: neither a length nor chunks): a form without
        # fields, so without its token; refused as such by the CSRF check.
        return FormData()
    if content_type != "application/x-www-form-urlencoded" or not declared.isdigit():
        return None
    if int(declared) > MAX_FORM_BYTES:
        return None
    return await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


class SecurityHeaders:
    """Headers on every console response: no framing, no sniffing, no caching of
    pages with data (static files may be cached), and the CSP above."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith(STATIC_PREFIX)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
                headers["X-Frame-Options"] = "DENY"
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "same-origin"
                headers["Cross-Origin-Opener-Policy"] = "same-origin"
                headers["Cache-Control"] = "public, max-age=3600" if static else "no-store"
            await send(message)

        await self.app(scope, receive, send=with_headers)
