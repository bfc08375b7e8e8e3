"""The built-in carrier simulator: a small SMSC speaking real SMPP 3.4 on loopback.

``ROXGATE_CARRIER=sim`` (the default) starts one in-process, so the default
configuration runs the real SMPP connector over a real socket. Tests and demos use it
to exercise failures without any configuration. Standard library only (plus our own
PDU codec).

Usage::

    sim = SmscSimulator(receipt_delay=1.0)
    await sim.start()                # 127.0.0.1, a free port: sim.port
    ...
    await sim.send_mo("+61400000001", "61411000000", "STOP")
    await sim.stop()

or ``async with SmscSimulator() as sim: ...``.

What it does:

* Accepts bind_transmitter, bind_receiver and bind_transceiver. With ``credentials``
  (a mapping system_id -> password) an unknown system_id is refused with
  ``ESME_RINVSYSID`` and a wrong password with ``ESME_RINVPASWD`` (the connection is
  then closed); without, any pair is accepted. A second bind on the same connection
  gets ``ESME_RALYBND``; other requests before a bind get their response (or
  generic_nack) with ``ESME_RINVBNDSTS``; a connection not bound within
  ``bind_timeout`` seconds is closed.
* Answers enquire_link and unbind (then closes). A PDU it cannot decode gets the
  answer :meth:`PduError.response` builds (generic_nack for an unknown command id or
  a bad length, else the request's ``*_resp`` with the error status); a
  command_length outside 16..``max_command_length`` cannot be resynchronised, so it
  is answered with generic_nack and the connection is closed. Commands it does not
  implement (data_sm, query_sm, submit_multi...) get generic_nack ``ESME_RINVCMDID``.
* submit_sm is answered at once with a unique message id: hexadecimal by default
  (``message_id_style="decimal"`` for decimal). Ids are a counter that starts at the
  current time in microseconds, so they stay unique across restarts.
* When ``registered_delivery & 3`` is 1 (or 2 and the outcome is a failure), a
  delivery receipt follows after ``receipt_delay`` seconds (0 allowed): a deliver_sm
  with esm_class 0x04, the text ``id:ID sub:001 dlvrd:001 submit date:YYMMDDhhmm done
  date:YYMMDDhhmm stat:DELIVRD err:000 text:<first 20 characters>`` (dates in UTC),
  and the TLVs ``receipted_message_id`` and ``message_state`` (plus
  ``network_error_code`` GSM/err for UNDELIV and REJECTD). Its addresses are the
  submit's, swapped. It goes to a receiver or transceiver bind of the *same
  system_id*; while none is bound it is kept (up to ``max_pending`` per system_id)
  and sent when one binds.
* Receipts and MO messages are windowed: up to ``deliver_window`` deliver_sm per
  connection wait for their deliver_sm_resp at once. A deliver_sm answered with a
  non-zero status (or generic_nack) is sent again after ``retry_delay`` seconds; one
  unanswered for ``response_timeout`` seconds, or outstanding when its connection
  closes, is queued again at once. ``max_attempts`` (default unlimited) bounds the
  sends of one deliver_sm.
* :meth:`SmscSimulator.send_mo` delivers a mobile-originated message (esm_class 0,
  GSM 03.38 unpacked with data_coding 0 when the text allows, else UCS-2 with
  data_coding 8; over 254 octets in ``message_payload``) and returns once it has been
  acknowledged.

Magic numbers (the last 4 characters of ``destination_addr``):

======  ================================================================
 9990   submit_sm_resp ``ESME_RINVDSTADR`` (permanent error, no receipt)
 9991   ``ESME_RTHROTTLED`` for the first 2 submits to that exact number,
        then accepted (receipt DELIVRD)
 9992   accepted; receipt ``stat:UNDELIV err:001`` (message_state 5)
 9993   accepted; receipt ``stat:EXPIRED err:000`` (message_state 3)
 9994   accepted; receipt ``stat:REJECTD err:002`` (message_state 8)
 9995   accepted; no receipt, ever
 9996   accepted; receipt ``stat:DELETED err:000`` (message_state 4)
 9997   accepted; receipt ``stat:UNKNOWN err:000`` (message_state 7)
 9998   accepted; receipt ``stat:DELIVRD``, then the number replies
        ``Thanks, see you then`` (an MO to the submit's source address)
 other  accepted; receipt ``stat:DELIVRD err:000`` (message_state 2)
======  ================================================================

For tests it records what it received: :attr:`SmscSimulator.submits` (the last
``keep_submits`` submit_sm, as :class:`ReceivedSubmit`) and counters in
:attr:`SmscSimulator.stats`.

Performance: one asyncio protocol per connection (no streams), TCP_NODELAY, every
response produced by one read written with one ``write`` call, receipts held in a
FIFO with one timer (the delay is constant) instead of a timer each. Reading pauses
while the peer does not read (transport write buffer over its high-water mark), so
memory per connection is bounded by the framer's ``max_command_length``, the
transport's buffers and the deliver_sm window. Measured on the 2-core dev box (loaded
by other jobs, so ranges; CPython 3.11.7, asyncio or uvloop, one connection, 5,000 to
20,000 pipelined submit_sm, the raw client in the same event loop): 50,000-105,000
submit_sm/s without receipts; 15,000-21,000/s with a receipt for each (the deliver_sm
built, sent and acknowledged). ``tests/carriers/test_simulator.py::test_throughput``
prints the first figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from roxgate.carriers.smpp.pdu import (
    DEFAULT_MAX_COMMAND_LENGTH,
    ESM_CLASS_DELIVERY_RECEIPT,
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
    MessageState,
    Pdu,
    PduError,
    PduReader,
    Status,
    SubmitSm,
    Tlv,
    Unbind,
    UnbindResp,
    decode,
    encode,
    set_cstr_tlv,
    set_int_tlv,
)
from roxgate.sms.text import encode_gsm7, is_gsm7

__all__ = [
    "MAGIC_NUMBERS",
    "ReceivedSubmit",
    "SimulatorStats",
    "SmscSimulator",
]

log = logging.getLogger(__name__)

# Last 4 characters of destination_addr -> behaviour (see the module docstring).
MAGIC_NUMBERS: Final[Mapping[str, str]] = {
    "9990": "invalid-destination",
    "9991": "throttled-twice",
    "9992": "UNDELIV",
    "9993": "EXPIRED",
    "9994": "REJECTD",
    "9995": "no-receipt",
    "9996": "DELETED",
    "9997": "UNKNOWN",
    "9998": "reply",
}
# What a 9998 number answers once its message is delivered (a demo of replies).
AUTO_REPLY_TEXT: Final = "Thanks, see you then"
_THROTTLE_TIMES: Final = 2

# Receipt stat -> (message_state, err, dlvrd).
_RECEIPT_STATES: Final[dict[str, tuple[int, str, int]]] = {
    "DELIVRD": (MessageState.DELIVERED, "000", 1),
    "UNDELIV": (MessageState.UNDELIVERABLE, "001", 0),
    "EXPIRED": (MessageState.EXPIRED, "000", 0),
    "REJECTD": (MessageState.REJECTED, "002", 0),
    "DELETED": (MessageState.DELETED, "000", 0),
    "UNKNOWN": (MessageState.UNKNOWN, "000", 0),
}

_HEADER = struct.Struct(">IIII")
_U32 = struct.Struct(">I")
_SUBMIT_SM: Final = int(CommandId.SUBMIT_SM)
_SUBMIT_SM_RESP: Final = int(CommandId.SUBMIT_SM_RESP)
_MAX_SEQUENCE: Final = 0x7FFFFFFF
_RECEIVER_BINDS: Final = (CommandId.BIND_RECEIVER, CommandId.BIND_TRANSCEIVER)
_TRANSMITTER_BINDS: Final = (CommandId.BIND_TRANSMITTER, CommandId.BIND_TRANSCEIVER)

# Message ids: one counter for the process, started at the time in microseconds, so
# that ids do not repeat across simulator instances or restarts (unless more than a
# million messages a second were sustained).
_message_ids = itertools.count(time.time_ns() // 1000)


@dataclass(slots=True)
class ReceivedSubmit:
    """One submit_sm the simulator received: the bind's ``system_id`` (``None`` when
    not bound), the decoded PDU, when it arrived (``time.time()``), the status it was
    answered with and the message id given (``None`` when refused)."""

    system_id: str | None
    pdu: SubmitSm
    received_at: float
    command_status: int
    message_id: str | None


@dataclass(slots=True)
class SimulatorStats:
    """Counters since start. ``receipts_sent`` / ``mo_sent`` count deliver_sm PDUs
    written, retries included; ``*_acked`` those answered with status 0."""

    connections: int = 0
    binds: int = 0
    bind_failures: int = 0
    submits: int = 0
    submits_accepted: int = 0
    submits_refused: int = 0
    receipts_scheduled: int = 0
    receipts_sent: int = 0
    receipts_acked: int = 0
    mo_sent: int = 0
    mo_acked: int = 0
    deliver_nacked: int = 0  # deliver_sm answered with an error status (then retried)
    deliver_timeouts: int = 0  # deliver_sm unanswered within response_timeout
    deliver_dropped: int = 0  # over max_pending or max_attempts
    protocol_errors: int = 0  # PDUs that could not be decoded


class _Outgoing:
    """A deliver_sm (receipt or MO) on its way to a receiver."""

    __slots__ = ("attempts", "future", "key", "mo", "pdu")

    def __init__(
        self,
        key: str | None,
        pdu: DeliverSm,
        mo: bool,
        future: asyncio.Future[None] | None = None,
    ) -> None:
        self.key = key  # system_id of the binds that may take it; None = any
        self.pdu = pdu
        self.mo = mo
        self.future = future
        self.attempts = 0


class _DelayLine:
    """Items that become due ``delay`` seconds after being pushed. The delay is
    constant, so a FIFO and a single timer do."""

    __slots__ = ("_delay", "_fire", "_items", "_loop", "_timer")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, delay: float, fire: Callable[[list[Any]], None]
    ) -> None:
        self._loop = loop
        self._delay = delay
        self._fire = fire
        self._items: deque[tuple[float, Any]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def push(self, item: Any) -> None:
        due = self._loop.time() + self._delay
        self._items.append((due, item))
        if self._timer is None:
            self._timer = self._loop.call_at(due, self._run)

    def _run(self) -> None:
        self._timer = None
        limit = self._loop.time() + 0.0005
        items = self._items
        batch = []
        while items and items[0][0] <= limit:
            batch.append(items.popleft()[1])
        if items:
            self._timer = self._loop.call_at(items[0][0], self._run)
        if batch:
            self._fire(batch)

    def close(self) -> list[Any]:
        """Stop; return the items not yet due."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        left = [item for _due, item in self._items]
        self._items.clear()
        return left


def _excerpt(submit: SubmitSm) -> str:
    """The first 20 characters of the submitted text, as printable ASCII."""
    raw = submit.short_message or submit.tlvs.get(Tlv.MESSAGE_PAYLOAD, b"")
    if raw and submit.esm_class & ESM_CLASS_UDHI:
        raw = raw[raw[0] + 1 :]
    if submit.data_coding == DataCoding.UCS2:
        text = bytes(raw[:40]).decode("utf-16-be", errors="replace")[:20]
    else:
        text = bytes(raw[:20]).decode("latin-1")
    if text.isascii() and text.isprintable():
        return text
    return _NOT_PRINTABLE.sub("?", text)


_NOT_PRINTABLE: Final = re.compile(r"[^\x20-\x7e]")
_minute_cache: list[Any] = [None, ""]


def _smpp_minute(moment: float) -> str:
    """``YYMMDDhhmm`` in UTC (cached: receipts come in bursts within a minute)."""
    minute = int(moment // 60)
    if _minute_cache[0] != minute:
        _minute_cache[0] = minute
        _minute_cache[1] = time.strftime("%y%m%d%H%M", time.gmtime(minute * 60))
    return str(_minute_cache[1])


def _address(value: str) -> tuple[int, int, str]:
    """(ton, npi, address) for an MO address: ``+digits`` international / E.164,
    digits unknown / E.164, anything else alphanumeric."""
    if value.startswith("+") and value[1:].isdigit():
        return 1, 1, value[1:]
    if value.isdigit():
        return 0, 1, value
    return 5, 0, value


class _Session(asyncio.Protocol):
    """One ESME connection."""

    __slots__ = (
        "bind_timer",
        "can_receive",
        "can_transmit",
        "close_after_flush",
        "closed",
        "flush_scheduled",
        "in_receive",
        "inflight",
        "out",
        "peer",
        "reader",
        "seq",
        "sim",
        "system_id",
        "transport",
        "write_paused",
    )

    def __init__(self, sim: SmscSimulator) -> None:
        self.sim = sim
        self.transport: asyncio.Transport | None = None
        self.reader = PduReader(sim.max_command_length)
        self.out: list[bytes] = []
        self.flush_scheduled = False
        self.in_receive = False
        self.close_after_flush = False
        self.closed = False
        self.write_paused = False
        self.system_id: str | None = None
        self.can_transmit = False
        self.can_receive = False
        self.inflight: dict[int, _Outgoing] = {}
        self.seq = 0
        self.peer: object = None
        self.bind_timer: asyncio.TimerHandle | None = None

    # -- asyncio protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)
        self.peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # not TCP (tests may use other transports)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sim._connected(self)
        if self.sim.bind_timeout:
            self.bind_timer = asyncio.get_running_loop().call_later(
                self.sim.bind_timeout, self._bind_timed_out
            )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.bind_timer is not None:
            self.bind_timer.cancel()
            self.bind_timer = None
        self.sim._disconnected(self)

    def pause_writing(self) -> None:
        # The peer does not read: stop reading (and answering) until it does.
        self.write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()
            self.sim._pump_session(self)

    def data_received(self, data: bytes) -> None:
        if self.close_after_flush or self.closed:
            return
        self.in_receive = True
        try:
            self.reader.feed(data)
            try:
                for frame in self.reader:
                    self._handle(frame)
                    if self.close_after_flush:
                        break
            except PduError as err:  # command_length out of range: cannot resync
                self.sim.stats.protocol_errors += 1
                log.info("simulator: closing %s: %s", self.peer, err)
                self.queue(encode(err.response()))
                self.close_after_flush = True
        except Exception:
            log.exception("simulator: error handling data from %s", self.peer)
            self.close_after_flush = True
        finally:
            self.in_receive = False
            self.flush()

    # -- output ------------------------------------------------------------------

    def queue(self, data: bytes) -> None:
        self.out.append(data)
        if not self.in_receive and not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        transport = self.transport
        if transport is None or self.closed:
            self.out.clear()
            return
        if self.out:
            data = b"".join(self.out) if len(self.out) > 1 else self.out[0]
            self.out.clear()
            transport.write(data)
        if self.close_after_flush:
            self.closed = True
            transport.close()

    def next_sequence(self) -> int:
        self.seq = self.seq + 1 if self.seq < _MAX_SEQUENCE else 1
        return self.seq

    def send_outgoing(self, item: _Outgoing) -> None:
        seq = self.next_sequence()
        item.pdu.sequence_number = seq
        item.attempts += 1
        self.inflight[seq] = item
        self.queue(encode(item.pdu))
        self.sim._sent(self, seq, item)

    # -- input -------------------------------------------------------------------

    def _handle(self, frame: bytes) -> None:
        sim = self.sim
        try:
            if _U32.unpack_from(frame, 4)[0] == _SUBMIT_SM and self.can_transmit:
                submit = decode(frame)
                assert isinstance(submit, SubmitSm)
                self.queue(sim._submit(self, submit))
                return
            pdu = decode(frame)
        except PduError as err:
            sim.stats.protocol_errors += 1
            if err.command_id == _SUBMIT_SM:
                sim.stats.submits += 1
                sim.stats.submits_refused += 1
            self.queue(encode(err.response()))
            return
        self._dispatch(pdu)

    def _dispatch(self, pdu: Pdu) -> None:
        sim = self.sim
        seq = pdu.sequence_number
        if isinstance(pdu, DeliverSmResp):
            sim._deliver_resp(self, seq, pdu.command_status)
        elif isinstance(pdu, EnquireLink):
            self.queue(encode(EnquireLinkResp(sequence_number=seq)))
        elif isinstance(pdu, Bind):
            self._bind(pdu)
        elif isinstance(pdu, GenericNack):
            if seq in self.inflight:
                status = pdu.command_status or Status.ESME_RSYSERR
                sim._deliver_resp(self, seq, status)
        elif isinstance(pdu, Unbind):
            self.queue(encode(UnbindResp(sequence_number=seq)))
            sim._unbound(self)
            self.close_after_flush = True
        elif isinstance(pdu, SubmitSm):  # only when not bound as a transmitter
            sim.stats.submits += 1
            sim.stats.submits_refused += 1
            sim._record(self, pdu, Status.ESME_RINVBNDSTS, None)
            self.queue(_error_response(pdu, Status.ESME_RINVBNDSTS))
        elif pdu.command_id & 0x80000000:
            pass  # enquire_link_resp, unbind_resp, stray responses: nothing to do
        elif self.system_id is None:
            self.queue(_error_response(pdu, Status.ESME_RINVBNDSTS))
        else:
            self.queue(
                encode(GenericNack(sequence_number=seq, command_status=Status.ESME_RINVCMDID))
            )

    def _bind(self, pdu: Bind) -> None:
        sim = self.sim
        resp_id = CommandId(pdu.command_id | 0x80000000)
        seq = pdu.sequence_number
        if self.system_id is not None:
            self.queue(
                encode(
                    BindResp(
                        command_id=resp_id, sequence_number=seq, command_status=Status.ESME_RALYBND
                    )
                )
            )
            return
        status = sim._check_credentials(pdu.system_id, pdu.password)
        if status:
            sim.stats.bind_failures += 1
            log.info("simulator: bind refused for %r (%s)", pdu.system_id, Status(status).name)
            self.queue(
                encode(BindResp(command_id=resp_id, sequence_number=seq, command_status=status))
            )
            self.close_after_flush = True
            return
        tlvs: dict[int, bytes] = {}
        if pdu.interface_version >= 0x34:
            set_int_tlv(tlvs, Tlv.SC_INTERFACE_VERSION, 0x34)
        self.queue(
            encode(
                BindResp(
                    command_id=resp_id, sequence_number=seq, system_id=sim.system_id, tlvs=tlvs
                )
            )
        )
        if self.bind_timer is not None:
            self.bind_timer.cancel()
            self.bind_timer = None
        self.system_id = pdu.system_id
        self.can_transmit = pdu.command_id in _TRANSMITTER_BINDS
        self.can_receive = pdu.command_id in _RECEIVER_BINDS
        sim._bound(self)

    def _bind_timed_out(self) -> None:
        self.bind_timer = None
        if self.system_id is None and not self.closed and self.transport is not None:
            log.info("simulator: %s did not bind in time", self.peer)
            self.closed = True
            self.transport.close()


def _error_response(pdu: Pdu, status: int) -> bytes:
    """The response to request ``pdu`` carrying ``status`` (generic_nack when the
    request has no response)."""
    return encode(PduError("refused", int(pdu.command_id), pdu.sequence_number, status).response())


class SmscSimulator:
    """An SMSC on a TCP port; see the module docstring for its behaviour.

    Parameters (all keyword-only):

    * ``credentials``: system_id -> password accepted; ``None`` accepts any bind.
    * ``system_id``: what bind_*_resp reports as the SMSC's system_id.
    * ``message_id_style``: ``"hex"`` (default) or ``"decimal"``.
    * ``receipt_delay``: seconds from submit_sm to its receipt (0 allowed).
    * ``deliver_window``: deliver_sm awaiting their response per connection.
    * ``retry_delay``: seconds before a deliver_sm answered with an error is resent.
    * ``response_timeout``: seconds to wait for a deliver_sm_resp before resending.
    * ``max_attempts``: sends of one deliver_sm before giving up (``None``: no limit).
    * ``max_pending``: receipts / MO kept per system_id while no receiver can take
      them; more are dropped (counted in ``stats.deliver_dropped``).
    * ``keep_submits``: how many received submit_sm :attr:`submits` keeps.
    * ``bind_timeout``: seconds a connection may stay unbound (0: forever).
    * ``max_command_length``: longest PDU accepted.
    """

    def __init__(
        self,
        *,
        credentials: Mapping[str, str] | None = None,
        system_id: str = "roxsim",
        message_id_style: Literal["hex", "decimal"] = "hex",
        receipt_delay: float = 1.0,
        deliver_window: int = 100,
        retry_delay: float = 1.0,
        response_timeout: float = 10.0,
        max_attempts: int | None = None,
        max_pending: int = 100_000,
        keep_submits: int = 100_000,
        bind_timeout: float = 30.0,
        max_command_length: int = DEFAULT_MAX_COMMAND_LENGTH,
    ) -> None:
        if message_id_style not in ("hex", "decimal"):
            raise ValueError(
                f"message_id_style must be 'hex' or 'decimal', not {message_id_style!r}"
            )
        if receipt_delay < 0 or retry_delay < 0 or response_timeout <= 0:
            raise ValueError("delays must not be negative and response_timeout must be positive")
        if deliver_window < 1:
            raise ValueError("deliver_window must be at least 1")
        self.credentials = dict(credentials) if credentials is not None else None
        self.system_id = system_id
        self.message_id_style = message_id_style
        self.receipt_delay = receipt_delay
        self.deliver_window = deliver_window
        self.retry_delay = retry_delay
        self.response_timeout = response_timeout
        self.max_attempts = max_attempts
        self.max_pending = max_pending
        self.bind_timeout = bind_timeout
        self.max_command_length = max_command_length
        self.host = "127.0.0.1"
        self.port = 0
        self.stats = SimulatorStats()
        self.submits: deque[ReceivedSubmit] = deque(maxlen=keep_submits)
        self._server: asyncio.Server | None = None
        self._sessions: set[_Session] = set()
        self._receivers: dict[str, list[_Session]] = {}
        self._pending: dict[str | None, deque[_Outgoing]] = {}
        self._throttled: dict[str, int] = {}
        self._receipts: _DelayLine | None = None
        self._retries: _DelayLine | None = None
        self._timeouts: _DelayLine | None = None
        self._hex_ids = message_id_style == "hex"

    # -- life cycle ----------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host``:``port`` (0 picks a free port; read :attr:`port`)."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        loop = asyncio.get_running_loop()
        self._receipts = _DelayLine(loop, self.receipt_delay, self._receipts_due)
        self._retries = _DelayLine(loop, self.retry_delay, self._retries_due)
        self._timeouts = _DelayLine(loop, self.response_timeout, self._timeouts_due)
        self._server = await loop.create_server(lambda: _Session(self), host, port)
        self.host = host
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("carrier simulator listening on %s:%d", host, self.port)

    async def stop(self) -> None:
        """Close the listening socket and every connection; fail waiting
        :meth:`send_mo` calls. Receipts not yet sent are discarded."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        left: list[_Outgoing] = []
        for line in (self._receipts, self._timeouts):
            if line is not None:
                line.close()
        if self._retries is not None:
            left += self._retries.close()
        for session in list(self._sessions):
            session.closed = True
            left += session.inflight.values()
            session.inflight.clear()
            if session.transport is not None:
                session.transport.abort()
        for queue in self._pending.values():
            left += queue
        self._pending.clear()
        self._receivers.clear()
        for item in left:
            if item.future is not None and not item.future.done():
                item.future.set_exception(ConnectionError("simulator stopped"))
        await server.wait_closed()

    async def __aenter__(self) -> SmscSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- public helpers ------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Receipts and MO messages waiting for a receiver (not yet sent)."""
        return sum(len(q) for q in self._pending.values())

    @property
    def outstanding(self) -> int:
        """deliver_sm sent and not yet answered, over all connections."""
        return sum(len(s.inflight) for s in self._sessions)

    @property
    def connections(self) -> int:
        return len(self._sessions)

    async def send_mo(
        self, source: str, destination: str, text: str, *, system_id: str | None = None
    ) -> None:
        """Deliver a mobile-originated SMS from ``source`` to ``destination`` to a
        receiver bind (of ``system_id``, or any when ``None``); return once it has been
        acknowledged with status 0 (waiting for a bind if none is there). Cancel the
        call (e.g. with ``asyncio.wait_for``) to stop waiting; the message is still
        delivered."""
        if self._server is None:
            raise RuntimeError("simulator not started")
        pdu = _mo(source, destination, text)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Retrieve the outcome even when the caller stopped waiting (no "never retrieved").
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._enqueue(_Outgoing(system_id, pdu, mo=True, future=future))
        await asyncio.shield(future)

    # -- sessions ------------------------------------------------------------------

    def _connected(self, session: _Session) -> None:
        self._sessions.add(session)
        self.stats.connections += 1

    def _check_credentials(self, system_id: str, password: str) -> int:
        if self.credentials is None:
            return Status.ESME_ROK
        expected = self.credentials.get(system_id)
        if expected is None:
            return Status.ESME_RINVSYSID
        if expected != password:
            return Status.ESME_RINVPASWD
        return Status.ESME_ROK

    def _bound(self, session: _Session) -> None:
        self.stats.binds += 1
        if session.can_receive:
            assert session.system_id is not None
            self._receivers.setdefault(session.system_id, []).append(session)
            self._pump_session(session)

    def _unbound(self, session: _Session) -> None:
        """Stop using ``session`` for deliveries; queue its outstanding ones again."""
        if session.can_receive and session.system_id is not None:
            binds = self._receivers.get(session.system_id)
            if binds and session in binds:
                binds.remove(session)
                if not binds:
                    del self._receivers[session.system_id]
        session.can_receive = False
        session.can_transmit = False
        if session.inflight:
            items = [session.inflight[seq] for seq in sorted(session.inflight)]
            session.inflight.clear()
            keys = set()
            for item in reversed(items):
                self._pending.setdefault(item.key, deque()).appendleft(item)
                keys.add(item.key)
            for key in keys:
                self._pump_key(key)

    def _disconnected(self, session: _Session) -> None:
        self._sessions.discard(session)
        if self._server is not None:
            self._unbound(session)

    # -- submit_sm -----------------------------------------------------------------

    def _record(
        self, session: _Session, pdu: SubmitSm, status: int, message_id: str | None
    ) -> None:
        self.submits.append(ReceivedSubmit(session.system_id, pdu, time.time(), status, message_id))

    def _submit(self, session: _Session, pdu: SubmitSm) -> bytes:
        """Handle a submit_sm from a transmitter bind; return the encoded response."""
        stats = self.stats
        stats.submits += 1
        dest = pdu.destination_addr
        stat: str | None = "DELIVRD"
        magic = MAGIC_NUMBERS.get(dest[-4:])
        if magic is not None:
            status = 0
            if magic == "invalid-destination":
                status = Status.ESME_RINVDSTADR
            elif magic == "throttled-twice":
                seen = self._throttled.get(dest, 0)
                if seen < _THROTTLE_TIMES:
                    self._throttled[dest] = seen + 1
                    status = Status.ESME_RTHROTTLED
            elif magic == "no-receipt":
                stat = None
            elif magic == "reply":
                stat = "DELIVRD"
            else:
                stat = magic
            if status:
                stats.submits_refused += 1
                self._record(session, pdu, status, None)
                return _HEADER.pack(16, _SUBMIT_SM_RESP, status, pdu.sequence_number)
        number = next(_message_ids)
        message_id = f"{number:x}" if self._hex_ids else str(number)
        stats.submits_accepted += 1
        now = time.time()
        self.submits.append(ReceivedSubmit(session.system_id, pdu, now, 0, message_id))
        wanted = pdu.registered_delivery & 3
        if stat is not None and (wanted == 1 or (wanted == 2 and stat != "DELIVRD")):
            stats.receipts_scheduled += 1
            assert self._receipts is not None
            self._receipts.push((session.system_id, pdu, message_id, now, stat))
        raw_id = message_id.encode("ascii")
        return (
            _HEADER.pack(17 + len(raw_id), _SUBMIT_SM_RESP, 0, pdu.sequence_number) + raw_id + b"\0"
        )

    # -- receipts and MO -----------------------------------------------------------

    def _receipts_due(self, batch: list[tuple[str | None, SubmitSm, str, float, str]]) -> None:
        keys = set()
        for system_id, submit, message_id, submitted, stat in batch:
            item = _Outgoing(system_id, _receipt(submit, message_id, submitted, stat), mo=False)
            if self._enqueue(item, pump=False):
                keys.add(system_id)
            if MAGIC_NUMBERS.get(submit.destination_addr[-4:]) == "reply":
                answer = _mo(
                    _plus(submit.dest_addr_ton, submit.destination_addr),
                    _plus(submit.source_addr_ton, submit.source_addr),
                    AUTO_REPLY_TEXT,
                )
                self._enqueue(_Outgoing(system_id, answer, mo=True), pump=False)
        for key in keys:
            self._pump_key(key)

    def _enqueue(self, item: _Outgoing, pump: bool = True) -> bool:
        queue = self._pending.get(item.key)
        if queue is None:
            queue = self._pending[item.key] = deque()
        if len(queue) >= self.max_pending:
            self._drop(item, "too many deliver_sm waiting for a receiver")
            return False
        queue.append(item)
        if pump:
            self._pump_key(item.key)
        return True

    def _drop(self, item: _Outgoing, reason: str) -> None:
        self.stats.deliver_dropped += 1
        log.warning("simulator: dropped a deliver_sm for %r: %s", item.key, reason)
        if item.future is not None and not item.future.done():
            item.future.set_exception(ConnectionError(reason))

    def _pump_key(self, key: str | None) -> None:
        if key is None:
            sessions = [s for binds in self._receivers.values() for s in binds]
        else:
            sessions = self._receivers.get(key, [])
        for session in list(sessions):
            self._pump_session(session)
            if not self._pending.get(key):
                break

    def _pump_session(self, session: _Session) -> None:
        if not session.can_receive or session.closed or session.write_paused:
            return
        room = self.deliver_window - len(session.inflight)
        if room <= 0:
            return
        for key in (session.system_id, None):
            queue = self._pending.get(key)
            while queue and room > 0:
                session.send_outgoing(queue.popleft())
                room -= 1

    def _sent(self, session: _Session, seq: int, item: _Outgoing) -> None:
        if item.mo:
            self.stats.mo_sent += 1
        else:
            self.stats.receipts_sent += 1
        assert self._timeouts is not None
        self._timeouts.push((session, seq, item))

    def _deliver_resp(self, session: _Session, seq: int, status: int) -> None:
        item = session.inflight.pop(seq, None)
        if item is None:
            return
        if status == 0:
            if item.mo:
                self.stats.mo_acked += 1
                if item.future is not None and not item.future.done():
                    item.future.set_result(None)
            else:
                self.stats.receipts_acked += 1
        else:
            self.stats.deliver_nacked += 1
            if self.max_attempts is not None and item.attempts >= self.max_attempts:
                self._drop(item, f"refused {item.attempts} times, last with 0x{status:08x}")
            else:
                assert self._retries is not None
                self._retries.push(item)
        self._pump_session(session)

    def _retries_due(self, items: list[_Outgoing]) -> None:
        for item in items:
            self._enqueue(item)

    def _timeouts_due(self, batch: list[tuple[_Session, int, _Outgoing]]) -> None:
        for session, seq, item in batch:
            if session.inflight.get(seq) is item:
                del session.inflight[seq]
                self.stats.deliver_timeouts += 1
                if self.max_attempts is not None and item.attempts >= self.max_attempts:
                    self._drop(item, f"unanswered {item.attempts} times")
                else:
                    self._enqueue(item)
                self._pump_session(session)


def _plus(ton: int, address: str) -> str:
    """An address as :func:`_address` reads it back (``+`` for international)."""
    return f"+{address}" if ton == 1 and not address.startswith("+") else address


def _mo(source: str, destination: str, text: str) -> DeliverSm:
    """A mobile-originated deliver_sm: GSM 03.38 when the text allows, else UCS-2;
    over 254 octets in ``message_payload``."""
    if is_gsm7(text):
        data, coding = encode_gsm7(text), DataCoding.SMSC_DEFAULT
    else:
        data, coding = text.encode("utf-16-be"), DataCoding.UCS2
    src_ton, src_npi, src = _address(source)
    dst_ton, dst_npi, dst = _address(destination)
    tlvs: dict[int, bytes] = {}
    if len(data) > 254:
        tlvs[Tlv.MESSAGE_PAYLOAD] = data
        data = b""
    pdu = DeliverSm(
        source_addr_ton=src_ton,
        source_addr_npi=src_npi,
        source_addr=src,
        dest_addr_ton=dst_ton,
        dest_addr_npi=dst_npi,
        destination_addr=dst,
        data_coding=coding,
        short_message=data,
        tlvs=tlvs,
    )
    encode(pdu)  # raise here, not in the sending loop, for addresses that do not fit
    return pdu


def _receipt(submit: SubmitSm, message_id: str, submitted: float, stat: str) -> DeliverSm:
    """The delivery receipt for ``submit``."""
    message_state, err, dlvrd = _RECEIPT_STATES[stat]
    text = (
        f"id:{message_id} sub:001 dlvrd:{dlvrd:03d} submit date:{_smpp_minute(submitted)} "
        f"done date:{_smpp_minute(time.time())} stat:{stat} err:{err} text:{_excerpt(submit)}"
    )
    tlvs: dict[int, bytes] = {}
    set_cstr_tlv(tlvs, Tlv.RECEIPTED_MESSAGE_ID, message_id)
    set_int_tlv(tlvs, Tlv.MESSAGE_STATE, message_state)
    if err != "000":
        tlvs[Tlv.NETWORK_ERROR_CODE] = bytes((3, 0, int(err)))  # GSM, error code
    return DeliverSm(
        source_addr_ton=submit.dest_addr_ton,
        source_addr_npi=submit.dest_addr_npi,
        source_addr=submit.destination_addr,
        dest_addr_ton=submit.source_addr_ton,
        dest_addr_npi=submit.source_addr_npi,
        destination_addr=submit.source_addr,
        esm_class=ESM_CLASS_DELIVERY_RECEIPT,
        data_coding=DataCoding.SMSC_DEFAULT,
        short_message=text.encode("ascii"),
        tlvs=tlvs,
    )
