"""Dispatch benchmark: how fast queued messages reach the carrier and come back settled.

Starts ``roxgate serve`` (built-in simulator, receipts on) on a temporary SQLite
file, queues N messages through the API as fast as it accepts them, and
prints JSON: messages/s submitted to the SMSC, messages/s settled (receipt
processed), and the server's RSS.

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

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from ingest import PASSWORD, build_body, free_port, rss_kib
from roxgate.accounts import admin
from roxgate.store.engine import open_database


def counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db, timeout=30) as conn:
        return dict(
            conn.execute("SELECT status, count(*) FROM messages GROUP BY status").fetchall()
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    requests = max(1, args.messages // 500)
    with tempfile.TemporaryDirectory(prefix="roxgate-bench-") as tmp:
        db = Path(tmp) / "bench.db"
        engine = open_database(f"sqlite:///{db}")
        admin.add_account(engine, "CI00000001", "Bench")
        admin.add_user(engine, "CI00000001", "bench@example.com", PASSWORD)
        engine.dispose()
        port = free_port()
        env = {**os.environ, "ROXGATE_DATABASE_URL": f"sqlite:///{db}", "ROXGATE_PORT": str(port),
               "ROXGATE_LOG_LEVEL": "WARNING", "ROXGATE_SIM_RECEIPT_DELAY": "0.5"}  # fmt: skip
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("roxgate")), "serve"], env=env
        )
        try:
            url = f"http://127.0.0.1:{port}/smsapi/send"
            for _ in range(300):
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            started = time.perf_counter()
            with httpx.Client(timeout=60) as client:
                for n in range(requests):
                    client.post(url, content=build_body(n, 500, False))
            queued_at = time.perf_counter()
            total = requests * 500
            submitted_at = settled_at = None
            while time.perf_counter() - started < args.timeout:
                c = counts(db)
                if submitted_at is None and c.get("queued", 0) + c.get("submitting", 0) == 0:
                    submitted_at = time.perf_counter()
                if c.get("delivered", 0) + c.get("failed", 0) >= total:
                    settled_at = time.perf_counter()
                    break
                time.sleep(0.2)
            figures = {
                "messages": total,
                "intake_s": round(queued_at - started, 2),
                "all_submitted_s": submitted_at and round(submitted_at - started, 2),
                "submitted_per_s": submitted_at and round(total / (submitted_at - started)),
                "all_settled_s": settled_at and round(settled_at - started, 2),
                "settled_per_s": settled_at and round(total / (settled_at - started)),
                "final": counts(db),
                "server_rss_kib": rss_kib(server.pid),
            }
        finally:
            server.terminate()
            server.wait(60)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
