"""The /metrics backlog counts, on real SQLite and PostgreSQL databases."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert

from roxgate.store.backlog import backlog
from roxgate.store.ids import new_id, now_ms
from roxgate.store.schema import callbacks, mail_outbox, messages


def _message(status: str, due_at: int) -> dict[str, Any]:
    return {
        "id": new_id(), "request_id": "r", "account_id": "CI00000001", "user_id": 1,
        "dest_tn": "+61407555001", "dest_country": "AU", "text": "hi", "encoding": "gsm",
        "parts": 1, "due_at": due_at, "receipt_flag": 1, "reply_type": "E",
        "status": status, "created_at": due_at, "updated_at": due_at,
    }  # fmt: skip


def _outbox(status: str, at: int) -> dict[str, Any]:
    return {
        "id": new_id(), "account_id": "CI00000001", "kind": "receipt", "message_id": new_id(),
        "status": status, "attempts": 0, "next_at": at, "created_at": at, "updated_at": at,
    }  # fmt: skip


def test_backlog_counts_live_states_only(store_factory: Any) -> None:
    engine = store_factory("backlog")
    assert backlog(engine, now_ms()) == {
        "queued": 0, "scheduled": 0, "submitting": 0, "submitted": 0, "callbacks": 0, "mail": 0,
    }  # fmt: skip
    now = now_ms()
    rows = [
        _message("queued", now - 5_000),
        _message("queued", now),  # due this very millisecond: due
        _message("queued", now + 1),
        _message("queued", now + 3_600_000),
        _message("queued", now + 7_200_000),
        _message("submitting", now - 1_000),
        *(_message("submitted", now - 1_000) for _ in range(3)),
        # Final states: never counted.
        *(_message(s, now - 1_000) for s in ("delivered", "delivered", "failed", "expired")),
    ]
    hooks = [
        {**_outbox(s, now), "url": "http://example.com/r", "body": b"{}"}
        for s in ("pending", "pending", "sending", "delivered", "failed")
    ]
    mails = [
        {**_outbox(s, now), "to_addr": "a@example.com", "subject": "s", "body": "b"}
        for s in ("pending", "sending", "sent", "sent", "failed")
    ]
    with engine.begin() as conn:
        conn.execute(insert(messages), rows)
        conn.execute(insert(callbacks), hooks)
        conn.execute(insert(mail_outbox), mails)
    assert backlog(engine, now) == {
        "queued": 2, "scheduled": 3, "submitting": 1, "submitted": 3, "callbacks": 3, "mail": 2,
    }  # fmt: skip
    # In a caller's transaction too (a Connection).
    with engine.connect() as conn:
        assert backlog(conn, now + 3_600_000)["queued"] == 4
