"""The message queue is the messages table: claiming with leases, recording outcomes.

State machine of ``messages.status`` (timestamps in the row, details in
``message_events``)::

    queued ──claim──▶ submitting ──all parts accepted──▶ submitted ──receipts──▶ delivered
      ▲                  │  │                                          └──────▶ failed
      │  lease expired / │  └─permanent error / retries exhausted──▶ failed
      └──throttled, link lost, transient error (retry later)

A claim stamps ``lease_owner`` and ``lease_until``; a worker that dies leaves
its rows to come back when the lease ends (``release_expired``). Every
function here is one short transaction that takes the SQLite write lock at
BEGIN (``immediate``), so it never fails half-way on a lock upgrade.

On PostgreSQL many worker processes share the table and nothing serialises
their transactions: claims lock the rows they take (``FOR UPDATE SKIP
LOCKED``, so a second claimer takes the next rows instead of waiting for, or
taking, the same ones), and a read that decides a later write locks what it
read. SQLite renders none of these clauses; its one write lock already
serialises everything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, and_, bindparam, func, insert, select, text, update

from roxgate.report.outbox import enqueue_receipts
from roxgate.rox.codes import Result
from roxgate.store import traffic
from roxgate.store.engine import immediate
from roxgate.store.idlists import IdListStatement, pg_array_literal
from roxgate.store.ids import now_ms
from roxgate.store.schema import (
    accounts,
    message_events,
    messages,
    recent_sends,
    unmatched_receipts,
)

# Carrier receipt states (SPEC.md §3) → ROX result of a part.
STATE_RESULTS: dict[str, Result] = {
    "DELIVRD": Result.OK,
    "ACCEPTD": Result.OK,
    "UNDELIV": Result.UNDELIVERABLE,
    "EXPIRED": Result.EXPIRED,
    "REJECTD": Result.REJECTED,
    "DELETED": Result.DELETED,
    "UNKNOWN": Result.UNKNOWN_STATE,
}


@dataclass(frozen=True, slots=True)
class Claimed:
    """A message a worker now holds the lease on."""

    id: str
    dest_tn: str
    text: str
    encoding: str
    parts: int
    receipt_flag: int
    sender_id: str | None
    attempts: int


@dataclass(frozen=True, slots=True)
class PartAccepted:
    part_no: int
    carrier_id: str


def _event(message_id: str, at: int, event: str, detail: str | None = None) -> dict[str, Any]:
    return {"message_id": message_id, "at": at, "event": event, "detail": detail}


@contextlib.contextmanager
def _tx(db: Engine | Connection) -> Iterator[Connection]:
    """A transaction of its own on an engine, or the caller's (a batch) on a connection."""
    if isinstance(db, Connection):
        yield db
    else:
        with immediate(db).begin() as conn:
            yield conn


# PostgreSQL: the claim in one statement. The CTE picks and locks the due rows
# (SKIP LOCKED: rows another worker is claiming are passed over, not waited
# for), once: MATERIALIZED, so no plan can run it twice and lease rows it did
# not pick; the UPDATE leases them and returns what sending needs. Half the
# database work of a SELECT then an UPDATE that finds the same rows again by id.
_CLAIM_PG = text(
    "WITH due AS MATERIALIZED (SELECT id FROM messages WHERE status = 'queued' "
    "AND due_at <= :now ORDER BY due_at LIMIT :limit FOR UPDATE SKIP LOCKED) "
    "UPDATE messages SET status = 'submitting', lease_owner = :owner, lease_until = :until, "
    "attempts = messages.attempts + 1, updated_at = :now FROM due, accounts "
    "WHERE messages.id = due.id AND accounts.id = messages.account_id "
    "RETURNING messages.id, messages.dest_tn, messages.text, messages.encoding, "
    "messages.parts, messages.receipt_flag, accounts.sender_id, messages.attempts, "
    "messages.due_at"
)


def claim_due(engine: Engine | Connection, owner: str, limit: int, lease_ms: int) -> list[Claimed]:
    """Up to ``limit`` due messages, oldest due first, leased to ``owner``."""
    now = now_ms()
    with _tx(engine) as conn:
        if conn.dialect.name == "postgresql":
            params = {"owner": owner, "until": now + lease_ms, "now": now, "limit": limit}
            leased = conn.execute(_CLAIM_PG, params).all()
            # RETURNING follows no order; attempts is already the new count.
            leased.sort(key=lambda r: r.due_at)
            return [Claimed(*r[:8]) for r in leased]
        rows = conn.execute(
            select(
                messages.c.id,
                messages.c.dest_tn,
                messages.c.text,
                messages.c.encoding,
                messages.c.parts,
                messages.c.receipt_flag,
                accounts.c.sender_id,
                messages.c.attempts,
            )
            .select_from(messages.join(accounts, messages.c.account_id == accounts.c.id))
            .where(messages.c.status == "queued", messages.c.due_at <= now)
            .order_by(messages.c.due_at)
            .limit(limit)
        ).all()  # SQLite: this transaction holds the one write lock
        if not rows:
            return []
        _LEASE.execute(
            conn,
            {"ids": [r.id for r in rows], "owner": owner, "until": now + lease_ms, "now": now},
        )
    return [Claimed(*r[:7], attempts=r.attempts + 1) for r in rows]


_LEASE = IdListStatement(
    "UPDATE messages SET status = 'submitting', lease_owner = :owner, lease_until = :until, "
    "attempts = attempts + 1, updated_at = :now WHERE id {ids}",
    "ids",
)

# PostgreSQL: rows locked right now (their owner is renewing or recording
# them, or another sweep has them) are left to the next sweep rather than
# waited for, so concurrent sweeps and owners never wait on each other.
_RELEASE_EXPIRED_PG = text(
    "UPDATE messages SET status = 'queued', lease_owner = NULL, lease_until = NULL, "
    "updated_at = :now WHERE id IN (SELECT id FROM messages "
    "WHERE status = 'submitting' AND lease_until < :now FOR UPDATE SKIP LOCKED)"
)


def release_expired(engine: Engine | Connection) -> int:
    """Return messages whose lease ended (their worker died or stalled) to the queue."""
    now = now_ms()
    with _tx(engine) as conn:
        if conn.dialect.name == "postgresql":
            return conn.execute(_RELEASE_EXPIRED_PG, {"now": now}).rowcount
        result = conn.execute(
            update(messages)
            .where(messages.c.status == "submitting", messages.c.lease_until < now)
            .values(status="queued", lease_owner=None, lease_until=None, updated_at=now)
        )
    return result.rowcount


def extend_leases(db: Engine | Connection, owner: str, ids: list[str], lease_ms: int) -> set[str]:
    """Heartbeat: ``owner`` is alive and still works on ``ids``, for another lease.

    A claimed message may wait a while for a window slot or the TPS limit
    (1,000 claimed at tps=5 take 200 s); without renewal its lease would end
    mid-wait and the same message be claimed and sent twice. Returns the ids
    renewed: one missing was lost (the worker stalled past its lease and
    another took it) and must not be sent by this worker.
    """
    now = now_ms()
    renewed: set[str] = set()
    with _tx(db) as conn:
        for start in range(0, len(ids), 5_000):
            renewed.update(
                _RENEW.execute(
                    conn,
                    {"ids": ids[start : start + 5_000], "owner": owner, "until": now + lease_ms},
                ).scalars()
            )
    return renewed


_RENEW = IdListStatement(
    "UPDATE messages SET lease_until = :until "
    "WHERE id {ids} AND status = 'submitting' AND lease_owner = :owner RETURNING id",
    "ids",
)


def release_unsent(db: Engine | Connection, owner: str, ids: list[str]) -> int:
    """Claimed messages ``owner`` never handed to the carrier: back to the queue at once."""
    if not ids:
        return 0
    now = now_ms()
    with _tx(db) as conn:
        return conn.execute(
            update(messages)
            .where(
                messages.c.id.in_(ids),
                messages.c.status == "submitting",
                messages.c.lease_owner == owner,
            )
            .values(
                status="queued",
                lease_owner=None,
                lease_until=None,
                attempts=messages.c.attempts - 1,
                updated_at=now,
            )
        ).rowcount


def next_due(engine: Engine) -> int | None:
    """When the earliest queued message is due (ms), if any."""
    with engine.connect() as conn:
        return conn.execute(
            select(func.min(messages.c.due_at)).where(messages.c.status == "queued")
        ).scalar_one()


def _owned(message_id: str, owner: str) -> Any:
    # A worker that lost its lease must not record anything for the message.
    return and_(
        messages.c.id == message_id,
        messages.c.status == "submitting",
        messages.c.lease_owner == owner,
    )


# Submissions and receipts arrive at the rate messages are sent, so they are
# recorded in batches with statements built once (plain SQL, valid on SQLite
# and PostgreSQL): per message, only what differs is bound. The normal path
# (submitted, delivered) writes no message_events rows: the message and part
# rows already hold its timestamps and carrier ids. Events record the rest
# (retries, failures, receipts that change nothing).
_CLAIMED_BY = IdListStatement(
    "UPDATE messages SET status = 'submitted', submitted_at = :now, lease_owner = NULL, "
    "lease_until = NULL, updated_at = :now "
    "WHERE id {ids} AND status = 'submitting' AND lease_owner = :owner RETURNING id, dest_tn",
    "ids",
)
_INSERT_PART = text(
    "INSERT INTO message_parts (message_id, part_no, carrier_id, status, submitted_at, "
    "updated_at) VALUES (:mid, :part, :cid, 'submitted', :now, :now)"
)
# PostgreSQL: the whole batch's parts in one statement, each column one array
# (an executemany is a statement per part: 20,000 of them for 20,000 messages).
_INSERT_PARTS_PG = text(
    "INSERT INTO message_parts (message_id, part_no, carrier_id, status, submitted_at, "
    "updated_at) SELECT r.mid, r.part, r.cid, 'submitted', :now, :now FROM "
    "unnest(CAST(:mid AS text[]), CAST(:part AS integer[]), CAST(:cid AS text[])) "
    "AS r(mid, part, cid)"
)


# Replies are matched to the latest message submitted to their number. Two
# messages to one number in a batch: SQLite upserts both in id order (the
# later wins); PostgreSQL refuses to touch a row twice in one statement, so
# it is given one row per number, the later message's, in number order (the
# order the rows are locked in, the same in every worker).
_REMEMBER_SENDS_SQLITE = text(
    "INSERT INTO recent_sends (dest_tn, message_id, submitted_at) "
    "SELECT dest_tn, id, :now FROM messages WHERE id IN :ids "
    "ON CONFLICT (dest_tn) DO UPDATE SET message_id = excluded.message_id, "
    "submitted_at = excluded.submitted_at "
    # Another process's older batch committing later must not win.
    "WHERE recent_sends.submitted_at <= excluded.submitted_at"
).bindparams(bindparam("ids", expanding=True))
# The numbers come from the UPDATE that recorded the submissions (RETURNING),
# not from the messages rows looked up again.
_REMEMBER_SENDS_PG = text(
    "INSERT INTO recent_sends (dest_tn, message_id, submitted_at) "
    "SELECT DISTINCT ON (r.dest_tn) r.dest_tn, r.id, :now "
    "FROM unnest(CAST(:tns AS text[]), CAST(:ids AS text[])) AS r(dest_tn, id) "
    "ORDER BY r.dest_tn, r.id DESC "
    "ON CONFLICT (dest_tn) DO UPDATE SET message_id = excluded.message_id, "
    "submitted_at = excluded.submitted_at "
    # Another process's older batch committing later must not win.
    "WHERE recent_sends.submitted_at <= excluded.submitted_at"
)


def record_submitted(
    db: Engine | Connection, owner: str, accepted: list[tuple[str, list[PartAccepted]]]
) -> set[str]:
    """Messages whose every part the carrier accepted: ``submitted``, with their carrier ids.

    Returns the ids recorded; a message whose lease ``owner`` no longer holds
    (it expired and another worker took it) is left alone.
    """
    if not accepted:
        return set()
    now = now_ms()
    with _tx(db) as conn:
        number_of: dict[str, str] = {
            row.id: row.dest_tn
            for row in _CLAIMED_BY.execute(
                conn,
                {"ids": [mid for mid, _ in accepted], "now": now, "owner": owner},
            )
        }
        recorded = set(number_of)
        rows = [
            {"mid": mid, "part": p.part_no, "cid": p.carrier_id, "now": now}
            for mid, parts in accepted
            if mid in recorded
            for p in parts
        ]
        if rows and conn.dialect.name == "postgresql":
            conn.execute(_INSERT_PARTS_PG, {"now": now, **_columns(rows, "mid", "part", "cid")})
        elif rows:
            conn.execute(_INSERT_PART, rows)
        if recorded:
            ids = sorted(recorded)
            if conn.dialect.name == "postgresql":
                numbers = pg_array_literal([number_of[i] for i in ids])
                params = {"ids": pg_array_literal(ids), "tns": numbers, "now": now}
                conn.execute(_REMEMBER_SENDS_PG, params)
            else:
                conn.execute(_REMEMBER_SENDS_SQLITE, {"ids": ids, "now": now})
            traffic.count(conn, {"submitted": len(recorded)}, now)
    return recorded


def send_recorded_since(db: Engine | Connection, dest_tn: str, since_ms: int) -> bool:
    """Whether a submission to ``dest_tn`` recorded at or after ``since_ms`` is
    committed: what a reply from that number will be matched to."""
    with _tx(db) as conn:
        at = conn.execute(
            select(recent_sends.c.submitted_at).where(recent_sends.c.dest_tn == dest_tn)
        ).scalar()
    return at is not None and at >= since_ms


def _release(
    engine: Engine | Connection,
    owner: str,
    message_id: str,
    event: str,
    detail: str,
    **values: Any,
) -> bool:
    """End ``owner``'s lease on the message with ``values`` and log ``event``."""
    now = now_ms()
    with _tx(engine) as conn:
        done = conn.execute(
            update(messages)
            .where(_owned(message_id, owner))
            .values(lease_owner=None, lease_until=None, updated_at=now, **values)
        ).rowcount
        if done:
            conn.execute(insert(message_events), _event(message_id, now, event, detail))
    return bool(done)


def record_failed(
    engine: Engine | Connection, owner: str, message_id: str, result: Result, text: str
) -> bool:
    """A final failure decided at submission (2062 permanent, 2065 retries exhausted)."""
    now = now_ms()
    with _tx(engine) as conn:
        done = _release(
            conn, owner, message_id, "failed", text,
            status="failed", result=result.value, result_text=text, final_at=now,
        )  # fmt: skip
        if done:
            enqueue_receipts(conn, [message_id], now)
            traffic.count(conn, {"failed": 1}, now)
    return done


def record_retry(
    engine: Engine | Connection,
    owner: str,
    message_id: str,
    delay_ms: int,
    reason: str,
    count_attempt: bool = True,
) -> bool:
    """Back to the queue, due again after ``delay_ms``.

    ``count_attempt=False`` gives back the attempt the claim counted: being
    throttled or losing the link is not the message's fault and must not
    bring it closer to 2065.
    """
    extra = {} if count_attempt else {"attempts": messages.c.attempts - 1}
    return _release(
        engine, owner, message_id, "retry", reason,
        status="queued", due_at=now_ms() + delay_ms, **extra,
    )  # fmt: skip


_EXPIRE = IdListStatement(
    "UPDATE messages SET status = 'expired', result = :result, result_text = :text, "
    "final_at = :now, updated_at = :now WHERE id {ids} AND status = 'submitted'",
    "ids",
)


def expire_overdue(db: Engine | Connection, submitted_before_ms: int, limit: int = 5_000) -> int:
    """Submitted messages still without a final state: 2064 (SPEC.md §3).

    ``submitted_before_ms`` is now minus the validity period and the grace
    time. Queued messages are not touched: they have not been sent.
    """
    now = now_ms()
    with _tx(db) as conn:
        ids = list(
            conn.execute(
                select(messages.c.id)
                .where(
                    messages.c.status == "submitted", messages.c.submitted_at < submitted_before_ms
                )
                .limit(limit)
                # PostgreSQL: a receipt or another worker's sweep settling one
                # of these meanwhile would otherwise get its receipt queued twice.
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        if not ids:
            return 0
        _EXPIRE.execute(
            conn,
            {"ids": ids, "now": now, "result": Result.UNKNOWN_STATE.value,
             "text": "No final state from the carrier within the validity period"},
        )  # fmt: skip
        conn.execute(_INSERT_EVENT, [
            {"mid": i, "now": now, "event": "expired", "detail": "no receipt in time"} for i in ids
        ])  # fmt: skip
        enqueue_receipts(conn, ids, now)
        traffic.count(conn, {"expired": len(ids)}, now)
    return len(ids)


# Receipts arrive at the rate messages are sent: these statements are built
# once (plain SQL, valid on SQLite and PostgreSQL) instead of per call, and
# "delivered when every part is" is one conditional UPDATE.
# PostgreSQL: the messages a batch of receipts is about are locked first, in
# id order. Two parts of one message settled at once in two workers would
# each see the other part not yet delivered, and neither deliver it.
_LOCK_MESSAGES_PG = text(
    "SELECT id FROM messages WHERE id = ANY(CAST(:ids AS text[])) ORDER BY id FOR UPDATE"
)
_FIND_PARTS = IdListStatement(
    "SELECT carrier_id, message_id, part_no FROM message_parts WHERE carrier_id {ids}", "ids"
)
_UPDATE_PART = text(
    "UPDATE message_parts SET status = :status, carrier_state = :state, "
    "carrier_error = :error, updated_at = :now WHERE message_id = :mid AND part_no = :part"
)
# PostgreSQL: one statement for the batch (see _INSERT_PARTS_PG). A part named
# twice in one batch must be given only its last row: an UPDATE … FROM joins
# each target row once, with whichever source row comes first.
_UPDATE_PARTS_PG = text(
    "UPDATE message_parts SET status = r.status, carrier_state = r.state, "
    "carrier_error = r.error, updated_at = :now FROM unnest(CAST(:status AS text[]), "
    "CAST(:state AS text[]), CAST(:error AS text[]), CAST(:mid AS text[]), "
    "CAST(:part AS integer[])) AS r(status, state, error, mid, part) "
    "WHERE message_parts.message_id = r.mid AND message_parts.part_no = r.part"
)
_INSERT_EVENT = text(
    "INSERT INTO message_events (message_id, at, event, detail) "
    "VALUES (:mid, :now, :event, :detail)"
)
_FAIL_MESSAGES = IdListStatement(
    "UPDATE messages SET status = 'failed', result = :result, result_text = :text, "
    "final_at = :now, updated_at = :now "
    "WHERE id {ids} AND status IN ('submitted', 'submitting') RETURNING id",
    "ids",
)
# Delivered when every part submitted is (the parts rows, not the intake's
# count: `payload` sends one PDU, and a 16-bit UDH can need one part more).
# A correlated count, not NOT EXISTS: PostgreSQL turned NOT EXISTS into a hash
# anti-join over the whole message_parts table on every batch (bench/scale.py:
# 36 ms a batch at 20,000 parts, 70% of the database's time, growing with the
# table); the count looks up each message's parts by primary key.
_DELIVER_IF_COMPLETE = IdListStatement(
    "UPDATE messages SET status = 'delivered', result = '0000', result_text = 'Delivered', "
    "final_at = :now, updated_at = :now "
    "WHERE id {ids} AND status IN ('submitted', 'submitting') AND "
    "(SELECT count(*) FROM message_parts p WHERE p.message_id = messages.id "
    "AND p.status <> 'delivered') = 0 RETURNING id",
    "ids",
)


@dataclass(frozen=True, slots=True)
class Receipt:
    """A carrier receipt: its id as received then other forms of it, state and error code."""

    carrier_ids: tuple[str, ...]
    state: str
    error: str | None = None


def _columns(rows: list[dict[str, Any]], *names: str) -> dict[str, str]:
    """Rows as one array per column, for PostgreSQL's ``unnest``."""
    return {name: pg_array_literal([row[name] for row in rows]) for name in names}


def _find_parts(conn: Connection, carrier_ids: set[str]) -> dict[str, tuple[str, int]]:
    """carrier id -> (message id, part number) for the ids some part carries."""
    wanted = sorted(carrier_ids)
    where: dict[str, tuple[str, int]] = {}
    for start in range(0, len(wanted), 10_000):  # far below the databases' parameter limits
        rows = _FIND_PARTS.execute(conn, {"ids": wanted[start : start + 10_000]})
        where.update((cid, (mid, part)) for cid, mid, part in rows)
    return where


class RecordedReceipts(NamedTuple):
    found: list[str | None]  # per receipt: the message it was applied to, or None
    reports: int  # ROX receipts (callbacks, e-mails) queued for messages now final


def record_receipts(db: Engine | Connection, receipts: list[Receipt]) -> RecordedReceipts:
    """Apply carrier receipts to the parts they name; settle messages that became final.

    Returns, per receipt, the message id it was applied to, or None when no
    part carries any of its ids. Multi-part: delivered when every part is;
    failed as soon as one part fails (its code is the message's). A state
    that is not final (ENROUTE) only updates the part.
    """
    if not receipts:
        return RecordedReceipts([], 0)
    now = now_ms()
    reports = 0
    with _tx(db) as conn:
        # The id as the receipt gives it is nearly always the one stored; its
        # variants (hex/decimal, case, padding) are looked up only for misses.
        where = _find_parts(conn, {r.carrier_ids[0] for r in receipts})
        missed = {c for r in receipts if r.carrier_ids[0] not in where for c in r.carrier_ids[1:]}
        if missed:
            where.update(_find_parts(conn, missed))
        found: list[str | None] = []
        part_rows: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        failures: dict[tuple[str, str], list[str]] = {}
        delivered: list[str] = []
        for r in receipts:
            hit = next((where[c] for c in r.carrier_ids if c in where), None)
            if hit is None:
                found.append(None)
                continue
            message_id, part_no = hit
            found.append(message_id)
            result = STATE_RESULTS.get(r.state)
            status = (
                "submitted" if result is None else "delivered" if result is Result.OK else "failed"
            )
            part_rows.append(
                {
                    "status": status,
                    "state": r.state,
                    "error": r.error,
                    "now": now,
                    "mid": message_id,
                    "part": part_no,
                }
            )
            if result is Result.OK:
                delivered.append(message_id)
                continue
            events.append(
                {
                    "mid": message_id,
                    "now": now,
                    "event": "receipt",
                    "detail": f"part {part_no}: {r.state} err:{r.error or '-'}",
                }
            )
            if result is not None:
                failures.setdefault((result.value, f"Carrier reported {r.state}"), []).append(
                    message_id
                )
        if part_rows and conn.dialect.name == "postgresql":
            hit = sorted({row["mid"] for row in part_rows})
            for start in range(0, len(hit), 10_000):
                chunk = pg_array_literal(hit[start : start + 10_000])
                conn.execute(_LOCK_MESSAGES_PG, {"ids": chunk})
            last = {(row["mid"], row["part"]): row for row in part_rows}  # the later receipt wins
            columns = _columns(list(last.values()), "status", "state", "error", "mid", "part")
            conn.execute(_UPDATE_PARTS_PG, {"now": now, **columns})
        elif part_rows:
            conn.execute(_UPDATE_PART, part_rows)
        if events:
            conn.execute(_INSERT_EVENT, events)
        # Failures first: a message with a failed part must not count as delivered.
        settled: list[str] = []
        for (code, reason), ids in failures.items():
            for start in range(0, len(ids), 10_000):
                settled += _FAIL_MESSAGES.execute(
                    conn,
                    {
                        "ids": ids[start : start + 10_000],
                        "result": code,
                        "text": reason,
                        "now": now,
                    },
                ).scalars()
        failed = len(settled)
        for start in range(0, len(delivered), 10_000):
            settled += _DELIVER_IF_COMPLETE.execute(
                conn,
                {"ids": delivered[start : start + 10_000], "now": now},
            ).scalars()
        if settled:
            reports = enqueue_receipts(conn, settled, now)
            traffic.count(conn, {"failed": failed, "delivered": len(settled) - failed}, now)
    return RecordedReceipts(found, reports)


def record_receipt(
    db: Engine | Connection, carrier_ids: Iterable[str], state: str, error: str | None
) -> str | None:
    """One receipt (see :func:`record_receipts`)."""
    return record_receipts(db, [Receipt(tuple(carrier_ids), state, error)]).found[0]


def record_unmatched_receipt(
    db: Engine | Connection,
    carrier_id: str,
    state: str,
    error: str | None,
    source: str,
    destination: str,
) -> None:
    """Keep a receipt that names no submitted part (shown to the operator)."""
    with _tx(db) as conn:
        conn.execute(
            insert(unmatched_receipts),
            {
                "carrier_id": carrier_id[:64],
                "state": state[:8],
                "error": error[:16] if error else None,
                "source": source,
                "destination": destination,
                "received_at": now_ms(),
            },
        )
