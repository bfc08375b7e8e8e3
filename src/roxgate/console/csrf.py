"""Cross-site request forgery: every console form proves it came from the console.

Signed in, each form carries the session's token in a hidden field, compared
in constant time on every POST. The sign-in form has no session yet, so it uses
a double-submit cookie: a random token both in a cookie and in the form, which
a page on another site can neither read nor set. On top of both, when the
browser says where a request came from (``Origin``, ``Sec-Fetch-Site``) it must
be this site. The cookies are SameSite=Strict as well: three locks, not one.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request

FIELD = "csrf"
LOGIN_COOKIE = "roxgate_console_login"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same(expected: str | None, given: object) -> bool:
    """Constant-time equality of two tokens; anything missing or not text is unequal."""
    if not expected or not isinstance(given, str) or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogatepass"))


def same_origin(request: Request) -> bool:
    """False when the browser tells us the request came from another site."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # older browsers and non-browsers: the token alone decides
    host = request.headers.get("host", "")
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    # Only the host and port: behind a TLS-terminating proxy that does not say
    # X-Forwarded-Proto, the scheme we see is not the one the browser used.
    return bool(parts.scheme in ("http", "https") and parts.netloc) and (
        parts.netloc.lower() == host.lower()
    )
