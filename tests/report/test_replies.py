"""Reply matching, opt-out and forwarding, against real SQLite and PostgreSQL databases."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import insert, select, update

from roxgate.accounts import admin
from roxgate.dispatch import queue
from roxgate.report import replies
from roxgate.report.replies import forward_text, opt_keyword, record_inbound, sender_e164
from roxgate.store.ids import new_id, now_ms
from roxgate.store.schema import (
    accounts,
    callbacks,
    inbound,
    mail_outbox,
    messages,
    number_lists,
    recent_sends,
)

NUMBER = "+61407555001"


@pytest.fixture
def engine(store_factory: Any) -> Any:
    engine = store_factory("replies")
    admin.add_account(engine, "CI00000001", "A")
    admin.add_user(engine, "CI00000001", "user@example.com", "password1", mobile="+61400000001")
    admin.add_user(engine, "CI00000001", "nomobile@example.com", "password1")
    return engine


def sent_message(
    engine: Any,
    reply_type: str = "E",
    reply_url: str | None = None,
    user_id: int = 1,
    dest_tn: str = NUMBER,
    submitted_ago_ms: int = 1000,
) -> str:
    """A message as the dispatcher leaves it: submitted, remembered for replies."""
    sms_id, now = new_id(), now_ms()
    with engine.begin() as conn:
        conn.execute(
            insert(messages),
            {
                "id": sms_id, "request_id": "req-1", "account_id": "CI00000001",
                "user_id": user_id, "product": "reminders", "dest_tn": dest_tn,
                "dest_country": "AU", "dest_name": "Jo Bloggs", "dest_email": "jo@example.org",
                "text": "Your appointment is at 10", "encoding": "gsm", "parts": 1,
                "due_at": now, "receipt_flag": 0, "reply_type": reply_type,
                "reply_url": reply_url, "status": "submitted", "created_at": now,
                "updated_at": now,
            },
        )  # fmt: skip
        conn.execute(recent_sends.delete().where(recent_sends.c.dest_tn == dest_tn))
        conn.execute(
            insert(recent_sends),
            {"dest_tn": dest_tn, "message_id": sms_id, "submitted_at": now - submitted_ago_ms},
        )
    return sms_id


def reply(engine: Any, text: str, source: str = "61407555001", ton: int | None = 1) -> Any:
    with engine.begin() as conn:
        return record_inbound(conn, source, "61400000000", text, source_ton=ton)


def rows(engine: Any, table: Any) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(select(table)).all()


@pytest.mark.parametrize(
    ("source", "ton", "expected"),
    [
        ("61407555001", 1, NUMBER),
        ("+61407555001", 0, NUMBER),
        ("0061407555001", 2, NUMBER),
        ("61407555001", None, NUMBER),
        ("0407555001", 2, None),  # national: the carrier's country is unknown
        ("Clinic", 5, None),
        ("123", 1, None),
    ],
)
def test_sender_e164(source: str, ton: int | None, expected: str | None) -> None:
    assert sender_e164(source, ton) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("STOP", "optout"), (" stop ", "optout"), ("StopAll", "optout"), ("unsubscribe", "optout"),
        ("cancel", "optout"), ("END", "optout"), ("quit\n", "optout"), ("start", "optin"),
        ("UNSTOP", "optin"), ("stop please", None), ("", None), ("STOPP", None),
    ],
)  # fmt: skip
def test_opt_keywords(text: str, expected: str | None) -> None:
    assert opt_keyword(text) == expected


def test_unmatched_inbound_is_kept(engine: Any) -> None:
    result = reply(engine, "who is this?")
    assert result.action == "unmatched" and result.matched_message_id is None
    [row] = rows(engine, inbound)
    assert (row.source, row.text, row.action, row.account_id) == (
        NUMBER, "who is this?", "unmatched", None,
    )  # fmt: skip
    assert rows(engine, callbacks) == [] and rows(engine, mail_outbox) == []


def test_reply_outside_the_window_matches_nothing(engine: Any) -> None:
    sent_message(engine, submitted_ago_ms=8 * 86_400_000)
    assert reply(engine, "late").action == "unmatched"


def test_matches_the_most_recent_message_to_that_number(engine: Any) -> None:
    sent_message(engine)
    newest = sent_message(engine)
    assert reply(engine, "yes").matched_message_id == newest


def test_http_reply_queues_the_rox_reply_callback(engine: Any) -> None:
    sms_id = sent_message(engine, "H", "https://customer.example/reply")
    result = reply(engine, "Thanks No Problem")
    assert result.action == "callback"
    [hook] = rows(engine, callbacks)
    assert (hook.kind, hook.url, hook.message_id, hook.inbound_id, hook.status) == (
        "reply", "https://customer.example/reply", sms_id, result.inbound_id, "pending",
    )  # fmt: skip
    body = orjson.loads(hook.body)
    assert body["Name"] == "ROX_API_Reply" and body["Version"] == 1.1
    assert body["Sender"] == {"AccountId": "CI00000001", "Username": "user@example.com"}
    assert body["Messages"]["RequestId"] == "req-1"
    inner = body["Messages"]["Reply"]
    assert inner["SMSId"] == sms_id and inner["ReplyFrom"] == NUMBER
    assert inner["ReplyText"] == "Thanks No Problem"
    assert inner["SMSText"] == "Your appointment is at 10"
    assert inner["Timestamp"].endswith("(UTC)")
    assert rows(engine, mail_outbox) == []


def test_http_reply_without_url_goes_by_mail(engine: Any) -> None:
    sent_message(engine, "H", None)
    assert reply(engine, "ok").action == "mail"
    assert len(rows(engine, mail_outbox)) == 1


def test_email_reply_carries_every_field(engine: Any) -> None:
    sms_id = sent_message(engine, "E")
    assert reply(engine, "See you then").action == "mail"
    [mail] = rows(engine, mail_outbox)
    assert mail.to_addr == "user@example.com" and mail.kind == "reply"
    assert "Jo Bloggs" in mail.subject and NUMBER in mail.subject
    for field in (NUMBER, "Jo Bloggs", "jo@example.org", sms_id, "req-1", "reminders",
                  "See you then", "Your appointment is at 10"):  # fmt: skip
        assert field in mail.body


def test_sms_reply_is_queued_to_the_users_mobile(engine: Any) -> None:
    sent_message(engine, "S")
    result = reply(engine, "Running late")
    assert result.action == "sms" and result.sms_queued
    forward = [m for m in rows(engine, messages) if m.product == replies.FORWARD_PRODUCT]
    [sms] = forward
    assert sms.dest_tn == "+61400000001" and sms.status == "queued"
    assert sms.text == "Reply from Jo Bloggs (+61407555001): Running late"
    assert sms.receipt_flag == 0 and sms.parts == 1
    assert rows(engine, mail_outbox) == []
    # It is a normal queued message: the dispatcher claims it.
    assert [c.id for c in queue.claim_due(engine, "w", 10, 30_000)] == [sms.id]


def test_sms_reply_without_mobile_goes_by_mail(engine: Any) -> None:
    sent_message(engine, "S", user_id=2)
    assert reply(engine, "hi").action == "mail"
    assert len(rows(engine, mail_outbox)) == 1


def test_both_sends_sms_and_mail(engine: Any) -> None:
    sent_message(engine, "B")
    assert reply(engine, "hi").action == "sms+mail"
    assert len(rows(engine, mail_outbox)) == 1
    assert any(m.product == replies.FORWARD_PRODUCT for m in rows(engine, messages))


def test_sms_forward_costs_credits_and_falls_back_to_mail_without(engine: Any) -> None:
    with engine.begin() as conn:
        conn.execute(update(accounts).values(credits=1))
    sent_message(engine, "S")
    assert reply(engine, "first").action == "sms"
    assert rows(engine, accounts)[0].credits == 0
    assert reply(engine, "second").action == "mail"  # no credit left


def test_stop_opts_out_and_is_still_forwarded_start_opts_back_in(engine: Any) -> None:
    sent_message(engine, "H", "https://customer.example/reply")
    assert reply(engine, " Stop ").action == "callback+optout"
    assert [(r.account_id, r.number, r.kind) for r in rows(engine, number_lists)] == [
        ("CI00000001", NUMBER, "optout")
    ]
    assert reply(engine, "STOP").action == "callback+optout"  # twice is fine
    assert len(rows(engine, number_lists)) == 1
    assert reply(engine, "start").action == "callback+optin"
    assert rows(engine, number_lists) == []
    assert len(rows(engine, callbacks)) == 3


def test_forward_text_is_cut_to_the_part_limit() -> None:
    assert forward_text(None, NUMBER, "ok", 10) == f"Reply from {NUMBER}: ok"
    long = forward_text("Jo", NUMBER, "x" * 2000, 2)
    assert long.endswith("…")
    from roxgate.sms.text import measure

    assert measure(long).parts == 2


@pytest.mark.parametrize("obstacle", ["suspended", "optout", "block", "country"])
def test_sms_forward_obeys_the_accounts_rules(engine: Any, obstacle: str) -> None:
    if obstacle == "suspended":
        admin.update_account(engine, "CI00000001", status="suspended")
    elif obstacle == "country":
        admin.update_account(engine, "CI00000001", allowed_countries="NZ")
    else:
        admin.change_number_list(engine, "CI00000001", obstacle, ["+61400000001"], add=True)
    sent_message(engine, "S")
    assert reply(engine, "hi").action == "mail"
    assert not any(m.product == replies.FORWARD_PRODUCT for m in rows(engine, messages))


def test_secret_rotation_and_mobile(engine: Any) -> None:
    first = admin.callback_secret(engine, "CI00000001")
    assert admin.callback_secret(engine, "CI00000001") == first
    rotated = admin.callback_secret(engine, "CI00000001", rotate=True)
    assert rotated != first and len(rotated) >= 32
    admin.set_user_mobile(engine, "CI00000001", "nomobile@example.com", "0400 000 002")
    sent_message(engine, "S", user_id=2)
    assert reply(engine, "hi").action == "sms"
    with pytest.raises(admin.AdminError):
        admin.callback_secret(engine, "CI00000099")


def test_two_messages_to_one_number_submitted_in_one_batch(engine: Any) -> None:
    """A reply matches the later one (PostgreSQL upserts a row once per statement)."""
    ids = []
    for _ in range(2):
        sms_id, now = new_id(), now_ms()
        with engine.begin() as conn:
            conn.execute(
                insert(messages),
                {
                    "id": sms_id, "request_id": "req-1", "account_id": "CI00000001",
                    "user_id": 1, "dest_tn": NUMBER, "dest_country": "AU", "text": "hi",
                    "encoding": "gsm", "parts": 1, "due_at": now, "receipt_flag": 0,
                    "reply_type": "E", "status": "queued", "created_at": now, "updated_at": now,
                },
            )  # fmt: skip
        ids.append(sms_id)
    assert len(queue.claim_due(engine, "w", 10, 30_000)) == 2
    accepted = [(sms_id, [queue.PartAccepted(1, f"c-{sms_id}")]) for sms_id in reversed(ids)]
    assert queue.record_submitted(engine, "w", accepted) == set(ids)
    assert [r.message_id for r in rows(engine, recent_sends)] == [ids[1]]
    assert reply(engine, "yes").matched_message_id == ids[1]
