"""The database schema, as SQLAlchemy Core tables.

Times are stored as integer milliseconds since the Unix epoch (UTC): no
per-row conversion cost on the hot insert path, one meaning on SQLite and
PostgreSQL alike, and trivially ordered. Ids of requests and messages are
time-ordered UUIDs (v7) kept as their 36-character text form.

Alembic migrations in ``migrations/versions`` create and change these tables;
this module is what the code queries against, and a test checks both agree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# Ids of tables that grow with traffic: 64-bit on PostgreSQL (BIGSERIAL), and on
# SQLite the INTEGER PRIMARY KEY that is its (already 64-bit) rowid.
EventId = BigInteger().with_variant(Integer(), "sqlite")

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(10), primary_key=True),  # CI + 8 digits
    Column("name", String(200), nullable=False),
    Column("region", String(2), nullable=False),  # default region for national numbers
    Column("tz_offset", Integer, nullable=False),  # minutes, getTimezoneOffset sign
    Column("status", String(16), nullable=False),  # active | suspended
    Column("api_enabled", Boolean, nullable=False),
    Column("sender_id", String(16)),
    Column("allowed_nets", Text),  # comma-separated CIDRs; NULL = any source
    Column("allowed_countries", Text),  # comma-separated ISO regions; NULL = any
    Column("credits", BigInteger),  # NULL = unlimited; one credit per SMS part
    Column("callback_secret", String(128), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    # Per-minute limits of this account; NULL = the gateway's defaults, 0 = unlimited.
    Column("rate_requests_per_minute", Integer),
    Column("rate_messages_per_minute", Integer),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(10), ForeignKey("accounts.id"), nullable=False),
    Column("email", String(254), nullable=False),  # stored lower-cased
    Column("password_hash", Text, nullable=False),  # argon2id, PHC string
    Column("mobile", String(20)),
    Column("status", String(16), nullable=False),  # active | disabled
    Column("failed_logins", Integer, nullable=False),
    Column("locked_until", BigInteger),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("account_id", "email", name="uq_users_account_email"),
)

requests = Table(
    "requests",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", String(10), nullable=False),
    Column("user_id", Integer, nullable=False),
    Column("product", String(100)),
    Column("client_ip", String(45)),
    Column("idempotency_key", String(255)),
    Column("recipients", Integer, nullable=False),
    Column("queued", Integer, nullable=False),
    Column("received_at", BigInteger, nullable=False),
    Index("ix_requests_account_received", "account_id", "received_at"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", String(36), primary_key=True),  # SMSId
    Column("request_id", String(36), nullable=False),
    Column("account_id", String(10), nullable=False),
    Column("user_id", Integer, nullable=False),
    Column("product", String(100)),
    Column("dest_tn", String(20), nullable=False),  # E.164
    Column("dest_country", String(3), nullable=False),
    Column("dest_name", String(255)),
    Column("dest_email", String(255)),
    Column("text", Text, nullable=False),
    Column("encoding", String(8), nullable=False),  # gsm | ucs2
    Column("parts", Integer, nullable=False),
    Column("due_at", BigInteger, nullable=False),
    Column("receipt_flag", Integer, nullable=False),
    Column("receipt_url", Text),
    Column("reply_type", String(1), nullable=False),
    Column("reply_url", Text),
    Column("status", String(16), nullable=False),  # queued → … (see docs)
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    # Sending (migration 0002): the lease of the worker submitting it, how
    # often it was tried, and how it ended.
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("lease_owner", String(64)),
    Column("lease_until", BigInteger),
    Column("submitted_at", BigInteger),
    Column("final_at", BigInteger),
    Column("result", String(4)),  # ROX code of the final state
    Column("result_text", Text),
    Index("ix_messages_status_due", "status", "due_at"),
    Index("ix_messages_request", "request_id"),
    # Deliberately no index on dest_tn: numbers arrive in random order and
    # such an index halved the insert rate. Reply matching (which looks at
    # *submitted* messages) keeps its own structure, written at submission.
)

# The intake path hands messages to the writer as one tuple of the columns
# shared by the whole request plus one short tuple per recipient.
MESSAGE_RECIPIENT_COLUMNS: tuple[str, ...] = (
    "id",
    "dest_tn",
    "dest_country",
    "dest_name",
    "dest_email",
    "text",
    "encoding",
    "parts",
)
MESSAGE_REQUEST_COLUMNS: tuple[str, ...] = (
    "request_id",
    "account_id",
    "user_id",
    "product",
    "due_at",
    "receipt_flag",
    "receipt_url",
    "reply_type",
    "reply_url",
    "status",
    "created_at",
    "updated_at",
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("account_id", String(10), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", LargeBinary(32), nullable=False),
    Column("response", LargeBinary, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_idempotency_created", "created_at"),
)

# One row per SMS part submitted to the carrier (migration 0002).
message_parts = Table(
    "message_parts",
    metadata,
    Column("message_id", String(36), primary_key=True),
    Column("part_no", Integer, primary_key=True),  # 1-based
    Column("carrier_id", String(64)),  # submit_sm_resp message_id
    Column("status", String(16), nullable=False),  # submitted | delivered | failed
    Column("carrier_state", String(8)),  # DELIVRD, UNDELIV, …
    Column("carrier_error", String(16)),
    Column("submitted_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_message_parts_carrier", "carrier_id"),
)

# What happened to a message, in order: intake is the row itself; this keeps
# submits, carrier answers and receipts (migration 0002).
message_events = Table(
    "message_events",
    metadata,
    Column("id", EventId, primary_key=True, autoincrement=True),
    Column("message_id", String(36), nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("event", String(16), nullable=False),
    Column("detail", Text),
    Index("ix_message_events_message", "message_id"),
)

# Mobile-originated messages from the carrier, stored before they are answered
# (migration 0002); matching and forwarding come with "Reporting back".
inbound = Table(
    "inbound",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("source", String(32), nullable=False),
    Column("destination", String(32), nullable=False),
    Column("text", Text, nullable=False),
    Column("received_at", BigInteger, nullable=False),
    Column("matched_message_id", String(36)),
    # Migration 0004: the account of the matched message, and what was done
    # (e.g. "callback", "mail", "sms+mail", "optout", "unmatched").
    Column("account_id", String(10)),
    Column("action", String(32)),
    Index("ix_inbound_received", "received_at"),
)

# --- Reporting back (migration 0004) -------------------------------------------

# The callbacks outbox: one row per receipt or reply to POST, written in the
# same transaction as the state change that caused it. The body is frozen at
# that moment, so every attempt sends the same bytes.
callbacks = Table(
    "callbacks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", String(10), nullable=False),
    Column("kind", String(8), nullable=False),  # receipt | reply
    Column("message_id", String(36), nullable=False),  # the SMS it is about
    Column("inbound_id", String(36)),  # the reply, for kind reply
    Column("url", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("status", String(12), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("next_at", BigInteger, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", BigInteger),
    Column("last_error", Text),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_callbacks_status_next", "status", "next_at"),
    Index("ix_callbacks_message", "message_id"),
)

# Every POST made, with its outcome: nothing is dropped silently.
callback_attempts = Table(
    "callback_attempts",
    metadata,
    Column("id", EventId, primary_key=True, autoincrement=True),
    Column("callback_id", String(36), nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("http_status", Integer),  # None: no HTTP answer (timeout, refused, SSRF guard)
    Column("outcome", String(8), nullable=False),  # ok | retry | final
    Column("error", Text),
    Index("ix_callback_attempts_callback", "callback_id"),
)

# The mail outbox: receipts and replies without a URL, or whose callback
# failed for good. With no SMTP server configured mail waits here, visible to
# the operator.
mail_outbox = Table(
    "mail_outbox",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", String(10), nullable=False),
    Column("kind", String(8), nullable=False),  # receipt | reply
    Column("message_id", String(36), nullable=False),
    Column("inbound_id", String(36)),
    Column("to_addr", String(254), nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(12), nullable=False),  # pending | sent | failed
    Column("attempts", Integer, nullable=False),
    Column("next_at", BigInteger, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", BigInteger),
    Column("last_error", Text),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("sent_at", BigInteger),
    Index("ix_mail_outbox_status_next", "status", "next_at"),
    Index("ix_mail_outbox_message", "message_id"),
)

# The most recent message submitted to each number, for matching replies:
# written with each submission, one row per number (messages has no index on
# dest_tn on purpose, see above).
recent_sends = Table(
    "recent_sends",
    metadata,
    Column("dest_tn", String(20), primary_key=True),  # E.164
    Column("message_id", String(36), nullable=False),
    Column("submitted_at", BigInteger, nullable=False),
)

# Receipts that name no part we submitted (migration 0003): after the
# connector has let the SMSC redeliver one for a while (our record of the
# submit may have been a moment behind), it is kept here and acknowledged.
unmatched_receipts = Table(
    "unmatched_receipts",
    metadata,
    Column("id", EventId, primary_key=True, autoincrement=True),
    Column("carrier_id", String(64), nullable=False),
    Column("state", String(8), nullable=False),
    Column("error", String(16)),
    Column("source", String(32), nullable=False),
    Column("destination", String(32), nullable=False),
    Column("received_at", BigInteger, nullable=False),
    Index("ix_unmatched_receipts_received", "received_at"),
)

# Numbers an account must not send to: its own block list ("block") and
# recipients who replied STOP ("optout"). One table, one lookup per request.
number_lists = Table(
    "number_lists",
    metadata,
    Column("account_id", String(10), primary_key=True),
    Column("number", String(20), primary_key=True),  # E.164
    Column("kind", String(8), primary_key=True),  # block | optout
    Column("created_at", BigInteger, nullable=False),
)

# Parts of a long inbound SMS (migration 0005), stored as they arrive (each
# deliver_sm is answered after its part is committed) and turned into one
# inbound message when the last one is there.
inbound_parts = Table(
    "inbound_parts",
    metadata,
    Column("source", String(32), primary_key=True),
    Column("destination", String(32), primary_key=True),
    Column("ref", Integer, primary_key=True),
    Column("total", Integer, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("coding", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("received_at", BigInteger, nullable=False),
    Index("ix_inbound_parts_received", "received_at"),
)

# Processes that send (role worker or all), each with a heartbeat (migration
# 0006): a route's TPS limit is shared among the live ones, so N workers
# together never exceed it.
workers = Table(
    "workers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("role", String(8), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("heartbeat_at", BigInteger, nullable=False),
)

# --- Operators' console (migration 0007) ----------------------------------------

# People who run the gateway and sign in to /console (``roxgate operator add``);
# unrelated to the customers' users. Passwords as argon2id PHC strings.
operators = Table(
    "operators",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),  # stored lower-cased
    Column("password_hash", Text, nullable=False),
    Column("status", String(16), nullable=False),  # active | disabled
    Column("failed_logins", Integer, nullable=False),
    Column("locked_until", BigInteger),
    Column("last_login_at", BigInteger),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# Signed-in console sessions, in the database so that any api process behind a
# load balancer knows them. The id is the SHA-256 of the cookie's token: a
# leaked table does not let anyone sign in.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("operator_id", Integer, nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("client_ip", String(45)),
    Column("created_at", BigInteger, nullable=False),
    Column("last_seen_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_console_sessions_expires", "expires_at"),
)

# Messages per minute by what happened to them (accepted, submitted,
# delivered, failed, expired, …), counted in the transaction that made it
# happen: the console's charts read a few hundred rows instead of scanning
# messages. ``owner`` is the writing process, so that processes sharing
# PostgreSQL never contend for one row.
traffic = Table(
    "traffic",
    metadata,
    Column("minute", BigInteger, primary_key=True),  # Unix time // 60
    Column("kind", String(16), primary_key=True),
    Column("owner", String(64), primary_key=True),
    Column("count", BigInteger, nullable=False),
)
