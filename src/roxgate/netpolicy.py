"""Which network addresses callbacks may reach (SSRF guard, SPEC.md §3).

Loopback, private, link-local (169.254.169.254 included), multicast,
unspecified and reserved addresses, and their IPv4-mapped IPv6 forms, are
refused unless the operator lists them in ``ROXGATE_CALLBACK_ALLOW_NETS``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=64)
def parse_nets(spec: str) -> tuple[IPNetwork, ...]:
    return tuple(
        ipaddress.ip_network(n.strip(), strict=False) for n in spec.split(",") if n.strip()
    )


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def is_internal(address: IPAddress) -> bool:
    address = _unmapped(address)
    # ``not is_global`` also covers the special-purpose blocks the named
    # checks miss, such as carrier-grade NAT (100.64.0.0/10) and documentation ranges.
    return (
        not address.is_global
        or address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )


def address_allowed(address: IPAddress, allow_nets: Iterable[IPNetwork]) -> bool:
    if not is_internal(address):
        return True
    plain = _unmapped(address)
    return any(address in net or plain in net for net in allow_nets)


def literal_address(host: str) -> IPAddress | None:
    """The address a host name denotes literally, including the legacy IPv4 forms.

    ``getaddrinfo`` reads ``2130706433``, ``0x7f.1`` and ``127.1`` as
    127.0.0.1, so they must be treated as literals too.
    """
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host[:1].isdigit() and host.replace(".", "").isalnum():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def host_allowed_literally(host: str, allow_nets: Iterable[IPNetwork]) -> bool:
    """False when ``host`` is, by its text alone, an address callbacks may not reach."""
    lowered = host.lower().rstrip(".")
    if lowered == "localhost" or lowered.endswith(".localhost"):
        # RFC 6761: these names always resolve to loopback.
        return address_allowed(ipaddress.ip_address("127.0.0.1"), allow_nets)
    address = literal_address(host)
    return address is None or address_allowed(address, allow_nets)
