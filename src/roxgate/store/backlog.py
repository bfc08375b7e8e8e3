"""How much work is waiting, for ``/metrics``: counts the indexes answer alone.

Only live states are counted (messages not yet final, callbacks and e-mails
not yet done): each is a range of the ``(status, due_at)`` / ``(status,
next_at)`` index, so the count reads index entries, never the rows, and
never the ever-growing final states. How many messages ended how is counted
as it happens instead (``store.traffic``).
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import ColumnElement, Connection, Engine, Table, func, select

from roxgate.store.schema import callbacks, mail_outbox, messages

# Message states a gauge is kept for; ``queued`` is split by whether it is due.
MESSAGE_STATES: Final = ("queued", "scheduled", "submitting", "submitted")
# Outbox rows not yet done: waiting for their turn, or being sent right now.
_UNDONE: Final = ("pending", "sending")


def _count(table: Table, *where: ColumnElement[bool]) -> Any:
    return select(func.count()).select_from(table).where(*where).scalar_subquery()


def backlog(db: Engine | Connection, now_ms: int) -> dict[str, int]:
    """Messages by live state (``queued`` is due by ``now_ms``, ``scheduled`` later),
    and ``callbacks`` / ``mail`` not yet done, in one round trip."""
    m = messages.c
    query = select(
        _count(messages, m.status == "queued", m.due_at <= now_ms).label("queued"),
        _count(messages, m.status == "queued", m.due_at > now_ms).label("scheduled"),
        _count(messages, m.status == "submitting").label("submitting"),
        _count(messages, m.status == "submitted").label("submitted"),
        _count(callbacks, callbacks.c.status.in_(_UNDONE)).label("callbacks"),
        _count(mail_outbox, mail_outbox.c.status.in_(_UNDONE)).label("mail"),
    )
    if isinstance(db, Engine):
        with db.connect() as conn:
            row = conn.execute(query).one()
    else:
        row = db.execute(query).one()
    return {key: int(value) for key, value in row._mapping.items()}
