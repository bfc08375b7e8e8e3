"""The queue in the messages table, against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update

from roxgate.accounts import admin
from roxgate.dispatch import queue
from roxgate.rox.codes import Result
from roxgate.store.ids import new_id, now_ms
from roxgate.store.schema import mail_outbox, message_events, message_parts, messages, traffic


@pytest.fixture
def engine(store_factory: Any) -> Any:
    engine = store_factory("queue")
    admin.add_account(engine, "CI00000001", "A", sender_id="Clinic")
    return engine


def add_message(engine: Any, due_in_ms: int = 0, parts: int = 1) -> str:
    sms_id = new_id()
    now = now_ms()
    with engine.begin() as conn:
        conn.execute(
            insert(messages),
            {
                "id": sms_id, "request_id": "r", "account_id": "CI00000001", "user_id": 1,
                "dest_tn": "+61407555001", "dest_country": "AU", "text": "hi", "encoding": "gsm",
                "parts": parts, "due_at": now + due_in_ms, "receipt_flag": 1, "reply_type": "E",
                "status": "queued", "created_at": now, "updated_at": now,
            },
        )  # fmt: skip
    return sms_id


def status(engine: Any, sms_id: str) -> tuple[str, str | None]:
    with engine.connect() as conn:
        row = conn.execute(
            select(messages.c.status, messages.c.result).where(messages.c.id == sms_id)
        ).one()
    return row[0], row[1]


def test_claim_takes_due_messages_once_in_due_order(engine: Any) -> None:
    later = add_message(engine, due_in_ms=60_000)
    first = add_message(engine, due_in_ms=-2000)
    second = add_message(engine, due_in_ms=-1000)
    claimed = queue.claim_due(engine, "w1", 10, lease_ms=30_000)
    assert [c.id for c in claimed] == [first, second]
    assert claimed[0].sender_id == "Clinic" and claimed[0].attempts == 1
    assert queue.claim_due(engine, "w2", 10, lease_ms=30_000) == []  # leased to w1
    assert status(engine, later) == ("queued", None)
    assert queue.next_due(engine) is not None


def test_expired_lease_returns_the_message_and_stale_owner_cannot_record(engine: Any) -> None:
    sms_id = add_message(engine)
    queue.claim_due(engine, "dead-worker", 10, lease_ms=1)
    time.sleep(0.01)
    assert queue.release_expired(engine) == 1
    again = queue.claim_due(engine, "w2", 10, lease_ms=30_000)
    assert [c.id for c in again] == [sms_id] and again[0].attempts == 2
    # The first worker comes back from a stall: nothing it records counts.
    stale = [(sms_id, [queue.PartAccepted(1, "x")])]
    assert queue.record_submitted(engine, "dead-worker", stale) == set()
    assert queue.record_submitted(engine, "w2", [(sms_id, [queue.PartAccepted(1, "abc")])]) == {
        sms_id
    }
    assert status(engine, sms_id) == ("submitted", None)


def test_multipart_delivered_only_when_every_part_is(engine: Any) -> None:
    sms_id = add_message(engine, parts=2)
    queue.claim_due(engine, "w", 10, lease_ms=30_000)
    queue.record_submitted(
        engine, "w", [(sms_id, [queue.PartAccepted(1, "a1"), queue.PartAccepted(2, "a2")])]
    )
    assert queue.record_receipt(engine, ["zz", "a1"], "DELIVRD", "000") == sms_id
    assert status(engine, sms_id) == ("submitted", None)
    assert queue.record_receipt(engine, ["a2"], "ENROUTE", None) == sms_id
    assert status(engine, sms_id) == ("submitted", None)
    queue.record_receipt(engine, ["a2"], "DELIVRD", "000")
    assert status(engine, sms_id) == ("delivered", "0000")
    with engine.connect() as conn:
        events = (
            conn.execute(
                select(message_events.c.event).where(message_events.c.message_id == sms_id)
            )
            .scalars()
            .all()
        )
    # The normal path is in the message and part rows; events keep the rest.
    assert events == ["receipt"]
    with engine.connect() as conn:
        parts = conn.execute(
            select(message_parts.c.part_no, message_parts.c.carrier_id, message_parts.c.status)
            .where(message_parts.c.message_id == sms_id)
            .order_by(message_parts.c.part_no)
        ).all()
    assert [tuple(p) for p in parts] == [(1, "a1", "delivered"), (2, "a2", "delivered")]


def test_receipts_in_one_batch(engine: Any) -> None:
    """A batch mixes messages, parts of one message, failures and unknown ids."""
    assert admin.add_user(engine, "CI00000001", "ops@example.org", "password1") == 1
    single, double, failing = add_message(engine), add_message(engine, parts=2), add_message(engine)
    queue.claim_due(engine, "w", 10, lease_ms=30_000)
    recorded = queue.record_submitted(
        engine,
        "w",
        [
            (single, [queue.PartAccepted(1, "c1")]),
            (double, [queue.PartAccepted(1, "d1"), queue.PartAccepted(2, "d2")]),
            (failing, [queue.PartAccepted(1, "f1")]),
        ],
    )
    assert recorded == {single, double, failing}
    with engine.connect() as conn:
        submitted = conn.execute(
            select(func.sum(traffic.c.count)).where(traffic.c.kind == "submitted")
        ).scalar_one()
    assert submitted == 3  # the console's charts count them, on either database
    found = queue.record_receipts(
        engine,
        [
            queue.Receipt(("C1", "c1"), "DELIVRD"),  # found by its second form
            queue.Receipt(("d1",), "DELIVRD"),
            queue.Receipt(("nobody",), "DELIVRD"),
            queue.Receipt(("d2",), "DELIVRD"),
            queue.Receipt(("f1",), "UNDELIV", "001"),
        ],
    )
    assert found.found == [single, double, None, double, failing]
    with engine.connect() as conn:
        mails = conn.execute(select(func.count()).select_from(mail_outbox)).scalar_one()
    # ReceiptFlag 1 without a URL: one e-mail per message now final, and the
    # count the callback and mail workers are woken for.
    assert found.reports == mails == 3
    assert status(engine, single) == ("delivered", "0000")
    assert status(engine, double) == ("delivered", "0000")
    assert status(engine, failing) == ("failed", "2060")


@pytest.mark.parametrize(
    ("state", "code"),
    [
        ("UNDELIV", "2060"),
        ("EXPIRED", "2061"),
        ("REJECTD", "2062"),
        ("DELETED", "2063"),
        ("UNKNOWN", "2064"),
    ],
)
def test_one_failed_part_fails_the_message(engine: Any, state: str, code: str) -> None:
    sms_id = add_message(engine, parts=2)
    queue.claim_due(engine, "w", 10, lease_ms=30_000)
    queue.record_submitted(
        engine, "w", [(sms_id, [queue.PartAccepted(1, "b1"), queue.PartAccepted(2, "b2")])]
    )
    queue.record_receipt(engine, ["b1"], state, "001")
    assert status(engine, sms_id) == ("failed", code)
    queue.record_receipt(engine, ["b2"], "DELIVRD", "000")  # too late to change the outcome
    assert status(engine, sms_id) == ("failed", code)


def test_retry_and_failure_at_submission(engine: Any) -> None:
    retried = add_message(engine)
    failed = add_message(engine)
    queue.claim_due(engine, "w", 10, lease_ms=30_000)
    assert queue.record_retry(engine, "w", retried, 60_000, "throttled")
    assert queue.record_failed(engine, "w", failed, Result.REJECTED, "ESME_RINVDSTADR")
    assert status(engine, retried) == ("queued", None)
    assert status(engine, failed) == ("failed", "2062")
    assert queue.claim_due(engine, "w", 10, lease_ms=30_000) == []  # not due for a minute
    with engine.begin() as conn:
        conn.execute(update(messages).where(messages.c.id == retried).values(due_at=0))
    assert [c.id for c in queue.claim_due(engine, "w", 10, lease_ms=30_000)] == [retried]


def test_unknown_receipt(engine: Any) -> None:
    assert queue.record_receipt(engine, ["nope"], "DELIVRD", None) is None
    with engine.connect() as conn:
        assert conn.execute(select(message_parts)).all() == []


def test_throttled_retry_gives_its_attempt_back(engine: Any) -> None:
    sms_id = add_message(engine)
    for _ in range(3):
        [claimed] = queue.claim_due(engine, "w", 10, lease_ms=30_000)
        assert claimed.attempts == 1  # never closer to 2065 for being throttled
        assert queue.record_retry(engine, "w", sms_id, 0, "throttled", count_attempt=False)
    [claimed] = queue.claim_due(engine, "w", 10, lease_ms=30_000)
    assert queue.record_retry(engine, "w", sms_id, 0, "ESME_RSYSERR")
    assert queue.claim_due(engine, "w", 10, lease_ms=30_000)[0].attempts == 2


def test_submitted_without_final_state_expires_with_2064(engine: Any) -> None:
    old, recent, waiting = add_message(engine), add_message(engine), add_message(engine, 60_000)
    queue.claim_due(engine, "w", 10, lease_ms=30_000)
    queue.record_submitted(
        engine, "w", [(old, [queue.PartAccepted(1, "o1")]), (recent, [queue.PartAccepted(1, "r1")])]
    )
    with engine.begin() as conn:
        conn.execute(update(messages).where(messages.c.id == old).values(submitted_at=1_000))
    assert queue.expire_overdue(engine, submitted_before_ms=now_ms() - 60_000) == 1
    assert status(engine, old) == ("expired", "2064")
    assert status(engine, recent) == ("submitted", None)
    assert status(engine, waiting) == ("queued", None)
    # A receipt that comes after all does not change a final state.
    queue.record_receipt(engine, ["o1"], "DELIVRD", "000")
    assert status(engine, old) == ("expired", "2064")
    assert queue.expire_overdue(engine, submitted_before_ms=now_ms() - 60_000) == 0


def test_heartbeat_keeps_the_lease_and_unsent_messages_go_back(engine: Any) -> None:
    kept, unsent = add_message(engine), add_message(engine)
    queue.claim_due(engine, "w", 10, lease_ms=1)
    assert queue.extend_leases(engine, "w", [kept, unsent], 30_000) == {kept, unsent}
    assert queue.extend_leases(engine, "other", [kept, unsent], 30_000) == set()
    time.sleep(0.01)
    assert queue.release_expired(engine) == 0  # renewed: nobody else may take them
    assert queue.release_unsent(engine, "other", [unsent]) == 0
    assert queue.release_unsent(engine, "w", [unsent]) == 1
    assert status(engine, kept) == ("submitting", None)
    [again] = queue.claim_due(engine, "w2", 10, lease_ms=30_000)
    assert again.id == unsent and again.attempts == 1  # the unsent claim did not count
