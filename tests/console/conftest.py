"""A console-enabled server, and an HTTP client that signs in like a browser does."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from roxgate.console.operators import add_operator
from roxgate.store.schema import messages
from tests.conftest import ROXGATE, Server, seed_accounts

OPERATOR = "ops"
OPERATOR_PASSWORD = "operator secret 42"
FINAL = ("delivered", "failed", "expired")


@dataclass
class Console:
    server: Server
    engine: Engine
    db_path: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, timeout=30)

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """``roxgate ARGS`` on this server's database, as an operator runs it."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROXGATE_")}
        env["ROXGATE_DATABASE_URL"] = self.server.database_url
        return subprocess.run(
            [ROXGATE, *args], input=stdin, capture_output=True, text=True, env=env,
            timeout=60, check=False,
        )  # fmt: skip


def start_console(engine_factory: Any, name: str, **env: str) -> Console:
    path, engine = engine_factory(name)
    seed_accounts(engine)
    add_operator(engine, OPERATOR, OPERATOR_PASSWORD)
    server = Server(path, env_extra={"ROXGATE_SIM_RECEIPT_DELAY": "0.2", **env})
    server.start()
    return Console(server, engine, path)


@pytest.fixture(scope="module")
def console(engine_factory: Any) -> Iterator[Console]:
    env = start_console(engine_factory, "console")
    yield env
    env.server.stop()


def form_token(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(
    client: httpx.Client, username: str = OPERATOR, password: str = OPERATOR_PASSWORD
) -> httpx.Response:
    """Fetch the sign-in form (its token and cookie), then post it, as a browser does."""
    form = client.get("/console/login")
    assert form.status_code == 200
    return client.post(
        "/console/login",
        data={"csrf": form_token(form.text), "username": username, "password": password},
    )


@contextlib.contextmanager
def signed_in(console: Console) -> Iterator[httpx.Client]:
    """A client with a console session (of the seeded operator)."""
    with console.client() as client:
        answer = sign_in(client)
        assert answer.status_code == 303, answer.text
        yield client


def wait_final(engine: Engine, sms_ids: list[str], timeout: float = 30) -> dict[str, str]:
    """Each message's status once all are final (the simulator answers in ~0.2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            query = select(messages.c.id, messages.c.status).where(messages.c.id.in_(sms_ids))
            rows = {sms_id: status for sms_id, status in conn.execute(query)}
        if len(rows) == len(sms_ids) and all(s in FINAL for s in rows.values()):
            return rows
        assert time.monotonic() < deadline, f"not final in {timeout} s: {rows}"
        time.sleep(0.1)
