"""HTTPS served by ``roxgate serve`` itself, and client addresses through trusted proxies.

The certificate is made for each run with ``openssl`` (a self-signed one for
127.0.0.1); clients trust exactly that certificate.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from roxgate.accounts import admin
from roxgate.store.schema import requests
from tests.conftest import PASSWORD, ROXGATE, Env, Server, request_body, seed_accounts


@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path


def make_certificate(folder: Path, name: str = "server") -> Pem:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificate")
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return Pem(cert, key)


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> Pem:
    return make_certificate(tmp_path_factory.mktemp("tls"))


def seed(engine: Any) -> None:
    seed_accounts(engine)
    admin.add_account(engine, "CI00000011", "Loopback only", allowed_nets="127.0.0.0/8")
    admin.add_user(engine, "CI00000011", "user@example.com", PASSWORD)


@dataclass
class TlsServer(Server):
    """The shared Server, spoken to over HTTPS, trusting ``ca`` only."""

    ca: Path | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def trust(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def start(self) -> None:
        self.log_path = self.db_path.with_suffix(f".{self.port}.log")
        self.proc = subprocess.Popen(
            [ROXGATE, "serve", "--role", self.role],
            env=self.env(),
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"roxgate exited: {self.log_path.read_text()[-2000:]}")
            try:
                response = httpx.get(self.url + "/healthz", timeout=1, verify=self.trust())
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("roxgate did not become healthy over https in 30 s")


@pytest.fixture(scope="module")
def tls_env(engine_factory: Any, pem: Pem) -> Iterator[Env]:
    path, engine = engine_factory("tls")
    seed(engine)
    server = TlsServer(
        path,
        env_extra={"ROXGATE_TLS_CERT": str(pem.cert), "ROXGATE_TLS_KEY": str(pem.key)},
        ca=pem.cert,
    )
    server.start()
    with httpx.Client(base_url=server.url, timeout=30, verify=server.trust()) as client:
        yield Env(server, engine, client)
    server.stop()


def stored_client_ip(env: Env, request_id: str) -> str | None:
    with env.engine.connect() as conn:
        return conn.execute(
            select(requests.c.client_ip).where(requests.c.id == request_id)
        ).scalar_one()


def test_https_end_to_end(tls_env: Env) -> None:
    port = tls_env.server.port
    assert f"roxgate serving on https://127.0.0.1:{port}" in tls_env.server.logs()
    data = tls_env.post(request_body())
    assert data["Result"] == "0000"
    assert data["Messages"]["1"]["SMSId"]
    # It is really TLS: plain HTTP gets no answer, and a client that does not
    # trust the certificate refuses it.
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"http://127.0.0.1:{port}/smsapi/send", json=request_body(), timeout=10)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://127.0.0.1:{port}/healthz", timeout=10)


def test_only_modern_tls_is_offered(tls_env: Env) -> None:
    def handshake(client: ssl.SSLContext) -> str:
        with (
            socket.create_connection(("127.0.0.1", tls_env.server.port), timeout=10) as raw,
            client.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            return f"{tls.version()} {tls.cipher()[0]}"  # type: ignore[index]

    tls12 = tls_env.server.trust()
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert handshake(tls12).startswith("TLSv1.2 ECDHE-ECDSA-")
    assert handshake(tls_env.server.trust()).startswith("TLSv1.3 ")
    # A client that offers only a CBC cipher suite without AEAD is refused.
    legacy = tls_env.server.trust()
    legacy.maximum_version = ssl.TLSVersion.TLSv1_2
    legacy.set_ciphers("ECDHE-ECDSA-AES128-SHA")
    with pytest.raises(ssl.SSLError):
        handshake(legacy)


def test_forwarded_for_is_ignored_without_trusted_proxies(tls_env: Env) -> None:
    """uvicorn would believe X-Forwarded-For from 127.0.0.1 by default: not here."""
    forged = {"X-Forwarded-For": "203.0.113.7"}
    data = tls_env.post(request_body(account="CI00000004"), headers=forged)
    assert data["Result"] == "2007"
    assert data["ResultText"] == "Source address 127.0.0.1 is not allowed for this account"
    data = tls_env.post(request_body(), headers=forged)
    assert data["Result"] == "0000"
    assert stored_client_ip(tls_env, data["Messages"]["RequestId"]) == "127.0.0.1"
    # An allow-list that holds the peer's address lets it in.
    assert tls_env.post(request_body(account="CI00000011"), headers=forged)["Result"] == "0000"


@pytest.fixture(scope="module")
def proxied_env(engine_factory: Any) -> Iterator[Env]:
    path, engine = engine_factory("proxied")
    seed(engine)
    server = Server(path, env_extra={"ROXGATE_TRUSTED_PROXIES": "10.9.0.0/16, 127.0.0.0/8"})
    server.start()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield Env(server, engine, client)
    server.stop()


@pytest.mark.parametrize(
    ("forwarded_for", "client", "code"),
    [
        ("203.0.113.7", "203.0.113.7", "0000"),
        ("198.51.100.7", "198.51.100.7", "2007"),
        # The proxy appends the address it saw: entries left of it are the client's
        # own claims, and are not believed.
        ("203.0.113.7, 198.51.100.9", "198.51.100.9", "2007"),
        ("198.51.100.9, 203.0.113.7", "203.0.113.7", "0000"),
        # Trusted hops (a chain of our proxies) are skipped.
        ("203.0.113.7, 10.9.1.1, 127.0.0.5", "203.0.113.7", "0000"),
        ("203.0.113.7:51234", "203.0.113.7", "0000"),
        ("[::ffff:203.0.113.7]:443", "203.0.113.7", "0000"),
        # Not an address: a malformed header, the peer is used.
        ("203.0.113.7, not-an-address", "127.0.0.1", "2007"),
        (None, "127.0.0.1", "2007"),
    ],
)
def test_forwarded_for_from_a_trusted_proxy(
    proxied_env: Env, forwarded_for: str | None, client: str, code: str
) -> None:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else None
    data = proxied_env.post(request_body(account="CI00000004"), headers=headers)
    assert data["Result"] == code, data
    if code == "2007":
        assert data["ResultText"] == f"Source address {client} is not allowed for this account"
    else:
        assert stored_client_ip(proxied_env, data["Messages"]["RequestId"]) == client


def test_forwarded_for_split_over_several_headers(proxied_env: Env) -> None:
    response = proxied_env.client.post(
        "/smsapi/send",
        json=request_body(account="CI00000004"),
        headers=[("X-Forwarded-For", "198.51.100.9"), ("X-Forwarded-For", "203.0.113.8")],
    )
    data = response.json()
    assert data["Result"] == "0000"
    assert stored_client_ip(proxied_env, data["Messages"]["RequestId"]) == "203.0.113.8"


# --- settings that cannot work -------------------------------------------------------


def serve_fails(tmp_path: Path, **settings: str) -> str:
    """Run ``roxgate serve`` with these settings; it must stop at once. Its stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROXGATE_")}
    env["ROXGATE_DATABASE_URL"] = f"sqlite:///{tmp_path / 'never.db'}"
    env.update({f"ROXGATE_{k.upper()}": v for k, v in settings.items()})
    done = subprocess.run(
        [ROXGATE, "serve"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr


def test_tls_misconfiguration_stops_serve(tmp_path: Path, pem: Pem) -> None:
    only_cert = serve_fails(tmp_path, tls_cert=str(pem.cert))
    assert "ROXGATE_TLS_CERT is set but ROXGATE_TLS_KEY is not" in only_cert
    only_key = serve_fails(tmp_path, tls_key=str(pem.key))
    assert "ROXGATE_TLS_KEY is set but ROXGATE_TLS_CERT is not" in only_key
    missing = tmp_path / "missing.crt"
    unreadable = serve_fails(tmp_path, tls_cert=str(missing), tls_key=str(pem.key))
    assert f"ROXGATE_TLS_CERT: cannot read {missing}" in unreadable
    other = make_certificate(tmp_path, "other")
    mismatched = serve_fails(tmp_path, tls_cert=str(pem.cert), tls_key=str(other.key))
    assert "cannot use" in mismatched and "private key" in mismatched
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate\n")
    assert "cannot use" in serve_fails(tmp_path, tls_cert=str(garbage), tls_key=str(pem.key))
    # An encrypted key fails here, rather than prompting for a pass phrase.
    locked = tmp_path / "locked.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(pem.key), "-out", str(locked), "-aes256",
         "-passout", "pass:secret-phrase"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    encrypted = serve_fails(tmp_path, tls_cert=str(pem.cert), tls_key=str(locked))
    assert "unencrypted private key" in encrypted
    assert "secret-phrase" not in encrypted
    assert not (tmp_path / "never.db").exists()  # refused before anything started


def test_sim_reply_speaks_https_to_a_tls_gateway(tls_env: Env) -> None:
    # The operator's own tool, with the gateway's settings: https, trusting its cert.
    env = {**tls_env.server.env()}
    done = subprocess.run(
        [ROXGATE, "sim-reply", "+61400000999", "hello over TLS"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Delivered to the gateway" in done.stdout
