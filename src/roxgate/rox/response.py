"""Building ``ROX_API_Response`` bodies (SPEC.md §1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from roxgate.rox.codes import Result
from roxgate.rox.request import Recipient

VERSION = 1.1


def error_body(code: Result, text: str, request_id: str | None = None) -> bytes:
    """A request-level rejection: the code, why, and no recipients."""
    return orjson.dumps(
        {
            "Name": "ROX_API_Response",
            "Version": VERSION,
            "Result": code.value,
            "ResultText": text,
            "Messages": {"Count": 0, "RequestId": request_id},
        }
    )


def success_body(
    request_id: str,
    recipients: Sequence[Recipient],
    sms_ids: list[str | None],
    due_stamp: str,
    now_stamp: str,
) -> bytes:
    total = len(recipients)
    queued = total - sms_ids.count(None)
    messages: dict[str, Any] = {"Count": total, "RequestId": request_id}
    for recipient, sms_id in zip(recipients, sms_ids, strict=True):
        messages[recipient.key] = {
            "SMSId": sms_id,
            "DestTn": recipient.dest_tn,
            "Result": recipient.result,  # a StrEnum: orjson writes its value
            "ResultText": recipient.result_text,
            # Queued: when it is due to be sent; rejected: when it was refused.
            "Timestamp": now_stamp if sms_id is None else due_stamp,
        }
    return orjson.dumps(
        {
            "Name": "ROX_API_Response",
            "Version": VERSION,
            "Result": Result.OK.value,
            "ResultText": "Success" if queued == total else f"Queued {queued} of {total}",
            "Messages": messages,
        }
    )
