"""The gateway against the node-smpp SMSC when answers are slow, and when the gateway
is SIGKILLed with submits in flight (at-least-once: nothing lost, few duplicates)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from roxgate.store.schema import message_parts, messages
from tests.conftest import Env, Server, request_body, seed_accounts
from tests.e2e.test_sending import wait_settled
from tests.peers.nodepeer import NodeSmsc, node_available

pytestmark = pytest.mark.skipif(not node_available(), reason="node is not installed")


def start_gateway(path: Path, smsc_port: int, window: int, **env: str) -> Server:
    server = Server(
        path,
        env_extra={
            "ROXGATE_CARRIER": f"smpp://roxgate:secret@127.0.0.1:{smsc_port}"
            f"?window={window}&response_timeout=10&source=%2B61400000000"
            "&reconnect_min=0.2&reconnect_max=1",
            **env,
        },
    )
    server.start()
    return server


def recipients(prefix: str, count: int) -> list[dict[str, Any]]:
    return [{"DestTn": f"{prefix}{i:04d}", "SMSText": f"m{i}"} for i in range(count)]


def message_ids(data: dict[str, Any], count: int) -> list[str]:
    return [data["Messages"][str(i)]["SMSId"] for i in range(1, count + 1)]


def statuses(engine: Engine, request_id: str) -> dict[str, str]:
    """dest_tn (as the SMSC sees it: no ``+``) → messages.status."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(messages.c.dest_tn, messages.c.status).where(messages.c.request_id == request_id)
        ).all()
    return {dest.removeprefix("+"): status for dest, status in rows}


def carrier_ids(engine: Engine, request_id: str) -> dict[str, str]:
    """dest_tn (no ``+``) → the carrier message id recorded for its (single) part."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(messages.c.dest_tn, message_parts.c.carrier_id)
            .select_from(messages.join(message_parts, message_parts.c.message_id == messages.c.id))
            .where(messages.c.request_id == request_id)
        ).all()
    return {dest.removeprefix("+"): carrier_id for dest, carrier_id in rows}


def submitted_spread(engine: Engine, request_id: str) -> float:
    """Seconds between the first and the last message recorded as submitted."""
    with engine.connect() as conn:
        first, last = conn.execute(
            select(func.min(messages.c.submitted_at), func.max(messages.c.submitted_at)).where(
                messages.c.request_id == request_id
            )
        ).one()
    return (last - first) / 1000


SLOW_WINDOW = 5
SLOW_MS = 300
SLOW_COUNT = 60
# Sending takes 60 / 5 x 0.3 s = 3.6 s, longer than this lease: the claimed
# messages waiting for a window slot keep their lease only by the heartbeat
# (without it they were claimed and sent a second time).
SLOW_LEASE_SECONDS = 2


def test_slow_answers_every_message_once_within_the_window(engine_factory: Any) -> None:
    # Answers come 0.3 s late (well inside response_timeout=10): nothing may time
    # out or lose its lease and be sent again, and no more than `window` submits
    # may be unanswered.
    path, engine = engine_factory("node-slow")
    seed_accounts(engine)
    with NodeSmsc("slow", slow_ms=SLOW_MS, receipt_delay_ms=50) as smsc:
        lease = {"ROXGATE_LEASE_SECONDS": str(SLOW_LEASE_SECONDS)}
        server = start_gateway(path, smsc.port, SLOW_WINDOW, **lease)
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                env = Env(server, engine, client)
                data = env.post(request_body(recipients("+6140760", SLOW_COUNT)))
                states = wait_settled(env, message_ids(data, SLOW_COUNT), timeout=30)
        finally:
            server.stop()
        submits = list(smsc.submits)
    request_id = data["Messages"]["RequestId"]

    assert list(states.values()) == [("delivered", "0000")] * SLOW_COUNT, states
    sent = [r["DestTn"].removeprefix("+") for r in recipients("+6140760", SLOW_COUNT)]
    assert Counter(s["destination_addr"] for s in submits) == Counter(sent)  # once each
    assert all(s["status"] == 0 for s in submits)
    # The window was filled and never exceeded, as the SMSC counts it.
    assert max(s["outstanding"] for s in submits) == SLOW_WINDOW
    # Each message recorded the id the SMSC gave to the submit of its own number
    # (pipelined answers were matched by sequence number, not by order).
    assert carrier_ids(engine, request_id) == {
        s["destination_addr"]: s["message_id"] for s in submits
    }
    # 30 messages through a window of 5 at 0.3 s per answer: at least 6 rounds.
    rounds = -(-SLOW_COUNT // SLOW_WINDOW)
    assert submitted_spread(engine, request_id) >= 0.9 * (rounds - 1) * SLOW_MS / 1000


KILL_WINDOW = 20
KILL_SLOW_MS = 300
KILL_COUNT = 200
# Messages claimed by the killed gateway (all 200: one claim batch) come back when
# their lease ends (ROXGATE_LEASE_SECONDS; 30 s by default, renewed by a live worker).
KILL_LEASE_SECONDS = 3


def test_sigkill_with_submits_in_flight_loses_nothing(engine_factory: Any) -> None:
    path, engine = engine_factory("node-sigkill")
    seed_accounts(engine)
    lease = {"ROXGATE_LEASE_SECONDS": str(KILL_LEASE_SECONDS)}
    slow = KILL_SLOW_MS / 1000
    with NodeSmsc("slow", slow_ms=KILL_SLOW_MS, receipt_delay_ms=50) as smsc:
        server = start_gateway(path, smsc.port, KILL_WINDOW, **lease)
        try:
            body = request_body(recipients("+6140761", KILL_COUNT))
            data = httpx.post(server.url + "/smsapi/send", json=body, timeout=30).json()
            assert data["Result"] == "0000", data
            request_id = data["Messages"]["RequestId"]
            # The second window's worth has arrived; its answers are due in 0.3 s, the
            # first window's were answered and recorded ~0.3 s ago. Kill half-way in
            # between: the second window is outstanding, nothing else in transit. (A
            # kill just after a window's answers arrived, before they are committed,
            # could duplicate those too: up to about twice the window.)
            smsc.wait_submits(2 * KILL_WINDOW, timeout=15)
            time.sleep(slow / 2)
            server.kill()
            killed_at = time.monotonic()
            (closed,) = smsc.wait_event("CLOSE", timeout=5)  # the SMSC read all it got
            received_before = Counter(s["destination_addr"] for s in smsc.submits)
            engine.dispose()
            before = statuses(engine, request_id)

            server.start()  # the same database file, the same SMSC
            restarted_at = time.monotonic()
            with httpx.Client(base_url=server.url, timeout=30) as client:
                env = Env(server, engine, client)
                states = wait_settled(env, message_ids(data, KILL_COUNT), timeout=40)
        finally:
            server.stop()
        submits = list(smsc.submits)
        binds = [e for kind, e in smsc.events if kind == "BIND" and e["status"] == 0]

    # The kill really hit mid-batch, with submits on the wire.
    assert 0 < len(received_before) < KILL_COUNT, len(received_before)
    assert max(received_before.values()) == 1
    in_flight = {d for d in received_before if before[d] == "submitting"}
    assert closed["outstanding"] >= 1 and in_flight, (closed, before)
    assert len(binds) == 2

    # Nothing lost: every number reached the SMSC and every message ended delivered.
    assert list(states.values()) == [("delivered", "0000")] * KILL_COUNT, Counter(states.values())
    counts = Counter(s["destination_addr"] for s in submits)
    assert set(counts) == set(before)
    # At least once, and only where the outcome was unknown: exactly the messages the
    # SMSC had received but the gateway had not recorded as submitted went again.
    duplicates = {d for d, n in counts.items() if n > 1}
    assert max(counts.values()) == 2
    assert duplicates == in_flight
    assert len(duplicates) <= KILL_WINDOW
    assert all(s["outstanding"] <= KILL_WINDOW for s in submits)
    # Each message's recorded carrier id is that of its last (accepted) submit.
    last_id = {s["destination_addr"]: s["message_id"] for s in submits}
    assert carrier_ids(engine, request_id) == last_id

    resent_after = [s for s in submits if s["connection"] > 1]
    print(
        f"\nSIGKILL with {KILL_COUNT} queued, window {KILL_WINDOW}: "
        f"{sum(received_before.values())} received before the kill, "
        f"{closed['outstanding']} unanswered at the kill, {len(duplicates)} duplicate(s); "
        f"{len(resent_after)} submits after the restart, which took "
        f"{restarted_at - killed_at:.1f} s; lease {KILL_LEASE_SECONDS} s"
    )
