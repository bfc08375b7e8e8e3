"""What happened to a message, for operators: ``roxgate message show`` (and the console later).

The normal path is read from the message and part rows (intake, claim,
submission with carrier ids, receipts, final state); ``message_events``
adds what those rows do not keep (retries, failures, expiry, non-final
receipts).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, select

from roxgate.store.schema import (
    callback_attempts,
    callbacks,
    inbound,
    mail_outbox,
    message_events,
    message_parts,
    messages,
)


def iso(ms: int) -> str:
    """UTC time with milliseconds: 2026-11-25T11:14:56.848Z."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


@dataclass(frozen=True, slots=True)
class Step:
    at: int  # ms since the epoch
    what: str
    detail: str = ""


def message_history(engine: Engine, sms_id: str) -> tuple[dict[str, Any], list[Step]] | None:
    """The message row and its steps in time order; None if there is no such message."""
    with engine.connect() as conn:
        row = conn.execute(select(messages).where(messages.c.id == sms_id)).mappings().first()
        if row is None:
            return None
        parts = conn.execute(
            select(message_parts)
            .where(message_parts.c.message_id == sms_id)
            .order_by(message_parts.c.part_no)
        ).mappings()
        events = conn.execute(
            select(message_events)
            .where(message_events.c.message_id == sms_id)
            .order_by(message_events.c.id)
        ).mappings()
        scheduled = row["due_at"] > row["created_at"] + 1000
        steps = [
            Step(row["created_at"], "queued", f"due {iso(row['due_at'])}" if scheduled else "")
        ]
        for part in parts:
            steps.append(
                Step(
                    part["submitted_at"],
                    "submitted",
                    f"part {part['part_no']}/{row['parts']} carrier id {part['carrier_id']}",
                )
            )
            if part["carrier_state"]:
                steps.append(
                    Step(
                        part["updated_at"],
                        f"receipt {part['carrier_state']}",
                        f"part {part['part_no']} err:{part['carrier_error'] or '-'}",
                    )
                )
        steps += [Step(e["at"], e["event"], e["detail"] or "") for e in events]
        steps += _reporting_steps(conn, sms_id)
    if row["final_at"] is not None:
        steps.append(Step(row["final_at"], row["status"], f"{row['result']} {row['result_text']}"))
    steps.sort(key=lambda s: s.at)
    return dict(row), steps


def _reporting_steps(conn: Connection, sms_id: str) -> list[Step]:
    """Replies, callbacks (each attempt) and e-mails about the message."""
    steps: list[Step] = []
    for r in conn.execute(
        select(inbound.c.received_at, inbound.c.source, inbound.c.text, inbound.c.action).where(
            inbound.c.matched_message_id == sms_id
        )
    ):
        steps.append(Step(r.received_at, "reply", f"from {r.source} ({r.action}): {r.text!r}"))
    hooks = conn.execute(
        select(callbacks.c.id, callbacks.c.kind, callbacks.c.url, callbacks.c.created_at).where(
            callbacks.c.message_id == sms_id
        )
    ).all()
    for h in hooks:
        steps.append(Step(h.created_at, f"{h.kind} callback", f"queued for {h.url}"))
    if hooks:
        for a in conn.execute(
            select(callback_attempts).where(
                callback_attempts.c.callback_id.in_([h.id for h in hooks])
            )
        ):
            status = f"HTTP {a.http_status}" if a.http_status is not None else "no answer"
            error = f" {a.error}" if a.error else ""
            steps.append(
                Step(a.at, "callback attempt", f"{a.outcome}: {status}, {a.duration_ms} ms{error}")
            )
    for m in conn.execute(
        select(
            mail_outbox.c.kind, mail_outbox.c.to_addr, mail_outbox.c.status,
            mail_outbox.c.created_at, mail_outbox.c.sent_at, mail_outbox.c.last_error,
        ).where(mail_outbox.c.message_id == sms_id)
    ):  # fmt: skip
        steps.append(Step(m.created_at, f"{m.kind} e-mail", f"to {m.to_addr} ({m.status})"))
        if m.sent_at is not None:
            steps.append(Step(m.sent_at, "e-mail sent", f"to {m.to_addr}"))
    return steps


def recent_messages(
    engine: Engine, limit: int = 20, status: str | None = None
) -> list[dict[str, Any]]:
    """The newest messages (UUIDv7 ids sort by creation time)."""
    query = select(
        messages.c.id,
        messages.c.account_id,
        messages.c.dest_tn,
        messages.c.status,
        messages.c.result,
        messages.c.parts,
        messages.c.created_at,
    )
    if status:
        query = query.where(messages.c.status == status)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(messages.c.id.desc()).limit(limit)).mappings()
        return [dict(r) for r in rows]


def _newest(
    engine: Engine, table: Table, columns: list[str], limit: int, where: Any = None
) -> list[dict[str, Any]]:
    """The newest rows of ``table`` (UUIDv7 ids sort by creation time)."""
    query = select(*(table.c[name] for name in columns))
    if where is not None:
        query = query.where(where)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(table.c.id.desc()).limit(limit)).mappings()
        return [dict(r) for r in rows]


def recent_inbound(
    engine: Engine, limit: int = 20, unmatched_only: bool = False
) -> list[dict[str, Any]]:
    """The newest inbound SMS, with what was done with each."""
    columns = ["id", "received_at", "source", "destination", "account_id",
               "matched_message_id", "action", "text"]  # fmt: skip
    where = inbound.c.matched_message_id.is_(None) if unmatched_only else None
    return _newest(engine, inbound, columns, limit, where)


def recent_mail(engine: Engine, limit: int = 20, status: str | None = None) -> list[dict[str, Any]]:
    """The newest e-mails of the outbox (pending ones wait for SMTP)."""
    columns = ["id", "created_at", "kind", "account_id", "to_addr", "status", "attempts",
               "subject", "body", "last_error"]  # fmt: skip
    where = mail_outbox.c.status == status if status else None
    return _newest(engine, mail_outbox, columns, limit, where)


def recent_callbacks(
    engine: Engine, limit: int = 20, status: str | None = None
) -> list[dict[str, Any]]:
    """The newest callbacks with their attempt count and last error."""
    columns = ["id", "created_at", "kind", "account_id", "message_id", "url", "status",
               "attempts", "next_at", "last_error"]  # fmt: skip
    where = callbacks.c.status == status if status else None
    return _newest(engine, callbacks, columns, limit, where)
