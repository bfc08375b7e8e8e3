"""The callbacks and mail outboxes' claims and records, against SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select, update

from roxgate.accounts import admin
from roxgate.callbacks.mail import release_mail
from roxgate.report import outbox
from roxgate.report.outbox import CallbackResult, MailResult
from roxgate.store.ids import new_id, now_ms
from roxgate.store.schema import callback_attempts, callbacks, mail_outbox, messages


@pytest.fixture
def engine(store_factory: Any) -> Engine:
    engine: Engine = store_factory("outbox")
    admin.add_account(engine, "CI00000001", "A")
    admin.add_user(engine, "CI00000001", "user@example.com", "password1")
    return engine


def final_message(
    engine: Engine, result: str = "0000", receipt_flag: int = 1, url: str | None = "https://h/r"
) -> str:
    sms_id, now = new_id(), now_ms()
    with engine.begin() as conn:
        conn.execute(
            insert(messages),
            {
                "id": sms_id, "request_id": "req-1", "account_id": "CI00000001", "user_id": 1,
                "dest_tn": "+61407555001", "dest_country": "AU", "dest_name": "Jo",
                "text": "hi", "encoding": "gsm", "parts": 1, "due_at": now,
                "receipt_flag": receipt_flag, "receipt_url": url, "reply_type": "E",
                "status": "delivered" if result == "0000" else "failed", "result": result,
                "result_text": "Delivered" if result == "0000" else "Undeliverable",
                "created_at": now, "updated_at": now, "final_at": now,
            },
        )  # fmt: skip
    return sms_id


def callback(engine: Engine, next_in_ms: int = 0) -> str:
    """A receipt callback, as a message's settling queues it, due ``next_in_ms`` from now."""
    sms_id = final_message(engine)
    with engine.begin() as conn:
        assert outbox.enqueue_receipts(conn, [sms_id], now_ms()) == 1
        callback_id = conn.execute(
            select(callbacks.c.id).where(callbacks.c.message_id == sms_id)
        ).scalar_one()
        conn.execute(
            update(callbacks)
            .where(callbacks.c.id == callback_id)
            .values(next_at=now_ms() + next_in_ms)
        )
    return callback_id


def mail(engine: Engine, next_in_ms: int = 0) -> str:
    sms_id = final_message(engine, url=None)
    with engine.begin() as conn:
        mail_id = outbox.queue_mail(
            conn, account_id="CI00000001", kind="receipt", message_id=sms_id,
            to_addr="user@example.com", subject="S", body="B", now=now_ms(),
        )  # fmt: skip
        conn.execute(
            update(mail_outbox)
            .where(mail_outbox.c.id == mail_id)
            .values(next_at=now_ms() + next_in_ms)
        )
    return mail_id


def row(engine: Engine, table: Any, row_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(table).where(table.c.id == row_id)).one()


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_enqueue_receipts_follows_the_receipt_flag(engine: Engine) -> None:
    hooked = final_message(engine)
    mailed = final_message(engine, url=None)
    ok_only_failures = final_message(engine, receipt_flag=2)
    failed = final_message(engine, result="2060", receipt_flag=2)
    silent = final_message(engine, receipt_flag=0)
    with engine.begin() as conn:
        queued = outbox.enqueue_receipts(
            conn, [hooked, mailed, ok_only_failures, failed, silent], now_ms()
        )
    assert queued == 3
    with engine.connect() as conn:
        hooks = conn.execute(select(callbacks.c.message_id, callbacks.c.body)).all()
        mails = conn.execute(select(mail_outbox.c.message_id, mail_outbox.c.to_addr)).all()
    assert sorted(h.message_id for h in hooks) == sorted([hooked, failed])
    assert all(isinstance(h.body, bytes) and h.body.startswith(b"{") for h in hooks)
    assert [tuple(m) for m in mails] == [(mailed, "user@example.com")]


def test_claim_callbacks_oldest_first_and_once(engine: Engine) -> None:
    second, first = callback(engine, -1000), callback(engine, -2000)
    third, later = callback(engine), callback(engine, 60_000)
    jobs = outbox.claim_callbacks(engine, "w1", 2, lease_ms=30_000)
    assert [j.id for j in jobs] == [first, second]
    assert b'"ROX_API_Receipt"' in jobs[0].body and jobs[0].attempts == 0
    assert jobs[0].secret == admin.callback_secret(engine, "CI00000001")
    assert [j.id for j in outbox.claim_callbacks(engine, "w2", 10, 30_000)] == [third]
    assert outbox.claim_callbacks(engine, "w3", 10, 30_000) == []
    assert row(engine, callbacks, later).status == "pending"
    assert (row(engine, callbacks, first).status, row(engine, callbacks, first).lease_owner) == (
        "sending", "w1",
    )  # fmt: skip


def test_an_ended_callback_lease_is_claimed_again_and_the_old_owner_changes_nothing(
    engine: Engine,
) -> None:
    callback_id = callback(engine)
    outbox.claim_callbacks(engine, "stalled", 10, lease_ms=1)
    time.sleep(0.01)
    assert [j.id for j in outbox.claim_callbacks(engine, "w2", 10, 30_000)] == [callback_id]
    assert outbox.extend_callback_leases(engine, "stalled", [callback_id], 30_000) == 0
    late = CallbackResult(callback_id, now_ms(), 5, "ok", http_status=200)
    assert outbox.record_callback_attempts(engine, "stalled", [late]) == 0
    assert row(engine, callbacks, callback_id).status == "sending"  # still w2's
    assert count(engine, callback_attempts) == 1  # the attempt happened: it is kept


def test_record_callback_attempts(engine: Engine) -> None:
    ok, retry, final = callback(engine), callback(engine), callback(engine)
    outbox.claim_callbacks(engine, "w", 10, 30_000)
    again_at = now_ms() + 60_000
    mailed = outbox.record_callback_attempts(
        engine,
        "w",
        [
            CallbackResult(ok, now_ms(), 12, "ok", http_status=200),
            CallbackResult(retry, now_ms(), 30, "retry", http_status=500, error="HTTP 500",
                           next_at=again_at),
            CallbackResult(final, now_ms(), 8, "final", http_status=404, error="HTTP 404"),
        ],
    )  # fmt: skip
    assert mailed == 1
    assert (row(engine, callbacks, ok).status, row(engine, callbacks, ok).attempts) == (
        "delivered", 1,
    )  # fmt: skip
    retried = row(engine, callbacks, retry)
    assert (retried.status, retried.next_at, retried.last_error) == (
        "pending", again_at, "HTTP 500",
    )  # fmt: skip
    assert retried.lease_owner is None
    assert row(engine, callbacks, final).status == "failed"
    with engine.connect() as conn:
        attempts = conn.execute(
            select(callback_attempts.c.callback_id, callback_attempts.c.http_status)
        ).all()
        [replacement] = conn.execute(select(mail_outbox)).all()
    assert sorted(tuple(a) for a in attempts) == sorted([(ok, 200), (retry, 500), (final, 404)])
    assert replacement.to_addr == "user@example.com" and replacement.status == "pending"


def test_extend_and_release_callbacks(engine: Engine) -> None:
    kept, given_back = callback(engine), callback(engine)
    outbox.claim_callbacks(engine, "w", 10, lease_ms=1)
    assert outbox.extend_callback_leases(engine, "w", [kept, given_back], 30_000) == 2
    time.sleep(0.01)
    assert outbox.claim_callbacks(engine, "other", 10, 30_000) == []  # renewed
    assert outbox.release_callbacks(engine, "other", [given_back], now_ms()) == 0
    assert outbox.release_callbacks(engine, "w", [given_back], now_ms()) == 1
    [job] = outbox.claim_callbacks(engine, "other", 10, 30_000)
    assert job.id == given_back and job.attempts == 0  # nothing was posted


def test_claim_and_record_mail(engine: Engine) -> None:
    sent, retried, failed = mail(engine, -3000), mail(engine, -2000), mail(engine, -1000)
    not_yet = mail(engine, 60_000)
    jobs = outbox.claim_mail(engine, "w", 10, 30_000)
    assert [j.id for j in jobs] == [sent, retried, failed]
    assert (jobs[0].to_addr, jobs[0].subject, jobs[0].body, jobs[0].attempts) == (
        "user@example.com", "S", "B", 0,
    )  # fmt: skip
    assert outbox.claim_mail(engine, "w2", 10, 30_000) == []
    again_at = now_ms() + 60_000
    outbox.record_mail_results(
        engine,
        "w",
        [
            MailResult(sent, True),
            MailResult(retried, False, "451 busy", next_at=again_at),
            MailResult(failed, False, "550 no such user"),
        ],
    )
    assert row(engine, mail_outbox, sent).status == "sent"
    assert row(engine, mail_outbox, sent).sent_at is not None
    again = row(engine, mail_outbox, retried)
    assert (again.status, again.next_at, again.last_error) == ("pending", again_at, "451 busy")
    assert row(engine, mail_outbox, failed).status == "failed"
    assert row(engine, mail_outbox, failed).attempts == 1
    assert row(engine, mail_outbox, not_yet).status == "pending"


def test_mail_leases_end_and_unsent_mail_goes_back(engine: Engine) -> None:
    given_back, stalled = mail(engine, -2000), mail(engine, -1000)
    assert [j.id for j in outbox.claim_mail(engine, "w", 1, lease_ms=30_000)] == [given_back]
    assert [j.id for j in outbox.claim_mail(engine, "stalled", 1, lease_ms=1)] == [stalled]
    time.sleep(0.01)
    assert [j.id for j in outbox.claim_mail(engine, "w2", 10, 30_000)] == [stalled]
    outbox.record_mail_results(engine, "stalled", [MailResult(stalled, True)])
    assert row(engine, mail_outbox, stalled).status == "sending"  # w2's now
    with engine.begin() as conn:
        assert release_mail(conn, "other", [given_back]) == 0
        assert release_mail(conn, "w", [given_back]) == 1
    assert [j.id for j in outbox.claim_mail(engine, "w3", 10, 30_000)] == [given_back]
