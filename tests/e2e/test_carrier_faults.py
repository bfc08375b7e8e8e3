"""Carrier faults against the node-smpp SMSC: garbage on the wire, a peer that never
answers enquire_link, a peer that hangs mid-window, and throttling that lasts.

In each case the link is reset and rebuilt with backoff, every message ends
delivered (none lost, none left in ``submitting``), and a message goes to the SMSC
twice only when its first submit got no answer (at least once, bounded by the
window).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from roxgate.store.schema import messages
from tests.conftest import Env, Server, request_body, seed_accounts
from tests.e2e.test_node_peer_faults import message_ids, recipients
from tests.e2e.test_sending import wait_settled
from tests.peers.nodepeer import NodeSmsc, node_available

pytestmark = pytest.mark.skipif(not node_available(), reason="node is not installed")

WINDOW = 10


def start(path: Path, smsc: NodeSmsc, options: str = "", **env: str) -> Server:
    server = Server(
        path,
        env_extra={
            "ROXGATE_CARRIER": f"smpp://roxgate:secret@127.0.0.1:{smsc.port}"
            f"?window={WINDOW}&source=%2B61400000000&reconnect_min=0.2&reconnect_max=1" + options,
            **env,
        },
    )
    server.start()
    return server


def send_and_settle(
    server: Server, engine: Any, prefix: str, count: int, timeout: float
) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        env = Env(server, engine, client)
        data = env.post(request_body(recipients(prefix, count)))
        states = wait_settled(env, message_ids(data, count), timeout=timeout)
    return data, states


def binds(smsc: NodeSmsc) -> int:
    return sum(1 for kind, e in smsc.events if kind == "BIND" and e["status"] == 0)


def attempts(engine: Any, request_id: str) -> list[int]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(messages.c.attempts).where(messages.c.request_id == request_id)
            ).scalars()
        )


def check_at_least_once(smsc: NodeSmsc, count: int, prefix: str) -> Counter[str]:
    """Every number reached the SMSC; a second submit only after an unanswered first."""
    submits = list(smsc.submits)
    per_number = Counter(s["destination_addr"] for s in submits)
    assert len(per_number) == count
    assert all(n.startswith(prefix.removeprefix("+")) for n in per_number)
    unanswered = Counter(s["destination_addr"] for s in submits if s["status"] is None)
    for number, n in per_number.items():
        assert n <= 1 + unanswered[number], (number, n, unanswered[number])
    return per_number


def test_garbage_from_the_smsc_resets_the_link_and_loses_nothing(engine_factory: Any) -> None:
    path, engine = engine_factory("garbage")
    seed_accounts(engine)
    count = 60
    with NodeSmsc("garbage", drop_after=15, drops=2, receipt_delay_ms=50) as smsc:
        server = start(path, smsc)
        try:
            _data, states = send_and_settle(server, engine, "+6140770", count, timeout=60)
        finally:
            server.stop()
        garbage = [e for kind, e in smsc.events if kind == "GARBAGE"]
        per_number = check_at_least_once(smsc, count, "+6140770")
        bound = binds(smsc)

    assert list(states.values()) == [("delivered", "0000")] * count, Counter(states.values())
    assert len(garbage) == 2
    assert bound == 3  # the first link and one per garbage
    duplicates = sum(n - 1 for n in per_number.values())
    assert duplicates <= 2 * WINDOW, duplicates


def test_a_peer_that_never_answers_enquire_link_is_dropped_and_rebound(
    engine_factory: Any,
) -> None:
    path, engine = engine_factory("mute")
    seed_accounts(engine)
    with NodeSmsc("mute", receipt_delay_ms=50) as smsc:
        server = start(path, smsc, "&enquire_link=0.5&response_timeout=1.5")
        try:
            # Idle: the probe goes unanswered, the link is reset and bound again.
            deadline = time.monotonic() + 20
            while binds(smsc) < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert binds(smsc) >= 3, smsc.events[-10:]
            ignored = sum(1 for kind, _ in smsc.events if kind == "ENQUIRE_IGNORED")
            assert ignored >= 2
            # Messages still go through, between resets.
            _data, states = send_and_settle(server, engine, "+6140771", 30, timeout=60)
            health = httpx.get(server.url + "/healthz", timeout=5)
        finally:
            server.stop()
        check_at_least_once(smsc, 30, "+6140771")
    assert list(states.values()) == [("delivered", "0000")] * 30, Counter(states.values())
    assert health.status_code == 200


def test_a_peer_that_hangs_mid_window_times_out_and_the_rest_goes_on_a_new_link(
    engine_factory: Any,
) -> None:
    path, engine = engine_factory("hang")
    seed_accounts(engine)
    count = 40
    with NodeSmsc("hang", drop_after=12, drops=1, receipt_delay_ms=50) as smsc:
        server = start(path, smsc, "&enquire_link=1&response_timeout=2")
        try:
            _data, states = send_and_settle(server, engine, "+6140772", count, timeout=90)
        finally:
            server.stop()
        hangs = [e for kind, e in smsc.events if kind == "HANG"]
        per_number = check_at_least_once(smsc, count, "+6140772")
        unanswered = sum(1 for s in smsc.submits if s["status"] is None)
        bound = binds(smsc)

    assert list(states.values()) == [("delivered", "0000")] * count, Counter(states.values())
    assert len(hangs) == 1 and bound >= 2
    # Only what the hung link swallowed (at most a window) went twice.
    assert 1 <= unanswered <= WINDOW
    assert sum(n - 1 for n in per_number.values()) <= unanswered


def test_throttled_for_a_long_time_then_everything_is_delivered_without_2065(
    engine_factory: Any,
) -> None:
    # "Minutes" in production; 12 s here keeps the suite short. The link backs off
    # (up to 10 s between tries), the message's attempt is given back each time.
    path, engine = engine_factory("throttled-long")
    seed_accounts(engine)
    count = 20
    with NodeSmsc("throttle", throttle_ms=12_000, receipt_delay_ms=50) as smsc:
        server = start(path, smsc)
        try:
            data, states = send_and_settle(server, engine, "+6140773", count, timeout=90)
        finally:
            server.stop()
        throttled = sum(1 for s in smsc.submits if s["status"] == 0x58)
        accepted = Counter(s["destination_addr"] for s in smsc.submits if s["status"] == 0)

    assert list(states.values()) == [("delivered", "0000")] * count, Counter(states.values())
    assert throttled >= count  # every message was refused at least once
    assert sorted(accepted.values()) == [1] * count  # each accepted exactly once
    # Being throttled is not the message's fault: no attempt counted towards 2065.
    assert max(attempts(engine, data["Messages"]["RequestId"])) <= 2
