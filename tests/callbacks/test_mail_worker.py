"""The mail outbox sender against a real SMTP server (aiosmtpd on loopback) and SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from sqlalchemy import Engine, select

from roxgate.callbacks.mail import (
    MailWorker,
    SmtpTarget,
    build_message,
    clean_subject,
    parse_sender,
    parse_smtp_url,
)
from roxgate.report.bodies import MessageFacts, receipt_mail
from roxgate.report.outbox import MailJob, queue_mail
from roxgate.store.engine import immediate
from roxgate.store.ids import new_id, now_ms
from roxgate.store.schema import mail_outbox
from tests.conftest import free_port

FROM = "Roxgate <roxgate@gw.example.org>"


# --- the SMTP server ------------------------------------------------------------------


class Collector:
    """An aiosmtpd handler that keeps what it accepts.

    ``busy``: answer the first N messages 451 (try later); ``reject``:
    recipients answered 550; ``delay``: seconds before answering each message.
    """

    def __init__(self, busy: int = 0, reject: tuple[str, ...] = (), delay: float = 0.0) -> None:
        self.busy = busy
        self.reject = set(reject)
        self.delay = delay
        self.received: list[tuple[str, list[str], EmailMessage]] = []
        self.peers: set[Any] = set()  # one per connection that carried a message
        self.tls: list[bool] = []  # whether each accepted message came over TLS

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.reject:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.busy > 0:
            self.busy -= 1
            return "451 4.3.0 Mailbox busy, try again later"
        assert isinstance(envelope.content, bytes)
        msg = BytesParser(policy=policy.default).parsebytes(envelope.content)
        assert isinstance(msg, EmailMessage)
        self.peers.add(session.peer)
        assert server.transport is not None
        self.tls.append(server.transport.get_extra_info("sslcontext") is not None)
        self.received.append((str(envelope.mail_from), list(envelope.rcpt_tos), msg))
        return "250 2.0.0 Accepted"


@contextlib.contextmanager
def smtp_server(handler: Any, port: int | None = None, **kwargs: Any) -> Iterator[int]:
    controller = Controller(handler, hostname="127.0.0.1", port=port or free_port(), **kwargs)
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


# --- the database -----------------------------------------------------------------------


@pytest.fixture
def engine(engine_factory: Any) -> Engine:
    _, engine = engine_factory("mail")
    return engine


def make_record(engine: Engine) -> Callable[..., Coroutine[Any, Any, Any]]:
    """Like the gateway's group-commit writer: ``fn(conn, *args)`` in one real transaction."""

    def in_tx(fn: Callable[..., Any], *args: Any) -> Any:
        with immediate(engine).begin() as conn:
            return fn(conn, *args)

    async def record(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(in_tx, fn, *args)

    return record


def queue(engine: Engine, to: str = "user@example.com", subject: str = "S", body: str = "B") -> str:
    with engine.begin() as conn:
        return queue_mail(
            conn, account_id="CI00000001", kind="receipt", message_id=new_id(), to_addr=to,
            subject=subject, body=body, now=now_ms(),
        )  # fmt: skip


def row(engine: Engine, mail_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(mail_outbox).where(mail_outbox.c.id == mail_id)).one()


def worker(engine: Engine, port: int, url: str | None = None, **kwargs: Any) -> MailWorker:
    kwargs.setdefault("poll_seconds", 0.05)
    kwargs.setdefault("retry_waits", (0.2, 0.2))
    target = parse_smtp_url(url or f"smtp://127.0.0.1:{port}")
    return MailWorker(make_record(engine), target, FROM, **kwargs)


async def wait_until(check: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def running(w: MailWorker, scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``scenario`` while the worker runs; stop the worker; all bounded in time."""

    async def main() -> None:
        task = asyncio.create_task(w.run())
        try:
            await scenario()
        finally:
            await w.stop(grace=5)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(asyncio.wait_for(main(), 30))


def status_is(engine: Engine, mail_id: str, *statuses: str) -> Callable[[], bool]:
    return lambda: row(engine, mail_id).status in statuses


# --- delivery ---------------------------------------------------------------------------


def test_mail_arrives_exactly_as_queued(engine: Engine) -> None:
    facts = MessageFacts(
        sms_id=new_id(), request_id="req-1", account_id="CI00000001",
        username="zoe@example.com", dest_tn="+61407555001", dest_name="Zoë Müller 🎉",
        dest_email=None, text="Ça va? Your appointment is at 10:00 ✅", product="clinic",
    )  # fmt: skip
    subject, body = receipt_mail(facts, "0000", "Delivered", "2025-01-02T03:04:05Z")
    handler = Collector()
    with smtp_server(handler) as port:
        w = worker(engine, port)
        first = queue(engine, "zoe@example.com", subject, body)
        second = queue(engine, "other@example.com", "Plain", "Line 1\nLine 2\n")
        started = now_ms()

        async def scenario() -> None:
            await wait_until(lambda: len(handler.received) == 2, "two e-mails")
            await wait_until(status_is(engine, second, "sent"), "second recorded")

        running(w, scenario)

    by_rcpt = {rcpt[0]: (sender, msg) for sender, rcpt, msg in handler.received}
    sender, msg = by_rcpt["zoe@example.com"]
    assert sender == "roxgate@gw.example.org"
    assert msg["Subject"] == subject and "Zoë Müller 🎉" in subject
    assert msg["From"] == FROM
    assert msg["To"] == "zoe@example.com"
    assert msg["Message-ID"] == f"<{first}@gw.example.org>"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert abs(parsedate_to_datetime(msg["Date"]).timestamp() * 1000 - started) < 60_000
    assert msg.get_content_type() == "text/plain" and msg.get_content_charset() == "utf-8"
    assert msg.get_content().replace("\r\n", "\n") == body
    assert "Ça va? Your appointment is at 10:00 ✅" in msg.get_content()
    assert by_rcpt["other@example.com"][1].get_content().replace("\r\n", "\n") == "Line 1\nLine 2\n"
    assert len(handler.peers) == 1  # one connection for the batch

    for mail_id in (first, second):
        r = row(engine, mail_id)
        assert r.status == "sent" and r.attempts == 1 and r.last_error is None
        assert r.sent_at is not None and r.sent_at >= started
        assert r.lease_owner is None
    assert w.counts == {"sent": 2}


def test_wake_sends_at_once_without_waiting_for_the_poll(engine: Engine) -> None:
    handler = Collector()
    with smtp_server(handler) as port:
        w = worker(engine, port, poll_seconds=60)

        async def scenario() -> None:
            await asyncio.sleep(0.2)  # the first (empty) claim is done; now it sleeps
            mail_id = queue(engine)
            w.wake()
            await wait_until(status_is(engine, mail_id, "sent"), "sent after wake", within=5)

        running(w, scenario)
    assert len(handler.received) == 1


def test_server_down_then_up(engine: Engine) -> None:
    port = free_port()  # nothing listens there yet
    w = worker(engine, port, retry_waits=(1.0, 1.0))
    mail_id = queue(engine)
    handler = Collector()

    async def scenario() -> None:
        await wait_until(lambda: row(engine, mail_id).attempts == 1, "the first attempt")
        r = row(engine, mail_id)
        assert r.status == "pending" and r.sent_at is None
        assert r.next_at > now_ms()  # waits its turn: 1 s after the failure
        assert "refused" in r.last_error.lower() or "connect" in r.last_error.lower()
        assert r.lease_owner is None
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        await asyncio.to_thread(controller.start)
        try:
            await wait_until(status_is(engine, mail_id, "sent"), "sent once the server is up")
        finally:
            await asyncio.to_thread(controller.stop)

    running(w, scenario)
    r = row(engine, mail_id)
    assert r.attempts == 2 and r.last_error is None and r.sent_at is not None
    assert len(handler.received) == 1
    assert w.counts == {"retry": 1, "sent": 1}


def test_temporary_451_then_success(engine: Engine) -> None:
    handler = Collector(busy=1)
    with smtp_server(handler) as port:
        w = worker(engine, port)
        mail_id = queue(engine)

        async def scenario() -> None:
            await wait_until(lambda: row(engine, mail_id).attempts == 1, "the 451")
            r = row(engine, mail_id)
            assert r.status == "pending" and "451" in r.last_error
            await wait_until(status_is(engine, mail_id, "sent"), "sent on the retry")

        running(w, scenario)
    assert row(engine, mail_id).attempts == 2
    assert len(handler.received) == 1
    assert w.counts == {"retry": 1, "sent": 1}


def test_temporary_failures_give_up_after_the_last_wait(engine: Engine) -> None:
    handler = Collector(busy=1000)
    with smtp_server(handler) as port:
        w = worker(engine, port, retry_waits=(0.05, 0.05))
        mail_id = queue(engine)

        async def scenario() -> None:
            await wait_until(status_is(engine, mail_id, "failed"), "given up")

        running(w, scenario)
    r = row(engine, mail_id)
    assert r.attempts == 3  # two waits: 1 + 2 attempts
    assert "451" in r.last_error and "gave up after 3 attempts" in r.last_error
    assert r.sent_at is None and handler.received == []
    assert w.counts == {"retry": 2, "failed": 1}


def test_permanent_550_fails_at_once_and_the_batch_goes_on(engine: Engine) -> None:
    handler = Collector(reject=("nobody@example.com",))
    with smtp_server(handler) as port:
        w = worker(engine, port, retry_waits=(0.05,))
        rejected = queue(engine, "nobody@example.com")
        accepted = queue(engine, "user@example.com")

        async def scenario() -> None:
            await wait_until(status_is(engine, rejected, "failed"), "the rejection")
            await wait_until(status_is(engine, accepted, "sent"), "the other one")

        running(w, scenario)
    r = row(engine, rejected)
    assert r.attempts == 1 and "550" in r.last_error and "No such user" in r.last_error
    assert [rcpt for _, rcpt, _ in handler.received] == [["user@example.com"]]
    assert len(handler.peers) == 1  # the refusal did not cost the connection
    assert w.counts == {"failed": 1, "sent": 1}


# --- authentication -------------------------------------------------------------------------

USER, SECRET = "rox@gw", "p@ss/w0rd:?#%"
URL_SECRET = "p%40ss%2Fw0rd%3A%3F%23%25"


# aiosmtpd warns when AUTH is allowed without TLS: exactly what these tests need.
plain_auth = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


class Authenticator:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.seen.append((data.login.decode(), data.password.decode()))
        ok = data.login.decode() == USER and data.password.decode() == SECRET
        return AuthResult(success=ok, handled=False)


def auth_server(handler: Collector, auth: Authenticator) -> contextlib.AbstractContextManager[int]:
    return smtp_server(handler, authenticator=auth, auth_required=True, auth_require_tls=False)


@plain_auth
def test_smtp_auth_with_credentials_from_the_url(engine: Engine) -> None:
    handler, auth = Collector(), Authenticator()
    with auth_server(handler, auth) as port:
        url = f"smtp://rox%40gw:{URL_SECRET}@127.0.0.1:{port}?starttls=0"
        w = worker(engine, port, url=url)
        mail_id = queue(engine)

        async def scenario() -> None:
            await wait_until(status_is(engine, mail_id, "sent"), "sent after AUTH")

        running(w, scenario)
    assert auth.seen == [(USER, SECRET)]
    assert len(handler.received) == 1


@plain_auth
def test_wrong_password_is_temporary_and_never_shown(engine: Engine) -> None:
    handler, auth = Collector(), Authenticator()
    with auth_server(handler, auth) as port:
        url = f"smtp://rox%40gw:wrong-s3cret@127.0.0.1:{port}?starttls=0"
        w = worker(engine, port, url=url)
        mail_id = queue(engine)

        async def scenario() -> None:
            await wait_until(lambda: row(engine, mail_id).attempts == 1, "the failed login")

        running(w, scenario)
    r = row(engine, mail_id)
    assert r.status == "pending" and "535" in r.last_error
    assert "wrong-s3cret" not in r.last_error
    assert handler.received == []


@plain_auth
def test_credentials_are_never_sent_in_plain_text_unless_asked(engine: Engine) -> None:
    # No starttls= in the URL, credentials given: STARTTLS is required, and
    # this server offers none, so no AUTH happens at all.
    handler, auth = Collector(), Authenticator()
    with auth_server(handler, auth) as port:
        w = worker(engine, port, url=f"smtp://rox%40gw:{URL_SECRET}@127.0.0.1:{port}")
        mail_id = queue(engine)

        async def scenario() -> None:
            await wait_until(lambda: row(engine, mail_id).attempts == 1, "the refusal")

        running(w, scenario)
    r = row(engine, mail_id)
    assert r.status == "pending" and "STARTTLS" in r.last_error
    assert auth.seen == [] and handler.received == []


# --- header injection ---------------------------------------------------------------------


def test_line_breaks_in_a_subject_cannot_inject_headers(engine: Engine) -> None:
    handler = Collector()
    evil = "Reply from Eve\r\nBcc: victim@example.net\nX-Evil: 1\rContent-Type: text/html"
    with smtp_server(handler) as port:
        w = worker(engine, port)
        mail_id = queue(engine, subject=evil, body="hello")
        bad_to = queue(engine, to="user@example.com\r\nBcc: victim@example.net")

        async def scenario() -> None:
            await wait_until(status_is(engine, mail_id, "sent"), "the mail")
            await wait_until(status_is(engine, bad_to, "failed"), "the bad address")

        running(w, scenario)
    [(_, rcpt, msg)] = handler.received
    assert rcpt == ["user@example.com"]
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert msg.get_content_type() == "text/plain"
    # One header, its breaks now spaces. (The stdlib folds a long value onto a
    # continuation line and its parser keeps that fold's leading space.)
    flat = "Reply from Eve Bcc: victim@example.net X-Evil: 1 Content-Type: text/html"
    assert msg["Subject"].strip() == flat
    r = row(engine, bad_to)
    assert r.attempts == 1 and "invalid recipient address" in r.last_error


def test_clean_subject_build_message_and_sender() -> None:
    assert clean_subject("a\r\nb\x00c\u2028d\t e  ") == "a b c d e"
    job = MailJob(id="0190-abc", to_addr=" user@example.com ", subject="x\ny", body="é", attempts=0)
    msg = build_message(job, parse_sender("roxgate@localhost"))
    assert msg["Subject"] == "x y" and msg["To"] == "user@example.com"
    assert msg["Message-ID"] == "<0190-abc@localhost>"
    for bad in ("no-at-sign", "", "a@b.c, d@e.f", "<a@b.c>"):
        with pytest.raises(ValueError, match="invalid recipient"):
            build_message(dataclasses.replace(job, to_addr=bad), parse_sender(FROM))
    assert parse_sender(FROM).addr_spec == "roxgate@gw.example.org"
    with pytest.raises(ValueError, match="mail_from"):
        MailWorker(never_called, SmtpTarget("h", 25), "not an address")
    with pytest.raises(ValueError, match="one line"):
        parse_sender("a@b.c\r\nBcc: x@y.z")


async def never_called(fn: Callable[..., Any], *args: Any) -> Any:
    raise AssertionError("not called")


# --- stopping and leases -------------------------------------------------------------------------


def test_stop_finishes_the_message_in_flight_and_gives_the_rest_back(engine: Engine) -> None:
    handler = Collector(delay=0.3)
    with smtp_server(handler) as port:
        w = worker(engine, port)
        ids = [queue(engine, f"user{i}@example.com") for i in range(4)]

        async def main() -> float:
            task = asyncio.create_task(w.run())
            await wait_until(lambda: len(handler.received) >= 1, "the first e-mail")
            started = time.monotonic()
            await w.stop(grace=5)
            took = time.monotonic() - started
            await asyncio.wait_for(task, 1)  # run() returned by itself
            return took

        took = asyncio.run(asyncio.wait_for(main(), 30))
    assert took < 2
    rows = [row(engine, i) for i in ids]
    sent = [r for r in rows if r.status == "sent"]
    back = [r for r in rows if r.status == "pending"]
    assert len(sent) == len(handler.received) and 1 <= len(sent) < 4
    assert len(sent) + len(back) == 4
    # Given back untried: no attempt counted, due at once, no lease.
    assert all(r.attempts == 0 and r.lease_owner is None and r.last_error is None for r in back)


class StallsAfterFirst(Collector):
    """Accepts the first message at once, then hangs on every DATA."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.received:
            await asyncio.sleep(30)
        return await super().handle_DATA(server, session, envelope)


def test_stop_is_bounded_and_still_records_what_was_sent(engine: Engine) -> None:
    handler = StallsAfterFirst()
    with smtp_server(handler) as port:
        w = worker(engine, port)
        ids = [queue(engine, f"user{i}@example.com") for i in range(3)]

        async def main() -> float:
            task = asyncio.create_task(w.run())
            await wait_until(lambda: len(handler.received) == 1, "the first e-mail")
            await asyncio.sleep(0.2)  # the second is now stuck in DATA
            started = time.monotonic()
            await w.stop(grace=0.3)
            took = time.monotonic() - started
            assert task.done()
            return took

        took = asyncio.run(asyncio.wait_for(main(), 30))
    assert took < 2
    first, second, third = (row(engine, i) for i in ids)
    assert first.status == "sent"  # recorded although the batch was cancelled
    # Cancelled in flight or untried: leased still, they come back with the lease.
    assert second.status == third.status == "sending"
    assert second.attempts == third.attempts == 0


def test_nothing_is_sent_once_the_lease_may_have_ended(engine: Engine) -> None:
    # Lease 1 s: sending stops at 0.8 s. Each message takes 0.5 s, so the
    # second is cut off (it counts as a failed attempt) and the third is
    # given back untried, then sent in the next batch.
    handler = Collector(delay=0.5)
    with smtp_server(handler) as port:
        w = worker(engine, port, lease_ms=1000, retry_waits=(60,))
        ids = [queue(engine, f"user{i}@example.com") for i in range(3)]

        async def scenario() -> None:
            await wait_until(status_is(engine, ids[2], "sent"), "the third e-mail")

        running(w, scenario)
    first, second, third = (row(engine, i) for i in ids)
    assert first.status == "sent" and first.attempts == 1
    assert second.status == "pending" and second.attempts == 1
    assert "lease" in second.last_error and second.next_at > now_ms() + 30_000
    assert third.status == "sent" and third.attempts == 1


# --- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server context with a self-signed certificate for 127.0.0.1 (untrusted by clients)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    d: Path = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"),
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(d / "cert.pem", d / "key.pem")
    return context


def test_opportunistic_starttls_checks_the_certificate(
    engine: Engine, server_tls: ssl.SSLContext
) -> None:
    handler = Collector()
    with smtp_server(handler, tls_context=server_tls) as port:
        w = worker(engine, port)  # smtp://, no starttls=: upgrade when offered
        mail_id = queue(engine)

        async def scenario() -> None:
            await wait_until(lambda: row(engine, mail_id).attempts == 1, "the TLS failure")

        running(w, scenario)
    r = row(engine, mail_id)
    assert r.status == "pending" and "CERTIFICATE_VERIFY_FAILED" in r.last_error
    assert "verify=0" in r.last_error  # tells the operator what to do
    assert handler.received == []


def test_starttls_required_with_credentials_and_auth_inside_tls(
    engine: Engine, server_tls: ssl.SSLContext
) -> None:
    handler, auth = Collector(), Authenticator()
    with smtp_server(
        handler, tls_context=server_tls, authenticator=auth, auth_required=True
    ) as port:
        url = f"smtp://rox%40gw:{URL_SECRET}@127.0.0.1:{port}?verify=0"
        w = worker(engine, port, url=url)
        mail_id = queue(engine)

        async def scenario() -> None:
            await wait_until(status_is(engine, mail_id, "sent"), "sent over STARTTLS")

        running(w, scenario)
    assert auth.seen == [(USER, SECRET)]  # the server takes AUTH only over TLS
    assert handler.tls == [True]


def test_smtps_implicit_tls(engine: Engine, server_tls: ssl.SSLContext) -> None:
    handler = Collector()
    with smtp_server(handler, ssl_context=server_tls) as port:
        w = worker(engine, port, url=f"smtps://127.0.0.1:{port}?verify=0")
        mail_id = queue(engine, body="über TLS ✅")

        async def scenario() -> None:
            await wait_until(status_is(engine, mail_id, "sent"), "sent over TLS")

        running(w, scenario)
    assert handler.tls == [True]
    assert handler.received[0][2].get_content().rstrip() == "über TLS ✅"


# --- the URL ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://localhost", SmtpTarget("localhost", 25, "opportunistic")),
        ("smtp://Mail.Example.com:2525/", SmtpTarget("mail.example.com", 2525, "opportunistic")),
        ("smtp://h?starttls=1", SmtpTarget("h", 25, "starttls")),
        ("smtp://h?starttls=0&timeout=2.5", SmtpTarget("h", 25, "none", timeout=2.5)),
        ("smtp://u:p@h", SmtpTarget("h", 25, "starttls", "u", "p")),
        ("smtp://u:p@h?starttls=0", SmtpTarget("h", 25, "none", "u", "p")),
        ("smtps://h", SmtpTarget("h", 465, "implicit")),
        ("SMTPS://h:4650?verify=0", SmtpTarget("h", 4650, "implicit", verify=False)),
        (f"smtps://rox%40gw:{URL_SECRET}@h", SmtpTarget("h", 465, "implicit", USER, SECRET)),
        ("smtp://[::1]:25", SmtpTarget("::1", 25, "opportunistic")),
    ],
)
def test_parse_smtp_url(url: str, expected: SmtpTarget) -> None:
    assert parse_smtp_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "must start with smtp:// or smtps://"),
        ("http://h", "must start with smtp:// or smtps://"),
        ("smtp:h", "must start with smtp:// or smtps://"),
        ("smtp://", "host is missing"),
        ("smtp://h:0", "port must be a number"),
        ("smtp://h:70000", "port must be a number"),
        ("smtp://h:x", "port must be a number"),
        ("smtp://h/path", "unexpected text after the host"),
        ("smtp://u@h", "needs a password"),
        ("smtp://:p@h", "user name is empty"),
        ("smtp://h?starttls=maybe", "starttls must be 1 or 0"),
        ("smtp://h?verify=2", "verify must be 1 or 0"),
        ("smtp://h?timeout=0", "timeout must be seconds"),
        ("smtp://h?timeout=abc", "timeout must be seconds"),
        ("smtp://h?timeout=nan", "timeout must be seconds"),
        ("smtp://h?tls=1", "unknown parameter"),
        ("smtp://h?timeout=1&timeout=2", "given twice"),
        ("smtps://h?starttls=1", "does not apply to smtps://"),
    ],
)
def test_parse_smtp_url_errors(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_smtp_url(url)


@pytest.mark.parametrize(
    "url",
    [
        # Unencoded characters split a password into pieces that end up as a
        # port, a path, a parameter or a fragment: no error may repeat them.
        "smtp://user:hunter2/xyzzy@h",
        "smtp://user:hunter2?xyzzy@h",
        "smtp://user:hunter2#xyzzy@h",
        "smtp://user:hunter2@h:xyzzy",
        "smtp://user:hunter2xyzzy@h?starttls=xyzzy",
        "smtp://user:hunter2xyzzy@[::1",
    ],
)
def test_url_errors_never_repeat_the_password(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_smtp_url(url)
    text = str(caught.value) + repr(caught.value)
    assert "hunter2" not in text and "xyzzy" not in text
    # Not chained to urllib's own error, which may quote the text.
    exc = caught.value
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)


def test_repr_and_str_never_show_the_password() -> None:
    target = parse_smtp_url(f"smtp://rox%40gw:{URL_SECRET}@mail.example.com:587?starttls=1")
    assert target.password == SECRET
    for text in (repr(target), str(target), f"{target}", f"{target!r}", str([target])):
        assert SECRET not in text and URL_SECRET not in text and "w0rd" not in text
    assert str(target) == "smtp://rox%40gw:***@mail.example.com:587?starttls=1"
    assert "password='***'" in repr(target)
    assert parse_smtp_url(str(target)).username == USER  # the masked URL still parses
    assert "password=None" in repr(parse_smtp_url("smtp://h"))
    w = MailWorker(never_called, target, FROM)
    assert SECRET not in repr(vars(w))
