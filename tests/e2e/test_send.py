"""The happy paths of POST /smsapi/send, checked over HTTP and in the store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import select

from roxgate.store.schema import messages, requests
from tests.conftest import Env, request_body

# SendLater may be at most 365 days ahead, so these use the coming New Year
# (tests/rox/test_timefmt.py checks the same arithmetic for 2030).
NEXT = datetime.now(UTC).year + 1
NEW_YEAR = f"01-Jan-{NEXT} 00:00:01"


def message_row(env: Env, sms_id: str) -> dict[str, Any]:
    with env.engine.connect() as conn:
        row = conn.execute(select(messages).where(messages.c.id == sms_id)).mappings().one()
    return dict(row)


def stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%d-%b-%Y %H:%M:%S (UTC)")


def test_single_message_is_queued_and_stored(gw: Env) -> None:
    body = request_body(
        [
            {
                "DestTn": "0407 555 001",
                "DestName": "Ann",
                "DestEmail": "ann@example.com",
                "SMSText": "Your appointment is at 10:00",
            }
        ],
        ReceiptFlag=1,
        ReceiptCallbackURL="https://hooks.example.com/receipt",
        ReplyType="h",
        ReplyCallbackURL="https://hooks.example.com/reply",
        # Due in the future, so that the dispatcher leaves it queued for this test.
        SendLater=NEW_YEAR,
    )
    data = gw.post(body)
    assert data["Result"] == "0000"
    assert data["ResultText"] == "Success"
    assert data["Version"] == 1.1
    assert data["Messages"]["Count"] == 1
    uuid.UUID(data["Messages"]["RequestId"])
    one = data["Messages"]["1"]
    assert one["Result"] == "0000" and one["ResultText"] == "Queued"
    assert one["DestTn"] == "+61407555001"
    row = message_row(gw, one["SMSId"])
    assert row["request_id"] == data["Messages"]["RequestId"]
    assert row["account_id"] == "CI00000001"
    assert row["product"] == "tests"
    assert row["dest_tn"] == "+61407555001"
    assert row["dest_country"] == "AU"
    assert row["dest_name"] == "Ann" and row["dest_email"] == "ann@example.com"
    assert row["text"] == "Your appointment is at 10:00"
    assert (row["encoding"], row["parts"]) == ("gsm", 1)
    assert row["receipt_flag"] == 1
    assert row["receipt_url"] == "https://hooks.example.com/receipt"
    assert row["reply_type"] == "H"
    assert row["reply_url"] == "https://hooks.example.com/reply"
    assert row["status"] == "queued"
    assert one["Timestamp"] == stamp(row["due_at"])


def test_ids_are_unique_time_ordered_uuids(gw: Env) -> None:
    data = gw.post(request_body([{"DestTn": "+61407555001", "SMSText": "x"}] * 50))
    ids = [data["Messages"][str(i)]["SMSId"] for i in range(1, 51)]
    assert len(set(ids)) == 50
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert ids == sorted(ids)


def test_global_text_overrides_every_recipient(gw: Env) -> None:
    body = request_body(
        [{"DestTn": "+61407555001", "SMSText": "ignored"}, {"DestTn": "+61407555002"}],
        GlobalText="Clinic closed today — sorry",
    )
    data = gw.post(body)
    assert data["ResultText"] == "Success"
    for key in ("1", "2"):
        row = message_row(gw, data["Messages"][key]["SMSId"])
        assert row["text"] == "Clinic closed today — sorry"
        assert row["encoding"] == "ucs2"  # the em dash is not GSM


def test_segmentation_is_stored(gw: Env) -> None:
    cases = [("a" * 160, 1), ("a" * 161, 2), ("a" * 159 + "€", 2), ("й" * 71, 2), ("😀" * 36, 2)]
    data = gw.post(request_body([{"DestTn": "+61407555001", "SMSText": t} for t, _ in cases]))
    for i, (_, parts) in enumerate(cases, start=1):
        assert message_row(gw, data["Messages"][str(i)]["SMSId"])["parts"] == parts


def test_e164_normalisation_in_account_region(gw: Env) -> None:
    numbers = {
        "+61407555001": "+61407555001",
        "0407555001": "+61407555001",
        "(04) 0755-5001": "+61407555001",
        "61407555001": "+61407555001",
        "+44 7911 123456": "+447911123456",
    }
    body = request_body([{"DestTn": n, "SMSText": "x"} for n in numbers])
    data = gw.post(body)
    got = [data["Messages"][str(i)]["DestTn"] for i in range(1, len(numbers) + 1)]
    assert got == list(numbers.values())


def test_send_later_with_negative_offset(gw: Env) -> None:
    data = gw.post(request_body(SendLater=NEW_YEAR, TimeZoneOffset=-600))
    assert data["Messages"]["1"]["Timestamp"] == f"31-Dec-{NEXT - 1} 14:00:01 (UTC)"


def test_send_later_with_positive_offset(gw: Env) -> None:
    data = gw.post(request_body(SendLater=NEW_YEAR, TimeZoneOffset=300))
    assert data["Messages"]["1"]["Timestamp"] == f"01-Jan-{NEXT} 05:00:01 (UTC)"
    row = message_row(gw, data["Messages"]["1"]["SMSId"])
    assert row["due_at"] == int(datetime(NEXT, 1, 1, 5, 0, 1, tzinfo=UTC).timestamp() * 1000)


def test_send_later_uses_account_offset_when_absent(gw: Env) -> None:
    # CI00000001 was created with --tz-offset -600.
    data = gw.post(request_body(SendLater=NEW_YEAR))
    assert data["Messages"]["1"]["Timestamp"] == f"31-Dec-{NEXT - 1} 14:00:01 (UTC)"


def test_send_later_in_the_past_means_now(gw: Env) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    data = gw.post(request_body(SendLater="01-Jan-2001 00:00:00"))
    due = datetime.strptime(data["Messages"]["1"]["Timestamp"], "%d-%b-%Y %H:%M:%S (UTC)")
    assert abs(due.replace(tzinfo=UTC) - before) < timedelta(seconds=5)


def test_send_later_iso8601(gw: Env) -> None:
    iso = f"{NEXT}-01-01T00:00:01"
    own_offset = gw.post(request_body(SendLater=iso + "+10:00", TimeZoneOffset=300))
    assert own_offset["Messages"]["1"]["Timestamp"] == f"31-Dec-{NEXT - 1} 14:00:01 (UTC)"
    naive = gw.post(request_body(SendLater=iso, TimeZoneOffset=-600))
    assert naive["Messages"]["1"]["Timestamp"] == f"31-Dec-{NEXT - 1} 14:00:01 (UTC)"
    zulu = gw.post(request_body(SendLater=iso + "Z"))
    assert zulu["Messages"]["1"]["Timestamp"] == f"01-Jan-{NEXT} 00:00:01 (UTC)"


def test_send_later_366_days_ahead_is_refused_365_accepted(gw: Env) -> None:
    now = datetime.now(UTC)
    far = (now + timedelta(days=366)).strftime("%d-%b-%Y %H:%M:%S")
    assert gw.post(request_body(SendLater=far, TimeZoneOffset=0))["Result"] == "2024"
    near = (now + timedelta(days=364)).strftime("%d-%b-%Y %H:%M:%S")
    assert gw.post(request_body(SendLater=near, TimeZoneOffset=0))["Result"] == "0000"


def test_bom_content_type_unknown_keys_and_string_version(gw: Env) -> None:
    body = request_body()
    body["Version"] = "1.1"
    body["Extra"] = {"anything": [1, 2]}
    body["Messages"]["Note"] = "ignored"
    raw = b"\xef\xbb\xbf" + orjson.dumps(body)
    data = gw.post(raw, headers={"Content-Type": "text/plain"})
    assert data["Result"] == "0000", data
    # No Content-Type at all.
    response = gw.client.post("/smsapi/send", content=orjson.dumps(body))
    assert response.json()["Result"] == "0000"


def test_numbers_as_strings_are_accepted(gw: Env) -> None:
    body = request_body(ReceiptFlag="2", TimeZoneOffset="-600", SendLater=NEW_YEAR)
    body["Messages"]["Count"] = "1"
    data = gw.post(body)
    assert data["Result"] == "0000"
    assert data["Messages"]["1"]["Timestamp"] == f"31-Dec-{NEXT - 1} 14:00:01 (UTC)"


def test_rejected_recipients_are_listed_with_null_smsid(gw: Env) -> None:
    body = request_body(
        [
            {"DestTn": "+61407555001", "SMSText": "ok"},
            {"DestTn": "bogus", "SMSText": "x"},
            {"DestTn": "+61407555003", "SMSText": "ok"},
        ]
    )
    data = gw.post(body)
    assert data["ResultText"] == "Queued 2 of 3"
    assert data["Messages"]["2"] == {
        "SMSId": None,
        "DestTn": "bogus",
        "Result": "2032",
        "ResultText": data["Messages"]["2"]["ResultText"],
        "Timestamp": data["Messages"]["2"]["Timestamp"],
    }
    with gw.engine.connect() as conn:
        row = (
            conn.execute(select(requests).where(requests.c.id == data["Messages"]["RequestId"]))
            .mappings()
            .one()
        )
    assert (row["recipients"], row["queued"], row["product"]) == (3, 2, "tests")


def test_idempotency_key_replays_the_original_response(gw: Env) -> None:
    headers = {"Idempotency-Key": "retry-" + uuid.uuid4().hex}
    body = request_body([{"DestTn": "+61407555001", "SMSText": "once"}] * 3)
    first = gw.post(body, headers=headers)
    second = gw.post(body, headers=headers)
    assert first == second
    with gw.engine.connect() as conn:
        count = len(
            conn.execute(
                select(messages.c.id).where(messages.c.request_id == first["Messages"]["RequestId"])
            ).all()
        )
    assert count == 3
    # Without the key, the same body is a new request.
    third = gw.post(body)
    assert third["Messages"]["RequestId"] != first["Messages"]["RequestId"]


def test_credits_are_spent_per_part(gw: Env, engine_factory: Any) -> None:
    from roxgate.accounts import admin
    from roxgate.store.schema import accounts

    admin.add_account(gw.engine, "CI00000006", "Pay as you go", credits=4)
    admin.add_user(gw.engine, "CI00000006", "user@example.com", "correct horse battery")
    body = request_body([{"DestTn": "+61407555001", "SMSText": "a" * 200}], account="CI00000006")
    assert gw.post(body)["Result"] == "0000"  # 2 parts: 4 → 2
    assert gw.post(body)["Result"] == "0000"  # 2 → 0
    assert gw.post(body)["Result"] == "2040"
    with gw.engine.connect() as conn:
        left = conn.execute(select(accounts.c.credits).where(accounts.c.id == "CI00000006"))
        assert left.scalar_one() == 0


def test_non_post_and_health(gw: Env) -> None:
    assert gw.client.get("/healthz").json() == {"status": "ok"}
    assert gw.client.get("/smsapi/send").status_code == 405
