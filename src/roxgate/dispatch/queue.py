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
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, func, insert, select, text, update

from roxgate.rox.codes import Result
from roxgate.store.engine import immediate
from roxgate.store.ids import new_id, now_ms
from roxgate.store.schema import accounts, inbound, message_events, message_parts, messages

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


def claim_due(engine: Engine | Connection, owner: str, limit: int, lease_ms: int) -> list[Claimed]:
    """Up to ``limit`` due messages, oldest due first, leased to ``owner``."""
    now = now_ms()
    with _tx(engine) as conn:
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
        ).all()
        if not rows:
            return []
        ids = [r.id for r in rows]
        conn.execute(
            update(messages)
            .where(messages.c.id.in_(ids))
            .values(
                status="submitting",
                lease_owner=owner,
                lease_until=now + lease_ms,
                attempts=messages.c.attempts + 1,
                updated_at=now,
            )
        )
    return [Claimed(*r[:7], attempts=r.attempts + 1) for r in rows]


def release_expired(engine: Engine | Connection) -> int:
    """Return messages whose lease ended (their worker died or stalled) to the queue."""
    now = now_ms()
    with _tx(engine) as conn:
        result = conn.execute(
            update(messages)
            .where(messages.c.status == "submitting", messages.c.lease_until < now)
            .values(status="queued", lease_owner=None, lease_until=None, updated_at=now)
        )
    return result.rowcount


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


def record_submitted(
    engine: Engine | Connection, owner: str, message_id: str, accepted: Iterable[PartAccepted]
) -> bool:
    now = now_ms()
    parts = list(accepted)
    with _tx(engine) as conn:
        done = conn.execute(
            update(messages)
            .where(_owned(message_id, owner))
            .values(
                status="submitted",
                submitted_at=now,
                lease_owner=None,
                lease_until=None,
                updated_at=now,
            )
        ).rowcount
        if not done:
            return False
        conn.execute(
            insert(message_parts),
            [
                {
                    "message_id": message_id,
                    "part_no": p.part_no,
                    "carrier_id": p.carrier_id,
                    "status": "submitted",
                    "submitted_at": now,
                    "updated_at": now,
                }
                for p in parts
            ],
        )
        conn.execute(
            insert(message_events),
            _event(message_id, now, "submitted", ",".join(p.carrier_id for p in parts)),
        )
    return True


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
    return _release(
        engine, owner, message_id, "failed", text,
        status="failed", result=result.value, result_text=text, final_at=now_ms(),
    )  # fmt: skip


def record_retry(
    engine: Engine | Connection, owner: str, message_id: str, delay_ms: int, reason: str
) -> bool:
    """Back to the queue, due again after ``delay_ms``."""
    return _release(
        engine, owner, message_id, "retry", reason, status="queued", due_at=now_ms() + delay_ms
    )


# Receipts arrive at the rate messages are sent: these statements are built
# once (plain SQL, valid on SQLite and PostgreSQL) instead of per call, and
# "delivered when every part is" is one conditional UPDATE.
_FIND_PART = text(
    "SELECT message_id, part_no FROM message_parts WHERE carrier_id IN :ids LIMIT 1"
).bindparams(bindparam("ids", expanding=True))
_UPDATE_PART = text(
    "UPDATE message_parts SET status = :status, carrier_state = :state, "
    "carrier_error = :error, updated_at = :now WHERE message_id = :mid AND part_no = :part"
)
_INSERT_EVENT = text(
    "INSERT INTO message_events (message_id, at, event, detail) "
    "VALUES (:mid, :now, :event, :detail)"
)
_FAIL_MESSAGE = text(
    "UPDATE messages SET status = 'failed', result = :result, result_text = :text, "
    "final_at = :now, updated_at = :now "
    "WHERE id = :mid AND status IN ('submitted', 'submitting')"
)
_DELIVER_IF_COMPLETE = text(
    "UPDATE messages SET status = 'delivered', result = '0000', result_text = 'Delivered', "
    "final_at = :now, updated_at = :now "
    "WHERE id = :mid AND status IN ('submitted', 'submitting') AND parts = "
    "(SELECT count(*) FROM message_parts WHERE message_id = :mid AND status = 'delivered')"
)


def record_receipt(
    engine: Engine | Connection, carrier_ids: Iterable[str], state: str, error: str | None
) -> str | None:
    """Apply a carrier receipt to the part it names; settle the message when it is final.

    Returns the message id, or None when no part carries any of ``carrier_ids``
    (the variants of the receipt's id). Multi-part: delivered when every part
    is; failed as soon as one part fails (its code is the message's).
    """
    now = now_ms()
    result = STATE_RESULTS.get(state)
    with _tx(engine) as conn:
        part = conn.execute(_FIND_PART, {"ids": list(carrier_ids)}).first()
        if part is None:
            return None
        message_id, part_no = part
        part_status = (
            "submitted" if result is None else "delivered" if result is Result.OK else "failed"
        )
        conn.execute(
            _UPDATE_PART,
            {"status": part_status, "state": state, "error": error, "now": now,
             "mid": message_id, "part": part_no},
        )  # fmt: skip
        conn.execute(
            _INSERT_EVENT,
            {"mid": message_id, "now": now, "event": "receipt",
             "detail": f"part {part_no}: {state} err:{error or '-'}"},
        )  # fmt: skip
        if result is Result.OK:
            conn.execute(_DELIVER_IF_COMPLETE, {"now": now, "mid": message_id})
        elif result is not None:  # ENROUTE and the like are not final
            conn.execute(
                _FAIL_MESSAGE,
                {"result": result.value, "text": f"Carrier reported {state}", "now": now,
                 "mid": message_id},
            )  # fmt: skip
    return message_id


def record_inbound(engine: Engine | Connection, source: str, destination: str, text: str) -> str:
    """Store a mobile-originated message (before the carrier is answered)."""
    inbound_id = new_id()
    with _tx(engine) as conn:
        conn.execute(
            insert(inbound),
            {
                "id": inbound_id,
                "source": source,
                "destination": destination,
                "text": text,
                "received_at": now_ms(),
            },
        )
    return inbound_id
