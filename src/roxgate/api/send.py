"""``POST /smsapi/send``: a ROX_API_Request in, a ROX_API_Response out, always HTTP 200."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import OperationalError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from roxgate.accounts.ratelimit import RateLimited
from roxgate.logs import ACCOUNT, bind_request
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


def _answer(body: bytes, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=200, headers=headers, media_type="application/json")


class SlowBody(RoxError):
    """The body did not arrive in time: answered (2100), and the connection closed."""


async def read_body(request: Request, limit: int, max_seconds: float | None = None) -> bytes:
    """The body, refusing (2025) as soon as it is known to exceed ``limit``, and
    (SlowBody) when it is not complete within ``max_seconds``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RoxError(Result.BODY_TOO_LARGE, f"Request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        # A client trickling its body must not hold this handler (and the
        # memory of what it sent so far) for ever.
        async with asyncio.timeout(max_seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RoxError(
                        Result.BODY_TOO_LARGE, f"Request body is larger than {limit} bytes"
                    )
                chunks.append(chunk)
    except TimeoutError:
        raise SlowBody(
            Result.UNAVAILABLE,
            f"Request body not complete within {max_seconds:g} s: nothing was queued, retry",
        ) from None
    return b"".join(chunks)


def _error_headers(err: RoxError) -> dict[str, str] | None:
    if isinstance(err, RateLimited):
        return {"Retry-After": str(err.retry_after)}
    if isinstance(err, SlowBody):
        return {"Connection": "close"}  # the rest of the body is not wanted
    return None


async def send(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    request_id = new_id()
    started = time.perf_counter()
    account = "-"
    bind_request(request_id)  # every log line of this request carries its id
    try:
        settings = gateway.settings
        body = await read_body(request, settings.max_body_bytes, settings.http_body_timeout or None)
        envelope = parse_envelope(body)
        account = envelope.account_id
        ACCOUNT.set(account)
        client_ip = request.client.host if request.client else None
        principal = await gateway.auth.authenticate(
            envelope.account_id, envelope.username, envelope.password, client_ip
        )
        # After authentication: nobody can spend another account's allowance.
        gateway.rate_limits.check_request(principal.account_id, principal.rate_requests)
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
                _log(gateway, request_id, account, "0000 (replay)", started)
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
        gateway.rate_limits.check_messages(
            principal.account_id, principal.rate_messages, len(batch.accepted)
        )
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
        _log(gateway, request_id, account, code, started)
        return _answer(body_out)
    except RoxError as err:
        _log(gateway, request_id, account, err.code.value, started)
        return _answer(error_body(err.code, err.text, request_id), _error_headers(err))
    except OperationalError as exc:
        log.error("request %s: database unavailable: %s", request_id, exc.orig)
        _log(gateway, request_id, account, Result.UNAVAILABLE.value, started)
        return _answer(error_body(Result.UNAVAILABLE, UNAVAILABLE_TEXT, request_id))
    except ClientDisconnect:
        _log(gateway, request_id, account, Result.UNAVAILABLE.value, started)
        return _answer(error_body(Result.UNAVAILABLE, "Client disconnected", request_id))
    except Exception:
        log.exception("request %s failed", request_id)
        _log(gateway, request_id, account, Result.INTERNAL_ERROR.value, started)
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


def _log(gateway: Gateway, request_id: str, account: str, result: str, started: float) -> None:
    """The request's one log line, and its count and latency for /metrics."""
    seconds = time.perf_counter() - started
    gateway.requests.observe(result, seconds)
    log.info(
        "send request=%s account=%s result=%s ms=%.1f",
        request_id,
        account,
        result,
        seconds * 1000,
        extra={"result": result, "duration_ms": round(seconds * 1000, 1)},
    )
