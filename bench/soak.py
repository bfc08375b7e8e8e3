"""Soak benchmark: mixed traffic for minutes, with SMPP drops and callback outages.

Not part of ``make test``: it runs for ``--minutes`` (default 10) plus a drain.

    .venv/bin/python bench/soak.py                       # 10 minutes at 200 messages/s
    .venv/bin/python bench/soak.py --minutes 1 --rate 100

What runs, each in its own process so that no part's CPU distorts another's:

* the **SMSC**: the built-in ``SmscSimulator`` (receipts 0.5 s after each
  submit), counting every accepted ``submit_sm`` by destination and part. Every
  20-60 s it drops all SMPP connections at once; one drop in three also stops
  listening for 2-8 s (reconnects are refused meanwhile). Its state (receipts
  not yet delivered) survives: only the connections go.
* the **customer's callback receiver** (aiohttp): answers 200 and records each
  receipt and reply by SMSId, checking the signature. Every 15-45 s it has an
  outage of 10-40 s: either it answers 503, or it stops listening and drops the
  requests of connections already open. With ``ROXGATE_CALLBACK_RETRY=1,2,5,10``
  (18 s of retries) a long outage turns callbacks into e-mails.
* the **mailbox** (aiosmtpd, in this process): collects the e-mails.
* the **gateway**: ``roxgate serve`` (role all) on a temporary SQLite file,
  pointed at those three.

This process sends ``--rate`` messages/s: requests of 1-500 recipients (mostly
small), GSM and UCS-2 texts, about 30% multi-part; ReceiptFlag 1 with a
callback URL for most, ReceiptFlag 1 without a URL (receipts by e-mail), 2 and 0
for some; a tenth SendLater 2-20 s ahead; half ReplyType H. Every destination
number is used once, and about 1% end in the simulator's magic endings
(9990-9994, 9996-9998: failures with known codes, and replies; never 9995,
which gets no receipt for 72 h). Every 10 s a line: elapsed, accepted, delivered
and failed so far, callbacks received (answered 200), e-mails, SMPP disconnects,
callback outages, gateway RSS.

Then the load and the chaos stop, and it waits (at most ``--drain`` s) until
every accepted message is final, both outboxes are empty and every expected
receipt and reply has arrived, and prints JSON:

* ``sent``: requests, messages ``accepted`` (answered 0000: their SMSIds are
  tracked), refused by per-recipient or request code, ``unknown_outcome``
  (requests that got no answer: their messages may exist untracked).
* ``final``: ``delivered``, ``failed_by_code``; ``wrong_result`` (a final
  result other than the one the destination's ending calls for);
  ``sent_early`` (a SendLater message whose first part reached the SMSC
  before its due time).
* ``receipts`` / ``replies``: ``expected`` (ReceiptFlag 1, or 2 with a result
  other than 0000; for a delivered 9998 message, one reply per submit the SMSC
  accepted for it, since the simulator answers each part), received
  ``by_callback`` (answered 200) and ``by_email``, of which after a callback
  failed for good, and ``by_email_wrongly`` (a receipt with a URL e-mailed
  although its callback did not fail); ``missing``; ``duplicates`` (an SMSId
  delivered more often than expected), of which ``smsc_redelivered`` (the SMSC
  wrote the reply again: the gateway acknowledged it late or the link dropped
  first, docs/design.md) and ``unexplained`` (neither that nor an attempt the
  receiver answered 200 but the gateway recorded as failed, the at-least-once
  case of docs/callbacks.md); ``unexpected`` (not asked for).
* ``callbacks``: the gateway's attempts by outcome, the receiver's answers,
  bad signatures, outages. ``emails``: received, and the outbox by status.
* ``smsc``: disconnects, accepted submits, ``duplicate_submits`` (submits
  beyond the first per message part) and ``duplicated_messages``, against the
  ``documented_bound`` of carriers.md §4.3 (at most ``window`` messages per
  drop); ``delivered_unseen``: delivered messages with a part the SMSC never
  accepted; ``deliver_timeouts`` / ``deliver_nacked``: receipts and replies the
  gateway acknowledged too late or refused (it asks for unknown receipts again,
  e.g. those of a duplicate's first copy, carriers.md §3.3).
* ``lost``: accepted SMSIds not in the database, not final, or with an expected
  receipt that arrived neither by callback nor by e-mail. **Must be 0.**
* ``rss_mib``: the gateway's VmRSS after warm-up, at the end of the load and
  after the drain, and its anonymous part (the heap); ``growth_pct`` compares
  the end of the load with warm-up. Warm-up lasts ``--warmup`` s or, by
  default, until the gateway's bounded caches are full: every number here is
  new, so the cache of parsed numbers (65,536 entries, ~21 MiB) fills only
  after 65,536 messages (5.5 minutes at 200/s); at most two thirds of the run.
* ``gateway_log``: WARNING and ERROR lines of the gateway, grouped.

Exit status 1 when lost > 0, RSS grew by more than ``--rss-margin`` percent
beyond warm-up, or a check that cannot fail in a sound gateway did
(unexplained duplicates, duplicates over the bound, wrong results, early
sends, unseen deliveries, wrongly e-mailed receipts, bad signatures, replies
missing). ``--keep DIR`` keeps the database, the logs and the raw counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import email
import email.policy
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiosmtpd.controller import Controller

from roxgate.sms.phone import cache_info as phone_cache_info

sys.path.insert(0, str(Path(__file__).parent))
from dispatch import wait_healthy
from ingest import PASSWORD, free_port, seed_database

ROXGATE = str(Path(sys.executable).with_name("roxgate"))
ACCOUNT = "CI00000001"
USERNAME = "bench@example.com"

# Final result by the destination's last four digits (docs/operators.md, "Carrier").
# 9995 is left out on purpose: no receipt ever, so final only after 72 h.
MAGIC_RESULTS = {
    "9990": "2062",
    "9991": "0000",
    "9992": "2060",
    "9993": "2061",
    "9994": "2062",
    "9996": "2063",
    "9997": "2064",
    "9998": "0000",
}
REPLY_ENDING = "9998"
CALLBACK_RETRY = "1,2,5,10"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# How many parsed numbers the gateway caches: with all-new numbers, RSS grows
# until the cache is full.
PHONE_CACHE_ENTRIES = phone_cache_info().maxsize or 0


def mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


# --- the SMSC (run as: soak.py --serve-smsc PORT CONTROL_PORT SEED) -------------------


def part_no(pdu: Any) -> int:
    """Which part of its message a submit_sm is (1 for a single-part one)."""
    from roxgate.carriers.smpp.pdu import ESM_CLASS_UDHI, Tlv

    data = bytes(pdu.short_message or b"")
    if pdu.esm_class & ESM_CLASS_UDHI and data:
        udh, i = data[1 : 1 + data[0]], 0
        while i + 2 <= len(udh):
            iei, size = udh[i], udh[i + 1]
            if iei == 0x00 and size == 3:  # 8-bit reference: ref, total, seq
                return udh[i + 4]
            if iei == 0x08 and size == 4:  # 16-bit reference
                return udh[i + 5]
            i += 2 + size
    seq = pdu.tlvs.get(Tlv.SAR_SEGMENT_SEQNUM)
    return seq[0] if seq else 1


async def serve_control(port: int, gets: dict[str, Any], calm: Any) -> None:
    """The control API of a child process (GET ``gets``, POST /calm to end its
    chaos) on 127.0.0.1:``port``, until the process is killed."""
    from aiohttp import web

    app = web.Application()
    for path, handler in gets.items():
        app.router.add_get(path, handler)
    app.router.add_post("/calm", calm)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def run_smsc(port: int, control_port: int, seed: int) -> None:
    """The SMSC on ``port``, its figures and a stop to the chaos on ``control_port``."""
    from aiohttp import web

    from roxgate.carriers.simulator import SmscSimulator, _Session

    class CountingSmsc(SmscSimulator):
        """The simulator, counting accepted submits per destination and part.

        ``keep_submits`` would hold every PDU for the whole run; a counter and
        the first arrival time are all the checks need.
        """

        def __init__(self) -> None:
            super().__init__(receipt_delay=0.5, keep_submits=0)
            self.parts: dict[str, list[float]] = {}  # "dest/part" -> [count, first at]
            # MO deliver_sm written, by sender, resends included: a reply the
            # gateway was slow to acknowledge is sent (and forwarded) again.
            self.mo_writes: Counter[str] = Counter()

        def _submit(self, session: Any, pdu: Any) -> bytes:
            answer = super()._submit(session, pdu)
            if answer[8:12] == b"\0\0\0\0":  # command_status 0: accepted
                key = f"{pdu.destination_addr.lstrip('+')}/{part_no(pdu)}"
                seen = self.parts.get(key)
                if seen is None:
                    self.parts[key] = [1, time.time()]
                else:
                    seen[0] += 1
            return answer

        def _sent(self, session: Any, seq: int, item: Any) -> None:
            super()._sent(session, seq, item)
            if item.mo:
                self.mo_writes[item.pdu.source_addr.lstrip("+")] += 1

    rng = random.Random(seed)
    sim = CountingSmsc()
    await sim.start("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    counts: Counter[str] = Counter()

    async def chaos() -> None:
        # The simulator has no public way to drop its connections: their transports
        # are aborted, as a crashed SMSC's would be reset, and its listener closed.
        while True:
            await asyncio.sleep(rng.uniform(20, 60))
            down = rng.random() < 1 / 3
            listener = sim._server
            if down and listener is not None:
                # Closed but kept as sim._server: the simulator only re-queues the
                # receipts in flight on a dropped connection while it has a server.
                listener.close()
            for session in list(sim._sessions):
                if session.transport is not None:
                    session.transport.abort()
                    counts["sessions_dropped"] += 1
            counts["disconnects"] += 1
            if down:
                counts["listener_outages"] += 1
                try:
                    await asyncio.sleep(rng.uniform(2, 8))
                finally:
                    sim._server = await loop.create_server(lambda: _Session(sim), "127.0.0.1", port)

    chaos_task = asyncio.create_task(chaos())

    async def stats(_request: web.Request) -> web.Response:
        s = sim.stats
        body = {
            **counts,
            "submits_accepted": s.submits_accepted,
            "receipts_acked": s.receipts_acked,
            "deliver_dropped": s.deliver_dropped,
            "deliver_timeouts": s.deliver_timeouts,
            "deliver_nacked": s.deliver_nacked,
            "mo_sent": s.mo_sent,
            "pending": sim.pending,
        }
        return web.json_response(body)

    async def parts(_request: web.Request) -> web.Response:
        body = orjson.dumps({"parts": sim.parts, "mo_writes": sim.mo_writes})
        return web.Response(body=body, content_type="application/json")

    async def calm(_request: web.Request) -> web.Response:
        chaos_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await chaos_task
        return web.json_response({})

    await serve_control(control_port, {"/stats": stats, "/parts": parts}, calm)


# --- the customer's receiver (run as: soak.py --serve-receiver PORT CONTROL_PORT SEED) ----


async def run_receiver(port: int, control_port: int, seed: int) -> None:
    """The customer's callback endpoint on ``port`` (``/receipt``, ``/reply``); what it
    got, and a stop to its outages, on ``control_port``."""
    from aiohttp import web

    from roxgate.rox.signing import verify

    secret = os.environ["SOAK_CALLBACK_SECRET"]
    rng = random.Random(seed)
    got: dict[str, Counter[str]] = {"receipt": Counter(), "reply": Counter()}
    answers: Counter[str] = Counter()
    state: dict[str, Any] = {"mode": "up", "outages": 0, "outage_s": 0.0}

    async def hook(request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        if state["mode"] == "drop":
            # Not listening any more; requests on connections opened before get no answer.
            answers["dropped"] += 1
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=503)  # never reaches anyone
        if state["mode"] == "503":
            answers["503"] += 1
            return web.Response(status=503)
        body = await request.read()
        if not verify(secret, body, request.headers):
            answers["bad_signature"] += 1
        doc = orjson.loads(body)
        inner = doc["Messages"]["Receipt" if kind == "receipt" else "Reply"]
        got[kind][inner["SMSId"]] += 1
        answers["200"] += 1
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/{kind:receipt|reply}", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()

    async def outages() -> None:
        nonlocal site
        while True:
            await asyncio.sleep(rng.uniform(15, 45))
            mode = state["mode"] = rng.choice(("503", "drop"))
            state["outages"] += 1
            started = time.monotonic()
            if mode == "drop":
                await site.stop()
            try:
                await asyncio.sleep(rng.uniform(10, 40))
            finally:
                if mode == "drop":
                    site = web.TCPSite(runner, "127.0.0.1", port)
                    await site.start()
                state["mode"] = "up"
                state["outage_s"] += time.monotonic() - started

    outage_task = asyncio.create_task(outages())

    async def stats(_request: web.Request) -> web.Response:
        body = {**answers, "outages": state["outages"], "outage_s": round(state["outage_s"]),
                "receipts": len(got["receipt"]), "replies": len(got["reply"])}  # fmt: skip
        return web.json_response(body)

    async def received(_request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(got), content_type="application/json")

    async def calm(_request: web.Request) -> web.Response:
        outage_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await outage_task
        return web.json_response({})

    await serve_control(control_port, {"/stats": stats, "/received": received}, calm)


# --- the mailbox --------------------------------------------------------------------------

_SMS_ID = re.compile(r"^SMSId:\s+(\S+)", re.MULTILINE)


class Mailbox:
    """aiosmtpd handler: receipt and reply e-mails counted by SMSId."""

    def __init__(self) -> None:
        self.got: dict[str, Counter[str]] = {"receipt": Counter(), "reply": Counter()}
        self.total = 0
        self.unreadable = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.total += 1
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        found = _SMS_ID.search(parsed.get_content())  # type: ignore[attr-defined]
        if found is None:
            self.unreadable += 1
        else:
            kind = "reply" if str(parsed["Subject"]).startswith("Reply from") else "receipt"
            self.got[kind][found.group(1)] += 1
        return "250 OK"


# --- the load -----------------------------------------------------------------------------


@dataclass(slots=True)
class Sent:
    """What was asked for one accepted SMSId."""

    dest: str  # E.164
    flag: int  # ReceiptFlag
    url: bool  # with a ReceiptCallbackURL
    expected: str  # the final result its number's ending calls for
    due: int  # the SendLater asked for (Unix seconds), 0 for none


def text_for(rng: random.Random, n: int) -> str:
    """A text for recipient ``n``: GSM or UCS-2, one part or several."""
    r = rng.random()
    day, minute = 1 + n % 28, n % 60
    if r < 0.45:
        return f"Hi Customer {n}, your appointment is on {day:02d}-Dec at 10:{minute:02d}."
    if r < 0.60:  # GSM with extension-table characters, 2-4 parts
        line = f"Invoice {n}: EUR 12.50 [€12.50] due {day:02d}-Dec; pay at {{portal}} ~ thanks. "
        return line * rng.randint(3, 7)
    if r < 0.85:
        return f"Здравствуйте, клиент {n}! Ваш приём {day:02d}-Dec в 10:{minute:02d} ✅"
    # UCS-2, 2-5 parts; now and then a character outside the BMP (two UTF-16 units).
    line = f"您的预约在{day:02d}日10:{minute:02d}，请准时到达。Ref {n}. "
    if rng.random() < 0.3:
        line += "📦 "
    return line * rng.randint(4, 9)


def request_size(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.5:
        return rng.randint(1, 5)
    if r < 0.8:
        return rng.randint(6, 50)
    if r < 0.95:
        return rng.randint(51, 200)
    return rng.randint(201, 500)


def send_later(moment: float) -> str:
    t = time.gmtime(moment)
    return f"{t.tm_mday:02d}-{MONTHS[t.tm_mon - 1]}-{t.tm_year} {time.strftime('%H:%M:%S', t)}"


class Load:
    """Builds and posts the requests; remembers every accepted SMSId."""

    def __init__(self, rng: random.Random, port: int, receiver_port: int) -> None:
        self.rng = rng
        self.url = f"http://127.0.0.1:{port}/smsapi/send"
        self.receipt_url = f"http://127.0.0.1:{receiver_port}/receipt"
        self.reply_url = f"http://127.0.0.1:{receiver_port}/reply"
        self.sent: dict[str, Sent] = {}
        self.requests = 0
        self.refused: Counter[str] = Counter()  # recipients, by result code
        self.unknown_requests = 0
        self.unknown_recipients = 0
        self._ordinary = 0
        self._magic = 0

    def number(self) -> tuple[str, str]:
        """A number never used before in this run, and the result it should end with."""
        if self.rng.random() < 0.01:
            ending = self.rng.choice(list(MAGIC_RESULTS))
            self._magic += 1
            return f"+614{self._magic % 10_000:04d}{ending}", MAGIC_RESULTS[ending]
        # Last four digits below 9000: never a magic ending.
        i = self._ordinary
        self._ordinary += 1
        return f"+614{(i // 9000) * 10_000 + i % 9000:08d}", "0000"

    def build(self, size: int) -> tuple[bytes, list[Sent]]:
        rng = self.rng
        r = rng.random()
        flag, url = (
            (1, True) if r < 0.70 else (1, False) if r < 0.82 else
            (2, True) if r < 0.90 else (2, False) if r < 0.95 else (0, False)
        )  # fmt: skip
        messages: dict[str, Any] = {"Count": size, "ReceiptFlag": flag, "TimeZoneOffset": 0}
        if url:
            messages["ReceiptCallbackURL"] = self.receipt_url
        if rng.random() < 0.5:
            messages["ReplyType"] = "H"
            messages["ReplyCallbackURL"] = self.reply_url
        due = 0
        if rng.random() < 0.1:
            # Whole seconds, as the ROX format has them. Not the stored due_at: a
            # retry after a lost link moves that forward.
            due = int(time.time() + rng.uniform(2, 20))
            messages["SendLater"] = send_later(due)
        if rng.random() < 0.2:
            messages["GlobalText"] = text_for(rng, self.requests)
        planned: list[Sent] = []
        for i in range(size):
            dest, expected = self.number()
            messages[str(i + 1)] = {
                "DestTn": dest,
                "DestName": f"Customer {i}",
                "SMSText": text_for(rng, self._ordinary + self._magic),
            }
            planned.append(Sent(dest, flag, url, expected, due))
        body = {
            "Name": "ROX_API_Request",
            "Version": 1.1,
            "Product": "soak",
            "Sender": {"AccountId": ACCOUNT, "Username": USERNAME, "Password": PASSWORD},
            "Messages": messages,
        }
        return orjson.dumps(body), planned

    async def post(self, client: httpx.AsyncClient, body: bytes, planned: list[Sent]) -> None:
        self.requests += 1
        try:
            reply = await client.post(self.url, content=body)
            answer = orjson.loads(reply.content)
        except (httpx.HTTPError, orjson.JSONDecodeError):
            # No answer: those messages may be stored, but we cannot track them.
            self.unknown_requests += 1
            self.unknown_recipients += len(planned)
            return
        if answer.get("Result") != "0000":
            self.refused[f"request {answer.get('Result')}"] += len(planned)
            return
        for i, sent in enumerate(planned):
            item = answer["Messages"][str(i + 1)]
            if item["Result"] == "0000" and item["SMSId"]:
                self.sent[item["SMSId"]] = sent
            else:
                self.refused[item["Result"]] += 1

    async def run(self, seconds: float, rate: float) -> None:
        """Post ``rate`` messages a second on average for ``seconds``, at most 4 requests
        in flight; a gateway that falls behind gets a bounded burst, not a backlog."""
        slots = asyncio.Semaphore(4)
        tasks: set[asyncio.Task[None]] = set()
        end = time.monotonic() + seconds
        credit, last = 0.0, time.monotonic()
        size = request_size(self.rng)
        async with httpx.AsyncClient(timeout=120) as client:
            while (now := time.monotonic()) < end:
                credit = min(credit + (now - last) * rate, 2 * rate + 500)
                last = now
                if credit < size:
                    await asyncio.sleep(min(0.05, (size - credit) / rate))
                    continue
                credit -= size
                body, planned = self.build(size)
                size = request_size(self.rng)
                await slots.acquire()

                async def post(body: bytes = body, planned: list[Sent] = planned) -> None:
                    try:
                        await self.post(client, body, planned)
                    finally:
                        slots.release()

                task = asyncio.create_task(post())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)


# --- the database ---------------------------------------------------------------------


@contextlib.contextmanager
def database(db: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(db, timeout=30)
    try:
        yield conn
    finally:
        conn.close()


def progress(db: Path) -> dict[str, int]:
    """Messages by status, and what the two outboxes still hold."""
    with database(db) as conn:
        figures = dict(conn.execute("SELECT status, count(*) FROM messages GROUP BY status"))
        for table, query in (
            ("callbacks", "SELECT count(*) FROM callbacks WHERE status IN ('pending', 'sending')"),
            (
                "mail_outbox",
                "SELECT count(*) FROM mail_outbox WHERE status IN ('pending', 'sending')",
            ),
        ):
            figures[f"{table} open"] = conn.execute(query).fetchone()[0]
    return figures


# --- the run ------------------------------------------------------------------------------


class Soak:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.rng = random.Random(args.seed)
        self.db = seed_database(tmp)
        self.port, self.smtp_port = free_port(), free_port()
        self.sim_port, self.sim_control = free_port(), free_port()
        self.recv_port, self.recv_control = free_port(), free_port()
        self.mailbox = Mailbox()
        self.load = Load(self.rng, self.port, self.recv_port)
        # (seconds since the load began, VmRSS KiB, RssAnon KiB)
        self.rss: list[tuple[float, int, int]] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.gateway: subprocess.Popen[bytes] | None = None
        self.smtp: Controller | None = None
        self.started = 0.0

    # -- processes -------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
            )
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        with database(self.db) as conn:
            secret = conn.execute(
                "SELECT callback_secret FROM accounts WHERE id = ?", (ACCOUNT,)
            ).fetchone()[0]
        env = {**os.environ, "SOAK_CALLBACK_SECRET": secret}
        seeds = [str(self.rng.getrandbits(32)) for _ in range(2)]
        me = [sys.executable, __file__]
        ports = [str(self.sim_port), str(self.sim_control), seeds[0]]
        self.spawn("smsc", [*me, "--serve-smsc", *ports], env)
        ports = [str(self.recv_port), str(self.recv_control), seeds[1]]
        self.spawn("receiver", [*me, "--serve-receiver", *ports], env)
        for port in (self.sim_control, self.recv_control):
            wait_listening(port)
        carrier = (
            f"smpp://soak:soak@127.0.0.1:{self.sim_port}"
            f"?window={self.args.window}&reconnect_min=0.2&reconnect_max=2"
        )
        gateway_env = {
            **os.environ,
            "ROXGATE_DATABASE_URL": f"sqlite:///{self.db}",
            "ROXGATE_PORT": str(self.port),
            "ROXGATE_CARRIER": carrier,
            "ROXGATE_SMTP_URL": f"smtp://127.0.0.1:{self.smtp_port}",
            "ROXGATE_CALLBACK_ALLOW_NETS": "127.0.0.0/8",
            "ROXGATE_CALLBACK_RETRY": CALLBACK_RETRY,
            "ROXGATE_CALLBACK_TIMEOUT": "5",
            "ROXGATE_LOG_LEVEL": "INFO",
            "ROXGATE_LOG_FORMAT": "json",
        }
        self.gateway = self.spawn("gateway", [ROXGATE, "serve"], gateway_env)
        # After the last fork (die_with_parent runs in the child; no other thread may
        # exist then), before the first e-mail: no traffic until the gateway is healthy.
        self.smtp = Controller(self.mailbox, hostname="127.0.0.1", port=self.smtp_port)
        self.smtp.start()
        wait_healthy(self.port, self.gateway)

    def stop(self) -> None:
        for proc in reversed(self.procs):  # the gateway first: it drains gracefully
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.smtp is not None:
            self.smtp.stop()

    # -- observing -------------------------------------------------------------

    async def peers(self, client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
        sim = await client.get(f"http://127.0.0.1:{self.sim_control}/stats")
        recv = await client.get(f"http://127.0.0.1:{self.recv_control}/stats")
        return sim.json(), recv.json()

    def sample_rss(self) -> int:
        assert self.gateway is not None
        fields = memory_kib(self.gateway.pid)
        kib = fields["VmRSS"]
        self.rss.append((time.monotonic() - self.started, kib, fields["RssAnon"]))
        return kib

    async def report(self, client: httpx.AsyncClient, phase: str) -> dict[str, int]:
        assert self.gateway is not None
        if self.gateway.poll() is not None:
            raise SystemExit(f"the gateway exited with {self.gateway.returncode}")
        db = await asyncio.to_thread(progress, self.db)
        sim, recv = await self.peers(client)
        kib = self.sample_rss()
        print(
            f"{time.monotonic() - self.started:6.0f}s {phase:5} "
            f"accepted {len(self.load.sent):7d}  delivered {db.get('delivered', 0):7d}  "
            f"failed {db.get('failed', 0):5d}  callbacks {recv.get('200', 0):7d}  "
            f"e-mails {self.mailbox.total:6d}  disconnects {sim.get('disconnects', 0):3d}  "
            f"outages {recv.get('outages', 0):3d}  rss {kib / 1024:6.1f} MiB",
            flush=True,
        )
        return db

    async def every(self, seconds: float, client: httpx.AsyncClient, phase: str) -> None:
        while True:
            await asyncio.sleep(seconds)
            await self.report(client, phase)

    # -- the phases ------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        seconds = self.args.minutes * 60
        async with httpx.AsyncClient(timeout=60) as client:
            self.started = time.monotonic()
            self.sample_rss()
            load = asyncio.create_task(self.load.run(seconds, self.args.rate))
            ticker = asyncio.create_task(self.every(10, client, "load"))
            # The ticker ends only by failing (the gateway or a peer died): stop then.
            await asyncio.wait({load, ticker}, return_when=asyncio.FIRST_COMPLETED)
            ticker.cancel()
            if not load.done():
                load.cancel()
                ticker.result()
            load.result()
            load_s = time.monotonic() - self.started
            self.sample_rss()
            end_of_load = self.rss[-1]
            for port in (self.sim_control, self.recv_control):
                await client.post(f"http://127.0.0.1:{port}/calm")
            drained = await self.drain(client)
            return await self.summary(client, load_s, end_of_load, drained)

    async def drain(self, client: httpx.AsyncClient) -> bool:
        """Wait until everything accepted is final, the outboxes are empty and every
        expected receipt and reply has arrived, or ``--drain`` seconds passed."""
        deadline = time.monotonic() + self.args.drain
        next_line = time.monotonic()
        while time.monotonic() < deadline:
            if time.monotonic() >= next_line:
                db = await self.report(client, "drain")
                next_line += 10
            else:
                db = await asyncio.to_thread(progress, self.db)
            open_ = db.get("queued", 0) + db.get("submitting", 0) + db.get("submitted", 0)
            if not open_ and not db["callbacks open"] and not db["mail_outbox open"]:
                received = orjson.loads(
                    (await client.get(f"http://127.0.0.1:{self.recv_control}/received")).content
                )
                smsc = orjson.loads(
                    (await client.get(f"http://127.0.0.1:{self.sim_control}/parts")).content
                )
                facts = await asyncio.to_thread(self.facts)
                checks = self.check_receipts(received, facts, smsc)
                if not checks["receipts"]["missing"] and not checks["replies"]["missing"]:
                    return True
            await asyncio.sleep(2)
        return False

    # -- the verdict -----------------------------------------------------------

    def facts(self) -> dict[str, Any]:
        """What the database says about every message, callback and e-mail."""
        with database(self.db) as conn:
            rows = {
                r[0]: r[1:] for r in conn.execute("SELECT id, status, result, parts FROM messages")
            }
            failed_callbacks = set(
                conn.execute("SELECT kind, message_id FROM callbacks WHERE status = 'failed'")
            )
            ok_attempts: Counter[tuple[str, str]] = Counter()
            outcomes: Counter[str] = Counter()
            for kind, message_id, outcome in conn.execute(
                "SELECT c.kind, c.message_id, a.outcome FROM callback_attempts a "
                "JOIN callbacks c ON c.id = a.callback_id"
            ):
                outcomes[outcome] += 1
                if outcome == "ok":
                    ok_attempts[(kind, message_id)] += 1
            mails = dict(conn.execute("SELECT status, count(*) FROM mail_outbox GROUP BY status"))
        return {
            "messages": rows,
            "failed_callbacks": failed_callbacks,
            "ok_attempts": ok_attempts,
            "attempt_outcomes": dict(outcomes),
            "mail_outbox": mails,
        }

    def expected(
        self, facts: dict[str, Any], smsc: dict[str, Any]
    ) -> dict[str, dict[str, tuple[int, int]]]:
        """kind -> SMSId -> (how many should arrive, how many more the SMSC's own
        redeliveries explain), by callback or e-mail together."""
        parts, mo_writes = smsc["parts"], smsc["mo_writes"]
        want: dict[str, dict[str, tuple[int, int]]] = {"receipt": {}, "reply": {}}
        for sms_id, sent in self.load.sent.items():
            row = facts["messages"].get(sms_id)
            result = row[1] if row else None
            if sent.flag == 1 or (sent.flag == 2 and result not in (None, "0000")):
                want["receipt"][sms_id] = (1, 0)
            if sent.dest.endswith(REPLY_ENDING) and result == "0000":
                # The simulator replies to every submit it accepts: once per part,
                # and again for a part that reached it twice. It writes a reply again
                # when its deliver_sm was not acknowledged in time or the link
                # dropped first; the gateway may have stored it by then (a copy).
                keys = (f"{sent.dest[1:]}/{p}" for p in range(1, row[2] + 1))
                made = sum(int(parts[k][0]) for k in keys if k in parts)
                want["reply"][sms_id] = (made, max(0, mo_writes.get(sent.dest[1:], 0) - made))
        return want

    def check_receipts(
        self, received: dict[str, Any], facts: dict[str, Any], smsc: dict[str, Any]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for kind, expected in self.expected(facts, smsc).items():
            by_hook: dict[str, int] = received[kind]
            by_mail = self.mailbox.got[kind]
            missing: list[str] = []
            duplicates = redelivered = unexplained = 0
            for sms_id in expected.keys() | by_hook.keys() | by_mail.keys():
                hooks, mails = by_hook.get(sms_id, 0), by_mail.get(sms_id, 0)
                want, resent = expected.get(sms_id, (0, 0))
                extra = hooks + mails - want
                if sms_id in expected and extra < 0:
                    missing.append(sms_id)
                elif sms_id in expected and extra > 0:
                    duplicates += 1
                    # Explained by posts the receiver answered 200 while the gateway
                    # recorded no success (our answer came too late or the connection
                    # broke: the at-least-once case of docs/callbacks.md), or by the
                    # SMSC sending a reply again (docs/design.md).
                    late = max(0, hooks - facts["ok_attempts"][(kind, sms_id)])
                    if extra > late + resent:
                        unexplained += 1
                    elif extra > late:
                        redelivered += 1
            after_failure = sum(
                1 for s in by_mail if (kind, s) in facts["failed_callbacks"] and s in expected
            )
            # A receipt goes by e-mail only without a URL or after its callback failed.
            wrongly_mailed = sum(
                1
                for s in by_mail
                if kind == "receipt"
                and s in self.load.sent
                and self.load.sent[s].url
                and (kind, s) not in facts["failed_callbacks"]
            )
            out[{"receipt": "receipts", "reply": "replies"}[kind]] = {
                "expected": sum(n for n, _ in expected.values()),
                "by_callback": sum(n for s, n in by_hook.items() if s in expected),
                "by_email": sum(n for s, n in by_mail.items() if s in expected),
                "by_email_after_failed_callback": after_failure,
                "by_email_wrongly": wrongly_mailed,
                "missing": len(missing),
                "missing_examples": missing[:5],
                "duplicates": duplicates,
                "smsc_redelivered": redelivered,
                "unexplained": unexplained,
                "unexpected": len((by_hook.keys() | by_mail.keys()) - expected.keys()),
            }
        return out

    async def summary(
        self,
        client: httpx.AsyncClient,
        load_s: float,
        end_of_load: tuple[float, int, int],
        drained: bool,
    ) -> dict[str, Any]:
        sim, recv = await self.peers(client)
        received = orjson.loads(
            (await client.get(f"http://127.0.0.1:{self.recv_control}/received")).content
        )
        smsc = orjson.loads(
            (await client.get(f"http://127.0.0.1:{self.sim_control}/parts")).content
        )
        parts: dict[str, list[float]] = smsc["parts"]
        rss_after_drain = self.sample_rss()
        facts = await asyncio.to_thread(self.facts)
        rows = facts["messages"]
        sent = self.load.sent

        failed_by_code: Counter[str] = Counter()
        delivered = missing_from_db = not_final = wrong = early = unseen = 0
        for sms_id, asked in sent.items():
            row = rows.get(sms_id)
            if row is None:
                missing_from_db += 1
                continue
            status, result, n_parts = row
            if status not in ("delivered", "failed"):
                not_final += 1
                continue
            if result == "0000":
                delivered += 1
            else:
                failed_by_code[result] += 1
            if result != asked.expected:
                wrong += 1
            keys = [f"{asked.dest[1:]}/{p}" for p in range(1, n_parts + 1)]
            if result == "0000" and any(k not in parts for k in keys):
                unseen += 1
            first = min((parts[k][1] for k in keys if k in parts), default=None)
            if first is not None and first < asked.due:
                early += 1

        checks = self.check_receipts(received, facts, smsc)
        if self.args.keep:  # the raw material, for a post-mortem
            raw = {"sent": {k: asdict(v) for k, v in sent.items()}, "received": received,
                   "mailbox": self.mailbox.got, "smsc": smsc}  # fmt: skip
            (self.tmp / "raw.json").write_bytes(orjson.dumps(raw))
        duplicate_submits = sum(int(count) - 1 for count, _ in parts.values())
        duplicated_messages = len(
            {key.split("/")[0] for key, (count, _) in parts.items() if count > 1}
        )
        bound = sim.get("disconnects", 0) * self.args.window
        lost = missing_from_db + not_final + checks["receipts"]["missing"]

        warmup = self.args.warmup
        if warmup is None:  # until 65,536 new numbers have filled the parsed-number cache
            warmup = max(60.0, PHONE_CACHE_ENTRIES / self.args.rate * 1.1)
        warmup_s = min(warmup, self.args.minutes * 60 * 2 / 3)
        warm = next((sample for sample in self.rss if sample[0] >= warmup_s), self.rss[-1])
        rss_warm, rss_end_of_load = warm[1], end_of_load[1]
        growth = round((rss_end_of_load - rss_warm) / rss_warm * 100, 1)

        problems = []
        if lost:
            problems.append(f"lost {lost}")
        if growth > self.args.rss_margin:
            problems.append(f"RSS grew {growth}% after warm-up (margin {self.args.rss_margin}%)")
        named = {
            "wrong results": wrong,
            "early sends": early,
            "delivered unseen by the SMSC": unseen,
            "unexplained duplicate receipts": checks["receipts"]["unexplained"],
            "unexplained duplicate replies": checks["replies"]["unexplained"],
            "receipts e-mailed though their callback did not fail": checks["receipts"][
                "by_email_wrongly"
            ],
            "replies missing": checks["replies"]["missing"],
            "bad signatures": recv.get("bad_signature", 0),
            "SMSC duplicates over the bound": max(0, duplicated_messages - bound),
        }
        problems += [f"{name} {n}" for name, n in named.items() if n]
        return {
            "minutes": self.args.minutes,
            "rate": self.args.rate,
            "window": self.args.window,
            "seed": self.args.seed,
            "sent": {
                "requests": self.load.requests,
                "accepted": len(sent),
                "accepted_per_s": round(len(sent) / load_s, 1),
                "refused_by_code": dict(self.load.refused),
                "unknown_outcome": self.load.unknown_recipients,
            },
            "final": {
                "delivered": delivered,
                "failed_by_code": dict(sorted(failed_by_code.items())),
                "not_final": not_final,
                "missing_from_db": missing_from_db,
                "wrong_result": wrong,
                "sent_early": early,
                "untracked_in_db": len(rows) - sum(1 for s in sent if s in rows),
            },
            **checks,
            "callbacks": {
                "attempts_by_outcome": facts["attempt_outcomes"],
                "receiver_answers": {k: recv.get(k, 0) for k in ("200", "503", "dropped")},
                "bad_signatures": recv.get("bad_signature", 0),
                "outages": recv.get("outages", 0),
                "outage_seconds": recv.get("outage_s", 0),
            },
            "emails": {
                "received": self.mailbox.total,
                "unreadable": self.mailbox.unreadable,
                "mail_outbox": facts["mail_outbox"],
            },
            "smsc": {
                "disconnects": sim.get("disconnects", 0),
                "listener_outages": sim.get("listener_outages", 0),
                "sessions_dropped": sim.get("sessions_dropped", 0),
                "submits_accepted": sim.get("submits_accepted", 0),
                "duplicate_submits": duplicate_submits,
                "duplicated_messages": duplicated_messages,
                "documented_bound": f"{bound} messages (window {self.args.window} per drop)",
                "delivered_unseen": unseen,
                "receipts_dropped": sim.get("deliver_dropped", 0),
                # deliver_sm (receipts, replies) the gateway answered too late or
                # with an error: the SMSC sent them again.
                "deliver_timeouts": sim.get("deliver_timeouts", 0),
                "deliver_nacked": sim.get("deliver_nacked", 0),
            },
            "drained": drained,
            "lost": lost,
            "rss_mib": {
                "warmup_at_s": round(warmup_s),
                "warmup": mib(rss_warm),
                "end_of_load": mib(rss_end_of_load),
                "after_drain": mib(rss_after_drain),
                "max": mib(max(sample[1] for sample in self.rss)),
                # Anonymous memory (the heap); the rest is mapped files (the interpreter
                # and its libraries), which stay the same.
                "anon_warmup": mib(warm[2]),
                "anon_end_of_load": mib(end_of_load[2]),
                "growth_pct": growth,
                "margin_pct": self.args.rss_margin,
            },
            "gateway_log": gateway_log(self.tmp / "gateway.log"),
            "problems": problems,
        }


_prctl = ctypes.CDLL(None).prctl  # resolved here: the child must not dlopen after fork
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child, before exec: SIGTERM when this benchmark dies, however it dies, so
    that nothing it started outlives it."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def memory_kib(pid: int) -> dict[str, int]:
    """The process's resident memory from /proc: VmRSS and its parts (RssAnon, RssFile,
    RssShmem), in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "RssAnon", "RssFile", "RssShmem")):
            name, value = line.split(":")
            fields[name] = int(value.split()[0])
    return fields


def wait_listening(port: int) -> None:
    for _ in range(300):
        try:
            httpx.get(f"http://127.0.0.1:{port}/stats", timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answers on port {port}")


_NOISE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f-]{19,}|\b[0-9a-f]{12,}\b|\d+(\.\d+)?")


def gateway_log(path: Path) -> dict[str, Any]:
    """WARNING and ERROR lines of the gateway's JSON log, grouped with numbers blanked."""
    levels: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            levels["not JSON"] += 1
            kinds[f"(not JSON) {line[:120]}"] += 1
            continue
        level = entry.get("level", "?")
        levels[level] += 1
        if level in ("WARNING", "ERROR", "CRITICAL"):
            message = _NOISE.sub("#", str(entry.get("message", "")))[:140]
            kinds[f"{level} {entry.get('logger')}: {message}"] += 1
    return {"by_level": dict(levels), "top": dict(kinds.most_common(12))}


def soak(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="roxgate-soak-") as tmp:
        run = Soak(args, Path(tmp))
        try:
            run.start()
            figures = asyncio.run(run.run())
        finally:
            run.stop()
            if args.keep:
                keep = Path(args.keep)
                keep.mkdir(parents=True, exist_ok=True)
                for item in Path(tmp).iterdir():
                    shutil.copy(item, keep / item.name)
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    problems = figures["problems"]
    print("FAIL: " + "; ".join(problems) if problems else "PASS: lost 0, RSS within margin")
    return 1 if problems else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10, help="of load (default 10)")
    parser.add_argument("--rate", type=float, default=200, help="messages/s (default 200)")
    parser.add_argument("--window", type=int, default=100, help="SMPP window (default 100)")
    parser.add_argument("--drain", type=float, default=180, help="seconds, at most (180)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds before RSS counts (default: until the number cache is full, >= 60)",
    )
    parser.add_argument("--rss-margin", type=float, default=10, help="percent (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="of the traffic and the chaos")
    parser.add_argument("--keep", metavar="DIR", help="copy the database and logs here")
    parser.add_argument("--serve-smsc", nargs=3, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-receiver", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_smsc:
        asyncio.run(run_smsc(*args.serve_smsc))
    elif args.serve_receiver:
        asyncio.run(run_receiver(*args.serve_receiver))
    else:
        sys.exit(soak(args))


if __name__ == "__main__":
    main()
