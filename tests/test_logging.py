"""Structured logs: every line of a JSON-logging server is a JSON object carrying its
request's context, and no password (right, wrong, carrier's, SMTP's) appears anywhere."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from roxgate.logs import (
    ACCOUNT,
    SMS_ID,
    JsonFormatter,
    RedactSecrets,
    bind_request,
    configure_logging,
    redact,
)
from tests.conftest import PASSWORD, Env, Server, free_port, request_body, seed_accounts
from tests.smsc_thread import ThreadedSmsc

# --- the formatter and the filter, on a real handler -----------------------------------


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.logging")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_fields(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    logger.warning("hello %s", "world", extra={"result": "0000", "n": 3})
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    hello, failed = lines(stream)
    assert hello["message"] == "hello world"
    assert hello["level"] == "WARNING" and hello["logger"] == "tests.logging"
    assert hello["time"].endswith("Z") and hello["time"][10] == "T"  # ISO 8601, UTC
    assert (hello["result"], hello["n"]) == ("0000", 3)
    assert "exception" not in hello
    assert "ValueError: boom" in failed["exception"]
    assert failed["exception"].startswith("Traceback")


def test_context_belongs_to_its_own_task(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured

    async def request(request_id: str, account: str) -> None:
        bind_request(request_id)
        await asyncio.sleep(0.01)  # the two requests interleave
        ACCOUNT.set(account)
        await asyncio.sleep(0.01)
        logger.info("send %s", request_id)

    async def both() -> None:
        await asyncio.gather(request("r-1", "CI00000001"), request("r-2", "CI00000002"))
        logger.info("outside")

    asyncio.run(both())
    by_message = {line["message"]: line for line in lines(stream)}
    assert by_message["send r-1"]["request_id"] == "r-1"
    assert by_message["send r-1"]["account"] == "CI00000001"
    assert by_message["send r-2"]["request_id"] == "r-2"
    assert by_message["send r-2"]["account"] == "CI00000002"
    assert "request_id" not in by_message["outside"] and "account" not in by_message["outside"]


def test_an_explicit_extra_wins_over_the_context(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured

    async def work() -> None:
        SMS_ID.set("from-context")
        logger.info("a")
        logger.info("b", extra={"sms_id": "explicit"})

    asyncio.run(work())
    a, b = lines(stream)
    assert a["sms_id"] == "from-context" and b["sms_id"] == "explicit"


def test_secrets_are_redacted(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    logger.info(
        "login password=%s for %s",
        "hunter2",
        "x@example.com",
        extra={"password": "hunter3", "smtp_password": "hunter4", "callback_secret": "s3"},
    )
    logger.info('body {"Sender": {"Password": "hunter5", "Username": "u"}}')
    logger.info("url smpp://esme:hunter6@smsc.example:2775 and postgresql://u:hunter7@db/x")
    try:
        raise RuntimeError("cannot reach smtp://mailer:hunter8@mail.example:25")
    except RuntimeError:
        logger.exception("mail")
    text = stream.getvalue()
    for secret in ("hunter2", "hunter3", "hunter4", "s3", "hunter5", "hunter6", "hunter7"):
        assert secret not in text, secret
    assert "hunter8" not in text
    first, body, url, mail = lines(stream)
    assert first["message"] == "login password=[redacted] for x@example.com"
    assert first["password"] == first["smtp_password"] == first["callback_secret"] == "[redacted]"
    assert '"Username": "u"' in body["message"]
    assert "smpp://esme:***@smsc.example:2775" in url["message"]
    assert "smtp://mailer:***@mail.example:25" in mail["exception"]


def test_redact_leaves_ordinary_text_alone() -> None:
    for text in (
        "send request=0190 account=CI00000001 result=0000 ms=1.2",
        "SMPP trx bound to smpp://127.0.0.1:2775 (system_id 'roxsim')",
        "http://127.0.0.1:8080/readyz",
        "passwords are never logged",
    ):
        assert redact(text) == text


def test_configure_logging_rejects_unknown_values() -> None:
    with pytest.raises(ValueError, match="log_format"):
        configure_logging("INFO", "yaml")
    with pytest.raises(ValueError, match="log_level"):
        configure_logging("CHATTY", "json")


# --- a whole server logging JSON ------------------------------------------------------

CARRIER_PASSWORD = "Sekr3tPw"  # SMPP passwords are at most 8 characters
SMTP_PASSWORD = "mail-Pw-77x"
WRONG_PASSWORD = "wrong-Pw-42y"


@pytest.fixture(scope="module")
def smsc() -> Iterator[ThreadedSmsc]:
    smsc = ThreadedSmsc(receipt_delay=0.1)
    smsc.start()
    yield smsc
    smsc.close()


@pytest.fixture(scope="module")
def json_gw(engine_factory: Any, smsc: ThreadedSmsc) -> Iterator[Env]:
    path, engine = engine_factory("json_logs")
    seed_accounts(engine)
    server = Server(
        path,
        env_extra={
            "ROXGATE_LOG_FORMAT": "json",
            "ROXGATE_CARRIER": smsc.url("roxgate", CARRIER_PASSWORD),
            # Nobody listens there: e-mails fail and are logged, with the URL.
            "ROXGATE_SMTP_URL": f"smtp://mailer:{SMTP_PASSWORD}@127.0.0.1:{free_port()}",
            "ROXGATE_CALLBACK_ALLOW_NETS": "127.0.0.0/8",
            "ROXGATE_CALLBACK_RETRY": "0.2",
            "ROXGATE_CALLBACK_TIMEOUT": "2",
        },
    )
    server.start()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield Env(server, engine, client)
    server.stop()


def wait_for(check: Callable[[], Any], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def log_lines(server: Server) -> list[dict[str, Any]]:
    out = []
    for raw in server.logs().splitlines():
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pytest.fail(f"not a JSON log line: {raw!r}")
        assert isinstance(line, dict), raw
        assert {"time", "level", "logger", "message"} <= line.keys(), raw
        out.append(line)
    return out


def test_json_server_logs(json_gw: Env) -> None:
    # A receipt callback to a port nobody listens on: retried once, then failed
    # for good, which is logged in the callback's context (account, SMSId).
    dead_url = f"http://127.0.0.1:{free_port()}/gone"
    sent = json_gw.post(request_body(ReceiptFlag=1, ReceiptCallbackURL=dead_url))
    assert sent["Result"] == "0000", sent
    sms_id = sent["Messages"]["1"]["SMSId"]
    refused = json_gw.post(request_body(password=WRONG_PASSWORD))
    assert refused["Result"] == "2002", refused
    wait_for(
        lambda: any(
            line.get("sms_id") == sms_id and "failed for good" in line["message"]
            for line in log_lines(json_gw.server)
        ),
        what="the callback's final failure in the log",
    )
    json_gw.server.stop()  # the shutdown lines are JSON too
    logs = log_lines(json_gw.server)

    sends = {line["request_id"]: line for line in logs if line["message"].startswith("send ")}
    ok = sends[sent["Messages"]["RequestId"]]
    assert (ok["logger"], ok["account"], ok["result"]) == ("roxgate.api", "CI00000001", "0000")
    assert ok["duration_ms"] >= 0
    bad = sends[refused["Messages"]["RequestId"]]
    assert (bad["account"], bad["result"]) == ("CI00000001", "2002")
    final = next(line for line in logs if "failed for good" in line["message"])
    assert (final["sms_id"], final["account"]) == (sms_id, "CI00000001")
    assert final["level"] == "WARNING"
    # uvicorn's own lines come through the same formatter.
    assert any(line["logger"].startswith("uvicorn") for line in logs)
    assert any("roxgate serving on" in line["message"] for line in logs)
    # The mail relay was tried (and its URL logged), the carrier was bound.
    assert any("mailer:***@" in line["message"] for line in logs)
    assert any("bound to smpp://127.0.0.1" in line["message"] for line in logs)

    text = json_gw.server.logs()
    for secret in (PASSWORD, WRONG_PASSWORD, CARRIER_PASSWORD, SMTP_PASSWORD):
        assert secret not in text, secret
