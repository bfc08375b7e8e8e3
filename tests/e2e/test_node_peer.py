"""The gateway against an independent SMSC (node-smpp): what arrives on the wire, and faults."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from roxgate.sms.text import decode_gsm7
from tests.conftest import Env, Server, request_body, seed_accounts
from tests.e2e.test_sending import wait_settled
from tests.peers.nodepeer import NodeSmsc, node_available

pytestmark = pytest.mark.skipif(not node_available(), reason="node is not installed")


def gateway(engine_factory: Any, name: str, port: int) -> tuple[Server, Env]:
    path, engine = engine_factory(name)
    seed_accounts(engine)
    server = Server(
        path,
        env_extra={
            "ROXGATE_CARRIER": f"smpp://roxgate:secret@127.0.0.1:{port}"
            "?window=20&source=%2B61400000000&reconnect_min=0.2&reconnect_max=1",
        },
    )
    server.start()
    return server, Env(server, engine, httpx.Client(base_url=server.url, timeout=30))


@pytest.fixture
def peer_and_gateway(request: pytest.FixtureRequest, engine_factory: Any) -> Iterator[Any]:
    mode, options = request.param
    with NodeSmsc(mode, **options) as smsc:
        server, env = gateway(engine_factory, f"node-{mode}", smsc.port)
        try:
            yield smsc, env
        finally:
            server.stop()


def _reassemble(submits: list[dict[str, Any]]) -> str:
    """Concatenate UDH-split parts in sequence order and decode them."""
    parts = []
    for s in submits:
        data = bytes.fromhex(s["short_message"])
        if s["esm_class"] & 0x40:
            udh_len = data[0]
            seq = data[udh_len]  # last IE byte of IEI 0: this part's number
            data = data[1 + udh_len :]
        else:
            seq = 1
        parts.append((seq, data, s["data_coding"]))
    parts.sort()
    raw = b"".join(d for _, d, _ in parts)
    return raw.decode("utf-16-be") if parts[0][2] == 8 else decode_gsm7(raw)


@pytest.mark.parametrize("peer_and_gateway", [("normal", {})], indirect=True)
def test_wire_contents_and_reassembly(peer_and_gateway: Any) -> None:
    smsc, env = peer_and_gateway
    gsm = "Hello {team} [x] ~ € ^ | \\ " * 12  # extension characters across part ends
    ucs2 = "Grüße 😀 " * 20
    data = env.post(
        request_body(
            [{"DestTn": "+61407555001", "SMSText": gsm}, {"DestTn": "0407555002", "SMSText": ucs2}]
        )
    )
    ids = [data["Messages"][k]["SMSId"] for k in ("1", "2")]
    assert all(s[0] == "delivered" for s in wait_settled(env, ids).values())
    submits = smsc.submits
    by_dest: dict[str, list[dict[str, Any]]] = {}
    for s in submits:
        by_dest.setdefault(s["destination_addr"], []).append(s)
    assert set(by_dest) == {"61407555001", "61407555002"}
    for s in submits:
        assert (s["dest_addr_ton"], s["dest_addr_npi"]) == (1, 1)
        assert (s["source_addr"], s["source_addr_ton"], s["source_addr_npi"]) == (
            "61400000000", 1, 1,
        )  # fmt: skip
        assert s["registered_delivery"] & 1
    assert {s["data_coding"] for s in by_dest["61407555001"]} == {0}
    assert {s["data_coding"] for s in by_dest["61407555002"]} == {8}
    assert _reassemble(by_dest["61407555001"]) == gsm
    assert _reassemble(by_dest["61407555002"]) == ucs2


@pytest.mark.parametrize("peer_and_gateway", [("permanent", {})], indirect=True)
def test_permanent_error_fails_with_2062(peer_and_gateway: Any) -> None:
    _, env = peer_and_gateway
    data = env.post(request_body())
    sms_id = data["Messages"]["1"]["SMSId"]
    assert wait_settled(env, [sms_id])[sms_id] == ("failed", "2062")


@pytest.mark.parametrize("peer_and_gateway", [("throttle", {"throttle": 2})], indirect=True)
def test_throttled_twice_then_delivered(peer_and_gateway: Any) -> None:
    smsc, env = peer_and_gateway
    data = env.post(request_body())
    sms_id = data["Messages"]["1"]["SMSId"]
    assert wait_settled(env, [sms_id], timeout=30)[sms_id] == ("delivered", "0000")
    assert len(smsc.submits) == 3


@pytest.mark.parametrize("peer_and_gateway", [("drop", {"drop_after": 5})], indirect=True)
def test_peer_drops_the_connection_mid_batch_nothing_lost(peer_and_gateway: Any) -> None:
    smsc, env = peer_and_gateway
    data = env.post(
        request_body([{"DestTn": f"+614075550{i:02d}", "SMSText": f"m{i}"} for i in range(30)])
    )
    ids = [data["Messages"][str(i)]["SMSId"] for i in range(1, 31)]
    states = wait_settled(env, ids, timeout=40)
    assert all(s == ("delivered", "0000") for s in states.values()), states
    delivered_to = {s["destination_addr"] for s in smsc.submits if s["status"] == 0}
    assert len(delivered_to) == 30
    assert smsc.wait_event("DROP", timeout=1)  # the fault really happened
