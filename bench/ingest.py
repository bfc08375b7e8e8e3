"""Ingest benchmark: how fast one gateway accepts 500-recipient ROX requests.

Starts ``roxgate serve`` on a temporary SQLite file, then C keep-alive
clients send N requests of 500 distinct recipients each (bodies built
beforehand, so the client costs little CPU), and prints JSON figures:
messages/s accepted, request latency p50/p99, and the server's RSS.

    .venv/bin/python bench/ingest.py --requests 400 --concurrency 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from roxgate.accounts import admin
from roxgate.store.engine import open_database

PASSWORD = "bench-password-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_database(folder: Path) -> Path:
    """A new SQLite file in ``folder`` with the benchmark's account and user."""
    db = folder / "bench.db"
    seed_url(f"sqlite:///{db}")
    return db


def seed_url(url: str) -> None:
    """The benchmark's account and user in the (migrated) database at ``url``."""
    engine = open_database(url)
    admin.add_account(engine, "CI00000001", "Bench")
    admin.add_user(engine, "CI00000001", "bench@example.com", PASSWORD)
    engine.dispose()


def fresh_postgres(admin_url: str) -> str:
    """A new, empty PostgreSQL database next to ``admin_url``'s; its URL."""
    import secrets

    import psycopg

    name = f"roxgate_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_postgres(admin_url: str, url: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def build_body(n: int, recipients: int, global_text: bool) -> bytes:
    messages: dict[str, object] = {
        "Count": recipients,
        "ReceiptFlag": 1,
        "ReceiptCallbackURL": "https://hooks.example.com/receipt",
    }
    if global_text:
        messages["GlobalText"] = (
            "Reminder: your appointment is tomorrow at 10:00. Reply STOP to opt out."
        )
    for i in range(recipients):
        messages[str(i + 1)] = {
            "DestTn": f"+614{(n * recipients + i) % 100_000_000:08d}",
            "DestName": f"Customer {i}",
            "SMSText": (
                f"Hi Customer {i}, your appointment is on {1 + i % 28:02d}-Dec at 10:{i % 60:02d}."
            ),
        }
    body = {
        "Name": "ROX_API_Request",
        "Version": 1.1,
        "Product": "bench",
        "Sender": {
            "AccountId": "CI00000001",
            "Username": "bench@example.com",
            "Password": PASSWORD,
        },
        "Messages": messages,
    }
    return orjson.dumps(body)


def http_request(port: int, body: bytes) -> bytes:
    head = (
        f"POST /smsapi/send HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return await reader.readexactly(length)


async def client(
    port: int, queue: asyncio.Queue[bytes], latencies: list[float], failures: list[str]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        try:
            raw = queue.get_nowait()
        except asyncio.QueueEmpty:
            break
        started = time.perf_counter()
        writer.write(raw)
        body = await read_response(reader)
        latencies.append(time.perf_counter() - started)
        answer = orjson.loads(body)
        if answer["Result"] != "0000" or answer["ResultText"] != "Success":
            failures.append(f"{answer['Result']} {answer['ResultText']}")
    writer.close()


def rss_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            name, value = line.split(":")
            fields[name] = int(value.split()[0])
    return fields


async def run(args: argparse.Namespace, port: int, pid: int) -> dict[str, object]:
    bodies = [
        http_request(port, build_body(n, args.recipients, args.global_text))
        for n in range(args.requests + 1)
    ]
    # Warm-up: pays the one argon2 verification and opens the pool.
    warm: asyncio.Queue[bytes] = asyncio.Queue()
    warm.put_nowait(bodies.pop())
    await client(port, warm, [], [])
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for raw in bodies:
        queue.put_nowait(raw)
    latencies: list[float] = []
    failures: list[str] = []
    cpu_before = os.times()
    started = time.perf_counter()
    await asyncio.gather(
        *(client(port, queue, latencies, failures) for _ in range(args.concurrency))
    )
    elapsed = time.perf_counter() - started
    cpu_after = os.times()
    latencies.sort()
    return {
        "requests": len(latencies),
        "recipients_per_request": args.recipients,
        "concurrency": args.concurrency,
        "seconds": round(elapsed, 3),
        "messages_per_s": round(len(latencies) * args.recipients / elapsed),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1),
        "failures": len(failures),
        "client_cpu_s": round(
            (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system), 2
        ),
        "server_rss_kib": rss_kib(pid),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--recipients", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--global-text", action="store_true", help="one GlobalText for all")
    parser.add_argument(
        "--role",
        default="api",
        choices=["api", "all"],
        help="api: intake only (default); all: the dispatcher sends to the simulator meanwhile",
    )
    parser.add_argument(
        "--postgres",
        metavar="ADMIN_URL",
        help="run on a new PostgreSQL database made (and dropped) on this server, e.g. "
        "postgresql://postgres@127.0.0.1:5432/postgres; default: a SQLite file",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="roxgate-bench-") as tmp:
        if args.postgres:
            url = fresh_postgres(args.postgres)
            seed_url(url)
        else:
            url = f"sqlite:///{seed_database(Path(tmp))}"
        port = free_port()
        env = {
            **os.environ,
            "ROXGATE_DATABASE_URL": url,
            "ROXGATE_PORT": str(port),
            "ROXGATE_LOG_LEVEL": "WARNING",
        }
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("roxgate")), "serve", "--role", args.role], env=env
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            figures = asyncio.run(run(args, port, server.pid))
        finally:
            server.terminate()
            server.wait(30)
            if args.postgres:
                drop_postgres(args.postgres, url)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
