"""`roxgate send`: the installed script against a real gateway (the shared ``gw`` server)."""

from __future__ import annotations

import csv
import os
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from roxgate.accounts import admin
from roxgate.store.schema import messages
from tests.conftest import PASSWORD, ROXGATE, Env, free_port

ACCOUNT = "CI00000093"
USER = "cli@example.com"
LATER = (datetime.now(UTC) + timedelta(days=20)).replace(microsecond=0)
ZONE = ZoneInfo("Australia/Sydney")


@pytest.fixture(scope="module")
def cli_gw(gw: Env) -> Env:
    admin.add_account(gw.engine, ACCOUNT, "CLI send tests", region="AU")
    admin.add_user(gw.engine, ACCOUNT, USER, PASSWORD)
    return gw


def roxgate_send(
    env: Env | None, *args: str, cwd: Path, password: str | None = PASSWORD
) -> subprocess.CompletedProcess[str]:
    variables = {k: v for k, v in os.environ.items() if not k.startswith(("ROXGATE_", "ROX_"))}
    variables.update(ROX_ACCOUNT=ACCOUNT, ROX_USERNAME=USER)
    if env is not None:
        variables["ROX_URL"] = env.server.url
    if password is not None:
        variables["ROX_PASSWORD"] = password
    return subprocess.run(
        [ROXGATE, "send", *args],
        capture_output=True,
        text=True,
        env=variables,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


def stored(env: Env, product: str) -> list[dict[str, object]]:
    with env.engine.connect() as conn:
        rows = conn.execute(
            select(messages).where(messages.c.account_id == ACCOUNT, messages.c.product == product)
        ).mappings()
        return [dict(r) for r in rows]


def test_one_number(cli_gw: Env, tmp_path: Path) -> None:
    result = roxgate_send(
        cli_gw, "0407 555 001", "Hello from the CLI", "--product", "cli-one", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    found = re.search(r"^queued \+61407555001  SMSId (\S+)", result.stdout, re.M)
    assert found, result.stdout
    [row] = stored(cli_gw, "cli-one")
    assert row["id"] == found.group(1) and row["text"] == "Hello from the CLI"
    assert PASSWORD not in result.stdout + result.stderr


def test_options_reach_the_gateway(cli_gw: Env, tmp_path: Path) -> None:
    result = roxgate_send(
        cli_gw,
        "+61407555002",
        "Later",
        "--product",
        "cli-options",
        "--send-later",
        LATER.astimezone(ZONE).isoformat(),
        "--receipt-flag",
        "2",
        "--receipt-url",
        "https://hooks.example.com/r",
        "--reply-type",
        "h",
        "--reply-url",
        "https://hooks.example.com/p",
        "--idempotency-key",
        "cli-options-1",
        "--password",
        "given-on-the-command-line",
        cwd=tmp_path,
        password=None,
    )
    # A wrong password given with --password: refused, and never shown.
    assert result.returncode == 1
    assert "given-on-the-command-line" not in result.stdout + result.stderr
    result = roxgate_send(
        cli_gw,
        "+61407555002",
        "Later",
        "--product",
        "cli-options",
        "--send-later",
        LATER.astimezone(ZONE).isoformat(),
        "--receipt-flag",
        "2",
        "--receipt-url",
        "https://hooks.example.com/r",
        "--reply-type",
        "h",
        "--reply-url",
        "https://hooks.example.com/p",
        "--idempotency-key",
        "cli-options-1",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert f"due {LATER:%d-%b-%Y %H:%M:%S} UTC" in result.stdout
    [row] = stored(cli_gw, "cli-options")
    assert row["due_at"] == int(LATER.timestamp() * 1000)
    assert (row["receipt_flag"], row["receipt_url"]) == (2, "https://hooks.example.com/r")
    assert (row["reply_type"], row["reply_url"]) == ("H", "https://hooks.example.com/p")


def test_csv_of_1200_lines_with_3_bad(cli_gw: Env, tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    bad = {
        101: ("", "Hi there"),  # no DestTn: refused here
        502: ("12", "Hi there"),  # not a phone number: refused by the gateway (2032)
        1001: ("+61407000999", ""),  # no text: refused here
    }
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["DestTn", "DestName", "SMSText"])
        for line in range(2, 1202):  # line 1 is the header
            number, text = bad.get(line, (f"+6142{line:07d}", f"Hello {line}"))
            writer.writerow([number, f"Name {line}", text])
    report = tmp_path / "report.csv"
    result = roxgate_send(
        cli_gw,
        "--csv",
        str(path),
        "--report",
        str(report),
        "--product",
        "cli-csv",
        "--send-later",
        LATER.isoformat(),
        cwd=tmp_path,
    )
    assert result.returncode == 3, result.stderr  # some lines were not queued
    assert "Traceback" not in result.stderr
    out = result.stdout
    assert re.search(r"0000\s+│ queued\s+│\s+1197 │", out), out
    for code in ("2031", "2032", "2033"):
        assert re.search(rf"{code}\s+│ .*│\s+1 │", out), out
    assert "line 101: 2031 column DestTn: empty" in out
    assert "line 502: 12 2032 " in out
    assert "line 1001: +61407000999 2033 " in out

    rows = stored(cli_gw, "cli-csv")
    assert len(rows) == 1197
    assert {r["due_at"] for r in rows} == {int(LATER.timestamp() * 1000)}
    with report.open(newline="", encoding="utf-8") as fh:
        reported = list(csv.DictReader(fh))
    assert len(reported) == 1200
    assert [int(r["line"]) for r in reported] == list(range(2, 1202))
    not_queued = {int(r["line"]): r for r in reported if r["Result"] != "0000"}
    assert sorted(not_queued) == [101, 502, 1001]
    assert not_queued[502]["Result"] == "2032" and not not_queued[502]["SMSId"]
    assert not_queued[101]["Result"] == "2031" and not_queued[1001]["Result"] == "2033"
    by_id = {r["id"]: r for r in rows}
    sample = reported[700]
    assert by_id[sample["SMSId"]]["text"] == f"Hello {sample['line']}"
    assert by_id[sample["SMSId"]]["dest_name"] == f"Name {sample['line']}"


def test_csv_bom_any_case_headers_default_text_and_bad_bytes(cli_gw: Env, tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(
        b"\xef\xbb\xbf smstext ,DESTTN,destemail\r\n"
        b",+61407555011,ann@example.com\r\n"
        b"Own text,+61407555012,\r\n"
        b"Caf\xe9,+61407555013,\r\n"  # Latin-1, not UTF-8
        b"\r\n"
    )
    result = roxgate_send(
        cli_gw, "--csv", str(path), "--text", "Default", "--product", "cli-bom", cwd=tmp_path
    )
    assert result.returncode == 3, result.stderr
    assert "line 4: +61407555013 CSV column SMSText: not valid UTF-8" in result.stdout
    rows = sorted(stored(cli_gw, "cli-bom"), key=lambda r: str(r["dest_tn"]))
    assert [(r["dest_tn"], r["text"]) for r in rows] == [
        ("+61407555011", "Default"),
        ("+61407555012", "Own text"),
    ]
    assert rows[0]["dest_email"] == "ann@example.com"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"DestTn,Message\n+61407555001,Hi\n", "unknown column 'Message'"),
        (b"DestTn,desttn\n+61407555001,+61407555002\n", "DestTn appears twice"),
        (b"SMSText\nHi\n", "no DestTn column"),
        (b"", "empty file"),
    ],
)
def test_bad_csv_header_sends_nothing(
    cli_gw: Env, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    result = roxgate_send(cli_gw, "--csv", str(path), "--product", "cli-bad", cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert stored(cli_gw, "cli-bad") == []


def test_unreachable_gateway(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = roxgate_send(None, "--url", url, "--retries", "1", "+61407555001", "Hi", cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot reach the gateway" in result.stderr and url in result.stderr
    assert "Traceback" not in result.stderr
    assert PASSWORD not in result.stdout + result.stderr


def test_wrong_password(cli_gw: Env, tmp_path: Path) -> None:
    result = roxgate_send(cli_gw, "+61407555001", "Hi", cwd=tmp_path, password="wrong-pw-4567")
    assert result.returncode == 1
    assert "2002" in result.stderr and "check --account, --username and the password" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert "wrong-pw-4567" not in result.stdout + result.stderr


def test_no_password_and_no_terminal(cli_gw: Env, tmp_path: Path) -> None:
    result = roxgate_send(cli_gw, "+61407555001", "Hi", cwd=tmp_path, password=None)
    assert result.returncode == 2
    assert "ROX_PASSWORD" in result.stderr and "Traceback" not in result.stderr
