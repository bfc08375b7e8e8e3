"""Console sessions: a random token in a cookie, its SHA-256 in the database.

The table (not process memory) holds them, so every api process behind a load
balancer knows every session, and a restart signs nobody out. A leaked table
does not let anyone in: it has only the tokens' hashes. A session ends at its
absolute expiry, after ``idle`` without a request, at logout, or as soon as
its operator is disabled (each request joins the operator's status).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, Engine, delete, insert, or_, select, update
from starlette.requests import Request
from starlette.responses import Response

from roxgate.config import Settings
from roxgate.console import csrf
from roxgate.store.schema import console_sessions, operators

COOKIE = "roxgate_console"
COOKIE_PATH = "/console"
SecureMode = Literal["auto", "always", "never"]


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    lifetime_ms: int
    idle_ms: int
    secure: SecureMode

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionPolicy:
        mode = settings.console_cookie_secure.strip().lower()
        if mode not in ("auto", "always", "never"):
            raise ValueError(
                f"setting console_cookie_secure: {settings.console_cookie_secure!r} "
                "is not auto, always or never"
            )
        lifetime_ms = int(settings.console_session_hours * 3_600_000)
        idle_ms = int(settings.console_idle_minutes * 60_000)
        if lifetime_ms <= 0 or idle_ms <= 0:
            raise ValueError("settings console_session_hours and console_idle_minutes must be > 0")
        return cls(lifetime_ms, idle_ms, mode)  # type: ignore[arg-type]

    @property
    def touch_every_ms(self) -> int:
        """How stale ``last_seen_at`` may get before a request writes it again:
        a write per page view would be wasted, a tenth of the idle time is close enough."""
        return min(60_000, self.idle_ms // 10)

    def secure_cookie(self, request: Request) -> bool:
        if self.secure == "auto":
            # uvicorn rewrites the scheme from X-Forwarded-Proto of a trusted proxy.
            return request.url.scheme == "https"
        return self.secure == "always"


@dataclass(frozen=True, slots=True)
class Session:
    id: str  # SHA-256 hex of the cookie's token
    operator_id: int
    username: str
    csrf_token: str
    created_at: int
    last_seen_at: int
    expires_at: int


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create(
    conn: Connection, operator_id: int, client_ip: str | None, policy: SessionPolicy, now: int
) -> str:
    """A new session for ``operator_id``; returns the cookie's token (32 random bytes)."""
    token = secrets.token_urlsafe(32)
    conn.execute(
        insert(console_sessions),
        {
            "id": token_hash(token),
            "operator_id": operator_id,
            "csrf_token": csrf.new_token(),
            "client_ip": client_ip[:45] if client_ip else None,
            "created_at": now,
            "last_seen_at": now,
            "expires_at": now + policy.lifetime_ms,
        },
    )
    # Signing in is rare and already writes: a good moment to forget old sessions.
    prune(conn, now, policy.idle_ms)
    return token


def load(engine: Engine, session_id: str) -> Session | None:
    """The session with this id whose operator is active, or None."""
    query = (
        select(
            console_sessions.c.id,
            console_sessions.c.operator_id,
            operators.c.username,
            console_sessions.c.csrf_token,
            console_sessions.c.created_at,
            console_sessions.c.last_seen_at,
            console_sessions.c.expires_at,
        )
        .select_from(
            console_sessions.join(operators, operators.c.id == console_sessions.c.operator_id)
        )
        .where(console_sessions.c.id == session_id, operators.c.status == "active")
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return Session(*row) if row is not None else None


def alive(session: Session, policy: SessionPolicy, now: int) -> bool:
    return now < session.expires_at and now - session.last_seen_at < policy.idle_ms


def touch(conn: Connection, session_id: str, now: int) -> None:
    conn.execute(
        update(console_sessions).where(console_sessions.c.id == session_id).values(last_seen_at=now)
    )


def end(conn: Connection, session_id: str) -> None:
    conn.execute(delete(console_sessions).where(console_sessions.c.id == session_id))


def prune(conn: Connection, now: int, idle_ms: int) -> int:
    """Delete the sessions past their absolute expiry or idle too long."""
    return conn.execute(
        delete(console_sessions).where(
            or_(
                console_sessions.c.expires_at <= now,
                console_sessions.c.last_seen_at <= now - idle_ms,
            )
        )
    ).rowcount


def cookie_token(request: Request) -> str | None:
    token = request.cookies.get(COOKIE)
    # A token we made is 43 characters; anything much longer is not worth hashing.
    return token if token and len(token) <= 128 else None


def set_cookie(response: Response, request: Request, token: str, policy: SessionPolicy) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=policy.lifetime_ms // 1000,
        path=COOKIE_PATH,
        secure=policy.secure_cookie(request),
        httponly=True,
        samesite="strict",
    )


def clear_cookie(response: Response, request: Request, policy: SessionPolicy) -> None:
    response.delete_cookie(
        COOKIE,
        path=COOKIE_PATH,
        secure=policy.secure_cookie(request),
        httponly=True,
        samesite="strict",
    )
