"""The carrier as the dispatcher sees it: one message in, one outcome out.

``SmppCarrier`` turns a claimed message into submit_sm PDUs (parts, UDH,
coding, addresses: ``session.submits_for``), submits them on the SMPP
session(s), and classifies the answers. In the other direction it is the
session's ``deliver_sm`` handler: receipts update the message's parts and
inbound messages are stored, each committed before the SMSC gets its
deliver_sm_resp (so a crash makes the SMSC deliver it again, never lose it).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from roxgate.carriers.smpp.inbound import inbound_payload
from roxgate.carriers.smpp.pdu import (
    ESM_CLASS_DELIVERY_RECEIPT,
    ESM_CLASS_INTERMEDIATE_NOTIFICATION,
    ESM_CLASS_TYPE_MASK,
    DeliverSm,
    Status,
    SubmitSm,
    SubmitSmResp,
    classify_submit_error,
)
from roxgate.carriers.smpp.receipt import message_id_variants, parse_receipt
from roxgate.carriers.smpp.session import (
    NotBound,
    OutcomeUnknown,
    SessionMode,
    SmppError,
    SmppSession,
    submits_for,
)
from roxgate.carriers.smpp.url import CarrierConfig
from roxgate.dispatch import queue
from roxgate.dispatch.batching import Batcher
from roxgate.dispatch.dispatcher import SendOutcome
from roxgate.dispatch.queue import Claimed, PartAccepted
from roxgate.report.replies import record_inbound_sms
from roxgate.store.ids import now_ms

log = logging.getLogger(__name__)
V = TypeVar("V")
RunInThread = Callable[..., Awaitable[Any]]


def _status_name(status: int) -> str:
    try:
        return Status(status).name
    except ValueError:
        return f"0x{status:08X}"


class ThrottleBackoff:
    """The link's answer to ESME_RTHROTTLED / ESME_RMSGQFUL: pause every submit a while.

    Throttling says the SMSC wants us slower, whatever the message: the
    pause doubles (0.1 s up to 10 s) while throttled answers keep coming after
    a pause ended, and resets at the first accepted submit.
    """

    def __init__(self, first: float = 0.1, most: float = 10.0) -> None:
        self._first, self._most = first, most
        self._pause = 0.0
        self._until = 0.0

    async def pause(self) -> None:
        wait = self._until - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    def throttled(self) -> None:
        now = time.monotonic()
        if now >= self._until:  # throttled again after the pause: slow down more
            self._pause = min(self._most, max(self._first, self._pause * 2))
            self._until = now + self._pause

    def ok(self) -> None:
        self._pause = 0.0


class _Recent(Generic[V]):
    """Keys seen in the last ``seconds``, each with a value and when it was added
    (monotonic s): a memory of what is still in flight.

    Trimmed by age (oldest first) as keys are added: at thousands of parts a
    second a count limit alone held minutes of ids, tens of MB (bench/soak.py).
    ``cap`` bounds it whatever the clock does.
    """

    def __init__(self, seconds: float, cap: int = 200_000) -> None:
        self.seconds = seconds
        self.cap = cap
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def add(self, key: str, value: V) -> None:
        now = time.monotonic()
        items = self._items
        items[key] = (now, value)
        items.move_to_end(key)
        cutoff = now - self.seconds
        while items and (len(items) > self.cap or next(iter(items.values()))[0] < cutoff):
            items.popitem(last=False)

    def get(self, key: str) -> tuple[float, V] | None:
        """(when added, value) if ``key`` was added less than ``seconds`` ago."""
        found = self._items.get(key)
        if found is None or time.monotonic() - found[0] >= self.seconds:
            return None
        return found


class SmppCarrier:
    def __init__(
        self,
        config: CarrierConfig,
        record: RunInThread,
        unmatched_hold_seconds: float = 300.0,
        *,
        reply_window_ms: int = 7 * 86_400_000,
        max_parts: int = 10,
        on_report: Callable[[], None] | None = None,
    ) -> None:
        """``record(fn, *args)`` commits ``fn(connection, *args)`` (the group-commit writer).

        ``on_report`` is called after receipts or an inbound SMS were committed:
        they may have queued callbacks, e-mails or an SMS that workers should
        pick up now rather than at their next poll.
        """
        self.config = config
        self.unmatched_hold_seconds = unmatched_hold_seconds
        self.reply_window_ms = reply_window_ms
        self.max_parts = max_parts
        self.on_report = on_report
        self._record = record
        # Receipts are committed in groups (the writer), so many must be in
        # flight at once: 16 handlers waiting ~30 ms for a commit capped
        # receipt processing near 300/s.
        modes: list[SessionMode] = ["tx", "rx"] if config.bind == "tx+rx" else ["trx"]
        self._sessions = [
            SmppSession(config, self.on_deliver, mode=m, deliver_concurrency=1024) for m in modes
        ]
        # Concatenation reference numbers: 8 bits in udh8, 16 bits otherwise.
        self._refs = itertools.cycle(range(1, 256 if config.concat == "udh8" else 65_536))
        self._throttle = ThrottleBackoff()
        self.part_throttle_retries = 5
        self.receipts_unmatched = 0
        self.counts: Counter[str] = Counter()  # receipts by state, inbound (activity log)
        # carrier id -> when a receipt for it first matched nothing (monotonic s).
        self._unmatched_since: OrderedDict[str, float] = OrderedDict()
        self._receipts: Batcher[queue.Receipt, str | None] = Batcher(self._record_receipts)
        # Carrier ids this process got in submit_sm_resp lately (monotonic s): a
        # receipt for one may overtake our record of the submit (a fast SMSC,
        # a busy database), and then waits for it here instead of bouncing.
        self._accepted: _Recent[None] = _Recent(seconds=10.0)
        # Numbers (digits, as on the wire) this process submitted to lately, with
        # the wall-clock ms of the first accepted part. A reply from one may
        # overtake our record of that submission as a receipt can. It waits for
        # that record with its deliver_sm unanswered: well inside the usual SMSC
        # deliver timeouts, far beyond a commit.
        self._sent_to: _Recent[int] = _Recent(seconds=5.0)

    @property
    def submitter(self) -> SmppSession:
        return self._sessions[0]

    @property
    def bound(self) -> bool:
        return all(s.bound.is_set() for s in self._sessions)

    def share_tps(self, workers: int) -> float:
        """Take a 1/``workers`` share of the route's TPS limit (processes sending on it).

        Each process holds its own binds; splitting the limit evenly keeps N
        of them together at or under what the carrier allows. Returns the share.
        """
        if self.config.tps <= 0:
            return 0.0
        share = self.config.tps / max(1, workers)
        self.submitter.set_tps(share)
        return share

    async def start(self) -> None:
        for session in self._sessions:
            try:
                await session.start()
            except SmppError as exc:
                # The session keeps retrying in the background; messages wait queued.
                log.warning("carrier %s not bound yet: %s", self.config.url, exc)

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self._sessions), return_exceptions=True)

    async def send(self, message: Claimed) -> SendOutcome:
        pdus = submits_for(
            self.config, message.text, message.dest_tn, ref=next(self._refs),
            source=message.sender_id,
        )  # fmt: skip
        # Every part runs to its end (no part left in the air when a sibling
        # fails); the message's outcome is the worst of its parts'.
        results = await asyncio.gather(
            *(self._submit_part(p) for p in pdus), return_exceptions=True
        )
        accepted: list[PartAccepted] = []
        kinds: dict[str, str] = {}
        for part_no, result in enumerate(results, start=1):
            if isinstance(result, OutcomeUnknown | NotBound):
                kinds.setdefault("lost", f"{type(result).__name__}: {result}")
            elif isinstance(result, BaseException):
                raise result
            else:
                kind = classify_submit_error(result.command_status)
                if kind == "ok":
                    accepted.append(PartAccepted(part_no, result.message_id))
                else:
                    kinds.setdefault(kind, _status_name(result.command_status))
        for kind in ("permanent", "lost", "transient", "throttled"):
            if kind in kinds:
                return SendOutcome(kind, detail=kinds[kind])  # type: ignore[arg-type]
        return SendOutcome("accepted", accepted)

    async def _submit_part(self, pdu: SubmitSm) -> SubmitSmResp:
        """Submit one part; a throttled answer is retried in place, after the link's back-off.

        Retrying the part itself (same concatenation reference) keeps a
        multi-part message whole: re-queueing the message would send its
        accepted parts again under a new reference, orphans on the handset.
        """
        for _ in range(self.part_throttle_retries):
            await self._throttle.pause()
            resp = await self.submitter.submit(pdu)
            if classify_submit_error(resp.command_status) != "throttled":
                if resp.command_status == Status.ESME_ROK:
                    self._throttle.ok()
                    # At once, not when every part is answered: this part's
                    # receipt may arrive before its siblings' answers.
                    self._accepted.add(resp.message_id, None)
                    self._remember_sent_to(pdu.destination_addr)
                return resp
            self._throttle.throttled()
        return resp

    async def _unmatched(
        self, carrier_id: str, state: str, error: str | None, pdu: DeliverSm
    ) -> int:
        """A receipt naming no part we know.

        Usually it overtook our record of the submit (the SMSC answered and
        sent the receipt before the submit's outcome was committed): for
        ``unmatched_hold_seconds`` the SMSC is asked to deliver it again
        (ESME_RX_T_APPN). After that it is kept in ``unmatched_receipts`` for
        the operator and acknowledged, so an SMSC never loops on it.
        """
        self.receipts_unmatched += 1
        now = time.monotonic()
        first = self._unmatched_since.setdefault(carrier_id, now)
        while len(self._unmatched_since) > 100_000:  # bounded memory
            self._unmatched_since.popitem(last=False)
        if now - first < self.unmatched_hold_seconds:
            log.info("receipt for unknown carrier id %s: asked for redelivery", carrier_id)
            return int(Status.ESME_RX_T_APPN)
        self._unmatched_since.pop(carrier_id, None)
        await self._record(
            queue.record_unmatched_receipt, carrier_id, state, error,
            pdu.source_addr, pdu.destination_addr,
        )  # fmt: skip
        log.warning("receipt for unknown carrier id %s (%s) kept as unmatched", carrier_id, state)
        return int(Status.ESME_ROK)

    async def _record_receipts(self, receipts: list[queue.Receipt]) -> list[str | None]:
        recorded: queue.RecordedReceipts = await self._record(queue.record_receipts, receipts)
        if recorded.reports:
            # Only then is there anything new for the callback or mail worker:
            # woken for every batch, each looked (a claim, a lease sweep) in
            # vain whenever the messages asked for no receipt.
            self._reported()
        return recorded.found

    def _reported(self) -> None:
        if self.on_report is not None:
            try:
                self.on_report()
            except Exception:  # a wake-up must never cost an acknowledgement
                log.exception("on_report hook failed")

    def _remember_sent_to(self, number: str) -> None:
        # The first part's time: the record will be at or after it.
        if self._sent_to.get(number) is None:
            self._sent_to.add(number, now_ms())

    async def _await_record_of_send_to(self, number: str) -> None:
        """A reply from a number this process has just submitted to: let the record
        of that submission commit first, so that the reply matches it.

        An auto-responder (or a fast human, while the writer is busy) can answer
        before the submission is recorded; matched then, the reply would find no
        message, or an older one. Waits at most ``_sent_to.seconds`` from the
        submission, polling the record; a reply from any other number never waits.
        """
        sent = self._sent_to.get(number.lstrip("+"))
        if sent is None:
            return
        accepted_at, accepted_ms = sent
        dest_tn = "+" + number.lstrip("+")
        while time.monotonic() - accepted_at < self._sent_to.seconds:
            if await self._record(queue.send_recorded_since, dest_tn, accepted_ms):
                return
            await asyncio.sleep(0.05)

    def _ours_in_flight(self, carrier_ids: tuple[str, ...]) -> bool:
        """Accepted by this process moments ago, so our record of it is on its way."""
        return any(self._accepted.get(c) is not None for c in carrier_ids)

    async def on_deliver(self, pdu: DeliverSm) -> int:
        receipt = parse_receipt(pdu)
        if receipt is not None:
            ids = (receipt.message_id, *sorted(message_id_variants(receipt.message_id)))
            found = await self._receipts.add(queue.Receipt(ids, receipt.state, receipt.error))
            # Overtook the record of its own submit: wait for it (the deliver_sm
            # stays unanswered meanwhile), rather than ask the SMSC to resend.
            while found is None and self._ours_in_flight(ids):
                await asyncio.sleep(0.05)
                found = await self._receipts.add(queue.Receipt(ids, receipt.state, receipt.error))
            if found is None:
                return await self._unmatched(receipt.message_id, receipt.state, receipt.error, pdu)
            self.counts[f"receipt {receipt.state}"] += 1
            return int(Status.ESME_ROK)
        if pdu.esm_class & ESM_CLASS_TYPE_MASK in (
            ESM_CLASS_DELIVERY_RECEIPT,
            ESM_CLASS_INTERMEDIATE_NOTIFICATION,
        ):
            # A receipt without any message id: nothing to match it to, and no
            # reply either. Kept for the operator, acknowledged.
            await self._record(
                queue.record_unmatched_receipt, "", "UNKNOWN", None,
                pdu.source_addr, pdu.destination_addr,
            )  # fmt: skip
            self.counts["receipt without id"] += 1
            return int(Status.ESME_ROK)
        await self._await_record_of_send_to(pdu.source_addr)
        # Stored, matched and forwarded in one commit before the answer: a
        # crash before it makes the SMSC deliver the SMS again.
        payload = inbound_payload(pdu)
        concat = payload.concat
        results = await self._record(
            functools.partial(
                record_inbound_sms, window_ms=self.reply_window_ms, max_parts=self.max_parts,
                source_ton=pdu.source_addr_ton,
            ),
            pdu.source_addr, pdu.destination_addr, payload.coding, payload.data,
            None if concat is None else (concat.ref, concat.total, concat.seq),
        )  # fmt: skip
        if not results:
            self.counts["inbound part"] += 1
        for result in results:
            self.counts[f"inbound {result.action}"] += 1
        self._reported()
        return int(Status.ESME_ROK)
