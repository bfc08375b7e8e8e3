"""The SMPP 3.4 ESME session: one bind to one SMSC, kept up, with pipelined submits.

Usage::

    session = SmppSession(parse_carrier_url(url), on_deliver=handle)
    await session.start()                  # connect + bind once, then kept up
    resp = await session.submit(pdu)       # SubmitSmResp (any status) or an SmppError
    await session.close()                  # unbind, close, stop reconnecting

Lifecycle. :meth:`SmppSession.start` launches a supervisor task that connects (TCP,
TLS for ``smpps``; TCP_NODELAY so small PDUs are not held back by Nagle), binds,
then waits for the link to die and reconnects after an exponential backoff with
jitter (``reconnect_min`` doubling up to ``reconnect_max``; reset once a link has stayed
up for ``min(reconnect_max, 30 s)``). ``start()`` returns once the first bind
succeeded, or raises that first attempt's error (:class:`BindFailed`,
:class:`ConnectFailed`) *while the supervisor keeps trying*: an SMSC that is down when
the gateway starts must not keep it down. :attr:`SmppSession.state` is ``connecting``
/ ``bound`` / ``backoff`` / ``closed``; :attr:`SmppSession.bound` is an
``asyncio.Event`` set while bound; :attr:`SmppSession.stats` holds the counters.

A link is reset (then rebuilt after backoff) when the TCP connection drops, when the
byte stream cannot be framed any more (a command_length outside 16..64 KiB: a
generic_nack goes out first), when an enquire_link or a submit_sm gets no answer
within ``response_timeout`` (the link is hung: filling the window again on it would
only multiply the submits whose fate is unknown), or when the SMSC unbinds (answered
with unbind_resp first). A PDU whose body is malformed but whose framing is sound is
answered (generic_nack or the request's ``*_resp`` with the error status, per
:meth:`PduError.response`) and the link stays up. enquire_link is sent after
``enquire_link`` seconds without receiving anything (a link carrying traffic needs no
probe).

Submits. :meth:`SmppSession.submit` takes a window slot (at most ``window``
submit_sm await their response), waits for a bound link (up to ``response_timeout``),
takes its turn from the pacer (``tps``: one submit every ``1/tps`` s, never a
burst), writes the PDU and awaits the response with the same sequence number for up to
``response_timeout``. The outcome is a :class:`SubmitSmResp` of any status (a
generic_nack is turned into one with its status; classify it with
:func:`~roxgate.carriers.smpp.pdu.classify_submit_error`) or one of:

* :class:`NotBound` (:class:`SessionClosed`): never written; safe to send again.
* :class:`OutcomeUnknown`: written, no usable answer; the SMSC may or may not have
  taken it. :class:`LinkLost` (link dropped first), :class:`ResponseTimeout`,
  :class:`BadResponse` (the answer could not be decoded).

A throttling answer (``ESME_RTHROTTLED`` / ``ESME_RMSGQFUL``) also holds every submit
of the session back for ``throttle_pause`` seconds: the SMSC asked the whole bind to
slow down, not only that message's sender.

Writes need no lock: ``StreamWriter.write`` is synchronous, so a PDU is never
interleaved with another. PDUs written in the same event loop iteration are joined
into one ``write`` (one syscall, one TCP segment for many small PDUs); ``drain`` is
awaited after each submit so a peer that stops reading pushes back on the callers.

Incoming deliver_sm (receipts and MO) each get a task; at most ``deliver_concurrency``
handlers run at once (the others wait, still unanswered; the SMSC's own window bounds
how many there are). deliver_sm_resp goes out only after ``on_deliver`` returned, with
the status it returned: the owner commits to its database first, so a crash in
between makes the SMSC deliver again instead of losing the receipt. A handler that
raises gets ``ESME_RX_T_APPN`` (temporary: the SMSC retries later) and is logged. A
deliver_sm whose link dropped before its handler finished is not answered (the SMSC
redelivers it on the next bind). Other requests from the SMSC get generic_nack
``ESME_RINVCMDID`` (alert_notification, which has no response, is ignored).

Binding: ``bind=trx`` (default) is one transceiver session. ``bind=tx+rx`` is two
sessions, a transmitter and a receiver, built by :func:`sessions_for`; each reconnects
on its own. There is no outbind support (the ESME always connects).

:func:`build_submits` turns a text into its submit_sm PDUs (see its doc).

Known limits: a submit that timed out frees its window slot although the SMSC may
still answer it (the late answer is counted and dropped), so a slow SMSC can briefly
see ``window`` + the timed-out ones; ``on_deliver`` has no time limit of its own (a
hung handler holds one of the ``deliver_concurrency`` slots, and the SMSC times the
deliver_sm out and redelivers it); no outbind, data_sm, query_sm or submit_multi.

Throughput (tests/carriers/test_session.py::test_throughput, session and stub SMSC in
one event loop on a loaded 2-core box, CPython 3.11, window 50): about 9k-26k
submit_sm/s when the SMSC answers at once, 9k-13k/s when it answers after 1 ms.
Joining the writes of one loop iteration gave about +25 % over one write per PDU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Literal

from roxgate.carriers.smpp.pdu import (
    ESM_CLASS_UDHI,
    Bind,
    BindResp,
    CommandId,
    DataCoding,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Pdu,
    PduError,
    PduReader,
    Status,
    SubmitSm,
    SubmitSmResp,
    Tlv,
    Unbind,
    UnbindResp,
    decode,
    encode,
    format_relative_validity,
    set_int_tlv,
    udh_concat,
)
from roxgate.carriers.smpp.url import CarrierConfig, ConcatMode
from roxgate.sms.text import encode_gsm7, encode_ucs2, is_gsm7
from roxgate.stats import SUBMIT_BUCKETS, Histogram

__all__ = [
    "MAX_SEQUENCE",
    "BadResponse",
    "BindFailed",
    "ConnectFailed",
    "DeliverHandler",
    "LinkLost",
    "NotBound",
    "OutcomeUnknown",
    "RateLimiter",
    "ResponseTimeout",
    "SessionClosed",
    "SessionMode",
    "SessionState",
    "SessionStats",
    "SmppError",
    "SmppSession",
    "build_submits",
    "choose_source",
    "sessions_for",
    "submits_for",
]

log = logging.getLogger(__name__)

MAX_SEQUENCE: Final = 0x7FFFFFFF  # SMPP 3.4 §5.1.4: 0x00000001..0x7FFFFFFF

DeliverHandler = Callable[[DeliverSm], Awaitable[int]]
SessionMode = Literal["trx", "tx", "rx"]

_BIND_IDS: Final[dict[str, CommandId]] = {
    "trx": CommandId.BIND_TRANSCEIVER,
    "tx": CommandId.BIND_TRANSMITTER,
    "rx": CommandId.BIND_RECEIVER,
}
_THROTTLING: Final = frozenset({Status.ESME_RTHROTTLED, Status.ESME_RMSGQFUL})
_RESPONSE_BIT: Final = 0x80000000
_READ_SIZE: Final = 64 * 1024
_CLOSE_GRACE: Final = 1.0  # seconds a closing socket may take to flush before abort
_STABLE_AFTER_MAX: Final = 30.0  # a link up this long resets the backoff


# Tasks nobody awaits (socket closers): the event loop only keeps weak references.
_BACKGROUND_TASKS: set[asyncio.Task[None]] = set()


def _background(task: asyncio.Task[None]) -> None:
    _BACKGROUND_TASKS.add(task)
    task.add_done_callback(_BACKGROUND_TASKS.discard)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class SmppError(Exception):
    """Base of the session's errors."""


class ConnectFailed(SmppError):
    """Connecting, the TLS handshake or binding failed (the cause is chained)."""


class BindFailed(ConnectFailed):
    """The SMSC refused the bind; ``status`` is its command_status."""

    def __init__(self, status: int) -> None:
        self.status = status
        try:
            name = Status(status).name
        except ValueError:
            name = f"0x{status:08x}"
        super().__init__(f"bind refused: {name}")


class NotBound(SmppError):
    """The submit was not written: no bound link in time. Safe to send again."""


class SessionClosed(NotBound):
    """The session is closed (or closing); nothing more is written."""


class OutcomeUnknown(SmppError):
    """The submit was written but no usable answer came: the SMSC may or may not have
    accepted it (a resend may duplicate the message)."""


class LinkLost(OutcomeUnknown):
    """The link dropped while the request awaited its response."""


class ResponseTimeout(OutcomeUnknown):
    """No response within ``response_timeout``."""


class BadResponse(OutcomeUnknown):
    """The response could not be decoded, or was not the expected command."""


# ---------------------------------------------------------------------------
# State, counters, pacing
# ---------------------------------------------------------------------------


class SessionState(StrEnum):
    CONNECTING = "connecting"  # connecting or binding
    BOUND = "bound"
    BACKOFF = "backoff"  # waiting before the next attempt
    CLOSED = "closed"  # close() called (or not started yet)


@dataclass(slots=True)
class SessionStats:
    """Counters for metrics (monotonic except where noted)."""

    submits: int = 0  # submit_sm written
    responses: Counter[int] = field(default_factory=Counter)  # submit_sm_resp by status
    throttled: int = 0  # throttling answers (also counted in responses)
    lost: int = 0  # submits failed with LinkLost
    timeouts: int = 0  # submits failed with ResponseTimeout
    bad_responses: int = 0  # submits failed with BadResponse
    late_responses: int = 0  # responses to nothing outstanding (after a timeout)
    connects: int = 0  # connection attempts
    binds: int = 0  # successful binds
    reconnects: int = 0  # successful binds after the first
    link_drops: int = 0  # bound links that went down
    bind_failures: int = 0  # attempts that did not end bound
    delivers: int = 0  # deliver_sm received
    deliver_errors: int = 0  # handlers that raised (answered ESME_RX_T_APPN)
    enquire_links_sent: int = 0
    garbage: int = 0  # PDUs that could not be decoded or framed
    generic_nacks_sent: int = 0
    # submit_sm written → its response read (answered submits only), seconds.
    submit_seconds: Histogram = field(default_factory=lambda: Histogram(SUBMIT_BUCKETS))


class RateLimiter:
    """Smooth pacing: consecutive acquisitions are at least ``1/rate`` seconds apart.

    Each caller reserves the next free slot synchronously (so concurrent callers queue
    in order) and sleeps until it. Idle time earns no credit: after a pause, sending
    starts again at the steady rate instead of with a burst. ``rate`` 0 means no
    limit, but :meth:`pause` still applies. A caller cancelled while waiting wastes
    its slot (the rate is then briefly a little lower, never higher)."""

    __slots__ = ("_interval", "_next")

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0  # loop time of the earliest next slot

    async def acquire(self) -> None:
        now = asyncio.get_running_loop().time()
        at = self._next if self._next > now else now
        self._next = at + self._interval
        if at > now:
            await asyncio.sleep(at - now)

    def set_rate(self, rate: float) -> None:
        """A new rate from the next slot on (0: no limit)."""
        self._interval = 1.0 / rate if rate > 0 else 0.0

    def pause(self, seconds: float) -> None:
        """Nothing passes for ``seconds`` from now (a longer pause already set wins)."""
        until = asyncio.get_running_loop().time() + seconds
        if until > self._next:
            self._next = until


# ---------------------------------------------------------------------------
# One connection
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    """A request written on a link, awaiting its response."""

    expect: int  # the response command_id
    future: asyncio.Future[Pdu]


class _Link:
    """One TCP (or TLS) connection: framing, request/response matching by sequence
    number, answering the SMSC's requests, the enquire_link probe. It never
    reconnects; when it fails, every outstanding request gets :class:`LinkLost` and the
    session builds a new one."""

    def __init__(
        self,
        session: SmppSession,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self._session = session
        self._reader = reader
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        self._pending: dict[int, _Pending] = {}
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._tasks: list[asyncio.Task[None]] = []
        self.dead = False
        self.reason = ""
        self.closed = asyncio.Event()
        self._closer: asyncio.Task[None] | None = None
        self.last_received = self._loop.time()

    def start_reader(self) -> None:
        self._tasks.append(self._loop.create_task(self._read_loop()))

    def start_keepalive(self, interval: float, timeout: float) -> None:
        self._tasks.append(self._loop.create_task(self._keepalive(interval, timeout)))

    # -- writing ---------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue ``data`` for the socket. Everything queued in one loop iteration goes
        out in one write. Dropped silently on a dead link (the caller's request, if
        any, fails with LinkLost)."""
        if self.dead:
            return
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and not self._writer.is_closing():
            data = b"".join(self._out)
            self._out.clear()
            self._writer.write(data)

    async def request(self, pdu: Pdu, within: float) -> Pdu:
        """Write request ``pdu`` (its sequence_number is assigned here) and return the
        response with the same sequence number: the expected ``*_resp`` or a
        generic_nack. Raises :class:`NotBound` when the link is already dead,
        :class:`LinkLost`, :class:`ResponseTimeout`, :class:`BadResponse`, or
        :class:`PduError` when ``pdu`` cannot be encoded."""
        if self.dead:
            raise NotBound(f"link down: {self.reason}")
        seq = self._session._next_sequence()
        pdu.sequence_number = seq
        data = encode(pdu)
        future: asyncio.Future[Pdu] = self._loop.create_future()
        self._pending[seq] = _Pending(pdu.command_id | _RESPONSE_BIT, future)
        timer = self._loop.call_later(within, self._expire, seq, within)
        try:
            self.send(data)
            try:
                # Back-pressure: wait while the transport's buffer is over its limit.
                await self._writer.drain()
            except OSError as exc:  # the connection is gone (reset, TLS error...)
                self.fail(f"write failed: {exc!r}")
            return await future
        finally:
            timer.cancel()
            self._pending.pop(seq, None)

    def _expire(self, seq: int, timeout: float) -> None:
        pending = self._pending.pop(seq, None)
        if pending is not None and not pending.future.done():
            pending.future.set_exception(ResponseTimeout(f"no response within {timeout:g} s"))

    # -- reading ---------------------------------------------------------------

    async def _read_loop(self) -> None:
        framer = PduReader()
        try:
            while not self.dead:
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    self.fail("connection closed by the SMSC")
                    return
                self.last_received = self._loop.time()
                framer.feed(data)
                try:
                    for frame in framer:
                        self._on_frame(frame)
                        if self.dead:
                            return
                except PduError as err:
                    # A bad command_length: where the next PDU starts is unknowable.
                    self._session.stats.garbage += 1
                    self._nack(err.response())
                    self.fail(f"unrecoverable framing error: {err}")
                    return
        except (OSError, EOFError) as exc:  # ConnectionError, ssl.SSLError...
            self.fail(f"read failed: {exc!r}")
        except Exception:
            log.exception("SMPP reader crashed on %s", self._session.config.url)
            self.fail("internal error in the reader")

    def _on_frame(self, frame: bytes) -> None:
        try:
            pdu = decode(frame)
        except PduError as err:
            self._session.stats.garbage += 1
            self._on_undecodable(err)
            return
        if pdu.command_id & _RESPONSE_BIT:
            self._on_response(pdu)
        elif isinstance(pdu, DeliverSm):
            self._session._spawn_deliver(self, pdu)
        elif isinstance(pdu, EnquireLink):
            self.send(encode(EnquireLinkResp(sequence_number=pdu.sequence_number)))
        elif isinstance(pdu, Unbind):
            self.send(encode(UnbindResp(sequence_number=pdu.sequence_number)))
            self.fail("the SMSC unbound")
        elif pdu.command_id == CommandId.ALERT_NOTIFICATION:
            log.debug("ignoring alert_notification from %s", self._session.config.url)
        else:
            log.info(
                "answering %s from %s with generic_nack",
                CommandId(pdu.command_id).name.lower(),
                self._session.config.url,
            )
            self._nack(
                GenericNack(
                    sequence_number=pdu.sequence_number, command_status=Status.ESME_RINVCMDID
                )
            )

    def _on_undecodable(self, err: PduError) -> None:
        cid, seq = err.command_id, err.sequence_number
        if cid is not None and cid & _RESPONSE_BIT:
            # A response is not answered (the SMSC would not know what to do with a nack
            # to its nack); the request waiting for it learns its answer was unreadable.
            pending = self._pending.pop(seq, None) if seq is not None else None
            if pending is not None and not pending.future.done():
                pending.future.set_exception(BadResponse(f"undecodable response: {err}"))
            log.warning("undecodable response from %s: %s", self._session.config.url, err)
            return
        log.warning("undecodable request from %s: %s", self._session.config.url, err)
        self._nack(err.response())

    def _nack(self, answer: Pdu) -> None:
        if isinstance(answer, GenericNack):
            self._session.stats.generic_nacks_sent += 1
        self.send(encode(answer))

    def _on_response(self, pdu: Pdu) -> None:
        pending = self._pending.pop(pdu.sequence_number, None)
        if pending is None:
            self._session.stats.late_responses += 1
            log.debug(
                "response 0x%08x seq %d from %s matches nothing outstanding",
                pdu.command_id,
                pdu.sequence_number,
                self._session.config.url,
            )
            return
        if pending.future.done():
            return
        if pdu.command_id == pending.expect or isinstance(pdu, GenericNack):
            pending.future.set_result(pdu)
        else:
            pending.future.set_exception(
                BadResponse(f"expected command 0x{pending.expect:08x}, got 0x{pdu.command_id:08x}")
            )

    # -- keepalive -------------------------------------------------------------

    async def _keepalive(self, interval: float, within: float) -> None:
        while not self.dead:
            idle = self._loop.time() - self.last_received
            if idle < interval:
                await asyncio.sleep(interval - idle)
                continue
            self._session.stats.enquire_links_sent += 1
            try:
                await self.request(EnquireLink(), within)
            except ResponseTimeout:
                self.fail(f"no enquire_link_resp within {within:g} s")
                return
            except (NotBound, LinkLost):
                return
            except BadResponse as exc:
                log.warning("enquire_link to %s: %s", self._session.config.url, exc)
            # An answer (even a nack) proves the link is alive.
            self.last_received = self._loop.time()

    # -- teardown --------------------------------------------------------------

    def fail(self, reason: str) -> None:
        """Take the link down: fail what is outstanding, flush what is queued (a last
        generic_nack or unbind_resp), close the socket. Idempotent."""
        if self.dead:
            return
        self._flush()
        self.dead = True
        self.reason = reason
        pending, self._pending = self._pending, {}
        for item in pending.values():
            if not item.future.done():
                item.future.set_exception(LinkLost(reason))
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._writer.close()
        self._closer = self._loop.create_task(self._close_socket())
        _background(self._closer)
        self.closed.set()
        self._session._link_closed(self)

    async def _close_socket(self) -> None:
        # close() flushes the buffer first; a peer that stopped reading must not keep
        # the socket open for ever.
        try:
            await asyncio.wait_for(self._writer.wait_closed(), _CLOSE_GRACE)
        except TimeoutError:
            self._writer.transport.abort()
        except Exception as exc:  # the error that closed it; already reported
            log.debug("closing SMPP socket: %r", exc)

    async def wait_closed(self) -> None:
        """Wait until the socket is closed (at most about ``_CLOSE_GRACE`` after
        :meth:`fail`)."""
        if self._closer is not None:
            await asyncio.shield(self._closer)


# ---------------------------------------------------------------------------
# The session
# ---------------------------------------------------------------------------


class SmppSession:
    """One bind to one SMSC, reconnected for as long as the session is open (see the
    module doc). ``mode`` is the bind kind: ``trx`` (default), ``tx`` or ``rx``."""

    def __init__(
        self,
        config: CarrierConfig,
        on_deliver: DeliverHandler,
        *,
        mode: SessionMode = "trx",
        deliver_concurrency: int = 16,
        throttle_pause: float = 1.0,
    ) -> None:
        if mode not in _BIND_IDS:
            raise ValueError(f"mode must be trx, tx or rx, not {mode!r}")
        if deliver_concurrency < 1:
            raise ValueError("deliver_concurrency must be at least 1")
        self.config = config
        self.mode: SessionMode = mode
        self.state = SessionState.CLOSED
        self.bound = asyncio.Event()
        self.stats = SessionStats()
        self._on_deliver = on_deliver
        self._throttle_pause = throttle_pause
        self._window = asyncio.Semaphore(config.window)
        self._window_in_use = 0
        self._window_idle = asyncio.Event()  # set by the last submit out once closing
        self._pacer = RateLimiter(config.tps)
        self._deliver_slots = asyncio.Semaphore(deliver_concurrency)
        self._deliver_tasks: set[asyncio.Task[None]] = set()
        self._sequence = 1
        self._link: _Link | None = None
        # Resolved with the bound link (None once closing); replaced when the link
        # drops. Submits that find no link wait on it.
        self._ready: asyncio.Future[_Link | None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._first_attempt: asyncio.Future[None] | None = None
        self._closing = False
        self._tls: ssl.SSLContext | None = None

    # -- public API ------------------------------------------------------------

    def set_tps(self, tps: float) -> None:
        """Submit at most ``tps`` a second from now on (0: no limit)."""
        self._pacer.set_rate(tps)

    @property
    def window_in_use(self) -> int:
        """Submits holding a window slot right now (pacing, on the wire, awaiting)."""
        return self._window_in_use

    async def start(self) -> None:
        """Connect and bind. Returns once bound; raises :class:`ConnectFailed` /
        :class:`BindFailed` when the first attempt fails, in which case the session
        keeps retrying in the background (call :meth:`close` to stop it)."""
        if self._supervisor is not None or self._closing:
            raise RuntimeError("an SmppSession can be started only once")
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._first_attempt = loop.create_future()
        self._supervisor = loop.create_task(self._supervise())
        await asyncio.shield(self._first_attempt)

    async def wait_bound(self, within: float) -> bool:
        """Wait up to ``within`` seconds for the session to be bound."""
        try:
            await asyncio.wait_for(self.bound.wait(), within)
        except TimeoutError:
            return False
        return True

    async def submit(self, pdu: SubmitSm) -> SubmitSmResp:
        """Send ``pdu`` and return the SMSC's answer (see the module doc for the
        errors). ``pdu.sequence_number`` is overwritten."""
        if self.mode == "rx":
            raise RuntimeError("a receiver bind cannot submit")
        timeout = self.config.response_timeout
        async with self._window:
            self._window_in_use += 1
            try:
                link = self._link
                if link is None or link.dead or self._closing:
                    link = await self._wait_link(timeout)
                await self._pacer.acquire()
                link = self._link  # the link may have changed while pacing
                if link is None or self._closing:
                    raise (
                        SessionClosed("session closed")
                        if self._closing
                        else NotBound("link went down before the submit was written")
                    )
                self.stats.submits += 1
                sent = time.perf_counter()
                try:
                    resp = await link.request(pdu, timeout)
                except LinkLost:
                    self.stats.lost += 1
                    raise
                except ResponseTimeout:
                    self.stats.timeouts += 1
                    # A link that leaves a submit unanswered this long is hung, not
                    # slow: the window it frees must not be filled on the same link
                    # (each such submit is one more that may go twice).
                    link.fail(f"no submit_sm_resp within {timeout:g} s")
                    raise
                except BadResponse:
                    self.stats.bad_responses += 1
                    raise
            finally:
                self._window_in_use -= 1
                if self._closing and not self._window_in_use:
                    self._window_idle.set()  # close() waits for this
        self.stats.submit_seconds.observe(time.perf_counter() - sent)
        if isinstance(resp, GenericNack):
            # The SMSC could not take the PDU at all; report it as a failed submit.
            resp = SubmitSmResp(
                sequence_number=resp.sequence_number,
                command_status=resp.command_status or Status.ESME_RSYSERR,
            )
        assert isinstance(resp, SubmitSmResp)
        status = resp.command_status
        self.stats.responses[status] += 1
        if status in _THROTTLING:
            self.stats.throttled += 1
            self._pacer.pause(self._throttle_pause)
        return resp

    async def close(self, grace: float = 5.0) -> None:
        """Stop: refuse new submits, let outstanding submits and deliver handlers
        finish (up to ``grace`` seconds), unbind (waiting briefly for unbind_resp),
        close the socket, stop reconnecting. Idempotent."""
        if self._closing:
            return
        self._closing = True
        self.state = SessionState.CLOSED
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        link = self._link
        if link is not None and not link.dead:
            await self._drain_work(grace)
            with contextlib.suppress(SmppError):
                await link.request(Unbind(), min(self.config.response_timeout, 2.0))
            link.fail("session closed")
            await link.wait_closed()
        self._link = None
        self.bound.clear()
        for task in list(self._deliver_tasks):
            task.cancel()
        if self._deliver_tasks:
            await asyncio.wait(self._deliver_tasks, timeout=_CLOSE_GRACE)

    # -- supervision -----------------------------------------------------------

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        attempt = 0
        stable_after = min(self.config.reconnect_max, _STABLE_AFTER_MAX)
        while not self._closing:
            self.state = SessionState.CONNECTING
            try:
                link = await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.bind_failures += 1
                log.warning("SMPP bind to %s failed: %s", self.config.url, exc)
                self._report_first(exc)
            else:
                bound_at = loop.time()
                self._report_first(None)
                await link.closed.wait()
                log.warning("SMPP link to %s down: %s", self.config.url, link.reason)
                await link.wait_closed()
                if loop.time() - bound_at >= stable_after:
                    attempt = 0
            if self._closing:
                return
            self.state = SessionState.BACKOFF
            await asyncio.sleep(self._backoff_delay(attempt))
            attempt += 1

    def _backoff_delay(self, attempt: int) -> float:
        """``reconnect_min`` doubling per attempt up to ``reconnect_max``, jittered
        down by up to half (so reconnect storms spread out), never below the min."""
        low, high = self.config.reconnect_min, self.config.reconnect_max
        ceiling = min(high, low * 2.0 ** min(attempt, 32))
        return max(low, random.uniform(ceiling / 2, ceiling))

    def _report_first(self, exc: BaseException | None) -> None:
        first = self._first_attempt
        if first is None or first.done():
            return
        if exc is None:
            first.set_result(None)
        else:
            if not isinstance(exc, ConnectFailed):
                wrapped = ConnectFailed(f"cannot reach {self.config.url}: {exc!r}")
                wrapped.__cause__ = exc
                exc = wrapped
            first.set_exception(exc)
            # start() may have been cancelled; do not warn about an unread exception.
            first.exception()

    async def _connect(self) -> _Link:
        """One attempt: connect, bind, start the link's tasks. Raises on failure."""
        config = self.config
        timeout = config.response_timeout
        self.stats.connects += 1
        tls = self._tls_context() if config.tls else None
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                config.host,
                config.port,
                ssl=tls,
                server_hostname=config.host if tls else None,
            )
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = _Link(self, reader, writer)
        link.start_reader()
        try:
            bind = Bind(
                command_id=_BIND_IDS[self.mode],
                system_id=config.system_id,
                password=config.password,
                system_type=config.system_type,
            )
            resp = await link.request(bind, timeout)
            if resp.command_status != Status.ESME_ROK:
                raise BindFailed(resp.command_status)
            if not isinstance(resp, BindResp):
                raise BadResponse("bind answered without a bind_resp")
            if link.dead:
                raise LinkLost(link.reason)
        except BaseException:
            link.fail("bind did not succeed")
            raise
        if self._closing:  # close() came while we were binding
            link.fail("session closed")
            raise SessionClosed("session closed")
        link.start_keepalive(config.enquire_link, timeout)
        self._link_bound(link, resp)
        return link

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            context = ssl.create_default_context()
            if not self.config.tls_verify:
                # Only on explicit request (tls_verify=false), for self-signed test SMSCs.
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._tls = context
        return self._tls

    def _link_bound(self, link: _Link, resp: BindResp) -> None:
        self.stats.binds += 1
        if self.stats.binds > 1:
            self.stats.reconnects += 1
        self._link = link
        self.state = SessionState.BOUND
        self.bound.set()
        ready = self._ready
        if ready is None or ready.done():
            ready = self._ready = asyncio.get_running_loop().create_future()
        ready.set_result(link)
        log.info("SMPP %s bound to %s (system_id %r)", self.mode, self.config.url, resp.system_id)

    def _link_closed(self, link: _Link) -> None:
        """Called synchronously by a failing link, so no submit picks it up again."""
        if self._link is not link:
            return
        self._link = None
        self.bound.clear()
        if not self._closing:
            self.stats.link_drops += 1
            self.state = SessionState.BACKOFF
            if self._ready is not None and self._ready.done():
                self._ready = asyncio.get_running_loop().create_future()

    async def _wait_link(self, within: float) -> _Link:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            if self._closing or self._ready is None:
                raise SessionClosed("session closed" if self._closing else "session not started")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise NotBound(f"not bound to {self.config.url} within {within:g} s")
            try:
                link = await asyncio.wait_for(asyncio.shield(self._ready), remaining)
            except TimeoutError:
                continue
            if link is not None and not link.dead:
                return link
            if link is not None:
                await asyncio.sleep(0)  # a dead link is being replaced; look again

    def _next_sequence(self) -> int:
        seq = self._sequence
        self._sequence = 1 if seq >= MAX_SEQUENCE else seq + 1
        return seq

    async def _drain_work(self, grace: float) -> None:
        """Wait (up to ``grace``) for submits in flight and deliver handlers."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        if self._window_in_use:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._window_idle.wait(), grace)
        remaining = deadline - loop.time()
        if self._deliver_tasks and remaining > 0:
            await asyncio.wait(self._deliver_tasks, timeout=remaining)

    # -- incoming deliver_sm ---------------------------------------------------

    def _spawn_deliver(self, link: _Link, pdu: DeliverSm) -> None:
        self.stats.delivers += 1
        task = asyncio.get_running_loop().create_task(self._handle_deliver(link, pdu))
        self._deliver_tasks.add(task)
        task.add_done_callback(self._deliver_tasks.discard)

    async def _handle_deliver(self, link: _Link, pdu: DeliverSm) -> None:
        async with self._deliver_slots:
            try:
                status = await self._on_deliver(pdu)
                if isinstance(status, bool) or not isinstance(status, int):
                    raise TypeError(f"on_deliver returned {status!r}, not a Status")
                if not 0 <= status <= 0xFFFFFFFF:
                    raise ValueError(f"on_deliver returned {status}, not a command_status")
            except Exception:
                self.stats.deliver_errors += 1
                log.exception(
                    "deliver_sm handler failed (seq %d from %s); answering ESME_RX_T_APPN",
                    pdu.sequence_number,
                    self.config.url,
                )
                status = Status.ESME_RX_T_APPN
        if link.dead:
            log.info(
                "deliver_sm seq %d handled after its link dropped; the SMSC will redeliver",
                pdu.sequence_number,
            )
            return
        link.send(encode(DeliverSmResp(sequence_number=pdu.sequence_number, command_status=status)))


def sessions_for(config: CarrierConfig, on_deliver: DeliverHandler) -> list[SmppSession]:
    """The sessions ``config.bind`` asks for: ``[transceiver]`` or
    ``[transmitter, receiver]`` (submit on the first; both need start() / close())."""
    if config.bind == "tx+rx":
        return [
            SmppSession(config, on_deliver, mode="tx"),
            SmppSession(config, on_deliver, mode="rx"),
        ]
    return [SmppSession(config, on_deliver)]


# ---------------------------------------------------------------------------
# Text -> submit_sm
# ---------------------------------------------------------------------------

_GSM_SINGLE: Final = 160  # septets in one SMS (140 octets packed)
_UCS2_SINGLE: Final = 70  # UTF-16 code units in one SMS
# Per-part room when each part carries a concatenation header. 140 octets minus the
# UDH: 6 octets (8-bit ref) leave 153 septets / 67 units; 7 octets (16-bit ref) leave
# 133 octets = 152 septets exactly / 66 units. SAR parts carry no UDH in the PDU but
# the SMSC adds an 8-bit-ref one on the air, so they get the udh8 room.
_PART_ROOM: Final[dict[str, tuple[int, int]]] = {
    "udh8": (153, 67),
    "sar": (153, 67),
    "udh16": (152, 66),
}
_ESC: Final = 0x1B
_MAX_PARTS: Final = 255
_MAX_ADDRESS: Final = 20  # source_addr / destination_addr, NUL excluded
_MAX_ALPHANUMERIC: Final = 11  # an alphanumeric sender on the air (GSM 03.40 TP-OA)


def choose_source(source: str) -> tuple[str, int, int]:
    """``(source_addr, ton, npi)`` for a sender:

    * ``""``: empty address, TON 0 NPI 0 (the SMSC puts the account's default).
    * ``+`` then digits: international, TON 1 NPI 1, sent without the ``+``.
    * digits only, more than 7: taken as an international number (TON 1 NPI 1).
    * digits only, 7 or fewer: a short code: TON 0 (unknown) NPI 1 (ISDN). Not TON 3
      ("subscriber number" is a local number in a national plan, which a short code is
      not); TON 0 lets the SMSC apply its own rule and is what SMSCs accept most
      widely. A carrier that wants otherwise is configured with source_ton/source_npi.
    * anything else: alphanumeric, TON 5 NPI 0; at most 11 printable ASCII characters
      (the most a handset displays; GSM 03.40 packs it in 10 octets).

    Raises ``ValueError`` for a sender that fits none of these.
    """
    if source == "":
        return "", 0, 0
    digits = source[1:] if source.startswith("+") else source
    if digits.isascii() and digits.isdigit():
        if len(digits) > _MAX_ADDRESS:
            raise ValueError(f"numeric sender {source!r} is longer than {_MAX_ADDRESS} digits")
        if source.startswith("+") or len(digits) > 7:
            return digits, 1, 1
        return digits, 0, 1
    if not (source.isascii() and source.isprintable()) or len(source) > _MAX_ALPHANUMERIC:
        raise ValueError(
            f"alphanumeric sender {source!r} must be 1..{_MAX_ALPHANUMERIC} printable "
            "ASCII characters"
        )
    return source, 5, 0


def _destination(destination: str) -> str:
    digits = destination[1:] if destination.startswith("+") else destination
    if not (digits.isascii() and digits.isdigit()) or len(digits) > _MAX_ADDRESS:
        raise ValueError(
            f"destination {destination!r} must be an international number "
            f"(optional '+', up to {_MAX_ADDRESS} digits)"
        )
    return digits


def _split_units(data: bytes, unit: int, limit: int) -> list[bytes]:
    """Cut encoded text into chunks of at most ``limit`` units (``unit`` octets each)
    without splitting a character: a GSM escape (0x1B, always the first octet of a
    two-septet extension character; no extension code is 0x1B) or a UTF-16 high
    surrogate never ends a chunk. Greedy, the same segmentation as
    ``roxgate.sms.text.split_parts`` for its part sizes."""
    size = unit * limit
    chunks: list[bytes] = []
    begin, end_all = 0, len(data)
    while begin < end_all:
        end = min(begin + size, end_all)
        if end < end_all:
            if unit == 1 and data[end - 1] == _ESC:
                end -= 1
            elif unit == 2 and 0xD8 <= data[end - 2] <= 0xDB:
                end -= 2
        chunks.append(data[begin:end])
        begin = end
    return chunks


def build_submits(
    text: str,
    destination: str,
    source: str | None,
    *,
    registered_delivery: int = 1,
    concat: ConcatMode = "udh8",
    coding: int = 0,
    ref: int = 0,
    source_ton: int | None = None,
    source_npi: int | None = None,
    validity: int | None = None,
) -> list[SubmitSm]:
    """The submit_sm PDUs that send ``text`` to ``destination`` (sequence numbers are
    assigned at submit).

    * Destination: TON 1 NPI 1, digits without ``+``. Source: see
      :func:`choose_source`; ``source_ton`` / ``source_npi`` override its choice.
    * Encoding (``coding`` 0): GSM 03.38 as data_coding 0, unpacked (one septet per
      octet, extension characters as ESC + code) when every character allows it,
      otherwise UCS-2 (UTF-16-BE, data_coding 8). ``coding`` 8 always sends UCS-2.
    * A text of up to 160 septets / 70 units is one plain submit_sm. A longer one is
      cut into parts of at most 153 septets / 67 units (``udh8``, ``sar``) or 152 / 66
      (``udh16``), never inside a character, each part with
      ``udh8``: a 6-octet UDH, IEI 0, ref ``ref % 256``, esm_class UDHI (0x40);
      ``udh16``: a 7-octet UDH, IEI 8, ref ``ref % 65536``;
      ``sar``: the sar_msg_ref_num (``ref % 65536``), sar_total_segments and
      sar_segment_seqnum TLVs, no UDH. ``payload`` sends one submit_sm with the whole
      encoded text in the message_payload TLV (empty short_message); the SMSC splits.
    * ``registered_delivery`` is set on every part: SMSCs send one receipt per part
      and the store tracks parts, so each must ask for its own.
    * ``validity`` (seconds) becomes a relative validity_period.

    Raises ``ValueError`` for an empty text, a bad address or coding, or a text of
    more than 255 parts.
    """
    if not text:
        raise ValueError("cannot send an empty text")
    if coding not in (0, 8):
        raise ValueError(f"coding must be 0 or 8, not {coding}")
    source_addr, ton, npi = choose_source(source or "")
    template = SubmitSm(
        source_addr_ton=ton if source_ton is None else source_ton,
        source_addr_npi=npi if source_npi is None else source_npi,
        source_addr=source_addr,
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr=_destination(destination),
        registered_delivery=registered_delivery,
        validity_period="" if validity is None else format_relative_validity(validity),
    )
    if coding == 0 and is_gsm7(text):
        data, unit, single = encode_gsm7(text), 1, _GSM_SINGLE
        data_coding = DataCoding.SMSC_DEFAULT
    else:
        data, unit, single = encode_ucs2(text), 2, _UCS2_SINGLE
        data_coding = DataCoding.UCS2
    template.data_coding = data_coding

    if len(data) <= single * unit:
        return [_with(template, short_message=data)]
    if concat == "payload":
        if len(data) > 0xFFFF:
            raise ValueError("text too long for message_payload")
        return [_with(template, short_message=b"", tlvs={Tlv.MESSAGE_PAYLOAD: data})]
    if concat not in _PART_ROOM:
        raise ValueError(f"concat must be udh8, udh16, sar or payload, not {concat!r}")
    gsm_room, ucs2_room = _PART_ROOM[concat]
    chunks = _split_units(data, unit, gsm_room if unit == 1 else ucs2_room)
    total = len(chunks)
    if total > _MAX_PARTS:
        raise ValueError(f"text needs {total} parts; at most {_MAX_PARTS} can be joined")
    submits: list[SubmitSm] = []
    for number, chunk in enumerate(chunks, start=1):
        if concat == "sar":
            tlvs: dict[int, bytes] = {}
            set_int_tlv(tlvs, Tlv.SAR_MSG_REF_NUM, ref % 0x10000)
            set_int_tlv(tlvs, Tlv.SAR_TOTAL_SEGMENTS, total)
            set_int_tlv(tlvs, Tlv.SAR_SEGMENT_SEQNUM, number)
            submits.append(_with(template, short_message=chunk, tlvs=tlvs))
        else:
            ref16 = concat == "udh16"
            udh = udh_concat(ref % (0x10000 if ref16 else 0x100), total, number, ref16)
            submits.append(_with(template, short_message=udh + chunk, esm_class=ESM_CLASS_UDHI))
    return submits


def _with(
    template: SubmitSm,
    *,
    short_message: bytes,
    esm_class: int = 0,
    tlvs: dict[int, bytes] | None = None,
) -> SubmitSm:
    """A copy of ``template`` with its own message, esm_class and TLVs."""
    return SubmitSm(
        source_addr_ton=template.source_addr_ton,
        source_addr_npi=template.source_addr_npi,
        source_addr=template.source_addr,
        dest_addr_ton=template.dest_addr_ton,
        dest_addr_npi=template.dest_addr_npi,
        destination_addr=template.destination_addr,
        esm_class=esm_class,
        validity_period=template.validity_period,
        registered_delivery=template.registered_delivery,
        data_coding=template.data_coding,
        short_message=short_message,
        tlvs={} if tlvs is None else tlvs,
    )


def submits_for(
    config: CarrierConfig, text: str, destination: str, *, ref: int, source: str | None = None
) -> list[SubmitSm]:
    """:func:`build_submits` with the carrier's options (``source`` falls back to the
    URL's ``source``)."""
    return build_submits(
        text,
        destination,
        source if source is not None else config.source,
        registered_delivery=config.registered_delivery,
        concat=config.concat,
        coding=config.coding,
        ref=ref,
        source_ton=config.source_ton,
        source_npi=config.source_npi,
        validity=config.validity,
    )
