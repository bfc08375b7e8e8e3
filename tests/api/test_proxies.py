"""The trusted-proxy middleware in a real Starlette app: client address and scheme.

(The end-to-end cases through ``roxgate serve`` are in tests/e2e/test_tls.py.)
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from roxgate.api.proxies import TrustedProxies, canonical_ip
from roxgate.netpolicy import parse_nets


async def whoami(request: Request) -> Response:
    client = request.client.host if request.client else None
    return JSONResponse({"client": client, "scheme": request.url.scheme})


APP = Starlette(
    routes=[Route("/", whoami)],
    middleware=[Middleware(TrustedProxies, nets=parse_nets("10.9.0.0/16,2001:db8:9::/48"))],
)


def seen(peer: str, headers: list[tuple[str, str]]) -> dict[str, str]:
    async def call() -> dict[str, str]:
        transport = httpx.ASGITransport(app=APP, client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            response = await client.get("/", headers=headers)
            return response.json()  # type: ignore[no-any-return]

    return asyncio.run(call())


@pytest.mark.parametrize(
    ("peer", "headers", "client", "scheme"),
    [
        # From a trusted proxy: the forwarded client and scheme.
        ("10.9.0.1", [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")],
         "203.0.113.7", "https"),
        ("::ffff:10.9.0.1", [("X-Forwarded-For", "203.0.113.7")], "203.0.113.7", "http"),
        ("2001:db8:9::1", [("X-Forwarded-For", "2001:db8:1::7")], "2001:db8:1::7", "http"),
        ("10.9.0.1", [("X-Forwarded-Proto", "http, HTTPS")], "10.9.0.1", "https"),
        ("10.9.0.1", [("X-Forwarded-Proto", "gopher")], "10.9.0.1", "http"),
        ("10.9.0.1", [("X-Forwarded-For", "")], "10.9.0.1", "http"),
        # Every hop trusted: the left-most one.
        ("10.9.0.1", [("X-Forwarded-For", "10.9.3.3, 10.9.2.2")], "10.9.3.3", "http"),
        # From anyone else: the headers are ignored.
        ("10.8.0.1", [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")],
         "10.8.0.1", "http"),
        ("127.0.0.1", [("X-Forwarded-For", "203.0.113.7")], "127.0.0.1", "http"),
    ],
)  # fmt: skip
def test_client_and_scheme(
    peer: str, headers: list[tuple[str, str]], client: str, scheme: str
) -> None:
    assert seen(peer, headers) == {"client": client, "scheme": scheme}


def test_canonical_ip() -> None:
    assert canonical_ip(" 203.0.113.7 ") == "203.0.113.7"
    assert canonical_ip("203.0.113.7:8080") == "203.0.113.7"
    assert canonical_ip("[2001:DB8::7]:8080") == "2001:db8::7"
    assert canonical_ip("2001:db8::7") == "2001:db8::7"
    assert canonical_ip("::ffff:203.0.113.7") == "203.0.113.7"
    assert canonical_ip("unknown") is None
    assert canonical_ip("_hidden") is None
    assert canonical_ip("") is None
