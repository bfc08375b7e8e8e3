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

from sqlalchemy import Engine, select

from roxgate.store.schema import message_events, message_parts, messages


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
    if row["final_at"] is not None:
        steps.append(Step(row["final_at"], row["status"], f"{row['result']} {row['result_text']}"))
    steps.sort(key=lambda s: s.at)
    return dict(row), steps


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
