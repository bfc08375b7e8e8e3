"""The callback worker against a real SQLite outbox and real HTTP receivers on loopback.

Each test scripts an ``aiohttp.web`` receiver on 127.0.0.1 (port 0), queues
receipts in the real schema, runs the real worker (writes in real
transactions) and reads back what the receiver saw and what was recorded.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDictProxy
from sqlalchemy import Engine, insert, select

from roxgate import __version__
from roxgate.accounts import admin
from roxgate.callbacks.http import (
    CallbackRefused,
    CallbackWorker,
    GuardedResolver,
    assess,
    parse_retry_schedule,
)
from roxgate.netpolicy import IPNetwork, parse_nets
from roxgate.report.bodies import MessageFacts, receipt_body
from roxgate.report.outbox import queue_callback
from roxgate.rox import signing
from roxgate.store.engine import immediate
from roxgate.store.ids import new_id, now_ms
from roxgate.store.schema import callback_attempts, callbacks, mail_outbox, messages

T = TypeVar("T")
LOOPBACK = parse_nets("127.0.0.0/8")
PASSWORD = "correct horse battery"
USER = "user@example.com"


def run(coro: Coroutine[Any, Any, T], timeout: float = 20) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the database --------------------------------------------------------------


@dataclass
class Db:
    engine: Engine
    secret: str
    user_id: int

    async def record(self, fn: Callable[..., T], *args: Any) -> T:
        """Like the gateway's writer: ``fn(connection, *args)`` in one real transaction."""
        return await asyncio.to_thread(self._tx, fn, *args)

    def _tx(self, fn: Callable[..., T], *args: Any) -> T:
        with immediate(self.engine).begin() as conn:
            return fn(conn, *args)

    def queue(self, url: str, n: int = 1, age_ms: int = 0) -> list[str]:
        """``n`` receipt callbacks to ``url``, each about its own message."""
        now = now_ms()
        ids = []
        with immediate(self.engine).begin() as conn:
            for i in range(n):
                sms_id = new_id()
                conn.execute(
                    insert(messages),
                    {"id": sms_id, "request_id": "req-1", "account_id": "CI00000001",
                     "user_id": self.user_id, "dest_tn": "+61407555001", "dest_country": "AU",
                     "text": "hi", "encoding": "gsm", "parts": 1, "due_at": now,
                     "receipt_flag": 1, "reply_type": "E", "status": "delivered",
                     "result": "0000", "created_at": now, "updated_at": now},
                )  # fmt: skip
                facts = MessageFacts(sms_id, "req-1", "CI00000001", USER, "+61407555001",
                                     None, None, "hi", "tests")  # fmt: skip
                body = receipt_body(facts, "0000", "Delivered", now)
                due = now - age_ms - n + i  # all due, in this order
                callback_id = queue_callback(
                    conn, account_id="CI00000001", kind="receipt", message_id=sms_id, url=url,
                    body=body, now=due,
                )  # fmt: skip
                ids.append(callback_id)
        return ids

    def callback(self, callback_id: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(select(callbacks).where(callbacks.c.id == callback_id)).one()

    def attempts(self, callback_id: str) -> list[Any]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(callback_attempts)
                    .where(callback_attempts.c.callback_id == callback_id)
                    .order_by(callback_attempts.c.id)
                )
            )

    def mails(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(mail_outbox)))

    def settled(self, ids: list[str]) -> bool:
        with self.engine.connect() as conn:
            rows = conn.execute(select(callbacks.c.status).where(callbacks.c.id.in_(ids))).scalars()
            return all(s in ("delivered", "failed") for s in rows)


@pytest.fixture
def db(engine_factory: Any) -> Db:
    _, engine = engine_factory("callbacks")
    created = admin.add_account(engine, "CI00000001", "A")
    user_id = admin.add_user(engine, "CI00000001", USER, PASSWORD)
    return Db(engine, created.callback_secret, user_id)


# --- the receiver --------------------------------------------------------------


@dataclass
class Seen:
    path: str
    body: bytes
    headers: CIMultiDictProxy[str]
    at: float  # time.time() when it arrived


Answer = Callable[[web.Request, int], Awaitable[web.StreamResponse]]


async def empty_200(request: web.Request, n: int) -> web.StreamResponse:
    return web.Response(status=200)


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1; ``answer(request, n)`` scripts the answers
    (``n`` counts the requests to the same path, from 1)."""

    answer: Answer = empty_200
    seen: list[Seen] = field(default_factory=list)
    concurrent: int = 0
    max_concurrent: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(request.path, body, request.headers, time.time()))
        n = sum(1 for s in self.seen if s.path == request.path)
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            return await self.answer(request, n)
        finally:
            self.concurrent -= 1

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]


# --- running the worker ----------------------------------------------------------


async def deliver(
    db: Db,
    ids: list[str],
    *,
    retry: str = "0.05,0.05",
    post_timeout: float = 2.0,
    allow_nets: tuple[IPNetwork, ...] = LOOPBACK,
    within: float = 8.0,
    **options: Any,
) -> CallbackWorker:
    """Run a worker until every callback in ``ids`` is delivered or failed, then stop it."""
    worker = CallbackWorker(
        db.record,
        retry_schedule=parse_retry_schedule(retry),
        timeout=post_timeout,
        allow_nets=allow_nets,
        **options,
    )
    task = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: db.settled(ids), within)
    finally:
        await worker.stop(grace=3)
        await task
    return worker


async def eventually(check: Callable[[], bool], within: float = 8.0) -> None:
    """Wait until ``check()`` holds, failing the test after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def outcomes(db: Db, callback_id: str) -> list[tuple[int | None, str]]:
    return [(a.http_status, a.outcome) for a in db.attempts(callback_id)]


# --- the success rule ------------------------------------------------------------


def test_200_with_empty_body_is_delivered_in_one_attempt(db: Db) -> None:
    async def scenario() -> tuple[str, Receiver, CallbackWorker]:
        async with Receiver() as rx:
            (cid,) = db.queue(rx.url())
            worker = await deliver(db, [cid])
            return cid, rx, worker

    cid, rx, worker = run(scenario())
    row = db.callback(cid)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 1, None)
    (attempt,) = db.attempts(cid)
    assert (attempt.http_status, attempt.outcome, attempt.error) == (200, "ok", None)
    assert attempt.duration_ms >= 0 and attempt.at > 0
    (seen,) = rx.seen
    # The stored bytes exactly, with the documented headers.
    assert seen.body == row.body
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["User-Agent"] == f"roxgate/{__version__}"
    assert worker.counts["ok"] == 1
    assert db.mails() == []


def test_json_result_decides_between_ok_and_retry(db: Db) -> None:
    async def answer(request: web.Request, n: int) -> web.StreamResponse:
        match request.path:
            case "/ok":
                return web.json_response({"Result": "0000"})
            case "/text":
                return web.Response(text="OK thanks")
            case "/no-result":
                return web.json_response({"received": True})
            case _:  # /busy: a ROX-style refusal first, then success
                return web.json_response({"Result": "2099" if n == 1 else "0000"})

    async def scenario() -> dict[str, str]:
        async with Receiver(answer) as rx:
            ids = {p: db.queue(rx.url(p))[0] for p in ("/ok", "/text", "/no-result", "/busy")}
            await deliver(db, list(ids.values()))
            return ids

    ids = run(scenario())
    for path in ("/ok", "/text", "/no-result"):
        assert outcomes(db, ids[path]) == [(200, "ok")], path
    busy = db.attempts(ids["/busy"])
    assert [(a.http_status, a.outcome) for a in busy] == [(200, "retry"), (200, "ok")]
    assert "Result 2099" in busy[0].error
    assert db.callback(ids["/busy"]).status == "delivered"


def test_500_is_retried_on_the_schedule_then_mailed(db: Db) -> None:
    async def answer(request: web.Request, n: int) -> web.StreamResponse:
        return web.Response(status=500, text="database down")

    async def scenario() -> tuple[str, Receiver]:
        async with Receiver(answer) as rx:
            (cid,) = db.queue(rx.url())
            await deliver(db, [cid], retry="0.2,0.2")
            return cid, rx

    cid, rx = run(scenario())
    # 2 waits: 1 + 2 attempts, the waits respected.
    assert outcomes(db, cid) == [(500, "retry"), (500, "retry"), (500, "final")]
    gaps = [b.at - a.at for a, b in zip(rx.seen, rx.seen[1:], strict=False)]
    assert len(rx.seen) == 3 and all(g >= 0.19 for g in gaps), gaps
    attempts = db.attempts(cid)
    assert all(a.duration_ms >= 0 and "HTTP 500: database down" in a.error for a in attempts)
    assert "the last" in attempts[-1].error
    row = db.callback(cid)
    assert (row.status, row.attempts) == ("failed", 3)
    (mail,) = db.mails()
    assert (mail.to_addr, mail.kind, mail.message_id) == (USER, "receipt", row.message_id)


def test_404_fails_at_once_and_is_mailed(db: Db) -> None:
    async def answer(request: web.Request, n: int) -> web.StreamResponse:
        return web.Response(status=404)

    async def scenario() -> str:
        async with Receiver(answer) as rx:
            (cid,) = db.queue(rx.url())
            await deliver(db, [cid])
            return cid

    cid = run(scenario())
    assert outcomes(db, cid) == [(404, "final")]
    assert db.callback(cid).status == "failed"
    assert len(db.mails()) == 1


def test_408_and_429_are_retried(db: Db) -> None:
    async def answer(request: web.Request, n: int) -> web.StreamResponse:
        if n == 1:
            return web.Response(status=int(request.path.strip("/")))
        return web.Response(status=204)

    async def scenario() -> dict[str, str]:
        async with Receiver(answer) as rx:
            ids = {p: db.queue(rx.url(p))[0] for p in ("/408", "/429")}
            await deliver(db, list(ids.values()))
            return ids

    ids = run(scenario())
    assert outcomes(db, ids["/408"]) == [(408, "retry"), (204, "ok")]
    assert outcomes(db, ids["/429"]) == [(429, "retry"), (204, "ok")]
    assert db.mails() == []


def test_receiver_down_is_retried_then_mailed(db: Db) -> None:
    (cid,) = db.queue(f"http://127.0.0.1:{closed_port()}/hook")
    worker = run(deliver(db, [cid]))
    attempts = db.attempts(cid)
    assert [(a.http_status, a.outcome) for a in attempts] == [
        (None, "retry"),
        (None, "retry"),
        (None, "final"),
    ]
    assert all("connection error" in a.error for a in attempts)
    assert db.callback(cid).status == "failed"
    assert len(db.mails()) == 1
    assert worker.counts["failed"] == 1 and worker.counts["e-mailed"] == 1


def test_a_slow_receiver_times_out_and_is_retried(db: Db) -> None:
    async def answer(request: web.Request, n: int) -> web.StreamResponse:
        if n == 1:
            await asyncio.sleep(1.5)
        return web.Response(status=200)

    async def scenario() -> str:
        async with Receiver(answer) as rx:
            (cid,) = db.queue(rx.url())
            await deliver(db, [cid], post_timeout=0.3)
            return cid

    cid = run(scenario())
    first, second = db.attempts(cid)
    assert (first.http_status, first.outcome) == (None, "retry")
    assert first.error == "no answer within 0.3 s"
    assert 250 <= first.duration_ms < 1000
    assert (second.http_status, second.outcome) == (200, "ok")


def test_a_slow_answer_body_counts_against_the_timeout(db: Db) -> None:
    async def answer(request: web.Request, n: int) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        await response.write(b'{"Result":')
        await asyncio.sleep(1.5)
        await response.write(b'"0000"}')
        return response

    async def scenario() -> str:
        async with Receiver(answer) as rx:
            (cid,) = db.queue(rx.url())
            await deliver(db, [cid], retry="", post_timeout=0.3)
            return cid

    cid = run(scenario())
    (attempt,) = db.attempts(cid)
    assert (attempt.http_status, attempt.outcome) == (200, "final")
    assert attempt.error.startswith("no answer within 0.3 s")


# --- signing -----------------------------------------------------------------------


def test_callbacks_are_signed_with_the_account_secret(db: Db) -> None:
    async def answer(request: web.Request, n: int) -> web.StreamResponse:
        return web.Response(status=503 if n == 1 else 200)

    async def scenario() -> Receiver:
        async with Receiver(answer) as rx:
            (cid,) = db.queue(rx.url())
            await deliver(db, [cid])
            return rx

    rx = run(scenario())
    assert len(rx.seen) == 2
    for seen in rx.seen:  # every attempt, signed when sent
        stamp = int(seen.headers["X-Rox-Timestamp"])
        assert abs(stamp - seen.at) <= 1
        assert seen.headers["X-Rox-Signature"].startswith("sha256=")
        assert signing.verify(db.secret, seen.body, seen.headers)
        # Tampered body, wrong secret, replay after the tolerance, clock far ahead.
        assert not signing.verify(db.secret, seen.body.replace(b"0000", b"2060"), seen.headers)
        assert not signing.verify(db.secret + "x", seen.body, seen.headers)
        assert not signing.verify(db.secret, seen.body, seen.headers, now=stamp + 301)
        assert not signing.verify(db.secret, seen.body, seen.headers, now=stamp - 301)
        assert signing.verify(db.secret, seen.body, seen.headers, now=stamp + 299)


def test_signature_scheme_is_the_documented_one() -> None:
    import hashlib
    import hmac

    body = b'{"Name":"ROX_API_Receipt"}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signing.sign("s3cret", 1_700_000_000, body) == "sha256=" + expected
    headers = signing.signature_headers("s3cret", body, now=1_700_000_000.7)
    assert headers == {"X-Rox-Timestamp": "1700000000", "X-Rox-Signature": "sha256=" + expected}
    lowered = {k.lower(): v for k, v in headers.items()}
    assert signing.verify("s3cret", body, lowered, now=1_700_000_100)
    assert not signing.verify("s3cret", body, {}, now=1_700_000_100)
    bad_stamp = {**headers, "X-Rox-Timestamp": "-1700000000"}
    assert not signing.verify("s3cret", body, bad_stamp, now=1_700_000_100)
    non_ascii = {**headers, "X-Rox-Signature": "sha256=é"}
    assert not signing.verify("s3cret", body, non_ascii, now=1_700_000_100)


# --- redirects, SSRF -----------------------------------------------------------------


def test_redirects_are_not_followed(db: Db) -> None:
    async def answer(request: web.Request, n: int) -> web.StreamResponse:
        if request.path == "/moved":
            return web.Response(status=302, headers={"Location": "/target"})
        return web.Response(status=200)

    async def scenario() -> tuple[str, Receiver]:
        async with Receiver(answer) as rx:
            (cid,) = db.queue(rx.url("/moved"))
            await deliver(db, [cid])
            return cid, rx

    cid, rx = run(scenario())
    assert rx.paths() == ["/moved"]
    (attempt,) = db.attempts(cid)
    assert (attempt.http_status, attempt.outcome) == (302, "final")
    assert "redirect to /target not followed" in attempt.error
    assert len(db.mails()) == 1


def test_internal_addresses_are_refused_at_delivery_without_the_allow_list(db: Db) -> None:
    async def scenario() -> tuple[dict[str, str], Receiver]:
        async with Receiver() as rx:
            ids = {
                # A name, resolved at delivery (from /etc/hosts).
                "name": db.queue(rx.url(host="localhost"))[0],
                "literal": db.queue(rx.url(host="127.0.0.1"))[0],
                "mapped": db.queue(rx.url(host="[::ffff:127.0.0.1]"))[0],
            }
            await deliver(db, list(ids.values()), allow_nets=())
            return ids, rx

    ids, rx = run(scenario())
    assert rx.seen == []  # nothing reached the receiver
    for kind, cid in ids.items():
        (attempt,) = db.attempts(cid)
        assert (attempt.http_status, attempt.outcome) == (None, "final"), kind
        assert attempt.error.startswith("refused: "), attempt.error
    assert "localhost resolves only to internal addresses (" in db.attempts(ids["name"])[0].error
    assert "127.0.0.1" in db.attempts(ids["name"])[0].error
    assert len(db.mails()) == 3


def test_a_name_allowed_by_the_allow_list_is_posted(db: Db) -> None:
    async def scenario() -> Receiver:
        async with Receiver() as rx:
            (cid,) = db.queue(rx.url(host="localhost"))
            await deliver(db, [cid], allow_nets=LOOPBACK)
            return rx

    rx = run(scenario())
    assert len(rx.seen) == 1


class FixedResolver(AbstractResolver):
    """Answers every name with the given addresses (a DNS the test controls)."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.calls = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls += 1
        return [
            ResolveResult(hostname=host, host=a, port=port, family=0, proto=0, flags=0)
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


def test_the_resolver_guard_filters_every_resolution() -> None:
    async def scenario() -> None:
        guard = GuardedResolver(())
        with pytest.raises(CallbackRefused, match="localhost resolves only to internal"):
            await guard.resolve("localhost", 80, socket.AF_UNSPEC)
        allowed = await GuardedResolver(LOOPBACK).resolve("localhost", 80, socket.AF_UNSPEC)
        assert allowed and all(r["host"].startswith("127.") for r in allowed)
        # A name with public and internal addresses keeps only the public ones.
        dns = FixedResolver("10.0.0.7", "93.184.215.14", "::ffff:192.168.1.1", "169.254.169.254")
        mixed = await GuardedResolver((), dns).resolve("rebind.example", 443)
        assert [r["host"] for r in mixed] == ["93.184.215.14"]
        for internal in ("0.0.0.0", "::", "fe80::1", "224.0.0.1", "100.64.0.1", "fc00::1"):
            with pytest.raises(CallbackRefused):
                await GuardedResolver((), FixedResolver(internal)).resolve("x.example", 80)
        assert dns.calls == 1

    run(scenario())


def test_each_new_connection_resolves_again(db: Db) -> None:
    """No DNS cache: a name that starts resolving to a refused address is refused."""

    async def scenario() -> list[str]:
        async with Receiver() as rx:
            dns = FixedResolver("127.0.0.1")
            worker = CallbackWorker(
                db.record,
                retry_schedule=[],
                timeout=2,
                allow_nets=parse_nets("127.0.0.1/32"),
                resolver=dns,
            )
            task = asyncio.create_task(worker.run())
            first = db.queue(f"http://rebind.example:{rx.port}/a")
            await eventually(lambda: db.settled(first))
            dns.addresses = ("127.0.0.2",)  # now outside the allow list
            # A new port: a new connection, so the name is resolved again.
            async with Receiver() as other:
                second = db.queue(f"http://rebind.example:{other.port}/b")
                worker.wake()
                await eventually(lambda: db.settled(second))
            await worker.stop()
            await task
            return first + second

    first, second = run(scenario())
    assert outcomes(db, first) == [(200, "ok")]
    (attempt,) = db.attempts(second)
    assert attempt.outcome == "final" and "127.0.0.2" in attempt.error


# --- isolation, throughput shape ---------------------------------------------------


def test_a_slow_host_does_not_delay_another(db: Db) -> None:
    async def slow(request: web.Request, n: int) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.Response(status=200)

    async def scenario() -> tuple[Receiver, Receiver, float]:
        async with Receiver(slow) as slow_rx, Receiver() as fast_rx:
            # The slow host's callbacks are older: claimed first.
            slow_ids = db.queue(slow_rx.url(), 4, age_ms=1000)
            fast_ids = db.queue(fast_rx.url(), 20)
            start = time.time()
            await deliver(db, slow_ids + fast_ids, per_host=2, post_timeout=5)
            return slow_rx, fast_rx, start

    slow_rx, fast_rx, start = run(scenario())
    assert len(fast_rx.seen) == 20 and len(slow_rx.seen) == 4
    assert max(s.at for s in fast_rx.seen) - start < 1.0
    assert slow_rx.max_concurrent == 2  # the per-host limit held
    assert max(s.at for s in slow_rx.seen) - start >= 1.9  # the second pair waited its turn


def test_a_slow_hosts_backlog_is_given_back_so_others_are_claimed(db: Db) -> None:
    """More slow callbacks than the worker may hold: the excess goes back to the
    outbox, uncounted, and the fast host's callbacks behind them get through."""

    async def slow(request: web.Request, n: int) -> web.StreamResponse:
        await asyncio.sleep(1.5)
        return web.Response(status=200)

    async def scenario() -> tuple[list[str], list[str], CallbackWorker, float, float]:
        async with Receiver(slow) as slow_rx, Receiver() as fast_rx:
            slow_ids = db.queue(slow_rx.url(), 30, age_ms=10_000)
            fast_ids = db.queue(fast_rx.url(), 10)
            worker = CallbackWorker(
                db.record, retry_schedule=[1.0], timeout=5, allow_nets=LOOPBACK,
                batch=10, max_held=20, per_host=2, max_backlog_seconds=1.0,
            )  # fmt: skip
            start = time.monotonic()
            task = asyncio.create_task(worker.run())
            while not await asyncio.to_thread(db.settled, fast_ids):
                assert time.monotonic() - start < 5, "fast callbacks starved"
                await asyncio.sleep(0.02)
            fast_done = time.monotonic() - start
            await worker.stop(grace=3)
            await task
            return slow_ids, fast_ids, worker, fast_done, time.monotonic() - start

    slow_ids, fast_ids, worker, fast_done, total = run(scenario())
    assert fast_done < 1.5, fast_done  # before even the first slow post answered
    assert worker.counts["deferred"] > 0
    for cid in slow_ids + fast_ids:
        row = db.callback(cid)
        # Nothing left leased; attempts counted only for posts actually made.
        assert row.status in ("pending", "delivered"), row.status
        assert row.attempts == len(db.attempts(cid))
    assert total < 5


def test_leases_are_renewed_while_a_post_takes_longer_than_one(db: Db) -> None:
    """A post outlasting the lease is not claimed and posted a second time."""

    async def slow(request: web.Request, n: int) -> web.StreamResponse:
        await asyncio.sleep(1.2)
        return web.Response(status=200)

    async def scenario() -> tuple[list[str], Receiver]:
        async with Receiver(slow) as rx:
            ids = db.queue(rx.url(), 3)
            await deliver(db, ids, post_timeout=3, lease_ms=600, per_host=2, poll_seconds=0.05)
            return ids, rx

    ids, rx = run(scenario())
    assert len(rx.seen) == 3
    assert all(outcomes(db, cid) == [(200, "ok")] for cid in ids)


def test_wake_posts_new_callbacks_at_once(db: Db) -> None:
    async def scenario() -> float:
        async with Receiver() as rx:
            worker = CallbackWorker(
                db.record, retry_schedule=[], timeout=2, allow_nets=LOOPBACK, poll_seconds=30
            )
            task = asyncio.create_task(worker.run())
            await asyncio.sleep(0.2)  # the worker found nothing and sleeps
            ids = db.queue(rx.url())
            start = time.monotonic()
            worker.wake()
            await eventually(lambda: bool(rx.seen))
            took = time.monotonic() - start
            await eventually(lambda: db.settled(ids))
            await worker.stop()
            await task
            return took

    assert run(scenario()) < 0.5


def test_stop_gives_back_what_was_not_posted(db: Db) -> None:
    async def slow(request: web.Request, n: int) -> web.StreamResponse:
        await asyncio.sleep(0.5)
        return web.Response(status=200)

    async def scenario() -> list[str]:
        async with Receiver(slow) as rx:
            ids = db.queue(rx.url(), 6)
            worker = CallbackWorker(
                db.record, retry_schedule=[], timeout=5, allow_nets=LOOPBACK, per_host=2
            )
            task = asyncio.create_task(worker.run())
            await eventually(lambda: bool(rx.seen))
            await worker.stop(grace=3)
            await task
            return ids

    ids = run(scenario())
    rows = [db.callback(cid) for cid in ids]
    assert sorted(r.status for r in rows) == ["delivered"] * 2 + ["pending"] * 4
    assert all(r.lease_owner is None for r in rows)
    assert all(r.attempts == len(db.attempts(r.id)) for r in rows)


# --- pure rules ----------------------------------------------------------------------


def test_parse_retry_schedule() -> None:
    assert parse_retry_schedule("5,30,120,600,1800,3600") == [5, 30, 120, 600, 1800, 3600]
    assert parse_retry_schedule(" 0.05 , 1 ") == [0.05, 1.0]
    assert parse_retry_schedule("") == []
    for bad in ("5,,30", "5,x", "-1", "nan", "inf", "5;30"):
        with pytest.raises(ValueError, match="callback retry schedule"):
            parse_retry_schedule(bad)


@pytest.mark.parametrize(
    ("status", "answer", "verdict"),
    [
        (200, b"", "ok"),
        (204, b"", "ok"),
        (200, b"OK", "ok"),
        (200, b'\xef\xbb\xbf{ "Result": "0000" }', "ok"),
        (200, b'{"Result": 0}', "ok"),
        (200, b"[1, 2]", "ok"),
        (200, b'{"Result": "2099"}', "again"),
        (200, b'{"Result": 2099}', "again"),
        (200, b'{"Result": null}', "again"),
        (301, b"", "final"),
        (400, b"", "final"),
        (401, b"", "final"),
        (404, b"", "final"),
        (408, b"", "again"),
        (429, b"", "again"),
        (500, b"", "again"),
        (503, b"", "again"),
    ],
)
def test_assess(status: int, answer: bytes, verdict: str) -> None:
    assert assess(status, answer)[0] == verdict
