"""Small read/update queries used on the request path (run in a thread pool)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, select, text, update

from roxgate.store.schema import accounts, idempotency_keys, users


def load_login(engine: Engine, account_id: str, email: str) -> dict[str, Any] | None:
    """The account and user a login names, joined; None if either is unknown."""
    query = (
        select(
            users.c.id.label("user_id"),
            users.c.password_hash,
            users.c.status.label("user_status"),
            users.c.failed_logins,
            users.c.locked_until,
            accounts.c.id.label("account_id"),
            accounts.c.status.label("account_status"),
            accounts.c.api_enabled,
            accounts.c.region,
            accounts.c.tz_offset,
            accounts.c.allowed_nets,
            accounts.c.allowed_countries,
            accounts.c.credits,
            accounts.c.rate_requests_per_minute,
            accounts.c.rate_messages_per_minute,
        )
        .select_from(users.join(accounts, users.c.account_id == accounts.c.id))
        .where(users.c.account_id == account_id, users.c.email == email)
    )
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return dict(row) if row is not None else None


def record_login_failure(
    engine: Engine, user_id: int, max_failures: int, lock_until_ms: int
) -> bool:
    """Count a failed login; lock the user at the limit. Returns True when now locked."""
    with engine.begin() as conn:
        failures = conn.execute(
            update(users)
            .where(users.c.id == user_id)
            .values(failed_logins=users.c.failed_logins + 1)
            .returning(users.c.failed_logins)
        ).scalar_one()
        if failures >= max_failures:
            conn.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(failed_logins=0, locked_until=lock_until_ms)
            )
            return True
    return False


def record_login_success(engine: Engine, user_id: int, new_hash: str | None) -> None:
    values: dict[str, Any] = {"failed_logins": 0, "locked_until": None}
    if new_hash is not None:
        values["password_hash"] = new_hash
    with engine.begin() as conn:
        conn.execute(update(users).where(users.c.id == user_id).values(values))


# The numbers travel as one JSON array parameter: expanding 500 bound
# parameters through SQLAlchemy cost more than the lookup itself.
_LISTED_SQL = {
    "sqlite": text(
        "SELECT number, kind FROM number_lists WHERE account_id = :account_id "
        "AND number IN (SELECT value FROM json_each(:numbers))"
    ),
    "postgresql": text(
        "SELECT number, kind FROM number_lists WHERE account_id = :account_id "
        "AND number IN (SELECT jsonb_array_elements_text(CAST(:numbers AS jsonb)))"
    ),
}


def listed_numbers(engine: Engine, account_id: str, numbers: Iterable[str]) -> dict[str, set[str]]:
    """Which of ``numbers`` are on the account's lists: {number: {"block", "optout"}}."""
    query = _LISTED_SQL[engine.dialect.name]
    found: dict[str, set[str]] = {}
    with engine.connect() as conn:
        rows = conn.execute(
            query,
            {"account_id": account_id, "numbers": orjson.dumps(sorted(set(numbers))).decode()},
        )
        for number, kind in rows:
            found.setdefault(number, set()).add(kind)
    return found


def find_idempotent(
    db: Engine | Connection, account_id: str, key: str, not_before_ms: int
) -> tuple[bytes, bytes] | None:
    """(request_hash, response) of a live Idempotency-Key, if any.

    On an engine for the request path's early look-up; on the writer's
    connection for the authoritative check inside the group commit.
    """
    query = select(idempotency_keys.c.request_hash, idempotency_keys.c.response).where(
        idempotency_keys.c.account_id == account_id,
        idempotency_keys.c.key == key,
        idempotency_keys.c.created_at >= not_before_ms,
    )
    if isinstance(db, Connection):
        row = db.execute(query).first()
    else:
        with db.connect() as conn:
            row = conn.execute(query).first()
    return (bytes(row[0]), bytes(row[1])) if row is not None else None
