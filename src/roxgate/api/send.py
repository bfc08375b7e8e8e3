"""``POST /smsapi/send``: a ROX_API_Request in, a ROX_API_Response out, always HTTP 200."""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import OperationalError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from roxgate.rox.codes import Result, RoxError
from roxgate.rox.request import Batch, parse_envelope, parse_messages
from roxgate.rox.response import error_body, success_body
from roxgate.rox.timefmt import format_utc
from roxgate.store import reads
from roxgate.store.ids import new_id
from roxgate.store.writer import Idempotency, Intake, Outcome

if TYPE_CHECKING:
    from roxgate.api.gateway import Gateway

log = logging.getLogger("roxgate.api")
MAX_IDEMPOTENCY_KEY = 255
IDEMPOTENCY_CONFLICT_TEXT = "Idempotency-Key was already used with a different request"
UNAVAILABLE_TEXT = (
    "Service temporarily unavailable (database busy or down): nothing was queued, retry"
)


def _answer(body: bytes) -> Response:
    return Response(body, status_code=200, media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (2025) as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RoxError(Result.BODY_TOO_LARGE, f"Request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RoxError(Result.BODY_TOO_LARGE, f"Request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def send(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    request_id = new_id()
    started = time.perf_counter()
    account = "-"
    try:
        body = await read_body(request, gateway.settings.max_body_bytes)
        envelope = parse_envelope(body)
        account = envelope.account_id
        client_ip = request.client.host if request.client else None
        principal = await gateway.auth.authenticate(
            envelope.account_id, envelope.username, envelope.password, client_ip
        )
        idem = _idempotency(request, body, gateway)
        if idem is not None:
            found = await gateway.read(
                reads.find_idempotent,
                gateway.engine,
                principal.account_id,
                idem.key,
                idem.not_before_ms,
            )
            if found is not None:
                if found[0] != idem.request_hash:
                    raise RoxError(Result.IDEMPOTENCY_CONFLICT, IDEMPOTENCY_CONFLICT_TEXT)
                _log(request_id, account, "0000 (replay)", started)
                return _answer(found[1])
        now = datetime.now(UTC)
        batch = parse_messages(
            envelope.doc,
            region=principal.region,
            default_tz_offset=principal.tz_offset,
            allowed_countries=principal.allowed_countries,
            max_parts=gateway.settings.max_parts,
            allow_nets=gateway.allow_nets,
            now=now,
        )
        await _apply_number_lists(gateway, principal.account_id, batch)
        parts = sum(r.parts for r in batch.accepted)
        if principal.credits is not None and parts > principal.credits:
            raise _no_credit(parts, principal.credits)
        intake = _build_intake(
            request_id,
            principal.account_id,
            principal.user_id,
            envelope.product,
            client_ip,
            batch,
            parts,
            idem,
            now,
        )
        await gateway.writer.submit(intake)
        code, body_out = _outcome_body(intake, request_id, parts)
        _log(request_id, account, code, started)
        return _answer(body_out)
    except RoxError as err:
        _log(request_id, account, err.code.value, started)
        return _answer(error_body(err.code, err.text, request_id))
    except OperationalError as exc:
        log.error("request %s: database unavailable: %s", request_id, exc.orig)
        return _answer(error_body(Result.UNAVAILABLE, UNAVAILABLE_TEXT, request_id))
    except ClientDisconnect:
        return _answer(error_body(Result.UNAVAILABLE, "Client disconnected", request_id))
    except Exception:
        log.exception("request %s failed", request_id)
        return _answer(
            error_body(
                Result.INTERNAL_ERROR, "Internal error: nothing was queued, retry", request_id
            )
        )


def _idempotency(request: Request, body: bytes, gateway: Gateway) -> Idempotency | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if key == "" or len(key) > MAX_IDEMPOTENCY_KEY:
        raise RoxError(
            Result.IDEMPOTENCY_CONFLICT,
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
        )
    not_before = int(time.time() * 1000) - gateway.settings.idempotency_hours * 3_600_000
    return Idempotency(key, hashlib.sha256(body.removeprefix(b"\xef\xbb\xbf")).digest(), not_before)


async def _apply_number_lists(gateway: Gateway, account_id: str, batch: Batch) -> None:
    accepted = batch.accepted
    if not accepted:
        return
    listed = await gateway.read(
        reads.listed_numbers, gateway.engine, account_id, [r.dest_tn for r in accepted]
    )
    if not listed:
        return
    for recipient in accepted:
        kinds = listed.get(recipient.dest_tn or "")
        if not kinds:
            continue
        if "optout" in kinds:
            recipient.reject(Result.OPTED_OUT, "The recipient has opted out (replied STOP)")
        else:
            recipient.reject(Result.BLOCKED, "The number is on this account's block list")
        recipient.parts = 0


def _no_credit(parts: int, credits: int) -> RoxError:
    return RoxError(
        Result.NO_CREDIT,
        f"Insufficient credit: this request needs {parts} credits, the account has {credits}; "
        "nothing was queued",
    )


def _build_intake(
    request_id: str,
    account_id: str,
    user_id: int,
    product: str | None,
    client_ip: str | None,
    batch: Batch,
    parts: int,
    idem: Idempotency | None,
    now: datetime,
) -> Intake:
    now_ms = int(now.timestamp() * 1000)
    sms_ids: list[str | None] = []
    rows: list[tuple[Any, ...]] = []  # MESSAGE_RECIPIENT_COLUMNS order
    for recipient in batch.recipients:
        if recipient.result is not Result.OK:
            sms_ids.append(None)
            continue
        sms_id = new_id()
        sms_ids.append(sms_id)
        rows.append(
            (
                sms_id,
                recipient.dest_tn,
                recipient.dest_country,
                recipient.dest_name,
                recipient.dest_email,
                recipient.text,
                recipient.encoding,
                recipient.parts,
            )
        )
    common = (  # MESSAGE_REQUEST_COLUMNS order
        request_id,
        account_id,
        user_id,
        product,
        batch.due_ms,
        batch.receipt_flag,
        batch.receipt_url,
        batch.reply_type,
        batch.reply_url,
        "queued",
        now_ms,
        now_ms,
    )
    response = success_body(
        request_id, batch.recipients, sms_ids, format_utc(batch.due_ms), format_utc(now_ms)
    )
    return Intake(
        account_id=account_id,
        request_row={
            "id": request_id,
            "account_id": account_id,
            "user_id": user_id,
            "product": product,
            "client_ip": client_ip,
            "idempotency_key": idem.key if idem else None,
            "recipients": len(batch.recipients),
            "queued": len(rows),
            "received_at": now_ms,
        },
        message_common=common,
        message_rows=rows,
        parts=parts,
        response=response,
        idempotency=idem,
    )


def _outcome_body(intake: Intake, request_id: str, parts: int) -> tuple[str, bytes]:
    """The result code (for the log) and the answer for what the writer decided."""
    match intake.outcome:
        case Outcome.STORED:
            return Result.OK.value, intake.response
        case Outcome.IDEMPOTENT_REPLAY:
            return "0000 (replay)", intake.replay
        case Outcome.IDEMPOTENCY_CONFLICT:
            code, text = Result.IDEMPOTENCY_CONFLICT, IDEMPOTENCY_CONFLICT_TEXT
        case Outcome.NO_CREDIT:
            code, text = (
                Result.NO_CREDIT,
                f"Insufficient credit: this request needs {parts} credits; nothing was queued",
            )
        case Outcome.UNAVAILABLE:
            code, text = Result.UNAVAILABLE, UNAVAILABLE_TEXT
        case _:
            code, text = Result.INTERNAL_ERROR, "Internal error: nothing was queued, retry"
    return code.value, error_body(code, text, request_id)


def _log(request_id: str, account: str, result: str, started: float) -> None:
    log.info(
        "send request=%s account=%s result=%s ms=%.1f",
        request_id,
        account,
        result,
        (time.perf_counter() - started) * 1000,
    )
