"""Many workers on one PostgreSQL database: what the claims' row locks guarantee.

On SQLite one write lock serialises every transaction; on PostgreSQL worker
processes claim, settle and sweep at the same moment. Each test here runs
several threads, each on its own connection (to the server they are as good
as separate processes), against one database.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, event, func, insert, select, update

from roxgate.accounts import admin
from roxgate.dispatch import queue
from roxgate.report import outbox, replies
from roxgate.store.ids import new_id, now_ms
from roxgate.store.schema import (
    callbacks,
    inbound,
    inbound_parts,
    mail_outbox,
    message_events,
    messages,
)

T = TypeVar("T")
WORKERS = 4


@pytest.fixture
def pg(pg_engine_factory: Any) -> Iterator[Engine]:
    _, engine = pg_engine_factory("concurrency")
    seed(engine)
    yield engine
    engine.dispose()


def seed(engine: Engine) -> None:
    admin.add_account(engine, "CI00000001", "A")
    admin.add_user(engine, "CI00000001", "user@example.com", "password1")


def at_once(n: int, work: Callable[[int, threading.Barrier], T]) -> list[T]:
    """``work(i, barrier)`` in ``n`` threads, which wait on ``barrier`` to start together."""
    barrier = threading.Barrier(n, timeout=30)
    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(work, i, barrier) for i in range(n)]
        return [f.result(timeout=120) for f in futures]


def add_messages(
    engine: Engine, count: int, status: str = "queued", parts: int = 1, **values: Any
) -> list[str]:
    now = now_ms()
    ids = [new_id() for _ in range(count)]
    rows = [
        {
            "id": sms_id, "request_id": "r", "account_id": "CI00000001", "user_id": 1,
            "dest_tn": f"+6140755{i % 10_000:04d}", "dest_country": "AU", "text": "hi",
            "encoding": "gsm", "parts": parts, "due_at": now - 1000 + i % 500,
            "receipt_flag": 1, "receipt_url": "https://h/r", "reply_type": "E",
            "status": status, "created_at": now, "updated_at": now, **values,
        }
        for i, sms_id in enumerate(ids)
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(messages), rows)
    return ids


def claim_until_empty(claim: Callable[[str], list[Any]]) -> Callable[[int, threading.Barrier], Any]:
    def work(i: int, barrier: threading.Barrier) -> list[str]:
        owner, got = f"worker-{i}", []
        barrier.wait()
        while jobs := claim(owner):
            got += [j.id for j in jobs]
        return got

    return work


def assert_each_claimed_once(claimed: list[list[str]], expected: list[str]) -> None:
    every = [c for per_worker in claimed for c in per_worker]
    twice = [c for c, n in Counter(every).items() if n > 1]
    assert twice == [], f"{len(twice)} claimed by two workers"
    assert sorted(every) == sorted(expected)
    assert sum(1 for per_worker in claimed if per_worker) > 1  # they did run side by side


# --- what SQL each dialect runs --------------------------------------------------------


def statements(engine: Engine, run: Callable[[], Any]) -> list[str]:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def exercise_claims(engine: Engine) -> None:
    add_messages(engine, 3)
    add_messages(engine, 2, status="submitted", submitted_at=1)
    with engine.begin() as conn:
        sms_id = add_messages(engine, 1, status="delivered", result="0000")[0]
        outbox.enqueue_receipts(conn, [sms_id], now_ms())
        outbox.queue_mail(
            conn, account_id="CI00000001", kind="receipt", message_id=sms_id,
            to_addr="user@example.com", subject="S", body="B", now=now_ms(),
        )  # fmt: skip
    assert len(queue.claim_due(engine, "w", 10, 30_000)) == 3
    assert queue.expire_overdue(engine, now_ms()) == 2
    assert len(outbox.claim_callbacks(engine, "w", 10, 30_000)) == 1 + 2  # + the expired
    assert len(outbox.claim_mail(engine, "w", 10, 30_000)) == 1
    queue.release_expired(engine)


def test_sqlite_runs_no_row_locking_clause(engine_factory: Any) -> None:
    _, engine = engine_factory("sql_sqlite")
    seed(engine)
    ran = statements(engine, lambda: exercise_claims(engine))
    assert any("FROM messages JOIN accounts" in s for s in ran)
    assert not [s for s in ran if "FOR UPDATE" in s or "SKIP LOCKED" in s]


def test_postgresql_claims_skip_locked_rows_of_their_own_table(pg: Engine) -> None:
    ran = statements(pg, lambda: exercise_claims(pg))
    locking = [s for s in ran if "FOR UPDATE" in s]
    # Messages are claimed in one UPDATE whose CTE locks only messages rows, once.
    claim_messages = [s for s in locking if s.startswith("WITH due AS MATERIALIZED (")]
    assert len(claim_messages) == 1
    assert (
        "ORDER BY due_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) UPDATE messages"
        in (claim_messages[0])
    )
    claim_callbacks = [s for s in locking if "FROM callbacks JOIN accounts" in s]
    assert [s[s.index("FOR UPDATE") :] for s in claim_callbacks] == [
        "FOR UPDATE OF callbacks SKIP LOCKED"
    ]
    claim_mail = [s for s in locking if s.startswith("SELECT mail_outbox.id")]
    assert [s[s.index("FOR UPDATE") :] for s in claim_mail] == [
        "FOR UPDATE OF mail_outbox SKIP LOCKED"
    ]
    expire = [s for s in locking if "messages.submitted_at <" in s]
    assert len(expire) == 1 and expire[0].endswith("FOR UPDATE SKIP LOCKED")
    # The sweeps of ended leases skip what is locked too.
    sweeps = [s for s in ran if s.startswith("UPDATE") and "lease_until <" in s]
    assert len(sweeps) == 3 and all(s.endswith("FOR UPDATE SKIP LOCKED)") for s in sweeps)


# --- many claimers ---------------------------------------------------------------------


def test_workers_claiming_at_once_take_each_message_exactly_once(pg: Engine) -> None:
    ids = add_messages(pg, 2_000)
    claimed = at_once(WORKERS, claim_until_empty(lambda w: queue.claim_due(pg, w, 25, 60_000)))
    assert_each_claimed_once(claimed, ids)
    with pg.connect() as conn:
        rows = conn.execute(select(messages.c.id, messages.c.lease_owner, messages.c.attempts))
        owner_of = {sms_id: owner for sms_id, owner, attempts in rows if attempts == 1}
    assert owner_of == {c: f"worker-{i}" for i, per in enumerate(claimed) for c in per}


def test_workers_claiming_callbacks_at_once_take_each_exactly_once(pg: Engine) -> None:
    settled = add_messages(pg, 2_000, status="delivered", result="0000")
    with pg.begin() as conn:
        assert outbox.enqueue_receipts(conn, settled, now_ms()) == 2_000
        ids = list(conn.execute(select(callbacks.c.id)).scalars())
    claimed = at_once(
        WORKERS, claim_until_empty(lambda w: outbox.claim_callbacks(pg, w, 25, 60_000))
    )
    assert_each_claimed_once(claimed, ids)


def test_workers_claiming_mail_at_once_take_each_exactly_once(pg: Engine) -> None:
    settled = add_messages(pg, 2_000, status="delivered", result="0000", receipt_url=None)
    with pg.begin() as conn:
        assert outbox.enqueue_receipts(conn, settled, now_ms()) == 2_000
        ids = list(conn.execute(select(mail_outbox.c.id)).scalars())
    claimed = at_once(WORKERS, claim_until_empty(lambda w: outbox.claim_mail(pg, w, 25, 60_000)))
    assert_each_claimed_once(claimed, ids)


def test_claims_and_lease_sweeps_at_once_never_hand_out_a_held_message(pg: Engine) -> None:
    """Sweeps of ended leases run in every worker, alongside claims and renewals."""
    ids = add_messages(pg, 1_000)

    def work(i: int, barrier: threading.Barrier) -> list[str]:
        owner, held = f"worker-{i}", []
        barrier.wait()
        while jobs := queue.claim_due(pg, owner, 20, 60_000):
            held += [j.id for j in jobs]
            queue.release_expired(pg)
            assert len(queue.extend_leases(pg, owner, held, 60_000)) == len(held)
        return held

    assert_each_claimed_once(at_once(WORKERS, work), ids)


def test_sweeps_of_overdue_messages_at_once_expire_each_once(pg: Engine) -> None:
    ids = add_messages(pg, 600, status="submitted", submitted_at=1)

    def work(i: int, barrier: threading.Barrier) -> int:
        barrier.wait()
        expired = 0
        while done := queue.expire_overdue(pg, now_ms(), limit=20):
            expired += done
        return expired

    assert sum(at_once(WORKERS, work)) == len(ids)
    with pg.connect() as conn:
        events = conn.execute(select(func.count()).select_from(message_events)).scalar_one()
        receipts = conn.execute(select(callbacks.c.message_id)).scalars().all()
    assert events == len(ids)
    assert sorted(receipts) == sorted(ids)  # one receipt each


# --- settling --------------------------------------------------------------------------


def test_parts_of_one_message_settled_at_once_in_two_workers(pg: Engine) -> None:
    """Each worker sees only its own part delivered, unless they take turns."""
    ids = add_messages(pg, 40, parts=2)
    queue.claim_due(pg, "w", 100, 60_000)
    both_parts = [(m, [queue.PartAccepted(p, f"{m}/{p}") for p in (1, 2)]) for m in ids]
    assert queue.record_submitted(pg, "w", both_parts) == set(ids)

    def work(part: int, barrier: threading.Barrier) -> None:
        for sms_id in ids:
            barrier.wait()
            assert queue.record_receipt(pg, [f"{sms_id}/{part + 1}"], "DELIVRD", "000") == sms_id

    at_once(2, work)
    with pg.connect() as conn:
        statuses = Counter(conn.execute(select(messages.c.status)).scalars())
        receipts = conn.execute(select(func.count()).select_from(callbacks)).scalar_one()
    assert statuses == {"delivered": len(ids)}
    assert receipts == len(ids)


def test_parts_of_a_long_inbound_sms_arriving_at_once_in_two_workers(pg: Engine) -> None:
    rounds = 30

    def work(part: int, barrier: threading.Barrier) -> int:
        joined = 0
        for ref in range(rounds):
            barrier.wait()
            data = ("Hello " if part == 0 else f"world {ref}").encode("utf-16-be")
            with pg.begin() as conn:
                joined += len(
                    replies.record_inbound_sms(
                        conn, "61407555001", "61400000000", 8, data, (ref, 2, part + 1)
                    )
                )
        return joined

    assert sum(at_once(2, work)) == rounds
    with pg.connect() as conn:
        texts = sorted(conn.execute(select(inbound.c.text)).scalars())
        left = conn.execute(select(func.count()).select_from(inbound_parts)).scalar_one()
    assert texts == sorted(f"Hello world {ref}" for ref in range(rounds))
    assert left == 0


def test_a_stale_long_sms_is_flushed_once_by_workers_at_once(pg: Engine) -> None:
    with pg.begin() as conn:
        for ref in range(20):
            replies.collect_part(
                conn, "61407555001", "61400000000", ref, 3, 1, 8, "part".encode("utf-16-be")
            )
        conn.execute(update(inbound_parts).values(received_at=1))

    def work(i: int, barrier: threading.Barrier) -> int:
        barrier.wait()
        with pg.begin() as conn:
            return len(replies.flush_stale_parts(conn, now_ms() - 60_000))

    assert sum(at_once(WORKERS, work)) == 20
    with pg.connect() as conn:
        assert conn.execute(select(func.count()).select_from(inbound_parts)).scalar_one() == 0
