"""The group-commit writer on SQLite and PostgreSQL, and two writers sharing PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select

from roxgate.accounts import admin
from roxgate.store.engine import open_database
from roxgate.store.ids import new_id, now_ms
from roxgate.store.schema import (
    MESSAGE_RECIPIENT_COLUMNS,
    MESSAGE_REQUEST_COLUMNS,
    accounts,
    idempotency_keys,
    messages,
    requests,
)
from roxgate.store.writer import GroupCommitWriter, Idempotency, Intake, Outcome


def intake(
    recipients: int = 1,
    parts: int = 1,
    key: str | None = None,
    request_hash: bytes = b"h" * 32,
    names: bool = True,
) -> Intake:
    request_id, now = new_id(), now_ms()
    rows = [
        (
            new_id(), f"+6140755{i:04d}", "AU", f"Name {i}" if names else None,
            f"n{i}@example.org" if names and i % 2 else None, f"Text {i} ✓", "ucs2", parts,
        )
        for i in range(recipients)
    ]  # fmt: skip
    common = (
        request_id, "CI00000001", 1, "tests", now + 5, 1, "https://h/r", "H", "https://h/q",
        "queued", now, now,
    )  # fmt: skip
    request_row = {
        "id": request_id, "account_id": "CI00000001", "user_id": 1, "product": "tests",
        "client_ip": "203.0.113.9", "idempotency_key": key, "recipients": recipients,
        "queued": recipients, "received_at": now,
    }  # fmt: skip
    return Intake(
        account_id="CI00000001",
        request_row=request_row,
        message_common=common,
        message_rows=rows,
        parts=recipients * parts,
        response=b'{"Result": "0000", "RequestId": "' + request_id.encode() + b'"}',
        idempotency=Idempotency(key, request_hash, now - 86_400_000) if key else None,
    )


def submit_all(pairs: list[tuple[GroupCommitWriter, Intake]]) -> list[Outcome]:
    async def main() -> list[Outcome]:
        done = await asyncio.gather(*(w.submit(i) for w, i in pairs))
        return [i.outcome for i in done]

    return asyncio.run(main())


@pytest.fixture
def engine(store_factory: Any) -> Engine:
    engine: Engine = store_factory("writer")
    admin.add_account(engine, "CI00000001", "A", credits=2_000)
    return engine


@pytest.fixture
def writer(engine: Engine) -> Iterator[GroupCommitWriter]:
    writer = GroupCommitWriter(engine)
    writer.start()
    yield writer
    writer.stop()


def test_messages_are_stored_column_for_column(engine: Engine, writer: GroupCommitWriter) -> None:
    big, small, nameless = intake(500, parts=2), intake(1), intake(3, names=False)
    assert submit_all([(writer, big), (writer, small), (writer, nameless)]) == [Outcome.STORED] * 3
    columns = [messages.c[c] for c in MESSAGE_RECIPIENT_COLUMNS + MESSAGE_REQUEST_COLUMNS]
    with engine.connect() as conn:
        stored = {r[0]: tuple(r) for r in conn.execute(select(*columns))}
        extra = conn.execute(select(messages.c.attempts, messages.c.lease_owner)).all()
        credits = conn.execute(select(accounts.c.credits)).scalar_one()
        request_ids = conn.execute(select(requests.c.id)).scalars().all()
    expected = {
        row[0]: row + i.message_common for i in (big, small, nameless) for row in i.message_rows
    }
    assert stored == expected
    assert set(extra) == {(0, None)}
    assert credits == 2_000 - 500 * 2 - 1 - 3
    assert sorted(request_ids) == sorted(i.request_row["id"] for i in (big, small, nameless))


def test_credits_and_idempotency(engine: Engine, writer: GroupCommitWriter) -> None:
    first = intake(2, key="k1")
    replay = intake(2, key="k1")
    conflict = intake(2, key="k1", request_hash=b"x" * 32)
    too_dear = intake(1, parts=1_999)
    outcomes = submit_all([(writer, first), (writer, replay), (writer, conflict)])
    assert outcomes == [Outcome.STORED, Outcome.IDEMPOTENT_REPLAY, Outcome.IDEMPOTENCY_CONFLICT]
    assert replay.replay == first.response
    assert submit_all([(writer, too_dear)]) == [Outcome.NO_CREDIT]
    with engine.connect() as conn:
        assert conn.execute(select(accounts.c.credits)).scalar_one() == 1_998
        [(stored_hash, response)] = conn.execute(
            select(idempotency_keys.c.request_hash, idempotency_keys.c.response)
        ).all()
    assert (bytes(stored_hash), bytes(response)) == (b"h" * 32, first.response)


# --- two processes' writers on one PostgreSQL database ----------------------------------


@pytest.fixture
def two_writers(pg_engine_factory: Any) -> Iterator[tuple[Engine, GroupCommitWriter, ...]]:
    """Two writers, each with an engine of its own, as two API processes have."""
    url, engine = pg_engine_factory("two_writers")
    admin.add_account(engine, "CI00000001", "A", credits=100)
    other = open_database(url)
    writers = [GroupCommitWriter(engine), GroupCommitWriter(other)]
    for w in writers:
        w.start()
    yield engine, *writers
    for w in writers:
        w.stop()
    other.dispose()


def test_two_writers_never_spend_the_same_credits(two_writers: Any) -> None:
    engine, *writers = two_writers
    wanted = [(writers[n % 2], intake(5)) for n in range(60)]  # 300 parts for 100 credits
    outcomes = Counter(submit_all(wanted))
    assert outcomes == {Outcome.STORED: 20, Outcome.NO_CREDIT: 40}
    with engine.connect() as conn:
        assert conn.execute(select(accounts.c.credits)).scalar_one() == 0


def test_two_writers_given_one_idempotency_key_store_it_once(two_writers: Any) -> None:
    engine, *writers = two_writers
    # Unlimited: the credits' lock would make the writers take turns anyway.
    admin.update_account(engine, "CI00000001", credits=None)
    for round_no in range(10):
        key = f"key-{round_no}"
        first, second = intake(1, key=key), intake(1, key=key)
        outcomes = sorted(o.value for o in submit_all([(writers[0], first), (writers[1], second)]))
        assert outcomes == sorted([Outcome.STORED.value, Outcome.IDEMPOTENT_REPLAY.value])
    with engine.connect() as conn:
        assert len(conn.execute(select(idempotency_keys.c.key)).all()) == 10
        assert len(conn.execute(select(messages.c.id)).all()) == 10
