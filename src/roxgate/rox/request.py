"""Parsing and validating a ``ROX_API_Request`` (SPEC.md §1).

Checks run in a fixed order so that each malformed request gets one
predictable code: body → envelope (Name, Version, Sender, Product) →
authentication (done by the caller) → Messages and its fields → recipients.
Request-level problems raise :class:`RoxError`; recipient-level problems are
recorded on the recipient and do not stop the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson

from roxgate.netpolicy import IPNetwork, host_allowed_literally
from roxgate.rox.codes import Result, RoxError
from roxgate.rox.timefmt import parse_local_time
from roxgate.sms.phone import normalise
from roxgate.sms.text import TextMeasure, measure

MAX_RECIPIENTS = 500
MAX_PRODUCT = 100
MAX_URL = 2048
MAX_FIELD = 255
MAX_SCHEDULE_DAYS = 365
REPLY_TYPES = frozenset("EBSH")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class Envelope:
    """The parts of a request needed before authentication."""

    doc: dict[str, Any]
    account_id: str
    username: str
    password: str
    product: str | None


@dataclass(slots=True)
class Recipient:
    key: str  # "1" … "Count"
    dest_tn: str | None  # E.164 when valid, else as given (for the response)
    result: Result = Result.OK
    result_text: str = "Queued"
    dest_country: str = ""
    dest_name: str | None = None
    dest_email: str | None = None
    text: str = ""
    encoding: str = ""
    parts: int = 0

    def reject(self, code: Result, text: str) -> None:
        self.result = code
        self.result_text = text


@dataclass(slots=True)
class Batch:
    receipt_flag: int
    receipt_url: str | None
    reply_type: str
    reply_url: str | None
    due_ms: int
    recipients: list[Recipient] = field(default_factory=list)

    @property
    def accepted(self) -> list[Recipient]:
        return [r for r in self.recipients if r.result is Result.OK]


def decode_body(body: bytes) -> dict[str, Any]:
    if body.startswith(_BOM):
        body = body[len(_BOM) :]
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RoxError(Result.BAD_JSON, f"Body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise RoxError(Result.BAD_JSON, "Body must be a JSON object (a ROX_API_Request)")
    return doc


def parse_envelope(body: bytes) -> Envelope:
    doc = decode_body(body)
    if doc.get("Name") != "ROX_API_Request":
        raise RoxError(Result.BAD_NAME, 'Name must be "ROX_API_Request"')
    version = doc.get("Version")
    if version is None:
        raise RoxError(Result.BAD_VERSION, "Version is missing; this server speaks 1.1")
    if isinstance(version, bool) or version not in (1.1, "1.1"):
        raise RoxError(Result.BAD_VERSION, f"Unsupported Version {version!r:.40}; use 1.1")
    sender = doc.get("Sender")
    if not isinstance(sender, dict):
        raise RoxError(Result.SENDER_MISSING, "Sender is missing or not an object")
    creds = []
    for name in ("AccountId", "Username", "Password"):
        value = sender.get(name)
        if not isinstance(value, str) or value == "":
            raise RoxError(Result.SENDER_MISSING, f"Sender.{name} is missing or empty")
        creds.append(value)
    product = doc.get("Product")
    if product is not None and (not isinstance(product, str) or len(product) > MAX_PRODUCT):
        raise RoxError(
            Result.BAD_PRODUCT, f"Product must be a string of at most {MAX_PRODUCT} characters"
        )
    return Envelope(doc, creds[0].strip(), creds[1], creds[2], product)


def _int_like(value: Any) -> int | None:
    """An integer sent as a JSON integer, an integral float or a decimal string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in "+-" else text
        if digits.isascii() and digits.isdigit() and len(digits) <= 9:
            return int(text)
    return None


def _callback_url(
    value: Any, code: Result, label: str, allow_nets: Iterable[IPNetwork]
) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_URL:
        raise RoxError(code, f"{label} must be an absolute http or https URL")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError:
        raise RoxError(code, f"{label} is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not host or not host.strip("."):
        raise RoxError(code, f"{label} must be an absolute http or https URL")
    if any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise RoxError(code, f"{label} must not contain spaces or control characters")
    if not host_allowed_literally(host, allow_nets):
        raise RoxError(
            code, f"{label} points to an internal address ({host}), which callbacks may not reach"
        )
    return value


def _optional_text(value: Any) -> str | None:
    if type(value) is str:  # the common case first: this runs twice per recipient
        return value[:MAX_FIELD] or None
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return str(value)[:MAX_FIELD]
    if isinstance(value, str):
        return value[:MAX_FIELD] or None
    return None


def parse_messages(
    doc: dict[str, Any],
    *,
    region: str,
    default_tz_offset: int,
    allowed_countries: frozenset[str] | None,
    max_parts: int,
    allow_nets: Iterable[IPNetwork],
    now: datetime,
) -> Batch:
    messages = doc.get("Messages")
    if not isinstance(messages, dict):
        raise RoxError(Result.MESSAGES_MISSING, "Messages is missing or not an object")

    raw_count = messages.get("Count")
    count = _int_like(raw_count)
    if count is None:
        raise RoxError(Result.BAD_COUNT, "Messages.Count is missing or not an integer")
    if not 1 <= count <= MAX_RECIPIENTS:
        raise RoxError(
            Result.COUNT_OUT_OF_RANGE, f"Messages.Count must be 1 to {MAX_RECIPIENTS}, not {count}"
        )
    numeric_keys = [k for k in messages if k.isascii() and k.isdigit()]
    if len(numeric_keys) != count:
        raise RoxError(
            Result.BAD_COUNT,
            f"Messages.Count is {count} but {len(numeric_keys)} recipients were given",
        )
    for i in range(1, count + 1):
        if not isinstance(messages.get(str(i)), dict):
            missing = str(i) not in messages
            raise RoxError(
                Result.BAD_RECIPIENT_KEYS,
                f'Recipient "{i}" is missing; keys must run "1" to "{count}" without gaps'
                if missing
                else f'Recipient "{i}" is not an object',
            )

    flag = messages.get("ReceiptFlag")
    receipt_flag = 0 if flag is None else _int_like(flag)
    if receipt_flag not in (0, 1, 2):
        raise RoxError(Result.BAD_RECEIPT_FLAG, "ReceiptFlag must be 0, 1 or 2")
    receipt_url = _callback_url(
        messages.get("ReceiptCallbackURL"), Result.BAD_RECEIPT_URL, "ReceiptCallbackURL", allow_nets
    )
    reply_type = messages.get("ReplyType")
    if reply_type is None or reply_type == "":
        reply_type = "E"
    # ASCII only: str.upper() maps other letters onto these ("ſ" → "S").
    if (
        not isinstance(reply_type, str)
        or not reply_type.isascii()
        or reply_type.strip().upper() not in REPLY_TYPES
    ):
        raise RoxError(Result.BAD_REPLY_TYPE, "ReplyType must be E, S, B or H")
    reply_type = reply_type.strip().upper()
    reply_url = _callback_url(
        messages.get("ReplyCallbackURL"), Result.BAD_REPLY_URL, "ReplyCallbackURL", allow_nets
    )

    raw_offset = messages.get("TimeZoneOffset")
    tz_offset = default_tz_offset if raw_offset is None else _int_like(raw_offset)
    if tz_offset is None or not -840 <= tz_offset <= 720:
        raise RoxError(
            Result.BAD_TZ_OFFSET,
            "TimeZoneOffset must be whole minutes from -840 to 720 (UTC+10:00 is -600)",
        )
    due = _due_time(messages.get("SendLater"), tz_offset, now)

    batch = Batch(receipt_flag, receipt_url, reply_type, reply_url, int(due.timestamp() * 1000))
    _parse_recipients(batch, messages, count, region, allowed_countries, max_parts)
    return batch


def _due_time(send_later: Any, tz_offset: int, now: datetime) -> datetime:
    if send_later is None or (isinstance(send_later, str) and send_later.strip() == ""):
        return now
    if not isinstance(send_later, str):
        raise RoxError(
            Result.BAD_SEND_LATER, "SendLater must be a string like 01-Jan-2030 00:00:01"
        )
    try:
        due = parse_local_time(send_later, tz_offset)
    except (ValueError, OverflowError):
        raise RoxError(
            Result.BAD_SEND_LATER,
            f"SendLater {send_later[:40]!r} is not a time like 01-Jan-2030 00:00:01 or ISO-8601",
        ) from None
    if due - now > timedelta(days=MAX_SCHEDULE_DAYS):
        raise RoxError(
            Result.SEND_LATER_TOO_FAR, f"SendLater is more than {MAX_SCHEDULE_DAYS} days ahead"
        )
    return max(due, now).astimezone(UTC)


def _parse_recipients(
    batch: Batch,
    messages: dict[str, Any],
    count: int,
    region: str,
    allowed_countries: frozenset[str] | None,
    max_parts: int,
) -> None:
    # The hot loop of intake (500 times a request): locals, and the common
    # case (strings everywhere) tested first.
    global_text = messages.get("GlobalText")
    global_bad = global_text is not None and not isinstance(global_text, str)
    measured: dict[str, TextMeasure] = {}
    recipients = batch.recipients
    append = recipients.append
    for i in range(1, count + 1):
        key = str(i)
        item: dict[str, Any] = messages[key]
        get = item.get
        raw_tn = get("DestTn")
        if type(raw_tn) is int:
            raw_tn = str(raw_tn)
        recipient = Recipient(
            key,
            # Echoed in the answer even when invalid: never more than a number's length.
            raw_tn[:64] if isinstance(raw_tn, str) else None,
            dest_name=_optional_text(get("DestName")),
            dest_email=_optional_text(get("DestEmail")),
        )
        append(recipient)

        if type(raw_tn) is not str or len(raw_tn) > 64 or not raw_tn.strip():
            if raw_tn is None or (isinstance(raw_tn, str) and not raw_tn.strip()):
                recipient.reject(Result.DEST_MISSING, "DestTn is missing")
            else:
                recipient.reject(Result.DEST_INVALID, "DestTn must be a phone number string")
            continue
        number = normalise(raw_tn.strip(), region)
        if number is None:
            recipient.reject(
                Result.DEST_INVALID, f"DestTn is not a valid phone number (read in region {region})"
            )
            continue
        recipient.dest_tn = number.e164
        recipient.dest_country = number.region
        if allowed_countries is not None and number.region not in allowed_countries:
            recipient.reject(
                Result.COUNTRY_NOT_ALLOWED,
                f"Destination country {number.region} is not allowed for this account",
            )
            continue

        if global_bad:
            recipient.reject(Result.NO_TEXT, "GlobalText must be a string")
            continue
        text = global_text or get("SMSText")
        if type(text) is not str or not text:
            recipient.reject(
                Result.NO_TEXT,
                "SMSText must be a string"
                if text is not None and text != ""
                else "No text: give SMSText or GlobalText",
            )
            continue
        m = measured.get(text)
        if m is None:
            m = measure(text)
            if len(measured) < 64:  # texts repeat in campaigns; keep the memo small
                measured[text] = m
        if m.parts > max_parts:
            recipient.reject(
                Result.TEXT_TOO_LONG,
                f"Text needs {m.parts} SMS parts; the limit is {max_parts} "
                f"({m.units} {'septets' if m.encoding == 'gsm' else 'UCS-2 units'})",
            )
            continue
        recipient.text = text
        recipient.encoding = m.encoding
        recipient.parts = m.parts
