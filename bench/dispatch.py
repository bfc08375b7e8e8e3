"""Dispatch benchmark: how fast queued messages reach the SMSC and come back settled.

1. Queues N messages (500 a request) through a gateway running ``--role api``
   on a temporary SQLite file, and stops it: the queue is full before
   dispatch starts.
2. Starts the carrier simulator as its own process (``roxgate simulator``;
   ``--peer inprocess`` uses the one built into the gateway instead, which
   then shares the gateway's CPU and GIL), and a gateway (role all) pointed
   at it over SMPP on loopback, one bind.
3. Polls the store and prints JSON: messages/s submitted to the SMSC
   (submit_sm answered and recorded), messages/s settled (receipt processed),
   and the gateway's RSS. Runs once with receipts (``registered_delivery=1``)
   and once without. The messages ask for no ROX receipt (ReceiptFlag 0), so
   no callbacks are queued: ``bench/callbacks.py`` measures those.

    .venv/bin/python bench/dispatch.py --messages 20000
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
from ingest import build_body, free_port, rss_kib, seed_database

ROXGATE = str(Path(sys.executable).with_name("roxgate"))


def counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db, timeout=30) as conn:
        return dict(
            conn.execute("SELECT status, count(*) FROM messages GROUP BY status").fetchall()
        )


def ordinary_numbers(body: bytes, n: int, customer_receipts: bool = True) -> bytes:
    """The simulator fails numbers ending 9990-9998 on purpose: avoid them.

    Without ``customer_receipts`` no ROX receipt is asked for (ReceiptFlag 0):
    the carrier's receipts still settle every message, but no callback is
    queued (bench/callbacks.py measures those).
    """
    doc = orjson.loads(body)
    if not customer_receipts:
        doc["Messages"]["ReceiptFlag"] = 0
        doc["Messages"].pop("ReceiptCallbackURL", None)
    for key, value in doc["Messages"].items():
        if isinstance(value, dict):
            i = n * 500 + int(key)
            value["DestTn"] = f"+614{(i // 9000) * 10_000 + i % 9000:08d}"
    return orjson.dumps(doc)


def wait_healthy(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"the gateway exited with {proc.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("the gateway did not start")


def queue_messages(db: Path, requests: int) -> None:
    queue_messages_url(f"sqlite:///{db}", requests)


def queue_messages_url(url: str, requests: int) -> None:
    """``requests`` × 500 messages (ReceiptFlag 0) queued by a ``--role api`` gateway
    on the database at ``url``, which is stopped again: nothing is sent."""
    port = free_port()
    env = {**os.environ, "ROXGATE_DATABASE_URL": url, "ROXGATE_PORT": str(port),
           "ROXGATE_LOG_LEVEL": "WARNING"}  # fmt: skip
    server = subprocess.Popen([ROXGATE, "serve", "--role", "api"], env=env)
    try:
        wait_healthy(port, server)
        with httpx.Client(timeout=60) as client:
            for n in range(requests):
                reply = client.post(
                    f"http://127.0.0.1:{port}/smsapi/send",
                    content=ordinary_numbers(build_body(n, 500, False), n, False),
                )
                assert b'"0000"' in reply.content, reply.content[:300]
    finally:
        server.terminate()
        server.wait(60)


def dispatch(db: Path, total: int, receipts: bool, peer: str, window: int, timeout: float) -> Any:
    sim_port = free_port()
    sim = None
    env = {
        **os.environ,
        "ROXGATE_DATABASE_URL": f"sqlite:///{db}",
        "ROXGATE_PORT": str(free_port()),
        "ROXGATE_LOG_LEVEL": "WARNING",
        "ROXGATE_SIM_RECEIPT_DELAY": "0.5",
    }
    if peer == "process":
        sim = subprocess.Popen(
            [ROXGATE, "simulator", "--port", str(sim_port), "--receipt-delay", "0.5"],
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        env["ROXGATE_CARRIER"] = (
            f"smpp://bench:bench@127.0.0.1:{sim_port}"
            f"?window={window}&registered_delivery={int(receipts)}"
        )
    elif not receipts:
        raise SystemExit("--peer inprocess always asks for receipts")
    server = subprocess.Popen([ROXGATE, "serve"], env=env)
    started = time.perf_counter()
    first_submit = all_submitted = first_settled = all_settled = None
    try:
        while time.perf_counter() - started < timeout:
            c = counts(db)
            now = time.perf_counter()
            waiting = c.get("queued", 0) + c.get("submitting", 0)
            settled = c.get("delivered", 0) + c.get("failed", 0)
            if first_submit is None and waiting < total:
                first_submit = now
            if all_submitted is None and waiting == 0:
                all_submitted = now
            if first_settled is None and settled:
                first_settled = now
            if settled >= total or (not receipts and all_submitted):
                all_settled = now
                break
            time.sleep(0.05)
        rss = rss_kib(server.pid)
    finally:
        server.terminate()
        server.wait(60)
        if sim is not None:
            sim.terminate()
            sim.wait(10)

    def rate(start: float | None, end: float | None) -> int | None:
        return round(total / (end - start)) if start and end and end > start else None

    return {
        "receipts": receipts,
        "submitted_per_s": rate(first_submit, all_submitted),
        "settled_per_s": rate(first_submit, all_settled) if receipts else None,
        "receipts_processed_per_s": rate(first_settled, all_settled) if receipts else None,
        "seconds_to_all_submitted": all_submitted and round(all_submitted - started, 2),
        "final": counts(db),
        "gateway_rss_kib": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--peer", choices=["process", "inprocess"], default="process")
    parser.add_argument("--window", type=int, default=100, help="SMPP window (process peer)")
    parser.add_argument("--receipts", choices=["both", "on", "off"], default="both")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    requests = max(1, args.messages // 500)
    modes = {"both": [True, False], "on": [True], "off": [False]}[args.receipts]
    results = []
    for receipts in modes:
        with tempfile.TemporaryDirectory(prefix="roxgate-bench-") as tmp:
            db = seed_database(Path(tmp))
            queue_messages(db, requests)
            results.append(
                dispatch(db, requests * 500, receipts, args.peer, args.window, args.timeout)
            )
    print(json.dumps({"messages": requests * 500, "peer": args.peer, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
