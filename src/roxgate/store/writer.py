"""Group commit: one writer thread stores many requests in one transaction.

Request handlers hand over a fully built :class:`Intake` and await its
outcome; the writer drains whatever is waiting, decides credits and
idempotency for each request in order (it is the only writer, so those
decisions are race-free), inserts everything, commits once (one fsync) and
only then answers each handler. A request is never answered ``0000`` before
its commit, and a failed commit leaves nothing of it behind.

On PostgreSQL several processes may each run a writer (``--role api``
scale-out), so "the only writer" holds per process only: the writer locks
the accounts whose credits it counts and the idempotency keys it checks, for
the rest of its transaction, and writers that share them take turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, String, delete, insert, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, OperationalError

from roxgate.store import traffic
from roxgate.store.engine import immediate
from roxgate.store.idlists import pg_array_literal
from roxgate.store.notify import QUEUED, notify
from roxgate.store.reads import find_idempotent
from roxgate.store.schema import (
    MESSAGE_RECIPIENT_COLUMNS,
    MESSAGE_REQUEST_COLUMNS,
    accounts,
    idempotency_keys,
    messages,
    requests,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class Outcome(Enum):
    STORED = "stored"
    NO_CREDIT = "no_credit"
    IDEMPOTENT_REPLAY = "replay"
    IDEMPOTENCY_CONFLICT = "conflict"
    UNAVAILABLE = "unavailable"  # the database refused (locked, full, down)
    FAILED = "failed"  # a bug: nothing stored


@dataclass(slots=True)
class Idempotency:
    key: str
    request_hash: bytes
    not_before_ms: int


@dataclass(slots=True)
class Intake:
    account_id: str
    request_row: dict[str, Any]
    message_common: tuple[Any, ...]  # MESSAGE_REQUEST_COLUMNS order
    message_rows: list[tuple[Any, ...]]  # MESSAGE_RECIPIENT_COLUMNS order
    parts: int  # credits this request costs
    response: bytes
    idempotency: Idempotency | None = None
    # Filled in by the writer:
    outcome: Outcome = Outcome.FAILED
    replay: bytes = b""
    _future: asyncio.Future[None] | None = field(default=None, repr=False)


@dataclass(slots=True)
class Op:
    """Any other write, ``fn(connection, *args)``, committed with the next group.

    The dispatcher's claims, outcomes and receipts come this way: SQLite has
    one write lock, and two writer threads waiting on each other through its
    busy handler (which sleeps) made intake answer in seconds.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    result: Any = None
    error: BaseException | None = None
    _future: asyncio.Future[Any] | None = field(default=None, repr=False)


_STOP = object()
_ATTEMPTS = 3  # for a transaction that failed only because of the connection or a deadlock
# PostgreSQL's serialization_failure and deadlock_detected: running it again succeeds.
_RETRY_SQLSTATES = frozenset({"40001", "40P01"})
_KEEP_IDLE_SECONDS = 5.0
_KEEP_SECONDS = 300.0


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)  # psycopg's; None from sqlite3


@functools.lru_cache(maxsize=512)
def _sqlite_insert(rows: int) -> str:
    """The insert of ``rows`` messages: request columns once, then per-recipient VALUES.

    Built from our own column names only. At most 500 x 8 + 12 parameters,
    well under SQLite's limit of 32,766.
    """
    per_row = len(MESSAGE_RECIPIENT_COLUMNS)
    columns = ", ".join(MESSAGE_RECIPIENT_COLUMNS + MESSAGE_REQUEST_COLUMNS)
    selected = ", ".join(
        [f"column{i + 1}" for i in range(per_row)] + ["?"] * len(MESSAGE_REQUEST_COLUMNS)
    )
    one_row = "(" + ", ".join("?" * per_row) + ")"
    values = ", ".join([one_row] * rows)
    # The request's "?" come first in the text, so they take the first parameters.
    return f"INSERT INTO messages ({columns}) SELECT {selected} FROM (VALUES {values})"  # noqa: S608


def _pg_insert() -> str:
    """The PostgreSQL insert of one request's messages: the request's columns bound
    once, each recipient column as one array (``unnest`` makes the rows).

    One statement and one round trip whatever the number of recipients: four
    times the rate of an ``executemany`` of 500 rows. Built from the schema's
    own column names and types only.
    """
    dialect = postgresql.dialect()

    def sql_type(name: str) -> str:
        # Strings as text: a CAST to varchar(n) would cut a value too long
        # for its column, where storing it must fail.
        column_type = messages.c[name].type
        return "text" if isinstance(column_type, String) else column_type.compile(dialect=dialect)

    columns = ", ".join(MESSAGE_RECIPIENT_COLUMNS + MESSAGE_REQUEST_COLUMNS)
    arrays = ", ".join(f"CAST(%s AS {sql_type(c)}[])" for c in MESSAGE_RECIPIENT_COLUMNS)
    names = ", ".join(f"r_{c}" for c in MESSAGE_RECIPIENT_COLUMNS)
    selected = ", ".join(
        [f"r_{c}" for c in MESSAGE_RECIPIENT_COLUMNS]
        + [f"CAST(%s AS {sql_type(c)})" for c in MESSAGE_REQUEST_COLUMNS]
    )
    # The request's "%s" come first in the text, so they take the first parameters.
    return f"INSERT INTO messages ({columns}) SELECT {selected} FROM unnest({arrays}) AS r({names})"  # noqa: S608


_PG_INSERT = _pg_insert()

# PostgreSQL: an Idempotency-Key is checked and stored under a transaction-level
# advisory lock on its name (two-integer form, a key space of its own), so two
# processes given the same key at once answer replay or conflict, not both
# store it. Names that hash alike only take turns needlessly.
_LOCK_IDEMPOTENCY_KEY = text(
    "SELECT pg_advisory_xact_lock(1381498882, hashtext(CAST(:name AS text)))"
)


class GroupCommitWriter:
    def __init__(
        self, engine: Engine, max_rows: int = 20_000, name: str = "roxgate-writer"
    ) -> None:
        self._engine = immediate(engine)
        self._max_rows = max_rows
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stopping = False
        self._conn: Connection | None = None  # the writer thread's, see _connection()
        self._conn_since = self._conn_used = 0.0
        self.batches = 0  # transactions committed, for benchmarks
        # Called (in the writer thread) after a commit that stored messages:
        # the dispatcher uses it to wake at once.
        self.on_stored: Callable[[], None] | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish what was handed over, then stop."""
        self._stopping = True
        self._queue.put(_STOP)
        self._thread.join()

    async def do(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in the next group's transaction; its result once committed."""
        if self._stopping:
            raise RuntimeError("the writer is stopping")
        loop = asyncio.get_running_loop()
        op = Op(fn, args)
        op._future = loop.create_future()
        self._queue.put((loop, op))
        await op._future
        if op.error is not None:
            raise op.error
        return op.result  # type: ignore[no-any-return]

    async def submit(self, intake: Intake) -> Intake:
        if self._stopping:
            intake.outcome = Outcome.UNAVAILABLE
            return intake
        loop = asyncio.get_running_loop()
        intake._future = loop.create_future()
        self._queue.put((loop, intake))
        await intake._future
        return intake

    # --- writer thread ---------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                self._release_connection()
                return
            batch = [first]
            rows = _weight(first[1])
            stop_after = False
            while rows < self._max_rows:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop_after = True
                    break
                batch.append(item)
                rows += _weight(item[1])
            self._commit_batch([entry for _, entry in batch])
            for loop, intake in batch:
                # A closed loop (its client gone at shutdown) must not kill the writer.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_resolve, intake._future)
            if self.on_stored is not None and any(
                isinstance(i, Intake) and i.outcome is Outcome.STORED and i.message_rows
                for _, i in batch
            ):
                self.on_stored()
            if stop_after:
                self._release_connection()
                return

    def _commit_batch(self, batch: list[Intake | Op]) -> None:
        try:
            self._transaction(batch)
            self.batches += 1
            return
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch[0], exc)
                return
            log.warning("group commit of %d entries failed; retrying one by one", len(batch))
        # One bad entry must not take the others down with it.
        for entry in batch:
            try:
                self._transaction([entry])
            except Exception as exc:
                self._fail(entry, exc)

    def _transaction(self, batch: list[Intake | Op]) -> None:
        """Write ``batch`` in one transaction, trying again when that is sure to help:

        a connection found dead (the server restarted, a proxy closed it while
        idle) is replaced, and a transaction PostgreSQL chose as a deadlock
        victim or serialization failure is simply run again. Anything else is
        the caller's to handle.
        """
        for attempt in range(1, _ATTEMPTS + 1):
            conn = self._connection()
            try:
                with conn.begin():
                    self._write_all(conn, batch)
                return
            except DBAPIError as exc:
                retry = exc.connection_invalidated or _sqlstate(exc) in _RETRY_SQLSTATES
                if exc.connection_invalidated:
                    self._release_connection()
                if not retry or attempt == _ATTEMPTS:
                    raise
                log.warning("write failed (%s), trying again", exc.orig)
            except BaseException:
                # Unknown state: hand the connection back (the pool resets it).
                self._release_connection()
                raise

    def _connection(self) -> Connection:
        """The writer's own connection, kept across groups.

        A checkout per group cost the pool's bookkeeping and a reset on return,
        and, while the pool pinged at every checkout, a round trip (9% of a
        busy writer's time on PostgreSQL). The connection is kept while groups
        follow each other and given back after a pause (the pool pings it when
        next handed out, see store/engine.py) or once old (the pool recycles
        it). One the server closed meanwhile is replaced by _transaction().
        """
        now = time.monotonic()
        if self._conn is not None and (
            now - self._conn_used > _KEEP_IDLE_SECONDS or now - self._conn_since > _KEEP_SECONDS
        ):
            self._release_connection()
        if self._conn is None:
            self._conn = self._engine.connect()
            self._conn_since = now
        self._conn_used = now
        return self._conn

    def _release_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _write_all(self, conn: Connection, batch: list[Intake | Op]) -> None:
        intakes = [e for e in batch if isinstance(e, Intake)]
        if intakes:
            self._write(conn, intakes)
        for entry in batch:
            if isinstance(entry, Op):
                entry.result = entry.fn(conn, *entry.args)
                entry.error = None

    @staticmethod
    def _fail(entry: Intake | Op, exc: Exception) -> None:
        if isinstance(entry, Op):
            log.exception("write %s failed", getattr(entry.fn, "__name__", entry.fn))
            entry.error = exc
            return
        intake = entry
        if isinstance(exc, OperationalError) or (
            isinstance(exc, DBAPIError) and exc.connection_invalidated
        ):
            reason = exc.orig if isinstance(exc, DBAPIError) else exc
            log.error(
                "database unavailable, request %s not stored: %s", intake.request_row["id"], reason
            )
            intake.outcome = Outcome.UNAVAILABLE
        else:
            log.exception("storing request %s failed", intake.request_row["id"])
            intake.outcome = Outcome.FAILED

    def _write(self, conn: Connection, batch: list[Intake]) -> None:
        if conn.dialect.name == "postgresql":
            # In one order in every process, so two writers cannot deadlock.
            for name in sorted(
                {f"{i.account_id}/{i.idempotency.key}" for i in batch if i.idempotency}
            ):
                conn.execute(_LOCK_IDEMPOTENCY_KEY, {"name": name})
        credits_left = self._load_credits(conn, batch)
        seen_keys: dict[tuple[str, str], Intake] = {}
        stored: list[Intake] = []
        for intake in batch:
            intake.outcome = Outcome.STORED
            idem = intake.idempotency
            if idem is not None:
                earlier = seen_keys.get((intake.account_id, idem.key))
                previous = (
                    (earlier.idempotency.request_hash, earlier.response)  # type: ignore[union-attr]
                    if earlier is not None
                    else find_idempotent(conn, intake.account_id, idem.key, idem.not_before_ms)
                )
                if previous is not None:
                    if previous[0] == idem.request_hash:
                        intake.outcome = Outcome.IDEMPOTENT_REPLAY
                        intake.replay = previous[1]
                    else:
                        intake.outcome = Outcome.IDEMPOTENCY_CONFLICT
                    continue
            left = credits_left.get(intake.account_id)
            if left is not None and intake.parts > 0:
                if intake.parts > left:
                    intake.outcome = Outcome.NO_CREDIT
                    continue
                credits_left[intake.account_id] = left - intake.parts
            if idem is not None:
                seen_keys[(intake.account_id, idem.key)] = intake
            stored.append(intake)

        if not stored:
            return
        conn.execute(insert(requests), [i.request_row for i in stored])
        for i in stored:
            if i.message_rows:
                self._insert_messages(conn, i.message_common, i.message_rows)
        accepted = sum(len(i.message_rows) for i in stored)
        traffic.count(conn, {"accepted": accepted}, stored[-1].request_row["received_at"])
        if accepted and conn.dialect.name == "postgresql":
            notify(conn, QUEUED)  # every worker process, once this commits
        keyed = [i for i in stored if i.idempotency is not None]
        if keyed:
            # An expired key of the same name may still be there: replace it.
            for i in keyed:
                conn.execute(
                    delete(idempotency_keys).where(
                        idempotency_keys.c.account_id == i.account_id,
                        idempotency_keys.c.key == i.idempotency.key,  # type: ignore[union-attr]
                    )
                )
            conn.execute(
                insert(idempotency_keys),
                [
                    {
                        "account_id": i.account_id,
                        "key": i.idempotency.key,  # type: ignore[union-attr]
                        "request_hash": i.idempotency.request_hash,  # type: ignore[union-attr]
                        "response": i.response,
                        "created_at": i.request_row["received_at"],
                    }
                    for i in keyed
                ],
            )
        spent: dict[str, int] = {}
        for i in stored:
            if credits_left.get(i.account_id) is not None and i.parts:
                spent[i.account_id] = spent.get(i.account_id, 0) + i.parts
        for account_id, parts in spent.items():
            conn.execute(
                update(accounts)
                .where(accounts.c.id == account_id)
                .values(credits=accounts.c.credits - parts)
            )

    def _insert_messages(
        self, conn: Connection, common: tuple[Any, ...], rows: list[tuple[Any, ...]]
    ) -> None:
        """Insert one request's messages in one statement (SQLite, PostgreSQL) or executemany.

        This is the hottest code on the intake path and the benchmark shaped
        it. Intake is bound by the GIL, so what counts is Python-side work:
        the rows go straight to the driver (SQLAlchemy's per-row parameter
        processing cost more than SQLite's insert); the columns that are the
        same for the whole request are bound once per statement, not per row;
        and one statement per request means the sqlite3 module releases the
        GIL once for all rows (``executemany`` steps, and so releases and
        re-takes the GIL, once per row; with the event loop busy in the other
        thread each re-take can wait a whole switch interval).
        """
        if conn.dialect.name == "postgresql":
            arrays = tuple(pg_array_literal(c) for c in zip(*rows, strict=True))
            conn.exec_driver_sql(_PG_INSERT, common + arrays)
            return
        if conn.dialect.name != "sqlite":
            shared = dict(zip(MESSAGE_REQUEST_COLUMNS, common, strict=True))
            conn.execute(
                insert(messages),
                [{**shared, **dict(zip(MESSAGE_RECIPIENT_COLUMNS, r, strict=True))} for r in rows],
            )
            return
        params = common + tuple(value for row in rows for value in row)
        conn.exec_driver_sql(_sqlite_insert(len(rows)), params)

    @staticmethod
    def _load_credits(conn: Connection, batch: list[Intake]) -> dict[str, int | None]:
        ids = sorted({i.account_id for i in batch})
        rows = conn.execute(select(accounts.c.id, accounts.c.credits).where(accounts.c.id.in_(ids)))
        credits: dict[str, int | None] = {account_id: credits for account_id, credits in rows}
        limited = sorted(account_id for account_id, left in credits.items() if left is not None)
        if limited and conn.dialect.name == "postgresql":
            # Another process's writer may spend the same credits: lock the
            # accounts that have a balance (in id order) and read it again.
            # Unlimited accounts are not locked, so their writers never wait.
            locked = conn.execute(
                select(accounts.c.id, accounts.c.credits)
                .where(accounts.c.id.in_(limited))
                .order_by(accounts.c.id)
                .with_for_update(key_share=True)
            )
            credits.update({account_id: left for account_id, left in locked})
        return credits


def _weight(entry: Intake | Op) -> int:
    return len(entry.message_rows) if isinstance(entry, Intake) else 1


def _resolve(future: asyncio.Future[Any] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


class Writers:
    """A process's group-commit writers: intake spread over them, every other write on one.

    SQLite has one write lock, so it gets one writer. On PostgreSQL a
    writer's transaction spends most of its time waiting for the server
    (each request's insert is a round trip, then the commit), and with a few
    clients in flight the next requests only arrive once those are answered:
    one writer left the api process idle 20% of the time and PostgreSQL on
    one core. Several writers, each with its own connection and thread, let
    several groups be stored at once. They stay correct together for the
    same reasons several api processes do (credits and idempotency keys are
    locked in the database, see the module docstring).

    The dispatcher's, callbacks' and console's writes (``do``) all go to the
    first writer, in the order they are made, as with a single writer.
    """

    def __init__(self, engine: Engine, max_rows: int = 20_000, count: int = 1) -> None:
        if engine.dialect.name != "postgresql":
            count = 1
        self._all = [
            GroupCommitWriter(engine, max_rows, name=f"roxgate-writer-{n}")
            for n in range(max(1, count))
        ]
        self._waiting = [0] * len(self._all)  # intakes handed to each, not yet answered

    @property
    def count(self) -> int:
        return len(self._all)

    @property
    def batches(self) -> int:
        """Transactions committed by all writers (benchmarks)."""
        return sum(w.batches for w in self._all)

    @property
    def on_stored(self) -> Callable[[], None] | None:
        return self._all[0].on_stored

    @on_stored.setter
    def on_stored(self, hook: Callable[[], None] | None) -> None:
        for w in self._all:
            w.on_stored = hook

    def start(self) -> None:
        for w in self._all:
            w.start()

    def stop(self) -> None:
        for w in self._all:
            w.stop()

    async def do(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._all[0].do(fn, *args)

    async def submit(self, intake: Intake) -> Intake:
        # The one with the fewest requests waiting; a tie goes to the last,
        # leaving the first (which also carries every other write) for last.
        n = min(reversed(range(len(self._all))), key=self._waiting.__getitem__)
        self._waiting[n] += 1
        try:
            return await self._all[n].submit(intake)
        finally:
            self._waiting[n] -= 1
