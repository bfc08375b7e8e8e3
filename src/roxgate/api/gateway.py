"""The running gateway's shared parts: settings, database, writer, authenticator."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

from sqlalchemy import Engine

from roxgate.accounts.auth import Authenticator
from roxgate.accounts.ipguard import FailedLoginGuard
from roxgate.accounts.ratelimit import AccountRateLimiter
from roxgate.callbacks.http import CallbackWorker, parse_retry_schedule
from roxgate.callbacks.mail import MailWorker, parse_smtp_url
from roxgate.carriers.connector import SmppCarrier
from roxgate.carriers.simulator import SmscSimulator
from roxgate.carriers.smpp.url import parse_carrier_url
from roxgate.config import Settings
from roxgate.dispatch.dispatcher import Dispatcher, DispatchPolicy, worker_id
from roxgate.netpolicy import parse_nets
from roxgate.stats import RequestStats
from roxgate.store import housekeeping, workers
from roxgate.store.engine import open_database
from roxgate.store.ids import now_ms
from roxgate.store.writer import Writers

T = TypeVar("T")
Role = Literal["all", "api", "worker"]
log = logging.getLogger("roxgate.activity")
HEARTBEAT_SECONDS = 5.0
TIDY_SECONDS = 600.0  # expired idempotency keys, old traffic counts, console sessions


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.allow_nets = parse_nets(settings.callback_allow_nets)
        self.engine: Engine = open_database(settings.database_url, settings.database_busy_timeout)
        # Database reads and argon2 run here, off the event loop.
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="roxgate-io")
        self.writer = Writers(self.engine, settings.commit_max_rows, settings.database_writers)
        # SQLite reads take ~0.1 ms and, in WAL mode, never wait for the
        # writer, so they run inline: a hop to a thread costs more than the
        # query (each hop has to win the GIL back from the busy event loop).
        # Network databases hop to the pool.
        self.read = self._inline if self.engine.dialect.name == "sqlite" else self.run
        # /smsapi/send answers by result code and latency, for /metrics.
        self.requests = RequestStats()
        self.simulator: SmscSimulator | None = None
        self.carrier: SmppCarrier | None = None
        self.dispatcher: Dispatcher | None = None
        self.callbacks: CallbackWorker | None = None
        self.mail: MailWorker | None = None
        self._dispatch_task: asyncio.Task[None] | None = None
        self._activity_task: asyncio.Task[None] | None = None
        self._report_tasks: list[asyncio.Task[None]] = []
        self.role: Role = "all"
        self.worker_id = worker_id()
        self.live_workers = 1
        self._registered_at = 0  # ms: when this process joined the workers table
        self._listener: Any = None  # PgListener on PostgreSQL
        self._registry_task: asyncio.Task[None] | None = None
        self._next_tidy = time.monotonic() + HEARTBEAT_SECONDS  # soon after start
        self.auth = Authenticator(
            self.engine,
            self.run,
            read=self.read,
            cache_seconds=settings.auth_cache_seconds,
            max_failures=settings.login_max_failures,
            lock_seconds=settings.login_lock_seconds,
            ip_guard=FailedLoginGuard(
                settings.login_ip_max_failures, settings.login_ip_window_seconds
            ),
        )
        # In memory, per process: see accounts/ratelimit.py for why.
        self.rate_limits = AccountRateLimiter(
            settings.rate_requests_per_minute, settings.rate_messages_per_minute
        )

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))

    @staticmethod
    async def _inline(fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    @property
    def postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    async def start(self, role: Role = "all") -> None:
        self.role = role
        self.writer.start()
        if role != "api":
            # Registered before the first submit, so the TPS share is right from the start.
            self._registered_at = now_ms()
            self.live_workers = await self.writer.do(workers.heartbeat, self.worker_id, role)
            self._start_reporting()
            await self._start_sending()
            self._activity_task = asyncio.create_task(self._log_activity(), name="activity")
            self._registry_task = asyncio.create_task(self._registry(), name="registry")
        self._wire_wakeups()

    def _wire_wakeups(self) -> None:
        """Who is told that messages were queued: the local dispatcher, and on
        PostgreSQL every worker process (the writer's NOTIFY, which they LISTEN for)."""
        loop = asyncio.get_running_loop()
        dispatcher = self.dispatcher
        local = (lambda: loop.call_soon_threadsafe(dispatcher.wake)) if dispatcher else None
        if not self.postgres:
            self.writer.on_stored = local
            return
        from roxgate.store.notify import QUEUED, PgListener, libpq_url

        # Other processes hear of it from the commit itself (the writer's NOTIFY).
        self.writer.on_stored = local
        if dispatcher is not None:
            self._listener = PgListener(
                libpq_url(self.engine),
                [QUEUED],
                lambda _channel: local(),  # type: ignore[misc]
            )
            self._listener.start()

    async def _registry(self) -> None:
        """Heartbeat in the workers table; take this process's share of the TPS limit."""
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                alive = await self.writer.do(workers.heartbeat, self.worker_id, self.role)
                if alive != self.live_workers and self.carrier is not None:
                    share = self.carrier.share_tps(alive)
                    self._fit_claims(share)
                    if share:
                        log.info("%d sending processes: this one's TPS share %.1f", alive, share)
                self.live_workers = alive
            except Exception:
                log.exception("worker heartbeat failed; will try again")
            if time.monotonic() >= self._next_tidy:
                self._next_tidy = time.monotonic() + TIDY_SECONDS
                try:
                    deleted = await self.writer.do(self._tidy)
                    if any(deleted.values()):
                        log.info("housekeeping deleted %s", deleted)
                except Exception:
                    log.exception("housekeeping failed; will try again")

    def _tidy(self, conn: Any) -> dict[str, int]:
        return housekeeping.tidy(conn, now_ms(), self.settings.idempotency_hours)

    def _start_reporting(self) -> None:
        """The callback worker, and the mail worker when SMTP is configured.

        Without ``ROXGATE_SMTP_URL`` e-mails wait in the outbox (``roxgate
        mail list``) until a gateway with SMTP runs: nothing is dropped.
        """
        s = self.settings
        self.callbacks = CallbackWorker(
            self.writer.do,
            retry_schedule=parse_retry_schedule(s.callback_retry),
            timeout=s.callback_timeout,
            allow_nets=self.allow_nets,
            owner=self.worker_id,
            # Renewed while held, like the dispatcher's: after a crash, the
            # callbacks it was posting come back this long after.
            lease_ms=int(s.lease_seconds * 1000),
        )
        self._report_tasks.append(asyncio.create_task(self.callbacks.run(), name="callbacks"))
        if s.smtp_url:
            self.mail = MailWorker(self.writer.do, parse_smtp_url(s.smtp_url), s.mail_from)
            self._report_tasks.append(asyncio.create_task(self.mail.run(), name="mail"))
        else:
            log.info("no ROXGATE_SMTP_URL: e-mails wait in the outbox (roxgate mail list)")

    def _reported(self) -> None:
        """Receipts or a reply were committed: callbacks, e-mails or a forwarded SMS may wait."""
        if self.callbacks is not None:
            self.callbacks.wake()
        if self.mail is not None:
            self.mail.wake()
        if self.dispatcher is not None:
            self.dispatcher.wake()

    async def _start_sending(self) -> None:
        """The carrier link (and the built-in simulator for ``sim``) and the dispatcher."""
        carrier_url = self.settings.carrier
        if carrier_url == "sim":
            # It keeps no history of submits here (nobody reads it in a server).
            self.simulator = SmscSimulator(
                receipt_delay=self.settings.sim_receipt_delay, keep_submits=0
            )
            await self.simulator.start("127.0.0.1", 0)
            carrier_url = f"smpp://roxgate:sim@127.0.0.1:{self.simulator.port}?window=100"
        # The dispatcher writes through the intake's group-commit writer: one
        # SQLite writer for everything (see Op in store/writer.py).
        config = parse_carrier_url(carrier_url)
        self.carrier = SmppCarrier(
            config,
            self.writer.do,
            reply_window_ms=int(self.settings.reply_window_days * 86_400_000),
            max_parts=self.settings.max_parts,
            on_report=self._reported,
        )
        share = self.carrier.share_tps(self.live_workers)
        await self.carrier.start()
        validity = config.validity or self.settings.validity_seconds
        policy = DispatchPolicy(
            # A message keeps its slot until its outcome is recorded, so at most
            # one SMPP window of messages is ever on the wire or answered but not
            # yet recorded: what a SIGKILL can make go twice (docs/scaling.md).
            concurrency=config.window,
            lease_ms=int(self.settings.lease_seconds * 1000),
            expire_after_ms=(validity + self.settings.receipt_grace_seconds) * 1000,
        )
        self.dispatcher = Dispatcher(
            self.engine, self.carrier, self.run, policy=policy, record=self.writer.do,
            owner=self.worker_id, on_settled=self._reported,
        )  # fmt: skip
        self._fit_claims(share)
        self._dispatch_task = asyncio.create_task(
            self._dispatch_when_shared(self.dispatcher, share_from_ms=self._registered_at),
            name="dispatcher",
        )

    async def _dispatch_when_shared(self, dispatcher: Dispatcher, share_from_ms: int) -> None:
        """Run the dispatcher once the TPS limit is shared with this process too.

        The workers already running notice a newcomer at their next heartbeat
        and only then slow to their smaller share: until every one of them has
        beaten since this one registered, it sends nothing, so that together
        they never exceed the route's limit. (A worker that is gone stops
        counting after STALE_MS, which bounds the wait.)
        """
        assert self.carrier is not None
        if self.carrier.config.tps > 0 and self.live_workers > 1:
            log.info("waiting for the other workers to take their smaller TPS share")
            while True:
                if not await self.run(self._others_behind, self.worker_id, share_from_ms):
                    break
                await asyncio.sleep(0.25)
        await dispatcher.run()

    def _others_behind(self, worker_id: str, since_ms: int) -> int:
        with self.engine.connect() as conn:
            return workers.behind(conn, worker_id, since_ms)

    def _fit_claims(self, tps_share: float) -> None:
        """Claim no more than this process can soon send: two SMPP windows, and
        with a TPS limit what it sends in about two seconds at its share.

        Claimed messages wait in this process for a window slot (or the pace);
        claimed by the thousand, they kept the other workers idle beside it
        (bench/scale.py: two workers at window 100 split 3,000 messages
        2,000 + 1,000, and the second finished 40 % early). Two windows keep
        the window full while the next claim is made.
        """
        if self.dispatcher is None or self.carrier is None:
            return
        batch = min(DispatchPolicy().batch, 2 * self.carrier.config.window)
        if tps_share:
            batch = min(batch, max(1, round(2 * tps_share)))
        self.dispatcher.policy.batch = batch

    async def _log_activity(self, every: float = 10.0) -> None:
        """One INFO line per period in which something was sent or came back."""
        assert self.dispatcher is not None and self.carrier is not None
        before: Counter[str] = Counter()
        while True:
            await asyncio.sleep(every)
            now = self.dispatcher.counts + self.carrier.counts
            if self.callbacks is not None:
                now += Counter({f"callback {k}": v for k, v in self.callbacks.counts.items()})
            if self.mail is not None:
                now += Counter({f"mail {k}": v for k, v in self.mail.counts.items()})
            delta = now - before
            before = now
            if delta:
                summary = ", ".join(f"{kind} {n}" for kind, n in sorted(delta.items()))
                log.info("last %.0f s: %s (carrier bound: %s)", every, summary, self.carrier.bound)

    async def stop(self) -> None:
        if self._listener is not None:
            await self.run(self._listener.stop)
        for task in (self._activity_task, self._registry_task):
            if task is not None:
                task.cancel()
        if self.dispatcher is not None:
            await self.dispatcher.stop()
            if self._dispatch_task is not None:
                self._dispatch_task.cancel()
        if self.carrier is not None:
            await self.carrier.close()
        # After the carrier: receipts that arrived while it closed are posted or kept.
        for worker in (self.callbacks, self.mail):
            if worker is not None:
                await worker.stop()
        for task in self._report_tasks:
            task.cancel()
        if self._registry_task is not None:
            # Gone at once, not after STALE_MS: the others take its TPS share now.
            try:
                await self.writer.do(workers.deregister, self.worker_id)
            except Exception:
                log.exception("could not leave the workers table (it ages out)")
        if self.simulator is not None:
            await self.simulator.stop()
        self.writer.stop()
        self._pool.shutdown(wait=True)
        self.engine.dispose()
