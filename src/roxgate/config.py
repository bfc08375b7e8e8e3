"""Settings from the environment (``ROXGATE_*``) or a TOML file given by ``--config``.

The environment wins over the file, so an operator can override one key of a
shared file for a single process.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "ROXGATE_"


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = "sqlite:///roxgate.db"
    host: str = "127.0.0.1"
    port: int = 8080
    carrier: str = "sim"
    smtp_url: str = ""
    mail_from: str = "roxgate@localhost"
    callback_allow_nets: str = ""
    callback_retry: str = "5,30,120,600,1800,3600"
    callback_timeout: float = 10.0
    # Largest accepted POST body; 500 recipients of 10-part UCS-2 texts need ~2 MiB.
    max_body_bytes: int = 4 * 1024 * 1024
    # Longest message, in SMS parts; longer texts are rejected with 2034.
    max_parts: int = 10
    # How long a successful password verification is reused (seconds; 0 disables).
    auth_cache_seconds: float = 60.0
    # Consecutive failed logins before a user is locked, and for how long.
    login_max_failures: int = 5
    login_lock_seconds: int = 15 * 60
    # How long an Idempotency-Key is remembered.
    idempotency_hours: int = 24
    # How long a write waits for a locked SQLite database before answering 2100.
    database_busy_timeout: float = 10.0
    # Most message rows the group-commit writer puts in one transaction.
    commit_max_rows: int = 20000
    # Group-commit writers (threads, each with a connection) that store
    # requests side by side on PostgreSQL; SQLite always has one.
    database_writers: int = 4
    log_level: str = "INFO"
    # Seconds the built-in simulator waits before its delivery receipt.
    sim_receipt_delay: float = 1.0
    # How long a claimed message stays with its worker without a heartbeat
    # (renewed every third of it): after a crash, its messages wait this long.
    lease_seconds: float = 30.0
    # A submitted message with no final receipt this long after submission
    # becomes 2064 (SPEC.md §3: validity period plus grace, 48 h + 24 h).
    validity_seconds: int = 48 * 3600
    receipt_grace_seconds: int = 24 * 3600
    # An inbound SMS is a reply to the latest message submitted to its sender
    # within this many days (SPEC.md §3); older ones are kept as unmatched.
    reply_window_days: float = 7.0
    # --- operators' console ---
    # A console sign-in lasts at most this long, and ends sooner after this much
    # inactivity.
    console_session_hours: float = 12.0
    console_idle_minutes: float = 30.0
    # The console cookies' Secure flag: "auto" (when the request came over
    # https, as seen directly or through a trusted proxy), "always" or "never".
    console_cookie_secure: str = "auto"
    # --- metrics and logs ---
    # "text" (readable, the default) or "json" (one object per line, for collectors).
    log_format: str = "text"
    # When set, GET /metrics needs "Authorization: Bearer <this token>".
    metrics_token: str = ""
    # --- hardening ---
    # Per-account limits, requests and messages (recipients) per minute, for
    # accounts without their own (`account set --rate-requests/--rate-messages`);
    # 0 = unlimited. Kept in memory by each api process (docs/security.md).
    rate_requests_per_minute: int = 0
    rate_messages_per_minute: int = 0
    # This many failed logins from one client address (an IPv6 /64) within the
    # window and that address is refused (2041) until the window ends; 0 disables.
    login_ip_max_failures: int = 200
    login_ip_window_seconds: int = 600
    # Slow clients: a request head must arrive within this many seconds (of the
    # connection's opening, or of the request's first byte), its body within this
    # many of the head; beyond this many connections new requests get HTTP 503.
    http_header_timeout: float = 10.0
    http_body_timeout: float = 60.0
    http_max_connections: int = 1000
    # HTTPS: a PEM certificate (chain) and its private key; both or neither.
    tls_cert: str = ""
    tls_key: str = ""
    # Comma-separated CIDRs of reverse proxies whose X-Forwarded-For is believed.
    trusted_proxies: str = ""

    @classmethod
    def load(cls, config_file: str | os.PathLike[str] | None = None) -> Settings:
        values: dict[str, Any] = {}
        if config_file:
            with Path(config_file).open("rb") as fh:
                values.update({k.lower(): v for k, v in tomllib.load(fh).items()})
        for f in fields(cls):
            env = os.environ.get(ENV_PREFIX + f.name.upper())
            if env is not None and env != "":
                values[f.name] = env
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        converted: dict[str, Any] = {}
        for name, raw in values.items():
            kind = type(getattr(cls(), name))
            try:
                converted[name] = kind(raw)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"setting {name}: cannot read {raw!r} as {kind.__name__}") from exc
        return cls(**converted)

    @property
    def callback_allow_net_list(self) -> list[str]:
        return [n.strip() for n in self.callback_allow_nets.split(",") if n.strip()]
