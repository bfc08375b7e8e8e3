"""Signing in to the console and out again.

A failed sign-in says the same whatever went wrong (unknown name, wrong
password, locked): it never tells whether an operator of that name exists.
To keep the time the same too, an unknown name is checked against a decoy
hash, and a locked operator's password is still verified (its answer then
ignored). Only with the right password is "disabled" said, as a user gets
2005 only after its password was right.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from roxgate.accounts.passwords import hash_password, needs_rehash, verify_password
from roxgate.console import csrf, operators, sessions
from roxgate.console.access import (
    action,
    current_session,
    gateway_of,
    policy_of,
    safe_next,
)
from roxgate.console.operators import Login
from roxgate.console.sessions import Session, SessionPolicy
from roxgate.console.web import client_ip, problem, read_form, render
from roxgate.store.ids import now_ms

log = logging.getLogger("roxgate.console")
LOGIN_TOKEN_SECONDS = 3600
MAX_USERNAME = 200  # longer than any valid one; just a bound on what is read
MAX_PASSWORD = 1024  # argon2 hashes any length; an attacker must not choose megabytes

# argon2id takes 64 MiB and ~0.2 s a check: at most two at once, whoever asks.
_verify_slots = asyncio.Semaphore(2)
_decoy_hash: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    login: Login | None
    error: str = ""


def _failed_text(request: Request) -> str:
    s = gateway_of(request).settings
    minutes = max(1, round(s.login_lock_seconds / 60))
    return (
        "Wrong operator name or password. After "
        f"{s.login_max_failures} failed attempts in a row an operator is locked for "
        f"{minutes} minutes."
    )


async def _verify(request: Request, password_hash: str, password: str) -> bool:
    async with _verify_slots:
        return await gateway_of(request).run(verify_password, password_hash, password)


async def _decoy(request: Request) -> str:
    global _decoy_hash
    if _decoy_hash is None:
        _decoy_hash = await gateway_of(request).run(hash_password, secrets.token_urlsafe(16))
    return _decoy_hash


async def authenticate(request: Request, username: str, password: str) -> Outcome:
    gateway = gateway_of(request)
    failed = _failed_text(request)
    found = await gateway.read(operators.load_login, gateway.engine, username)
    now = now_ms()
    ok = await _verify(request, found.password_hash if found else await _decoy(request), password)
    if found is None:
        return Outcome(None, failed)
    if found.locked_until is not None and found.locked_until > now:
        return Outcome(None, failed)  # not counted: the lock runs its course
    if not ok:
        lock_until = now + gateway.settings.login_lock_seconds * 1000
        limit = gateway.settings.login_max_failures
        if await gateway.writer.do(operators.record_failure, found.id, limit, lock_until):
            log.warning(
                "console: operator %r locked after %d failed sign-ins", found.username, limit
            )
        return Outcome(None, failed)
    if found.status != "active":
        return Outcome(None, "This operator is disabled.")
    return Outcome(found)


def _login_page(
    request: Request, status: int, next_path: str, error: str = "", notice: str = ""
) -> Response:
    """The sign-in form with a fresh double-submit token, in the form and a cookie."""
    token = csrf.new_token()
    response = render(
        request,
        "login.html",
        status_code=status,
        login_token=token,
        next_path=next_path,
        error=error,
        notice=notice,
    )
    response.set_cookie(
        csrf.LOGIN_COOKIE,
        token,
        max_age=LOGIN_TOKEN_SECONDS,
        path=sessions.COOKIE_PATH,
        secure=policy_of(request).secure_cookie(request),
        httponly=True,
        samesite="strict",
    )
    return response


async def login_form(request: Request) -> Response:
    next_path = safe_next(request.query_params.get("next"))
    if await current_session(request) is not None:
        return RedirectResponse(next_path, 303)
    notice = "You are signed out." if request.query_params.get("bye") else ""
    return _login_page(request, 200, next_path, notice=notice)


def _signed_in(
    conn: Connection,
    operator_id: int,
    ip: str | None,
    policy: SessionPolicy,
    now: int,
    new_hash: str | None,
) -> str:
    operators.record_success(conn, operator_id, now, new_hash)
    return sessions.create(conn, operator_id, ip, policy, now)


async def login(request: Request) -> Response:
    if not csrf.same_origin(request):
        return problem(request, 403, "Refused", "This form was not sent from the console.")
    form = await read_form(request)
    if form is None:
        return problem(request, 400, "Bad request", "Not a sign-in form.")
    next_path = safe_next(str(form.get("next") or ""))
    if not csrf.same(request.cookies.get(csrf.LOGIN_COOKIE), form.get(csrf.FIELD)):
        return _login_page(
            request, 403, next_path, error="The sign-in form had expired. Please sign in again."
        )
    username = str(form.get("username") or "")[:MAX_USERNAME]
    password = form.get("password")
    if not isinstance(password, str) or not username or not password:
        return _login_page(request, 401, next_path, error="Give an operator name and password.")
    password = password[:MAX_PASSWORD]
    outcome = await authenticate(request, username, password)
    ip = client_ip(request)
    if outcome.login is None:
        log.info("console: sign-in refused for %r from %s", username[:64], ip)
        return _login_page(request, 401, next_path, error=outcome.error)
    gateway = gateway_of(request)
    new_hash = None
    if needs_rehash(outcome.login.password_hash):
        new_hash = await gateway.run(hash_password, password)
    policy = policy_of(request)
    old = sessions.cookie_token(request)
    if old is not None:  # a new token at every sign-in: no session fixation
        await gateway.writer.do(sessions.end, sessions.token_hash(old))
    token = await gateway.writer.do(_signed_in, outcome.login.id, ip, policy, now_ms(), new_hash)
    log.info("console: operator %r signed in from %s", outcome.login.username, ip)
    response = RedirectResponse(next_path, 303)
    sessions.set_cookie(response, request, token, policy)
    response.delete_cookie(
        csrf.LOGIN_COOKIE, path=sessions.COOKIE_PATH, httponly=True, samesite="strict"
    )
    return response


@action
async def logout(request: Request, session: Session, _form: FormData) -> Response:
    await gateway_of(request).writer.do(sessions.end, session.id)
    log.info("console: operator %r signed out", session.username)
    response = RedirectResponse("/console/login?bye=1", 303)
    sessions.clear_cookie(response, request, policy_of(request))
    return response
