"""What "0000" promises: stored before the answer, nothing half-stored, nothing lost."""

from __future__ import annotations

import concurrent.futures
import sqlite3
from typing import Any

import httpx
from sqlalchemy import func, select, text

from roxgate.store.schema import messages, requests
from tests.conftest import Env, Server, request_body, seed_accounts


def _count(engine: Any, table: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def test_sigkill_right_after_0000_loses_nothing(engine_factory: Any) -> None:
    path, engine = engine_factory("sigkill")
    seed_accounts(engine)
    server = Server(path)
    server.start()
    body = request_body([{"DestTn": f"+614075{i:05d}", "SMSText": f"m{i}"} for i in range(500)])
    data = httpx.post(server.url + "/smsapi/send", json=body, timeout=30).json()
    server.kill()  # SIGKILL: no shutdown handler runs
    assert data["Result"] == "0000" and data["ResultText"] == "Success"
    sms_ids = {data["Messages"][str(i)]["SMSId"] for i in range(1, 501)}

    server.start()  # restart on the same file (migrations re-run as no-ops)
    try:
        engine.dispose()
        with engine.connect() as conn:
            stored = set(
                conn.execute(
                    select(messages.c.id).where(
                        messages.c.request_id == data["Messages"]["RequestId"]
                    )
                ).scalars()
            )
        assert stored == sms_ids
        # And the restarted server still answers.
        again = httpx.post(server.url + "/smsapi/send", json=request_body(), timeout=30).json()
        assert again["Result"] == "0000"
    finally:
        server.stop()


def test_twenty_concurrent_requests_of_500(gw: Env) -> None:
    def send(n: int) -> dict[str, Any]:
        recipients = [
            {"DestTn": f"+6141{n:02d}{i:05d}", "SMSText": f"batch {n} #{i}"} for i in range(500)
        ]
        with httpx.Client(base_url=gw.server.url, timeout=60) as client:
            return client.post("/smsapi/send", json=request_body(recipients)).json()

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(send, range(20)))
    assert [a["Result"] for a in answers] == ["0000"] * 20
    sms_ids = {a["Messages"][str(i)]["SMSId"] for a in answers for i in range(1, 501)}
    assert len(sms_ids) == 10_000
    request_ids = [a["Messages"]["RequestId"] for a in answers]
    assert _count(gw.engine, messages, messages.c.request_id.in_(request_ids)) == 10_000
    with gw.engine.connect() as conn:
        stored = set(
            conn.execute(
                select(messages.c.id).where(messages.c.request_id.in_(request_ids))
            ).scalars()
        )
    assert stored == sms_ids


def test_2100_when_the_database_is_locked_then_recovers(engine_factory: Any) -> None:
    path, engine = engine_factory("locked")
    seed_accounts(engine)
    server = Server(path, env_extra={"ROXGATE_DATABASE_BUSY_TIMEOUT": "0.3"})
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            env = Env(server, engine, client)
            assert env.post(request_body())["Result"] == "0000"  # warms the auth cache
            before = (_count(engine, requests), _count(engine, messages))
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            try:
                data = env.post(request_body())
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            assert data["Result"] == "2100", data
            assert "retry" in data["ResultText"]
            assert (_count(engine, requests), _count(engine, messages)) == before
            assert env.post(request_body())["Result"] == "0000"
    finally:
        server.stop()


def test_2099_internal_error_stores_nothing_and_spares_other_requests(gw: Env) -> None:
    # A fault injected in the database itself: inserting this number fails.
    with gw.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER fail_777 BEFORE INSERT ON messages "
                "WHEN NEW.dest_tn = '+61407555777' BEGIN SELECT RAISE(ABORT, 'injected'); END"
            )
        )
    try:
        bad = request_body(
            [{"DestTn": "+61407555001", "SMSText": "a"}, {"DestTn": "+61407555777", "SMSText": "b"}]
        )
        good = request_body([{"DestTn": "+61407555002", "SMSText": "c"}])

        def post(body: dict[str, Any]) -> dict[str, Any]:
            with httpx.Client(base_url=gw.server.url, timeout=30) as client:
                return client.post("/smsapi/send", json=body).json()

        before = _count(gw.engine, messages)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(post, [bad, good] * 4))
        assert [a["Result"] for a in answers] == ["2099", "0000"] * 4
        assert all(a["Messages"]["Count"] == 0 for a in answers[::2])
        assert _count(gw.engine, messages) == before + 4  # only the good ones
        assert "IntegrityError: injected" in gw.server.logs()  # the operator sees why
    finally:
        with gw.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER fail_777"))
