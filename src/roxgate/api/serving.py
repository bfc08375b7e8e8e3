"""How ``roxgate serve`` sets up uvicorn: HTTPS, proxy headers, slow and many clients."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from roxgate.api.protocol import guarded_protocol
from roxgate.config import Settings
from roxgate.netpolicy import parse_nets

# Connections the kernel queues before they are accepted (it caps this at
# net.core.somaxconn): a burst of connections waits instead of being refused.
BACKLOG = 2048
# Forward secrecy and AEAD ciphers only, for TLS 1.2 (TLS 1.3's are fixed and good;
# Python's SSLContext refuses anything older than TLS 1.2). Said explicitly:
# older uvicorn releases default to the cipher string "TLSv1" (CBC, SHA-1).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!aDSS"


def _no_password() -> bytes:
    # An encrypted key must fail to load here, not make OpenSSL prompt for a
    # pass phrase on the terminal of a service.
    return b""


def tls_files(settings: Settings) -> tuple[str, str] | None:
    """(certificate, key) when HTTPS is configured, after checking they load; else None.

    Raises ValueError with what is wrong: only one of the two set, a file that
    cannot be read, or files that are not a certificate and its (unencrypted) key.
    """
    cert, key = settings.tls_cert, settings.tls_key
    if not cert and not key:
        return None
    if not cert or not key:
        given, missing = ("TLS_CERT", "TLS_KEY") if cert else ("TLS_KEY", "TLS_CERT")
        raise ValueError(
            f"ROXGATE_{given} is set but ROXGATE_{missing} is not: HTTPS needs both "
            "(or neither, for plain HTTP)"
        )
    for name, path in (("ROXGATE_TLS_CERT", cert), ("ROXGATE_TLS_KEY", key)):
        try:
            with Path(path).open("rb"):
                pass
        except OSError as exc:
            raise ValueError(f"{name}: cannot read {path}: {exc.strerror or exc}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except ssl.SSLError as exc:
        raise ValueError(
            f"ROXGATE_TLS_CERT / ROXGATE_TLS_KEY: cannot use {cert} with {key} "
            f"({exc.reason or exc}): they must be a PEM certificate (chain) and its "
            "unencrypted private key"
        ) from None
    return cert, key


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config``; ValueError for a setting that cannot work."""
    for name in ("http_header_timeout", "http_body_timeout", "http_max_connections"):
        if getattr(settings, name) < 0:
            raise ValueError(f"setting {name} cannot be negative")
    try:
        parse_nets(settings.trusted_proxies)
    except ValueError as exc:
        raise ValueError(
            f"setting trusted_proxies: {exc} (use comma-separated CIDRs, e.g. 10.0.0.0/8)"
        ) from None
    options: dict[str, Any] = {
        "http": guarded_protocol(settings.http_header_timeout, settings.http_body_timeout),
        # The client's address comes from roxgate.api.proxies, and only through
        # ROXGATE_TRUSTED_PROXIES: uvicorn's own handling would believe any
        # X-Forwarded-For from 127.0.0.1 (or from FORWARDED_ALLOW_IPS).
        "proxy_headers": False,
        "forwarded_allow_ips": [],
        "limit_concurrency": settings.http_max_connections or None,
        "backlog": BACKLOG,
    }
    files = tls_files(settings)
    if files is not None:
        options.update(ssl_certfile=files[0], ssl_keyfile=files[1], ssl_ciphers=TLS12_CIPHERS)
    return options


def scheme(settings: Settings) -> str:
    return "https" if settings.tls_cert and settings.tls_key else "http"
