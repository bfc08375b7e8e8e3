"""`roxgate report` against what a real server was sent: messages from two
accounts with different Products and destination countries go over SMPP to the
simulator, some fail, one expires, some recipients are rejected; once all are
final the report, in every format, adds up to exactly that."""

from __future__ import annotations

import csv
import io
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from roxgate.accounts import admin
from roxgate.store.schema import messages
from tests.conftest import PASSWORD, ROXGATE, Env, Server, request_body, seed_accounts

A, B = "CI00000001", "CI00000006"  # B may send to AU and NZ only
COUNTERS = ["messages", "parts", "delivered", "failed", "expired", "pending"]
LONG_GSM = "a" * 200  # 2 parts of 153 septets
LONG_UCS2 = "Ж" * 100  # 2 parts of 67 characters


@dataclass
class Sent:
    server: Server
    sms_ids: list[str]
    started: datetime  # before the first request
    finished: datetime  # after every message was final


def post(env: Env, body: dict[str, Any], queued: int, of: int, product: str | None) -> list[str]:
    if product is None:
        del body["Product"]
    else:
        body["Product"] = product
    data = env.post(body)
    assert data["Result"] == "0000", data
    ids = [data["Messages"][str(i)]["SMSId"] for i in range(1, of + 1)]
    stored = [i for i in ids if i is not None]
    assert len(stored) == queued, data
    return stored


def wait_final(env: Env, sms_ids: list[str], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        with env.engine.connect() as conn:
            rows = conn.execute(
                select(messages.c.id, messages.c.status).where(messages.c.id.in_(sms_ids))
            ).all()
        states = dict(rows)
        final = all(s in ("delivered", "failed", "expired") for s in states.values())
        if (final and len(states) == len(sms_ids)) or time.monotonic() > deadline:
            return states
        time.sleep(0.2)


@pytest.fixture(scope="module")
def sent(engine_factory: Any) -> Iterator[Sent]:
    path, engine = engine_factory("report_cli")
    seed_accounts(engine)  # A blocks +61407555999 and has +61407555998 opted out
    admin.add_account(engine, B, "Second", region="AU", allowed_countries="AU,NZ")
    admin.add_user(engine, B, "user@example.com", PASSWORD)
    server = Server(
        path,
        env_extra={
            "ROXGATE_SIM_RECEIPT_DELAY": "0.2",
            # 9995 gets no receipt: expired after validity + grace.
            "ROXGATE_VALIDITY_SECONDS": "3",
            "ROXGATE_RECEIPT_GRACE_SECONDS": "1",
        },
    )
    started = datetime.now(UTC)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            env = Env(server, engine, client)
            ids = post(
                env,
                request_body(
                    [
                        {"DestTn": "+61407555001", "SMSText": "Hi"},  # AU delivered
                        {"DestTn": "+61407559992", "SMSText": "Hi"},  # AU failed: UNDELIV
                        {"DestTn": "+64211239990", "SMSText": "Hi"},  # NZ failed: submit refused
                        {"DestTn": "+61407559995", "SMSText": "Hi"},  # AU expired: no receipt
                        {"DestTn": "+447400123001", "SMSText": "Hi"},  # GB delivered
                        {"DestTn": "bogus", "SMSText": "Hi"},  # rejected: not a number
                        {"DestTn": "+61407555999", "SMSText": "Hi"},  # rejected: blocked
                    ],
                    account=A,
                ),
                queued=5,
                of=7,
                product="alerts",
            )
            ids += post(
                env,
                request_body(
                    [
                        {"DestTn": "+64211230001", "SMSText": LONG_GSM},  # NZ delivered, 2 parts
                        {"DestTn": "+61407555998", "SMSText": "Hi"},  # rejected: opted out
                    ],
                    account=A,
                ),
                queued=1,
                of=2,
                product="billing",
            )
            ids += post(
                env,
                request_body(
                    [
                        {"DestTn": "+61407555011", "SMSText": "Hi"},  # AU delivered
                        {"DestTn": "+61407559994", "SMSText": "Hi"},  # AU failed: REJECTD
                        {"DestTn": "+447400123002", "SMSText": "Hi"},  # rejected: country
                    ],
                    account=B,
                ),
                queued=2,
                of=3,
                product="alerts",
            )
            no_product = request_body(
                [{"DestTn": "+61407555012", "SMSText": LONG_UCS2}],  # AU delivered, 2 parts
                account=B,
            )
            ids += post(env, no_product, queued=1, of=1, product=None)

            states = wait_final(env, ids, timeout=60)
            assert sorted(states.values()) == sorted(
                ["delivered"] * 5 + ["failed"] * 3 + ["expired"]
            ), states
        finished = datetime.now(UTC)
        yield Sent(server, ids, started, finished)
    finally:
        server.stop()


def report(sent: Sent, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [ROXGATE, "report", *args],
        capture_output=True,
        text=True,
        env=sent.server.env(),
        timeout=60,
        check=False,
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def from_table(out: str, by: str) -> dict[str, list[int]]:
    lines = out.strip().splitlines()
    assert lines[0].split() == [by, *COUNTERS]
    return {key: [int(n) for n in counts] for key, *counts in (ln.split() for ln in lines[1:])}


def from_csv(out: str, by: str) -> dict[str, list[int]]:
    header, *lines = csv.reader(io.StringIO(out))
    assert header == [by, *COUNTERS]
    return {key: [int(n) for n in counts] for key, *counts in lines}


def from_json(out: str, by: str) -> dict[str, list[int]]:
    doc = orjson.loads(out)
    assert doc["by"] == by
    rows = {r[by]: [r[c] for c in COUNTERS] for r in doc["rows"]}
    rows["TOTAL"] = [doc["total"][c] for c in COUNTERS]
    return rows


def each_format(sent: Sent, by: str, *args: str) -> dict[str, list[int]]:
    """The report in all three formats, checked to agree; with its TOTAL row."""
    table = from_table(report(sent, "--by", by, *args).stdout, by)
    csv_rows = from_csv(report(sent, "--by", by, "--format", "csv", *args).stdout, by)
    json_rows = from_json(report(sent, "--by", by, "--format", "json", *args).stdout, by)
    assert "TOTAL" not in csv_rows  # one line per key, fit for a spreadsheet
    assert csv_rows == {k: v for k, v in table.items() if k != "TOTAL"}
    assert json_rows == table
    return table


# messages, parts, delivered, failed, expired, pending: 9 messages were stored,
# the 4 rejected recipients were not.
TOTAL = [9, 11, 5, 3, 1, 0]


def test_by_account(sent: Sent) -> None:
    assert each_format(sent, "account") == {
        A: [6, 7, 3, 2, 1, 0],
        B: [3, 4, 2, 1, 0, 0],
        "TOTAL": TOTAL,
    }


def test_by_product(sent: Sent) -> None:
    assert each_format(sent, "product") == {
        "(none)": [1, 2, 1, 0, 0, 0],
        "alerts": [7, 7, 3, 3, 1, 0],
        "billing": [1, 2, 1, 0, 0, 0],
        "TOTAL": TOTAL,
    }


def test_by_country(sent: Sent) -> None:
    assert each_format(sent, "country") == {
        "AU": [6, 7, 3, 2, 1, 0],
        "GB": [1, 1, 1, 0, 0, 0],
        "NZ": [2, 3, 1, 1, 0, 0],
        "TOTAL": TOTAL,
    }


def test_by_status(sent: Sent) -> None:
    assert each_format(sent, "status") == {
        "delivered": [5, 7, 5, 0, 0, 0],
        "expired": [1, 1, 0, 0, 1, 0],
        "failed": [3, 3, 0, 3, 0, 0],
        "TOTAL": TOTAL,
    }


def test_by_day_with_a_range_and_an_account(sent: Sent) -> None:
    days = {sent.started.strftime("%Y-%m-%d"), sent.finished.strftime("%Y-%m-%d")}
    rows = each_format(sent, "day")
    assert rows.pop("TOTAL") == TOTAL and set(rows) <= days
    # The UTC days of the run, given as bare dates, include all of it.
    whole = ("--from", min(days), "--to", max(days))
    assert each_format(sent, "day", *whole)["TOTAL"] == TOTAL
    assert each_format(sent, "status", *whole, "--account", B) == {
        "delivered": [2, 3, 2, 0, 0, 0],
        "failed": [1, 1, 0, 1, 0, 0],
        "TOTAL": [3, 4, 2, 1, 0, 0],
    }
    # A naive ISO time is UTC; --to as a time is exclusive.
    naive = sent.started.replace(tzinfo=None).isoformat(timespec="milliseconds")
    assert each_format(sent, "account", "--from", naive)["TOTAL"] == TOTAL
    assert each_format(sent, "account", "--to", naive) == {"TOTAL": [0] * 6}
    after = sent.finished.isoformat()
    assert each_format(sent, "account", "--from", after) == {"TOTAL": [0] * 6}


def test_bad_options_are_clear_errors(sent: Sent) -> None:
    bad = report(sent, "--by", "account", "--from", "last tuesday", ok=False)
    assert bad.returncode == 2 and "--from" in bad.stderr and "not a date" in bad.stderr
    bad = report(sent, "--by", "account", "--to", "2024-02-30", ok=False)
    assert bad.returncode == 2 and "--to" in bad.stderr
    bad = report(sent, "--by", "day", "--from", "2024-03-02", "--to", "2024-03-01", ok=False)
    assert bad.returncode == 2 and "must be after --from" in bad.stderr
    bad = report(sent, "--by", "user", ok=False)
    assert bad.returncode == 2 and "--by" in bad.stderr
    assert report(sent, ok=False).returncode == 2  # --by is required
