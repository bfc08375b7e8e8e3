"""``Client`` and ``AsyncClient``: send SMS through a ROX 1.1 gateway (SPEC.md §1).

Everything but the I/O is shared: a send is planned into requests of at most
500 recipients (each body serialised once, so that a retry sends the very same
bytes under the same ``Idempotency-Key``), and each answer is judged the same
way. The two classes differ only in how they wait and post.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self

import anyio
import httpx

from roxgate import __version__
from roxgate.client._models import (
    OK,
    Recipient,
    RecipientLike,
    RecipientResult,
    RoxConnectionError,
    RoxError,
    SendResult,
    parse_timestamp,
    to_recipient,
    to_recipients,
)
from roxgate.rox.codes import Result

MAX_RECIPIENTS: Final = 500  # per request (SPEC.md §1, Count)
MAX_KEY_LENGTH: Final = 255  # Idempotency-Key
DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_RETRIES: Final = 3
# Request-level codes after which nothing was queued and the same request may
# simply be sent again.
RETRY_CODES: Final = frozenset(
    {Result.INTERNAL_ERROR.value, Result.UNAVAILABLE.value, Result.RATE_LIMITED.value}
)
_RETRY_AFTER_MAX = 60.0  # a longer Retry-After is the caller's to wait out, not a send()'s
_BACKOFF_FIRST = 0.5  # seconds before the first retry, doubling, with jitter
_BACKOFF_MAX = 8.0
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_USER_AGENT = f"roxgate-python/{__version__}"

Progress = Callable[[int, int], None]


@dataclass(slots=True)
class _Chunk:
    """One request of a send: its recipients' positions, its exact body, its key."""

    first: int
    size: int
    body: bytes = field(repr=False)
    key: str | None


class _Retry(Exception):
    """This answer says: nothing was done, try again (not before ``after`` seconds,
    when the gateway said so in ``Retry-After``)."""

    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.after = after


def _retry_after(response: httpx.Response) -> float | None:
    """The answer's ``Retry-After`` in seconds (the delta form; a date is ignored)."""
    value = response.headers.get("retry-after", "").strip()
    if not value.isdigit():
        return None
    return min(float(value), _RETRY_AFTER_MAX)


def send_later_fields(when: datetime) -> tuple[str, int]:
    """``(SendLater, TimeZoneOffset)`` for an aware datetime, in its own offset.

    ``TimeZoneOffset`` has JavaScript's sign (UTC+10:00 is -600). An offset that
    is not whole minutes, or outside the ROX range, is sent as UTC instead.
    Seconds are whole: a fraction is dropped.
    """
    offset = when.utcoffset() if when.tzinfo is not None else None
    if offset is None:
        raise ValueError(
            "send_later must be timezone-aware, "
            "e.g. datetime(…, tzinfo=ZoneInfo('Australia/Sydney'))"
        )
    seconds = int(offset.total_seconds())
    if seconds % 60 or not -720 * 60 <= seconds <= 840 * 60:
        when, seconds = when.astimezone(UTC), 0
    stamp = (
        f"{when.day:02d}-{_MONTHS[when.month - 1]}-{when.year:04d} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d}"
    )
    return stamp, -(seconds // 60)


def chunk_key(key: str, index: int) -> str:
    """The ``Idempotency-Key`` of request ``index`` (from 0) of a send keyed ``key``:
    the key itself for the first, ``key/2``, ``key/3``… for the others (a
    digest of the key stands in for a key too long to take the suffix)."""
    if index == 0:
        return key
    suffix = f"/{index + 1}"
    if len(key) + len(suffix) > MAX_KEY_LENGTH:
        key = hashlib.sha256(key.encode()).hexdigest()
    return key + suffix


def _check_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all(" " <= c <= "~" for c in key):
        raise ValueError(
            f"idempotency_key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters"
        )
    return key


def _endpoint(url: str) -> httpx.URL:
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"url must be an absolute http:// or https:// URL, not {url!r}")
    path = parsed.path.rstrip("/")
    if not path.endswith("/smsapi/send"):
        path += "/smsapi/send"
    return parsed.copy_with(path=path, query=None, fragment=None)


def _backoff(attempt: int, retry: _Retry | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, …): the gateway's
    ``Retry-After`` when it gave one (a rate limit, 2041), else a jittered doubling."""
    delay: float = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2.0 ** (attempt - 1))
    delay *= random.uniform(0.5, 1.0)
    if retry is not None and retry.after is not None:
        delay = max(delay, retry.after)
    return delay


def _transport_failure(exc: httpx.RequestError) -> str:
    detail = str(exc) or "no detail"
    return f"{type(exc).__name__}: {detail}"


class _Sending:
    """One ``send`` under way: its requests, its key, and the results gathered so far
    in the order the recipients were given."""

    def __init__(
        self,
        recipients: list[Recipient],
        chunks: list[_Chunk],
        key: str | None,
        on_progress: Progress | None,
    ) -> None:
        self._recipients = recipients
        self.chunks = chunks
        self.key = key
        self._on_progress = on_progress
        self._request_ids: list[str] = []
        self._results: list[RecipientResult] = []

    def accepted(self, chunk: _Chunk, data: dict[str, Any]) -> None:
        """Take the answer (already judged ``0000``) to ``chunk``."""
        messages = data["Messages"]
        request_id = str(messages.get("RequestId") or "")
        self._request_ids.append(request_id)
        for n in range(chunk.size):
            entry = messages[str(n + 1)]
            index = chunk.first + n
            dest_tn = entry.get("DestTn")
            if not isinstance(dest_tn, str):
                dest_tn = self._recipients[index].dest_tn
            sms_id = entry.get("SMSId")
            self._results.append(
                RecipientResult(
                    index=index,
                    dest_tn=dest_tn,
                    sms_id=sms_id if isinstance(sms_id, str) else None,
                    result=str(entry.get("Result")),
                    result_text=str(entry.get("ResultText") or ""),
                    timestamp=parse_timestamp(entry.get("Timestamp")),
                    request_id=request_id,
                )
            )
        if self._on_progress is not None:
            self._on_progress(len(self._results), len(self._recipients))

    def failed(self, error: RoxError) -> RoxError:
        """``error``, telling what the earlier requests queued and the send's key."""
        error.partial = self.result() if self._results else None
        error.idempotency_key = self.key
        return error

    def result(self) -> SendResult:
        return SendResult(list(self._request_ids), list(self._results))


class _BaseClient:
    """Credentials, planning and judging: what both clients share."""

    def __init__(
        self,
        url: str,
        account: str,
        username: str,
        password: str,
        *,
        timeout: float,
        retries: int,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        self._endpoint = _endpoint(url)
        self.account = account
        self.username = username
        self.__password = password
        self.timeout = timeout
        self.retries = retries

    @property
    def url(self) -> str:
        """The send endpoint (``…/smsapi/send``)."""
        return str(self._endpoint.copy_with(username=None, password=None))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(url={self.url!r}, account={self.account!r}, "
            f"username={self.username!r}, password='***')"
        )

    # --- planning ---------------------------------------------------------------

    def _plan(
        self,
        recipients: Iterable[RecipientLike],
        *,
        text: str | None,
        send_later: datetime | None,
        receipt_flag: int,
        receipt_url: str | None,
        reply_type: str | None,
        reply_url: str | None,
        product: str | None,
        idempotency_key: str | None,
        on_progress: Progress | None,
    ) -> _Sending:
        recipients = to_recipients(recipients)
        if not recipients:
            raise ValueError("no recipients")
        if isinstance(receipt_flag, bool) or receipt_flag not in (0, 1, 2):
            raise ValueError("receipt_flag must be 0 (none), 1 (every receipt) or 2 (failures)")
        if reply_type is not None:
            reply_type = reply_type.upper()
            if reply_type not in ("E", "S", "B", "H"):
                raise ValueError("reply_type must be 'E', 'S', 'B' or 'H'")
        if idempotency_key is not None:
            key: str | None = _check_key(idempotency_key)
        elif self.retries > 0:
            key = str(uuid.uuid4())
        else:
            key = None
        messages: dict[str, Any] = {"ReceiptFlag": receipt_flag}
        if receipt_url is not None:
            messages["ReceiptCallbackURL"] = receipt_url
        if reply_type is not None:
            messages["ReplyType"] = reply_type
        if reply_url is not None:
            messages["ReplyCallbackURL"] = reply_url
        if send_later is not None:
            stamp, offset = send_later_fields(send_later)
            messages["TimeZoneOffset"] = offset
            messages["SendLater"] = stamp
        if text is not None:
            messages["GlobalText"] = text
        head: dict[str, Any] = {"Name": "ROX_API_Request", "Version": 1.1}
        if product is not None:
            head["Product"] = product
        head["Sender"] = {
            "AccountId": self.account,
            "Username": self.username,
            "Password": self.__password,
        }
        chunks = []
        for n, first in enumerate(range(0, len(recipients), MAX_RECIPIENTS)):
            part = recipients[first : first + MAX_RECIPIENTS]
            body_messages = {**messages, "Count": len(part)}
            for i, recipient in enumerate(part, start=1):
                body_messages[str(i)] = recipient.to_rox()
            body = json.dumps(
                {**head, "Messages": body_messages}, ensure_ascii=False, separators=(",", ":")
            ).encode("utf-8")
            chunks.append(
                _Chunk(first, len(part), body, None if key is None else chunk_key(key, n))
            )
        return _Sending(recipients, chunks, key, on_progress)

    def _headers(self, chunk: _Chunk) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if chunk.key is not None:
            headers["Idempotency-Key"] = chunk.key
        return headers

    # --- judging ----------------------------------------------------------------

    def _judge(self, chunk: _Chunk, response: httpx.Response) -> dict[str, Any]:
        """The answer's body when it queued the request; raises ``RoxError`` when
        the gateway refused it, ``_Retry`` when trying again is the thing to do."""
        if response.status_code != 200:
            raise _Retry(
                f"HTTP {response.status_code} {response.reason_phrase}".rstrip(),
                _retry_after(response),
            )
        try:
            data = json.loads(response.content.removeprefix(b"\xef\xbb\xbf"))
        except ValueError:
            raise _Retry("the answer is not JSON") from None
        if not isinstance(data, dict) or data.get("Name") != "ROX_API_Response":
            raise _Retry("the answer is not a ROX_API_Response")
        code = data.get("Result")
        messages = data.get("Messages")
        messages = messages if isinstance(messages, dict) else {}
        request_id = messages.get("RequestId")
        if code != OK:
            error = RoxError(
                str(code),
                str(data.get("ResultText") or ""),
                request_id if isinstance(request_id, str) else None,
            )
            if error.code in RETRY_CODES:
                raise _Retry(str(error), _retry_after(response)) from error
            raise error
        if messages.get("Count") != chunk.size or not all(
            isinstance(messages.get(str(i)), dict) for i in range(1, chunk.size + 1)
        ):
            raise _Retry("the answer does not list every recipient")
        return data

    def _give_up(self, chunk: _Chunk, attempts: int, last: _Retry) -> RoxError:
        """The error to raise when the last attempt of ``chunk`` was a ``_Retry``."""
        cause = last.__cause__
        if isinstance(cause, RoxError):  # the gateway kept answering 2099/2100/2041
            return cause
        return RoxConnectionError(
            f"no answer from {self.url} after {attempts} attempt"
            f"{'s' if attempts > 1 else ''}: {last}"
        )


class Client(_BaseClient):
    """A synchronous client. ``url`` is the gateway (``https://sms.example.com``)
    or its send endpoint; ``transport`` is any ``httpx.BaseTransport``."""

    def __init__(
        self,
        url: str,
        account: str,
        username: str,
        password: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, account, username, password, timeout=timeout, retries=retries)
        self._http = httpx.Client(
            transport=transport, timeout=timeout, headers={"User-Agent": _USER_AGENT}
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(
        self,
        recipients: Iterable[RecipientLike],
        *,
        text: str | None = None,
        send_later: datetime | None = None,
        receipt_flag: int = 0,
        receipt_url: str | None = None,
        reply_type: str | None = None,
        reply_url: str | None = None,
        product: str | None = None,
        idempotency_key: str | None = None,
        on_progress: Progress | None = None,
    ) -> SendResult:
        """Send to every recipient; see ``docs/sdk.md``. Raises ``RoxError`` when the
        gateway refuses a request, ``RoxConnectionError`` when it cannot be reached."""
        sending = self._plan(
            recipients,
            text=text,
            send_later=send_later,
            receipt_flag=receipt_flag,
            receipt_url=receipt_url,
            reply_type=reply_type,
            reply_url=reply_url,
            product=product,
            idempotency_key=idempotency_key,
            on_progress=on_progress,
        )
        for chunk in sending.chunks:
            try:
                data = self._post(chunk)
            except RoxError as error:
                raise sending.failed(error) from None
            sending.accepted(chunk, data)
        return sending.result()

    def send_one(self, number: RecipientLike, text: str, **options: Any) -> RecipientResult:
        """Send ``text`` to one number; its ``RecipientResult`` (check ``.queued``)."""
        return self.send([to_recipient(number)], text=text, **options).results[0]

    def _post(self, chunk: _Chunk) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                response = self._http.post(
                    self._endpoint, content=chunk.body, headers=self._headers(chunk)
                )
                return self._judge(chunk, response)
            except httpx.UnsupportedProtocol as exc:
                raise RoxConnectionError(_transport_failure(exc)) from None
            except httpx.RequestError as exc:
                last = _Retry(_transport_failure(exc))
            except _Retry as retry:
                last = retry
            attempt += 1
            if attempt > self.retries:
                raise self._give_up(chunk, attempt, last) from None
            time.sleep(_backoff(attempt, last))


class AsyncClient(_BaseClient):
    """The asynchronous client (asyncio or trio); as ``Client``, with ``await``.
    ``transport`` is any ``httpx.AsyncBaseTransport``."""

    def __init__(
        self,
        url: str,
        account: str,
        username: str,
        password: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(url, account, username, password, timeout=timeout, retries=retries)
        self._http = httpx.AsyncClient(
            transport=transport, timeout=timeout, headers={"User-Agent": _USER_AGENT}
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(
        self,
        recipients: Iterable[RecipientLike],
        *,
        text: str | None = None,
        send_later: datetime | None = None,
        receipt_flag: int = 0,
        receipt_url: str | None = None,
        reply_type: str | None = None,
        reply_url: str | None = None,
        product: str | None = None,
        idempotency_key: str | None = None,
        on_progress: Progress | None = None,
    ) -> SendResult:
        """As ``Client.send``."""
        sending = self._plan(
            recipients,
            text=text,
            send_later=send_later,
            receipt_flag=receipt_flag,
            receipt_url=receipt_url,
            reply_type=reply_type,
            reply_url=reply_url,
            product=product,
            idempotency_key=idempotency_key,
            on_progress=on_progress,
        )
        for chunk in sending.chunks:
            try:
                data = await self._post(chunk)
            except RoxError as error:
                raise sending.failed(error) from None
            sending.accepted(chunk, data)
        return sending.result()

    async def send_one(self, number: RecipientLike, text: str, **options: Any) -> RecipientResult:
        """As ``Client.send_one``."""
        return (await self.send([to_recipient(number)], text=text, **options)).results[0]

    async def _post(self, chunk: _Chunk) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                response = await self._http.post(
                    self._endpoint, content=chunk.body, headers=self._headers(chunk)
                )
                return self._judge(chunk, response)
            except httpx.UnsupportedProtocol as exc:
                raise RoxConnectionError(_transport_failure(exc)) from None
            except httpx.RequestError as exc:
                last = _Retry(_transport_failure(exc))
            except _Retry as retry:
                last = retry
            attempt += 1
            if attempt > self.retries:
                raise self._give_up(chunk, attempt, last) from None
            await anyio.sleep(_backoff(attempt, last))
