"""The dispatcher: due messages to the carrier, on time, each exactly once if it can.

It claims due messages in batches (with a lease), hands each to the carrier,
and records what the carrier answered. It wakes at once when the API commits
an immediate message (``wake()``), at the due time of the earliest scheduled
one, and at least every ``poll`` seconds as a safety net (a message written by
another process, a lease that ran out).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sqlalchemy import Engine

from roxgate.dispatch import queue
from roxgate.dispatch.batching import Batcher
from roxgate.dispatch.queue import Claimed, PartAccepted
from roxgate.logs import SMS_ID
from roxgate.rox.codes import Result
from roxgate.store.ids import now_ms

log = logging.getLogger(__name__)

OutcomeKind = Literal["accepted", "permanent", "throttled", "transient", "lost"]
RunInThread = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What the carrier made of one message (all its parts).

    ``lost``: the link went down with a part outstanding; the carrier may or
    may not have it (at-least-once: it is sent again).
    """

    kind: OutcomeKind
    parts: list[PartAccepted] = field(default_factory=list)
    detail: str = ""


class Carrier(Protocol):
    async def send(self, message: Claimed) -> SendOutcome: ...


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"


@dataclass(slots=True)
class DispatchPolicy:
    batch: int = 1000  # messages claimed at a time
    concurrency: int = 1000  # messages in flight to the carrier at once
    lease_ms: int = 30_000  # renewed every third of it while the worker lives
    max_attempts: int = 5  # transient errors, then 2065
    poll_seconds: float = 1.0
    throttle_backoff_ms: int = 2_000
    transient_backoff_ms: int = 10_000
    # Submitted messages without a final receipt this long become 2064
    # (validity period + grace, SPEC.md §3).
    expire_after_ms: int = (48 + 24) * 3600 * 1000

    @property
    def sweep_ms(self) -> int:
        """How often to look for overdue messages: a tenth of the time, 1 s to 60 s."""
        return min(60_000, max(1_000, self.expire_after_ms // 10))


class Dispatcher:
    def __init__(
        self,
        engine: Engine,
        carrier: Carrier,
        run: RunInThread,
        policy: DispatchPolicy | None = None,
        owner: str | None = None,
        record: RunInThread | None = None,
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        # Told when this dispatcher made messages final (2062, 2065, 2064): their
        # receipts wait in the outboxes, and the callback worker should not wait
        # for its next poll to find them.
        self._on_settled = on_settled
        self._carrier = carrier
        self._run = run
        # Outcomes are recorded through ``record(fn, *args)``, which calls
        # ``fn(engine_or_connection, *args)``: the group-commit writer batches them.
        self._record_op = record or (lambda fn, *args: run(fn, engine, *args))
        self.policy = policy or DispatchPolicy()
        self.owner = owner or worker_id()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(self.policy.concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        self._unsent: deque[Claimed] = deque()  # claimed, waiting for a slot
        self._held: set[str] = set()  # claimed and not yet recorded: leases to renew
        # Until when (monotonic s) every held lease is known to last: a worker
        # that stalled past it (GC pause, SIGSTOP, a slow disk) renews before
        # it submits anything more, and drops what another worker took over.
        self._leases_until = 0.0
        self._stopping = False
        # Accepted messages are recorded together (see batching.py).
        self._submitted: Batcher[tuple[str, list[PartAccepted]], bool] = Batcher(
            self._record_submitted
        )
        self.sent = 0  # messages accepted by the carrier (metrics, tests)
        # Outcomes by kind since start (the activity log line, metrics).
        self.counts: Counter[str] = Counter()

    def wake(self) -> None:
        """New immediate messages were committed: look now."""
        self._wake.set()

    async def run(self) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(), name="lease-heartbeat")
        try:
            await self._loop()
        finally:
            heartbeat.cancel()

    async def _heartbeat(self) -> None:
        """Renew the leases of everything claimed, every third of a lease."""
        while True:
            await asyncio.sleep(self.policy.lease_ms / 3000)
            try:
                await self._renew()
            except Exception:
                log.exception("renewing leases failed; will try again")

    def _settled(self) -> None:
        if self._on_settled is not None:
            try:
                self._on_settled()
            except Exception:  # a wake-up is a courtesy: the outbox poll is the safety net
                log.exception("on_settled hook failed")

    async def _renew(self) -> None:
        """Renew the leases held; forget (never send) messages whose lease was lost."""
        # Only what this worker still works on: a message whose outcome
        # could not be recorded is let go, and comes back when its lease ends.
        held = list(self._held)
        started = time.monotonic()
        if not held:
            self._leases_until = started + self.policy.lease_ms / 1000
            return
        renewed = await self._record_op(queue.extend_leases, self.owner, held, self.policy.lease_ms)
        self._leases_until = started + self.policy.lease_ms / 1000
        not_renewed = set(held) - renewed
        if not not_renewed:
            return
        self._held.difference_update(not_renewed)
        # A message in flight may simply have had its outcome recorded while the
        # renewal waited for the writer (it is no longer "submitting"): not lost.
        # One not yet sent cannot have changed by our doing: its lease ended and
        # it belongs to another worker now, which sends it instead.
        lost = [m for m in self._unsent if m.id in not_renewed]
        if lost:
            self._unsent = deque(m for m in self._unsent if m.id not in not_renewed)
            self.counts["lease lost"] += len(lost)
            log.warning(
                "%d claimed messages lost their lease before being sent (stalled past "
                "the lease?): left to other workers",
                len(lost),
            )

    def _leases_safe(self) -> bool:
        # A margin of a tenth of the lease for the submit itself to get out.
        return time.monotonic() < self._leases_until - self.policy.lease_ms / 10_000

    async def _loop(self) -> None:
        p = self.policy
        next_sweep = 0
        while not self._stopping:
            if now_ms() >= next_sweep:
                next_sweep = now_ms() + p.sweep_ms
                try:
                    expired = await self._record_op(
                        queue.expire_overdue, now_ms() - p.expire_after_ms
                    )
                    if expired:
                        log.info("%d messages got no final receipt in time: 2064", expired)
                        self._settled()
                except Exception:
                    log.exception("expiring overdue messages failed; will try again")
            try:
                # Through the same single writer as everything else: on SQLite,
                # writers in separate transactions wait on each other's lock
                # with the busy handler's sleeps.
                await self._record_op(queue.release_expired)
                claim_started = time.monotonic()
                claimed = await self._record_op(queue.claim_due, self.owner, p.batch, p.lease_ms)
            except Exception:
                log.exception("claiming due messages failed; retrying")
                claimed = []
                await asyncio.sleep(p.poll_seconds)
            if claimed and not self._held:
                self._leases_until = claim_started + p.lease_ms / 1000
            self._held.update(m.id for m in claimed)
            self._unsent = deque(claimed)  # in due order
            while self._unsent and not self._stopping:
                await self._slots.acquire()
                if not self._leases_safe():
                    try:
                        await self._renew()
                    except Exception:
                        log.exception("renewing leases failed; not sending until it works")
                        self._slots.release()
                        await asyncio.sleep(p.poll_seconds)
                        continue
                if not self._unsent:  # stop() took them back, or their leases were lost
                    self._slots.release()
                    break
                message = self._unsent.popleft()
                task = asyncio.create_task(self._send(message))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            if len(claimed) < p.batch:
                await self._sleep_until_due()

    async def _sleep_until_due(self) -> None:
        timeout = self.policy.poll_seconds
        with contextlib.suppress(Exception):
            due = await self._run(queue.next_due, self._engine)
            if due is not None:
                timeout = min(timeout, max(0.0, (due - now_ms()) / 1000))
        if timeout <= 0:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; give claimed messages not yet sent back to the queue; let
        those in flight finish for up to ``grace`` seconds (their answers get
        recorded). Any still unanswered come back when their lease ends."""
        self._stopping = True
        self._wake.set()
        unsent, self._unsent = self._unsent, deque()
        self._held.difference_update(m.id for m in unsent)
        try:
            released = await self._record_op(
                queue.release_unsent, self.owner, [m.id for m in unsent]
            )
            if released:
                log.info("stopping: %d claimed messages returned to the queue unsent", released)
        except Exception:
            log.exception("returning unsent messages failed; their leases will end")
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=grace)

    async def _send(self, message: Claimed) -> None:
        SMS_ID.set(message.id)  # log context, for this message's task only
        try:
            try:
                outcome = await self._carrier.send(message)
            except Exception as exc:
                log.exception("carrier failed on message %s", message.id)
                outcome = SendOutcome("transient", detail=f"{type(exc).__name__}: {exc}")
            await self._record(message, outcome)
        except Exception:
            # Not recorded: no longer renewed, its lease ends and it is sent again.
            log.exception("recording the outcome of message %s failed", message.id)
        finally:
            self._held.discard(message.id)
            self._slots.release()

    async def _record_submitted(self, accepted: list[tuple[str, list[PartAccepted]]]) -> list[bool]:
        recorded = await self._record_op(queue.record_submitted, self.owner, accepted)
        return [message_id in recorded for message_id, _ in accepted]

    async def _record(self, message: Claimed, outcome: SendOutcome) -> None:
        p, owner, record = self.policy, self.owner, self._record_op
        self.counts[outcome.kind] += 1
        match outcome.kind:
            case "accepted":
                self.sent += 1
                await self._submitted.add((message.id, outcome.parts))
            case "permanent":
                if await record(
                    queue.record_failed,
                    owner,
                    message.id,
                    Result.REJECTED,
                    f"Rejected by the carrier: {outcome.detail}",
                ):
                    self._settled()
            case "throttled" | "lost":
                # Not the message's fault: try again soon, without using up attempts.
                await record(
                    queue.record_retry,
                    owner,
                    message.id,
                    p.throttle_backoff_ms,
                    f"{outcome.kind}: {outcome.detail}",
                    False,
                )
            case "transient":
                if message.attempts >= p.max_attempts:
                    if await record(
                        queue.record_failed,
                        owner,
                        message.id,
                        Result.SUBMIT_FAILED,
                        f"Could not be submitted after {message.attempts} attempts: "
                        f"{outcome.detail}",
                    ):
                        self._settled()
                else:
                    await record(
                        queue.record_retry,
                        owner,
                        message.id,
                        p.transient_backoff_ms * message.attempts,
                        outcome.detail,
                    )
