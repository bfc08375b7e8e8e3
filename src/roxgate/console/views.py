"""The console's pages: overview, messages, inbound, callbacks, mail, accounts, reports.

Each page reads through ``gateway.run`` (a thread: some of these queries scan)
and renders a template; the only writes are suspending and resuming accounts.
"""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from roxgate.accounts import admin
from roxgate.console import queries
from roxgate.console.access import action, gateway_of, page
from roxgate.console.sessions import Session
from roxgate.console.web import problem, render
from roxgate.store import history, usage
from roxgate.store.ids import now_ms

if TYPE_CHECKING:
    from roxgate.api.gateway import Gateway

log = logging.getLogger("roxgate.console")
ACCOUNT_USAGE_DAYS = 7
REPORT_DEFAULT_DAYS = 7


def carrier_state(gateway: Gateway) -> dict[str, Any] | None:
    """The carrier link of this process, when it sends (role ``all``)."""
    carrier = gateway.carrier
    if carrier is None:
        return None
    tps = carrier.config.tps
    return {
        "url": carrier.config.url,
        "bound": carrier.bound,
        "state": str(carrier.submitter.state),
        "tps": tps,
        "tps_share": tps / max(1, gateway.live_workers) if tps else 0,
        "window": carrier.config.window,
        "window_in_use": carrier.submitter.window_in_use,
    }


@page
async def overview(request: Request, _session: Session) -> Response:
    gateway = gateway_of(request)
    data = await gateway.run(queries.overview, gateway.engine)
    return render(
        request,
        "overview.html",
        data=data,
        carrier=carrier_state(gateway),
        role=gateway.role,
    )


@page
async def messages(request: Request, _session: Session) -> Response:
    gateway = gateway_of(request)
    search = queries.MessageSearch.from_query(request.query_params)
    found = None
    if search.given:
        found = await gateway.run(queries.search_messages, gateway.engine, search)
    return render(
        request,
        "messages.html",
        search=search,
        found=found,
        statuses=queries.MESSAGE_STATUSES,
        day_choices=queries.SEARCH_DAYS,
        limit=queries.SEARCH_LIMIT,
    )


@page
async def message(request: Request, _session: Session) -> Response:
    gateway = gateway_of(request)
    sms_id = request.path_params["sms_id"][:36]
    found = await gateway.run(history.message_history, gateway.engine, sms_id)
    if found is None:
        return problem(request, 404, "No such message", f"There is no message {sms_id}.")
    row, steps = found
    extras = await gateway.run(queries.message_extras, gateway.engine, row["id"], row["request_id"])
    return render(request, "message.html", m=row, steps=steps, **extras)


@page
async def inbound(request: Request, _session: Session) -> Response:
    gateway = gateway_of(request)
    unmatched = request.query_params.get("show") == "unmatched"
    rows = await gateway.run(history.recent_inbound, gateway.engine, queries.LIST_LIMIT, unmatched)
    receipts = await gateway.run(queries.unmatched_receipts_recent, gateway.engine)
    return render(request, "inbound.html", rows=rows, unmatched=unmatched, receipts=receipts)


@page
async def callbacks(request: Request, _session: Session) -> Response:
    gateway = gateway_of(request)
    endpoints = await gateway.run(queries.failing_endpoints, gateway.engine)
    retrying = await gateway.run(queries.retry_queue, gateway.engine)
    recent = await gateway.run(history.recent_callbacks, gateway.engine, queries.LIST_LIMIT)
    return render(request, "callbacks.html", endpoints=endpoints, retrying=retrying, recent=recent)


MAIL_STATUSES = ("pending", "sending", "sent", "failed")


@page
async def mail(request: Request, _session: Session) -> Response:
    gateway = gateway_of(request)
    status = request.query_params.get("status", "")
    status = status if status in MAIL_STATUSES else ""
    rows = await gateway.run(
        history.recent_mail, gateway.engine, queries.LIST_LIMIT, status or None
    )
    return render(request, "mail.html", rows=rows, status=status, statuses=MAIL_STATUSES)


def _accounts_page(engine: Any, since_ms: int) -> dict[str, Any]:
    return {
        "accounts": admin.list_accounts(engine),
        "usage": {r.key: r for r in usage.usage_report(engine, "account", since_ms=since_ms)},
        "lists": queries.number_list_counts(engine),
        "users": queries.user_counts(engine),
    }


@page
async def accounts(request: Request, _session: Session) -> Response:
    gateway = gateway_of(request)
    since = now_ms() - ACCOUNT_USAGE_DAYS * queries.DAY_MS
    data = await gateway.run(_accounts_page, gateway.engine, since)
    return render(request, "accounts.html", days=ACCOUNT_USAGE_DAYS, **data)


def _account_page(engine: Any, account_id: str, since_ms: int) -> dict[str, Any] | None:
    found = [a for a in admin.list_accounts(engine) if a["id"] == account_id]
    if not found:
        return None
    rows = usage.usage_report(engine, "product", since_ms=since_ms, account_id=account_id)
    return {
        "account": found[0],
        "users": admin.list_users(engine, account_id),
        "numbers": queries.account_numbers(engine, account_id),
        "lists": queries.number_list_counts(engine).get(account_id, {}),
        "usage": rows,
        "usage_total": usage.total(rows),
    }


@page
async def account(request: Request, _session: Session) -> Response:
    gateway = gateway_of(request)
    account_id = request.path_params["account_id"][:10]
    since = now_ms() - ACCOUNT_USAGE_DAYS * queries.DAY_MS
    data = await gateway.run(_account_page, gateway.engine, account_id, since)
    if data is None:
        return problem(request, 404, "No such account", f"There is no account {account_id}.")
    return render(request, "account.html", days=ACCOUNT_USAGE_DAYS, now=now_ms(), **data)


async def _set_status(request: Request, session: Session, status: str) -> Response:
    gateway = gateway_of(request)
    account_id = request.path_params["account_id"][:10]
    try:
        await gateway.run(
            functools.partial(admin.update_account, status=status), gateway.engine, account_id
        )
    except admin.AdminError as exc:
        return problem(request, 404, "Not changed", str(exc))
    log.info("console: operator %r set account %s %s", session.username, account_id, status)
    return RedirectResponse(f"/console/accounts/{account_id}", 303)


@action
async def suspend(request: Request, session: Session, _form: FormData) -> Response:
    return await _set_status(request, session, "suspended")


@action
async def resume(request: Request, session: Session, _form: FormData) -> Response:
    return await _set_status(request, session, "active")


# --- reports ------------------------------------------------------------------------


class ReportForm:
    """The Reports form, read from the query string; ``error`` says what was wrong."""

    def __init__(self, params: Any) -> None:
        today = datetime.now(UTC).date()
        by = str(params.get("by", "account"))
        self.by: usage.Dimension = by if by in usage.DIMENSIONS else "account"  # type: ignore[assignment]
        default_from = (today - timedelta(days=REPORT_DEFAULT_DAYS - 1)).isoformat()
        self.since = str(params.get("from") or default_from).strip()[:40]
        self.until = str(params.get("to") or "").strip()[:40]
        self.account = str(params.get("account") or "").strip().upper()[:10]
        self.error = ""
        self.since_ms: int | None = None
        self.until_ms: int | None = None
        try:
            self.since_ms = usage.parse_time_bound(self.since)
            if self.until:
                self.until_ms = usage.parse_time_bound(self.until, end=True)
        except ValueError as exc:
            self.error = str(exc)
        if self.account and not admin.ACCOUNT_ID_RE.match(self.account):
            self.error = "account: CI followed by 8 digits, e.g. CI00000001"

    def query(self) -> dict[str, str]:
        return {"by": self.by, "from": self.since, "to": self.until, "account": self.account}

    def rows(self, engine: Any) -> list[usage.UsageRow]:
        return usage.usage_report(
            engine, self.by, self.since_ms, self.until_ms, self.account or None
        )

    def filename(self) -> str:
        parts = ["roxgate-usage", self.by, _slug(self.since), _slug(self.until or "now")]
        if self.account:
            parts.append(self.account)
        return "-".join(parts) + ".csv"


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text)[:25]


@page
async def reports(request: Request, _session: Session) -> Response:
    gateway = gateway_of(request)
    form = ReportForm(request.query_params)
    rows: list[usage.UsageRow] = []
    if not form.error:
        rows = await gateway.run(form.rows, gateway.engine)
    return render(
        request,
        "reports.html",
        form=form,
        rows=rows,
        total=usage.total(rows),
        dimensions=usage.DIMENSIONS,
        counters=usage.COUNTERS,
        status_code=400 if form.error else 200,
    )


@page
async def report_csv(request: Request, _session: Session) -> Response:
    gateway = gateway_of(request)
    form = ReportForm(request.query_params)
    if form.error:
        return problem(request, 400, "Bad report", form.error)
    rows = await gateway.run(form.rows, gateway.engine)
    return Response(
        usage.to_csv(rows, form.by),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{form.filename()}"'},
    )
