"""``GET /metrics``: the gateway's counters in the Prometheus text format.

Nothing here runs on the hot paths. The intake, the SMPP session, the
dispatcher and the report workers keep plain counters as they go (see
:mod:`roxgate.stats`, ``traffic.totals``, their ``counts``); a scrape reads
them through :class:`GatewayCollector` into a registry of this app's own
(never the process-wide default one, so two apps in one process never mix).
What only the database knows (messages waiting in each live state, the
callbacks and e-mails not yet done) comes from index range counts, queried
off the event loop at most once per ``BACKLOG_TTL`` seconds however often
anyone scrapes.

Served as text format 0.0.4, which every Prometheus reads. (The live states
are ``roxgate_messages_pending``, not ``roxgate_messages``: OpenMetrics would
take a gauge of that name and the counter ``roxgate_messages_total`` for one
family.)
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Final

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.requests import Request
from starlette.responses import Response

from roxgate import __version__
from roxgate.carriers.smpp.pdu import Status
from roxgate.stats import Histogram
from roxgate.store import traffic
from roxgate.store.backlog import MESSAGE_STATES, backlog
from roxgate.store.ids import now_ms

if TYPE_CHECKING:
    from roxgate.api.gateway import Gateway
    from roxgate.carriers.connector import SmppCarrier

log = logging.getLogger("roxgate.api")
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
BACKLOG_TTL: Final = 2.0  # seconds a database count is served before it is asked again
BACKLOG_TIMEOUT: Final = 5.0
# Always exposed, at 0 until something happens, so that rate() works from the start.
CALLBACK_OUTCOMES: Final = ("ok", "retry", "failed")
MAIL_OUTCOMES: Final = ("sent", "retry", "failed")
DISPATCH_OUTCOMES: Final = ("accepted", "permanent", "throttled", "transient", "lost")


class Backlog:
    """The database's counts (``store.backlog``), asked at most once per ``ttl`` seconds."""

    def __init__(self, ttl: float = BACKLOG_TTL, timeout: float = BACKLOG_TIMEOUT) -> None:
        self.ttl, self.timeout = ttl, timeout
        self.values: dict[str, int] | None = None  # None: the last query failed
        self._asked_at = -math.inf
        self._lock = asyncio.Lock()  # concurrent scrapes share one query

    def _fresh(self) -> bool:
        return time.monotonic() - self._asked_at < self.ttl

    async def refresh(self, gateway: Gateway) -> None:
        if self._fresh():
            return
        async with self._lock:
            if self._fresh():
                return
            try:
                self.values = await asyncio.wait_for(
                    gateway.run(backlog, gateway.engine, now_ms()), self.timeout
                )
            except Exception as exc:
                self.values = None
                log.warning("metrics: counting the backlog failed: %s", type(exc).__name__)
            self._asked_at = time.monotonic()


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    buckets = [
        ("+Inf" if math.isinf(bound) else floatToGoString(bound), float(n))
        for bound, n in histogram.cumulative()
    ]
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=histogram.sum)


def _counter(
    name: str, documentation: str, label: str, counts: Mapping[str, float], always: Iterable[str]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    values = Counter({key: 0.0 for key in always})
    values.update(counts)
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _status_name(status: int) -> str:
    try:
        return Status(status).name
    except ValueError:
        return f"0x{status:08X}"


class GatewayCollector(Collector):
    """Reads the running gateway's counters at scrape time (see the module doc)."""

    def __init__(self, backlog_cache: Backlog) -> None:
        self.gateway: Gateway | None = None  # set by the endpoint once the app runs
        self.backlog = backlog_cache

    def collect(self) -> Iterator[Metric]:
        gateway = self.gateway
        if gateway is None:
            return
        info = GaugeMetricFamily(
            "roxgate_build_info",
            "roxgate's version and this process's role",
            labels=["version", "role"],
        )
        info.add_metric([__version__, gateway.role], 1)
        yield info
        yield from self._intake(gateway)
        yield from self._backlog()
        if gateway.carrier is not None:
            yield from self._carrier(gateway, gateway.carrier)
        if gateway.dispatcher is not None:
            counts = {k.replace(" ", "_"): v for k, v in gateway.dispatcher.counts.items()}
            yield _counter(
                "roxgate_dispatch_outcomes",
                "Messages handed to the carrier, by what became of the submit "
                "(lease_lost: taken over by another worker)",
                "outcome", counts, DISPATCH_OUTCOMES,
            )  # fmt: skip
        if gateway.role != "api":
            yield from self._reporting(gateway)

    def _intake(self, gateway: Gateway) -> Iterator[Metric]:
        if gateway.role != "worker":  # a worker serves no /smsapi/send
            requests = gateway.requests
            by_code: Counter[str] = Counter()
            for result, n in requests.results.items():
                by_code[result[:4]] += n  # "0000 (replay)" is a 0000 to the client
            yield _counter(
                "roxgate_api_requests",
                "POST /smsapi/send requests answered by this process, by ROX result code",
                "result", by_code, ("0000",),
            )  # fmt: skip
            yield _histogram(
                "roxgate_api_request_duration_seconds",
                "Time from receiving a send request to its answer",
                requests.seconds,
            )
        # Read key by key: the writer thread adds to this Counter as it commits.
        totals = {kind: float(traffic.totals.get(kind, 0)) for kind in traffic.KINDS}
        yield _counter(
            "roxgate_messages",
            "Messages counted by this process's transactions: accepted (stored with 0000), "
            "submitted, delivered, failed, expired (2064)",
            "kind", totals, traffic.KINDS,
        )  # fmt: skip

    def _backlog(self) -> Iterator[Metric]:
        values = self.backlog.values
        yield _gauge(
            "roxgate_backlog_query_ok",
            "1 when the database counts (roxgate_messages_pending, roxgate_callbacks_pending, "
            "roxgate_mail_pending) are current, 0 when the last count failed",
            0 if values is None else 1,
        )
        if values is None:
            return
        messages = GaugeMetricFamily(
            "roxgate_messages_pending",
            "Messages in the database not yet final: queued (due now), scheduled (due later), "
            "submitting, submitted (awaiting a receipt); the same from every process",
            labels=["state"],
        )
        for state in MESSAGE_STATES:
            messages.add_metric([state], values[state])
        yield messages
        yield _gauge(
            "roxgate_callbacks_pending",
            "Callbacks not yet delivered or given up (waiting or being posted)",
            values["callbacks"],
        )
        yield _gauge(
            "roxgate_mail_pending",
            "E-mails not yet sent or given up (waiting or being sent)",
            values["mail"],
        )

    def _carrier(self, gateway: Gateway, carrier: SmppCarrier) -> Iterator[Metric]:
        session = carrier.submitter
        stats = session.stats
        config = carrier.config
        yield _gauge(
            "roxgate_smpp_bound", "1 while every bind to the SMSC is up", int(carrier.bound)
        )
        yield _gauge(
            "roxgate_smpp_window_in_use",
            "submit_sm holding a window slot (being paced, on the wire, awaiting the answer)",
            session.window_in_use,
        )
        yield _gauge(
            "roxgate_smpp_window_size", "Most submit_sm outstanding at once", config.window
        )
        yield _gauge(
            "roxgate_smpp_tps_limit", "The route's submit_sm per second limit (0: none)", config.tps
        )
        share = config.tps / max(1, gateway.live_workers) if config.tps > 0 else 0
        yield _gauge(
            "roxgate_smpp_tps_share", "This process's share of the TPS limit (0: none)", share
        )
        yield _histogram(
            "roxgate_smpp_submit_seconds",
            "Time from writing a submit_sm to its submit_sm_resp",
            stats.submit_seconds,
        )
        submits = CounterMetricFamily("roxgate_smpp_submits", "submit_sm written")
        submits.add_metric([], stats.submits)
        yield submits
        responses = {_status_name(status): n for status, n in stats.responses.items()}
        yield _counter(
            "roxgate_smpp_submit_responses",
            "submit_sm_resp by command_status",
            "status", responses, ("ESME_ROK",),
        )  # fmt: skip
        unanswered = {
            "link_lost": stats.lost,
            "timeout": stats.timeouts,
            "bad_response": stats.bad_responses,
        }
        yield _counter(
            "roxgate_smpp_submit_unanswered",
            "submit_sm written without a usable answer (the SMSC may have it)",
            "reason", unanswered, (),
        )  # fmt: skip
        drops = CounterMetricFamily("roxgate_smpp_link_drops", "Bound links that went down")
        drops.add_metric([], stats.link_drops)
        yield drops
        receipts: Counter[str] = Counter()
        inbound: Counter[str] = Counter()
        for key, n in carrier.counts.items():
            kind, _, detail = key.partition(" ")
            if kind == "receipt":
                receipts["none" if detail == "without id" else detail] += n
            elif kind == "inbound":
                inbound[detail] += n
        yield _counter(
            "roxgate_receipts",
            "Delivery receipts matched to a message, by SMPP state (none: no message id)",
            "state", receipts, (),
        )  # fmt: skip
        yield _counter(
            "roxgate_inbound",
            "Inbound SMS by what was done with them (part: one part of a long one)",
            "action", inbound, (),
        )  # fmt: skip
        unmatched = CounterMetricFamily(
            "roxgate_receipts_unmatched",
            "Receipts naming no known message (each redelivery counts again)",
        )
        unmatched.add_metric([], carrier.receipts_unmatched)
        yield unmatched

    def _reporting(self, gateway: Gateway) -> Iterator[Metric]:
        callbacks = gateway.callbacks.counts if gateway.callbacks is not None else Counter()
        yield _counter(
            "roxgate_callback_attempts",
            "Callback POSTs by outcome: ok, retry (failed, tried again later), "
            "failed (failed for good: e-mailed instead)",
            "outcome", {k: callbacks[k] for k in CALLBACK_OUTCOMES}, CALLBACK_OUTCOMES,
        )  # fmt: skip
        deferred = CounterMetricFamily(
            "roxgate_callbacks_deferred",
            "Callbacks given back unposted from a slow host's backlog (posted later)",
        )
        deferred.add_metric([], callbacks["deferred"])
        yield deferred
        mail = gateway.mail.counts if gateway.mail is not None else Counter()
        yield _counter(
            "roxgate_mail",
            "E-mail attempts by outcome: sent, retry (tried again later), failed (given up)",
            "outcome", {k: mail[k] for k in MAIL_OUTCOMES}, MAIL_OUTCOMES,
        )  # fmt: skip


class Metrics:
    """The ``/metrics`` endpoint of one app, with its own registry."""

    def __init__(self, token: str = "") -> None:
        self._token = token.encode()
        self.backlog = Backlog()
        self.collector = GatewayCollector(self.backlog)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        # The standard process_*, python_* families, in this registry too.
        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(standard)

    def _authorized(self, request: Request) -> bool:
        if not self._token:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # compare_digest: the time taken says nothing about how much of it matched.
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("latin-1"), self._token
        )

    async def endpoint(self, request: Request) -> Response:
        if not self._authorized(request):
            return Response(
                "metrics need Authorization: Bearer <ROXGATE_METRICS_TOKEN>\n",
                status_code=401,
                media_type="text/plain",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        gateway: Gateway = request.app.state.gateway
        self.collector.gateway = gateway
        await self.backlog.refresh(gateway)
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE)
