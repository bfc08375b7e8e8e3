"""Callback worker benchmark: how fast queued receipts are POSTed and recorded.

1. Queues N receipt callbacks (each with its message) directly in a temporary
   SQLite database, all due now, all to one local URL.
2. Starts a receiver in its own process (``aiohttp.web``, answering 200 with
   an empty body at once), so it does not share the worker's CPU or GIL.
3. Runs the real :class:`CallbackWorker` with the gateway's group-commit
   writer as ``record`` (claims and results go through it, as in the server),
   until every callback is recorded delivered, and prints JSON: callbacks/s
   (claimed, posted and recorded), p50/p99 of the post latency (request sent
   to answer read), attempts recorded, and the writer's transactions.

    .venv/bin/python bench/callbacks_worker.py --callbacks 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from roxgate.accounts import admin
from roxgate.callbacks.http import CallbackWorker, parse_retry_schedule
from roxgate.netpolicy import parse_nets
from roxgate.report.bodies import MessageFacts, receipt_body
from roxgate.report.outbox import CallbackJob, CallbackResult
from roxgate.store.engine import open_database
from roxgate.store.ids import new_id, now_ms
from roxgate.store.schema import callbacks, messages
from roxgate.store.writer import GroupCommitWriter

USER = "bench@example.com"


def serve(port: int) -> None:
    """The receiver: 200, empty body, at once (the ``--receiver`` mode)."""
    import uvloop
    from aiohttp import web

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response()

    app = web.Application()
    app.router.add_post("/receipt", hook)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_receiver() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--receiver", str(port)])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the receiver did not start")


def queue_callbacks(db: Path, n: int, url: str) -> None:
    engine = open_database(f"sqlite:///{db}")
    admin.add_account(engine, "CI00000001", "Bench")
    user_id = admin.add_user(engine, "CI00000001", USER, "correct horse battery")
    now = now_ms() - 1000
    msgs, hooks = [], []
    for i in range(n):
        sms_id = new_id()
        msgs.append(
            {"id": sms_id, "request_id": "bench", "account_id": "CI00000001", "user_id": user_id,
             "dest_tn": f"+614{i:08d}", "dest_country": "AU", "text": "Reminder", "encoding": "gsm",
             "parts": 1, "due_at": now, "receipt_flag": 1, "reply_type": "E",
             "status": "delivered", "result": "0000", "created_at": now, "updated_at": now}
        )  # fmt: skip
        facts = MessageFacts(sms_id, "bench", "CI00000001", USER, f"+614{i:08d}", None, None,
                             "Reminder", "bench")  # fmt: skip
        hooks.append(
            {"id": new_id(), "account_id": "CI00000001", "kind": "receipt", "message_id": sms_id,
             "url": url, "body": receipt_body(facts, "0000", "Delivered", now),
             "status": "pending", "attempts": 0, "next_at": now, "created_at": now,
             "updated_at": now}
        )  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(messages), msgs)
        conn.execute(insert(callbacks), hooks)
    engine.dispose()


class TimedWorker(CallbackWorker):
    """The real worker, timing each post to the microsecond (the attempts table keeps ms)."""

    latencies: list[float]

    async def _attempt(self, job: CallbackJob, url: Any, refused: Any = None) -> CallbackResult:
        started = time.perf_counter()
        result = await super()._attempt(job, url, refused)
        self.latencies.append(time.perf_counter() - started)
        return result


async def run_worker(db: Path, n: int, per_host: int) -> dict[str, Any]:
    engine = open_database(f"sqlite:///{db}")
    writer = GroupCommitWriter(engine)
    writer.start()
    worker = TimedWorker(
        writer.do,
        retry_schedule=parse_retry_schedule("5,30,120,600,1800,3600"),
        timeout=10.0,
        allow_nets=parse_nets("127.0.0.0/8"),
        per_host=per_host,
    )
    worker.latencies = []
    watch = sqlite3.connect(db)
    start = time.perf_counter()
    task = asyncio.create_task(worker.run())
    done = 0
    while done < n and time.perf_counter() - start < 300:
        await asyncio.sleep(0.01)
        # The database only once the worker has posted them all: counting rows
        # on the event loop all along would slow down what is measured.
        if worker.counts["ok"] >= n:
            done = int(watch.execute(
                "SELECT count(*) FROM callbacks WHERE status = 'delivered'"
            ).fetchone()[0])  # fmt: skip
    elapsed = time.perf_counter() - start
    await worker.stop()
    await task
    writer.stop()
    attempts = watch.execute("SELECT count(*) FROM callback_attempts").fetchone()[0]
    watch.close()
    engine.dispose()
    lat = sorted(worker.latencies)
    return {
        "callbacks": n,
        "delivered": done,
        "seconds": round(elapsed, 3),
        "callbacks_per_s": round(done / elapsed),
        "post_latency_ms": {
            "p50": round(lat[len(lat) // 2] * 1000, 2),
            "p99": round(lat[int(len(lat) * 0.99)] * 1000, 2),
        },
        "attempts": attempts,
        "writer_transactions": writer.batches,
        "per_host": per_host,
        "counts": dict(worker.counts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callbacks", type=int, default=20_000)
    parser.add_argument("--per-host", type=int, default=16)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop",
                        help="the server runs uvloop")  # fmt: skip
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        serve(args.receiver)
        return
    receiver, port = start_receiver()
    try:
        with tempfile.TemporaryDirectory() as folder:
            db = Path(folder) / "bench.db"
            queue_callbacks(db, args.callbacks, f"http://127.0.0.1:{port}/receipt")
            if args.loop == "uvloop":
                import uvloop

                result = uvloop.run(run_worker(db, args.callbacks, args.per_host))
            else:
                result = asyncio.run(run_worker(db, args.callbacks, args.per_host))
            result["loop"] = args.loop
            result["cpus"] = os.cpu_count()
            print(json.dumps(result))
    finally:
        receiver.terminate()
        receiver.wait()


if __name__ == "__main__":
    main()
