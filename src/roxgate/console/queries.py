"""What the console's pages read, as plain functions of the engine (no SQL in templates).

Every query here is bounded. The messages table is indexed only on its id,
``(status, due_at)`` and ``request_id`` (an index on the number halved the
insert rate), so a search by number, account, Product or status scans: it is
held to a time window through the ids, which are UUIDv7 and so sort by
creation time (a window of time is a range of ids), and to a row limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, and_, case, func, or_, select

from roxgate.console.charts import Chart, traffic_chart
from roxgate.store import traffic
from roxgate.store.backlog import backlog
from roxgate.store.ids import now_ms
from roxgate.store.schema import (
    callbacks,
    message_parts,
    messages,
    number_lists,
    requests,
    unmatched_receipts,
    users,
)
from roxgate.store.usage import id_floor
from roxgate.store.workers import live_workers

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
MESSAGE_STATUSES = ("queued", "submitting", "submitted", "delivered", "failed", "expired")
SEARCH_DAYS = (1, 7, 30, 90)
SEARCH_LIMIT = 200
LIST_LIMIT = 100


# --- overview -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Overview:
    hour: Chart
    day: Chart
    hour_totals: dict[str, int]
    day_totals: dict[str, int]
    due_now: int  # queued and due: the send queue
    scheduled: int  # queued for later (SendLater)
    next_scheduled_at: int | None
    submitting: int
    awaiting_receipt: int
    callbacks_retrying: int
    callbacks_failed_day: int
    mail_pending: int
    workers: list[dict[str, Any]] = field(default_factory=list)


def _count(conn: Any, table: Any, *where: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def overview(engine: Engine, now: int | None = None) -> Overview:
    now = now_ms() if now is None else now
    minute = now // MINUTE_MS
    with engine.connect() as conn:
        day_counts = traffic.per_minute(conn, now - DAY_MS, now)
        hour_start = (minute - 59) * MINUTE_MS
        hour_counts = {
            kind: {m: n for m, n in per.items() if m * MINUTE_MS >= hour_start}
            for kind, per in day_counts.items()
        }
        waiting = backlog(conn, now)
        next_at = conn.execute(
            select(func.min(messages.c.due_at)).where(
                messages.c.status == "queued", messages.c.due_at > now
            )
        ).scalar_one()
        retrying = _count(
            conn,
            callbacks,
            callbacks.c.status.in_(("pending", "sending")),
            callbacks.c.attempts > 0,
        )
        failed_day = _count(
            conn, callbacks, callbacks.c.status == "failed", callbacks.c.updated_at >= now - DAY_MS
        )
        workers = live_workers(conn)
    return Overview(
        hour=traffic_chart("Last hour", hour_counts, minute, 60, 1, label_every=10),
        day=traffic_chart("Last 24 hours", day_counts, minute, 96, 15, label_every=16),
        hour_totals=_totals(hour_counts),
        day_totals=_totals(day_counts),
        due_now=waiting["queued"],
        scheduled=waiting["scheduled"],
        next_scheduled_at=next_at,
        submitting=waiting["submitting"],
        awaiting_receipt=waiting["submitted"],
        callbacks_retrying=retrying,
        callbacks_failed_day=failed_day,
        mail_pending=waiting["mail"],
        workers=workers,
    )


def _totals(counts: dict[str, dict[int, int]]) -> dict[str, int]:
    return {kind: sum(counts.get(kind, {}).values()) for kind in traffic.KINDS}


# --- messages -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageSearch:
    number: str = ""
    sms_id: str = ""
    request_id: str = ""
    account: str = ""
    product: str = ""
    status: str = ""
    days: int = 1

    @classmethod
    def from_query(cls, params: Any) -> MessageSearch:
        def text(name: str, limit: int) -> str:
            return str(params.get(name, "")).strip()[:limit]

        status = text("status", 16)
        try:
            days = int(params.get("days", 1))
        except ValueError:
            days = 1
        return cls(
            number=text("number", 32),
            sms_id=text("sms_id", 36).lower(),
            request_id=text("request_id", 36).lower(),
            account=text("account", 10).upper(),
            product=text("product", 100),
            status=status if status in MESSAGE_STATUSES else "",
            days=days if days in SEARCH_DAYS else 1,
        )

    @property
    def given(self) -> bool:
        return any((self.number, self.sms_id, self.request_id, self.account, self.product,
                    self.status))  # fmt: skip

    @property
    def by_id(self) -> bool:
        """An SMSId or RequestId finds its messages through an index, at any age."""
        return bool(self.sms_id or self.request_id)


def _number_filter(number: str) -> Any:
    """An E.164 number matches exactly; digits without ``+`` match the end of the
    number, so a national ``0407 555 001`` finds ``+61407555001``."""
    digits = re.sub(r"\D", "", number)
    if not digits:
        return None
    if number.lstrip().startswith("+"):
        return messages.c.dest_tn == "+" + digits
    return messages.c.dest_tn.endswith(digits.lstrip("0") or digits, autoescape=True)


def search_messages(
    engine: Engine, search: MessageSearch, now: int | None = None, limit: int = SEARCH_LIMIT
) -> list[dict[str, Any]]:
    """Messages matching every field given, newest first (at most ``limit``)."""
    now = now_ms() if now is None else now
    where: list[Any] = []
    if search.sms_id:
        where.append(messages.c.id == search.sms_id)
    if search.request_id:
        where.append(messages.c.request_id == search.request_id)
    if not search.by_id:
        where.append(messages.c.id >= id_floor(now - search.days * DAY_MS))
    if search.number:
        number = _number_filter(search.number)
        if number is None:
            return []
        where.append(number)
    if search.account:
        where.append(messages.c.account_id == search.account)
    if search.product:
        where.append(messages.c.product == search.product)
    if search.status:
        where.append(messages.c.status == search.status)
    query = (
        select(
            messages.c.id,
            messages.c.request_id,
            messages.c.account_id,
            messages.c.product,
            messages.c.dest_tn,
            messages.c.status,
            messages.c.result,
            messages.c.parts,
            messages.c.created_at,
            messages.c.due_at,
        )
        .where(*where)
        .order_by(messages.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def message_extras(engine: Engine, sms_id: str, request_id: str) -> dict[str, Any]:
    """What the message page shows besides its history: the parts and the request."""
    with engine.connect() as conn:
        parts = conn.execute(
            select(message_parts)
            .where(message_parts.c.message_id == sms_id)
            .order_by(message_parts.c.part_no)
        ).mappings()
        request = conn.execute(
            select(
                requests.c.id,
                requests.c.product,
                requests.c.client_ip,
                requests.c.recipients,
                requests.c.queued,
                requests.c.received_at,
                users.c.email,
            )
            .select_from(requests.outerjoin(users, users.c.id == requests.c.user_id))
            .where(requests.c.id == request_id)
        ).mappings().first()  # fmt: skip
        return {"parts": [dict(p) for p in parts], "intake": dict(request) if request else None}


# --- inbound ------------------------------------------------------------------------


def unmatched_receipts_recent(engine: Engine, limit: int = LIST_LIMIT) -> list[dict[str, Any]]:
    """Receipts that named no message we submitted (kept, never dropped)."""
    query = select(unmatched_receipts).order_by(unmatched_receipts.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


# --- callbacks ----------------------------------------------------------------------


def failing_endpoints(
    engine: Engine, now: int | None = None, days: int = 7
) -> list[dict[str, Any]]:
    """Callback URLs with failed or retrying callbacks in the last ``days``, worst first."""
    now = now_ms() if now is None else now
    trouble = or_(
        callbacks.c.status == "failed",
        and_(callbacks.c.status.in_(("pending", "sending")), callbacks.c.attempts > 0),
    )
    failed = func.sum(case((callbacks.c.status == "failed", 1), else_=0))
    query = (
        select(
            callbacks.c.account_id,
            callbacks.c.url,
            func.count().label("callbacks"),
            failed.label("failed"),
            func.max(callbacks.c.updated_at).label("last_at"),
        )
        .where(trouble, callbacks.c.updated_at >= now - days * DAY_MS)
        .group_by(callbacks.c.account_id, callbacks.c.url)
        .order_by(func.count().desc(), callbacks.c.url)
        .limit(LIST_LIMIT)
    )
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
        for row in rows:
            # The latest error tells the operator what the endpoint answers.
            row["last_error"] = conn.execute(
                select(callbacks.c.last_error)
                .where(
                    callbacks.c.account_id == row["account_id"],
                    callbacks.c.url == row["url"],
                    callbacks.c.last_error.is_not(None),
                    callbacks.c.updated_at >= now - days * DAY_MS,
                )
                .order_by(callbacks.c.updated_at.desc())
                .limit(1)
            ).scalar_one_or_none()
    return rows


def retry_queue(engine: Engine, limit: int = LIST_LIMIT) -> list[dict[str, Any]]:
    """Callbacks that failed at least once and will be tried again, soonest first."""
    query = (
        select(
            callbacks.c.id,
            callbacks.c.kind,
            callbacks.c.account_id,
            callbacks.c.message_id,
            callbacks.c.url,
            callbacks.c.status,
            callbacks.c.attempts,
            callbacks.c.next_at,
            callbacks.c.last_error,
        )
        .where(callbacks.c.status.in_(("pending", "sending")), callbacks.c.attempts > 0)
        .order_by(callbacks.c.next_at)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


# --- accounts -----------------------------------------------------------------------


def number_list_counts(engine: Engine) -> dict[str, dict[str, int]]:
    """account → {"block": n, "optout": n}."""
    query = select(number_lists.c.account_id, number_lists.c.kind, func.count()).group_by(
        number_lists.c.account_id, number_lists.c.kind
    )
    out: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for account_id, kind, n in conn.execute(query):
            out.setdefault(account_id, {})[kind] = int(n)
    return out


def user_counts(engine: Engine) -> dict[str, int]:
    query = select(users.c.account_id, func.count()).group_by(users.c.account_id)
    with engine.connect() as conn:
        return {account_id: int(n) for account_id, n in conn.execute(query)}


def account_numbers(
    engine: Engine, account_id: str, limit: int = LIST_LIMIT
) -> list[dict[str, Any]]:
    """The newest entries of an account's block and opt-out lists."""
    query = (
        select(number_lists.c.kind, number_lists.c.number, number_lists.c.created_at)
        .where(number_lists.c.account_id == account_id)
        .order_by(number_lists.c.created_at.desc(), number_lists.c.number)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]
