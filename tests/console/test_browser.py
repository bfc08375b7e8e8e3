"""The console in a real browser: headless Chromium (Debian's), driven by Playwright.

Playwright's own browser downloads are never used (``playwright install`` is
not run): the test launches ``/usr/bin/chromium``, which ``make test``
installs when it is missing. Without it this test fails, saying so.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from roxgate.accounts import admin
from roxgate.store.schema import message_parts
from tests.conftest import PASSWORD, Server, request_body
from tests.console.conftest import Console, wait_final

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OPERATOR, OPERATOR_PASSWORD = "browser-ops", "browser operator pw"
ACCOUNT = "CI00000081"
NUMBERS = ["+61407555101", "+61407555102", "+61407555103"]


def chromium_path() -> str:
    """Debian's Chromium (or ROXGATE_TEST_CHROMIUM); a clear failure when there is none."""
    candidates = (os.environ.get("ROXGATE_TEST_CHROMIUM"), shutil.which("chromium"),
                  "/usr/bin/chromium")  # fmt: skip
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail(
        "Chromium is not installed, so the console's browser test cannot run. Install it "
        "with `apt-get install chromium chromium-driver` (`make test` does this).",
        pytrace=False,
    )


@pytest.fixture(scope="module")
def gateway(engine_factory: Any) -> Iterator[tuple[Server, Any]]:
    path, engine = engine_factory("console_browser")
    admin.add_account(engine, ACCOUNT, "Browser clinic")
    admin.add_user(engine, ACCOUNT, "user@example.com", PASSWORD)
    server = Server(path, env_extra={"ROXGATE_SIM_RECEIPT_DELAY": "0.2"})
    # The operator is made as an operator makes one: with the command.
    made = Console(server, engine, path).cli(
        "operator", "add", OPERATOR, "--password-stdin", stdin=OPERATOR_PASSWORD + "\n"
    )
    assert made.returncode == 0, made.stderr
    server.start()
    yield server, engine
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS, timeout=60_000
        )
        yield chromium
        chromium.close()


def test_console_in_a_browser(gateway: tuple[Server, Any], browser: Any) -> None:
    server, engine = gateway
    body = request_body(
        [{"DestTn": n, "SMSText": f"Browser test {i}"} for i, n in enumerate(NUMBERS)],
        account=ACCOUNT,
    )
    body["Product"] = "browser-test"
    answer = httpx.post(server.url + "/smsapi/send", json=body, timeout=30).json()
    assert answer["Result"] == "0000"
    sms_ids = [answer["Messages"][str(i + 1)]["SMSId"] for i in range(len(NUMBERS))]
    assert set(wait_final(engine, sms_ids).values()) == {"delivered"}
    with engine.connect() as conn:
        carrier_id = conn.execute(
            select(message_parts.c.carrier_id).where(message_parts.c.message_id == sms_ids[0])
        ).scalar_one()

    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems: list[str] = []  # CSP violations and script errors show up here
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    try:
        # Not signed in: the console sends the browser to its sign-in form.
        page.goto(server.url + "/console/")
        assert "/console/login" in page.url
        page.fill("input[name=username]", OPERATOR)
        page.fill("input[name=password]", OPERATOR_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(server.url + "/console/")

        # The overview: counts from the traffic table, charts drawn as SVG.
        delivered = page.inner_text("#traffic tr[data-kind=delivered] td.hour")
        accepted = page.inner_text("#traffic tr[data-kind=accepted] td.hour")
        assert int(delivered) >= len(NUMBERS) and int(accepted) >= len(NUMBERS)
        assert page.locator("figure.chart svg").count() == 2
        assert page.locator("figure.chart svg polyline.s-delivered").count() == 2
        assert page.inner_text("#carrier .state") == "bound"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "console-overview.png"), full_page=True)

        # Search by the number as a person types it, open the message, read its history.
        page.click("nav >> text=Messages")
        page.fill("input[name=number]", "0407 555 101")
        page.click("form.search button[type=submit]")
        page.click(f"#results a[href='/console/messages/{sms_ids[0]}']")
        page.wait_for_url(f"**/console/messages/{sms_ids[0]}")
        steps = page.locator("#history td.step").all_inner_texts()
        assert steps[0] == "queued"
        assert {"submitted", "receipt DELIVRD", "delivered"} <= set(steps)
        assert carrier_id in page.inner_text("#history")
        assert page.inner_text("#parts .carrier-id") == carrier_id

        # Reports: the CSV download has the rows of this account's messages.
        page.click("nav >> text=Reports")
        page.select_option("select[name=by]", "product")
        page.fill("input[name=account]", ACCOUNT)
        page.click("form.search button[type=submit]")
        assert "browser-test" in page.inner_text("#report")
        with page.expect_download() as download:
            page.click("#csv")
        saved = Path(download.value.path())
        rows = list(csv.reader(io.StringIO(saved.read_text())))
        assert rows == [
            ["product", "messages", "parts", "delivered", "failed", "expired", "pending"],
            ["browser-test", "3", "3", "3", "0", "0", "0"],
        ]
        assert download.value.suggested_filename.endswith(".csv")
    finally:
        context.close()
    assert not problems, problems
