"""Reporting back, whole system: receipts and replies reach a real HTTP receiver
and a real SMTP server (aiosmtpd), signed, retried, and never lost."""

from __future__ import annotations

import email
import email.policy
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from roxgate.rox.signing import verify
from roxgate.store.schema import accounts, callback_attempts, callbacks, inbound, messages
from tests.conftest import Env, Server, free_port, request_body, seed_accounts

ACCOUNT = "CI00000001"
USER = "user@example.com"


# --- a customer's callback receiver ------------------------------------------


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """An HTTP server standing in for the customer: the path says how it answers.

    ``/ok`` 200 empty; ``/rox`` 200 ``{"Result":"0000"}``; ``/500`` 500;
    ``/404`` 404; ``/flaky`` 500 until ``healed`` is set, then 200.
    """

    hits: list[Hit] = field(default_factory=list)
    healed: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def for_path(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            path = self.path.split("?")[0]
            receiver.hits.append(Hit(path, dict(self.headers.items()), body, time.monotonic()))
            status, answer = 200, b""
            if path == "/rox":
                answer = b'{"Name":"ROX_API_Receipt_Response","Result":"0000"}'
            elif path == "/500" or (path == "/flaky" and not receiver.healed.is_set()):
                status = 500
            elif path == "/404":
                status = 404
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    recv = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recv))
    recv.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield recv
    server.shutdown()


# --- a real SMTP server ----------------------------------------------------------


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(parsed)  # type: ignore[arg-type]
        return "250 OK"

    def about(self, sms_id: str) -> list[EmailMessage]:
        return [m for m in self.messages if sms_id in m.get_content()]


@pytest.fixture(scope="module")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


# --- the gateway --------------------------------------------------------------------


def gateway_env(smtp_port: int, **extra: str) -> dict[str, str]:
    return {
        "ROXGATE_SIM_RECEIPT_DELAY": "0.1",
        "ROXGATE_CALLBACK_ALLOW_NETS": "127.0.0.0/8",
        "ROXGATE_CALLBACK_RETRY": "0.3,0.3",
        "ROXGATE_CALLBACK_TIMEOUT": "2",
        "ROXGATE_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        **extra,
    }


@pytest.fixture(scope="module")
def gw(engine_factory: Any, mailbox: tuple[Mailbox, int]) -> Iterator[Env]:
    path, engine = engine_factory("reporting")
    seed_accounts(engine)
    server = Server(path, env_extra=gateway_env(mailbox[1]))
    server.start()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield Env(server, engine, client)
    server.stop()


def wait_for(check: Callable[[], Any], timeout: float = 15, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def send(env: Env, number: str, text: str = "Your appointment is at 10", **options: Any) -> str:
    recipient = {"DestTn": number, "SMSText": text, "DestName": "Jo", "DestEmail": "jo@x.org"}
    data = env.post(request_body([recipient], **options))
    assert data["Result"] == "0000", data
    assert data["Messages"]["1"]["Result"] == "0000", data
    return str(data["Messages"]["1"]["SMSId"])


def message_row(env: Env, sms_id: str) -> Any:
    with env.engine.connect() as conn:
        return conn.execute(select(messages).where(messages.c.id == sms_id)).one()


def callback_secret(env: Env) -> str:
    with env.engine.connect() as conn:
        return str(
            conn.execute(
                select(accounts.c.callback_secret).where(accounts.c.id == ACCOUNT)
            ).scalar_one()
        )


def attempts_of(env: Env, sms_id: str) -> list[Any]:
    with env.engine.connect() as conn:
        return conn.execute(
            select(callback_attempts)
            .join(callbacks, callbacks.c.id == callback_attempts.c.callback_id)
            .where(callbacks.c.message_id == sms_id)
            .order_by(callback_attempts.c.id)
        ).all()


def receipts_for(receiver: Receiver, sms_id: str) -> list[Hit]:
    return [h for h in receiver.hits if sms_id.encode() in h.body]


def sim_reply(env: Env, source: str, text: str) -> None:
    answer = env.client.post("/sim/reply", json={"From": source, "Text": text})
    assert answer.status_code == 200, answer.text
    assert answer.json()["Result"] == "0000"


# --- receipts ----------------------------------------------------------------------


@pytest.mark.parametrize("flag", [0, 1, 2])
def test_receipt_flag(gw: Env, receiver: Receiver, flag: int) -> None:
    url = receiver.url(f"/ok?flag={flag}")
    delivered = send(gw, "+61407555101", ReceiptFlag=flag, ReceiptCallbackURL=url)
    undelivered = send(gw, "+61407559992", ReceiptFlag=flag, ReceiptCallbackURL=url)
    for sms_id in (delivered, undelivered):
        wait_for(lambda s=sms_id: message_row(gw, s).final_at, what="final state")
    if flag == 0:
        time.sleep(0.5)  # a receipt, wrongly queued, would be posted in this time
    else:
        wait_for(lambda: receipts_for(receiver, undelivered), what="the failure receipt")
        time.sleep(0.3)
    got = {s: len(receipts_for(receiver, s)) for s in (delivered, undelivered)}
    expected = {0: (0, 0), 1: (1, 1), 2: (0, 1)}[flag]
    assert (got[delivered], got[undelivered]) == expected


def test_receipt_body_and_signature(gw: Env, receiver: Receiver) -> None:
    sms_id = send(gw, "+61407555102", ReceiptFlag=1, ReceiptCallbackURL=receiver.url("/rox"))
    [hit] = wait_for(lambda: receipts_for(receiver, sms_id), what="the receipt")
    assert hit.headers["Content-Type"] == "application/json"
    body = orjson.loads(hit.body)
    row = message_row(gw, sms_id)
    assert body == {
        "Name": "ROX_API_Receipt",
        "Version": 1.1,
        "Sender": {"AccountId": ACCOUNT, "Username": USER},
        "Messages": {
            "RequestId": row.request_id,
            "Receipt": {
                "SMSId": sms_id,
                "DestTn": "+61407555102",
                "Result": "0000",
                "ResultText": body["Messages"]["Receipt"]["ResultText"],
                "Timestamp": body["Messages"]["Receipt"]["Timestamp"],
            },
        },
    }
    assert body["Messages"]["Receipt"]["Timestamp"].endswith(" (UTC)")
    secret = callback_secret(gw)
    assert hit.headers["X-Rox-Signature"].startswith("sha256=")
    assert verify(secret, hit.body, hit.headers)
    assert not verify(secret, hit.body.replace(b"0000", b"2060"), hit.headers)
    assert not verify("another secret", hit.body, hit.headers)
    [attempt] = attempts_of(gw, sms_id)
    assert (attempt.outcome, attempt.http_status) == ("ok", 200)


def test_multipart_message_has_one_receipt(gw: Env, receiver: Receiver) -> None:
    sms_id = send(
        gw, "+61407555103", "x" * 400, ReceiptFlag=1, ReceiptCallbackURL=receiver.url("/ok")
    )
    wait_for(lambda: receipts_for(receiver, sms_id), what="the receipt")
    time.sleep(0.5)
    assert len(receipts_for(receiver, sms_id)) == 1
    assert message_row(gw, sms_id).parts == 3


def test_500_is_retried_on_schedule_then_mailed(
    gw: Env, receiver: Receiver, mailbox: tuple[Mailbox, int]
) -> None:
    sms_id = send(gw, "+61407555104", ReceiptFlag=1, ReceiptCallbackURL=receiver.url("/500"))
    [mail] = wait_for(lambda: mailbox[0].about(sms_id), what="the e-mail")
    hits = receipts_for(receiver, sms_id)
    assert len(hits) == 3  # ROXGATE_CALLBACK_RETRY=0.3,0.3: 1 + 2 attempts
    gaps = [b.at - a.at for a, b in itertools.pairwise(hits)]
    assert all(gap >= 0.25 for gap in gaps), gaps
    assert [(a.outcome, a.http_status) for a in attempts_of(gw, sms_id)] == [
        ("retry", 500), ("retry", 500), ("final", 500),
    ]  # fmt: skip
    assert mail["To"] == USER and "+61407555104" in mail["Subject"]
    content = mail.get_content()
    for fact in (sms_id, "0000", "Jo", "jo@x.org", "Your appointment is at 10"):
        assert fact in content


def test_404_is_mailed_at_once(gw: Env, receiver: Receiver, mailbox: tuple[Mailbox, int]) -> None:
    sms_id = send(gw, "+61407555105", ReceiptFlag=1, ReceiptCallbackURL=receiver.url("/404"))
    wait_for(lambda: mailbox[0].about(sms_id), what="the e-mail")
    assert [(a.outcome, a.http_status) for a in attempts_of(gw, sms_id)] == [("final", 404)]


def test_receiver_down_for_the_whole_schedule_is_mailed(
    gw: Env, mailbox: tuple[Mailbox, int]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/receipt"
    sms_id = send(gw, "+61407555106", ReceiptFlag=1, ReceiptCallbackURL=dead)
    wait_for(lambda: mailbox[0].about(sms_id), what="the e-mail")
    attempts = attempts_of(gw, sms_id)
    assert [a.outcome for a in attempts] == ["retry", "retry", "final"]
    assert all(a.http_status is None and a.error for a in attempts)


def test_no_url_sends_the_receipt_by_mail(gw: Env, mailbox: tuple[Mailbox, int]) -> None:
    sms_id = send(gw, "+61407559992", ReceiptFlag=2)
    [mail] = wait_for(lambda: mailbox[0].about(sms_id), what="the e-mail")
    assert "2060" in mail["Subject"] and "2060" in mail.get_content()


# --- replies and opt-out ------------------------------------------------------------


def inbound_rows(env: Env, source: str) -> list[Any]:
    with env.engine.connect() as conn:
        return conn.execute(
            select(inbound).where(inbound.c.source == source).order_by(inbound.c.id)
        ).all()


def test_reply_http(gw: Env, receiver: Receiver) -> None:
    number = "+61407555201"
    sms_id = send(gw, number, ReplyType="H", ReplyCallbackURL=receiver.url("/rox"))
    wait_for(lambda: message_row(gw, sms_id).status == "delivered", what="delivery")
    sim_reply(gw, number, "Thanks No Problem")
    [hit] = wait_for(lambda: receipts_for(receiver, sms_id), what="the reply callback")
    body = orjson.loads(hit.body)
    assert body["Name"] == "ROX_API_Reply"
    assert body["Messages"]["Reply"]["ReplyFrom"] == number
    assert body["Messages"]["Reply"]["ReplyText"] == "Thanks No Problem"
    assert body["Messages"]["Reply"]["SMSText"] == "Your appointment is at 10"
    assert verify(callback_secret(gw), hit.body, hit.headers)


def test_reply_email(gw: Env, mailbox: tuple[Mailbox, int]) -> None:
    number = "+61407555202"
    sms_id = send(gw, number, ReplyType="E")
    wait_for(lambda: message_row(gw, sms_id).status == "delivered", what="delivery")
    sim_reply(gw, number, "See you then")
    [mail] = wait_for(lambda: mailbox[0].about(sms_id), what="the reply e-mail")
    assert mail["Subject"] == f"Reply from Jo ({number})"
    assert "See you then" in mail.get_content() and "jo@x.org" in mail.get_content()


def forwards_to_mobile(env: Env) -> list[Any]:
    with env.engine.connect() as conn:
        return conn.execute(select(messages).where(messages.c.dest_tn == "+61400000001")).all()


@pytest.mark.parametrize("reply_type", ["S", "B"])
def test_reply_sms_and_both(gw: Env, mailbox: tuple[Mailbox, int], reply_type: str) -> None:
    number = f"+6140755530{ord(reply_type) % 10}"
    sms_id = send(gw, number, ReplyType=reply_type)
    wait_for(lambda: message_row(gw, sms_id).status == "delivered", what="delivery")
    before = len(forwards_to_mobile(gw))
    text = f"Reply {reply_type}"
    sim_reply(gw, number, text)
    forwarded = wait_for(
        lambda: [m for m in forwards_to_mobile(gw)[before:] if m.status == "delivered"],
        what="the SMS to the user's mobile",
    )
    assert forwarded[0].text == f"Reply from Jo ({number}): {text}"
    if reply_type == "B":
        wait_for(lambda: mailbox[0].about(sms_id), what="the reply e-mail")
    else:
        time.sleep(0.3)
        assert mailbox[0].about(sms_id) == []


def test_unmatched_inbound_is_kept(gw: Env) -> None:
    sim_reply(gw, "+61407555999", "who is this?")
    [row] = inbound_rows(gw, "+61407555999")
    assert (row.action, row.matched_message_id, row.text) == ("unmatched", None, "who is this?")


def test_stop_then_send_gets_2035_and_start_lifts_it(gw: Env, receiver: Receiver) -> None:
    number = "+61407555401"
    sms_id = send(gw, number, ReplyType="H", ReplyCallbackURL=receiver.url("/ok"))
    wait_for(lambda: message_row(gw, sms_id).status == "delivered", what="delivery")
    sim_reply(gw, number, "stop")
    wait_for(lambda: receipts_for(receiver, sms_id), what="the STOP reply forwarded")
    data = gw.post(request_body([{"DestTn": number, "SMSText": "again"}]))
    assert data["Messages"]["1"]["Result"] == "2035" and data["Messages"]["1"]["SMSId"] is None
    sim_reply(gw, number, "START")
    assert [r.action for r in inbound_rows(gw, number)] == ["callback+optout", "callback+optin"]
    send(gw, number, "welcome back")


# --- SSRF ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "code"), [("ReceiptCallbackURL", "2019"), ("ReplyCallbackURL", "2021")]
)
@pytest.mark.parametrize(
    "url", ["http://10.0.0.1/r", "http://169.254.169.254/latest", "http://[::ffff:192.168.1.1]/"]
)
def test_literal_private_addresses_are_refused_at_intake(
    gw: Env, field: str, code: str, url: str
) -> None:
    options: dict[str, Any] = {field: url}
    if field == "ReceiptCallbackURL":
        options["ReceiptFlag"] = 1
    else:
        options["ReplyType"] = "H"
    data = gw.post(request_body(**options))
    assert data["Result"] == code, data
    assert data["Messages"]["Count"] == 0 and "1" not in data["Messages"]


def loopback_hostname() -> str:
    """A name (not 'localhost', which intake refuses by its text) that resolves to loopback."""
    name = socket.gethostname()
    addresses = {a[4][0] for a in socket.getaddrinfo(name, None)}
    if not any(a.startswith("127.") or a == "::1" for a in addresses):
        pytest.skip(f"this machine's name {name!r} does not resolve to loopback")
    return name


def test_hostname_resolving_to_loopback_is_refused_at_delivery_unless_allowed(
    engine_factory: Any, receiver: Receiver, mailbox: tuple[Mailbox, int]
) -> None:
    host = loopback_hostname()
    path, engine = engine_factory("ssrf")
    seed_accounts(engine)
    # No ROXGATE_CALLBACK_ALLOW_NETS: loopback is off limits.
    env_extra = gateway_env(mailbox[1])
    del env_extra["ROXGATE_CALLBACK_ALLOW_NETS"]
    server = Server(path, env_extra=env_extra)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            env = Env(server, engine, client)
            url = receiver.url("/ok", host=host)
            sms_id = send(env, "+61407555501", ReceiptFlag=1, ReceiptCallbackURL=url)
            wait_for(lambda: mailbox[0].about(sms_id), what="the e-mail instead")
            assert receipts_for(receiver, sms_id) == []
            [attempt] = attempts_of(env, sms_id)
            assert attempt.outcome == "final" and attempt.http_status is None
            assert attempt.error
    finally:
        server.stop()
    # The same on the shared gateway, which allows 127.0.0.0/8: delivered.
    # (Reuses the module's receiver; a fresh message.)


def test_hostname_resolving_to_loopback_is_delivered_when_allowed(
    gw: Env, receiver: Receiver
) -> None:
    url = receiver.url("/ok", host=loopback_hostname())
    sms_id = send(gw, "+61407555502", ReceiptFlag=1, ReceiptCallbackURL=url)
    wait_for(lambda: receipts_for(receiver, sms_id), what="the receipt")


# --- crash safety -----------------------------------------------------------------------


def test_sigkill_in_the_middle_of_a_retry_schedule_loses_nothing(
    engine_factory: Any, receiver: Receiver, mailbox: tuple[Mailbox, int]
) -> None:
    path, engine = engine_factory("reporting-kill")
    seed_accounts(engine)
    env_extra = gateway_env(mailbox[1], ROXGATE_CALLBACK_RETRY="1.5,1.5,1.5")
    server = Server(path, env_extra=env_extra)
    server.start()
    receiver.healed.clear()
    url = receiver.url("/flaky")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        env = Env(server, engine, client)
        ids = [
            send(env, f"+6140755560{i}", ReceiptFlag=1, ReceiptCallbackURL=url) for i in range(5)
        ]
        # Every receipt failed once and waits for its retry: kill the gateway now.
        wait_for(lambda: all(receipts_for(receiver, s) for s in ids), what="first attempts")
        server.kill()
    receiver.healed.set()
    server.start()
    try:
        wait_for(
            lambda: all(
                any(h.path == "/flaky" for h in receipts_for(receiver, s))
                and attempts_of(env, s)[-1].outcome == "ok"
                for s in ids
            ),
            timeout=20,
            what="every receipt delivered after the restart",
        )
        for s in ids:
            outcomes = [a.outcome for a in attempts_of(env, s)]
            assert outcomes[-1] == "ok" and outcomes.count("ok") == 1, outcomes
    finally:
        server.stop()


def test_auto_replies_racing_the_record_of_their_message_are_matched(
    engine_factory: Any, mailbox: tuple[Mailbox, int]
) -> None:
    # No receipt delay: the simulator's receipt and its number's reply follow the
    # submit_sm_resp at once, often before the submission is committed. Each
    # reply must still be matched to its message (not kept as unmatched), and
    # each part's receipt taken the first time (not bounced for redelivery).
    path, engine = engine_factory("reply-race")
    seed_accounts(engine)
    server = Server(path, env_extra=gateway_env(mailbox[1], ROXGATE_SIM_RECEIPT_DELAY="0"))
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            env = Env(server, engine, client)
            count = 40
            data = env.post(
                request_body(
                    [
                        # 3 parts each: the parts' answers and receipts interleave.
                        {"DestTn": f"+61407{i:02d}9998", "SMSText": "Reply please " * 30}
                        for i in range(count)
                    ]
                )
            )
            assert data["Result"] == "0000", data
            ids = {data["Messages"][str(i + 1)]["SMSId"] for i in range(count)}
            assert None not in ids, data
            sources = [f"+61407{i:02d}9998" for i in range(count)]

            def replies() -> list[Any]:
                with engine.connect() as conn:
                    rows = conn.execute(select(inbound).where(inbound.c.source.in_(sources))).all()
                return rows if len(rows) >= 3 * count else []

            rows = wait_for(replies, timeout=60, what="every part's auto-reply")
    finally:
        server.stop()
    assert len(rows) == 3 * count
    assert {r.matched_message_id for r in rows} == ids, [r.action for r in rows]
    assert "asked for redelivery" not in server.logs()
