"""The console over real HTTP: sign-in, sessions, CSRF, every page, suspend/resume."""

from __future__ import annotations

import hashlib
import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select, update

from roxgate.accounts import admin
from roxgate.console.operators import add_operator
from roxgate.store.schema import accounts, console_sessions, message_parts, operators
from tests.conftest import PASSWORD, Server, request_body
from tests.console.conftest import (
    OPERATOR,
    OPERATOR_PASSWORD,
    Console,
    form_token,
    sign_in,
    signed_in,
    start_console,
    wait_final,
)

PAGES = [
    "/console/",
    "/console/messages",
    "/console/messages?number=0407555001&days=7",
    "/console/inbound",
    "/console/inbound?show=unmatched",
    "/console/callbacks",
    "/console/mail",
    "/console/mail?status=pending",
    "/console/accounts",
    "/console/accounts/CI00000001",
    "/console/reports",
    "/console/reports?by=day&account=CI00000001",
]


def send(
    console: Console, recipients: list[dict[str, Any]], product: str = "tests", **kwargs: Any
) -> dict[str, Any]:
    body = request_body(recipients, **kwargs)
    body["Product"] = product
    with console.client() as client:
        answer = client.post("/smsapi/send", json=body)
    assert answer.status_code == 200
    return answer.json()  # type: ignore[no-any-return]


def account_status(console: Console, account_id: str) -> str:
    with console.engine.connect() as conn:
        return str(
            conn.execute(select(accounts.c.status).where(accounts.c.id == account_id)).scalar_one()
        )


def session_rows(console: Console) -> list[str]:
    with console.engine.connect() as conn:
        return list(conn.execute(select(console_sessions.c.id)).scalars())


def operator_row(console: Console, username: str) -> Any:
    with console.engine.connect() as conn:
        return conn.execute(select(operators).where(operators.c.username == username)).one()


# --- signing in -------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_a_session(console: Console, path: str) -> None:
    with console.client() as client:
        answer = client.get(path)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/console/login?next={quote(path, safe='/')}"


def test_sign_in_sets_a_strict_cookie_and_stores_only_its_hash(console: Console) -> None:
    with console.client() as client:
        answer = sign_in(client)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/"
        cookie = next(
            c for c in answer.headers.get_list("set-cookie") if c.startswith("roxgate_console=")
        )
        token = cookie.split(";")[0].split("=", 1)[1]
        attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/console"} <= attributes
        assert "secure" not in attributes  # plain http, console_cookie_secure=auto
        assert len(token) >= 43  # 32 random bytes
        ids = session_rows(console)
        assert hashlib.sha256(token.encode()).hexdigest() in ids
        assert token not in ids
        assert client.get("/console/").status_code == 200
    assert operator_row(console, OPERATOR).last_login_at is not None


def test_sign_in_goes_back_to_the_page_asked_for_but_never_off_site(console: Console) -> None:
    with console.client() as client:
        form = client.get("/console/login?next=/console/mail")
        token = form_token(form.text)
        answer = client.post(
            "/console/login",
            data={"csrf": token, "username": OPERATOR, "password": OPERATOR_PASSWORD,
                  "next": "/console/mail"},
        )  # fmt: skip
        assert answer.headers["location"] == "/console/mail"
    for target in ("https://evil.example/", "//evil.example/console/", "/console/\\evil"):
        with console.client() as client:
            form = client.get("/console/login")
            answer = client.post(
                "/console/login",
                data={"csrf": form_token(form.text), "username": OPERATOR,
                      "password": OPERATOR_PASSWORD, "next": target},
            )  # fmt: skip
            assert answer.headers["location"] == "/console/"


def test_failed_sign_in_does_not_say_whether_the_operator_exists(console: Console) -> None:
    before = operator_row(console, OPERATOR).failed_logins
    with console.client() as client:
        wrong_password = sign_in(client, OPERATOR, "not the password")
    with console.client() as client:
        no_such_operator = sign_in(client, "nobody-here", "not the password")
    for answer in (wrong_password, no_such_operator):
        assert answer.status_code == 401
        assert "roxgate_console=" not in answer.headers.get("set-cookie", "")
        assert "Wrong operator name or password" in answer.text
    # Identical apart from the form's fresh token.
    assert wrong_password.text.replace(form_token(wrong_password.text), "") == (
        no_such_operator.text.replace(form_token(no_such_operator.text), "")
    )
    assert operator_row(console, OPERATOR).failed_logins == before + 1
    with console.client() as client:  # a success clears the count
        assert sign_in(client).status_code == 303
    assert operator_row(console, OPERATOR).failed_logins == 0


def test_five_failures_lock_the_operator_until_enabled(console: Console) -> None:
    password = "locky password 1"
    added = console.cli("operator", "add", "Locky", "--password-stdin", stdin=password + "\n")
    assert added.returncode == 0, added.stderr
    for _ in range(5):
        with console.client() as client:
            assert sign_in(client, "locky", "wrong password").status_code == 401
    assert operator_row(console, "locky").locked_until > time.time() * 1000 + 14 * 60_000
    with console.client() as client:
        locked = sign_in(client, "locky", password)  # the right password, while locked
        assert locked.status_code == 401
        assert "Wrong operator name or password" in locked.text
        assert "roxgate_console=" not in locked.headers.get("set-cookie", "")
    listed = console.cli("operator", "list")
    assert "locky" in listed.stdout and "yes" in listed.stdout
    assert console.cli("operator", "enable", "locky").returncode == 0  # also unlocks
    with console.client() as client:
        assert sign_in(client, "locky", password).status_code == 303


def test_sign_in_form_is_protected_against_forgery(console: Console) -> None:
    with console.client() as client:
        form = client.get("/console/login")
        token = form_token(form.text)
        good = {"username": OPERATOR, "password": OPERATOR_PASSWORD}
        # A token that is not the cookie's (a forged form has no way to know it).
        assert client.post("/console/login", data={**good, "csrf": "x" * 43}).status_code == 403
        assert client.post("/console/login", data=good).status_code == 403
        cross_site = client.post(
            "/console/login",
            data={**good, "csrf": token},
            headers={"Origin": "https://evil.example"},
        )
        assert cross_site.status_code == 403
    with console.client() as client:  # no cookie at all: a page elsewhere posting to us
        client.cookies.clear()
        answer = client.post("/console/login", data={**good, "csrf": token})
        assert answer.status_code == 403
        assert "roxgate_console=" not in answer.headers.get("set-cookie", "")


def test_disabled_operator_is_signed_out_and_cannot_sign_in(console: Console) -> None:
    password = "disabled password 1"
    assert console.cli("operator", "add", "gone", "--password", password).returncode == 0
    with console.client() as client:
        assert sign_in(client, "gone", password).status_code == 303
        assert client.get("/console/").status_code == 200
        assert console.cli("operator", "disable", "gone").returncode == 0
        assert client.get("/console/").status_code == 303
    with console.client() as client:
        refused = sign_in(client, "gone", password)
        assert refused.status_code == 401 and "disabled" in refused.text


# --- pages ------------------------------------------------------------------------------


def test_every_page_renders_with_security_headers(console: Console) -> None:
    data = send(console, [{"DestTn": "0407555001", "SMSText": "Page test"}])
    wait_final(console.engine, [data["Messages"]["1"]["SMSId"]])
    with signed_in(console) as client:
        for path in [*PAGES, f"/console/messages/{data['Messages']['1']['SMSId']}"]:
            answer = client.get(path)
            assert answer.status_code == 200, (path, answer.text[:500])
            assert answer.headers["content-type"].startswith("text/html")
            assert answer.headers["x-frame-options"] == "DENY"
            assert answer.headers["cache-control"] == "no-store"
            csp = answer.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
            # What the CSP would block must not be in the page.
            assert "<script" not in answer.text and " style=" not in answer.text
        css = client.get("/console/static/console.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert (
            client.get("/console/messages/00000000-0000-0000-0000-000000000000").status_code == 404
        )
        assert client.get("/console/accounts/CI99999999").status_code == 404


def test_search_finds_messages_and_shows_their_history(console: Console) -> None:
    data = send(
        console,
        [{"DestTn": "+61407555123", "SMSText": "<script>alert(1)</script>"}],
        product="search-test",
    )
    sms_id = data["Messages"]["1"]["SMSId"]
    wait_final(console.engine, [sms_id])
    with console.engine.connect() as conn:
        carrier_id = conn.execute(
            select(message_parts.c.carrier_id).where(message_parts.c.message_id == sms_id)
        ).scalar_one()
    with signed_in(console) as client:
        for query in (
            {"number": "0407 555 123"},
            {"number": "+61407555123"},
            {"sms_id": sms_id},
            {"request_id": data["Messages"]["RequestId"]},
            {"product": "search-test", "status": "delivered", "account": "CI00000001"},
        ):
            found = client.get("/console/messages", params=query)
            assert found.status_code == 200
            assert f'href="/console/messages/{sms_id}"' in found.text, query
        assert "at most 200" in found.text  # the page says searches are bounded
        miss = client.get(
            "/console/messages", params={"number": "+61407555123", "status": "failed"}
        )
        assert sms_id not in miss.text
        page = client.get(f"/console/messages/{sms_id}").text
        for step in ("queued", "submitted", "receipt DELIVRD", "delivered", carrier_id):
            assert step in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # escaped, not run


def test_report_csv_download(console: Console) -> None:
    data = send(
        console,
        [{"DestTn": f"+6140755520{i}", "SMSText": "Report"} for i in range(3)],
        product="csv-test",
    )
    wait_final(console.engine, [m["SMSId"] for k, m in data["Messages"].items() if k.isdigit()])
    with signed_in(console) as client:
        params = {"by": "product", "account": "CI00000001"}
        page = client.get("/console/reports", params=params)
        assert page.status_code == 200 and "csv-test" in page.text
        csv = client.get("/console/reports.csv", params=params)
        assert csv.status_code == 200
        assert csv.headers["content-type"].startswith("text/csv")
        assert csv.headers["content-disposition"].startswith("attachment; filename=")
        lines = csv.text.splitlines()
        assert lines[0] == "product,messages,parts,delivered,failed,expired,pending"
        assert "csv-test,3,3,3,0,0,0" in lines
        bad = client.get("/console/reports.csv", params={"by": "product", "from": "yesterday"})
        assert bad.status_code == 400


# --- forms and CSRF ---------------------------------------------------------------------


def test_wrong_csrf_token_is_refused_and_changes_nothing(console: Console) -> None:
    admin.add_account(console.engine, "CI00000071", "Forgery target")
    with signed_in(console) as client:
        token = form_token(client.get("/console/accounts/CI00000071").text)
        path = "/console/accounts/CI00000071/suspend"
        wrong = token[:-1] + ("B" if token.endswith("A") else "A")  # never the token itself
        assert client.post(path, data={"csrf": wrong}).status_code == 403
        assert client.post(path, data={}).status_code == 403
        assert client.post(path, content=b"{}", headers={"Content-Type": "application/json"}
                           ).status_code == 400  # fmt: skip
        cross_site = client.post(
            path, data={"csrf": token}, headers={"Origin": "http://evil.example"}
        )
        assert cross_site.status_code == 403
        other = client.post(path, data={"csrf": token}, headers={"Sec-Fetch-Site": "cross-site"})
        assert other.status_code == 403
        assert account_status(console, "CI00000071") == "active"
    with console.client() as stranger:  # no session: to the sign-in page, nothing done
        answer = stranger.post(path, data={"csrf": token})
        assert answer.status_code == 303 and answer.headers["location"] == "/console/login"
    assert account_status(console, "CI00000071") == "active"


def test_suspend_and_resume_from_the_accounts_page(console: Console) -> None:
    admin.add_account(console.engine, "CI00000072", "Suspend me")
    admin.add_user(console.engine, "CI00000072", "user@example.com", PASSWORD)
    hello = [{"DestTn": "+61407555001", "SMSText": "Hi"}]
    assert send(console, hello, account="CI00000072")["Result"] == "0000"
    with signed_in(console) as client:
        token = form_token(client.get("/console/accounts").text)
        same_site = {"Origin": console.server.url}  # what a browser sends with the form
        answer = client.post(
            "/console/accounts/CI00000072/suspend", data={"csrf": token}, headers=same_site
        )
        assert answer.status_code == 303
        assert account_status(console, "CI00000072") == "suspended"
        # SPEC.md §2: a suspended account's requests get 2004.
        assert send(console, hello, account="CI00000072")["Result"] == "2004"
        assert "Resume" in client.get("/console/accounts/CI00000072").text
        answer = client.post("/console/accounts/CI00000072/resume", data={"csrf": token})
        assert answer.status_code == 303
    assert account_status(console, "CI00000072") == "active"
    assert send(console, hello, account="CI00000072")["Result"] == "0000"


# --- ending sessions --------------------------------------------------------------------


def test_logout_ends_the_session(console: Console) -> None:
    with signed_in(console) as client:
        token = form_token(client.get("/console/").text)
        cookie = client.cookies.get("roxgate_console")
        assert cookie is not None
        assert client.post("/console/logout", data={"csrf": "wrong"}).status_code == 403
        assert client.get("/console/").status_code == 200  # still signed in
        answer = client.post("/console/logout", data={"csrf": token})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/login?bye=1"
        assert 'roxgate_console=""' in answer.headers["set-cookie"]
    assert hashlib.sha256(cookie.encode()).hexdigest() not in session_rows(console)
    with console.client() as client:  # the old cookie is worth nothing now
        client.cookies.set("roxgate_console", cookie, path="/console")
        assert client.get("/console/").status_code == 303


def test_absolute_expiry_ends_the_session(console: Console) -> None:
    with signed_in(console) as client:
        cookie = client.cookies.get("roxgate_console")
        assert cookie is not None
        session_id = hashlib.sha256(cookie.encode()).hexdigest()
        with console.engine.begin() as conn:
            conn.execute(
                update(console_sessions)
                .where(console_sessions.c.id == session_id)
                .values(expires_at=int(time.time() * 1000) - 1)
            )
        assert client.get("/console/").status_code == 303
    assert session_id not in session_rows(console)  # deleted when found expired


@pytest.fixture(scope="module")
def short_idle(engine_factory: Any) -> Any:
    env = start_console(engine_factory, "console_idle", ROXGATE_CONSOLE_IDLE_MINUTES="0.1")
    yield env
    env.server.stop()


def test_idle_session_expires_and_activity_keeps_it(short_idle: Console) -> None:
    """Idle timeout 6 s: requests 3 s apart keep the session past 6 s; 8 s idle ends it."""
    with signed_in(short_idle) as client:
        for _ in range(3):
            time.sleep(3)
            assert client.get("/console/").status_code == 200
        time.sleep(8)
        answer = client.get("/console/")
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/console/login")
    # Signing in prunes sessions that expired unseen.
    with signed_in(short_idle):
        pass
    assert len(session_rows(short_idle)) == 1


def test_secure_cookie_setting(engine_factory: Any) -> None:
    env = start_console(engine_factory, "console_secure", ROXGATE_CONSOLE_COOKIE_SECURE="always")
    try:
        with env.client() as client:
            form = client.get("/console/login")
            assert "secure" in form.headers["set-cookie"].lower()
            # httpx, like a browser, does not send a Secure cookie over plain http:
            # hand it over as a plain one to get past the login form's check.
            client.cookies.set("roxgate_console_login", form.cookies["roxgate_console_login"])
            answer = client.post(
                "/console/login",
                data={"csrf": form_token(form.text), "username": OPERATOR,
                      "password": OPERATOR_PASSWORD},
            )  # fmt: skip
            assert answer.status_code == 303
            session = next(
                c for c in answer.headers.get_list("set-cookie") if c.startswith("roxgate_console=")
            )
            assert "secure" in session.lower()
    finally:
        env.server.stop()


def test_bad_console_setting_stops_start_up(tmp_path: Any) -> None:
    server = Server(tmp_path / "bad.db", env_extra={"ROXGATE_CONSOLE_COOKIE_SECURE": "sometimes"})
    with pytest.raises(RuntimeError, match="console_cookie_secure"):
        server.start()


def test_operator_commands(console: Console) -> None:
    short = console.cli("operator", "add", "shorty", "--password", "short")
    assert short.returncode != 0 and "at least 10 characters" in short.stderr
    duplicate = console.cli("operator", "add", OPERATOR.upper(), "--password", "long enough 123")
    assert duplicate.returncode != 0 and "already exists" in duplicate.stderr
    bad_name = console.cli("operator", "add", "no spaces please", "--password", "long enough 123")
    assert bad_name.returncode != 0 and "operator name" in bad_name.stderr
    assert console.cli("operator", "add", "pat", "--password", "first password 1").returncode == 0
    changed = console.cli(
        "operator", "passwd", "Pat", "--password-stdin", stdin="second password 2\n"
    )
    assert changed.returncode == 0, changed.stderr
    listing = console.cli("operator", "list").stdout
    assert "pat" in listing and "$argon2" not in listing and "second password" not in listing
    with console.client() as client:
        assert sign_in(client, "pat", "first password 1").status_code == 401
    with console.client() as client:
        assert sign_in(client, "PAT", "second password 2").status_code == 303
    missing = console.cli("operator", "disable", "nobody")
    assert missing.returncode != 0 and "no operator nobody" in missing.stderr


def test_oversized_form_is_refused_before_it_is_read(console: Console) -> None:
    with signed_in(console) as client:
        token = form_token(client.get("/console/").text)
        big = client.post("/console/logout", data={"csrf": token, "pad": "x" * 20_000})
        assert big.status_code == 400
        assert client.get("/console/").status_code == 200  # not signed out


def test_console_on_an_api_process(engine_factory: Any) -> None:
    """``--role api`` serves the console too; it has no carrier link of its own to show."""
    path, engine = engine_factory("console_api_role")
    add_operator(engine, OPERATOR, OPERATOR_PASSWORD)
    server = Server(path, role="api")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get("/console").headers["location"].endswith("/console/")
            assert sign_in(client).status_code == 303
            overview = client.get("/console/")
            assert overview.status_code == 200
            assert (
                "does not send" in overview.text and "No sending process is alive" in overview.text
            )
    finally:
        server.stop()
