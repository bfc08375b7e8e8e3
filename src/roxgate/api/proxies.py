"""The client's address (and scheme) through trusted reverse proxies.

Behind a reverse proxy every connection comes from the proxy; the client's
address is in the ``X-Forwarded-For`` header the proxy appends to. Anyone
can send that header, so it is believed only when the TCP peer is one of the
operator's proxies (``ROXGATE_TRUSTED_PROXIES``, CIDRs), and then only as far
as trusted hops go: the client is the right-most entry that is not itself a
trusted proxy (entries left of it were written by the client and prove
nothing). ``X-Forwarded-Proto`` from a trusted proxy sets the scheme.

This middleware rewrites the ASGI scope's ``client`` (and ``scheme``), so
everything downstream (account IP allow-lists, failed-login counting, rate
limits, the stored ``client_ip``, the console) sees the same address.
uvicorn's own proxy-header handling is switched off in ``serving.py``: it
trusts 127.0.0.1 by default and treats any text in the header as a host.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from roxgate.netpolicy import IPNetwork

FORWARDED_SCHEMES = frozenset({"http", "https"})


def canonical_ip(text: str) -> str | None:
    """``text`` as a canonical IP address (IPv4-mapped IPv6 as IPv4), or None.

    Some proxies add the client's port: ``203.0.113.7:51234``, ``[2001:db8::7]:51234``.
    """
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


class TrustedProxies:
    """ASGI middleware: take the client from ``X-Forwarded-For`` of trusted proxies only."""

    def __init__(self, app: ASGIApp, nets: tuple[IPNetwork, ...]) -> None:
        self.app = app
        self.nets = nets
        # Bounded: only peers (a handful of proxies) and header entries are looked up.
        self.trusted = lru_cache(maxsize=4096)(self._trusted)

    def _trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in net for net in self.nets)

    def client_of(self, peer: str, forwarded_for: list[str]) -> str:
        """The client's address for a request from ``peer`` with these header values."""
        if not forwarded_for or not self.trusted(peer):
            return peer
        hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
        client: str | None = None
        for hop in reversed(hops):
            client = canonical_ip(hop)
            if client is None:
                # Not an address: no proxy of ours wrote that, so nothing left of it
                # can be believed either; the header is malformed, keep the peer.
                return peer
            if not self.trusted(client):
                return client
        # Every hop is a trusted proxy: the left-most one is where it came from.
        return client or peer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] != "http" or not client:
            await self.app(scope, receive, send)
            return
        peer = client[0]
        if not self.trusted(peer):
            await self.app(scope, receive, send)
            return
        forwarded_for: list[str] = []
        proto: str | None = None
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                forwarded_for.append(value.decode("latin-1"))
            elif name == b"x-forwarded-proto":
                proto = value.decode("latin-1")
        changes: dict[str, Any] = {}
        host = self.client_of(peer, forwarded_for)
        if host != peer:
            changes["client"] = (host, 0)
        if proto is not None:
            # A chain of proxies may list one scheme each: the nearest one's is last.
            scheme = proto.rsplit(",", 1)[-1].strip().lower()
            if scheme in FORWARDED_SCHEMES:
                changes["scheme"] = scheme
        if changes:
            scope = {**scope, **changes}
        await self.app(scope, receive, send)
