"""The group-commit writer on SQLite and PostgreSQL, and two writers sharing PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

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
from roxgate.store.writer import GroupCommitWriter, Idempotency, Intake, Outcome, Writers


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


# --- several writers in one process (PostgreSQL) ------------------------------------------


@pytest.fixture
def pg_writers(pg_engine_factory: Any) -> Iterator[tuple[Engine, Writers]]:
    _url, engine = pg_engine_factory("writers")
    admin.add_account(engine, "CI00000001", "A", credits=100)
    writers = Writers(engine, count=4)
    writers.start()
    yield engine, writers
    writers.stop()


def gather_submits(writers: Writers, intakes: list[Intake]) -> list[Outcome]:
    async def main() -> list[Outcome]:
        done = await asyncio.gather(*(writers.submit(i) for i in intakes))
        return [i.outcome for i in done]

    return asyncio.run(main())


def test_sqlite_keeps_one_writer(engine: Engine) -> None:
    expected = 4 if engine.dialect.name == "postgresql" else 1
    assert Writers(engine, count=4).count == expected


def test_writers_of_one_process_share_credits_and_keys(pg_writers: Any) -> None:
    engine, writers = pg_writers
    outcomes = Counter(gather_submits(writers, [intake(5) for _ in range(60)]))
    assert outcomes == {Outcome.STORED: 20, Outcome.NO_CREDIT: 40}  # 300 parts, 100 credits
    # Spread over the writers: each committed some (a request waits for one that is free).
    assert all(w.batches > 0 for w in writers._all)
    admin.update_account(engine, "CI00000001", credits=None)
    for round_no in range(10):
        key = f"key-{round_no}"
        same = [intake(1, key=key) for _ in range(4)]
        stored = Counter(gather_submits(writers, same))
        assert stored == {Outcome.STORED: 1, Outcome.IDEMPOTENT_REPLAY: 3}
    with engine.connect() as conn:
        assert conn.execute(select(accounts.c.credits)).scalar_one() is None
        assert len(conn.execute(select(idempotency_keys.c.key)).all()) == 10
        assert len(conn.execute(select(messages.c.id)).all()) == 20 * 5 + 10


def test_a_deadlock_victim_is_run_again(pg_engine_factory: Any) -> None:
    """Two writers lock two rows in opposite orders: PostgreSQL aborts one
    transaction, and its writer runs it again instead of failing the write."""
    _url, engine = pg_engine_factory("deadlock")
    for account_id in ("CI00000001", "CI00000002"):
        admin.add_account(engine, account_id, "A")
    both_hold_one = threading.Barrier(2, timeout=10)
    calls: list[str] = []
    lock = text("SELECT id FROM accounts WHERE id = :id FOR UPDATE")

    def cross(conn: Any, first: str, second: str) -> str:
        conn.execute(lock, {"id": first})
        if first not in calls:  # only the first time: then wait for the other to hold its row
            calls.append(first)
            both_hold_one.wait()
        else:
            calls.append(f"{first} again")
        conn.execute(lock, {"id": second})
        return first

    writers = [GroupCommitWriter(engine), GroupCommitWriter(engine)]
    for w in writers:
        w.start()
    try:

        async def main() -> list[str]:
            return await asyncio.gather(
                writers[0].do(cross, "CI00000001", "CI00000002"),
                writers[1].do(cross, "CI00000002", "CI00000001"),
            )

        assert asyncio.run(main()) == ["CI00000001", "CI00000002"]
    finally:
        for w in writers:
            w.stop()
    assert len([c for c in calls if c.endswith("again")]) == 1


def test_a_connection_closed_by_the_server_is_replaced(pg_engine_factory: Any) -> None:
    """The writer keeps its connection between groups; one the server closed
    (a restart, an idle timeout in a proxy) costs no request a 2100."""
    _url, engine = pg_engine_factory("dropped")
    admin.add_account(engine, "CI00000001", "A")
    writer = GroupCommitWriter(engine)
    writer.start()
    try:
        assert submit_all([(writer, intake(2))]) == [Outcome.STORED]
        with engine.connect() as conn:
            closed = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        assert closed >= 1
        assert submit_all([(writer, intake(3))]) == [Outcome.STORED]
    finally:
        writer.stop()
    with engine.connect() as conn:
        assert len(conn.execute(select(messages.c.id)).all()) == 5
