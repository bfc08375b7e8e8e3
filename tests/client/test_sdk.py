"""The Python SDK against a real gateway over a socket (the shared ``gw`` server)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import func, select

from roxgate.accounts import admin
from roxgate.client import (
    AsyncClient,
    Client,
    Recipient,
    RoxConnectionError,
    RoxError,
    SendResult,
)
from roxgate.client._client import chunk_key, send_later_fields
from roxgate.store.schema import messages, requests
from tests.conftest import PASSWORD, Env, free_port

ACCOUNT = "CI00000091"  # unlimited credit, region AU, offset 0: this file's own
CREDITS = "CI00000092"  # 600 credits: the second request of a split send runs out
USER = "sdk@example.com"
LATER = datetime.now(UTC) + timedelta(days=30)  # keeps big sends queued, off the carrier


@pytest.fixture(scope="module")
def sdk_gw(gw: Env) -> Env:
    admin.add_account(gw.engine, ACCOUNT, "SDK tests", region="AU")
    admin.add_user(gw.engine, ACCOUNT, USER, PASSWORD)
    admin.add_account(gw.engine, CREDITS, "SDK credits", region="AU", credits=600)
    admin.add_user(gw.engine, CREDITS, USER, PASSWORD)
    return gw


def client(env: Env, **kwargs: Any) -> Client:
    kwargs.setdefault("account", ACCOUNT)
    return Client(env.server.url, username=USER, password=PASSWORD, **kwargs)


def numbers(n: int) -> list[str]:
    return [f"+6141{i:07d}" for i in range(n)]


def stored_for(env: Env, request_ids: list[str]) -> int:
    with env.engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(messages).where(messages.c.request_id.in_(request_ids))
        ).scalar_one()


def message(env: Env, sms_id: str) -> dict[str, Any]:
    with env.engine.connect() as conn:
        return dict(conn.execute(select(messages).where(messages.c.id == sms_id)).mappings().one())


# --- the SDK needs none of the server ------------------------------------------------


def test_import_pulls_in_no_server_dependency() -> None:
    code = "import sys, roxgate.client; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    server_only = {
        "sqlalchemy",
        "alembic",
        "starlette",
        "uvicorn",
        "uvloop",
        "httptools",
        "aiohttp",
        "aiosmtplib",
        "phonenumbers",
        "orjson",
        "argon2",
        "psycopg",
        "uuid_utils",
    }
    assert not {m.split(".")[0] for m in out} & server_only
    ours = {m for m in out if m.startswith("roxgate.")}
    assert all(m.split(".")[1] in ("client", "rox") for m in ours), ours
    assert "roxgate.rox.request" not in ours  # the server's validation (phonenumbers)


# --- sending -------------------------------------------------------------------------


def test_send_one_and_many_sync(sdk_gw: Env) -> None:
    with client(sdk_gw) as rox:
        one = rox.send_one("0407 555 001", "Hello from the SDK", product="sdk-tests")
        assert one.queued and one.result == "0000" and one.result_text == "Queued"
        assert one.dest_tn == "+61407555001" and one.index == 0
        row = message(sdk_gw, one.sms_id or "")
        assert row["text"] == "Hello from the SDK" and row["product"] == "sdk-tests"
        assert row["account_id"] == ACCOUNT and row["request_id"] == one.request_id

        result = rox.send(
            [
                Recipient("+61407555001", "Hi Ann", dest_name="Ann", dest_email="ann@example.com"),
                {"DestTn": "+61407555002", "SMSText": "Hi Bob", "DestName": "Bob"},
                {"dest_tn": "+61407555003", "text": "Hi Cy"},
            ],
            receipt_flag=1,
            receipt_url="https://hooks.example.com/receipt",
            reply_type="h",
            reply_url="https://hooks.example.com/reply",
        )
    assert isinstance(result, SendResult) and result.ok and len(result) == 3
    assert len(result.request_ids) == 1 and len(result.queued) == 3 and not result.rejected
    rows = [message(sdk_gw, r.sms_id or "") for r in result.results]
    assert [r["text"] for r in rows] == ["Hi Ann", "Hi Bob", "Hi Cy"]
    assert rows[0]["dest_name"] == "Ann" and rows[0]["dest_email"] == "ann@example.com"
    assert rows[1]["dest_name"] == "Bob"
    assert {(r["receipt_flag"], r["reply_type"]) for r in rows} == {(1, "H")}
    assert rows[2]["receipt_url"] == "https://hooks.example.com/receipt"
    assert rows[2]["reply_url"] == "https://hooks.example.com/reply"


def test_global_text_overrides_and_plain_numbers(sdk_gw: Env) -> None:
    with client(sdk_gw) as rox:
        result = rox.send(
            ["+61407555001", Recipient("+61407555002", "ignored")], text="Same for all"
        )
    assert result.ok
    assert {message(sdk_gw, r.sms_id or "")["text"] for r in result.results} == {"Same for all"}


def test_send_async(sdk_gw: Env) -> None:
    async def main() -> SendResult:
        async with AsyncClient(sdk_gw.server.url, ACCOUNT, USER, PASSWORD) as rox:
            first = await rox.send_one("+61407555004", "async one")
            assert first.queued
            return await rox.send(numbers(600), text="async many", send_later=LATER)

    result = asyncio.run(main())
    assert result.ok and len(result.request_ids) == 2
    assert [r.dest_tn for r in result.results] == numbers(600)
    assert stored_for(sdk_gw, result.request_ids) == 600


def test_more_than_500_are_split_and_merged_in_order(sdk_gw: Env) -> None:
    progress: list[tuple[int, int]] = []
    given = numbers(1234)
    with client(sdk_gw) as rox:
        result = rox.send(
            [Recipient(n, f"Message {i}") for i, n in enumerate(given)],
            send_later=LATER,
            on_progress=lambda done, total: progress.append((done, total)),
        )
    assert result.ok and len(result) == 1234
    assert len(set(result.request_ids)) == 3
    assert [r.index for r in result.results] == list(range(1234))
    assert [r.dest_tn for r in result.results] == given
    assert progress == [(500, 1234), (1000, 1234), (1234, 1234)]
    assert stored_for(sdk_gw, result.request_ids) == 1234
    per_request = [
        stored_for(sdk_gw, [rid]) for rid in result.request_ids
    ]  # 500 + 500 + 234, in the order sent
    assert per_request == [500, 500, 234]
    texts = [message(sdk_gw, result.results[i].sms_id or "")["text"] for i in (0, 777, 1233)]
    assert texts == ["Message 0", "Message 777", "Message 1233"]


def test_per_recipient_rejection(sdk_gw: Env) -> None:
    with client(sdk_gw) as rox:
        result = rox.send(["+61407555001", "not a number", "+61407555002"], text="Hi")
    assert not result.ok
    assert [r.index for r in result.rejected] == [1]
    bad = result.results[1]
    assert bad.result == "2032" and bad.sms_id is None and bad.result_text
    assert bad.timestamp is not None and bad.timestamp.tzinfo is not None
    assert [r.index for r in result.queued] == [0, 2]


# --- request-level errors ------------------------------------------------------------


def test_wrong_password_is_rox_error_2002_without_the_password(sdk_gw: Env) -> None:
    rox = Client(sdk_gw.server.url, ACCOUNT, USER, "not-the-password-xyz")
    assert "not-the-password-xyz" not in repr(rox) and "***" in repr(rox)
    with rox, pytest.raises(RoxError) as caught:
        rox.send_one("+61407555001", "Hi")
    error = caught.value
    assert type(error) is RoxError and error.code == "2002"
    assert error.text and error.request_id and error.partial is None
    for shown in (str(error), repr(error), error.text):
        assert "not-the-password-xyz" not in shown


def test_insufficient_credit_2040(sdk_gw: Env) -> None:
    # CI00000005 has 5 credits: six one-part messages need 6. Nothing is queued.
    with (
        Client(sdk_gw.server.url, "CI00000005", "user@example.com", PASSWORD) as rox,
        pytest.raises(RoxError) as caught,
    ):
        rox.send(numbers(6), text="Hi")
    assert caught.value.code == "2040" and "6" in caught.value.text
    assert caught.value.partial is None


def test_error_in_a_later_request_reports_what_was_queued(sdk_gw: Env) -> None:
    # 600 credits: the first request (500) is queued, the second (500) gets 2040.
    with client(sdk_gw, account=CREDITS) as rox, pytest.raises(RoxError) as caught:
        rox.send(numbers(1000), text="Hi", send_later=LATER, idempotency_key="credit-run-1")
    error = caught.value
    assert error.code == "2040" and error.idempotency_key == "credit-run-1"
    assert error.partial is not None and len(error.partial.results) == 500
    assert error.partial.ok and stored_for(sdk_gw, error.partial.request_ids) == 500


def test_local_mistakes_are_value_errors(sdk_gw: Env) -> None:
    with client(sdk_gw) as rox:
        with pytest.raises(ValueError, match="no recipients"):
            rox.send([], text="Hi")
        with pytest.raises(TypeError):
            rox.send("+61407555001", text="Hi")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="unknown recipient key"):
            rox.send([{"Number": "+61407555001"}], text="Hi")
        with pytest.raises(ValueError, match="receipt_flag"):
            rox.send(["+61407555001"], text="Hi", receipt_flag=3)
        with pytest.raises(ValueError, match="reply_type"):
            rox.send(["+61407555001"], text="Hi", reply_type="X")
        with pytest.raises(ValueError, match="timezone-aware"):
            rox.send(["+61407555001"], text="Hi", send_later=datetime(2030, 1, 1))
        with pytest.raises(ValueError, match="idempotency_key"):
            rox.send(["+61407555001"], text="Hi", idempotency_key="x" * 256)
    with pytest.raises(ValueError, match="url"):
        Client("ftp://example.com", ACCOUNT, USER, PASSWORD)


# --- SendLater -----------------------------------------------------------------------


def test_send_later_fields() -> None:
    aest = timezone(timedelta(hours=10))
    assert send_later_fields(datetime(2030, 1, 1, 0, 0, 1, tzinfo=aest)) == (
        "01-Jan-2030 00:00:01",
        -600,
    )
    new_york = ZoneInfo("America/New_York")
    assert send_later_fields(datetime(2030, 7, 4, 9, 30, 15, 999, tzinfo=new_york)) == (
        "04-Jul-2030 09:30:15",
        240,
    )
    odd = timezone(timedelta(hours=1, seconds=30))  # not whole minutes: sent as UTC
    assert send_later_fields(datetime(2030, 1, 1, 12, 0, 30, tzinfo=odd)) == (
        "01-Jan-2030 11:00:00",
        0,
    )


@pytest.mark.parametrize(
    "tz",
    [
        ZoneInfo("Australia/Sydney"),
        timezone(timedelta(hours=5, minutes=45)),
        timezone(timedelta(hours=-7)),
        UTC,
    ],
)
def test_send_later_lands_at_the_right_utc_time(sdk_gw: Env, tz: Any) -> None:
    due = (datetime.now(UTC) + timedelta(days=40)).replace(microsecond=0)
    with client(sdk_gw) as rox:
        result = rox.send_one("+61407555001", "Later", send_later=due.astimezone(tz))
    assert result.queued and result.timestamp == due
    assert message(sdk_gw, result.sms_id or "")["due_at"] == int(due.timestamp() * 1000)


# --- safe retries --------------------------------------------------------------------


class DropFirstAnswer(httpx.BaseTransport):
    """Forwards to the real server, then loses the first answer (as a broken
    connection would) after the server has processed the request."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.keys: list[str | None] = []
        self.bodies: list[bytes] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.keys.append(request.headers.get("Idempotency-Key"))
        self.bodies.append(request.read())
        response = self.inner.handle_request(request)
        response.read()
        if len(self.keys) == 1:
            response.close()
            raise httpx.ReadError("connection reset by peer", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


class AsyncDropFirstAnswer(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.keys: list[str | None] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.keys.append(request.headers.get("Idempotency-Key"))
        response = await self.inner.handle_async_request(request)
        await response.aread()
        if len(self.keys) == 1:
            await response.aclose()
            raise httpx.ReadError("connection reset by peer", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def requests_with_key(env: Env, key: str) -> int:
    with env.engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(requests).where(requests.c.idempotency_key == key)
        ).scalar_one()


def test_lost_answer_is_retried_with_the_same_key_and_stored_once(sdk_gw: Env) -> None:
    transport = DropFirstAnswer()
    with client(sdk_gw, transport=transport) as rox:
        result = rox.send_one("+61407555005", "Exactly once")
    assert result.queued
    assert len(transport.keys) == 2 and transport.keys[0] == transport.keys[1]
    assert transport.keys[0] and transport.bodies[0] == transport.bodies[1]
    assert requests_with_key(sdk_gw, transport.keys[0]) == 1
    assert stored_for(sdk_gw, [result.request_id]) == 1
    assert message(sdk_gw, result.sms_id or "")["text"] == "Exactly once"


def test_lost_answer_async_with_callers_key_over_two_requests(sdk_gw: Env) -> None:
    transport = AsyncDropFirstAnswer()

    async def main() -> SendResult:
        async with AsyncClient(
            sdk_gw.server.url, ACCOUNT, USER, PASSWORD, transport=transport
        ) as rox:
            return await rox.send(
                numbers(700), text="Once", send_later=LATER, idempotency_key="order-4711"
            )

    result = asyncio.run(main())
    assert result.ok and len(result) == 700
    assert transport.keys == ["order-4711", "order-4711", "order-4711/2"]
    assert requests_with_key(sdk_gw, "order-4711") == 1
    assert requests_with_key(sdk_gw, "order-4711/2") == 1
    assert stored_for(sdk_gw, result.request_ids) == 700


def test_resending_with_the_same_key_replays(sdk_gw: Env) -> None:
    with client(sdk_gw) as rox:
        first = rox.send(numbers(3), text="Replay", idempotency_key="replay-key-1")
        again = rox.send(numbers(3), text="Replay", idempotency_key="replay-key-1")
        with pytest.raises(RoxError) as caught:
            rox.send(numbers(3), text="Different", idempotency_key="replay-key-1")
    assert again == first
    assert caught.value.code == "2027"


def test_http_errors_and_2100_are_retried(sdk_gw: Env) -> None:
    answers = [
        httpx.Response(502, text="Bad gateway"),
        httpx.Response(
            200,
            json={
                "Name": "ROX_API_Response",
                "Version": 1.1,
                "Result": "2100",
                "ResultText": "Service temporarily unavailable",
                "Messages": {"Count": 0, "RequestId": None},
            },
        ),
    ]
    inner = httpx.HTTPTransport()
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if answers:
            return answers.pop(0)
        return inner.handle_request(request)

    with client(sdk_gw, transport=httpx.MockTransport(handler)) as rox:
        result = rox.send_one("+61407555006", "Third time lucky")
    assert result.queued and len(seen) == 3
    assert len({r.headers["Idempotency-Key"] for r in seen}) == 1


def test_2041_is_retried_after_the_gateways_retry_after(sdk_gw: Env) -> None:
    # 600 messages a minute (10 a second): a burst of 600 empties the bucket, and
    # the next 10 must wait a second. The SDK waits what Retry-After says.
    limited = "CI00000094"  # CI00000093 is test_cli_send.py's, on the same shared server
    admin.add_account(sdk_gw.engine, limited, "SDK limited", region="AU", rate_messages=600)
    admin.add_user(sdk_gw.engine, limited, USER, PASSWORD)
    answers: list[httpx.Response] = []
    inner = httpx.HTTPTransport()

    def handler(request: httpx.Request) -> httpx.Response:
        response = inner.handle_request(request)
        response.read()
        answers.append(response)
        return response

    with client(sdk_gw, account=limited, transport=httpx.MockTransport(handler)) as rox:
        assert len(rox.send(numbers(500), text="Burst").queued) == 500
        started = time.monotonic()
        result = rox.send(numbers(110), text="Then more")
        waited = time.monotonic() - started
    assert len(result.queued) == 110
    refused = [a for a in answers if a.json()["Result"] == "2041"]
    assert refused, [a.json()["Result"] for a in answers]
    after = int(refused[0].headers["Retry-After"])
    assert after >= 1
    assert waited >= after * 0.9  # not the SDK's own 0.25-0.5 s first back-off


def test_keeps_answering_2099_raises_it(sdk_gw: Env) -> None:
    body = {
        "Name": "ROX_API_Response",
        "Version": 1.1,
        "Result": "2099",
        "ResultText": "Internal error: nothing was queued, retry",
        "Messages": {"Count": 0, "RequestId": "r-1"},
    }
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, content=json.dumps(body).encode())

    with (
        client(sdk_gw, retries=1, transport=httpx.MockTransport(handler)) as rox,
        pytest.raises(RoxError) as caught,
    ):
        rox.send_one("+61407555001", "Hi")
    assert caught.value.code == "2099" and len(calls) == 2
    assert not isinstance(caught.value, RoxConnectionError)


def test_unreachable_gateway_is_rox_connection_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with (
        Client(url, ACCOUNT, USER, "secret-password-123", retries=1) as rox,
        pytest.raises(RoxConnectionError) as caught,
    ):
        rox.send_one("+61407555001", "Hi")
    error = caught.value
    assert isinstance(error, RoxError) and error.code == "2100"
    assert url in error.text and "2 attempts" in error.text
    assert error.idempotency_key  # generated: sending again with it is safe
    assert "secret-password-123" not in str(error) + repr(error)


def test_no_retries_means_no_generated_key(sdk_gw: Env) -> None:
    seen: list[httpx.Request] = []
    inner = httpx.HTTPTransport()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return inner.handle_request(request)

    with client(sdk_gw, retries=0, transport=httpx.MockTransport(handler)) as rox:
        assert rox.send_one("+61407555001", "Plain ROX 1.1").queued
    assert "Idempotency-Key" not in seen[0].headers
    assert seen[0].headers["User-Agent"].startswith("roxgate-python/")


def test_chunk_keys() -> None:
    assert chunk_key("k", 0) == "k" and chunk_key("k", 2) == "k/3"
    long = "x" * 254
    assert chunk_key(long, 0) == long
    derived = chunk_key(long, 1)
    assert len(derived) <= 255 and derived.endswith("/2") and derived != chunk_key(long, 2)
