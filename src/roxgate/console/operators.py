"""Operators: the people who sign in to ``/console`` (``roxgate operator …``).

They are unrelated to the customers' users: an operator sees every account.
Passwords are argon2id hashes, like users'; repeated failed sign-ins lock an
operator for a while, as they lock a user (``ROXGATE_LOGIN_MAX_FAILURES``,
``ROXGATE_LOGIN_LOCK_SECONDS``).

The ``roxgate operator`` commands call the engine functions here directly; the
console's sign-in reads through :func:`load_login` and writes its outcome with
the connection functions, run on the gateway's writer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from roxgate.accounts.admin import AdminError
from roxgate.accounts.passwords import hash_password
from roxgate.store.ids import now_ms
from roxgate.store.schema import operators

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
# Longer than a customer user's minimum: an operator sees and changes every account.
MIN_PASSWORD = 10


def normalise_username(username: str) -> str:
    name = username.strip().lower()
    if not USERNAME_RE.match(name):
        raise AdminError(
            "operator name: 1-64 characters, letters, digits and . _ @ - "
            "(starting with a letter or digit)"
        )
    return name


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AdminError(f"password must be at least {MIN_PASSWORD} characters")
    return password


def add_operator(engine: Engine, username: str, password: str) -> int:
    name = normalise_username(username)
    password_hash = hash_password(_check_password(password))
    now = now_ms()
    row = {
        "username": name,
        "password_hash": password_hash,
        "status": "active",
        "failed_logins": 0,
        "locked_until": None,
        "last_login_at": None,
        "created_at": now,
        "updated_at": now,
    }
    try:
        with engine.begin() as conn:
            return int(conn.execute(insert(operators), row).inserted_primary_key[0])
    except IntegrityError as exc:
        raise AdminError(f"operator {name} already exists") from exc


def list_operators(engine: Engine) -> list[dict[str, Any]]:
    query = select(
        operators.c.username,
        operators.c.status,
        operators.c.failed_logins,
        operators.c.locked_until,
        operators.c.last_login_at,
        operators.c.created_at,
    ).order_by(operators.c.username)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def _update(engine: Engine, username: str, values: dict[str, Any]) -> None:
    name = normalise_username(username)
    values["updated_at"] = now_ms()
    with engine.begin() as conn:
        result = conn.execute(update(operators).where(operators.c.username == name).values(values))
    if result.rowcount == 0:
        raise AdminError(f"no operator {name}")


def set_operator_password(engine: Engine, username: str, password: str) -> None:
    """A new password; it also lifts a lock (whoever set it vouches for the operator)."""
    password_hash = hash_password(_check_password(password))
    _update(
        engine, username, {"password_hash": password_hash, "failed_logins": 0, "locked_until": None}
    )


def set_operator_status(engine: Engine, username: str, status: str) -> None:
    """``disabled`` ends the operator's sessions at their next request (every
    request checks the status); ``active`` also lifts a lock."""
    if status not in ("active", "disabled"):
        raise AdminError("status must be active or disabled")
    values: dict[str, Any] = {"status": status}
    if status == "active":
        values.update(failed_logins=0, locked_until=None)
    _update(engine, username, values)


# --- signing in -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Login:
    """What a sign-in needs to know about the operator it names."""

    id: int
    username: str
    password_hash: str
    status: str
    locked_until: int | None


def load_login(engine: Engine, username: str) -> Login | None:
    """The operator called ``username`` (any case), or None."""
    try:
        name = normalise_username(username)
    except AdminError:
        return None  # cannot exist: answered like any unknown name
    query = select(
        operators.c.id,
        operators.c.username,
        operators.c.password_hash,
        operators.c.status,
        operators.c.locked_until,
    ).where(operators.c.username == name)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return Login(*row) if row is not None else None


def record_failure(conn: Connection, operator_id: int, max_failures: int, lock_until: int) -> bool:
    """Count a failed sign-in; lock the operator at the limit. True when now locked."""
    failures = conn.execute(
        update(operators)
        .where(operators.c.id == operator_id)
        .values(failed_logins=operators.c.failed_logins + 1)
        .returning(operators.c.failed_logins)
    ).scalar_one()
    if failures < max_failures:
        return False
    conn.execute(
        update(operators)
        .where(operators.c.id == operator_id)
        .values(failed_logins=0, locked_until=lock_until)
    )
    return True


def record_success(conn: Connection, operator_id: int, at_ms: int, new_hash: str | None) -> None:
    values: dict[str, Any] = {"failed_logins": 0, "locked_until": None, "last_login_at": at_ms}
    if new_hash is not None:
        values["password_hash"] = new_hash
    conn.execute(update(operators).where(operators.c.id == operator_id).values(values))
