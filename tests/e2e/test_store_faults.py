"""Store faults: the disk fills up under load, and PostgreSQL restarts under load.

Requests that cannot be stored get 2100 and leave nothing behind; every 0000 is
stored whole and ends delivered; the gateway recovers by itself once the store is
back, without a restart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from roxgate.store.engine import open_database
from roxgate.store.schema import messages, requests
from tests.conftest import Env, Server, request_body, seed_accounts
from tests.e2e.test_sending import wait_settled


def batch(tag: int, size: int = 500) -> dict[str, Any]:
    text = "A message long enough to take some room in the database, number "
    return request_body(
        [{"DestTn": f"+614{tag:04d}{i:04d}", "SMSText": f"{text}{i}"} for i in range(size)]
    )


def stored_messages(engine: Any, request_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(messages).where(messages.c.request_id == request_id)
        ).scalar_one()


def request_stored(engine: Any, request_id: str) -> bool:
    with engine.connect() as conn:
        return (
            conn.execute(select(requests.c.id).where(requests.c.id == request_id)).first()
            is not None
        )


@contextlib.contextmanager
def tiny_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` (needs root: mount)."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a size-limited tmpfs needs root")
def test_disk_full_answers_2100_stores_nothing_half_and_recovers(tmp_path: Path) -> None:
    with tiny_filesystem(tmp_path / "tiny", "3m") as tiny:
        db = tiny / "roxgate.db"
        engine = open_database(f"sqlite:///{db}")
        seed_accounts(engine)
        server = Server(db, env_extra={"ROXGATE_SIM_RECEIPT_DELAY": "0.05"})
        # The log goes elsewhere: it must not be what fills the disk.
        server.start()
        answers: list[dict[str, Any]] = []
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                env = Env(server, engine, client)
                for tag in range(60):
                    data = env.post(batch(tag))
                    answers.append(data)
                    if data["Result"] == "2100":
                        break
                full = [a for a in answers if a["Result"] != "0000"]
                assert full, "the disk never filled"
                assert full[-1]["Result"] == "2100", full[-1]
                assert "retry" in full[-1]["ResultText"]
                assert client.get("/healthz").status_code == 200  # up, not crashed

                # Nothing half-stored: a 2100 left no request and no message behind.
                for a in full:
                    request_id = a["Messages"]["RequestId"]
                    assert not request_stored(engine, request_id)
                    assert stored_messages(engine, request_id) == 0

                # Room again (as when the operator frees disk): the same gateway, no
                # restart, takes requests again and sends everything it had accepted.
                subprocess.run(["mount", "-o", "remount,size=64m", str(tiny)], check=True)
                deadline = time.monotonic() + 20
                again = env.post(batch(99, size=5))
                while again["Result"] != "0000" and time.monotonic() < deadline:
                    time.sleep(0.5)
                    again = env.post(batch(99, size=5))
                assert again["Result"] == "0000", again
                accepted = [a for a in answers if a["Result"] == "0000"] + [again]
                assert len(accepted) >= 3  # the disk held a few batches before it filled
                ids = []
                for a in accepted:
                    count = a["Messages"]["Count"]
                    assert stored_messages(engine, a["Messages"]["RequestId"]) == count
                    ids += [a["Messages"][str(i)]["SMSId"] for i in range(1, count + 1)]
                print(f"\ndisk full after {len(accepted) - 1} batches of 500: 2100, then recovered")
                states = wait_settled(env, ids, timeout=120)
                assert set(states.values()) == {("delivered", "0000")}, set(states.values())
        finally:
            server.stop()
            engine.dispose()


def _local_cluster() -> list[str] | None:
    """``pg_ctlcluster VERSION main`` of this machine's PostgreSQL, if it has one."""
    ctl = shutil.which("pg_ctlcluster")
    if ctl is None or not os.path.isdir("/etc/postgresql") or os.geteuid() != 0:
        return None
    versions = sorted(
        (v for v in os.listdir("/etc/postgresql") if v.replace(".", "").isdigit()),
        key=lambda v: [int(n) for n in v.split(".")],
    )
    return [ctl, "--skip-systemctl-redirect", versions[-1], "main"] if versions else None


def test_postgresql_down_under_load_2100_then_recovers(
    pg_engine_factory: Any, tmp_path: Path
) -> None:
    cluster = _local_cluster()
    if cluster is None:
        pytest.skip("!!! no local PostgreSQL cluster this test may restart (pg_ctlcluster) !!!")
    url, engine = pg_engine_factory("pgrestart")
    seed_accounts(engine)
    server = Server(tmp_path / "pg", database=url, env_extra={"ROXGATE_SIM_RECEIPT_DELAY": "0.05"})
    server.start()
    answers: list[dict[str, Any]] = []
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            env = Env(server, engine, client)
            tag = 0

            def send() -> dict[str, Any]:
                nonlocal tag
                tag += 1
                data = env.post(batch(tag, size=100))
                answers.append(data)
                return data

            for _ in range(3):
                assert send()["Result"] == "0000"
            # Down for a few seconds under load: what arrives meanwhile is refused
            # with 2100 (connection refused), never half-stored.
            subprocess.run([*cluster, "stop", "-m", "fast"], check=True, timeout=60)
            try:
                down = [send() for _ in range(3)]
            finally:
                restarted = time.monotonic()
                subprocess.run([*cluster, "start"], check=True, timeout=60)
            assert [d["Result"] for d in down] == ["2100"] * 3, down
            # Back up: the pools reconnect by themselves, no restart of the gateway.
            deadline = time.monotonic() + 30
            ok_after = 0
            while ok_after < 3 and time.monotonic() < deadline:
                ok_after = ok_after + 1 if send()["Result"] == "0000" else 0
            recovered = time.monotonic() - restarted
            assert ok_after == 3, answers[-3:]
            assert {a["Result"] for a in answers} <= {"0000", "2100"}
            failed = [a for a in answers if a["Result"] == "2100"]
            engine.dispose()
            for a in failed:
                assert not request_stored(engine, a["Messages"]["RequestId"])
            ids = []
            for a in answers:
                if a["Result"] == "0000":
                    count = a["Messages"]["Count"]
                    assert stored_messages(engine, a["Messages"]["RequestId"]) == count
                    ids += [a["Messages"][str(i)]["SMSId"] for i in range(1, count + 1)]
            # The worker side recovers too: everything accepted is sent and delivered.
            states = wait_settled(env, ids, timeout=90)
            assert set(states.values()) == {("delivered", "0000")}, set(states.values())
    finally:
        server.stop()
    print(
        f"\nPostgreSQL stopped and started: {len(failed)} request(s) answered 2100, "
        f"0000 again {recovered:.1f} s after the start"
    )
