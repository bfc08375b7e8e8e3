"""Callback benchmark: receipts POSTed to a customer's server, per second and how late.

1. Queues N messages with ReceiptFlag 1 and a ReceiptCallbackURL on a local
   receiver (through a ``--role api`` gateway on a temporary SQLite file).
2. Starts the receiver (aiohttp, its own process, answers 200 at once), the
   carrier simulator (its own process, a DELIVRD receipt 0.5 s after each
   submit) and a gateway (role all) pointed at both.
3. Waits until the receiver has every receipt: the "pipeline" figures are
   receipts POSTed per second (first to last arrival) while messages are
   still being submitted and settled, and the latency from the carrier's
   receipt being committed (the message's ``final_at``) to its callback
   arriving (p50/p99/max). Here one process submits, settles and posts, so
   the rate is the whole path's, bound by the carrier side.
4. "drain": every one of those N receipts is put back in the outbox as not
   yet posted (as after a customer's outage) and a fresh gateway (the carrier
   idle) posts them all: the callback worker's own rate through the real
   server, writer and SSRF guard included.

Both print duplicates (must be 0) and the gateway's RSS.

    .venv/bin/python bench/callbacks.py --messages 20000
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).parent))
from dispatch import ordinary_numbers, wait_healthy
from ingest import build_body, free_port, rss_kib, seed_database

ROXGATE = str(Path(sys.executable).with_name("roxgate"))


# --- the receiver (run as: callbacks.py --serve-receiver PORT) ----------------------


def serve_receiver(port: int) -> None:
    from aiohttp import web

    arrivals: list[tuple[str, float]] = []

    async def receipt(request: web.Request) -> web.Response:
        body = await request.read()
        arrivals.append((orjson.loads(body)["Messages"]["Receipt"]["SMSId"], time.time()))
        return web.Response(status=200)

    async def stats(_request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(arrivals), content_type="application/json")

    app = web.Application()
    app.router.add_post("/receipt", receipt)
    app.router.add_get("/stats", stats)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# --- the benchmark -----------------------------------------------------------------


def queue_messages(db: Path, requests: int, receipt_url: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        "ROXGATE_DATABASE_URL": f"sqlite:///{db}",
        "ROXGATE_PORT": str(port),
        "ROXGATE_LOG_LEVEL": "WARNING",
        "ROXGATE_CALLBACK_ALLOW_NETS": "127.0.0.0/8",
    }
    server = subprocess.Popen([ROXGATE, "serve", "--role", "api"], env=env)
    try:
        wait_healthy(port, server)
        with httpx.Client(timeout=60) as client:
            for n in range(requests):
                doc = orjson.loads(ordinary_numbers(build_body(n, 500, False), n))
                doc["Messages"]["ReceiptCallbackURL"] = receipt_url
                reply = client.post(
                    f"http://127.0.0.1:{port}/smsapi/send", content=orjson.dumps(doc)
                )
                assert b'"0000"' in reply.content, reply.content[:300]
    finally:
        server.terminate()
        server.wait(60)


def final_times(db: Path) -> dict[str, float]:
    with sqlite3.connect(db, timeout=30) as conn:
        rows = conn.execute("SELECT id, final_at FROM messages WHERE final_at IS NOT NULL")
        return {sms_id: final_at / 1000 for sms_id, final_at in rows}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def requeue_callbacks(db: Path) -> None:
    """Every receipt back in the outbox, due now, as if never posted."""
    with sqlite3.connect(db, timeout=30) as conn:
        conn.execute(
            "UPDATE callbacks SET status = 'pending', attempts = 0, next_at = 0, "
            "lease_owner = NULL, lease_until = NULL"
        )


def collect(
    db: Path, total: int, receiver_port: int, carrier: str, timeout: float
) -> tuple[list[tuple[str, float]], dict[str, int]]:
    """Run a gateway (role all) until the receiver has ``total`` more receipts."""
    env = {
        **os.environ,
        "ROXGATE_DATABASE_URL": f"sqlite:///{db}",
        "ROXGATE_PORT": str(free_port()),
        "ROXGATE_LOG_LEVEL": "WARNING",
        "ROXGATE_CALLBACK_ALLOW_NETS": "127.0.0.0/8",
        "ROXGATE_CARRIER": carrier,
    }
    stats = f"http://127.0.0.1:{receiver_port}/stats"
    with httpx.Client(timeout=30) as client:
        before = len(orjson.loads(client.get(stats).content))
        gateway = subprocess.Popen([ROXGATE, "serve"], env=env)
        started = time.monotonic()
        arrivals: list[tuple[str, float]] = []
        rss: dict[str, int] = {}
        try:
            while time.monotonic() - started < timeout:
                time.sleep(0.5)
                rss = rss_kib(gateway.pid)
                arrivals = orjson.loads(client.get(stats).content)[before:]
                if len(arrivals) >= total:
                    break
        finally:
            gateway.terminate()
            gateway.wait(60)
    return arrivals, rss


def run(total: int, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="roxgate-bench-") as tmp:
        db = seed_database(Path(tmp))
        receiver_port, sim_port = free_port(), free_port()
        receiver = subprocess.Popen(
            [sys.executable, __file__, "--serve-receiver", str(receiver_port)]
        )
        sim = subprocess.Popen(
            [ROXGATE, "simulator", "--port", str(sim_port), "--receipt-delay", "0.5"],
            stderr=subprocess.DEVNULL,
        )
        carrier = f"smpp://bench:bench@127.0.0.1:{sim_port}?window=100"
        try:
            queue_messages(db, total // 500, f"http://127.0.0.1:{receiver_port}/receipt")
            pipeline = collect(db, total, receiver_port, carrier, timeout)
            finals = final_times(db)
            requeue_callbacks(db)
            drain = collect(db, total, receiver_port, carrier, timeout)
        finally:
            for proc in (sim, receiver):
                proc.terminate()
                proc.wait(60)
    return {
        "messages": total,
        "pipeline": figures(*pipeline, finals),
        "drain": figures(*drain, None),
    }


def figures(
    arrivals: list[tuple[str, float]], rss: dict[str, int], finals: dict[str, float] | None
) -> dict[str, Any]:
    distinct = {sms_id for sms_id, _ in arrivals}
    times = [t for _, t in arrivals]
    lateness = [t - finals[s] for s, t in arrivals if s in finals] if finals else []
    span = max(times) - min(times) if len(times) > 1 else 0
    return {
        "receipts_posted": len(arrivals),
        "distinct": len(distinct),
        "duplicates": len(arrivals) - len(distinct),
        "callbacks_per_s": round(len(arrivals) / span) if span else None,
        "receipt_to_callback_ms": {
            "p50": round(percentile(lateness, 50) * 1000, 1),
            "p99": round(percentile(lateness, 99) * 1000, 1),
            "max": round(max(lateness) * 1000, 1),
        }
        if lateness
        else None,
        "gateway_rss_kib": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--serve-receiver", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_receiver:
        serve_receiver(args.serve_receiver)
        return
    print(json.dumps(run(max(500, args.messages // 500 * 500), args.timeout), indent=2))


if __name__ == "__main__":
    main()
