"""Operator actions on accounts and users (what the `roxgate account|user` commands do)."""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass
from typing import Any

import phonenumbers
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from roxgate.accounts.passwords import hash_password
from roxgate.sms.phone import normalise
from roxgate.store.ids import now_ms
from roxgate.store.schema import accounts, number_lists, users

ACCOUNT_ID_RE = re.compile(r"^CI\d{8}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
SENDER_ALNUM_RE = re.compile(r"^[A-Za-z0-9 ]{1,11}$")
SENDER_NUMERIC_RE = re.compile(r"^\+?\d{1,15}$")


class AdminError(ValueError):
    """An operator command that cannot be carried out, with the reason."""


@dataclass(frozen=True, slots=True)
class CreatedAccount:
    id: str
    callback_secret: str


def _check_region(region: str) -> str:
    region = region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise AdminError(f"unknown region {region!r}: use an ISO 3166 code such as AU, NZ, GB, US")
    return region


def _check_tz_offset(offset: int) -> int:
    if not -840 <= offset <= 720:
        raise AdminError("tz offset must be between -840 and 720 minutes (UTC+10:00 is -600)")
    return offset


def _check_sender_id(sender_id: str | None) -> str | None:
    if sender_id is None:
        return None
    if SENDER_NUMERIC_RE.match(sender_id) or SENDER_ALNUM_RE.match(sender_id):
        return sender_id
    raise AdminError("sender id must be a number (up to 15 digits) or 1-11 letters, digits, spaces")


def _check_nets(nets: str | None) -> str | None:
    if nets is None or nets.strip() == "":
        return None
    parsed = []
    for item in nets.split(","):
        try:
            parsed.append(str(ipaddress.ip_network(item.strip(), strict=False)))
        except ValueError as exc:
            raise AdminError(
                f"not a network: {item.strip()!r} (use CIDR, e.g. 203.0.113.0/24)"
            ) from exc
    return ",".join(parsed)


def _check_countries(countries: str | None) -> str | None:
    if countries is None or countries.strip() == "":
        return None
    return ",".join(_check_region(c.strip()) for c in countries.split(","))


def _check_credits(credits: int | None) -> int | None:
    if credits is not None and credits < 0:
        raise AdminError("credits cannot be negative")
    return credits


def _check_rate(name: str, per_minute: int | None) -> int | None:
    if per_minute is not None and per_minute < 0:
        raise AdminError(f"{name} cannot be negative (0 is unlimited)")
    return per_minute


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if not EMAIL_RE.match(email) or len(email) > 254:
        raise AdminError(f"not an e-mail address: {email!r}")
    return email


def add_account(
    engine: Engine,
    account_id: str,
    name: str,
    region: str = "AU",
    tz_offset: int = 0,
    sender_id: str | None = None,
    credits: int | None = None,
    allowed_nets: str | None = None,
    allowed_countries: str | None = None,
    api_enabled: bool = True,
    rate_requests: int | None = None,
    rate_messages: int | None = None,
) -> CreatedAccount:
    """Create an account. The rate limits are per minute; None: the gateway's
    defaults, 0: unlimited."""
    if not ACCOUNT_ID_RE.match(account_id):
        raise AdminError("account id must be CI followed by 8 digits, e.g. CI00000001")
    secret = secrets.token_urlsafe(32)
    now = now_ms()
    row = {
        "id": account_id,
        "name": name,
        "region": _check_region(region),
        "tz_offset": _check_tz_offset(tz_offset),
        "status": "active",
        "api_enabled": api_enabled,
        "sender_id": _check_sender_id(sender_id),
        "allowed_nets": _check_nets(allowed_nets),
        "allowed_countries": _check_countries(allowed_countries),
        "credits": _check_credits(credits),
        "rate_requests_per_minute": _check_rate("rate requests", rate_requests),
        "rate_messages_per_minute": _check_rate("rate messages", rate_messages),
        "callback_secret": secret,
        "created_at": now,
        "updated_at": now,
    }
    try:
        with engine.begin() as conn:
            conn.execute(insert(accounts), row)
    except IntegrityError as exc:
        raise AdminError(f"account {account_id} already exists") from exc
    return CreatedAccount(account_id, secret)


_UNSET: Any = object()


def update_account(
    engine: Engine,
    account_id: str,
    *,
    name: str | None = None,
    region: str | None = None,
    tz_offset: int | None = None,
    sender_id: str | None = _UNSET,
    credits: int | None = _UNSET,
    allowed_nets: str | None = _UNSET,
    allowed_countries: str | None = _UNSET,
    api_enabled: bool | None = None,
    status: str | None = None,
    rate_requests: int | None = _UNSET,
    rate_messages: int | None = _UNSET,
) -> None:
    """Change the given fields; ``_UNSET`` leaves one alone, ``None`` clears it."""
    values: dict[str, Any] = {}
    if name is not None:
        values["name"] = name
    if region is not None:
        values["region"] = _check_region(region)
    if tz_offset is not None:
        values["tz_offset"] = _check_tz_offset(tz_offset)
    if sender_id is not _UNSET:
        values["sender_id"] = _check_sender_id(sender_id)
    if credits is not _UNSET:
        values["credits"] = _check_credits(credits)
    if allowed_nets is not _UNSET:
        values["allowed_nets"] = _check_nets(allowed_nets)
    if allowed_countries is not _UNSET:
        values["allowed_countries"] = _check_countries(allowed_countries)
    if api_enabled is not None:
        values["api_enabled"] = api_enabled
    if rate_requests is not _UNSET:
        values["rate_requests_per_minute"] = _check_rate("rate requests", rate_requests)
    if rate_messages is not _UNSET:
        values["rate_messages_per_minute"] = _check_rate("rate messages", rate_messages)
    if status is not None:
        if status not in ("active", "suspended"):
            raise AdminError("status must be active or suspended")
        values["status"] = status
    if not values:
        raise AdminError("nothing to change")
    values["updated_at"] = now_ms()
    with engine.begin() as conn:
        result = conn.execute(update(accounts).where(accounts.c.id == account_id).values(values))
    if result.rowcount == 0:
        raise AdminError(f"no account {account_id}")


def list_accounts(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(accounts).order_by(accounts.c.id)).mappings().all()
    return [{k: v for k, v in row.items() if k != "callback_secret"} for row in rows]


def _account_region(engine: Engine, account_id: str) -> str:
    """The account's default region (national numbers are read in it)."""
    with engine.connect() as conn:
        region = conn.execute(
            select(accounts.c.region).where(accounts.c.id == account_id)
        ).scalar_one_or_none()
    if region is None:
        raise AdminError(f"no account {account_id}")
    return str(region)


def _normalise_mobile(mobile: str | None, region: str) -> str | None:
    if mobile is None or mobile == "":
        return None
    parsed = normalise(mobile, region)
    if parsed is None:
        raise AdminError(f"not a valid mobile number: {mobile!r}")
    return parsed.e164


def add_user(
    engine: Engine, account_id: str, email: str, password: str, mobile: str | None = None
) -> int:
    email = normalise_email(email)
    if len(password) < 8:
        raise AdminError("password must be at least 8 characters")
    region = _account_region(engine, account_id)
    now = now_ms()
    row = {
        "account_id": account_id,
        "email": email,
        "password_hash": hash_password(password),
        "mobile": _normalise_mobile(mobile, region),
        "status": "active",
        "failed_logins": 0,
        "locked_until": None,
        "created_at": now,
        "updated_at": now,
    }
    try:
        with engine.begin() as conn:
            return int(conn.execute(insert(users), row).inserted_primary_key[0])
    except IntegrityError as exc:
        raise AdminError(f"user {email} already exists in account {account_id}") from exc


def _update_user(engine: Engine, account_id: str, email: str, values: dict[str, Any]) -> None:
    values["updated_at"] = now_ms()
    with engine.begin() as conn:
        result = conn.execute(
            update(users)
            .where(users.c.account_id == account_id, users.c.email == normalise_email(email))
            .values(values)
        )
    if result.rowcount == 0:
        raise AdminError(f"no user {email} in account {account_id}")


def set_password(engine: Engine, account_id: str, email: str, password: str) -> None:
    if len(password) < 8:
        raise AdminError("password must be at least 8 characters")
    # A new password also lifts a lock: the operator has just vouched for the user.
    _update_user(
        engine,
        account_id,
        email,
        {"password_hash": hash_password(password), "failed_logins": 0, "locked_until": None},
    )


def set_user_status(engine: Engine, account_id: str, email: str, status: str) -> None:
    if status not in ("active", "disabled"):
        raise AdminError("status must be active or disabled")
    _update_user(engine, account_id, email, {"status": status})


def unlock_user(engine: Engine, account_id: str, email: str) -> None:
    _update_user(engine, account_id, email, {"failed_logins": 0, "locked_until": None})


def list_users(engine: Engine, account_id: str | None = None) -> list[dict[str, Any]]:
    query = select(
        users.c.account_id,
        users.c.email,
        users.c.mobile,
        users.c.status,
        users.c.failed_logins,
        users.c.locked_until,
    ).order_by(users.c.account_id, users.c.email)
    if account_id is not None:
        query = query.where(users.c.account_id == account_id)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def change_number_list(
    engine: Engine, account_id: str, kind: str, numbers: list[str], add: bool
) -> list[str]:
    """Add numbers to (or remove them from) an account's block or opt-out list."""
    region = _account_region(engine, account_id)
    e164 = []
    for number in numbers:
        parsed = normalise(number, region)
        if parsed is None:
            raise AdminError(f"not a valid phone number: {number!r}")
        e164.append(parsed.e164)
    now = now_ms()
    with engine.begin() as conn:
        for number in e164:
            conn.execute(
                delete(number_lists).where(
                    number_lists.c.account_id == account_id,
                    number_lists.c.kind == kind,
                    number_lists.c.number == number,
                )
            )
            if add:
                conn.execute(
                    insert(number_lists),
                    {"account_id": account_id, "kind": kind, "number": number, "created_at": now},
                )
    return e164


def list_number_lists(
    engine: Engine, account_id: str, kind: str | None = None
) -> list[dict[str, Any]]:
    """An account's block-list and opt-out entries (``kind``: block | optout | None = both)."""
    query = select(number_lists).where(number_lists.c.account_id == account_id)
    if kind is not None:
        query = query.where(number_lists.c.kind == kind)
    with engine.connect() as conn:
        if conn.execute(select(accounts.c.id).where(accounts.c.id == account_id)).first() is None:
            raise AdminError(f"no account {account_id}")
        rows = conn.execute(query.order_by(number_lists.c.kind, number_lists.c.number))
        return [dict(r) for r in rows.mappings()]


def callback_secret(engine: Engine, account_id: str, rotate: bool = False) -> str:
    """The account's callback secret; with ``rotate`` a new one replaces it at once.

    Callbacks are signed when they are posted, so after a rotation every
    callback still waiting (retries included) carries the new signature.
    """
    with engine.begin() as conn:
        if rotate:
            conn.execute(
                update(accounts)
                .where(accounts.c.id == account_id)
                .values(callback_secret=secrets.token_urlsafe(32), updated_at=now_ms())
            )
        secret = conn.execute(
            select(accounts.c.callback_secret).where(accounts.c.id == account_id)
        ).scalar_one_or_none()
    if secret is None:
        raise AdminError(f"no account {account_id}")
    return str(secret)


def set_user_mobile(engine: Engine, account_id: str, email: str, mobile: str | None) -> None:
    """Set (or with ``None`` clear) the mobile number replies by SMS go to."""
    region = _account_region(engine, account_id)
    _update_user(engine, account_id, email, {"mobile": _normalise_mobile(mobile, region)})
