"""Messages travel to the built-in carrier simulator over real SMPP and come back settled."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from roxgate.store.schema import message_parts, messages
from tests.conftest import Env, Server, request_body, seed_accounts


@pytest.fixture(scope="module")
def sending(engine_factory: Any) -> Any:
    path, engine = engine_factory("sending")
    seed_accounts(engine)
    server = Server(path, env_extra={"ROXGATE_SIM_RECEIPT_DELAY": "0.2"})
    server.start()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield Env(server, engine, client)
    server.stop()


def outcome(env: Env, sms_id: str) -> tuple[str, str | None]:
    with env.engine.connect() as conn:
        row = conn.execute(
            select(messages.c.status, messages.c.result).where(messages.c.id == sms_id)
        ).one()
    return row[0], row[1]


def wait_settled(env: Env, sms_ids: list[str], timeout: float = 20) -> dict[str, tuple[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        states = {i: outcome(env, i) for i in sms_ids}
        if all(s[0] in ("delivered", "failed", "expired") for s in states.values()):
            return states
        if time.monotonic() > deadline:
            return states
        time.sleep(0.1)


def test_messages_reach_their_final_state(sending: Env) -> None:
    cases = {
        "+61407555001": ("delivered", "0000"),
        "+61407559990": ("failed", "2062"),  # permanent submit error
        "+61407559991": ("delivered", "0000"),  # throttled twice, then accepted
        "+61407559992": ("failed", "2060"),  # UNDELIV
        "+61407559993": ("failed", "2061"),  # EXPIRED
        "+61407559994": ("failed", "2062"),  # REJECTD
    }
    data = sending.post(request_body([{"DestTn": n, "SMSText": "Hi"} for n in cases]))
    ids = [data["Messages"][str(i)]["SMSId"] for i in range(1, len(cases) + 1)]
    states = wait_settled(sending, ids)
    assert [states[i] for i in ids] == list(cases.values())


def test_multipart_message_is_delivered_when_all_parts_are(sending: Env) -> None:
    text = "Ärger {GSM} " * 30  # 360 chars, 420 septets → 3 parts
    data = sending.post(request_body([{"DestTn": "+61407555002", "SMSText": text}]))
    sms_id = data["Messages"]["1"]["SMSId"]
    assert wait_settled(sending, [sms_id])[sms_id] == ("delivered", "0000")
    with sending.engine.connect() as conn:
        parts = conn.execute(
            select(message_parts.c.part_no, message_parts.c.status).where(
                message_parts.c.message_id == sms_id
            )
        ).all()
    assert sorted(parts) == [(1, "delivered"), (2, "delivered"), (3, "delivered")]


def test_send_later_is_not_sent_early_and_is_sent_on_time(sending: Env) -> None:
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    data = sending.post(request_body(SendLater=due.strftime("%d-%b-%Y %H:%M:%S"), TimeZoneOffset=0))
    sms_id = data["Messages"]["1"]["SMSId"]
    while datetime.now(UTC) < due - timedelta(seconds=0.5):
        assert outcome(sending, sms_id)[0] == "queued"
        time.sleep(0.1)
    assert wait_settled(sending, [sms_id], timeout=10)[sms_id] == ("delivered", "0000")
    with sending.engine.connect() as conn:
        submitted = conn.execute(
            select(messages.c.submitted_at).where(messages.c.id == sms_id)
        ).scalar_one()
    late = submitted / 1000 - due.timestamp()
    assert -0.05 <= late <= 1.5, late


def test_scheduled_message_survives_a_restart(engine_factory: Any) -> None:
    path, engine = engine_factory("restart")
    seed_accounts(engine)
    server = Server(path, env_extra={"ROXGATE_SIM_RECEIPT_DELAY": "0.2"})
    server.start()
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4)
    body = request_body(SendLater=due.strftime("%d-%b-%Y %H:%M:%S"), TimeZoneOffset=0)
    data = httpx.post(server.url + "/smsapi/send", json=body, timeout=30).json()
    server.kill()
    server.start()
    try:
        env = Env(server, engine, httpx.Client(base_url=server.url))
        sms_id = data["Messages"]["1"]["SMSId"]
        assert wait_settled(env, [sms_id], timeout=15)[sms_id] == ("delivered", "0000")
    finally:
        server.stop()


def test_no_receipt_within_validity_and_grace_becomes_2064(engine_factory: Any) -> None:
    path, engine = engine_factory("expiry")
    seed_accounts(engine)
    server = Server(
        path,
        env_extra={
            "ROXGATE_SIM_RECEIPT_DELAY": "0.1",
            "ROXGATE_VALIDITY_SECONDS": "3",
            "ROXGATE_RECEIPT_GRACE_SECONDS": "1",
        },
    )
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            env = Env(server, engine, client)
            numbers = ["+61407559995", "+61407555004"]  # 9995: the simulator sends no receipt
            data = env.post(request_body([{"DestTn": n, "SMSText": "Hi"} for n in numbers]))
            silent, answered = (data["Messages"][str(i)]["SMSId"] for i in (1, 2))
            assert wait_settled(env, [answered], timeout=10)[answered] == ("delivered", "0000")
            assert outcome(env, silent) == ("submitted", None)  # not before validity + grace
            states = wait_settled(env, [silent], timeout=15)
    finally:
        server.stop()
    assert states[silent] == ("expired", "2064")
    assert outcome(env, answered) == ("delivered", "0000")
