"""Sending the mail outbox over SMTP.

Receipts and replies that end up as e-mail (SPEC.md §3) are rows of
``mail_outbox``, written in the transaction that caused them
(``report/outbox.py``). The :class:`MailWorker` claims due rows with a lease,
sends them over one SMTP connection per batch, and records every outcome in
one call per batch, through the gateway's single group-commit writer.

**No SMTP server configured.** When ``ROXGATE_SMTP_URL`` is empty the gateway
starts no MailWorker: e-mails simply wait in the outbox (status ``pending``),
where the operator sees them with the CLI's outbox listing, and they go out
as soon as a server is configured and the gateway restarted. Nothing is lost
and nothing is retried in the meantime.

**Outcomes.** A message the server accepts is ``sent`` (with ``sent_at``). A
5xx answer to its recipient (RCPT) or to its content (DATA), or a recipient
address that is not one, is permanent: ``failed`` at once. Anything else
(connection refused, timeout, TLS or login failure, a 4xx answer, a 5xx answer
to our own sender address, which is a setting the operator can fix) is
temporary: the message is tried again after the N-th of ``retry_waits`` once N
attempts have failed, and is ``failed`` after the last. Every attempt counts
(``attempts``) and leaves its error in ``last_error``.

**Leases.** No message is started once four fifths of the batch's lease have
passed (another worker could hold it after that); messages claimed but not
tried, then or because the worker is stopping, go back to the outbox without
an attempt counted.

Delivery is at least once: a message the server accepted but whose outcome
could not be recorded is sent again after its lease. Its ``Message-ID`` is
derived from the outbox row, so a repeat carries the same one and mail
systems can recognise it.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.errors
import email.policy
import logging
import math
import os
import random
import re
import socket
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import aiosmtplib
from sqlalchemy import Connection, update

from roxgate.report.outbox import MailJob, MailResult, claim_mail, record_mail_results
from roxgate.store.ids import now_ms
from roxgate.store.schema import mail_outbox

log = logging.getLogger(__name__)

# ``record(fn, *args)`` runs ``fn(conn, *args)`` in the group-commit writer.
Record = Callable[..., Awaitable[Any]]

TlsMode = Literal["implicit", "starttls", "opportunistic", "none"]

DEFAULT_RETRY_WAITS: tuple[float, ...] = (60, 300, 900, 3600, 3 * 3600, 6 * 3600)
DEFAULT_TIMEOUT = 30.0
_MAX_ERROR = 1000  # characters of an error kept in last_error


# --- the server ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class SmtpTarget:
    """Where and how to hand e-mail over. ``repr`` and ``str`` never show the password.

    ``tls``: ``implicit`` (smtps://, TLS from the first byte), ``starttls``
    (upgrade required: no upgrade, no mail), ``opportunistic`` (upgrade when
    the server offers it) or ``none`` (plain text).
    """

    host: str
    port: int
    tls: TlsMode = "opportunistic"
    username: str | None = None
    password: str | None = None
    timeout: float = DEFAULT_TIMEOUT  # seconds per SMTP command
    verify: bool = True  # check the server's certificate and name

    def __repr__(self) -> str:
        return (
            f"SmtpTarget(host={self.host!r}, port={self.port}, tls={self.tls!r}, "
            f"username={self.username!r}, password={_mask(self.password)!r}, "
            f"timeout={self.timeout}, verify={self.verify})"
        )

    def __str__(self) -> str:
        """The target as a URL for logs, with the password masked."""
        scheme = "smtps" if self.tls == "implicit" else "smtp"
        user = "" if self.username is None else f"{quote(self.username, safe='')}:***@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        params = []
        if self.tls == "starttls":
            params.append("starttls=1")
        elif self.tls == "none":
            params.append("starttls=0")
        if self.timeout != DEFAULT_TIMEOUT:
            params.append(f"timeout={self.timeout:g}")
        if not self.verify:
            params.append("verify=0")
        query = "?" + "&".join(params) if params else ""
        return f"{scheme}://{user}{host}:{self.port}{query}"


def _mask(password: str | None) -> str | None:
    return None if password is None else "***"


# Characters that end the user-info part of a URL early when not percent-encoded;
# a password containing one shows up as a bad port, path or parameter.
_ENCODE_HINT = " (percent-encode '/', '?', '#' and '@' in the user name and password)"
_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def parse_smtp_url(url: str) -> SmtpTarget:
    """``smtp://[USER:PASSWORD@]HOST[:PORT][?starttls=1|0&timeout=SECONDS&verify=1|0]``
    or ``smtps://…`` (same parameters except ``starttls``).

    - ``smtps://``: TLS from the first byte (implicit TLS); port 465 by default.
    - ``smtp://``: port 25 by default.

      - ``starttls=1``: STARTTLS is required; a server that does not offer it
        gets no mail (the error is recorded and the mail retried).
      - ``starttls=0``: never upgrade; everything, credentials included,
        travels in plain text (for a relay on the same host or network).
      - neither, without credentials: opportunistic STARTTLS, used when the
        server offers it (what MTAs do).
      - neither, with credentials: STARTTLS is required, so that a password
        is never sent in plain text unless the operator wrote ``starttls=0``
        (an attacker could otherwise strip the STARTTLS offer).

    - ``verify=0`` accepts any certificate (a relay with a self-signed one);
      ``timeout`` is the limit in seconds for each SMTP command (default 30).

    User name and password are percent-decoded. Errors are ``ValueError``
    whose message never repeats the URL, which may hold the password.
    """
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
    except ValueError:
        raise ValueError("SMTP URL: cannot be parsed" + _ENCODE_HINT) from None
    if scheme not in ("smtp", "smtps") or not url.strip().lower().startswith(scheme + "://"):
        raise ValueError("SMTP URL: must start with smtp:// or smtps://")
    if parts.fragment or parts.path not in ("", "/"):
        raise ValueError("SMTP URL: unexpected text after the host" + _ENCODE_HINT)

    params: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in ("starttls", "timeout", "verify"):
            # The name is not repeated: it may be a piece of an unencoded password.
            raise ValueError(
                "SMTP URL: unknown parameter (known: starttls, timeout, verify)" + _ENCODE_HINT
            )
        if key in params:
            raise ValueError(f"SMTP URL: parameter {key} given twice")
        params[key] = value

    host = parts.hostname
    if not host:
        raise ValueError("SMTP URL: the host is missing")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("SMTP URL: the port must be a number from 1 to 65535" + _ENCODE_HINT)

    username = password = None
    if "@" in parts.netloc:
        username = unquote(parts.username or "")
        if not username:
            raise ValueError("SMTP URL: the user name is empty")
        if parts.password is None:
            raise ValueError("SMTP URL: a user name needs a password (USER:PASSWORD@HOST)")
        password = unquote(parts.password)

    starttls = _flag(params, "starttls")
    verify = _flag(params, "verify")
    timeout = DEFAULT_TIMEOUT
    if "timeout" in params:
        try:
            timeout = float(params["timeout"])
        except ValueError:
            timeout = math.nan
        if not (0 < timeout <= 3600):  # also false for NaN
            raise ValueError("SMTP URL: timeout must be seconds, more than 0 and at most 3600")

    tls: TlsMode
    if scheme == "smtps":
        if starttls is not None:
            raise ValueError(
                "SMTP URL: starttls does not apply to smtps:// (TLS from the first byte); "
                "for STARTTLS write smtp://…?starttls=1"
            )
        tls = "implicit"
    elif starttls is None:
        tls = "starttls" if username is not None else "opportunistic"
    else:
        tls = "starttls" if starttls else "none"
    return SmtpTarget(
        host=host,
        port=port or (465 if scheme == "smtps" else 25),
        tls=tls,
        username=username,
        password=password,
        timeout=timeout,
        verify=True if verify is None else verify,
    )


def _flag(params: dict[str, str], key: str) -> bool | None:
    if key not in params:
        return None
    value = _FLAGS.get(params[key].strip().lower())
    if value is None:
        raise ValueError(f"SMTP URL: {key} must be 1 or 0")
    return value


# --- the messages -----------------------------------------------------------------

# Anything that could end a header line or confuse a reader: C0 controls (CR
# and LF among them), DEL, and the Unicode line and paragraph separators.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")


def clean_subject(subject: str) -> str:
    """The subject on one line: control characters become spaces.

    Subjects hold customer data (a recipient's name); a line break in one
    must never start a header of its own.
    """
    return " ".join(_CONTROLS.sub(" ", subject).split())


def parse_sender(mail_from: str) -> Address:
    """``addr@domain`` or ``Display Name <addr@domain>``, else ``ValueError``."""
    if _CONTROLS.search(mail_from):
        raise ValueError("mail_from must be one line")
    name, addr = parseaddr(mail_from)
    try:
        if "@" not in addr:
            raise ValueError
        return Address(display_name=name, addr_spec=addr)
    except (ValueError, IndexError, email.errors.HeaderParseError):
        raise ValueError(f"mail_from is not an e-mail address: {mail_from!r}") from None


class _CachedHeaderRegistry(HeaderRegistry):
    """The standard registry makes a new class for every header it parses or sets.

    Classes are freed only by the cyclic garbage collector, which ``serve`` runs
    rarely (gc thresholds raised for intake): a burst of e-mails after a
    customer's callback outage left tens of MB of dead header classes (measured
    by bench/soak.py). One class per header name is all that is needed.
    """

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


_POLICY = email.policy.default.clone(header_factory=_CachedHeaderRegistry())


def build_message(job: MailJob, sender: Address, date: datetime | None = None) -> EmailMessage:
    """The e-mail for an outbox row: plain UTF-8 text. ``ValueError`` if it cannot be
    built (an invalid recipient address): retrying would not help."""
    try:
        to = Address(addr_spec=job.to_addr.strip())
    except (ValueError, IndexError, email.errors.HeaderParseError):
        raise ValueError(f"invalid recipient address {job.to_addr!r}") from None
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = clean_subject(job.subject)
    msg["Date"] = format_datetime(date or datetime.now(UTC))
    # From the row's id, so a repeat (at-least-once) carries the same one.
    msg["Message-ID"] = f"<{job.id}@{sender.domain or 'localhost'}>"
    # RFC 3834: vacation responders and the like must not answer a robot.
    msg["Auto-Submitted"] = "auto-generated"
    # Quoted-printable is 7-bit safe: right whether or not the server speaks 8BITMIME.
    msg.set_content(job.body, charset="utf-8", cte="quoted-printable")
    return msg


def release_mail(conn: Connection, owner: str, ids: Sequence[str]) -> int:
    """Give claimed e-mails back unsent (the worker is stopping or ran out of lease)
    without counting an attempt. Kept here, next to its only user, so that the
    outbox module's contract stays as it is."""
    if not ids:
        return 0
    return conn.execute(
        update(mail_outbox)
        .where(
            mail_outbox.c.id.in_(list(ids)),
            mail_outbox.c.status == "sending",
            mail_outbox.c.lease_owner == owner,
        )
        .values(status="pending", lease_owner=None, lease_until=None, updated_at=now_ms())
    ).rowcount


# --- the worker ---------------------------------------------------------------------


def mail_worker_id() -> str:
    # lease_owner holds 64 characters; host names can be longer.
    return f"mail:{socket.gethostname()[:32]}:{os.getpid()}:{random.getrandbits(32):08x}"


class MailWorker:
    """Claims due e-mails and sends them; see the module docstring for the outcomes.

    ``record(fn, *args)`` runs ``fn(conn, *args)`` in the gateway's group-commit
    writer; every database write goes through it. ``retry_waits`` are seconds:
    the N-th is waited after N failed attempts, so N waits mean 1 + N attempts.
    """

    def __init__(
        self,
        record: Record,
        target: SmtpTarget,
        mail_from: str,
        *,
        owner: str | None = None,
        lease_ms: int = 120_000,
        batch: int = 100,
        retry_waits: Sequence[float] = DEFAULT_RETRY_WAITS,
        poll_seconds: float = 2.0,
    ) -> None:
        if batch < 1 or lease_ms < 1 or poll_seconds <= 0:
            raise ValueError("batch, lease_ms and poll_seconds must be positive")
        if any(not (w >= 0) for w in retry_waits):
            raise ValueError("retry_waits must be seconds, 0 or more")
        self._record = record
        self.target = target
        self.mail_from = mail_from
        self._sender = parse_sender(mail_from)
        self.owner = owner or mail_worker_id()
        self.lease_ms = lease_ms
        self.batch = batch
        self.retry_waits = tuple(float(w) for w in retry_waits)
        self.poll_seconds = poll_seconds
        self.counts: Counter[str] = Counter()  # sent / retry / failed since start
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[Any] | None = None
        self._finished = asyncio.Event()
        self._ehlo_name: str | None = None

    def wake(self) -> None:
        """New mail was committed: look now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        self._task = asyncio.current_task()
        self._finished.clear()
        log.info("mail: sending through %s as %s", self.target, self.mail_from)
        try:
            while not self._stopping:
                # Cleared before claiming: a wake() during the batch is not lost.
                self._wake.clear()
                jobs: list[MailJob] = []
                try:
                    jobs = await self._record(claim_mail, self.owner, self.batch, self.lease_ms)
                    if jobs:
                        await self._send_batch(jobs)
                except Exception:
                    # Claimed rows come back when their lease ends.
                    log.exception("mail: a batch failed; will try again")
                    jobs = []  # wait before the next try, no tight loop
                if len(jobs) < self.batch and not self._stopping:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
        finally:
            self._finished.set()

    async def stop(self, grace: float = 10.0) -> None:
        """Send no further message; let the one in flight finish and the batch be
        recorded for up to ``grace`` seconds, then cancel. Claimed messages not
        sent are given back to the outbox."""
        self._stopping = True
        self._wake.set()
        task = self._task
        if task is None or task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._finished.wait()), grace)
        except TimeoutError:
            log.warning("mail: still sending after %.0f s; cancelled (leases will end)", grace)
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)

    # --- one batch ---------------------------------------------------------------

    async def _send_batch(self, jobs: list[MailJob]) -> None:
        # Nothing may be sent once the lease could have ended (another worker
        # may then hold the row): stop at four fifths of it, leaving the rest
        # for recording.
        deadline = asyncio.get_running_loop().time() + self.lease_ms * 0.8 / 1000
        results: list[MailResult] = []
        try:
            unsent = await self._deliver(jobs, deadline, results)
        except asyncio.CancelledError:
            # Cancelled mid-batch (stop() ran out of grace): what the server
            # accepted so far is still recorded, or it would go out twice; the
            # rest comes back when its lease ends.
            await asyncio.shield(self._finish(results, []))
            raise
        # Shielded for the same reason.
        await asyncio.shield(self._finish(results, unsent))

    async def _finish(self, results: list[MailResult], unsent: list[str]) -> None:
        for attempt in range(3):
            try:
                await self._record(record_mail_results, self.owner, results)
                if unsent:
                    await self._record(release_mail, self.owner, unsent)
                return
            except Exception:
                log.exception("mail: recording %d outcomes failed (try %d)", len(results), attempt)
                await asyncio.sleep(1.0)
        log.error("mail: outcomes not recorded; these e-mails go out again after their lease")

    async def _deliver(
        self, jobs: list[MailJob], deadline: float, results: list[MailResult]
    ) -> list[str]:
        """Send ``jobs``, adding each outcome to ``results`` as it is known; returns
        the ids of those not tried at all."""
        todo: deque[tuple[MailJob, EmailMessage]] = deque()
        for job in jobs:
            try:
                todo.append((job, build_message(job, self._sender)))
            except ValueError as exc:
                log.warning("mail %s cannot be sent: %s", job.id, exc)
                results.append(self._give_up(job, str(exc)))
        if todo and self._ehlo_name is None:
            # Once per worker: looking up our own name can be slow (DNS).
            self._ehlo_name = await asyncio.to_thread(socket.getfqdn)

        sender = self._sender.addr_spec
        while todo and not self._stopping:
            smtp = self._client()
            answered = 0  # messages the server answered on this connection
            in_flight: MailJob | None = None
            broken: str | None = None  # why the connection failed
            budget = asyncio.timeout_at(deadline)
            try:
                async with budget:
                    await smtp.connect()
                    while todo and not self._stopping:
                        job, message = todo[0]
                        in_flight, rcpt = job, job.to_addr.strip()
                        try:
                            await smtp.send_message(message, sender=sender, recipients=[rcpt])
                        except Exception as exc:
                            todo.popleft()
                            in_flight = None
                            results.append(self._refused(job, exc))
                            if isinstance(exc, _ANSWERS):
                                answered += 1
                            if not smtp.is_connected:
                                broken = self._describe(exc)
                                break
                        else:
                            todo.popleft()
                            in_flight = None
                            results.append(MailResult(job.id, sent=True))
                            self.counts["sent"] += 1
                            answered += 1
                    if smtp.is_connected:
                        with contextlib.suppress(Exception):  # accepted is accepted
                            await smtp.quit()
            except Exception as exc:
                if budget.expired():
                    # Out of lease: the message in flight may or may not have
                    # gone; the ones after it are given back untried.
                    if in_flight is not None:
                        todo.popleft()
                        results.append(self._retry(in_flight, "timed out (lease)"))
                    break
                broken = self._describe(exc)  # connect, STARTTLS or login failed
            finally:
                smtp.close()
            if broken is not None:
                if answered:
                    # The server worked until now (it may limit messages per
                    # connection): the rest go over a new connection.
                    log.info("mail: connection lost (%s); reconnecting", broken)
                    continue
                log.warning("mail: cannot send through %s: %s", self.target, broken)
                results.extend(self._retry(job, broken) for job, _ in todo)
                todo.clear()
        return [job.id for job, _ in todo]

    def _client(self) -> aiosmtplib.SMTP:
        t = self.target
        start_tls = {"starttls": True, "opportunistic": None}.get(t.tls, False)
        return aiosmtplib.SMTP(
            hostname=t.host,
            port=t.port,
            use_tls=t.tls == "implicit",
            start_tls=start_tls,
            validate_certs=t.verify,
            timeout=t.timeout,
            username=t.username,
            password=t.password,
            local_hostname=self._ehlo_name,
        )

    # --- outcomes -----------------------------------------------------------------

    def _refused(self, job: MailJob, exc: Exception) -> MailResult:
        """The outcome of a message the server did not take."""
        error = self._describe(exc)
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            permanent = all(r.code >= 500 for r in exc.recipients)
        elif isinstance(exc, aiosmtplib.SMTPSenderRefused):
            permanent = False  # our sender address: a setting, fixable; not the message
        elif isinstance(exc, aiosmtplib.SMTPResponseException):
            permanent = exc.code >= 500
        else:
            # Refused before anything was sent (an address this server cannot
            # take, e.g. non-ASCII without SMTPUTF8): the same every time.
            permanent = isinstance(exc, (aiosmtplib.SMTPNotSupported, ValueError))
        if permanent:
            log.warning("mail %s to %s failed: %s", job.id, job.to_addr, error)
            return self._give_up(job, error)
        return self._retry(job, error)

    def _retry(self, job: MailJob, error: str) -> MailResult:
        failed = job.attempts + 1  # counting this one
        if failed > len(self.retry_waits):
            log.warning("mail %s to %s failed after %d attempts", job.id, job.to_addr, failed)
            return self._give_up(job, f"{error} (gave up after {failed} attempts)")
        self.counts["retry"] += 1
        wait_ms = round(self.retry_waits[failed - 1] * 1000)
        return MailResult(job.id, sent=False, error=error, next_at=now_ms() + wait_ms)

    def _give_up(self, job: MailJob, error: str) -> MailResult:
        self.counts["failed"] += 1
        return MailResult(job.id, sent=False, error=_cut(error), next_at=None)

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            text = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            text = f"recipient refused: {text}"
        elif isinstance(exc, aiosmtplib.SMTPSenderRefused):
            text = f"sender {exc.sender} refused: {exc.code} {exc.message}"
        elif isinstance(exc, aiosmtplib.SMTPResponseException):
            text = f"{exc.code} {exc.message}"
        else:
            text = f"{type(exc).__name__}: {exc}"
        if "CERTIFICATE_VERIFY_FAILED" in text:
            text += " (the server's certificate is not trusted: fix it, or add verify=0)"
        # Belt and braces: no server message or library error may carry it out.
        if self.target.password:
            text = text.replace(self.target.password, "***")
        return _cut(text)


# Exceptions that mean the server answered the message (with a refusal).
_ANSWERS = (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused)


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"
