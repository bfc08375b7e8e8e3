"""``/metrics`` and ``/readyz`` of real servers: counters move by exactly what was
done, readiness follows the SMSC and the database, the token guards the metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql
from sqlalchemy import select

from roxgate.store.schema import messages
from tests.conftest import PASSWORD, Env, Server, request_body, seed_accounts
from tests.smsc_thread import ThreadedSmsc

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


# --- helpers ---------------------------------------------------------------------


def scrape(client: httpx.Client, headers: dict[str, str] | None = None) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


Expectation = tuple[str, dict[str, str], float]


def wait_for_metrics(
    client: httpx.Client,
    expected: list[Expectation],
    base: Samples | None = None,
    timeout: float = 30,
) -> Samples:
    """Scrape until every ``(name, labels, value)`` holds (``value`` is a change
    from ``base`` when given, else absolute); fail naming those that do not."""
    deadline = time.monotonic() + timeout
    while True:
        now = scrape(client)

        def wrong(samples: Samples = now) -> list[str]:
            out = []
            for name, labels, want in expected:
                got = value(samples, name, **labels)
                if base is not None:
                    got -= value(base, name, **labels)
                if got != want:
                    out.append(f"{name}{labels}: {got} (want {want})")
            return out

        if not wrong():
            return now
        if time.monotonic() > deadline:
            raise AssertionError("metrics never became right:\n" + "\n".join(wrong()))
        time.sleep(0.2)


def wait_for(check: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def readyz(client: httpx.Client) -> tuple[int, dict[str, Any]]:
    response = client.get("/readyz")
    return response.status_code, response.json()


def readyz_when(client: httpx.Client, status: int, timeout: float = 30) -> dict[str, Any]:
    """The body of the first /readyz answer with ``status``."""

    def answer() -> dict[str, Any] | None:
        code, body = readyz(client)
        return body if code == status else None

    return wait_for(answer, timeout, what=f"/readyz to answer {status}")


class Receiver:
    """A customer's callback endpoint: answers 200, counts the POSTs."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/receipts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- a whole gateway: send, and watch the counters --------------------------------


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def gw(engine_factory: Any) -> Iterator[Env]:
    path, engine = engine_factory("metrics")
    seed_accounts(engine)
    server = Server(
        path,
        env_extra={
            "ROXGATE_SIM_RECEIPT_DELAY": "0.1",
            "ROXGATE_CALLBACK_ALLOW_NETS": "127.0.0.0/8",
        },
    )
    server.start()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield Env(server, engine, client)
    server.stop()


def test_send_moves_the_counters_by_what_happened(gw: Env, receiver: Receiver) -> None:
    before = scrape(gw.client)
    now_due = [
        {"DestTn": "+61407555201", "SMSText": "one"},
        {"DestTn": "+61407559992", "SMSText": "undeliverable"},  # the simulator: UNDELIV
        {"DestTn": "+61407555202", "SMSText": "three"},
    ]
    sent = gw.post(request_body(now_due, ReceiptFlag=1, ReceiptCallbackURL=receiver.url))
    assert sent["Result"] == "0000", sent
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    scheduled = gw.post(request_body(SendLater=later))
    assert scheduled["Result"] == "0000", scheduled
    refused = gw.post(request_body(password="not " + PASSWORD))
    assert refused["Result"] == "2002", refused

    expected: list[Expectation] = [
        ("roxgate_api_requests_total", {"result": "0000"}, 2),
        ("roxgate_api_requests_total", {"result": "2002"}, 1),
        ("roxgate_api_request_duration_seconds_count", {}, 3),
        ("roxgate_messages_total", {"kind": "accepted"}, 4),
        ("roxgate_messages_total", {"kind": "submitted"}, 3),
        ("roxgate_messages_total", {"kind": "delivered"}, 2),
        ("roxgate_messages_total", {"kind": "failed"}, 1),
        ("roxgate_messages_total", {"kind": "expired"}, 0),
        ("roxgate_dispatch_outcomes_total", {"outcome": "accepted"}, 3),
        ("roxgate_smpp_submits_total", {}, 3),
        ("roxgate_smpp_submit_responses_total", {"status": "ESME_ROK"}, 3),
        ("roxgate_smpp_submit_seconds_count", {}, 3),
        ("roxgate_receipts_total", {"state": "DELIVRD"}, 2),
        ("roxgate_receipts_total", {"state": "UNDELIV"}, 1),
        ("roxgate_callback_attempts_total", {"outcome": "ok"}, 3),
        ("roxgate_callback_attempts_total", {"outcome": "retry"}, 0),
        ("roxgate_callback_attempts_total", {"outcome": "failed"}, 0),
        # The database's view: the due ones went out and ended, one waits.
        ("roxgate_messages_pending", {"state": "scheduled"}, 1),
        ("roxgate_messages_pending", {"state": "queued"}, 0),
        ("roxgate_messages_pending", {"state": "submitting"}, 0),
        ("roxgate_messages_pending", {"state": "submitted"}, 0),
        ("roxgate_callbacks_pending", {}, 0),
    ]
    after = wait_for_metrics(gw.client, expected, base=before)
    assert len(receiver.bodies) == 3
    # Settled, and nothing counted twice since.
    time.sleep(0.5)
    wait_for_metrics(gw.client, expected, base=before, timeout=0)

    # The histograms are well-formed: cumulative buckets, the last one all of them.
    for name in ("roxgate_api_request_duration_seconds", "roxgate_smpp_submit_seconds"):
        buckets = sorted(
            (float(dict(labels)["le"]), v)
            for (n, labels), v in after.items()
            if n == f"{name}_bucket"
        )
        counts = [v for _, v in buckets]
        assert counts == sorted(counts) and buckets[-1][0] == float("inf")
        assert counts[-1] == value(after, f"{name}_count") > 0
        assert value(after, f"{name}_sum") > 0
    assert value(after, "roxgate_smpp_bound") == 1
    assert value(after, "roxgate_smpp_window_size") == 100  # the built-in simulator's route
    assert value(after, "roxgate_smpp_window_in_use") == 0
    assert value(after, "roxgate_backlog_query_ok") == 1
    assert value(after, "roxgate_build_info", role="all", version="0.1.0") == 1
    assert value(after, "process_resident_memory_bytes") > 0  # the standard collectors too


def test_the_scheduled_message_is_counted_by_the_database(gw: Env) -> None:
    """The gauge is the table's count (cross-checked), not this process's memory."""
    with gw.engine.connect() as conn:
        waiting = conn.execute(
            select(messages.c.id).where(
                messages.c.status == "queued", messages.c.due_at > int(time.time() * 1000)
            )
        ).all()
    wait_for_metrics(
        gw.client, [("roxgate_messages_pending", {"state": "scheduled"}, len(waiting))]
    )


def test_readyz_of_a_process_that_sends(gw: Env) -> None:
    assert readyz(gw.client) == (
        200,
        {"status": "ready", "checks": {"database": "ok", "carrier": "ok"}},
    )
    assert gw.client.get("/healthz").json() == {"status": "ok"}


def test_metrics_need_no_token_when_none_is_set(gw: Env) -> None:
    assert gw.client.get("/metrics").status_code == 200


# --- readiness follows the SMSC ------------------------------------------------------


def test_readyz_turns_unready_while_the_smsc_is_down(engine_factory: Any) -> None:
    smsc = ThreadedSmsc(receipt_delay=0.1)
    smsc.start()
    path, _engine = engine_factory("readyz_smsc")
    carrier = smsc.url(
        "roxgate", "secret", reconnect_min="0.2", reconnect_max="1", response_timeout="3"
    )
    server = Server(path, env_extra={"ROXGATE_CARRIER": carrier}, role="worker")
    try:
        server.start()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            body = readyz_when(client, 200)
            assert body == {"status": "ready", "checks": {"database": "ok", "carrier": "ok"}}
            up = scrape(client)
            assert value(up, "roxgate_smpp_bound") == 1
            assert not [name for name, _ in up if name.startswith("roxgate_api_")]
            assert value(up, "roxgate_build_info", role="worker", version="0.1.0") == 1

            smsc.stop()
            body = readyz_when(client, 503)
            assert body["status"] == "unready"
            assert body["checks"]["database"] == "ok"
            assert body["checks"]["carrier"].startswith("not bound to smpp://127.0.0.1:")
            assert "secret" not in str(body)  # the carrier's password
            down = scrape(client)
            assert value(down, "roxgate_smpp_bound") == 0
            assert value(down, "roxgate_smpp_link_drops_total") >= 1
            # /healthz: alive all along (a restart would not help).
            assert client.get("/healthz").status_code == 200

            smsc.start()  # the same port: the connector's backoff finds it again
            body = readyz_when(client, 200)
            assert body["checks"] == {"database": "ok", "carrier": "ok"}
            assert value(scrape(client), "roxgate_smpp_bound") == 1
    finally:
        server.stop()
        smsc.close()
    logs = server.logs()
    assert "not ready: carrier: not bound" in logs and "ready again" in logs
    assert "secret@" not in logs


# --- an api process: the database only; the token ------------------------------------


TOKEN = "scrape-me-7f3a9c"


@pytest.fixture(scope="module")
def api(engine_factory: Any) -> Iterator[Env]:
    path, engine = engine_factory("metrics_api")
    seed_accounts(engine)
    server = Server(path, env_extra={"ROXGATE_METRICS_TOKEN": TOKEN}, role="api")
    server.start()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield Env(server, engine, client)
    server.stop()


def test_metrics_token(api: Env) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ):
        response = api.client.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "roxgate_" not in response.text
    scrape(api.client, {"Authorization": f"Bearer {TOKEN}"})
    scrape(api.client, {"Authorization": f"bearer {TOKEN}"})
    assert TOKEN not in api.server.logs()


def test_api_process_reports_its_requests_and_the_database_queue(api: Env) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    before = scrape(api.client, auth)
    assert api.post(request_body())["Result"] == "0000"
    after = scrape(api.client, auth)
    assert (
        value(after, "roxgate_api_requests_total", result="0000")
        - value(before, "roxgate_api_requests_total", result="0000")
        == 1
    )
    assert (
        value(after, "roxgate_messages_total", kind="accepted")
        - value(before, "roxgate_messages_total", kind="accepted")
        == 1
    )
    # No process sends from this database: the message stays queued, and the
    # gauge (refreshed within ~2 s) says so.
    deadline = time.monotonic() + 15
    while value(after, "roxgate_messages_pending", state="queued") != 1:
        assert time.monotonic() < deadline, "the queued gauge never showed the message"
        time.sleep(0.3)
        after = scrape(api.client, auth)
    # Nothing of the sending side in an api process.
    names = {name for name, _ in after}
    assert not {
        n
        for n in names
        if n.startswith(("roxgate_smpp_", "roxgate_callback_attempts", "roxgate_mail_total"))
    }
    assert value(after, "roxgate_build_info", role="api", version="0.1.0") == 1


def test_readyz_of_an_api_process_checks_the_database_only(api: Env) -> None:
    assert readyz(api.client) == (200, {"status": "ready", "checks": {"database": "ok"}})


# --- readiness follows the database (PostgreSQL, which can be taken away) -------------


def _allow_connections(admin_url: str, db_name: str, allow: bool) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(db_name), sql.Literal(allow)
            )
        )
        if not allow:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (db_name,),
            )


def test_readyz_turns_unready_while_the_database_is_gone(
    pg_url: str, pg_engine_factory: Any, tmp_path: Any
) -> None:
    url, engine = pg_engine_factory("readyz_db")
    engine.dispose()
    db_name = url.rsplit("/", 1)[1]
    server = Server(tmp_path / "pg", database=url, role="api")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert readyz(client) == (200, {"status": "ready", "checks": {"database": "ok"}})
            _allow_connections(pg_url, db_name, False)
            body = readyz_when(client, 503)
            assert body["status"] == "unready"
            assert body["checks"]["database"].startswith(("error: ", "no answer within"))
            # The metrics still answer; they say the database counts are stale.
            wait_for(
                lambda: value(scrape(client), "roxgate_backlog_query_ok") == 0,
                what="the backlog count to fail",
            )
            assert client.get("/healthz").status_code == 200

            _allow_connections(pg_url, db_name, True)
            wait_for(lambda: readyz(client)[0] == 200, what="/readyz to recover")
            wait_for(
                lambda: value(scrape(client), "roxgate_backlog_query_ok") == 1,
                what="the backlog count to recover",
            )
    finally:
        _allow_connections(pg_url, db_name, True)
        server.stop()
