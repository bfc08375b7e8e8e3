"""The operator commands, run as a user runs them: the installed `roxgate` script."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROXGATE, Server


def run(
    tmp: Path, *args: str, stdin: str | None = None, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROXGATE_")}
    env["ROXGATE_DATABASE_URL"] = f"sqlite:///{tmp / 'cli.db'}"
    result = subprocess.run(
        [ROXGATE, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        timeout=60,
        check=False,
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def test_account_and_user_lifecycle(tmp_path: Path) -> None:
    out = run(
        tmp_path,
        "account",
        "add",
        "CI00000042",
        "--name",
        "Clinic",
        "--region",
        "nz",
        "--tz-offset",
        "-780",
        "--sender-id",
        "Clinic",
        "--credits",
        "100",
    ).stdout
    secret = re.search(r"^callback_secret: (\S+)$", out, re.M)
    assert secret and len(secret.group(1)) >= 32

    again = run(tmp_path, "account", "add", "CI00000042", "--name", "Dup", ok=False)
    assert again.returncode != 0 and "already exists" in again.stderr
    bad = run(tmp_path, "account", "add", "X1", "--name", "Bad", ok=False)
    assert "CI followed by 8 digits" in bad.stderr

    run(
        tmp_path,
        "user",
        "add",
        "CI00000042",
        "Nurse@Clinic.example",
        "--password-stdin",
        "--mobile",
        "021 123 4567",
        stdin="pw-from-stdin-123\n",
    )
    listing = run(tmp_path, "user", "list", "CI00000042").stdout
    assert "nurse@clinic.example" in listing and "+64211234567" in listing
    assert "pw-from-stdin" not in listing

    accounts = run(tmp_path, "account", "list").stdout
    assert "CI00000042" in accounts and "NZ" in accounts and "-780" in accounts
    assert secret.group(1) not in accounts  # the secret is shown once, at creation

    run(tmp_path, "account", "suspend", "CI00000042")
    assert "suspended" in run(tmp_path, "account", "list").stdout
    run(tmp_path, "account", "resume", "CI00000042")
    run(tmp_path, "account", "set", "CI00000042", "--credits", "none", "--allow-countries", "NZ,AU")
    accounts = run(tmp_path, "account", "list").stdout
    assert "NZ,AU" in accounts

    run(
        tmp_path,
        "user",
        "passwd",
        "CI00000042",
        "nurse@clinic.example",
        "--password-stdin",
        stdin="another-password\n",
    )
    run(tmp_path, "user", "disable", "CI00000042", "nurse@clinic.example")
    assert "disabled" in run(tmp_path, "user", "list").stdout
    run(tmp_path, "user", "enable", "CI00000042", "nurse@clinic.example")
    run(tmp_path, "user", "unlock", "CI00000042", "nurse@clinic.example")
    blocked = run(tmp_path, "account", "block", "CI00000042", "021 999 9999").stdout
    assert "+64219999999" in blocked

    short = run(
        tmp_path,
        "user",
        "add",
        "CI00000042",
        "x@clinic.example",
        "--password-stdin",
        stdin="short\n",
        ok=False,
    )
    assert "at least 8" in short.stderr
    unknown = run(
        tmp_path,
        "user",
        "add",
        "CI00000099",
        "x@clinic.example",
        "--password-stdin",
        stdin="long-enough-pw\n",
        ok=False,
    )
    assert "no account CI00000099" in unknown.stderr


@pytest.mark.parametrize("value", ["abc", ""])
def test_bad_config_is_a_clear_error(tmp_path: Path, value: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROXGATE_")}
    env["ROXGATE_PORT"] = value
    result = subprocess.run(
        [ROXGATE, "account", "list"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if value == "":
        assert result.returncode == 0  # empty means "use the default"
    else:
        assert result.returncode != 0 and "port" in result.stderr


def test_demo_then_send_the_printed_request(tmp_path: Path) -> None:
    out = run(tmp_path, "demo").stdout
    creds = tmp_path / ".roxgate-demo-credentials"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    password = creds.read_text().strip()
    assert password in out  # the ready-to-paste curl carries it
    # Running it again keeps the same password (idempotent).
    assert password in run(tmp_path, "demo").stdout

    server = Server(tmp_path / "cli.db")
    server.start()
    try:
        body = out[out.index("-d '") + 4 : out.rindex("'")]
        answer = httpx.post(server.url + "/smsapi/send", content=body, timeout=30).json()
        assert answer["Result"] == "0000", answer
        sms_id = answer["Messages"]["1"]["SMSId"]
        # The demo's promise: follow it from queued to delivered.
        assert "roxgate message show" in out
        deadline = time.monotonic() + 20
        while "status: delivered" not in (shown := run(tmp_path, "message", "show", sms_id).stdout):
            assert time.monotonic() < deadline, shown
            time.sleep(0.3)
        steps = [line.split()[1] for line in shown.splitlines()[2:]]
        assert steps == ["queued", "submitted", "receipt", "delivered"], shown
        assert "carrier id" in shown and "0000 Delivered" in shown
        listed = run(tmp_path, "message", "list", "--status", "delivered").stdout
        assert sms_id in listed
        missing = run(tmp_path, "message", "show", "no-such-id", ok=False)
        assert missing.returncode != 0 and "no message no-such-id" in missing.stderr
        # The console's demo operator signs in with the same password.
        with httpx.Client(base_url=server.url, timeout=30) as browser:
            assert "/console" in out
            form = browser.get("/console/login")
            token = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert token, form.text
            signed = browser.post(
                "/console/login",
                data={"csrf": token.group(1), "username": "demo", "password": password},
            )
            assert signed.status_code == 303, signed.text
            assert "Overview" in browser.get("/console/").text
        assert password not in server.logs()
        # The server's command line carries no secret.
        cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()  # type: ignore[union-attr]
        assert password.encode() not in cmdline
    finally:
        server.stop()


def test_wrong_password_is_not_logged(tmp_path: Path) -> None:
    run(tmp_path, "account", "add", "CI00000007", "--name", "Log")
    run(
        tmp_path,
        "user",
        "add",
        "CI00000007",
        "u@example.com",
        "--password-stdin",
        stdin="right-password\n",
    )
    server = Server(tmp_path / "cli.db", env_extra={"ROXGATE_LOG_LEVEL": "DEBUG"})
    server.start()
    try:
        body = {
            "Name": "ROX_API_Request",
            "Version": 1.1,
            "Sender": {
                "AccountId": "CI00000007",
                "Username": "u@example.com",
                "Password": "Wr0ng-Pa55word-XYZ",
            },
            "Messages": {"Count": 1, "1": {"DestTn": "+61407555001", "SMSText": "x"}},
        }
        assert httpx.post(server.url + "/smsapi/send", json=body).json()["Result"] == "2002"
    finally:
        server.stop()
    assert "Wr0ng-Pa55word-XYZ" not in server.logs()
    assert "result=2002" in server.logs()


def test_replies_opt_out_and_outboxes_from_the_command_line(tmp_path: Path) -> None:
    """The demo's reply path with no SMTP server: mail waits in the outbox, visible."""
    run(tmp_path, "demo")
    password = (tmp_path / ".roxgate-demo-credentials").read_text().strip()
    server = Server(tmp_path / "cli.db", env_extra={"ROXGATE_SIM_RECEIPT_DELAY": "0.1"})
    server.start()
    try:
        run(tmp_path, "account", "optout", "CI00000001", "0407 555 777")
        numbers = run(tmp_path, "account", "numbers", "CI00000001").stdout
        assert "optout" in numbers and "+61407555777" in numbers
        body = {
            "Name": "ROX_API_Request",
            "Version": 1.1,
            "Sender": {"AccountId": "CI00000001", "Username": "demo@example.com",
                       "Password": password},
            "Messages": {"Count": 2, "ReplyType": "E",
                         "1": {"DestTn": "+61407559998", "SMSText": "See you at 10?"},
                         "2": {"DestTn": "+61407555777", "SMSText": "Opted out"}},
        }  # fmt: skip
        answer = httpx.post(server.url + "/smsapi/send", json=body, timeout=30).json()
        assert answer["Messages"]["2"]["Result"] == "2035"
        sms_id = answer["Messages"]["1"]["SMSId"]
        # 9998 answers "Thanks, see you then" once delivered; E: an e-mail, pending.
        deadline = time.monotonic() + 20
        while "Thanks, see you then" not in (
            mail := run(tmp_path, "mail", "list", "--body").stdout
        ):
            assert time.monotonic() < deadline, mail
            time.sleep(0.3)
        assert "To: demo@example.com" in mail and "+61407559998" in mail and sms_id in mail
        assert "pending" in run(tmp_path, "mail", "list").stdout
        replies = run(tmp_path, "inbound", "list").stdout
        assert "+61407559998" in replies and sms_id in replies and "mail" in replies
        shown = run(tmp_path, "message", "show", sms_id).stdout
        assert "reply" in shown and "reply e-mail" in shown

        url = f"--url={server.url}"
        out = run(tmp_path, "sim-reply", url, "+61407559998", "STOP").stdout
        assert "Delivered to the gateway" in out
        assert "+61407559998" in run(tmp_path, "account", "numbers", "CI00000001").stdout
        run(tmp_path, "account", "optout", "--remove", "CI00000001", "+61407559998")
        assert "+61407559998" not in run(tmp_path, "account", "numbers", "CI00000001").stdout
        run(tmp_path, "sim-reply", url, "+61400000999", "hi")
        unmatched = run(tmp_path, "inbound", "list", "--unmatched").stdout
        assert "+61400000999" in unmatched and sms_id not in unmatched
        assert run(tmp_path, "callback", "list").stdout.strip() == "(none)"
        live = run(tmp_path, "workers").stdout
        assert "all" in live and str(server.proc.pid) in live  # type: ignore[union-attr]
    finally:
        server.stop()
    down = run(tmp_path, "sim-reply", url, "+61407559998", "hi", ok=False)
    assert down.returncode != 0 and "cannot reach the gateway" in down.stderr


def test_callback_secret_and_user_mobile(tmp_path: Path) -> None:
    out = run(tmp_path, "account", "add", "CI00000008", "--name", "Keys").stdout
    secret = re.search(r"^callback_secret: (\S+)$", out, re.M).group(1)  # type: ignore[union-attr]
    assert run(tmp_path, "account", "secret", "CI00000008").stdout.strip() == (
        f"callback_secret: {secret}"
    )
    rotated = run(tmp_path, "account", "secret", "CI00000008", "--rotate").stdout
    assert secret not in rotated and rotated.startswith("callback_secret: ")
    assert secret not in run(tmp_path, "account", "list").stdout
    run(tmp_path, "user", "add", "CI00000008", "u@example.com", "--password-stdin",
        stdin="long-enough-pw\n")  # fmt: skip
    run(tmp_path, "user", "mobile", "CI00000008", "u@example.com", "0412 345 678")
    assert "+61412345678" in run(tmp_path, "user", "list").stdout
    run(tmp_path, "user", "mobile", "CI00000008", "u@example.com", "--clear")
    assert "+61412345678" not in run(tmp_path, "user", "list").stdout
    bad = run(tmp_path, "user", "mobile", "CI00000008", "u@example.com", "12", ok=False)
    assert bad.returncode != 0 and "not a valid mobile" in bad.stderr
