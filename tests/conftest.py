"""Shared fixtures: a real roxgate server in a subprocess, on a temporary SQLite file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from roxgate.accounts import admin
from roxgate.store.engine import open_database

ROXGATE = str(Path(sys.executable).with_name("roxgate"))
PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """``roxgate serve`` as a child process, talking HTTP on a real socket."""

    db_path: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROXGATE_")}
        env.update(
            ROXGATE_DATABASE_URL=self.database_url,
            ROXGATE_PORT=str(self.port),
            ROXGATE_HOST="127.0.0.1",
        )
        env.update(self.env_extra)
        return env

    def start(self) -> None:
        self.log_path = self.db_path.with_suffix(f".{self.port}.log")
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [ROXGATE, "serve"], env=self.env(), stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"roxgate exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("roxgate did not become healthy in 30 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""


@dataclass
class Env:
    """A running server plus direct access to its database."""

    server: Server
    engine: Engine
    client: httpx.Client

    def post(self, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
        if isinstance(body, (bytes, str)):
            response = self.client.post("/smsapi/send", content=body, headers=headers)
        else:
            response = self.client.post("/smsapi/send", json=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        data = response.json()
        assert isinstance(data["Result"], str) and len(data["Result"]) == 4
        return data


@pytest.fixture(scope="session")
def engine_factory(tmp_path_factory: pytest.TempPathFactory) -> Any:
    def make(name: str) -> tuple[Path, Engine]:
        path = tmp_path_factory.mktemp(name) / "roxgate.db"
        return path, open_database(f"sqlite:///{path}")

    return make


def seed_accounts(engine: Engine) -> None:
    """The accounts the end-to-end tests use (see each id's purpose)."""
    admin.add_account(engine, "CI00000001", "Main", region="AU", tz_offset=-600)
    admin.add_user(engine, "CI00000001", "user@example.com", PASSWORD, mobile="+61400000001")
    admin.add_user(engine, "CI00000001", "disabled@example.com", PASSWORD)
    admin.set_user_status(engine, "CI00000001", "disabled@example.com", "disabled")
    admin.add_account(engine, "CI00000002", "Suspended")
    admin.add_user(engine, "CI00000002", "user@example.com", PASSWORD)
    admin.update_account(engine, "CI00000002", status="suspended")
    admin.add_account(engine, "CI00000003", "No API", api_enabled=False)
    admin.add_user(engine, "CI00000003", "user@example.com", PASSWORD)
    admin.add_account(engine, "CI00000004", "Office only", allowed_nets="203.0.113.0/24")
    admin.add_user(engine, "CI00000004", "user@example.com", PASSWORD)
    admin.add_account(engine, "CI00000005", "Credits", credits=5, allowed_countries="AU,NZ")
    admin.add_user(engine, "CI00000005", "user@example.com", PASSWORD)
    admin.change_number_list(engine, "CI00000001", "block", ["+61407555999"], add=True)
    admin.change_number_list(engine, "CI00000001", "optout", ["+61407555998"], add=True)


@pytest.fixture(scope="session")
def gw(engine_factory: Any) -> Iterator[Env]:
    """One shared server for the many read-mostly API tests."""
    path, engine = engine_factory("shared")
    seed_accounts(engine)
    server = Server(path)
    server.start()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield Env(server, engine, client)
    server.stop()


def request_body(
    recipients: list[dict[str, Any]] | None = None,
    *,
    account: str = "CI00000001",
    username: str = "user@example.com",
    password: str = PASSWORD,
    **messages: Any,
) -> dict[str, Any]:
    if recipients is None:
        recipients = [{"DestTn": "+61407555001", "SMSText": "Hello"}]
    body: dict[str, Any] = {
        "Name": "ROX_API_Request",
        "Version": 1.1,
        "Product": "tests",
        "Sender": {"AccountId": account, "Username": username, "Password": password},
        "Messages": {"Count": len(recipients), **messages},
    }
    for i, r in enumerate(recipients, start=1):
        body["Messages"][str(i)] = r
    return body
