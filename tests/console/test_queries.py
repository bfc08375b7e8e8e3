"""The console's store functions on SQLite and PostgreSQL: operators, sessions, page queries."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from roxgate.accounts import admin
from roxgate.console import operators, queries, sessions
from roxgate.console.charts import nice_ceiling
from roxgate.console.sessions import SessionPolicy
from roxgate.store import traffic
from roxgate.store.ids import new_id, now_ms
from roxgate.store.schema import (
    callbacks,
    console_sessions,
    inbound,
    message_parts,
    messages,
    requests,
)

POLICY = SessionPolicy(lifetime_ms=3_600_000, idle_ms=600_000, secure="auto")


def old_id(ms: int) -> str:
    """A UUIDv7 text made at ``ms`` (the first 48 bits are the time)."""
    h = f"{ms:012x}"
    return f"{h[:8]}-{h[8:]}-7abc-8def-0123456789ab"


def add_message(
    engine: Engine,
    *,
    sms_id: str | None = None,
    request_id: str = "",
    dest_tn: str = "+61407555001",
    status: str = "delivered",
    product: str = "reminders",
    due_in_ms: int = 0,
    at: int | None = None,
) -> str:
    at = now_ms() if at is None else at
    sms_id = sms_id or new_id()
    with engine.begin() as conn:
        conn.execute(
            insert(messages),
            {
                "id": sms_id, "request_id": request_id or sms_id, "account_id": "CI00000001",
                "user_id": 1, "product": product, "dest_tn": dest_tn, "dest_country": "AU",
                "text": "Hello", "encoding": "gsm", "parts": 1, "due_at": at + due_in_ms,
                "receipt_flag": 1, "reply_type": "E", "status": status,
                "created_at": at, "updated_at": at,
            },
        )  # fmt: skip
    return sms_id


def test_operator_lockout_records(store_factory: Any) -> None:
    engine = store_factory("console_operators")
    operator_id = operators.add_operator(engine, " Alice ", "long enough password")
    found = operators.load_login(engine, "ALICE")
    assert found is not None and found.id == operator_id and found.username == "alice"
    assert found.password_hash.startswith("$argon2id$")
    assert operators.load_login(engine, "bob") is None
    assert operators.load_login(engine, "not a valid name!") is None
    lock_until = now_ms() + 900_000
    with engine.begin() as conn:
        assert [operators.record_failure(conn, operator_id, 5, lock_until) for _ in range(5)] == [
            False, False, False, False, True,
        ]  # fmt: skip
    locked = operators.load_login(engine, "alice")
    assert locked is not None and locked.locked_until == lock_until
    with engine.begin() as conn:
        operators.record_success(conn, operator_id, 123, None)
    row = operators.list_operators(engine)[0]
    assert row["failed_logins"] == 0 and row["locked_until"] is None
    assert row["last_login_at"] == 123
    operators.set_operator_status(engine, "alice", "disabled")
    assert operators.list_operators(engine)[0]["status"] == "disabled"
    with pytest.raises(admin.AdminError, match="no operator"):
        operators.set_operator_password(engine, "nobody", "long enough password")


def test_session_lifecycle(store_factory: Any) -> None:
    engine = store_factory("console_sessions")
    operator_id = operators.add_operator(engine, "carol", "long enough password")
    now = now_ms()
    with engine.begin() as conn:
        token = sessions.create(conn, operator_id, "203.0.113.9", POLICY, now)
    session_id = sessions.token_hash(token)
    session = sessions.load(engine, session_id)
    assert session is not None and session.username == "carol"
    assert session.expires_at == now + POLICY.lifetime_ms and len(session.csrf_token) >= 43
    assert sessions.alive(session, POLICY, now + 1)
    assert not sessions.alive(session, POLICY, now + POLICY.idle_ms)
    assert sessions.load(engine, token) is None  # the token itself is not a key
    with engine.begin() as conn:
        sessions.touch(conn, session_id, now + 500_000)
        # Idle since ``now`` would be pruned at now + idle; the touch kept it.
        assert sessions.prune(conn, now + POLICY.idle_ms + 1, POLICY.idle_ms) == 0
        assert sessions.prune(conn, now + 500_000 + POLICY.idle_ms, POLICY.idle_ms) == 1
    assert sessions.load(engine, session_id) is None
    with engine.begin() as conn:
        token = sessions.create(conn, operator_id, None, POLICY, now)
    operators.set_operator_status(engine, "carol", "disabled")
    assert sessions.load(engine, sessions.token_hash(token)) is None  # disabled: no session
    with engine.begin() as conn:
        sessions.end(conn, sessions.token_hash(token))
        assert conn.execute(select(console_sessions)).first() is None


def test_page_queries(store_factory: Any) -> None:
    engine = store_factory("console_pages")
    admin.add_account(engine, "CI00000001", "Main")
    admin.add_user(engine, "CI00000001", "user@example.com", "password 123")
    admin.change_number_list(engine, "CI00000001", "optout", ["+61407555998"], add=True)
    now = now_ms()
    request_id = new_id()
    with engine.begin() as conn:
        conn.execute(
            insert(requests),
            {"id": request_id, "account_id": "CI00000001", "user_id": 1, "product": "reminders",
             "client_ip": "127.0.0.1", "recipients": 2, "queued": 2, "received_at": now},
        )  # fmt: skip
        traffic.count(conn, {"accepted": 3, "delivered": 2, "failed": 1}, now)
        traffic.count(conn, {"accepted": 5}, now - 5 * 3_600_000)  # earlier today, not this hour
    delivered = add_message(engine, request_id=request_id, dest_tn="+61407555123")
    add_message(engine, request_id=request_id, status="queued", due_in_ms=3_600_000)
    add_message(engine, status="queued", due_in_ms=-1000)
    ten_days_ago = now - 10 * 86_400_000
    old = add_message(engine, sms_id=old_id(ten_days_ago), dest_tn="+61407555123", at=ten_days_ago)
    with engine.begin() as conn:
        conn.execute(
            insert(message_parts),
            {"message_id": delivered, "part_no": 1, "carrier_id": "abc123", "status": "delivered",
             "carrier_state": "DELIVRD", "submitted_at": now, "updated_at": now},
        )  # fmt: skip
        for i, (status, attempts) in enumerate([("failed", 7), ("pending", 2), ("delivered", 1)]):
            conn.execute(
                insert(callbacks),
                {"id": new_id(), "account_id": "CI00000001", "kind": "receipt",
                 "message_id": delivered, "url": "https://down.example/hook", "body": b"{}",
                 "status": status, "attempts": attempts, "next_at": now + i,
                 "last_error": f"HTTP 503 ({i})" if status != "delivered" else None,
                 "created_at": now, "updated_at": now + i},
            )  # fmt: skip
        conn.execute(
            insert(inbound),
            {"id": new_id(), "source": "+61400000009", "destination": "+61400000000",
             "text": "who is this", "received_at": now, "action": "unmatched"},
        )  # fmt: skip

    view = queries.overview(engine, now)
    assert view.hour_totals["accepted"] == 3 and view.day_totals["accepted"] == 8
    assert view.hour_totals["delivered"] == 2 and view.hour_totals["failed"] == 1
    assert view.due_now == 1 and view.scheduled == 1
    assert view.next_scheduled_at is not None and view.next_scheduled_at > now
    assert view.callbacks_retrying == 1 and view.callbacks_failed_day == 1
    assert not view.hour.empty and len(view.hour.series) == 4
    hour_points = {s.kind: s.points.split() for s in view.hour.series}
    assert len(hour_points["accepted"]) == 60 and len(view.day.series[0].points.split()) == 96

    search = queries.MessageSearch
    assert [m["id"] for m in queries.search_messages(engine, search(number="0407555123"))] == [
        delivered
    ]
    found = queries.search_messages(engine, search(number="+61407555123", days=30))
    assert [m["id"] for m in found] == [delivered, old]  # newest first
    assert [m["id"] for m in queries.search_messages(engine, search(sms_id=old))] == [old]
    by_request = queries.search_messages(engine, search(request_id=request_id))
    assert len(by_request) == 2
    assert len(queries.search_messages(engine, search(status="queued"))) == 2
    assert queries.search_messages(engine, search(product="none such")) == []
    assert queries.search_messages(engine, search(number="no digits")) == []
    assert len(queries.search_messages(engine, search(account="CI00000001"), limit=2)) == 2

    extras = queries.message_extras(engine, delivered, request_id)
    assert extras["parts"][0]["carrier_id"] == "abc123"
    assert extras["intake"]["email"] == "user@example.com"

    endpoints = queries.failing_endpoints(engine, now)
    assert len(endpoints) == 1
    assert endpoints[0]["callbacks"] == 2 and endpoints[0]["failed"] == 1
    assert endpoints[0]["last_error"] == "HTTP 503 (1)"
    assert [c["attempts"] for c in queries.retry_queue(engine)] == [2]
    assert queries.number_list_counts(engine) == {"CI00000001": {"optout": 1}}
    assert queries.user_counts(engine) == {"CI00000001": 1}
    assert queries.account_numbers(engine, "CI00000001")[0]["number"] == "+61407555998"
    assert queries.unmatched_receipts_recent(engine) == []


def test_search_form_is_read_defensively() -> None:
    read = queries.MessageSearch.from_query
    s = read(
        {"days": "9999", "status": "dropped'; --", "account": "ci00000001", "sms_id": "X" * 99}
    )
    assert s.days == 1 and s.status == "" and s.account == "CI00000001" and len(s.sms_id) == 36
    assert read({"days": "seven"}).days == 1
    assert not read({}).given and read({"number": "1"}).given


def test_chart_scale() -> None:
    assert [nice_ceiling(v) for v in (0, 1, 3, 7, 11, 999, 1001)] == [1, 1, 5, 10, 20, 1000, 2000]


def test_time_is_ordered_in_ids() -> None:
    """The search window relies on UUIDv7 text sorting by creation time."""
    earlier = new_id()
    time.sleep(0.002)
    assert earlier < new_id() and old_id(now_ms() - 1000) < new_id()
