"""The ``roxgate`` command (SPEC.md §5)."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from roxgate.config import Settings

DEMO_ACCOUNT = "CI00000001"
DEMO_USER = "demo@example.com"
DEMO_OPERATOR = "demo"
DEMO_CREDENTIALS_FILE = ".roxgate-demo-credentials"


def _settings(ctx: click.Context) -> Settings:
    try:
        return Settings.load(ctx.obj.get("config"))
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"configuration: {exc}") from exc


def _engine(ctx: click.Context) -> Any:
    from roxgate.store.engine import open_database

    return open_database(_settings(ctx).database_url)


def _admin(action: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    from roxgate.accounts.admin import AdminError

    try:
        return action(*args, **kwargs)
    except AdminError as exc:
        raise click.ClickException(str(exc)) from exc


def _read_password(password: str | None, from_stdin: bool) -> str:
    if password is not None and from_stdin:
        raise click.UsageError("give --password or --password-stdin, not both")
    if from_stdin:
        value = sys.stdin.readline().rstrip("\r\n")
        if not value:
            raise click.UsageError("no password on standard input")
        return value
    if password is not None:
        return password
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    text = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in text)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for t in text:
        click.echo("  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)))


@click.group()
@click.option("--config", type=click.Path(exists=True, dir_okay=False), help="TOML settings file.")
@click.version_option(package_name="roxgate")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """roxgate: a self-hosted SMS gateway speaking the ROX JSON API."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


@main.command()
@click.option(
    "--role", type=click.Choice(["all", "api", "worker"]), default="all", show_default=True
)
@click.pass_context
def serve(ctx: click.Context, role: str) -> None:
    """Run the gateway: api (HTTP intake), worker (carrier link, dispatcher, callbacks,
    e-mail; HTTP only for /healthz, /readyz and /metrics) or all (both, the default).

    Any number of api and worker processes may share one PostgreSQL database.
    """
    import uvicorn

    from roxgate.api import serving
    from roxgate.api.app import create_app
    from roxgate.logs import configure_logging, redact_url

    settings = _settings(ctx)
    try:
        configure_logging(settings.log_level, settings.log_format)
    except ValueError as exc:
        raise click.ClickException(f"configuration: {exc}") from exc
    # A 500-recipient request allocates a few thousand short-lived containers;
    # with the default threshold (700) the collector ran many times per request
    # and its full collections were the slowest requests of the benchmark.
    gc.set_threshold(50_000, 20, 100)
    # The writer threads wait on the database with the GIL released; when an
    # answer comes, the event loop holds the GIL for up to a switch interval
    # (5 ms by default) before the writer can go on, and a group commit on
    # PostgreSQL is several round trips. With 0.5 ms, bench/scale.py measured
    # intake on PostgreSQL 28-31k -> 35-38k messages/s and two workers
    # 5.3-6.6k -> 6.4-7.6k submits/s (SQLite intake the same or better).
    sys.setswitchinterval(0.0005)
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    try:  # HTTPS, proxy headers, slow clients: see api/serving.py
        hardening = serving.uvicorn_options(settings)
    except ValueError as exc:
        raise click.ClickException(f"configuration: {exc}") from exc
    config = uvicorn.Config(
        create_app(settings, role),  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        loop=loop,
        **hardening,
        access_log=False,
        log_config=None,  # uvicorn's records go through our handler (and format) too
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
        server_header=False,
    )
    logging.getLogger("roxgate").info(
        "roxgate serving on %s://%s:%d (role %s, database %s, carrier %s)",
        serving.scheme(settings), settings.host, settings.port, role,
        redact_url(settings.database_url), redact_url(settings.carrier),
    )  # fmt: skip
    # Bind the HTTP port before the application starts: its start-up opens other
    # listeners (the simulator's, on a port the kernel picks) that could otherwise
    # take the HTTP port first when that port is in the ephemeral range.
    listener = config.bind_socket()
    uvicorn.Server(config).run(sockets=[listener])


# --- accounts ----------------------------------------------------------------


@main.group()
def account() -> None:
    """Create and manage customer accounts."""


@account.command("add")
@click.argument("account_id")
@click.option("--name", required=True)
@click.option(
    "--region", default="AU", show_default=True, help="Default region for national numbers."
)
@click.option(
    "--tz-offset", type=int, default=0, show_default=True, help="Minutes; UTC+10:00 is -600."
)
@click.option("--sender-id", help="Alphanumeric (≤11) or numeric sender id.")
@click.option("--credits", type=int, help="Credit balance (one per SMS part); unlimited if unset.")
@click.option("--allow-nets", help="Comma-separated CIDRs allowed to call the API.")
@click.option("--allow-countries", help="Comma-separated ISO regions allowed as destinations.")
@click.option("--no-api", is_flag=True, help="Create with API access disabled (2008).")
@click.option(
    "--rate-requests",
    type=click.IntRange(min=0),
    help="Requests per minute (0 unlimited); default ROXGATE_RATE_REQUESTS_PER_MINUTE.",
)
@click.option(
    "--rate-messages",
    type=click.IntRange(min=0),
    help="Messages (recipients) per minute (0 unlimited); "
    "default ROXGATE_RATE_MESSAGES_PER_MINUTE.",
)
@click.pass_context
def account_add(
    ctx: click.Context,
    account_id: str,
    name: str,
    region: str,
    tz_offset: int,
    sender_id: str | None,
    credits: int | None,
    allow_nets: str | None,
    allow_countries: str | None,
    no_api: bool,
    rate_requests: int | None,
    rate_messages: int | None,
) -> None:
    """Create an account; prints its callback secret."""
    from roxgate.accounts.admin import add_account

    created = _admin(
        add_account,
        _engine(ctx),
        account_id,
        name,
        region=region,
        tz_offset=tz_offset,
        sender_id=sender_id,
        credits=credits,
        allowed_nets=allow_nets,
        allowed_countries=allow_countries,
        api_enabled=not no_api,
        rate_requests=rate_requests,
        rate_messages=rate_messages,
    )
    click.echo(f"account: {created.id}")
    click.echo(f"callback_secret: {created.callback_secret}")


@account.command("list")
@click.pass_context
def account_list(ctx: click.Context) -> None:
    """List accounts."""
    from roxgate.accounts.admin import list_accounts

    rows = _admin(list_accounts, _engine(ctx))
    for r in rows:  # blank: the gateway's default
        r["rate_requests"] = r.pop("rate_requests_per_minute", None)
        r["rate_messages"] = r.pop("rate_messages_per_minute", None)
    _table(
        rows,
        [
            "id",
            "name",
            "status",
            "region",
            "tz_offset",
            "sender_id",
            "credits",
            "allowed_countries",
            "allowed_nets",
            "api_enabled",
            "rate_requests",
            "rate_messages",
        ],
    )


def _optional(value: str | None) -> Any:
    """Flag value for update_account: absent leaves alone, "" or "none" clears."""
    from roxgate.accounts.admin import _UNSET

    if value is None:
        return _UNSET
    return None if value.lower() in ("", "none") else value


@account.command("set")
@click.argument("account_id")
@click.option("--name")
@click.option("--region")
@click.option("--tz-offset", type=int)
@click.option("--sender-id", help='"none" clears it.')
@click.option("--credits", help='A number, or "none" for unlimited.')
@click.option("--allow-nets", help='Comma-separated CIDRs, or "none".')
@click.option("--allow-countries", help='Comma-separated ISO regions, or "none".')
@click.option("--api/--no-api", default=None, help="Enable or disable API access.")
@click.option("--rate-requests", help='Requests per minute: a number (0 unlimited), or "default".')
@click.option("--rate-messages", help='Messages per minute: a number (0 unlimited), or "default".')
@click.pass_context
def account_set(
    ctx: click.Context,
    account_id: str,
    name: str | None,
    region: str | None,
    tz_offset: int | None,
    sender_id: str | None,
    credits: str | None,
    allow_nets: str | None,
    allow_countries: str | None,
    api: bool | None,
    rate_requests: str | None,
    rate_messages: str | None,
) -> None:
    """Change an account's settings."""
    from roxgate.accounts.admin import update_account

    credit_value = _optional(credits)
    if isinstance(credit_value, str):
        try:
            credit_value = int(credit_value)
        except ValueError as exc:
            raise click.BadParameter("credits must be a whole number or none") from exc
    _admin(
        update_account,
        _engine(ctx),
        account_id,
        name=name,
        region=region,
        tz_offset=tz_offset,
        sender_id=_optional(sender_id),
        credits=credit_value,
        allowed_nets=_optional(allow_nets),
        allowed_countries=_optional(allow_countries),
        api_enabled=api,
        rate_requests=_rate_limit(rate_requests, "--rate-requests"),
        rate_messages=_rate_limit(rate_messages, "--rate-messages"),
    )
    click.echo(f"account {account_id} updated")


def _rate_limit(value: str | None, option: str) -> Any:
    """A rate-limit flag for update_account: absent leaves alone, "default" clears
    (the gateway's default applies), a number ≥ 0 sets (0 unlimited)."""
    from roxgate.accounts.admin import _UNSET

    if value is None:
        return _UNSET
    if value.strip().lower() == "default":
        return None
    if not value.strip().isdigit():
        raise click.BadParameter('a whole number ≥ 0 or "default"', param_hint=option)
    return int(value)


@account.command("suspend")
@click.argument("account_id")
@click.pass_context
def account_suspend(ctx: click.Context, account_id: str) -> None:
    """Suspend an account: its requests get 2004."""
    from roxgate.accounts.admin import update_account

    _admin(update_account, _engine(ctx), account_id, status="suspended")
    click.echo(f"account {account_id} suspended")


@account.command("resume")
@click.argument("account_id")
@click.pass_context
def account_resume(ctx: click.Context, account_id: str) -> None:
    """Resume a suspended account."""
    from roxgate.accounts.admin import update_account

    _admin(update_account, _engine(ctx), account_id, status="active")
    click.echo(f"account {account_id} active")


@account.command("block")
@click.argument("account_id")
@click.argument("numbers", nargs=-1, required=True)
@click.option("--remove", is_flag=True, help="Take the numbers off the block list.")
@click.pass_context
def account_block(
    ctx: click.Context, account_id: str, numbers: tuple[str, ...], remove: bool
) -> None:
    """Add numbers to an account's block list (sends to them get 2037)."""
    from roxgate.accounts.admin import change_number_list

    done = _admin(change_number_list, _engine(ctx), account_id, "block", list(numbers), not remove)
    click.echo(f"{'unblocked' if remove else 'blocked'}: {', '.join(done)}")


@account.command("optout")
@click.argument("account_id")
@click.argument("numbers", nargs=-1, required=True)
@click.option("--remove", is_flag=True, help="Opt the numbers back in.")
@click.pass_context
def account_optout(
    ctx: click.Context, account_id: str, numbers: tuple[str, ...], remove: bool
) -> None:
    """Put numbers on an account's opt-out list (sends to them get 2035), as STOP does."""
    from roxgate.accounts.admin import change_number_list

    done = _admin(change_number_list, _engine(ctx), account_id, "optout", list(numbers), not remove)
    click.echo(f"{'opted in' if remove else 'opted out'}: {', '.join(done)}")


@account.command("secret")
@click.argument("account_id")
@click.option(
    "--rotate",
    is_flag=True,
    help="Replace it with a new one (callbacks still waiting use the new one).",
)
@click.pass_context
def account_secret(ctx: click.Context, account_id: str, rotate: bool) -> None:
    """Print the account's callback secret (the key of X-Rox-Signature)."""
    from roxgate.accounts.admin import callback_secret

    click.echo(f"callback_secret: {_admin(callback_secret, _engine(ctx), account_id, rotate)}")


@account.command("numbers")
@click.argument("account_id")
@click.option("--kind", type=click.Choice(["block", "optout"]), help="Only one list.")
@click.pass_context
def account_numbers(ctx: click.Context, account_id: str, kind: str | None) -> None:
    """List an account's blocked and opted-out numbers."""
    from roxgate.accounts.admin import list_number_lists
    from roxgate.store.history import iso

    rows = _admin(list_number_lists, _engine(ctx), account_id, kind)
    for r in rows:
        r["since"] = iso(r["created_at"])
    _table(rows, ["kind", "number", "since"])


# --- users -------------------------------------------------------------------


@main.group()
def user() -> None:
    """Create and manage the users who send through an account."""


@user.command("add")
@click.argument("account_id")
@click.argument("email")
@click.option("--password", help="Visible in `ps`; prefer --password-stdin or the prompt.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--mobile", help="For replies by SMS (ReplyType S/B).")
@click.pass_context
def user_add(
    ctx: click.Context,
    account_id: str,
    email: str,
    password: str | None,
    password_stdin: bool,
    mobile: str | None,
) -> None:
    """Add a user to an account."""
    from roxgate.accounts.admin import add_user

    secret = _read_password(password, password_stdin)
    _admin(add_user, _engine(ctx), account_id, email, secret, mobile)
    click.echo(f"user {email.strip().lower()} added to {account_id}")


@user.command("list")
@click.argument("account_id", required=False)
@click.pass_context
def user_list(ctx: click.Context, account_id: str | None) -> None:
    """List users (of one account, or all)."""
    from roxgate.accounts.admin import list_users

    rows = _admin(list_users, _engine(ctx), account_id)
    for row in rows:
        until = row.pop("locked_until")
        locked = until is not None and until > datetime.now(UTC).timestamp() * 1000
        row["locked"] = "yes" if locked else ""
    _table(rows, ["account_id", "email", "status", "mobile", "failed_logins", "locked"])


@user.command("passwd")
@click.argument("account_id")
@click.argument("email")
@click.option("--password", help="Visible in `ps`; prefer --password-stdin or the prompt.")
@click.option("--password-stdin", is_flag=True)
@click.pass_context
def user_passwd(
    ctx: click.Context, account_id: str, email: str, password: str | None, password_stdin: bool
) -> None:
    """Set a user's password (also lifts a lock)."""
    from roxgate.accounts.admin import set_password

    _admin(set_password, _engine(ctx), account_id, email, _read_password(password, password_stdin))
    click.echo("password changed")


@user.command("mobile")
@click.argument("account_id")
@click.argument("email")
@click.argument("mobile", required=False)
@click.option("--clear", is_flag=True, help="Remove the mobile number.")
@click.pass_context
def user_mobile(
    ctx: click.Context, account_id: str, email: str, mobile: str | None, clear: bool
) -> None:
    """Set the mobile number replies by SMS (ReplyType S/B) go to."""
    from roxgate.accounts.admin import set_user_mobile

    if clear == (mobile is not None):
        raise click.UsageError("give a MOBILE number or --clear")
    _admin(set_user_mobile, _engine(ctx), account_id, email, None if clear else mobile)
    click.echo(f"user {email}: mobile {'cleared' if clear else 'set'}")


@user.command("disable")
@click.argument("account_id")
@click.argument("email")
@click.pass_context
def user_disable(ctx: click.Context, account_id: str, email: str) -> None:
    """Disable a user: its requests get 2005."""
    from roxgate.accounts.admin import set_user_status

    _admin(set_user_status, _engine(ctx), account_id, email, "disabled")
    click.echo(f"user {email} disabled")


@user.command("enable")
@click.argument("account_id")
@click.argument("email")
@click.pass_context
def user_enable(ctx: click.Context, account_id: str, email: str) -> None:
    """Enable a disabled user."""
    from roxgate.accounts.admin import set_user_status

    _admin(set_user_status, _engine(ctx), account_id, email, "active")
    click.echo(f"user {email} enabled")


@user.command("unlock")
@click.argument("account_id")
@click.argument("email")
@click.pass_context
def user_unlock(ctx: click.Context, account_id: str, email: str) -> None:
    """Lift a lock after failed logins."""
    from roxgate.accounts.admin import unlock_user

    _admin(unlock_user, _engine(ctx), account_id, email)
    click.echo(f"user {email} unlocked")


# --- operators (the console) ---------------------------------------------------


@main.group()
def operator() -> None:
    """Create and manage the operators who sign in to the console (/console)."""


@operator.command("add")
@click.argument("username")
@click.option("--password", help="Visible in `ps`; prefer --password-stdin or the prompt.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
def operator_add(
    ctx: click.Context, username: str, password: str | None, password_stdin: bool
) -> None:
    """Add an operator (at least 10 characters of password)."""
    from roxgate.console.operators import add_operator, normalise_username

    name = _admin(normalise_username, username)
    _admin(add_operator, _engine(ctx), name, _read_password(password, password_stdin))
    click.echo(f"operator {name} added")


@operator.command("list")
@click.pass_context
def operator_list(ctx: click.Context) -> None:
    """List operators, with their last sign-in and any lock."""
    from roxgate.console.operators import list_operators
    from roxgate.store.history import iso

    now = datetime.now(UTC).timestamp() * 1000
    rows = _admin(list_operators, _engine(ctx))
    for row in rows:
        until = row.pop("locked_until")
        row["locked"] = "yes" if until is not None and until > now else ""
        last = row.pop("last_login_at")
        row["last_sign_in"] = iso(last) if last is not None else "never"
    _table(rows, ["username", "status", "failed_logins", "locked", "last_sign_in"])


@operator.command("passwd")
@click.argument("username")
@click.option("--password", help="Visible in `ps`; prefer --password-stdin or the prompt.")
@click.option("--password-stdin", is_flag=True)
@click.pass_context
def operator_passwd(
    ctx: click.Context, username: str, password: str | None, password_stdin: bool
) -> None:
    """Set an operator's password (also lifts a lock)."""
    from roxgate.console.operators import normalise_username, set_operator_password

    name = _admin(normalise_username, username)
    _admin(set_operator_password, _engine(ctx), name, _read_password(password, password_stdin))
    click.echo("password changed")


@operator.command("disable")
@click.argument("username")
@click.pass_context
def operator_disable(ctx: click.Context, username: str) -> None:
    """Disable an operator: signed out at the next request, cannot sign in."""
    from roxgate.console.operators import set_operator_status

    _admin(set_operator_status, _engine(ctx), username, "disabled")
    click.echo(f"operator {username.strip().lower()} disabled")


@operator.command("enable")
@click.argument("username")
@click.pass_context
def operator_enable(ctx: click.Context, username: str) -> None:
    """Enable an operator again (also lifts a lock after failed sign-ins)."""
    from roxgate.console.operators import set_operator_status

    _admin(set_operator_status, _engine(ctx), username, "active")
    click.echo(f"operator {username.strip().lower()} enabled")


# --- demo --------------------------------------------------------------------


@main.command()
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Create the demo account and user if absent and print a first send command.

    The demo password is kept in .roxgate-demo-credentials (mode 600) in the
    working folder, never on a command line.
    """
    from roxgate.accounts.admin import AdminError, add_account, add_user, set_password
    from roxgate.console.operators import add_operator, set_operator_password

    settings = _settings(ctx)
    engine = _engine(ctx)
    path = Path(DEMO_CREDENTIALS_FILE)
    password = path.read_text().strip() if path.exists() else ""
    with contextlib.suppress(AdminError):  # already there
        add_account(engine, DEMO_ACCOUNT, "Demo account", region="AU", tz_offset=-600)
    if not password:
        password = secrets.token_urlsafe(12)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        try:
            add_user(engine, DEMO_ACCOUNT, DEMO_USER, password)
        except AdminError:
            set_password(engine, DEMO_ACCOUNT, DEMO_USER, password)
        # The console's demo operator shares the password: one secret to keep.
        try:
            add_operator(engine, DEMO_OPERATOR, password)
        except AdminError:
            set_operator_password(engine, DEMO_OPERATOR, password)
    else:
        with contextlib.suppress(AdminError):  # a database made before the console
            add_operator(engine, DEMO_OPERATOR, password)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
    click.echo(
        f"""
Demo account {DEMO_ACCOUNT}, user {DEMO_USER} (password in {DEMO_CREDENTIALS_FILE}).
Send a first message with:

curl -s http://{host}:{settings.port}/smsapi/send -d '{{
  "Name": "ROX_API_Request", "Version": 1.1, "Product": "demo",
  "Sender": {{"AccountId": "{DEMO_ACCOUNT}", "Username": "{DEMO_USER}", "Password": "{password}"}},
  "Messages": {{"Count": 1, "1": {{"DestTn": "+61407555001", "SMSText": "Hello from roxgate"}}}}
}}'

and follow it (queued -> submitted -> delivered) with the SMSId from the answer:

.venv/bin/roxgate message show SMSID      # or: .venv/bin/roxgate message list

The console for operators: http://{host}:{settings.port}/console
(operator {DEMO_OPERATOR}, the same password).
"""
    )


# --- sending, with the Python client -------------------------------------------

# CSV header names (any case, surrounding spaces ignored) → ROX field.
_CSV_COLUMNS = {
    "desttn": "DestTn",
    "destname": "DestName",
    "destemail": "DestEmail",
    "smstext": "SMSText",
}
_LOCAL_CODES = {  # lines refused before sending: the gateway's code where there is one
    "2031": "DestTn missing",
    "2033": "no text",
    "CSV": "line not readable",
}
_AUTH_HINT = " (check --account, --username and the password)"


@dataclass(slots=True)
class _Line:
    """One message to send: a CSV line (``number`` counts the header as 1) or the
    command line (``number`` 0), and what became of it."""

    number: int
    dest_tn: str
    recipient: Any = None  # a roxgate.client.Recipient; None when refused here
    result: str = ""
    result_text: str = ""
    sms_id: str | None = None
    due: datetime | None = None


def _refuse(line: _Line, code: str, text: str) -> _Line:
    line.result, line.result_text = code, text
    return line


def _read_send_csv(path: Path, default_text: str | None) -> list[_Line]:
    """Every data line of the file, each with its recipient or why it is refused.
    A file that cannot be read as a whole (header, CSV syntax) is a BadParameter."""
    import csv
    import io

    from roxgate.client import Recipient

    def bad(why: str) -> click.BadParameter:
        return click.BadParameter(f"{path}: {why}", param_hint="--csv")

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise bad(str(exc)) from exc
    # Undecodable bytes become lone surrogates: the line holding them is refused
    # (with its column), the others are sent.
    text = raw.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""))
    lines: list[_Line] = []
    header: list[str] | None = None
    try:
        while True:
            start = reader.line_num + 1
            row = next(reader, None)
            if row is None:
                break
            if not any(cell.strip() for cell in row):
                continue  # blank line
            if header is None:
                header = _send_csv_header(row, bad)
                continue
            lines.append(_send_csv_line(start, row, header, default_text, Recipient))
    except csv.Error as exc:
        raise bad(f"line {reader.line_num}: {exc}") from exc
    if header is None:
        raise bad("empty file: expected a header row with DestTn")
    if not lines:
        raise bad("no lines after the header row")
    return lines


def _send_csv_header(row: list[str], bad: Callable[[str], click.BadParameter]) -> list[str]:
    header: list[str] = []
    for position, cell in enumerate(row, start=1):
        name = _CSV_COLUMNS.get(cell.strip().lower())
        if name is None:
            shown = cell.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            raise bad(
                f"line 1, column {position}: unknown column {shown.strip()!r} "
                f"(expected {', '.join(_CSV_COLUMNS.values())})"
            )
        if name in header:
            raise bad(f"line 1, column {position}: {name} appears twice")
        header.append(name)
    if "DestTn" not in header:
        raise bad("line 1: the header has no DestTn column")
    return header


def _send_csv_line(
    number: int, row: list[str], header: list[str], default_text: str | None, recipient: Any
) -> _Line:
    fields = dict(zip(header, row, strict=False))  # a short row: the rest is empty
    dest_tn = fields.get("DestTn", "").strip()
    line = _Line(number, dest_tn.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    if len(row) > len(header):
        return _refuse(line, "CSV", f"{len(row)} fields, the header has {len(header)}")
    for name, value in fields.items():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return _refuse(line, "CSV", f"column {name}: not valid UTF-8")
    if not dest_tn:
        return _refuse(line, "2031", "column DestTn: empty")
    text = fields.get("SMSText") or ""
    if not text.strip():
        if not default_text:
            return _refuse(line, "2033", "column SMSText: empty, and no --text")
        text = default_text
    line.recipient = recipient(
        dest_tn,
        text,
        dest_name=fields.get("DestName", "").strip() or None,
        dest_email=fields.get("DestEmail", "").strip() or None,
    )
    return line


def _send_later(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO-8601 time: {value!r}") from exc
    if when.tzinfo is None:
        raise click.BadParameter(
            "give the time zone, e.g. 2030-01-01T09:00:00+10:00 or …Z for UTC",
            param_hint="--send-later",
        )
    return when


def _send_report(path: Path, lines: list[_Line]) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["line", "DestTn", "SMSId", "Result", "ResultText"])
        for line in lines:
            writer.writerow(
                [line.number, line.dest_tn, line.sms_id or "", line.result, line.result_text]
            )


def _send_summary(lines: list[_Line], gateway_texts: dict[str, str]) -> None:
    from rich.console import Console
    from rich.table import Table

    counts: dict[tuple[str, str], int] = {}
    for line in lines:
        if line.result == "0000":
            key = ("0000", "queued")
        elif line.recipient is None:
            key = (line.result, f"{_LOCAL_CODES.get(line.result, '')} (checked here)")
        else:
            key = (line.result or "-", gateway_texts.get(line.result, line.result_text))
        counts[key] = counts.get(key, 0) + 1
    table = Table(title=f"{len(lines)} lines", title_justify="left")
    table.add_column("Result")
    table.add_column("Meaning")
    table.add_column("Lines", justify="right")
    for (code, meaning), count in sorted(counts.items(), key=lambda kv: (kv[0][0] != "0000", kv)):
        table.add_row(code, meaning, str(count))
    Console(highlight=False).print(table)


def _send_problems(lines: list[_Line], limit: int = 20) -> None:
    bad = [line for line in lines if line.result and line.result != "0000"]
    for line in bad[:limit]:
        where = f"line {line.number}" if line.number else "command line"
        number = f" {line.dest_tn}" if line.dest_tn else ""
        click.echo(f"{where}:{number} {line.result} {line.result_text}")
    if len(bad) > limit:
        click.echo(f"… and {len(bad) - limit} more (all of them with --report FILE)")


@main.command("send")
@click.argument("number", required=False)
@click.argument("text", required=False)
@click.option(
    "--url",
    envvar="ROX_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    show_envvar=True,
    help="The gateway.",
)
@click.option("--account", envvar="ROX_ACCOUNT", required=True, show_envvar=True)
@click.option("--username", envvar="ROX_USERNAME", required=True, show_envvar=True)
@click.option(
    "--password",
    envvar="ROX_PASSWORD",
    show_envvar=True,
    help="Visible in `ps`: prefer ROX_PASSWORD, or the prompt.",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Send to every line: header DestTn[,DestName,DestEmail,SMSText], UTF-8.",
)
@click.option("--text", "default_text", help="With --csv: the text of lines without SMSText.")
@click.option(
    "--receipt-flag",
    type=click.IntRange(0, 2),
    default=0,
    show_default=True,
    help="0 no receipts, 1 every receipt, 2 failures only.",
)
@click.option("--receipt-url", help="Where receipts are POSTed (else e-mailed).")
@click.option(
    "--reply-type",
    type=click.Choice(["E", "S", "B", "H"], case_sensitive=False),
    help="Replies by E-mail, SMS, Both, or HTTP to --reply-url.",
)
@click.option("--reply-url", help="Where replies are POSTed (with --reply-type H).")
@click.option("--send-later", help="ISO-8601 with its offset: 2030-01-01T09:00:00+10:00.")
@click.option("--product", help="Kept with every message, for reports.")
@click.option(
    "--idempotency-key",
    help="Run again with the same key (and input) and nothing is queued twice.",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a CSV: line, DestTn, SMSId, Result, ResultText for every input line.",
)
@click.option("--retries", type=click.IntRange(0, 10), default=3, show_default=True)
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds.")
def send(
    number: str | None,
    text: str | None,
    url: str,
    account: str,
    username: str,
    password: str | None,
    csv_path: Path | None,
    default_text: str | None,
    receipt_flag: int,
    receipt_url: str | None,
    reply_type: str | None,
    reply_url: str | None,
    send_later: str | None,
    product: str | None,
    idempotency_key: str | None,
    report_path: Path | None,
    retries: int,
    timeout: float,
) -> None:
    """Send SMS through a running gateway: NUMBER TEXT, or every line of --csv FILE.

    Exit status: 0 every message queued; 3 some were not (each is listed, with its
    line); 1 the gateway refused a request or could not be reached; 2 bad usage
    or an unreadable CSV file (then nothing is sent).
    """
    from roxgate.client import Client, Recipient, RoxError, SendResult

    if csv_path is not None:
        if number is not None:
            raise click.UsageError("give NUMBER TEXT or --csv FILE, not both")
        lines = _read_send_csv(csv_path, default_text)
    else:
        if number is None or (text is None and default_text is None):
            raise click.UsageError("give NUMBER TEXT, or --csv FILE")
        if text is not None and default_text is not None:
            raise click.UsageError("give the text once: TEXT or --text")
        lines = [_Line(0, number, Recipient(number, text or default_text))]
    when = _send_later(send_later)
    if password is None:
        if not sys.stdin.isatty():
            raise click.UsageError(
                "no password: set ROX_PASSWORD (or give --password); "
                "standard input is not a terminal to ask on"
            )
        password = click.prompt("Password", hide_input=True, err=True)

    to_send = [line for line in lines if line.recipient is not None]
    failure: RoxError | None = None
    gateway_texts: dict[str, str] = {}
    done: SendResult | None = None
    if to_send:
        try:
            client = Client(url, account, username, password, timeout=timeout, retries=retries)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--url") from None
        options: dict[str, Any] = {
            "send_later": when,
            "receipt_flag": receipt_flag,
            "receipt_url": receipt_url,
            "reply_type": reply_type,
            "reply_url": reply_url,
            "product": product,
            "idempotency_key": idempotency_key,
        }
        with client, _send_progress(csv_path is not None, len(to_send)) as progress:
            try:
                done = client.send(
                    [line.recipient for line in to_send], on_progress=progress, **options
                )
            except ValueError as exc:
                raise click.UsageError(str(exc)) from None
            except RoxError as exc:
                failure, done = exc, exc.partial
    for result in done.results if done is not None else []:
        line = to_send[result.index]
        line.result, line.result_text = result.result, result.result_text
        line.sms_id, line.due = result.sms_id, result.timestamp
        line.dest_tn = result.dest_tn  # as the gateway normalised it (E.164)
        gateway_texts.setdefault(result.result, result.result_text)
    if failure is not None:
        for line in to_send:
            if not line.result:
                _refuse(line, failure.code, f"not sent: {failure.text}")
    if report_path is not None:
        try:
            _send_report(report_path, lines)
        except OSError as exc:
            click.echo(f"cannot write the report {report_path}: {exc}", err=True)

    if failure is not None:
        if done is not None:
            _send_summary(lines, gateway_texts)
        _send_failed(failure)
    if csv_path is None:
        line = lines[0]
        if line.result == "0000":
            due = f"  due {line.due:%d-%b-%Y %H:%M:%S} UTC" if line.due else ""
            click.echo(f"queued {line.dest_tn}  SMSId {line.sms_id}{due}")
        else:
            click.echo(f"not queued {line.dest_tn}: {line.result} {line.result_text}")
    else:
        _send_summary(lines, gateway_texts)
        _send_problems(lines)
    if any(line.result != "0000" for line in lines):
        sys.exit(3)


def _send_failed(error: Any) -> None:
    from roxgate.client import RoxConnectionError

    connection = isinstance(error, RoxConnectionError)
    if connection:
        message = f"cannot reach the gateway: {error.text}"
    else:
        hint = _AUTH_HINT if error.code == "2002" else ""
        message = f"the gateway refused the request: {error.code} {error.text}{hint}"
    if error.partial is not None:
        queued = len(error.partial.queued)
        message += f"\n{queued} message(s) were queued before that"
    if error.idempotency_key and (connection or error.partial is not None):
        message += (
            f"\nrun the same command again with --idempotency-key {error.idempotency_key} "
            "to finish: nothing already accepted is queued twice"
        )
    raise click.ClickException(message)


@contextlib.contextmanager
def _send_progress(wanted: bool, total: int) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on standard error (a terminal only), fed by ``Client.send``."""
    if not wanted:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task("send", total=total)
        yield lambda sent, _total: bar.update(task, completed=sent)


# --- messages ----------------------------------------------------------------


@main.group()
def message() -> None:
    """Look at messages and what happened to them."""


@message.command("show")
@click.argument("sms_id")
@click.pass_context
def message_show(ctx: click.Context, sms_id: str) -> None:
    """A message's state and history: queued, submitted (carrier ids), receipts, final."""
    from roxgate.store.history import iso, message_history

    found = message_history(_engine(ctx), sms_id)
    if found is None:
        raise click.ClickException(f"no message {sms_id}")
    row, steps = found
    result = f" {row['result']} {row['result_text']}" if row["result"] else ""
    click.echo(f"{row['id']}  to {row['dest_tn']}  account {row['account_id']}")
    click.echo(
        f"status: {row['status']}{result}  parts: {row['parts']}  attempts: {row['attempts']}"
    )
    for step in steps:
        click.echo(f"  {iso(step.at)}  {step.what:<16} {step.detail}".rstrip())


@message.command("list")
@click.option("--last", "limit", type=int, default=20, show_default=True)
@click.option("--status", help="queued, submitting, submitted, delivered, failed or expired.")
@click.pass_context
def message_list(ctx: click.Context, limit: int, status: str | None) -> None:
    """The newest messages."""
    from roxgate.store.history import iso, recent_messages

    rows = recent_messages(_engine(ctx), limit, status)
    for r in rows:
        r["created"] = iso(r["created_at"])
    _table(rows, ["id", "account_id", "dest_tn", "status", "result", "parts", "created"])


def _report_bound(param: str, value: str | None, *, end: bool) -> int | None:
    from roxgate.store.usage import parse_time_bound

    if value is None:
        return None
    try:
        return parse_time_bound(value, end=end)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=param) from exc


@main.command("report")
@click.option(
    "--by",
    required=True,
    # roxgate.store.usage.DIMENSIONS, spelt out so `roxgate --help` need not load SQLAlchemy.
    type=click.Choice(["account", "product", "day", "status", "country"]),
    help="What to group messages by (day: the UTC day of intake).",
)
@click.option(
    "--from",
    "since",
    metavar="DATE|TIME",
    help="Messages taken in from then on: YYYY-MM-DD (from 00:00 UTC) or an ISO 8601 time "
    "(without an offset: UTC).",
)
@click.option(
    "--to",
    "until",
    metavar="DATE|TIME",
    help="…and before then: YYYY-MM-DD includes that whole UTC day; an ISO 8601 time is "
    "exclusive (without an offset: UTC).",
)
@click.option("--account", "account_id", help="Only this account's messages.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="table has a TOTAL row; csv has one line per key; json has rows and a total.",
)
@click.pass_context
def report(
    ctx: click.Context,
    by: str,
    since: str | None,
    until: str | None,
    account_id: str | None,
    fmt: str,
) -> None:
    """Usage: messages, SMS parts (credits) and outcomes per account, Product, day,
    status or destination country. Rejected recipients were never messages and
    are not counted."""
    from dataclasses import asdict
    from typing import cast

    from roxgate.store.usage import Dimension, to_csv, to_json, total, usage_report

    since_ms = _report_bound("--from", since, end=False)
    until_ms = _report_bound("--to", until, end=True)
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        raise click.BadParameter("must be after --from", param_hint="--to")
    dimension = cast(Dimension, by)
    rows = usage_report(_engine(ctx), dimension, since_ms, until_ms, account_id)
    if fmt == "csv":
        click.echo(to_csv(rows, dimension), nl=False)
    elif fmt == "json":
        click.echo(to_json(rows, dimension))
    else:
        table = [{by: r.key, **asdict(r)} for r in [*rows, total(rows)]]
        _table(table, [by, "messages", "parts", "delivered", "failed", "expired", "pending"])


# --- reporting back ----------------------------------------------------------


@main.group()
def inbound() -> None:
    """Inbound SMS (replies) and what was done with them."""


@inbound.command("list")
@click.option("--last", "limit", type=int, default=20, show_default=True)
@click.option("--unmatched", is_flag=True, help="Only those that matched no sent message.")
@click.pass_context
def inbound_list(ctx: click.Context, limit: int, unmatched: bool) -> None:
    """The newest inbound SMS."""
    from roxgate.store.history import iso, recent_inbound

    rows = recent_inbound(_engine(ctx), limit, unmatched)
    for r in rows:
        r["received"] = iso(r["received_at"])
        r["text"] = r["text"] if len(r["text"]) <= 40 else r["text"][:39] + "…"
    _table(rows, ["received", "source", "account_id", "matched_message_id", "action", "text"])


@main.group()
def mail() -> None:
    """The e-mail outbox: receipts and replies sent (or waiting) by e-mail."""


@mail.command("list")
@click.option("--last", "limit", type=int, default=20, show_default=True)
@click.option("--status", type=click.Choice(["pending", "sending", "sent", "failed"]))
@click.option("--body", is_flag=True, help="Print each e-mail in full.")
@click.pass_context
def mail_list(ctx: click.Context, limit: int, status: str | None, body: bool) -> None:
    """The newest e-mails. Without ROXGATE_SMTP_URL they wait here as pending."""
    from roxgate.store.history import iso, recent_mail

    rows = recent_mail(_engine(ctx), limit, status)
    if body:
        for r in rows:
            click.echo(f"--- {r['id']}  {r['status']}  {iso(r['created_at'])}")
            click.echo(f"To: {r['to_addr']}\nSubject: {r['subject']}\n\n{r['body']}")
        return
    for r in rows:
        r["created"] = iso(r["created_at"])
    _table(rows, ["created", "kind", "account_id", "to_addr", "status", "attempts", "subject"])


@main.group()
def callback() -> None:
    """The callbacks outbox: receipts and replies POSTed to customers."""


@callback.command("list")
@click.option("--last", "limit", type=int, default=20, show_default=True)
@click.option("--status", type=click.Choice(["pending", "sending", "delivered", "failed"]))
@click.pass_context
def callback_list(ctx: click.Context, limit: int, status: str | None) -> None:
    """The newest callbacks, with attempts and the last error (`message show` has each try)."""
    from roxgate.store.history import iso, recent_callbacks

    rows = recent_callbacks(_engine(ctx), limit, status)
    for r in rows:
        r["created"] = iso(r["created_at"])
        r["next"] = iso(r["next_at"]) if r["status"] == "pending" else ""
    _table(
        rows,
        ["created", "kind", "message_id", "url", "status", "attempts", "next", "last_error"],
    )


@main.command("sim-reply")
@click.argument("source")
@click.argument("text")
@click.option(
    "--url",
    default=None,
    help="The gateway (default: http(s)://ROXGATE_HOST:ROXGATE_PORT, https with TLS set).",
)
@click.pass_context
def sim_reply(ctx: click.Context, source: str, text: str, url: str | None) -> None:
    """Make the built-in simulator deliver an SMS from SOURCE (e.g. a reply or STOP).

    Works against a local `roxgate serve` running with ROXGATE_CARRIER=sim.
    """
    import json
    import ssl
    import urllib.error
    import urllib.request

    settings = _settings(ctx)
    if url is None:
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
        scheme = "https" if settings.tls_cert else "http"
        url = f"{scheme}://{host}:{settings.port}"
    tls = ssl.create_default_context()
    if settings.tls_cert:  # a self-signed certificate of the operator's own gateway
        tls.load_verify_locations(settings.tls_cert)
    data = json.dumps({"From": source, "Text": text}).encode()
    request = urllib.request.Request(  # noqa: S310 - the operator's own gateway
        url.rstrip("/") + "/sim/reply", data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=15, context=tls) as response:  # noqa: S310
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            answer = json.loads(exc.read())
        except ValueError:
            answer = {"ResultText": f"HTTP {exc.code}"}
        raise click.ClickException(str(answer.get("ResultText"))) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise click.ClickException(f"cannot reach the gateway at {url}: {exc}") from exc
    click.echo(f"{source} -> gateway: {answer.get('ResultText')}")


@main.command("workers")
@click.pass_context
def workers_list(ctx: click.Context) -> None:
    """The live sending processes (role worker or all) and their last heartbeat."""
    from roxgate.store.history import iso
    from roxgate.store.workers import live_workers

    with _engine(ctx).connect() as conn:
        rows = live_workers(conn)
    for r in rows:
        r["started"] = iso(int(r["started_at"]))  # type: ignore[call-overload]
        r["heartbeat"] = iso(int(r["heartbeat_at"]))  # type: ignore[call-overload]
    _table(rows, ["id", "role", "started", "heartbeat"])


# --- simulator ---------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=2775, show_default=True)
@click.option(
    "--receipt-delay", type=float, default=1.0, show_default=True, help="Seconds to each receipt."
)
@click.option("--ids", type=click.Choice(["hex", "decimal"]), default="hex", show_default=True)
def simulator(host: str, port: int, receipt_delay: float, ids: str) -> None:
    """Run the built-in carrier simulator on its own, as an SMSC on HOST:PORT.

    Point a gateway at it with ROXGATE_CARRIER=smpp://any:any@HOST:PORT to try
    a carrier set-up (separate binds, windows, TLS off) or to benchmark the
    gateway without the simulator sharing its process. Stop it with Ctrl-C.
    """
    import asyncio

    from roxgate.carriers.simulator import SmscSimulator

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(message)s")

    async def run() -> None:
        sim = SmscSimulator(receipt_delay=receipt_delay, message_id_style=ids, keep_submits=1000)  # type: ignore[arg-type]
        await sim.start(host, port)
        click.echo(f"carrier simulator listening on {host}:{sim.port}", err=True)
        try:
            await asyncio.Event().wait()
        finally:
            await sim.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
