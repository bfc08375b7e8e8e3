"""Abuse limits on a real server: per-account rate limits (2041 with Retry-After),
failed logins per client address, and slow clients (slowloris heads and bodies).

Each test runs its own ``roxgate serve`` (limits must not disturb the shared one);
every client is on 127.0.0.1, other client addresses come through X-Forwarded-For
from a trusted proxy (127.0.0.1 itself).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from roxgate.accounts import admin
from roxgate.store.engine import open_database
from roxgate.store.schema import accounts, requests, users
from tests.conftest import PASSWORD, ROXGATE, Env, Server, request_body, seed_accounts

RETRY_TEXT = re.compile(r"retry after (\d+) s$")


def stored_requests(env: Env) -> int:
    with env.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(requests)).scalar_one()


def roxgate_cli(env: Env, *args: str) -> str:
    """The operator's ``roxgate`` command on the running server's database."""
    cli_env = {k: v for k, v in os.environ.items() if not k.startswith("ROXGATE_")}
    cli_env["ROXGATE_DATABASE_URL"] = env.server.database_url
    done = subprocess.run(
        [ROXGATE, *args], env=cli_env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def make_env(engine_factory: Any) -> Iterator[Any]:
    """``make(name, **settings)``: a seeded server of its own with these ROXGATE_ settings."""
    servers: list[Server] = []
    clients: list[httpx.Client] = []

    def make(name: str, **settings: str) -> Env:
        path, engine = engine_factory(name)
        seed_accounts(engine)
        server = Server(path, env_extra={f"ROXGATE_{k.upper()}": v for k, v in settings.items()})
        servers.append(server)
        server.start()
        client = httpx.Client(base_url=server.url, timeout=30)
        clients.append(client)
        return Env(server, engine, client)

    yield make
    for client in clients:
        client.close()
    for server in servers:
        server.stop()


def post(env: Env, body: Any, client_ip: str | None = None) -> tuple[dict[str, Any], httpx.Headers]:
    """POST a send request (from ``client_ip`` through the trusted proxy, when given)."""
    headers = {"X-Forwarded-For": client_ip} if client_ip else None
    response = env.client.post("/smsapi/send", json=body, headers=headers)
    # A refused request is still HTTP 200 with a ROX_API_Response (SPEC.md §1).
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["Name"] == "ROX_API_Response"
    return data, response.headers


def assert_rate_limited(data: dict[str, Any], headers: httpx.Headers, says: str) -> int:
    """A request-level 2041 whose text and Retry-After agree; returns the seconds."""
    assert data["Result"] == "2041", data
    assert says in data["ResultText"], data["ResultText"]
    assert data["Messages"]["Count"] == 0
    found = RETRY_TEXT.search(data["ResultText"])
    assert found, data["ResultText"]
    assert headers["retry-after"] == found.group(1)
    return int(found.group(1))


def recipients(n: int) -> list[dict[str, str]]:
    return [{"DestTn": f"+614075550{i:02d}", "SMSText": f"m{i}"} for i in range(n)]


# --- per-account rate limits ---------------------------------------------------------


def test_requests_per_minute_default_and_per_account(make_env: Any) -> None:
    env = make_env("rate_requests", rate_requests_per_minute="6")
    roxgate_cli(env, "account", "add", "CI00000006", "--name", "Bulk", "--rate-requests", "0")
    roxgate_cli(env, "account", "add", "CI00000007", "--name", "Small", "--rate-requests", "2")
    for account in ("CI00000006", "CI00000007"):
        admin.add_user(env.engine, account, "user@example.com", PASSWORD)

    # The default: 6 a minute, a whole minute's worth at once (one token comes
    # back every 10 s, so at most one more may pass on a very slow machine).
    answers = [post(env, request_body()) for _ in range(9)]
    codes = [data["Result"] for data, _ in answers]
    assert codes[:6] == ["0000"] * 6, codes
    assert "2041" in codes[6:8], codes
    limited = [(data, headers) for data, headers in answers if data["Result"] == "2041"]
    before = stored_requests(env)
    for data, headers in limited:
        wait = assert_rate_limited(data, headers, "6 requests per minute for this account")
        assert 1 <= wait <= 10
    # Refused: nothing stored.
    data, headers = post(env, request_body())
    assert data["Result"] == "2041"
    assert stored_requests(env) == before

    # Other accounts have their own buckets: one with no limit of its own (0)…
    bulk = [post(env, request_body(account="CI00000006"))[0]["Result"] for _ in range(12)]
    assert bulk == ["0000"] * 12
    # …and one with a smaller one.
    small = [post(env, request_body(account="CI00000007")) for _ in range(3)]
    assert [data["Result"] for data, _ in small[:2]] == ["0000", "0000"]
    assert_rate_limited(*small[2], "2 requests per minute for this account")

    # After the Retry-After the account may send again.
    wait = assert_rate_limited(data, headers, "6 requests per minute")
    time.sleep(wait + 0.5)
    assert post(env, request_body())[0]["Result"] == "0000"


def test_messages_per_minute_per_account(make_env: Any) -> None:
    env = make_env("rate_messages")
    roxgate_cli(env, "account", "add", "CI00000008", "--name", "Five", "--rate-messages", "5")
    roxgate_cli(env, "account", "add", "CI00000009", "--name", "Big")
    roxgate_cli(env, "account", "set", "CI00000009", "--rate-messages", "5")
    listing = roxgate_cli(env, "account", "list")
    assert re.search(r"CI00000009 .* 5\s*$", listing, re.M), listing
    for account in ("CI00000008", "CI00000009"):
        admin.add_user(env.engine, account, "user@example.com", PASSWORD)

    first, _ = post(env, request_body(recipients(3), account="CI00000008"))
    assert first["Result"] == "0000"
    before = stored_requests(env)
    data, headers = post(env, request_body(recipients(3), account="CI00000008"))
    wait = assert_rate_limited(
        data, headers, "5 messages per minute for this account (this request has 3)"
    )
    assert 10 <= wait <= 13  # one more message needed, one comes back every 12 s
    assert stored_requests(env) == before
    # Recipients that are refused anyway (a bad number) are not counted.
    data, _ = post(env, request_body([{"DestTn": "12", "SMSText": "x"}] * 3, account="CI00000008"))
    assert data["Result"] == "0000" and data["Messages"]["1"]["Result"] == "2032"
    # Unlimited by default on this server: the shared-seed account is not limited.
    assert post(env, request_body(recipients(20)))[0]["Result"] == "0000"

    # A request bigger than a whole minute's allowance passes with a full bucket,
    # and the account then pays it off before sending again.
    big, _ = post(env, request_body(recipients(10), account="CI00000009"))
    assert big["Result"] == "0000", big
    data, headers = post(env, request_body(recipients(1), account="CI00000009"))
    wait = assert_rate_limited(data, headers, "5 messages per minute")
    assert 60 <= wait <= 73  # 5 in debt plus 1: 72 s at 5 a minute

    # Back to the gateway's default (unlimited here).
    roxgate_cli(env, "account", "set", "CI00000009", "--rate-messages", "default")
    assert post(env, request_body(recipients(1), account="CI00000009"))[0]["Result"] == "0000"


# --- failed logins per client address ------------------------------------------------


def failed_logins(env: Env) -> int:
    with env.engine.connect() as conn:
        return conn.execute(
            select(users.c.failed_logins).where(
                users.c.account_id == "CI00000001", users.c.email == "user@example.com"
            )
        ).scalar_one()


def test_failed_logins_per_address(make_env: Any) -> None:
    env = make_env(
        "ipguard",
        trusted_proxies="127.0.0.1/32",
        login_ip_max_failures="3",
        login_ip_window_seconds="8",
    )
    attacker, neighbour = "198.51.100.1", "198.51.100.2"
    wrong = request_body(password="wrong password!")
    for _ in range(3):
        assert post(env, wrong, attacker)[0]["Result"] == "2002"
    assert failed_logins(env) == 3  # argon2 ran three times (five would lock the user)

    # From now on that address is refused before anything is verified: the right
    # password too, and a wrong one is not even counted against the user.
    data, headers = post(env, request_body(), attacker)
    wait = assert_rate_limited(data, headers, "Too many failed logins from this address")
    assert 1 <= wait <= 8
    assert post(env, wrong, attacker)[0]["Result"] == "2041"
    assert failed_logins(env) == 3
    # Another address is not affected.
    assert post(env, request_body(), neighbour)[0]["Result"] == "0000"

    # One IPv6 host is counted by its /64.
    for host in ("2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"):
        assert post(env, request_body(account="CI09999999"), host)[0]["Result"] == "2002"
    assert post(env, request_body(), "2001:db8:1:2::99")[0]["Result"] == "2041"
    assert post(env, request_body(), "2001:db8:1:3::1")[0]["Result"] == "0000"

    # When the window has passed, the address may log in again.
    data, headers = post(env, request_body(), attacker)
    time.sleep(assert_rate_limited(data, headers, "failed logins") + 0.5)
    assert post(env, request_body(), attacker)[0]["Result"] == "0000"
    assert "failed logins from 198.51.100.1" in env.server.logs()


# --- slow clients ----------------------------------------------------------------------


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """What the server sends until it closes the connection."""
    data = b""
    try:
        while chunk := await reader.read(65536):
            data += chunk
    except ConnectionError:
        pass
    return data


async def slowloris(port: int, head: bytes, trickle: bytes, every: float) -> tuple[float, bytes]:
    """Open a connection, send ``head``, then ``trickle`` every ``every`` seconds until
    the server closes it; returns (seconds it stayed open, what the server sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    opened = time.monotonic()
    writer.write(head)
    closed = asyncio.create_task(read_until_closed(reader))
    try:
        while not closed.done():
            await asyncio.wait([closed], timeout=every)
            if not closed.done():
                writer.write(trickle)
                await writer.drain()
    except ConnectionError:
        pass
    answer = await closed
    writer.close()
    return time.monotonic() - opened, answer


def test_slow_clients_are_cut_off_and_others_served(make_env: Any) -> None:
    env = make_env("slow", http_header_timeout="2", http_body_timeout="3")
    port = env.server.port
    body = orjson.dumps(request_body())
    post_head = (
        f"POST /smsapi/send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()

    async def normal_requests(until: asyncio.Event) -> list[float]:
        latencies = []
        async with httpx.AsyncClient(base_url=env.server.url, timeout=30) as client:
            while not until.is_set():
                started = time.monotonic()
                response = await client.post("/smsapi/send", content=body)
                latencies.append(time.monotonic() - started)
                assert response.status_code == 200
                assert response.json()["Result"] == "0000"
                await asyncio.sleep(0.1)
        return latencies

    async def scenario() -> None:
        heads = [
            slowloris(port, b"POST /smsapi/send HTTP/1.1\r\n", b"X-Slow: 1\r\n", 0.5)
            for _ in range(200)
        ]
        # A body trickled to the send handler: answered (2100) when its time is up.
        to_send = slowloris(port, post_head + body[:10], b" ", 0.5)
        # A body trickled to a route that never reads it: closed by the protocol.
        ignored = slowloris(
            port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", b"x", 0.5
        )
        silent = slowloris(port, b"", b"", 0.5)  # connects and says nothing
        huge = slowloris(port, b"GET /healthz HTTP/1.1\r\nX-Big: ", b"a" * 8192, 0.01)
        done = asyncio.Event()
        served = asyncio.create_task(normal_requests(done))
        results = await asyncio.wait_for(
            asyncio.gather(*heads, to_send, ignored, silent, huge), timeout=60
        )
        done.set()
        latencies = await asyncio.wait_for(served, timeout=30)

        *head_results, send_result, ignored_result, silent_result, huge_result = results
        # Slow heads: cut after the 2 s head deadline, with nothing sent back.
        open_for = sorted(seconds for seconds, _ in head_results)
        assert 1.5 <= open_for[0] <= open_for[-1] < 10, open_for
        assert all(answer == b"" for _, answer in head_results)
        assert 1.5 <= silent_result[0] < 10, silent_result
        # The trickled send body: a ROX answer after 3 s, then the connection closed.
        seconds, answer = send_result
        assert 2.5 <= seconds < 10, seconds
        head, _, json_body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head.lower()
        data = orjson.loads(json_body)
        assert data["Result"] == "2100"
        assert "Request body not complete within 3 s" in data["ResultText"]
        # A body nobody reads: answered at once, closed at 3 + 5 s (the backstop).
        seconds, answer = ignored_result
        assert answer.startswith(b"HTTP/1.1 200") and 7 <= seconds < 15, (seconds, answer)
        # An endless header: refused once it passes 64 KiB, long before the head
        # deadline (the 431 may be lost to the reset of a client still sending).
        seconds, answer = huge_result
        assert seconds < 1.5, seconds
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer
        # Meanwhile everyone else was served promptly.
        assert len(latencies) >= 10, latencies
        assert max(latencies) < 3, latencies

    asyncio.run(scenario())
    assert env.server.proc is not None and env.server.proc.poll() is None


def test_request_head_deadline_counts_from_the_first_byte_on_kept_alive(make_env: Any) -> None:
    """A kept-alive connection: idle up to keep-alive, then a new head has 2 s."""
    env = make_env("keepalive", http_header_timeout="2")
    with socket.create_connection(("127.0.0.1", env.server.port), timeout=15) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b'{"status":"ok"}'):
            chunk = conn.recv(4096)
            assert chunk, answer
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")
        time.sleep(1.5)  # idle, under uvicorn's keep-alive (5 s)
        started = time.monotonic()
        conn.sendall(b"GET /healthz HTTP/1.1\r\n")  # …and the rest never comes
        assert conn.recv(4096) == b""  # closed by the server
        assert 1.5 <= time.monotonic() - started < 10


def test_settings_that_cannot_work_stop_serve(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROXGATE_")}
    env.update(
        ROXGATE_DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}",
        ROXGATE_TRUSTED_PROXIES="10.0.0.0/8, proxy.example.com",
    )
    done = subprocess.run(
        [ROXGATE, "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0
    assert "trusted_proxies" in done.stderr and "proxy.example.com" in done.stderr


def test_rate_limit_options_are_checked(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROXGATE_")}
    env["ROXGATE_DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ROXGATE, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    assert cli("account", "add", "CI00000001", "--name", "A", "--rate-requests", "-1").returncode
    assert (
        cli("account", "add", "CI00000001", "--name", "A", "--rate-requests", "10").returncode == 0
    )
    refused = cli("account", "set", "CI00000001", "--rate-messages", "lots")
    assert refused.returncode != 0 and '"default"' in refused.stderr
    assert cli("account", "set", "CI00000001", "--rate-messages", "0").returncode == 0
    engine = open_database(env["ROXGATE_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            row = conn.execute(
                select(accounts.c.rate_requests_per_minute, accounts.c.rate_messages_per_minute)
            ).one()
    finally:
        engine.dispose()
    assert tuple(row) == (10, 0)
