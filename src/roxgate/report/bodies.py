"""What customers receive: ROX_API_Receipt / ROX_API_Reply bodies and the e-mails.

Shapes follow the seed API description and SPEC.md §3. Bodies are built once,
when the receipt or reply is queued, and stored: every attempt sends the same
bytes, and the e-mail fallback shows the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from roxgate.rox.timefmt import format_utc

API_VERSION = 1.1


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """The message a receipt or reply is about, and who sent it."""

    sms_id: str
    request_id: str
    account_id: str
    username: str  # the user's e-mail address
    dest_tn: str
    dest_name: str | None
    dest_email: str | None
    text: str
    product: str | None


def receipt_body(m: MessageFacts, result: str, result_text: str, at_ms: int) -> bytes:
    return orjson.dumps(
        {
            "Name": "ROX_API_Receipt",
            "Version": API_VERSION,
            "Sender": {"AccountId": m.account_id, "Username": m.username},
            "Messages": {
                "RequestId": m.request_id,
                "Receipt": {
                    "SMSId": m.sms_id,
                    "DestTn": m.dest_tn,
                    "Result": result,
                    "ResultText": result_text,
                    "Timestamp": format_utc(at_ms),
                },
            },
        }
    )


def reply_body(m: MessageFacts, reply_from: str, reply_text: str, at_ms: int) -> bytes:
    # SPEC.md §3: "ROX_API_Reply" (the seed's "ROX_API_Reply_Response" here is a slip).
    return orjson.dumps(
        {
            "Name": "ROX_API_Reply",
            "Version": API_VERSION,
            "Sender": {"AccountId": m.account_id, "Username": m.username},
            "Messages": {
                "RequestId": m.request_id,
                "Reply": {
                    "SMSId": m.sms_id,
                    "ReplyFrom": reply_from,
                    "ReplyText": reply_text,
                    "SMSText": m.text,
                    "Timestamp": format_utc(at_ms),
                },
            },
        }
    )


def _lines(fields: list[tuple[str, str | None]]) -> str:
    width = max(len(k) for k, _ in fields)
    return "\n".join(
        f"{k + ':':<{width + 1}} {v if v not in (None, '') else '-'}" for k, v in fields
    )


def _recipient(m: MessageFacts) -> str:
    return f"{m.dest_name} ({m.dest_tn})" if m.dest_name else m.dest_tn


def receipt_mail(m: MessageFacts, result: str, result_text: str, received: str) -> tuple[str, str]:
    """Subject and plain-text body of a receipt e-mail (``received``: the ROX Timestamp)."""
    state = "delivered" if result == "0000" else "not delivered"
    subject = f"SMS to {_recipient(m)}: {state} ({result})"
    body = _lines(
        [
            ("Result", f"{result} {result_text}"),
            ("Received", received),
            ("To", m.dest_tn),
            ("DestName", m.dest_name),
            ("DestEmail", m.dest_email),
            ("SMSId", m.sms_id),
            ("RequestId", m.request_id),
            ("AccountId", m.account_id),
            ("Username", m.username),
            ("Product", m.product),
        ]
    )
    return subject, f"{body}\n\nMessage text:\n{m.text}\n"


def reply_mail(m: MessageFacts, reply_from: str, reply_text: str, received: str) -> tuple[str, str]:
    """Subject and plain-text body of a reply e-mail (``received``: the ROX Timestamp)."""
    subject = f"Reply from {_recipient(m)}"
    body = _lines(
        [
            ("From", reply_from),
            ("Received", received),
            ("DestName", m.dest_name),
            ("DestEmail", m.dest_email),
            ("SMSId", m.sms_id),
            ("RequestId", m.request_id),
            ("AccountId", m.account_id),
            ("Username", m.username),
            ("Product", m.product),
        ]
    )
    return subject, f"{body}\n\nReply:\n{reply_text}\n\nIn answer to:\n{m.text}\n"


def mail_for_callback(row: dict[str, Any]) -> tuple[str, str]:
    """The e-mail replacing a callback that failed for good, from its stored body.

    ``row`` has the callback's ``kind`` and ``body`` and the message's
    ``dest_name``, ``dest_email``, ``product``, ``text`` and the user's ``email``.
    """
    doc = orjson.loads(row["body"])
    msgs = doc["Messages"]
    inner = msgs["Receipt"] if row["kind"] == "receipt" else msgs["Reply"]
    facts = MessageFacts(
        sms_id=inner["SMSId"],
        request_id=msgs["RequestId"],
        account_id=doc["Sender"]["AccountId"],
        username=row["email"],
        dest_tn=inner.get("DestTn") or inner.get("ReplyFrom") or "",
        dest_name=row["dest_name"],
        dest_email=row["dest_email"],
        text=row["text"],
        product=row["product"],
    )
    received = inner["Timestamp"]
    if row["kind"] == "receipt":
        return receipt_mail(facts, inner["Result"], inner["ResultText"], received)
    return reply_mail(facts, inner["ReplyFrom"], inner["ReplyText"], received)
