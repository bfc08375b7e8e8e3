"""Scale-out benchmark: 1 and 2 worker processes, 1 and 2 api processes, on PostgreSQL.

The targets of the scale-out issue: **2 workers send ≥ 1.8× what one sends**
while the SMSC is not the limit, and **intake on PostgreSQL reaches ≥ 80% of
intake on SQLite**. Run it on a quiet machine (the figures are CPU-bound):

    .venv/bin/python bench/scale.py                           # both parts, defaults below
    .venv/bin/python bench/scale.py --only dispatch --repeat 3 --window 400
    .venv/bin/python bench/scale.py --only ingest --requests 400 --concurrency 4
    .venv/bin/python bench/scale.py --messages 2000 --requests 40 --repeat 1   # a quick check
    .venv/bin/python bench/scale.py --only dispatch --workers 1    # one worker (to profile it)

PostgreSQL: ``--postgres ADMIN_URL`` (default the local trust-auth server,
postgresql://postgres@127.0.0.1:5432/postgres); every run gets a new database
made next to it and dropped afterwards (``bench/ingest.py`` helpers).

**Dispatch** (``--only dispatch``), for K = 1 and then K = 2, each on a fresh database:

1. ``--messages`` N (default 20,000; 500 a request, ReceiptFlag 0 so no
   callbacks) are queued by a ``roxgate serve --role api`` that is then stopped
   (``bench/dispatch.py``).
2. The messages are held back (their ``due_at`` moved a day ahead, as a
   SendLater would) while the carrier simulator starts in its own process and
   K ``roxgate serve --role worker`` processes start, bind (``/readyz``) and
   ``LISTEN``; then one transaction makes them all due and sends
   ``NOTIFY roxgate_queued``. So all K workers start together and the figure
   contains no process start-up, only sending.
3. The simulator is the built-in one (``SmscSimulator``) run by this file in
   its own process (uvloop), with no TPS limit, pipelined: it answers every
   submit_sm at once, a DELIVRD receipt 0.5 s later (``--receipt-delay``),
   receipts windowed like the submits (``--window`` W deliver_sm in flight per
   bind). It counts every submit_sm per destination number and per bind. All K
   workers use ``ROXGATE_CARRIER=smpp://bench:bench@127.0.0.1:PORT?window=W``
   (one transceiver each, the same system_id: a receipt may come back on the
   other worker's bind, as in production).
4. Read from the database once every message is settled:
   *submitted/s* = N / (last ``submitted_at`` − release) and
   *settled/s* = N / (last ``final_at`` − release) (this includes the receipt
   delay once, which lowers the K=2/K=1 ratio of short runs) and
   *receipts/s* = N / (last − first ``final_at``) (receipt processing alone).
   "first submit ms" is how long the first submission took to be recorded
   after the release (the wake-up, claim and first group commit); "submits
   per bind (last at)" shows how the simulator's submit_sm were split between
   the binds and when (s after the release) each bind sent its last one: a
   bind finishing well before the other means one worker sent the tail alone.
   A worker claims at most two windows at a time (``Gateway._fit_claims``;
   it claimed 1,000 whatever its window until this benchmark showed one
   worker idling while the other sent the tail alone), so the tail is short;
   keep ``--messages`` at the default 20,000 or more for the ratio anyway.
   *exactly once*: every destination number is distinct, so the simulator's
   accepted submit_sm must equal the messages' parts, with no destination seen
   twice and none missing; the database must hold one ``message_parts`` row per
   part.
5. CPU: utime + stime from ``/proc`` over the measured span (release → all
   settled) of each worker, the simulator, the PostgreSQL backends of the
   run's database (pids from ``pg_stat_activity``, sampled every 0.2 s) and
   the PostgreSQL server's own processes (walwriter, checkpointer…, shared
   with any other database on that server), this script (polling), the whole
   machine (``/proc/stat``), and what none of those account for ("other").
   In **% of one core**: on 2 cores the machine is saturated at 200%.

**Ingest** (``--only ingest``): ``--requests`` R (default 400) requests of 500
distinct recipients (bodies built beforehand, as in ``bench/ingest.py``)
sent to: 1 api process on SQLite (the baseline), 1 api process on PostgreSQL,
2 api processes on PostgreSQL (each on its own port, a fresh database each
time). The requests are split evenly over the processes (as a round-robin
load balancer would) and each process gets ``--concurrency`` C keep-alive
clients (default 4, *per process*: each process sees the load
``bench/ingest.py`` measures it under; 2 processes get 2C clients in all).
One warm-up request per process (argon2, pool) is not counted. Printed:
messages/s (all requests / wall time), latency p50/p99/max, failures, and
the CPU of each api process, the PostgreSQL backends (sampled every 0.5 s)
and server processes, the clients (this script), the machine.

**Reading it.** ``--repeat`` N runs every case N times, interleaved (K=1,
K=2, K=1, K=2…; SQLite, PG×1, PG×2, SQLite…), so that a drift of the machine
hits all cases alike; each run is printed, then the range (min – max) per
case and the ratios per repeat: *K=2 / K=1* for submitted/s (the target,
≥ 1.8: throughput to the SMPP peer), settled/s and receipts/s, and
*PostgreSQL / SQLite* for ingest (target ≥ 0.8; given for 1 and for 2 api
processes). A ratio only means "roxgate scales" when the limit is not
elsewhere: check that the simulator stays well below 100% of a core, and
compare the machine's busy % with 200% — when the machine is saturated,
the workers, the simulator and PostgreSQL share two cores, and the ratio
measures the machine, not the gateway. "other%" is CPU time no process
named in the table accounts for: other jobs on the machine, and kernel work
charged to no process (small on a quiet machine). The tables go to standard
output, followed by one JSON document with every figure; progress goes to
standard error.

Everything started here (gateways, simulator, databases) is stopped or
dropped at the end, on an error and on Ctrl-C. Killed outright (SIGKILL),
the script still takes its gateways and simulator with it (PR_SET_PDEATHSIG),
but leaves its database (``roxgate_bench_…``) behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import psycopg

from roxgate.carriers.simulator import SmscSimulator
from roxgate.carriers.smpp.pdu import SubmitSm
from roxgate.store.ids import now_ms
from roxgate.store.notify import QUEUED

sys.path.insert(0, str(Path(__file__).parent))
from dispatch import ROXGATE, queue_messages_url, wait_healthy
from ingest import (
    build_body,
    client,
    drop_postgres,
    free_port,
    fresh_postgres,
    http_request,
    rss_kib,
    seed_database,
    seed_url,
)
from soak import die_with_parent

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
RECIPIENTS = 500  # per request, as bench/ingest.py and bench/dispatch.py send
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
HOLD_MS = 86_400_000  # how far ahead queued messages are held until the workers are ready
POLL_SECONDS = 0.2


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- processes ------------------------------------------------------------------------


def spawn(
    stack: contextlib.ExitStack, argv: list[str], env: dict[str, str], **options: Any
) -> subprocess.Popen[bytes]:
    """Start a child that is stopped when ``stack`` closes (and dies with this script)."""
    proc = subprocess.Popen(argv, env=env, preexec_fn=die_with_parent, **options)
    stack.callback(stop_process, proc)
    return proc


def stop_process(proc: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def gateway_env(url: str, port: int, **settings: str) -> dict[str, str]:
    return {
        **os.environ,
        "ROXGATE_DATABASE_URL": url,
        "ROXGATE_PORT": str(port),
        "ROXGATE_LOG_LEVEL": "WARNING",
        **{f"ROXGATE_{name.upper()}": value for name, value in settings.items()},
    }


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until ``/readyz`` answers 200: for a worker, its carrier bind is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"a gateway exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"the gateway on port {port} was not ready within {timeout:g} s")


# --- the simulator (this file run with --serve-simulator) --------------------------------


class CountingSimulator(SmscSimulator):
    """The built-in SMSC, counting submit_sm per destination and per bind.

    ``keep_submits=0``: it keeps no PDUs (20,000 would cost it memory and time),
    only these counters.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(keep_submits=0, **options)
        self.per_destination: Counter[str] = Counter()
        # Per bind: submit_sm received, and the time (ms) of its first and last one,
        # which shows whether the binds worked side by side to the end or one of
        # them finished alone.
        self.per_bind: dict[int, list[int]] = {}

    def _submit(self, session: Any, pdu: SubmitSm) -> bytes:
        self.per_destination[pdu.destination_addr] += 1
        now = time.time_ns() // 1_000_000
        bind = self.per_bind.get(id(session))
        if bind is None:
            self.per_bind[id(session)] = [1, now, now]
        else:
            bind[0] += 1
            bind[2] = now
        return super()._submit(session, pdu)

    def report(self) -> dict[str, Any]:
        return {
            **asdict(self.stats),
            "destinations": len(self.per_destination),
            "destinations_twice_or_more": sum(1 for n in self.per_destination.values() if n > 1),
            "per_bind": [
                {"submits": n, "first_ms": first, "last_ms": last}
                for n, first, last in sorted(self.per_bind.values(), reverse=True)
            ],
        }


def serve_simulator(receipt_delay: float, window: int) -> None:
    """The child: prints its port, then one JSON report per line read from stdin.

    It ignores SIGINT: on Ctrl-C the terminal signals every process of the group at
    once, and the workers, stopping, should still find their SMSC to answer what they
    have in flight. The benchmark stops it last, with SIGTERM (or closing stdin).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    async def serve() -> None:
        sim = CountingSimulator(receipt_delay=receipt_delay, deliver_window=window)
        await sim.start("127.0.0.1", 0)
        print(sim.port, flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while await reader.readline():  # EOF: the benchmark is done (or gone)
            print(json.dumps(sim.report()), flush=True)
        await sim.stop()

    try:  # the gateway runs on uvloop too; it makes the simulator cheaper still
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve())


class Simulator:
    """The counting simulator in its own process, stopped with ``stack``."""

    def __init__(self, stack: contextlib.ExitStack, receipt_delay: float, window: int) -> None:
        argv = [sys.executable, __file__, "--serve-simulator", str(receipt_delay), str(window)]
        self.proc = spawn(
            stack, argv, dict(os.environ), stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("the simulator did not start")
        self.port = int(line)

    def report(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"report\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())


# --- CPU time -------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of stat


def machine_busy_seconds() -> float:
    """CPU time the machine (all cores) spent neither idle nor waiting for I/O since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    return (sum(values[:8]) - values[3] - values[4]) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class CpuMeter:
    """CPU time used between :meth:`start` and :meth:`stop` by the named processes,
    the PostgreSQL processes of one database (and the server's own), this script
    and the whole machine."""

    def __init__(
        self,
        processes: dict[str, int],
        admin_url: str | None = None,
        database: str | None = None,
        exclude: Iterable[int] = (),
    ) -> None:
        self.processes = processes
        self.database = database
        self.exclude = set(exclude)  # this script's own connections
        self.admin = psycopg.connect(admin_url, autocommit=True) if admin_url else None
        self._before: dict[str, float] = {}
        self._pg_kind: dict[int, str] = {}
        self._pg_first: dict[int, float] = {}
        self._pg_last: dict[int, float] = {}

    def close(self) -> None:
        if self.admin is not None:
            self.admin.close()

    def start(self) -> None:
        self._started = time.perf_counter()
        self._machine = machine_busy_seconds()
        self._own = own_cpu_seconds()
        self._before = {name: cpu_seconds(pid) or 0.0 for name, pid in self.processes.items()}
        self._sample_postgres(first=True)

    def sample(self) -> None:
        """Look for PostgreSQL backends again (a pool may open connections any time)."""
        self._sample_postgres(first=False)

    def _sample_postgres(self, first: bool) -> None:
        if self.admin is None:
            return
        rows = self.admin.execute(
            "SELECT pid, backend_type FROM pg_stat_activity WHERE datname = %s OR datname IS NULL",
            (self.database,),
        ).fetchall()
        for pid, kind in rows:
            cpu = None if pid in self.exclude else cpu_seconds(pid)
            if cpu is None:
                continue
            if pid not in self._pg_first:
                # Seen at the start: counted from then. Seen later: born since, so
                # all its time is in the span.
                self._pg_first[pid] = cpu if first else 0.0
                self._pg_kind[pid] = "backends" if kind == "client backend" else "server"
            self._pg_last[pid] = cpu

    def stop(self) -> dict[str, Any]:
        self._sample_postgres(first=False)
        seconds = time.perf_counter() - self._started
        used = {
            name: round((cpu_seconds(pid) or 0.0) - self._before[name], 2)
            for name, pid in self.processes.items()
        }
        if self.admin is not None:
            for kind in ("backends", "server"):
                used[f"postgres {kind}"] = round(
                    sum(
                        self._pg_last[pid] - self._pg_first[pid]
                        for pid in self._pg_first
                        if self._pg_kind[pid] == kind
                    ),
                    2,
                )
        used["bench"] = round(own_cpu_seconds() - self._own, 2)
        machine = machine_busy_seconds() - self._machine
        return {
            "seconds": round(seconds, 3),
            "cpu_s": used,
            "machine_busy_cpu_s": round(machine, 2),
            "unattributed_cpu_s": round(machine - sum(used.values()), 2),
            "cores": os.cpu_count(),
        }


def core_percent(cpu: dict[str, Any], name: str) -> int:
    """CPU of ``name`` over the span, in % of one core."""
    value = cpu["machine_busy_cpu_s"] if name == "machine" else cpu["cpu_s"].get(name, 0.0)
    return round(100 * value / cpu["seconds"]) if cpu["seconds"] else 0


# --- dispatch -------------------------------------------------------------------------


def hold_queue(db: psycopg.Connection[Any]) -> int:
    return db.execute(
        "UPDATE messages SET due_at = due_at + %s WHERE status = 'queued'", (HOLD_MS,)
    ).rowcount


def release_queue(db: psycopg.Connection[Any]) -> int:
    """Make every held message due now and wake the workers; when that was committed (ms)."""
    with db.transaction():
        db.execute("UPDATE messages SET due_at = %s WHERE status = 'queued'", (now_ms(),))
        db.execute(f"NOTIFY {QUEUED}")  # delivered at the commit
    return now_ms()


def wait_listening(db: psycopg.Connection[Any], workers: int, timeout: float = 15.0) -> None:
    """Until ``workers`` connections LISTEN for queued messages: a worker's listener
    starts after its bind, so a NOTIFY sent earlier would only wake it at its next
    poll (up to a second later), and the workers would not start together."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listening = db.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN %'"
        ).fetchone()
        if listening is not None and listening[0] >= workers:
            return
        time.sleep(0.05)
    progress(f"  (only some workers LISTEN after {timeout:g} s; releasing anyway)")


def settled_count(db: psycopg.Connection[Any]) -> int:
    row = db.execute(
        "SELECT count(*) FROM messages WHERE status IN ('delivered', 'failed', 'expired')"
    ).fetchone()
    return int(row[0]) if row else 0


def outcome(db: psycopg.Connection[Any]) -> dict[str, Any]:
    row = db.execute(
        "SELECT count(*), coalesce(sum(parts), 0), max(submitted_at), min(submitted_at), "
        "min(final_at), max(final_at), count(*) FILTER (WHERE attempts > 1) FROM messages"
    ).fetchone()
    parts = db.execute("SELECT count(*), count(DISTINCT message_id) FROM message_parts").fetchone()
    statuses = dict(db.execute("SELECT status, count(*) FROM messages GROUP BY status").fetchall())
    assert row is not None and parts is not None
    return {
        "messages": row[0],
        "parts": int(row[1]),
        "last_submitted_ms": row[2],
        "first_submitted_ms": row[3],
        "first_final_ms": row[4],
        "last_final_ms": row[5],
        "retried": row[6],
        "part_rows": parts[0],
        "messages_with_parts": parts[1],
        "statuses": statuses,
    }


def dispatch_run(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    requests = max(1, args.messages // RECIPIENTS)
    total = requests * RECIPIENTS
    with contextlib.ExitStack() as stack:
        url = fresh_postgres(args.postgres)
        stack.callback(drop_postgres, args.postgres, url)
        seed_url(url)
        queue_messages_url(url, requests)
        db = stack.enter_context(psycopg.connect(url, autocommit=True))
        held = hold_queue(db)
        if held != total:
            raise SystemExit(f"{held} messages queued, {total} expected")
        sim = Simulator(stack, args.receipt_delay, args.window)
        carrier = f"smpp://bench:bench@127.0.0.1:{sim.port}?window={args.window}"
        gateways: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        for k in range(1, workers + 1):
            port = free_port()
            env = gateway_env(url, port, carrier=carrier)
            gateways[f"worker {k}"] = (
                spawn(stack, [ROXGATE, "serve", "--role", "worker"], env),
                port,
            )
        for proc, port in gateways.values():
            wait_ready(port, proc)
        wait_listening(db, workers)
        processes = {name: proc.pid for name, (proc, _) in gateways.items()}
        processes["simulator"] = sim.proc.pid
        meter = CpuMeter(processes, args.postgres, url.rsplit("/", 1)[1], [db.info.backend_pid])
        stack.callback(meter.close)
        meter.start()
        released = release_queue(db)
        deadline = time.monotonic() + args.timeout
        timed_out = False
        while settled_count(db) < total:
            for proc, _ in gateways.values():
                if proc.poll() is not None:
                    raise SystemExit(f"a worker exited with {proc.returncode}")
            if time.monotonic() > deadline:
                timed_out = True
                break
            meter.sample()
            time.sleep(POLL_SECONDS)
        cpu = meter.stop()
        rss = {name: rss_kib(proc.pid).get("VmHWM") for name, (proc, _) in gateways.items()}
        peer = sim.report()
        found = outcome(db)

    def rate(until_ms: int | None) -> int | None:
        return (
            round(total * 1000 / (until_ms - released))
            if until_ms and until_ms > released
            else None
        )

    duplicates = peer["submits_accepted"] - found["parts"]
    return {
        "workers": workers,
        "messages": total,
        "window": args.window,
        "timed_out": timed_out,
        "submitted_per_s": rate(found["last_submitted_ms"]),
        "settled_per_s": rate(found["last_final_ms"]) if not timed_out else None,
        # First to last receipt recorded: the receipt delay is not in it.
        "receipts_processed_per_s": (
            round(total * 1000 / (found["last_final_ms"] - found["first_final_ms"]))
            if not timed_out and found["last_final_ms"] > found["first_final_ms"]
            else None
        ),
        "first_submit_ms": found["first_submitted_ms"] and found["first_submitted_ms"] - released,
        "seconds_to_all_submitted": found["last_submitted_ms"]
        and round((found["last_submitted_ms"] - released) / 1000, 3),
        "exactly_once": (
            duplicates == 0
            and peer["destinations"] == total
            and peer["destinations_twice_or_more"] == 0
            and found["part_rows"] == found["parts"]
            and found["messages_with_parts"] == total
        ),
        "simulator": {
            "submits": peer["submits"],
            "accepted": peer["submits_accepted"],
            "refused": peer["submits_refused"],
            "duplicates": duplicates,
            "destinations": peer["destinations"],
            "destinations_twice_or_more": peer["destinations_twice_or_more"],
            "missing": total - peer["destinations"],
            # Seconds from the release to each bind's first and last submit_sm.
            "per_bind": [
                {
                    "submits": b["submits"],
                    "first_s": round((b["first_ms"] - released) / 1000, 3),
                    "last_s": round((b["last_ms"] - released) / 1000, 3),
                }
                for b in peer["per_bind"]
            ],
            "receipts_sent": peer["receipts_sent"],
            "receipts_acked": peer["receipts_acked"],
        },
        "database": found,
        "cpu": cpu,
        "worker_rss_peak_kib": rss,
    }


# --- ingest ---------------------------------------------------------------------------


def percentile(ordered: list[float], p: float) -> float:
    """As bench/ingest.py reads p99 (the value below which p of the requests fall)."""
    return ordered[max(0, int(len(ordered) * p) - 1)]


async def drive_ingest(
    ports: list[int], requests: int, concurrency: int, meter: CpuMeter
) -> dict[str, Any]:
    bodies = [build_body(n, RECIPIENTS, False) for n in range(requests + len(ports))]
    # Warm-up, one request a process: the argon2 verification and the pool.
    for port in ports:
        warm: asyncio.Queue[bytes] = asyncio.Queue()
        warm.put_nowait(http_request(port, bodies.pop()))
        await client(port, warm, [], [])
    queues: dict[int, asyncio.Queue[bytes]] = {port: asyncio.Queue() for port in ports}
    for n, body in enumerate(bodies):
        port = ports[n % len(ports)]
        queues[port].put_nowait(http_request(port, body))
    latencies: list[float] = []
    failures: list[str] = []
    done = asyncio.Event()

    async def watch() -> None:
        # A pool's overflow connections come and go: look for new backends while
        # the clients run (in a thread: the clients' loop is what is measured).
        while not done.is_set():
            await asyncio.to_thread(meter.sample)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.5)

    meter.start()
    watcher = asyncio.create_task(watch())
    started = time.perf_counter()
    try:
        await asyncio.gather(
            *(
                client(port, queues[port], latencies, failures)
                for port in ports
                for _ in range(concurrency)
            )
        )
    finally:
        elapsed = time.perf_counter() - started
        done.set()
        await watcher
    cpu = meter.stop()
    latencies.sort()
    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 3),
        "messages_per_s": round(len(latencies) * RECIPIENTS / elapsed),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1),
        "failures": len(failures),
        "failure_examples": sorted(set(failures))[:3],
        "cpu": cpu,
    }


def ingest_run(args: argparse.Namespace, backend: str, processes: int) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        database = None
        if backend == "postgresql":
            url = fresh_postgres(args.postgres)
            stack.callback(drop_postgres, args.postgres, url)
            seed_url(url)
            database = url.rsplit("/", 1)[1]
        else:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="roxgate-bench-"))
            url = f"sqlite:///{seed_database(Path(folder))}"
        servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        for k in range(1, processes + 1):
            port = free_port()
            proc = spawn(stack, [ROXGATE, "serve", "--role", "api"], gateway_env(url, port))
            servers[f"api {k}"] = (proc, port)
        for proc, port in servers.values():
            wait_healthy(port, proc)
        meter = CpuMeter(
            {name: proc.pid for name, (proc, _) in servers.items()},
            args.postgres if database else None,
            database,
        )
        stack.callback(meter.close)
        figures = asyncio.run(
            drive_ingest(
                [port for _, port in servers.values()], args.requests, args.concurrency, meter
            )
        )
        rss = {name: rss_kib(proc.pid).get("VmHWM") for name, (proc, _) in servers.items()}
    return {
        "backend": backend,
        "processes": processes,
        "concurrency_per_process": args.concurrency,
        **figures,
        "server_rss_peak_kib": rss,
    }


# --- output ---------------------------------------------------------------------------


def spread(values: list[float | None]) -> dict[str, float] | None:
    known = [v for v in values if v is not None]
    if not known:
        return None
    return {"min": min(known), "median": statistics.median(known), "max": max(known)}


def ratios(tops: list[float | None], bottoms: list[float | None]) -> list[float | None]:
    return [round(t / b, 2) if t and b else None for t, b in zip(tops, bottoms, strict=True)]


def number(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def span(values: list[float | None], digits: int = 0) -> str:
    s = spread(values)
    if s is None:
        return "–"
    if digits:
        return f"{s['min']:.{digits}f} – {s['max']:.{digits}f}"
    return f"{s['min']:,.0f} – {s['max']:,.0f}"


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """Rows may be shorter than the columns (a range row): the rest is blank."""
    rows = [r + [""] * (len(columns) - len(r)) for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def cpu_cells(cpu: dict[str, Any], names: list[str]) -> list[str]:
    return [
        "+".join(str(core_percent(cpu, n)) for n in names),
        str(core_percent(cpu, "simulator")) if "simulator" in cpu["cpu_s"] else "",
        str(core_percent(cpu, "postgres backends")) if "postgres backends" in cpu["cpu_s"] else "–",
        str(core_percent(cpu, "postgres server")) if "postgres server" in cpu["cpu_s"] else "–",
        str(core_percent(cpu, "bench")),
        f"{core_percent(cpu, 'machine')}/{100 * (cpu['cores'] or 1)}",
        str(round(100 * cpu["unattributed_cpu_s"] / cpu["seconds"])) if cpu["seconds"] else "",
    ]


def binds_cell(binds: list[dict[str, Any]]) -> str:
    """Submits per bind, each with the second (after the release) of its last one."""
    return " + ".join(f"{b['submits']:,} (to {b['last_s']:.2f} s)" for b in binds)


CPU_COLUMNS = ["pg backends%", "pg server%", "bench%", "machine%", "other%"]


def dispatch_report(runs: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    rows = []
    for workers, results in runs.items():
        names = [f"worker {k}" for k in range(1, workers + 1)]
        for n, r in enumerate(results, 1):
            peer = r["simulator"]
            cells = cpu_cells(r["cpu"], names)
            rows.append(
                [
                    str(workers), str(n), number(r["submitted_per_s"]), number(r["settled_per_s"]),
                    number(r["receipts_processed_per_s"]), number(r["first_submit_ms"]),
                    "yes" if r["exactly_once"] else "NO",
                    f"{peer['duplicates']}/{peer['missing']}",
                    binds_cell(peer["per_bind"]),
                    cells[0], cells[1], *cells[2:],
                ]
            )  # fmt: skip
        rows.append(
            [
                str(workers), "range", span([r["submitted_per_s"] for r in results]),
                span([r["settled_per_s"] for r in results]),
                span([r["receipts_processed_per_s"] for r in results]),
            ]
        )  # fmt: skip
    first = next(iter(runs.values()))[0]
    print_table(
        f"Dispatch on PostgreSQL: {first['messages']:,} messages, window {first['window']}, "
        f"receipts on (CPU in % of one core, release → all settled)",
        ["workers", "run", "submitted/s", "settled/s", "receipts/s", "first submit ms",
         "exactly once",
         "dup/missing", "submits per bind (last at)", "workers%", "simulator%", *CPU_COLUMNS],
        rows,
    )  # fmt: skip
    summary: dict[str, Any] = {
        f"workers_{k}": {
            "submitted_per_s": spread([r["submitted_per_s"] for r in results]),
            "settled_per_s": spread([r["settled_per_s"] for r in results]),
            "receipts_processed_per_s": spread([r["receipts_processed_per_s"] for r in results]),
            "simulator_core_percent": spread(
                [core_percent(r["cpu"], "simulator") for r in results]
            ),
            "exactly_once": all(r["exactly_once"] for r in results),
        }
        for k, results in runs.items()
    }
    if 1 in runs and 2 in runs:
        labels = {
            "submitted_per_s": "submitted/s (target ≥ 1.8)",
            "settled_per_s": "settled/s",
            "receipts_processed_per_s": "receipts/s",
        }
        for what, label in labels.items():
            per_repeat = ratios([r[what] for r in runs[2]], [r[what] for r in runs[1]])
            summary[f"ratio_2_to_1_{what}"] = {
                "per_repeat": per_repeat,
                **(spread(per_repeat) or {}),
            }
            print(f"K=2 / K=1 {label}: {span(per_repeat, 2)}")
        busiest = max(core_percent(r["cpu"], "simulator") for rs in runs.values() for r in rs)
        if busiest > 80:
            print(f"warning: the simulator used up to {busiest}% of a core: it may be the limit")
    return summary


INGEST_CASES = [("sqlite", 1), ("postgresql", 1), ("postgresql", 2)]


def ingest_report(runs: dict[tuple[str, int], list[dict[str, Any]]]) -> dict[str, Any]:
    rows = []
    for (backend, processes), results in runs.items():
        names = [f"api {k}" for k in range(1, processes + 1)]
        for n, r in enumerate(results, 1):
            cells = cpu_cells(r["cpu"], names)
            rows.append(
                [
                    backend, str(processes), str(n), number(r["messages_per_s"]),
                    f"{r['p50_ms']:.0f}", f"{r['p99_ms']:.0f}", f"{r['max_ms']:.0f}",
                    str(r["failures"]), cells[0], *cells[2:],
                ]
            )  # fmt: skip
        rows.append(
            [
                backend, str(processes), "range", span([r["messages_per_s"] for r in results]),
                span([r["p50_ms"] for r in results]), span([r["p99_ms"] for r in results]),
            ]
        )  # fmt: skip
    first = next(iter(runs.values()))[0]
    print_table(
        f"Ingest: {first['requests']:,} requests × {RECIPIENTS} recipients, "
        f"{first['concurrency_per_process']} clients per api process (CPU in % of one core)",
        ["database", "api procs", "run", "messages/s", "p50 ms", "p99 ms", "max ms", "failures",
         "api%", *CPU_COLUMNS],
        rows,
    )  # fmt: skip
    summary: dict[str, Any] = {
        f"{backend}_{processes}": {
            "messages_per_s": spread([r["messages_per_s"] for r in results]),
            "p99_ms": spread([r["p99_ms"] for r in results]),
            "failures": sum(r["failures"] for r in results),
        }
        for (backend, processes), results in runs.items()
    }
    rate = {case: [r["messages_per_s"] for r in results] for case, results in runs.items()}
    pairs = [
        ("postgresql_1_to_sqlite", ("postgresql", 1), ("sqlite", 1), "target ≥ 0.8"),
        ("postgresql_2_to_sqlite", ("postgresql", 2), ("sqlite", 1), "target ≥ 0.8"),
        ("postgresql_2_to_1", ("postgresql", 2), ("postgresql", 1), "two api processes"),
    ]
    for name, top, bottom, note in pairs:
        if top in rate and bottom in rate:
            per_repeat = ratios(rate[top], rate[bottom])
            summary[f"ratio_{name}"] = {"per_repeat": per_repeat, **(spread(per_repeat) or {})}
            print(f"{name.replace('_', ' ')}: {span(per_repeat, 2)} ({note})")
    return summary


# --- main -----------------------------------------------------------------------------


def main() -> None:
    try:
        run()
    except KeyboardInterrupt:  # everything started was stopped on the way out
        progress("interrupted")
        sys.exit(130)


def run() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-simulator":
        serve_simulator(float(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["dispatch", "ingest"], help="default: both")
    parser.add_argument("--messages", type=int, default=20_000, help="dispatch: messages per run")
    parser.add_argument("--window", type=int, default=400, help="dispatch: SMPP window W")
    parser.add_argument(
        "--receipt-delay", type=float, default=0.5, help="dispatch: seconds to each receipt"
    )
    parser.add_argument("--timeout", type=float, default=300, help="dispatch: seconds per run")
    parser.add_argument("--requests", type=int, default=400, help="ingest: requests per run")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="ingest: keep-alive clients per api process"
    )
    parser.add_argument("--postgres", metavar="ADMIN_URL", default=LOCAL_POSTGRES)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each case, interleaved")
    parser.add_argument(
        "--workers",
        default="1,2",
        help="dispatch: the worker counts to run, comma-separated (default 1,2; e.g. 1 to profile)",
    )
    args = parser.parse_args()
    if args.requests < 1 or args.concurrency < 1 or args.repeat < 1 or args.messages < 1:
        parser.error("--messages, --requests, --concurrency and --repeat must be positive")

    document: dict[str, Any] = {"settings": vars(args), "cores": os.cpu_count()}
    if args.only in (None, "dispatch"):
        counts = sorted({int(k) for k in args.workers.split(",") if k.strip()})
        if not counts or counts[0] < 1:
            parser.error("--workers takes positive counts, e.g. 1,2")
        dispatch_runs: dict[int, list[dict[str, Any]]] = {k: [] for k in counts}
        for n in range(1, args.repeat + 1):
            for workers in dispatch_runs:
                r = dispatch_run(args, workers)
                dispatch_runs[workers].append(r)
                progress(
                    f"dispatch run {n}, {workers} worker(s): {number(r['submitted_per_s'])} "
                    f"submitted/s, {number(r['settled_per_s'])} settled/s, "
                    f"exactly once: {r['exactly_once']}"
                )
        document["dispatch"] = {
            "runs": [r for results in dispatch_runs.values() for r in results],
            "summary": dispatch_report(dispatch_runs),
        }
    if args.only in (None, "ingest"):
        ingest_runs: dict[tuple[str, int], list[dict[str, Any]]] = {c: [] for c in INGEST_CASES}
        for n in range(1, args.repeat + 1):
            for backend, processes in INGEST_CASES:
                r = ingest_run(args, backend, processes)
                ingest_runs[(backend, processes)].append(r)
                progress(
                    f"ingest run {n}, {backend} × {processes}: {number(r['messages_per_s'])} "
                    f"messages/s, p99 {r['p99_ms']} ms, failures {r['failures']}"
                )
        document["ingest"] = {
            "runs": [r for results in ingest_runs.values() for r in results],
            "summary": ingest_report(ingest_runs),
        }
    print()
    print(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
