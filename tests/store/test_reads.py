"""Request-path reads, operator listings and message history, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from roxgate.accounts import admin
from roxgate.dispatch import queue
from roxgate.report import outbox, replies
from roxgate.report.outbox import CallbackResult
from roxgate.rox.codes import Result
from roxgate.store import history, reads
from roxgate.store.ids import new_id, now_ms
from roxgate.store.schema import idempotency_keys, messages, unmatched_receipts


@pytest.fixture
def engine(store_factory: Any) -> Engine:
    engine: Engine = store_factory("reads")
    admin.add_account(engine, "CI00000001", "A", credits=10, allowed_countries="AU,NZ")
    admin.add_user(engine, "CI00000001", "user@example.com", "password1", mobile="+61400000001")
    return engine


def test_login_and_its_failure_count(engine: Engine) -> None:
    login = reads.load_login(engine, "CI00000001", "user@example.com")
    assert login is not None
    assert login["api_enabled"] is True and login["credits"] == 10
    assert (login["region"], login["allowed_countries"]) == ("AU", "AU,NZ")
    assert reads.load_login(engine, "CI00000001", "nobody@example.com") is None
    user_id = login["user_id"]
    assert not reads.record_login_failure(engine, user_id, 2, now_ms() + 60_000)
    assert reads.record_login_failure(engine, user_id, 2, now_ms() + 60_000)
    login = reads.load_login(engine, "CI00000001", "user@example.com")
    assert login is not None and login["failed_logins"] == 0 and login["locked_until"]
    reads.record_login_success(engine, user_id, "$argon2id$new")
    login = reads.load_login(engine, "CI00000001", "user@example.com")
    assert login is not None
    assert (login["password_hash"], login["locked_until"]) == ("$argon2id$new", None)


def test_number_lists(engine: Engine) -> None:
    admin.change_number_list(engine, "CI00000001", "block", ["0407 555 001", "+64211234567"], True)
    admin.change_number_list(engine, "CI00000001", "optout", ["+61407555001"], add=True)
    found = reads.listed_numbers(engine, "CI00000001", ["+61407555001", "+61407555002"] * 3)
    assert found == {"+61407555001": {"block", "optout"}}
    assert reads.listed_numbers(engine, "CI00000001", []) == {}
    assert reads.listed_numbers(engine, "CI00000002", ["+61407555001"]) == {}
    listed = admin.list_number_lists(engine, "CI00000001")
    assert [(r["kind"], r["number"]) for r in listed] == [
        ("block", "+61407555001"), ("block", "+64211234567"), ("optout", "+61407555001"),
    ]  # fmt: skip
    admin.change_number_list(engine, "CI00000001", "block", ["+64211234567"], add=False)
    assert len(admin.list_number_lists(engine, "CI00000001", "block")) == 1


def test_idempotency_lookup_returns_bytes(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(idempotency_keys),
            {"account_id": "CI00000001", "key": "k", "request_hash": b"\x00" * 32,
             "response": b'{"Result": "0000"}', "created_at": 1_000},
        )  # fmt: skip
    assert reads.find_idempotent(engine, "CI00000001", "k", 500) == (
        b"\x00" * 32, b'{"Result": "0000"}',
    )  # fmt: skip
    assert reads.find_idempotent(engine, "CI00000001", "k", 2_000) is None  # expired
    with engine.connect() as conn:
        assert reads.find_idempotent(conn, "CI00000001", "k", 0) is not None


def test_operator_listings(engine: Engine) -> None:
    admin.add_account(engine, "CI00000002", "B", api_enabled=False)
    accounts = admin.list_accounts(engine)
    assert [(a["id"], a["api_enabled"]) for a in accounts] == [
        ("CI00000001", True), ("CI00000002", False),
    ]  # fmt: skip
    assert "callback_secret" not in accounts[0]
    assert [u["email"] for u in admin.list_users(engine, "CI00000001")] == ["user@example.com"]
    with pytest.raises(admin.AdminError):
        admin.add_account(engine, "CI00000002", "again")
    with pytest.raises(admin.AdminError):
        admin.add_user(engine, "CI00000001", "USER@example.com", "password2")


def test_message_history_and_recent_lists(engine: Engine) -> None:
    sms_id, now = new_id(), now_ms()
    with engine.begin() as conn:
        conn.execute(
            insert(messages),
            {
                "id": sms_id, "request_id": "r", "account_id": "CI00000001", "user_id": 1,
                "dest_tn": "+61407555001", "dest_country": "AU", "text": "hi", "encoding": "gsm",
                "parts": 2, "due_at": now, "receipt_flag": 1, "receipt_url": "https://h/r",
                "reply_type": "E", "status": "queued", "created_at": now, "updated_at": now,
            },
        )  # fmt: skip
    [claimed] = queue.claim_due(engine, "w", 10, 30_000)
    assert queue.record_retry(engine, "w", claimed.id, -1, "throttled", count_attempt=False)
    queue.claim_due(engine, "w", 10, 30_000)
    parts = [queue.PartAccepted(1, "c1"), queue.PartAccepted(2, "c2")]
    assert queue.record_submitted(engine, "w", [(sms_id, parts)]) == {sms_id}
    queue.record_receipt(engine, ["c1"], "DELIVRD", "000")
    queue.record_receipt(engine, ["c2"], "UNDELIV", "001")
    queue.record_unmatched_receipt(engine, "zz" * 40, "DELIVRD", None, "61407555001", "6140")
    [job] = outbox.claim_callbacks(engine, "cb", 10, 30_000)
    failed = CallbackResult(job.id, now_ms(), 7, "final", http_status=410, error="HTTP 410")
    assert outbox.record_callback_attempts(engine, "cb", [failed]) == 1
    with engine.begin() as conn:
        replies.record_inbound(conn, "61407555001", "6140", "thanks", source_ton=1)

    found = history.message_history(engine, sms_id)
    assert found is not None
    row, steps = found
    assert (row["status"], row["result"]) == ("failed", Result.UNDELIVERABLE.value)
    expected = {"queued", "retry", "submitted", "receipt DELIVRD", "receipt UNDELIV", "failed",
                "receipt callback", "callback attempt", "receipt e-mail", "reply"}  # fmt: skip
    assert expected <= {s.what for s in steps}
    assert [s.at for s in steps] == sorted(s.at for s in steps)
    assert history.message_history(engine, "no-such-id") is None

    assert [m["id"] for m in history.recent_messages(engine, status="failed")] == [sms_id]
    assert history.recent_messages(engine, status="queued") == []
    [reply] = history.recent_inbound(engine)
    assert (reply["matched_message_id"], reply["action"]) == (sms_id, "mail")
    assert history.recent_inbound(engine, unmatched_only=True) == []
    assert {m["kind"] for m in history.recent_mail(engine, status="pending")} == {
        "receipt", "reply",
    }  # fmt: skip
    [hook] = history.recent_callbacks(engine, status="failed")
    assert (hook["attempts"], hook["last_error"]) == (1, "HTTP 410")
    with engine.connect() as conn:
        [kept] = conn.execute(select(unmatched_receipts)).all()
    assert len(kept.carrier_id) == 64 and kept.state == "DELIVRD"
