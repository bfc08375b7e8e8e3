"""Replies: an inbound SMS matched to the message it answers, and forwarded (SPEC.md §3).

:func:`record_inbound` runs in the transaction that stores the inbound SMS,
before the carrier's ``deliver_sm`` is answered: the match, the opt-out
change and whatever the reply is forwarded as (a callback, an e-mail, an SMS
to the user's mobile) are committed together or not at all. A crash before
the commit makes the carrier deliver the SMS again: nothing is lost. A crash
after the commit but before the answer reaches the carrier makes it deliver
the SMS once more, and it is forwarded twice (at-least-once, like every
callback).

Matching: the most recent message *submitted* to the sender's number within
the reply window (7 days by default), whatever the account. ``recent_sends``
keeps one row per number, written with each submission, so the match is one
primary-key read (``messages`` deliberately has no index on ``dest_tn``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, text

from roxgate.report.bodies import MessageFacts, reply_body, reply_mail
from roxgate.report.outbox import queue_callback, queue_mail
from roxgate.rox.timefmt import format_utc
from roxgate.sms.phone import normalise
from roxgate.sms.text import decode_user_data, measure
from roxgate.store.ids import new_id, now_ms

# SPEC.md §3: the whole text, any case, surrounding spaces ignored.
OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN_WORDS = frozenset({"START", "UNSTOP"})

# Product of the SMS roxgate sends to a user's mobile to forward a reply
# (ReplyType S/B): reports show them apart from the customer's own traffic.
FORWARD_PRODUCT = "roxgate:reply-forward"

Keyword = Literal["optout", "optin"]


def opt_keyword(reply_text: str) -> Keyword | None:
    word = reply_text.strip().upper()
    if word in OPT_OUT_WORDS:
        return "optout"
    if word in OPT_IN_WORDS:
        return "optin"
    return None


_NOT_DIGITS = re.compile(r"[\s().-]")


def sender_e164(source_addr: str, ton: int | None = None) -> str | None:
    """The E.164 form of an inbound SMS's source address, when it has one.

    Carriers send the originator as ``61407555001`` (TON 1, international),
    ``+61407555001``, or ``0061407555001``. A national form (``0407…``) would
    need the carrier's country, which an address alone does not tell, so it
    is kept as received and matches nothing. Alphanumeric originators (a
    short code or a name) likewise.
    """
    raw = _NOT_DIGITS.sub("", source_addr.strip())
    if raw.startswith("+"):
        digits = raw[1:]
    elif raw.startswith("00"):
        digits = raw[2:]
    elif ton in (1, None, 0) and not raw.startswith("0"):
        # TON 1 says so; TON 0 (unknown) from carriers is nearly always the
        # international digits without the plus.
        digits = raw
    else:
        return None
    if not digits.isdigit() or not 7 <= len(digits) <= 15:
        return None
    parsed = normalise("+" + digits, "ZZ")
    return parsed.e164 if parsed is not None else None


@dataclass(frozen=True, slots=True)
class InboundResult:
    """What became of an inbound SMS (stored in ``inbound.action`` too)."""

    inbound_id: str
    matched_message_id: str | None
    action: str  # e.g. "callback", "mail", "sms+mail", "unmatched"; "+optout"/"+optin" added
    sms_queued: bool = False  # a forward to the user's mobile waits for the dispatcher


_MATCH = text(
    "SELECT m.id, m.request_id, m.account_id, m.user_id, m.dest_tn, m.dest_name, "
    "m.dest_email, m.text, m.product, m.reply_type, m.reply_url, "
    "u.email, u.mobile, a.region, a.credits, a.status AS account_status, a.allowed_countries "
    "FROM recent_sends r JOIN messages m ON m.id = r.message_id "
    "JOIN users u ON u.id = m.user_id JOIN accounts a ON a.id = m.account_id "
    "WHERE r.dest_tn = :tn AND r.submitted_at >= :since"
)
_INSERT_INBOUND = text(
    "INSERT INTO inbound (id, source, destination, text, received_at, matched_message_id, "
    "account_id, action) VALUES (:id, :source, :destination, :text, :now, :matched, "
    ":account_id, :action)"
)
_OPT_OUT = text(
    "INSERT INTO number_lists (account_id, number, kind, created_at) "
    "VALUES (:account_id, :number, 'optout', :now) ON CONFLICT DO NOTHING"
)
_OPT_IN = text(
    "DELETE FROM number_lists WHERE account_id = :account_id AND number = :number "
    "AND kind = 'optout'"
)
_ON_A_LIST = text("SELECT 1 FROM number_lists WHERE account_id = :account_id AND number = :number")
# Checks the balance again as it debits: on PostgreSQL another process (an API
# writer, a reply elsewhere) may have spent the credits since they were read.
_DEBIT = text(
    "UPDATE accounts SET credits = credits - :parts, updated_at = :now "
    "WHERE id = :account_id AND credits IS NOT NULL AND credits >= :parts"
)
_INSERT_REQUEST = text(
    "INSERT INTO requests (id, account_id, user_id, product, client_ip, idempotency_key, "
    "recipients, queued, received_at) VALUES (:id, :account_id, :user_id, :product, NULL, "
    "NULL, 1, 1, :now)"
)
_INSERT_MESSAGE = text(
    "INSERT INTO messages (id, request_id, account_id, user_id, product, dest_tn, "
    "dest_country, dest_name, dest_email, text, encoding, parts, due_at, receipt_flag, "
    "receipt_url, reply_type, reply_url, status, created_at, updated_at, attempts) VALUES "
    "(:id, :request_id, :account_id, :user_id, :product, :dest_tn, :dest_country, NULL, NULL, "
    ":text, :encoding, :parts, :now, 0, NULL, 'E', NULL, 'queued', :now, :now, 0)"
)


def record_inbound(
    conn: Connection,
    source: str,
    destination: str,
    reply_text: str,
    *,
    window_ms: int = 7 * 86_400_000,
    max_parts: int = 10,
    source_ton: int | None = None,
) -> InboundResult:
    """Store an inbound SMS; match, apply opt-out/in, and queue its forwards.

    Runs in the caller's transaction (the gateway's group-commit writer).
    """
    now = now_ms()
    inbound_id = new_id()
    number = sender_e164(source, source_ton)
    row = None
    if number is not None:
        row = conn.execute(_MATCH, {"tn": number, "since": now - window_ms}).first()
    if row is None:
        conn.execute(
            _INSERT_INBOUND,
            {"id": inbound_id, "source": number or source, "destination": destination,
             "text": reply_text, "now": now, "matched": None, "account_id": None,
             "action": "unmatched"},
        )  # fmt: skip
        return InboundResult(inbound_id, None, "unmatched")

    keyword = opt_keyword(reply_text)
    if keyword is not None:
        conn.execute(
            _OPT_OUT if keyword == "optout" else _OPT_IN,
            {"account_id": row.account_id, "number": number, "now": now},
        )
    actions, sms_queued = _forward(conn, row, number, reply_text, inbound_id, now, max_parts)
    action = "+".join(actions) + (f"+{keyword}" if keyword else "")
    conn.execute(
        _INSERT_INBOUND,
        {"id": inbound_id, "source": number, "destination": destination, "text": reply_text,
         "now": now, "matched": row.id, "account_id": row.account_id, "action": action},
    )  # fmt: skip
    return InboundResult(inbound_id, row.id, action, sms_queued)


def _forward(
    conn: Connection,
    row: Any,
    number: str,
    reply_text: str,
    inbound_id: str,
    now: int,
    max_parts: int,
) -> tuple[list[str], bool]:
    """Queue the reply as the matched message's ReplyType asks; the actions taken."""
    facts = MessageFacts(
        sms_id=row.id, request_id=row.request_id, account_id=row.account_id,
        username=row.email, dest_tn=row.dest_tn, dest_name=row.dest_name,
        dest_email=row.dest_email, text=row.text, product=row.product,
    )  # fmt: skip
    reply_type = row.reply_type or "E"
    common: dict[str, Any] = {
        "account_id": row.account_id, "kind": "reply", "message_id": row.id,
        "now": now, "inbound_id": inbound_id,
    }  # fmt: skip
    actions: list[str] = []
    want_mail = reply_type in ("E", "B")
    sms_queued = False
    if reply_type == "H":
        if row.reply_url:
            body = reply_body(facts, number, reply_text, now)
            queue_callback(conn, url=row.reply_url, body=body, **common)
            actions.append("callback")
        else:
            want_mail = True  # SPEC.md §3: H without a URL goes by e-mail
    if reply_type in ("S", "B"):
        sms_queued = _forward_sms(conn, row, number, reply_text, now, max_parts)
        if sms_queued:
            actions.append("sms")
        else:
            want_mail = True  # no mobile (or no credit): e-mail instead
    if want_mail:
        subject, mail = reply_mail(facts, number, reply_text, format_utc(now))
        queue_mail(conn, to_addr=row.email, subject=subject, body=mail, **common)
        actions.append("mail")
    return actions, sms_queued


def forward_text(dest_name: str | None, number: str, reply_text: str, max_parts: int) -> str:
    """The SMS to the user: who replied, then the reply, cut to ``max_parts`` parts."""
    who = f"{dest_name} ({number})" if dest_name else number
    sms = f"Reply from {who}: {reply_text}"
    if measure(sms).parts <= max_parts:
        return sms
    # Trim to fit; a message is never split mid-character (measure works on str).
    low, high = 0, len(sms)
    while low < high:
        mid = (low + high + 1) // 2
        if measure(sms[:mid] + "…").parts <= max_parts:
            low = mid
        else:
            high = mid - 1
    return sms[:low] + "…"


def _forward_sms(
    conn: Connection, row: Any, number: str, reply_text: str, now: int, max_parts: int
) -> bool:
    """Queue an SMS with the reply to the user's mobile; False when it cannot be sent.

    It goes through the normal dispatch path (a queued message of the same
    account and user, no receipt) and obeys what any send of the account
    would: it costs credits, and a suspended account, a mobile on the
    account's block or opt-out list or outside its allowed countries gets
    none. In all those cases, and without a mobile number, the reply goes by
    e-mail instead.
    """
    if not row.mobile or row.account_status != "active":
        return False
    mobile = normalise(row.mobile, row.region or "AU")
    if mobile is None:
        return False
    if row.allowed_countries and mobile.region not in row.allowed_countries.split(","):
        return False
    listed = conn.execute(_ON_A_LIST, {"account_id": row.account_id, "number": mobile.e164})
    if listed.first() is not None:
        return False
    sms = forward_text(row.dest_name, number, reply_text, max_parts)
    measured = measure(sms)
    if row.credits is not None:
        if row.credits < measured.parts:
            return False
        debit = {"parts": measured.parts, "now": now, "account_id": row.account_id}
        if not conn.execute(_DEBIT, debit).rowcount:
            return False
    request_id = new_id()
    conn.execute(
        _INSERT_REQUEST,
        {"id": request_id, "account_id": row.account_id, "user_id": row.user_id,
         "product": FORWARD_PRODUCT, "now": now},
    )  # fmt: skip
    conn.execute(
        _INSERT_MESSAGE,
        {"id": new_id(), "request_id": request_id, "account_id": row.account_id,
         "user_id": row.user_id, "product": FORWARD_PRODUCT, "dest_tn": mobile.e164,
         "dest_country": mobile.region, "text": sms, "encoding": measured.encoding,
         "parts": measured.parts, "now": now},
    )  # fmt: skip
    return True


# --- long inbound SMS ---------------------------------------------------------------

_INSERT_PART = text(
    "INSERT INTO inbound_parts (source, destination, ref, total, seq, coding, data, "
    "received_at) VALUES (:source, :destination, :ref, :total, :seq, :coding, :data, :now) "
    "ON CONFLICT DO NOTHING"
)
_GROUP = "source = :source AND destination = :destination AND ref = :ref AND total = :total"
_COUNT_PARTS = text(f"SELECT count(*) FROM inbound_parts WHERE {_GROUP}")  # noqa: S608 - constant
_PARTS_OF = text(f"SELECT seq, coding, data FROM inbound_parts WHERE {_GROUP} ORDER BY seq")  # noqa: S608 - constant
_DELETE_GROUP = text(f"DELETE FROM inbound_parts WHERE {_GROUP}")  # noqa: S608 - constant
_STALE_GROUPS = text(
    "SELECT DISTINCT source, destination, ref, total FROM inbound_parts WHERE received_at < :before"
)
# PostgreSQL: parts of one SMS may reach two worker processes (two binds) at
# once; each would count only its own part and neither join the message. A
# transaction-level advisory lock per group (in a key space of its own, the
# two-integer form) makes them take turns; SQLite's write lock already does.
# Two groups whose names hash alike only take turns needlessly.
_LOCK_GROUP_PG = text("SELECT pg_advisory_xact_lock(1381498881, hashtext(CAST(:group AS text)))")
_TRY_LOCK_GROUP_PG = text(
    "SELECT pg_try_advisory_xact_lock(1381498881, hashtext(CAST(:group AS text)))"
)


def _group_name(key: dict[str, Any]) -> str:
    return f"{key['source']}/{key['destination']}/{key['ref']}/{key['total']}"


@dataclass(frozen=True, slots=True)
class Joined:
    """The user data of a long SMS, parts in order; ``complete`` False if some never came."""

    source: str
    destination: str
    coding: int
    data: bytes
    complete: bool


def _join(conn: Connection, key: dict[str, Any]) -> Joined | None:
    rows = conn.execute(_PARTS_OF, key).all()
    if not rows:  # PostgreSQL: another process joined the group meanwhile
        return None
    conn.execute(_DELETE_GROUP, key)
    return Joined(
        key["source"], key["destination"], rows[0].coding,
        b"".join(r.data for r in rows), len(rows) == key["total"],
    )  # fmt: skip


def collect_part(
    conn: Connection,
    source: str,
    destination: str,
    ref: int,
    total: int,
    seq: int,
    coding: int,
    data: bytes,
) -> Joined | None:
    """Keep one part of a long inbound SMS; the whole message once every part is there.

    A part the carrier delivers twice is kept once. Runs in the transaction
    that answers for the part, so a crash loses no part.
    """
    key = {"source": source, "destination": destination, "ref": ref, "total": total}
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK_GROUP_PG, {"group": _group_name(key)})
    conn.execute(_INSERT_PART, {**key, "seq": seq, "coding": coding, "data": data,
                                "now": now_ms()})  # fmt: skip
    have = conn.execute(_COUNT_PARTS, key).scalar_one()
    return _join(conn, key) if have >= total else None


def flush_stale_parts(conn: Connection, before_ms: int) -> list[Joined]:
    """Long SMS some of whose parts never came: what did come, as messages of their own.

    Called as inbound traffic arrives: a part missing for this long (an hour
    by default) is not coming, and what did arrive must reach the customer.
    """
    groups = conn.execute(_STALE_GROUPS, {"before": before_ms}).mappings().all()
    joined = []
    for group in groups:
        key = dict(group)
        # PostgreSQL: a group locked by another process is being completed or
        # flushed there; waiting for it could deadlock two flushes.
        if conn.dialect.name == "postgresql":
            locked = conn.execute(_TRY_LOCK_GROUP_PG, {"group": _group_name(key)}).scalar()
            if not locked:
                continue
        message = _join(conn, key)
        if message is not None:
            joined.append(message)
    return joined


def record_inbound_sms(
    conn: Connection,
    source: str,
    destination: str,
    coding: int,
    data: bytes,
    concat: tuple[int, int, int] | None = None,
    *,
    window_ms: int = 7 * 86_400_000,
    max_parts: int = 10,
    source_ton: int | None = None,
    stale_parts_ms: int = 3_600_000,
) -> list[InboundResult]:
    """One deliver_sm's SMS (or part, ``concat`` = (ref, total, seq)): stored, and
    every message it completes recorded by :func:`record_inbound`.

    Usually one result; none while a long SMS waits for its other parts; more
    when long SMS whose parts stopped coming are given up on.
    """
    wanted: list[Joined] = []
    if concat is None:
        wanted.append(Joined(source, destination, coding, data, True))
    else:
        ref, total, seq = concat
        joined = collect_part(conn, source, destination, ref, total, seq, coding, data)
        if joined is not None:
            wanted.append(joined)
    wanted += flush_stale_parts(conn, now_ms() - stale_parts_ms)
    results = []
    for message in wanted:
        body = decode_user_data(message.coding, message.data)
        if not message.complete:
            body += " […]"  # parts never came: say so rather than pretend
        result = record_inbound(
            conn, message.source, message.destination, body,
            window_ms=window_ms, max_parts=max_parts, source_ton=source_ton,
        )  # fmt: skip
        results.append(result)
    return results
