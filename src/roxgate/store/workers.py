"""The registry of sending processes: who is alive, so that limits can be shared.

Each process that sends (``--role worker`` or ``all``) registers and beats
every few seconds; one whose heartbeat is older than ``stale_ms`` is gone
(killed, stalled, its machine lost) and no longer counts. The row of a
process that stops cleanly is deleted at once.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, func, insert, select, update

from roxgate.store.ids import now_ms
from roxgate.store.schema import workers

STALE_MS = 15_000  # three missed heartbeats of 5 s


def register(conn: Connection, worker_id: str, role: str) -> None:
    now = now_ms()
    conn.execute(delete(workers).where(workers.c.id == worker_id))
    conn.execute(
        insert(workers),
        {"id": worker_id, "role": role, "started_at": now, "heartbeat_at": now},
    )


def heartbeat(conn: Connection, worker_id: str, role: str, stale_ms: int = STALE_MS) -> int:
    """Beat for ``worker_id`` (registering again if its row was purged); how many are alive."""
    now = now_ms()
    if not conn.execute(
        update(workers).where(workers.c.id == worker_id).values(heartbeat_at=now)
    ).rowcount:
        register(conn, worker_id, role)
    # Rows of the long dead are purged, so the table stays the size of the fleet.
    conn.execute(delete(workers).where(workers.c.heartbeat_at < now - 10 * stale_ms))
    alive = conn.execute(
        select(func.count()).select_from(workers).where(workers.c.heartbeat_at >= now - stale_ms)
    ).scalar_one()
    return max(1, int(alive))


def deregister(conn: Connection, worker_id: str) -> None:
    conn.execute(delete(workers).where(workers.c.id == worker_id))


def live_workers(conn: Connection, stale_ms: int = STALE_MS) -> list[dict[str, object]]:
    """The live sending processes, for operators."""
    rows = conn.execute(
        select(workers).where(workers.c.heartbeat_at >= now_ms() - stale_ms).order_by(workers.c.id)
    ).mappings()
    return [dict(r) for r in rows]


def behind(conn: Connection, worker_id: str, since_ms: int, stale_ms: int = STALE_MS) -> int:
    """Live workers, other than ``worker_id``, that have not beaten since ``since_ms``.

    A worker joining a fleet waits until this is 0: every other one has then
    counted it at a heartbeat and slowed to its smaller TPS share.
    """
    now = now_ms()
    return int(
        conn.execute(
            select(func.count())
            .select_from(workers)
            .where(
                workers.c.id != worker_id,
                workers.c.heartbeat_at >= now - stale_ms,
                workers.c.heartbeat_at < since_ms,
            )
        ).scalar_one()
    )
