from __future__ import annotations

import ipaddress

import pytest

from roxgate.netpolicy import address_allowed, host_allowed_literally, parse_nets


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "api.localhost",
        "10.0.0.1",
        "192.168.1.1",
        "172.16.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "[::1]",
        "::1",
        "[::ffff:127.0.0.1]",
        "[fe80::1]",
        "224.0.0.1",
        "2130706433",
        "0x7f.1",
        "127.1",
        "[fc00::1]",
        "100.64.0.1",
    ],
)
def test_internal_literals_refused(host: str) -> None:
    assert not host_allowed_literally(host, ())


@pytest.mark.parametrize(
    "host", ["example.com", "93.184.216.34", "[2606:2800:220:1::1]", "8.8.8.8"]
)
def test_public_hosts_allowed(host: str) -> None:
    assert host_allowed_literally(host, ())


def test_allow_nets_open_a_hole() -> None:
    nets = parse_nets("127.0.0.0/8, 10.1.0.0/16")
    assert host_allowed_literally("127.0.0.1", nets)
    assert host_allowed_literally("localhost", nets)
    assert host_allowed_literally("10.1.2.3", nets)
    assert not host_allowed_literally("10.2.0.1", nets)
    assert address_allowed(ipaddress.ip_address("::ffff:127.0.0.1"), nets)
