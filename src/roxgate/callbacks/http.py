"""The callback worker: the callbacks outbox, POSTed to customers (SPEC.md §3).

It claims due callbacks in batches (with a lease), POSTs each stored body,
signed, and records every attempt; a callback that fails for good becomes an
e-mail in the same transaction (``report/outbox.py``). All database writes go
through the ``record(fn, *args)`` coroutine it is given, which in the gateway
is the single group-commit writer.

**The success rule.** A 2xx is delivered when its body is empty, not JSON,
or JSON with no ``Result`` member, or ``"Result": "0000"`` (or the number 0,
as loosely typed receivers write it); only the first 64 KiB are read. A
timeout (connecting and reading included), a connection or DNS error, 408,
429, 5xx, or a 2xx whose JSON ``Result`` is anything else is tried again
after the next wait of ``ROXGATE_CALLBACK_RETRY`` (N waits: 1 + N attempts),
and fails for good when none is left. Any other 4xx fails for good at once,
and so does a 3xx: **redirects are never followed**, because a redirect could
send the signed body to a host nobody checked (customers fix a moved URL in
their requests). Failing for good turns the callback into an e-mail.

**The SSRF guard.** Every new connection resolves the host name again (no DNS
cache) through :class:`GuardedResolver`, which drops loopback, private,
link-local, multicast, unspecified, reserved and IPv4-mapped addresses unless
``ROXGATE_CALLBACK_ALLOW_NETS`` covers them; aiohttp connects only to the
addresses it returns, so the address connected to is the one checked. A
literal address in the URL (which aiohttp does not resolve) is checked the
same way before the POST. A kept-alive connection is reused without a new
resolution: its address was checked when it was opened. A host that resolves
only to refused addresses fails for good at once (``final``): that does not
change without the operator, and the customer hears of it by e-mail.

**One slow customer does not delay the others.** Each host (scheme, host,
port) has its own lane of at most ``per_host`` posts at a time; the rest wait
in the lane, not in aiohttp's pool, so the per-attempt timeout only runs while
a post is really under way. When a lane's backlog would take more than
``max_backlog_seconds`` to drain at its observed speed, the excess is given
back to the outbox (no attempt counted) and comes due again later, so the
claim budget keeps flowing to other hosts. Leases of everything held are
renewed every third of a lease, like the dispatcher's.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import ipaddress
import logging
import math
import socket
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from roxgate import __version__
from roxgate.dispatch.batching import Batcher
from roxgate.dispatch.dispatcher import worker_id
from roxgate.logs import ACCOUNT, SMS_ID
from roxgate.netpolicy import IPNetwork, address_allowed, literal_address
from roxgate.report.outbox import (
    CallbackJob,
    CallbackResult,
    claim_callbacks,
    extend_callback_leases,
    record_callback_attempts,
    release_callbacks,
)
from roxgate.rox.signing import signature_headers
from roxgate.store.ids import now_ms

log = logging.getLogger(__name__)

Record = Callable[..., Awaitable[Any]]
Verdict = Literal["ok", "again", "final"]

USER_AGENT = f"roxgate/{__version__}"
# Answers are only read to find a ``Result``; a receipt answer is a few bytes.
MAX_ANSWER_BYTES = 64 * 1024
# How much of an unexpected answer is kept in the attempt's error, for the operator.
ERROR_SNIPPET = 200


def parse_retry_schedule(text: str) -> list[float]:
    """The waits, in seconds, before each retry: ``"5,30,120"`` → ``[5.0, 30.0, 120.0]``.

    N waits mean 1 + N attempts; an empty text means a single attempt.
    """
    waits: list[float] = []
    if not text.strip():
        return waits
    for n, item in enumerate(text.split(","), start=1):
        try:
            wait = float(item.strip())
        except ValueError:
            wait = math.nan
        if not math.isfinite(wait) or wait < 0:
            raise ValueError(
                f"callback retry schedule {text!r}: item {n} ({item.strip()!r}) is not a "
                "number of seconds ≥ 0; expected comma-separated waits such as '5,30,120'"
            )
        waits.append(wait)
    return waits


class CallbackRefused(OSError):
    """The host is, or resolves only to, addresses callbacks may not reach."""

    def __init__(self, host: str, addresses: Sequence[str]) -> None:
        shown = ", ".join(addresses[:4]) + (", …" if len(addresses) > 4 else "")
        super().__init__(
            f"refused: {host} is an internal address"
            if addresses == [host]
            else f"refused: {host} resolves only to internal addresses ({shown or 'none'})"
        )
        self.host = host
        self.addresses = list(addresses)


def _allowed(address: str, allow_nets: Sequence[IPNetwork]) -> bool:
    try:
        return address_allowed(ipaddress.ip_address(address), allow_nets)
    except ValueError:  # not an address at all: never connect to it
        return False


class GuardedResolver(AbstractResolver):
    """A resolver that only ever returns addresses callbacks may reach.

    It wraps another resolver (by default aiohttp's threaded ``getaddrinfo``)
    and drops the refused addresses; when none is left it raises
    :class:`CallbackRefused`, which aiohttp passes on inside a
    ``ClientConnectorDNSError``.
    """

    def __init__(
        self, allow_nets: Iterable[IPNetwork] = (), inner: AbstractResolver | None = None
    ) -> None:
        self._allow_nets = tuple(allow_nets)
        self._inner = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found if _allowed(r["host"], self._allow_nets)]
        if not allowed:
            raise CallbackRefused(host, [r["host"] for r in found])
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def _result_code(answer: bytes) -> str | None:
    """The ``Result`` of a JSON object answer; None when there is none to judge by."""
    answer = answer.strip().removeprefix(b"\xef\xbb\xbf")
    if not answer.startswith(b"{"):
        return None
    try:
        doc = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or "Result" not in doc:
        return None
    code = doc["Result"]
    # Loosely typed receivers write the code as the number 0.
    if code == 0 and not isinstance(code, bool):
        return "0000"
    return code if isinstance(code, str) else orjson.dumps(code).decode()


def _snippet(answer: bytes) -> str:
    text = answer[:ERROR_SNIPPET].decode("utf-8", "replace")
    return "".join(c if c.isprintable() else " " for c in text).strip()


def assess(status: int, answer: bytes, location: str | None = None) -> tuple[Verdict, str | None]:
    """What an HTTP answer means (SPEC.md §3): ``ok``, ``again`` (worth retrying) or
    ``final``, with the error to record."""
    if 200 <= status < 300:
        code = _result_code(answer)
        if code is None or code == "0000":
            return "ok", None
        return "again", f"HTTP {status} with Result {code[:40]}"
    detail = f"HTTP {status}"
    if 300 <= status < 400:
        target = f" to {location[:200]}" if location else ""
        return "final", f"{detail}: redirect{target} not followed"
    if snippet := _snippet(answer):
        detail = f"{detail}: {snippet}"
    if status in (408, 429) or status >= 500:
        return "again", detail
    return "final", detail


async def _read_answer(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most ``limit`` bytes of the answer: we only look for a ``Result``."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await response.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


@dataclass(slots=True)
class _Lane:
    """The callbacks of one host (scheme, host, port): at most ``per_host`` in flight."""

    waiting: deque[tuple[CallbackJob, URL]] = field(default_factory=deque)
    # job id → monotonic start of its post (inf while it waits for a global slot)
    active: dict[str, float] = field(default_factory=dict)
    mean_s: float = 0.0  # moving mean of post durations; 0: none finished yet
    last_used: float = 0.0
    # The error when the host is a literal address callbacks may not reach
    # (aiohttp does not resolve literals, so the guard checks them here, once).
    refused: str | None = None

    def observe(self, seconds: float) -> None:
        self.mean_s = seconds if self.mean_s == 0 else 0.8 * self.mean_s + 0.2 * seconds

    def estimate(self, now: float) -> float:
        """Seconds a post takes here; a post under way counts for what it has taken."""
        oldest = min(self.active.values(), default=now)  # inf: waiting for a slot
        return max(self.mean_s, now - oldest)


class CallbackWorker:
    """Delivers the callbacks outbox over HTTP; see the module docstring for the rules."""

    def __init__(
        self,
        record: Record,
        *,
        retry_schedule: Sequence[float],
        timeout: float,
        allow_nets: Iterable[IPNetwork] = (),
        owner: str | None = None,
        lease_ms: int = 60_000,
        batch: int = 500,
        concurrency: int = 512,
        per_host: int = 16,
        max_held: int = 2_000,
        max_backlog_seconds: float = 10.0,
        poll_seconds: float = 1.0,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        resolver: AbstractResolver | None = None,
    ) -> None:
        """``record(fn, *args)`` runs ``fn(connection, *args)`` in the single writer.

        ``retry_schedule``: the waits (s) before each retry; ``timeout``: seconds
        per attempt, connecting and reading included; ``allow_nets``: internal
        networks the operator allows; ``max_held``: callbacks claimed and not
        yet recorded, at most; ``resolver``: the name resolver the SSRF guard
        wraps (aiohttp's threaded ``getaddrinfo`` by default).
        """
        self._record = record
        self.retry_schedule = [float(w) for w in retry_schedule]
        self.timeout = timeout
        self.allow_nets = tuple(allow_nets)
        self.owner = owner or worker_id()
        self._lease_ms = lease_ms
        self._batch = max(1, batch)
        self._concurrency = concurrency
        self._per_host = per_host
        self._max_held = max(max_held, self._batch)
        self._max_backlog_s = max_backlog_seconds
        self._poll_s = poll_seconds
        self._max_answer = max_answer_bytes
        self._inner_resolver = resolver
        self._headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(concurrency)
        self._lanes: dict[tuple[str, str, int], _Lane] = {}
        self._held: dict[str, CallbackJob] = {}  # claimed, not yet recorded
        self._inflight: set[asyncio.Task[None]] = set()
        # Heap of (next_at, when recorded) of the retries we recorded: the idle
        # loop sleeps until the earliest rather than a whole poll period.
        self._retry_at: list[tuple[int, int]] = []
        self._sleep_until = 0  # ms: when the idle loop wakes by itself
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._loop_done = asyncio.Event()
        self._finished = asyncio.Event()
        self._running = False
        self._stopping = False
        self._results: Batcher[CallbackResult, None] = Batcher(self._write_results)
        # Since start, for the activity log line and metrics: ok, retry, failed
        # (attempts by outcome), e-mailed (failed for good and turned into an
        # e-mail), deferred (given back unposted from a slow host's backlog).
        self.counts: Counter[str] = Counter()

    # --- public ----------------------------------------------------------------

    def wake(self) -> None:
        """New callbacks were committed: look now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until :meth:`stop`; then close the HTTP session."""
        self._running = True
        self._session = self._open_session()
        heartbeat = asyncio.create_task(self._heartbeat(), name="callback-leases")
        try:
            try:
                await self._loop()
            finally:
                self._loop_done.set()
            await self._finished.wait()
        finally:
            heartbeat.cancel()
            for task in list(self._inflight):
                task.cancel()
            await self._session.close()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; give back callbacks claimed but not posted; let posts in
        flight finish (and be recorded) for up to ``grace`` seconds, then abandon
        them: their leases end and they are posted again (at least once)."""
        deadline = time.monotonic() + grace
        self._stopping = True
        self._wake.set()
        self._room.set()
        if self._running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._loop_done.wait(), grace)
        unsent = [job for lane in self._lanes.values() for job, _ in lane.waiting]
        for lane in self._lanes.values():
            lane.waiting.clear()
        await self._give_back(unsent, now_ms(), "stopping")
        if self._inflight:
            left = max(0.0, deadline - time.monotonic())
            _, pending = await asyncio.wait(self._inflight, timeout=left)
            if pending:
                log.warning("stopping: %d callbacks abandoned in flight", len(pending))
                for task in pending:
                    task.cancel()
        self._finished.set()

    # --- the claim loop --------------------------------------------------------

    def _open_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._concurrency,
            limit_per_host=self._per_host,
            # Resolve at every new connection (SPEC: checked when resolved for each delivery).
            use_dns_cache=False,
            resolver=GuardedResolver(self.allow_nets, self._inner_resolver),
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            # One customer's cookies must never reach another's callbacks.
            cookie_jar=aiohttp.DummyCookieJar(),
            # No proxies from the environment: the guard checks the real destination.
            trust_env=False,
            # Ask for plain answers: we read at most a few bytes of them.
            skip_auto_headers=("Accept-Encoding",),
        )

    async def _loop(self) -> None:
        low_water = min(self._batch, self._max_held)
        while not self._stopping:
            await self._rebalance()
            room = self._max_held - len(self._held)
            if room < low_water:
                # Everything we may hold is held: wait for posts to finish.
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), 0.25)
                continue
            want = min(self._batch, room)
            self._wake.clear()  # a wake() from now on is not lost
            claimed_at = now_ms()
            try:
                jobs: list[CallbackJob] = await self._record(
                    claim_callbacks, self.owner, want, self._lease_ms
                )
            except Exception:
                log.exception("claiming callbacks failed; retrying")
                await asyncio.sleep(self._poll_s)
                continue
            if self._stopping:
                await self._give_back(jobs, now_ms(), "stopping")
                break
            for job in jobs:
                self._held[job.id] = job
                self._enqueue(job)
            if len(jobs) < want:
                await self._idle(claimed_at)

    async def _idle(self, claimed_at: int) -> None:
        """Sleep until woken, the earliest retry we scheduled, or the next poll."""
        # Due and recorded before the claim began: that claim saw them.
        while self._retry_at and max(self._retry_at[0]) < claimed_at:
            heapq.heappop(self._retry_at)
        timeout = self._poll_s
        if self._retry_at:
            timeout = min(timeout, max(0.0, (self._retry_at[0][0] - now_ms()) / 1000))
        if timeout <= 0:
            return
        self._sleep_until = now_ms() + int(timeout * 1000)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._sleep_until = 0

    def _enqueue(self, job: CallbackJob) -> None:
        try:
            url = URL(job.url)
            host = url.host
            if url.scheme not in ("http", "https") or not host or url.port is None:
                raise ValueError("not an absolute http(s) URL")
        except ValueError as exc:
            result = self._result(job, now_ms(), 0, "final", None, f"invalid URL: {exc}")
            self._spawn(self._finish(job, result))
            return
        key = (url.scheme, host, url.port)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
            literal = literal_address(host)
            if literal is not None and not address_allowed(literal, self.allow_nets):
                lane.refused = str(CallbackRefused(host, [host]))
        lane.waiting.append((job, url))
        self._pump(lane)

    def _pump(self, lane: _Lane) -> None:
        while len(lane.active) < self._per_host and lane.waiting and not self._stopping:
            job, url = lane.waiting.popleft()
            lane.active[job.id] = math.inf  # until its post starts
            self._spawn(self._deliver(lane, job, url))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _rebalance(self) -> None:
        """Give back the part of a slow host's backlog it cannot post soon."""
        now = time.monotonic()
        # A copy: the heartbeat may drop idle lanes while a give-back is awaited.
        for lane in list(self._lanes.values()):
            if len(lane.waiting) <= self._per_host:
                continue
            per_post = lane.estimate(now)
            if per_post <= 0:
                continue  # nothing known yet: optimism; a stuck post shows soon
            keep = max(self._per_host, int(self._per_host * self._max_backlog_s / per_post))
            if len(lane.waiting) <= keep:
                continue
            excess = [lane.waiting.pop()[0] for _ in range(len(lane.waiting) - keep)]
            # Due again when the backlog kept here should be gone.
            delay = len(lane.waiting) / self._per_host * per_post
            delay = min(max(delay, 1.0), self._lease_ms / 1000)
            self.counts["deferred"] += len(excess)
            await self._give_back(excess, now_ms() + int(delay * 1000), "deferred")

    async def _give_back(self, jobs: Sequence[CallbackJob], next_at: int, why: str) -> None:
        if not jobs:
            return
        for job in jobs:
            self._held.pop(job.id, None)
        self._note_room()
        try:
            await self._record(release_callbacks, self.owner, [j.id for j in jobs], next_at)
            self._note_retry(next_at)
        except Exception:
            log.exception(
                "%s: giving back %d callbacks failed; their leases will end", why, len(jobs)
            )

    async def _heartbeat(self) -> None:
        """Renew the leases of everything held, every third of a lease."""
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            held = list(self._held)
            try:
                if held:
                    await self._record(extend_callback_leases, self.owner, held, self._lease_ms)
            except Exception:
                log.exception("renewing callback leases failed; will try again")
            idle_since = time.monotonic() - 300
            for key in [
                k
                for k, lane in self._lanes.items()
                if not lane.waiting and not lane.active and lane.last_used < idle_since
            ]:
                del self._lanes[key]

    # --- one delivery ----------------------------------------------------------

    async def _deliver(self, lane: _Lane, job: CallbackJob, url: URL) -> None:
        # Log context, for this callback's task only.
        ACCOUNT.set(job.account_id)
        SMS_ID.set(job.message_id)
        try:
            async with self._slots:
                # The lane's clock starts when the post does, not while it
                # waits for a global slot behind other hosts.
                started = lane.active[job.id] = time.monotonic()
                result = await self._attempt(job, url, lane.refused)
            lane.observe(time.monotonic() - started)
        except BaseException:  # cancelled by stop(): abandoned, its lease brings it back
            self._held.pop(job.id, None)
            raise
        finally:
            lane.active.pop(job.id, None)
            lane.last_used = time.monotonic()
            self._pump(lane)
        await self._finish(job, result)

    async def _finish(self, job: CallbackJob, result: CallbackResult) -> None:
        try:
            self.counts[_COUNT_KEYS[result.outcome]] += 1
            if result.outcome == "final":
                log.warning(
                    "callback %s (%s, %s) failed for good after %d attempts: %s; e-mailing",
                    job.id, job.kind, job.account_id, job.attempts + 1, result.error,
                )  # fmt: skip
            await self._results.add(result)
            if result.next_at is not None:
                self._note_retry(result.next_at)
        except Exception:
            # Not recorded: no longer renewed, its lease ends and it is posted again.
            log.exception("recording callback %s failed", job.id)
        finally:
            self._held.pop(job.id, None)
            self._note_room()

    async def _attempt(
        self, job: CallbackJob, url: URL, refused: str | None = None
    ) -> CallbackResult:
        """One POST of the stored body, signed now; never raises for network trouble."""
        assert self._session is not None
        at, started = now_ms(), time.monotonic()
        if refused is not None:
            return self._result(job, at, 0, "final", None, refused)
        body = job.body if isinstance(job.body, bytes) else bytes(job.body)
        status: int | None = None
        try:
            headers = {**self._headers, **signature_headers(job.secret, body)}
            async with self._session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                answer = await _read_answer(response, self._max_answer)
                location = response.headers.get("Location") if 300 <= status < 400 else None
                verdict, error = assess(status, answer, location)
        except aiohttp.ClientConnectorDNSError as exc:
            if isinstance(exc.os_error, CallbackRefused):
                verdict, error = "final", str(exc.os_error)
            else:
                verdict, error = "again", f"cannot resolve {url.host}: {exc.os_error}"
        except TimeoutError:
            verdict, error = "again", f"no answer within {self.timeout:g} s"
        except aiohttp.InvalidURL as exc:
            verdict, error = "final", f"invalid URL: {exc}"
        except (aiohttp.ClientError, OSError) as exc:
            verdict, error = "again", f"connection error: {type(exc).__name__}: {exc}"
        except Exception as exc:
            # A bug of ours must not leave the callback held (and renewed) forever:
            # it is recorded, retried on the schedule, and e-mailed in the end.
            log.exception("posting callback %s failed unexpectedly", job.id)
            verdict, error = "again", f"internal error: {type(exc).__name__}: {exc}"
        duration = round((time.monotonic() - started) * 1000)
        return self._result(job, at, duration, verdict, status, error)

    def _result(
        self,
        job: CallbackJob,
        at: int,
        duration_ms: int,
        verdict: Verdict,
        status: int | None,
        error: str | None,
    ) -> CallbackResult:
        if verdict == "ok":
            return CallbackResult(job.id, at, duration_ms, "ok", status)
        if verdict == "again" and job.attempts < len(self.retry_schedule):
            wait_ms = int(self.retry_schedule[job.attempts] * 1000)
            next_at = now_ms() + wait_ms
            return CallbackResult(job.id, at, duration_ms, "retry", status, error, next_at)
        if verdict == "again":
            error = f"{error} (attempt {job.attempts + 1}, the last)"
        return CallbackResult(job.id, at, duration_ms, "final", status, error)

    # --- recording -------------------------------------------------------------

    async def _write_results(self, results: list[CallbackResult]) -> list[None]:
        mailed: int = await self._record(record_callback_attempts, self.owner, results)
        self.counts["e-mailed"] += mailed
        return [None] * len(results)

    def _note_room(self) -> None:
        if self._max_held - len(self._held) >= min(self._batch, self._max_held):
            self._room.set()

    def _note_retry(self, next_at: int) -> None:
        heapq.heappush(self._retry_at, (next_at, now_ms()))
        if self._sleep_until and next_at < self._sleep_until:
            self._wake.set()  # the idle loop sleeps past it: look again


_COUNT_KEYS = {"ok": "ok", "retry": "retry", "final": "failed"}
