"""The receiving side of the SDK, and the example ASGI receiver run under uvicorn:
fed by hand-signed POSTs and by a real gateway's callbacks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from roxgate.accounts import admin
from roxgate.client import (
    Client,
    Receipt,
    Reply,
    parse_callback,
    parse_receipt,
    parse_reply,
    receipt_answer,
    reply_answer,
    verify_signature,
)
from roxgate.rox.signing import signature_headers
from roxgate.store.schema import accounts
from tests.conftest import PASSWORD, Server, free_port

ROOT = Path(__file__).resolve().parents[2]
SECRET = "example-callback-secret-0123456789"

RECEIPT: dict[str, Any] = {
    "Name": "ROX_API_Receipt",
    "Version": 1.1,
    "Sender": {"AccountId": "CI00000001", "Username": "user@your_domain.com"},
    "Messages": {
        "RequestId": "01a21768-fd52-70da-87f9-3226e77b7dc2",
        "Receipt": {
            "SMSId": "01a21768-fdde-76de-98a6-816af1b48b79",
            "DestTn": "+61407559992",
            "Result": "2060",
            "ResultText": "Carrier reported UNDELIV",
            "Timestamp": "26-Nov-2026 10:31:26 (UTC)",
        },
    },
}
REPLY: dict[str, Any] = {
    "Name": "ROX_API_Reply",
    "Version": 1.1,
    "Sender": {"AccountId": "CI00000001", "Username": "user@your_domain.com"},
    "Messages": {
        "RequestId": "01a21768-fd52-70da-87f9-3226e77b7dc2",
        "Reply": {
            "SMSId": "01a21768-fdde-76de-98a6-816b03d226de",
            "ReplyFrom": "+61407559998",
            "ReplyText": "Thanks, see you then",
            "SMSText": "Hi Ben, see you at 10:30",
            "Timestamp": "26-Nov-2026 10:31:26 (UTC)",
        },
    },
}


def wire(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


# --- parsing -------------------------------------------------------------------------


def test_parse_receipt_from_bytes_str_and_dict() -> None:
    for body in (wire(RECEIPT), wire(RECEIPT).decode(), RECEIPT, b"\xef\xbb\xbf" + wire(RECEIPT)):
        receipt = parse_receipt(body)
        assert receipt == Receipt(
            account_id="CI00000001",
            username="user@your_domain.com",
            request_id="01a21768-fd52-70da-87f9-3226e77b7dc2",
            sms_id="01a21768-fdde-76de-98a6-816af1b48b79",
            dest_tn="+61407559992",
            result="2060",
            result_text="Carrier reported UNDELIV",
            timestamp=datetime(2026, 11, 26, 10, 31, 26, tzinfo=UTC),
            raw={},
        )
        assert not receipt.delivered
        assert receipt.raw["Messages"]["Receipt"]["DestTn"] == "+61407559992"


def test_parse_reply_accepts_both_names() -> None:
    for name in ("ROX_API_Reply", "ROX_API_Reply_Response"):
        reply = parse_reply(wire({**REPLY, "Name": name}))
        assert isinstance(reply, Reply)
        assert reply.reply_from == "+61407559998" and reply.reply_text == "Thanks, see you then"
        assert reply.sms_text == "Hi Ben, see you at 10:30"
        assert reply.sms_id == "01a21768-fdde-76de-98a6-816b03d226de"
        assert reply.timestamp == datetime(2026, 11, 26, 10, 31, 26, tzinfo=UTC)
    assert isinstance(parse_callback(wire(RECEIPT)), Receipt)
    assert isinstance(parse_callback({**REPLY, "Name": "ROX_API_Reply_Response"}), Reply)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not JSON"),
        (b"{not json", "not JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "not a JSON object"),
        (wire({**RECEIPT, "Name": "ROX_API_Reply"}), "Name is 'ROX_API_Reply'"),
        (wire({k: v for k, v in RECEIPT.items() if k != "Messages"}), "Messages is missing"),
        (wire({**RECEIPT, "Messages": {"Receipt": []}}), "Messages.Receipt is missing"),
        (
            wire({**RECEIPT, "Messages": {"Receipt": {"SMSId": "s", "Result": 0}}}),
            "Result is not a 4-character code",
        ),
        (
            wire({**RECEIPT, "Messages": {"Receipt": {"Result": "0000"}}}),
            "Messages.Receipt.SMSId is missing",
        ),
        (wire({**RECEIPT, "Sender": {}}), "Sender.AccountId is missing"),
    ],
)
def test_malformed_receipts(body: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_receipt(body)


def test_malformed_replies() -> None:
    with pytest.raises(ValueError, match="Name is 'ROX_API_Receipt'"):
        parse_reply(wire(RECEIPT))
    no_from = {**REPLY, "Messages": {"Reply": {"ReplyText": "x"}}}
    with pytest.raises(ValueError, match=r"Messages\.Reply\.ReplyFrom is missing"):
        parse_reply(no_from)
    with pytest.raises(ValueError, match="not a ROX_API_Receipt or ROX_API_Reply"):
        parse_callback(b'{"Name": "ROX_API_Request"}')


def test_answers() -> None:
    assert json.loads(receipt_answer()) == {
        "Name": "ROX_API_Receipt_Response",
        "Version": 1.1,
        "Result": "0000",
        "ResultText": "OK",
    }
    assert json.loads(reply_answer())["Name"] == "ROX_API_Reply_Response"
    assert json.loads(reply_answer("2099", "busy, try later"))["Result"] == "2099"


# --- signatures ----------------------------------------------------------------------


def test_verify_signature() -> None:
    body = wire(RECEIPT)
    headers = signature_headers(SECRET, body)
    assert verify_signature(SECRET, body, headers)
    assert verify_signature(SECRET, body, {k.lower(): v for k, v in headers.items()})
    assert not verify_signature(SECRET, body.replace(b"2060", b"0000"), headers)
    assert not verify_signature(SECRET + "x", body, headers)
    assert not verify_signature(SECRET, body, {})
    stale = signature_headers(SECRET, body, now=time.time() - 301)
    assert not verify_signature(SECRET, body, stale)
    assert verify_signature(SECRET, body, stale, tolerance_s=600)
    future = signature_headers(SECRET, body, now=time.time() + 301)
    assert not verify_signature(SECRET, body, future)


# --- the example receiver, for real --------------------------------------------------


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``uvicorn examples.receiver:app`` on 127.0.0.1, as its docstring says to run it."""
    port = free_port()
    log = tmp_path_factory.mktemp("receiver") / "receiver.log"
    env = {**os.environ, "ROX_CALLBACK_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "examples.receiver:app", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"receiver did not start: {log.read_text()}") from None
                time.sleep(0.05)
        yield url, log
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def post_signed(url: str, body: bytes, secret: str = SECRET, **kwargs: Any) -> httpx.Response:
    headers = {"Content-Type": "application/json", **signature_headers(secret, body, **kwargs)}
    return httpx.post(url, content=body, headers=headers, timeout=10)


def wait_for(log: Path, text: str) -> str:
    deadline = time.monotonic() + 15
    while text not in (content := log.read_text()):
        assert time.monotonic() < deadline, f"{text!r} not printed:\n{content}"
        time.sleep(0.05)
    return content


def test_example_receiver_answers_signed_posts(receiver: tuple[str, Path]) -> None:
    url, log = receiver
    answer = post_signed(url + "/receipt", wire(RECEIPT))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == json.loads(receipt_answer())
    wait_for(log, "receipt 2060 'Carrier reported UNDELIV' to +61407559992")

    for name in ("ROX_API_Reply", "ROX_API_Reply_Response"):
        answer = post_signed(url + "/reply", wire({**REPLY, "Name": name}))
        assert answer.status_code == 200 and answer.json()["Name"] == "ROX_API_Reply_Response"
    wait_for(log, "reply from +61407559998: 'Thanks, see you then'")


def test_example_receiver_refuses_what_it_must(receiver: tuple[str, Path]) -> None:
    url, _ = receiver
    body = wire(RECEIPT)
    headers = signature_headers(SECRET, body)
    tampered = httpx.post(url, content=body.replace(b"2060", b"0000"), headers=headers)
    assert tampered.status_code == 401
    assert post_signed(url, body, secret="not-the-secret").status_code == 401
    assert post_signed(url, body, now=time.time() - 3600).status_code == 401
    assert httpx.post(url, content=body).status_code == 401  # unsigned
    assert post_signed(url, b'{"Name": "ROX_API_Request"}').status_code == 400
    assert post_signed(url, b"x" * (65 * 1024)).status_code == 413
    assert httpx.get(url).status_code == 405


def test_example_receiver_takes_a_real_gateways_callbacks(
    receiver: tuple[str, Path], engine_factory: Any
) -> None:
    """A gateway that may call loopback sends a message with receipts and replies
    pointed at the receiver; the simulator delivers it and the number replies."""
    url, log = receiver
    path, engine = engine_factory("receiver")
    admin.add_account(engine, "CI00000001", "Receiver", region="AU")
    admin.add_user(engine, "CI00000001", "user@example.com", PASSWORD)
    with engine.begin() as conn:  # the secret the receiver was started with
        conn.execute(accounts.update().values(callback_secret=SECRET))
    engine.dispose()
    server = Server(path, env_extra={"ROXGATE_CALLBACK_ALLOW_NETS": "127.0.0.0/8"})
    server.start()
    try:
        with Client(server.url, "CI00000001", "user@example.com", PASSWORD) as rox:
            sent = rox.send_one(
                "+61407559998",  # simulator: delivered, then the number replies
                "Hi Ben, see you at 10:30",
                receipt_flag=1,
                receipt_url=url + "/receipt",
                reply_type="H",
                reply_url=url + "/reply",
            )
        assert sent.queued
        printed = wait_for(log, f"receipt 0000 'Delivered' to +61407559998 SMSId {sent.sms_id}")
        printed = wait_for(log, f"to SMSId {sent.sms_id} ('Hi Ben, see you at 10:30')")
        assert "reply from +61407559998: 'Thanks, see you then'" in printed
    finally:
        server.stop()
