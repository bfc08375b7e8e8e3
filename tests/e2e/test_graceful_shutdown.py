"""SIGTERM with a full SMPP window: intake stops, the window drains, every answer is
recorded, the process exits in bounded time, and a restart sends nothing twice."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.conftest import Env, request_body, seed_accounts
from tests.e2e.test_carrier_faults import start
from tests.e2e.test_node_peer_faults import carrier_ids, message_ids, recipients, statuses
from tests.e2e.test_sending import wait_settled
from tests.peers.nodepeer import NodeSmsc, node_available

pytestmark = pytest.mark.skipif(not node_available(), reason="node is not installed")

SLOW_MS = 1500
COUNT = 100
# Uvicorn's own grace (10 s) plus the dispatcher's (10 s) is the worst case; with
# answers due in 1.5 s it must be far quicker.
EXIT_WITHIN = 12.0


def test_sigterm_drains_the_window_records_every_answer_and_sends_nothing_twice(
    engine_factory: Any,
) -> None:
    path, engine = engine_factory("sigterm")
    seed_accounts(engine)
    with NodeSmsc("slow", slow_ms=SLOW_MS, receipt_delay_ms=50) as smsc:
        server = start(path, smsc)
        try:
            body = request_body(recipients("+6140774", COUNT))
            data = httpx.post(server.url + "/smsapi/send", json=body, timeout=30).json()
            assert data["Result"] == "0000", data
            request_id = data["Messages"]["RequestId"]
            smsc.wait_submits(10, timeout=15)  # a full window is on the wire, unanswered
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            # Intake closes at once: a moment after the signal, a new request is refused.
            time.sleep(0.3)
            try:
                late = httpx.post(server.url + "/smsapi/send", json=body, timeout=2)
            except httpx.TransportError:
                refused = True
            else:
                refused = late.json()["Result"] != "0000"
            try:
                server.proc.wait(EXIT_WITHIN + 5)
            except subprocess.TimeoutExpired:
                pytest.fail(f"no exit within {EXIT_WITHIN + 5} s of SIGTERM")
            took = time.monotonic() - signalled
            # uvicorn re-raises the signal once shut down: death by SIGTERM, which
            # init systems count as a clean stop.
            assert server.proc.returncode in (0, -signal.SIGTERM), server.logs()[-2000:]
            received = Counter(s["destination_addr"] for s in smsc.submits)
            engine.dispose()
            after_stop = statuses(engine, request_id)
            ids_after_stop = carrier_ids(engine, request_id)

            server.start()  # the same database, the same SMSC
            with httpx.Client(base_url=server.url, timeout=30) as client:
                states = wait_settled(Env(server, engine, client), message_ids(data, COUNT), 60)
        finally:
            server.stop()
        submits = list(smsc.submits)

    assert refused
    assert took < EXIT_WITHIN, took
    # The window's answers were waited for and recorded: nothing was left in flight.
    assert "submitting" not in after_stop.values(), Counter(after_stop.values())
    answered = {d for d in received if after_stop[d] in ("submitted", "delivered")}
    assert answered == set(received), set(received) - answered
    assert {d: ids_after_stop[d] for d in answered} == {
        s["destination_addr"]: s["message_id"] for s in submits if s["destination_addr"] in answered
    }
    # Those not yet sent went back to the queue and were sent after the restart, once.
    assert list(states.values()) == [("delivered", "0000")] * COUNT, Counter(states.values())
    assert Counter(s["destination_addr"] for s in submits) == Counter(
        {n.removeprefix("+"): 1 for n in (r["DestTn"] for r in recipients("+6140774", COUNT))}
    )
    print(f"\nSIGTERM with {len(received)} submitted and a window unanswered: exit in {took:.1f} s")
