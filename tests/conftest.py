"""Shared fixtures: a real roxgate server in a subprocess, on a temporary SQLite file."""

from __future__ import annotations

import contextlib
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
    role: str = "all"  # roxgate serve --role
    # A database other than the SQLite file (a postgresql:// URL); db_path then
    # only names the log file.
    database: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{self.db_path}"

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
            [ROXGATE, "serve", "--role", self.role],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
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


# --- PostgreSQL ---------------------------------------------------------------------
#
# The store layer runs on SQLite (the default) and PostgreSQL (scale-out). These
# fixtures give tests fresh PostgreSQL databases on the local server; without
# one the PostgreSQL tests are skipped, loudly, unless ROXGATE_REQUIRE_POSTGRES=1
# makes that a failure (CI, where a skip would hide a broken store).

PG_ADMIN_URL = os.environ.get(
    "ROXGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _pg_reachable(url: str) -> str | None:
    """None when ``url`` accepts a connection, else why not."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip() or type(exc).__name__
    return None


def _start_local_cluster() -> None:
    """Try to start the distribution's cluster (Debian/Ubuntu ``pg_ctlcluster``)."""
    import shutil

    ctl = shutil.which("pg_ctlcluster")
    if ctl is None or not os.path.isdir("/etc/postgresql"):
        return
    # The newest installed version (15 sorts after 9.6).
    versions = sorted(
        (v for v in os.listdir("/etc/postgresql") if v.replace(".", "").isdigit()),
        key=lambda v: [int(n) for n in v.split(".")],
    )
    if not versions:
        return
    subprocess.run(
        [ctl, "--skip-systemctl-redirect", versions[-1], "main", "start"],
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="session")
def pg_url(pytestconfig: pytest.Config) -> str:
    """The URL of the PostgreSQL maintenance database (to create test databases from)."""
    why = _pg_reachable(PG_ADMIN_URL)
    if why is not None:
        _start_local_cluster()
        deadline = time.monotonic() + 15
        while why is not None and time.monotonic() < deadline:
            time.sleep(0.5)
            why = _pg_reachable(PG_ADMIN_URL)
    if why is not None:
        message = (
            f"!!! POSTGRESQL NOT AVAILABLE at {PG_ADMIN_URL} ({why}): "
            "the PostgreSQL store tests did NOT run !!!"
        )
        if os.environ.get("ROXGATE_REQUIRE_POSTGRES") == "1":
            pytest.fail(message + " (ROXGATE_REQUIRE_POSTGRES=1)", pytrace=False)
        # Past pytest's capture, so it is seen even when the run is green.
        capture = pytestconfig.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            print(f"\nWARNING: {message}", file=sys.stderr, flush=True)
        pytest.skip(message)
    return PG_ADMIN_URL


class PgDatabases:
    """Databases ``roxgate_test_<name>_<random>`` made on the server of ``admin_url``."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.made: list[str] = []
        self.engines: dict[str, list[Engine]] = {}
        self._migrated: str | None = None  # a database to copy, migrated once

    def create(self, name: str, template: str | None = None) -> str:
        """The URL of a new database: empty, or a copy of ``template``."""
        import re
        import secrets

        import psycopg
        from psycopg import sql

        slug = re.sub(r"[^a-z0-9_]", "_", name.lower())[:32]
        db_name = f"roxgate_test_{slug}_{secrets.token_hex(4)}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name))
        if template is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(statement)
        self.made.append(db_name)
        return self.admin_url.rsplit("/", 1)[0] + "/" + db_name

    def open(self, name: str) -> tuple[str, Engine]:
        """A new database with every migration applied, and an engine on it.

        The migrations run from empty once a session (``open_database`` on a
        new database); each test's database is a copy of that one, which
        ``open_database`` then finds at head: a third of the time.
        """
        if self._migrated is None:
            url = self.create("migrated")
            open_database(url).dispose()  # a template must have no connection
            self._migrated = url.rsplit("/", 1)[1]
        url = self.create(name, template=self._migrated)
        engine = open_database(url)
        self.engines.setdefault(url, []).append(engine)
        return url, engine

    def drop(self, url: str) -> None:
        """Close the engines on the database and drop it (the server allows 100 connections)."""
        import psycopg
        from psycopg import sql

        for engine in self.engines.pop(url, []):
            engine.dispose()
        db_name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name))
            )
        if db_name in self.made:
            self.made.remove(db_name)

    def drop_all(self) -> None:
        base = self.admin_url.rsplit("/", 1)[0]
        for db_name in list(self.made):
            self.drop(f"{base}/{db_name}")


@pytest.fixture(scope="session")
def pg_databases(pg_url: str) -> Iterator[PgDatabases]:
    databases = PgDatabases(pg_url)
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def pg_database_factory(pg_databases: PgDatabases) -> Any:
    """``make(name)``: the URL of a new, empty database ``roxgate_test_<name>_<random>``,
    dropped at the end of the session."""
    return pg_databases.create


@pytest.fixture(scope="session")
def pg_engine_factory(pg_databases: PgDatabases) -> Any:
    """``make(name)``: ``(url, engine)`` of a new database with every migration applied
    (by ``open_database``), dropped at the end of the session."""
    return pg_databases.open


@pytest.fixture(params=["sqlite", "postgresql"])
def store_factory(request: pytest.FixtureRequest) -> Iterator[Any]:
    """``make(name)``: a migrated engine on each database the store supports, in turn.

    The PostgreSQL databases are dropped when the test ends.
    """
    if request.param == "sqlite":
        sqlite_factory = request.getfixturevalue("engine_factory")
        yield lambda name: sqlite_factory(name)[1]
        return
    databases: PgDatabases = request.getfixturevalue("pg_databases")
    urls: list[str] = []

    def make(name: str) -> Engine:
        url, engine = databases.open(name)
        urls.append(url)
        return engine

    yield make
    for url in urls:
        databases.drop(url)
