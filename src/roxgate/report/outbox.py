"""The callbacks and mail outboxes: queued in the same transaction as what causes them.

A receipt is queued by the statement that makes its message final
(``dispatch/queue.py`` calls :func:`enqueue_receipts` with exactly the ids it
just settled), so a crash can lose neither the state change nor its receipt.
Workers claim rows with a lease, like the dispatcher claims messages, and
record each attempt; a callback that fails for good becomes an e-mail in the
same transaction.

On PostgreSQL many workers claim from the same outboxes at once: a claim
locks the rows it takes (``FOR UPDATE SKIP LOCKED``, SQLite renders nothing
for it), and the sweep of ended leases skips rows locked by their owner or
another sweep instead of waiting for them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Table, bindparam, select, text, update

from roxgate.report.bodies import MessageFacts, mail_for_callback, receipt_body, receipt_mail
from roxgate.rox.timefmt import format_utc
from roxgate.store.engine import immediate
from roxgate.store.idlists import IdListStatement
from roxgate.store.ids import new_id, now_ms
from roxgate.store.schema import accounts, callbacks, mail_outbox, messages, users


@contextlib.contextmanager
def _tx(db: Engine | Connection) -> Iterator[Connection]:
    if isinstance(db, Connection):
        yield db
    else:
        with immediate(db).begin() as conn:
            yield conn


_INSERT_CALLBACK = text(
    "INSERT INTO callbacks (id, account_id, kind, message_id, inbound_id, url, body, status, "
    "attempts, next_at, created_at, updated_at) VALUES (:id, :account_id, :kind, :message_id, "
    ":inbound_id, :url, :body, 'pending', 0, :now, :now, :now)"
)
_INSERT_MAIL = text(
    "INSERT INTO mail_outbox (id, account_id, kind, message_id, inbound_id, to_addr, subject, "
    "body, status, attempts, next_at, created_at, updated_at) VALUES (:id, :account_id, :kind, "
    ":message_id, :inbound_id, :to_addr, :subject, :body, 'pending', 0, :now, :now, :now)"
)


def queue_callback(
    conn: Connection,
    *,
    account_id: str,
    kind: str,
    message_id: str,
    url: str,
    body: bytes,
    now: int,
    inbound_id: str | None = None,
) -> str:
    callback_id = new_id()
    conn.execute(
        _INSERT_CALLBACK,
        {"id": callback_id, "account_id": account_id, "kind": kind, "message_id": message_id,
         "inbound_id": inbound_id, "url": url, "body": body, "now": now},
    )  # fmt: skip
    return callback_id


def queue_mail(
    conn: Connection,
    *,
    account_id: str,
    kind: str,
    message_id: str,
    to_addr: str,
    subject: str,
    body: str,
    now: int,
    inbound_id: str | None = None,
) -> str:
    mail_id = new_id()
    conn.execute(
        _INSERT_MAIL,
        {"id": mail_id, "account_id": account_id, "kind": kind, "message_id": message_id,
         "inbound_id": inbound_id, "to_addr": to_addr, "subject": subject, "body": body,
         "now": now},
    )  # fmt: skip
    return mail_id


# --- receipts ------------------------------------------------------------------

_RECEIPT_FACTS = IdListStatement(
    "SELECT m.id, m.request_id, m.account_id, u.email, m.dest_tn, m.dest_name, m.dest_email, "
    "m.text, m.product, m.result, m.result_text, m.receipt_flag, m.receipt_url "
    "FROM messages m JOIN users u ON u.id = m.user_id "
    "WHERE m.id {ids} AND (m.receipt_flag = 1 OR (m.receipt_flag = 2 AND m.result <> '0000'))",
    "ids",
)


def enqueue_receipts(conn: Connection, message_ids: Sequence[str], now: int) -> int:
    """Queue the receipts of messages that have just become final, as their ReceiptFlag asks.

    Call it once per message, in the transaction that made it final. A
    message with a ReceiptCallbackURL gets a callback; one without gets an
    e-mail to its user (SPEC.md §3). Returns how many receipts were queued.
    """
    queued = 0
    for start in range(0, len(message_ids), 5_000):
        rows = _RECEIPT_FACTS.execute(conn, {"ids": list(message_ids[start : start + 5_000])})
        hooks: list[dict[str, Any]] = []
        mails: list[dict[str, Any]] = []
        for r in rows:
            facts = MessageFacts(
                sms_id=r.id, request_id=r.request_id, account_id=r.account_id, username=r.email,
                dest_tn=r.dest_tn, dest_name=r.dest_name, dest_email=r.dest_email, text=r.text,
                product=r.product,
            )  # fmt: skip
            result, result_text = r.result or "2064", r.result_text or ""
            common = {"account_id": r.account_id, "kind": "receipt", "message_id": r.id,
                      "inbound_id": None, "now": now}  # fmt: skip
            if r.receipt_url:
                body = receipt_body(facts, result, result_text, now)
                hooks.append({**common, "id": new_id(), "url": r.receipt_url, "body": body})
            else:
                subject, mail = receipt_mail(facts, result, result_text, format_utc(now))
                mails.append({**common, "id": new_id(), "to_addr": r.email, "subject": subject,
                              "body": mail})  # fmt: skip
        if hooks:
            conn.execute(_INSERT_CALLBACK, hooks)
        if mails:
            conn.execute(_INSERT_MAIL, mails)
        queued += len(hooks) + len(mails)
    return queued


# --- callback delivery -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallbackJob:
    """A callback a worker now holds the lease on."""

    id: str
    account_id: str
    kind: str
    url: str
    body: bytes
    attempts: int  # made before this one
    secret: str  # the account's callback secret (signs the POST)
    message_id: str  # the SMS it is about (log context)


CallbackOutcome = Literal["ok", "retry", "final"]


@dataclass(frozen=True, slots=True)
class CallbackResult:
    """One attempt: ``ok`` (done), ``retry`` (again at ``next_at``) or ``final`` (give up).

    ``final`` (a 4xx other than 408/429, or the last attempt failed) turns the
    callback into an e-mail to the user in the same transaction.
    """

    id: str
    at: int
    duration_ms: int
    outcome: CallbackOutcome
    http_status: int | None = None
    error: str | None = None
    next_at: int | None = None  # for retry


# Leases that ended go back to pending before each claim. PostgreSQL: a row
# locked right now (its owner is recording or renewing it, or another worker
# sweeps it) is left for the next sweep, so claimers never queue behind it.
def _return_expired_leases(conn: Connection, outbox: Table, now: int) -> None:
    """Rows of ``outbox`` whose worker's lease ended go back to ``pending``.

    The rows are picked with ``FOR UPDATE SKIP LOCKED`` (rendered on
    PostgreSQL only), so two workers resetting at once never deadlock on them.
    """
    expired = (
        select(outbox.c.id)
        .where(outbox.c.status == "sending", outbox.c.lease_until < now)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    conn.execute(
        update(outbox)
        .where(outbox.c.id.in_(expired))
        .values(status="pending", lease_owner=None, lease_until=None, updated_at=now)
    )


def claim_callbacks(
    db: Engine | Connection, owner: str, limit: int, lease_ms: int
) -> list[CallbackJob]:
    """Up to ``limit`` pending callbacks that are due, oldest first, leased to ``owner``."""
    now = now_ms()
    with _tx(db) as conn:
        _return_expired_leases(conn, callbacks, now)
        rows = conn.execute(
            select(
                callbacks.c.id,
                callbacks.c.account_id,
                callbacks.c.kind,
                callbacks.c.url,
                callbacks.c.body,
                callbacks.c.attempts,
                accounts.c.callback_secret,
                callbacks.c.message_id,
            )
            .select_from(callbacks.join(accounts, accounts.c.id == callbacks.c.account_id))
            .where(callbacks.c.status == "pending", callbacks.c.next_at <= now)
            .order_by(callbacks.c.next_at)
            .limit(limit)
            # PostgreSQL: rows another worker is claiming are skipped; the
            # account rows joined for the secret are not locked.
            .with_for_update(skip_locked=True, of=callbacks)
        ).all()
        if rows:
            conn.execute(
                update(callbacks)
                .where(callbacks.c.id.in_([r.id for r in rows]))
                .values(status="sending", lease_owner=owner, lease_until=now + lease_ms)
            )
    return [CallbackJob(*r) for r in rows]


_CALLBACK_IDS = bindparam("ids", expanding=True)
_EXTEND_CALLBACKS = text(
    "UPDATE callbacks SET lease_until = :until "
    "WHERE id IN :ids AND status = 'sending' AND lease_owner = :owner"
).bindparams(_CALLBACK_IDS)
_RELEASE_CALLBACKS = text(
    "UPDATE callbacks SET status = 'pending', next_at = :next_at, lease_owner = NULL, "
    "lease_until = NULL, updated_at = :now "
    "WHERE id IN :ids AND status = 'sending' AND lease_owner = :owner"
).bindparams(_CALLBACK_IDS)


def extend_callback_leases(
    db: Engine | Connection, owner: str, ids: Sequence[str], lease_ms: int
) -> int:
    """Renew ``owner``'s leases on ``ids``: callbacks it holds, queued behind a slow
    host or in flight, must not come back to another claim meanwhile."""
    now, changed = now_ms(), 0
    with _tx(db) as conn:
        for start in range(0, len(ids), 5_000):
            chunk = list(ids[start : start + 5_000])
            params = {"ids": chunk, "until": now + lease_ms, "owner": owner}
            changed += conn.execute(_EXTEND_CALLBACKS, params).rowcount
    return changed


def release_callbacks(db: Engine | Connection, owner: str, ids: Sequence[str], next_at: int) -> int:
    """Give back callbacks claimed but never posted, due again at ``next_at``; no
    attempt is counted (nothing was sent)."""
    now, changed = now_ms(), 0
    with _tx(db) as conn:
        for start in range(0, len(ids), 5_000):
            chunk = list(ids[start : start + 5_000])
            params = {"ids": chunk, "next_at": next_at, "now": now, "owner": owner}
            changed += conn.execute(_RELEASE_CALLBACKS, params).rowcount
    return changed


_ATTEMPT = text(
    "INSERT INTO callback_attempts (callback_id, at, duration_ms, http_status, outcome, error) "
    "VALUES (:id, :at, :duration_ms, :http_status, :outcome, :error)"
)
_CALLBACK_DONE = text(
    "UPDATE callbacks SET status = :status, attempts = attempts + 1, next_at = :next_at, "
    "last_error = :error, lease_owner = NULL, lease_until = NULL, updated_at = :now "
    "WHERE id = :id AND status = 'sending' AND lease_owner = :owner"
)


def record_callback_attempts(
    db: Engine | Connection, owner: str, results: Sequence[CallbackResult]
) -> int:
    """Record attempts and their consequences; returns how many callbacks became e-mails.

    Every attempt is recorded, even one whose lease was lost meanwhile (it
    happened); only the lease holder changes the callback's state.
    """
    if not results:
        return 0
    now = now_ms()
    with _tx(db) as conn:
        conn.execute(
            _ATTEMPT,
            [{"id": r.id, "at": r.at, "duration_ms": r.duration_ms, "http_status": r.http_status,
              "outcome": r.outcome, "error": r.error} for r in results],
        )  # fmt: skip
        status = {"ok": "delivered", "retry": "pending", "final": "failed"}

        def done(r: CallbackResult) -> dict[str, Any]:
            return {"status": status[r.outcome], "next_at": r.next_at or now, "error": r.error,
                    "now": now, "id": r.id, "owner": owner}  # fmt: skip

        # Delivered and retried ones in one executemany (a statement each cost
        # more than the POST); a final one needs its own row count, to e-mail
        # only what this owner still held.
        plain = [done(r) for r in results if r.outcome != "final"]
        if plain:
            conn.execute(_CALLBACK_DONE, plain)
        mailed = 0
        for r in results:
            if r.outcome == "final" and conn.execute(_CALLBACK_DONE, done(r)).rowcount:
                mailed += _callback_to_mail(conn, r.id, now)
    return mailed


def _callback_to_mail(conn: Connection, callback_id: str, now: int) -> int:
    """The e-mail that replaces a callback that failed for good."""
    row = conn.execute(
        select(
            callbacks.c.kind,
            callbacks.c.message_id,
            callbacks.c.inbound_id,
            callbacks.c.account_id,
            callbacks.c.body,
            messages.c.dest_name,
            messages.c.dest_email,
            messages.c.product,
            messages.c.text,
            users.c.email,
        )
        .select_from(
            callbacks.join(messages, messages.c.id == callbacks.c.message_id).join(
                users, users.c.id == messages.c.user_id
            )
        )
        .where(callbacks.c.id == callback_id)
    ).first()
    if row is None:
        return 0
    subject, body = mail_for_callback(row._asdict())
    queue_mail(
        conn, account_id=row.account_id, kind=row.kind, message_id=row.message_id,
        to_addr=row.email, subject=subject, body=body, now=now, inbound_id=row.inbound_id,
    )  # fmt: skip
    return 1


# --- mail delivery ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MailJob:
    id: str
    to_addr: str
    subject: str
    body: str
    attempts: int  # made before this one


@dataclass(frozen=True, slots=True)
class MailResult:
    """``sent``; or not, then again at ``next_at`` (None: give up, status failed)."""

    id: str
    sent: bool
    error: str | None = None
    next_at: int | None = None


def claim_mail(db: Engine | Connection, owner: str, limit: int, lease_ms: int) -> list[MailJob]:
    """Up to ``limit`` pending e-mails that are due, oldest first, leased to ``owner``."""
    now = now_ms()
    with _tx(db) as conn:
        _return_expired_leases(conn, mail_outbox, now)
        rows = conn.execute(
            select(
                mail_outbox.c.id,
                mail_outbox.c.to_addr,
                mail_outbox.c.subject,
                mail_outbox.c.body,
                mail_outbox.c.attempts,
            )
            .where(mail_outbox.c.status == "pending", mail_outbox.c.next_at <= now)
            .order_by(mail_outbox.c.next_at)
            .limit(limit)
            .with_for_update(skip_locked=True, of=mail_outbox)
        ).all()
        if rows:
            conn.execute(
                update(mail_outbox)
                .where(mail_outbox.c.id.in_([r.id for r in rows]))
                .values(status="sending", lease_owner=owner, lease_until=now + lease_ms)
            )
    return [MailJob(*r) for r in rows]


_MAIL_DONE = text(
    "UPDATE mail_outbox SET status = :status, attempts = attempts + 1, next_at = :next_at, "
    "last_error = :error, sent_at = :sent_at, lease_owner = NULL, lease_until = NULL, "
    "updated_at = :now WHERE id = :id AND status = 'sending' AND lease_owner = :owner"
)


def record_mail_results(db: Engine | Connection, owner: str, results: Sequence[MailResult]) -> None:
    if not results:
        return
    now = now_ms()
    with _tx(db) as conn:
        conn.execute(
            _MAIL_DONE,
            [
                {
                    "status": "sent" if r.sent else "pending" if r.next_at else "failed",
                    "next_at": r.next_at or now,
                    "error": r.error,
                    "sent_at": now if r.sent else None,
                    "now": now,
                    "id": r.id,
                    "owner": owner,
                }
                for r in results
            ],
        )
