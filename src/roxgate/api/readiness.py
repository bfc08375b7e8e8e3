"""``GET /readyz``: should this process get traffic (or count as a working worker)?

``/healthz`` says the process is alive (restart it if not); ``/readyz`` says
whether it can do its job right now: the database answers, and in the roles
that send (``worker``, ``all``) the carrier link is bound. A load balancer or
a Kubernetes readiness probe takes the process out of rotation while it is
not ready, without restarting it: the connector rebinds by itself.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Engine, literal, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from roxgate.store.schema import accounts

if TYPE_CHECKING:
    from roxgate.api.gateway import Gateway

log = logging.getLogger("roxgate.api")
DATABASE_TIMEOUT: Final = 2.0  # seconds; a probe's own timeout is usually a few more
OK: Final = "ok"


def _ping(engine: Engine) -> None:
    # A real table, not a bare SELECT 1: on SQLite that would not touch the file.
    with engine.connect() as conn:
        conn.execute(select(literal(1)).select_from(accounts).limit(1)).all()


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Read a finished probe's exception, so one nobody waited for is not reported."""
    if not task.cancelled():
        task.exception()


class Readiness:
    """The ``/readyz`` endpoint of one app."""

    def __init__(self, database_timeout: float = DATABASE_TIMEOUT) -> None:
        self.database_timeout = database_timeout
        self._probe: asyncio.Future[None] | None = None
        self._was_ready: bool | None = None

    async def endpoint(self, request: Request) -> Response:
        gateway: Gateway = request.app.state.gateway
        checks = {"database": await self._database(gateway)}
        if gateway.role != "api":
            checks["carrier"] = _carrier(gateway)
        ready = all(outcome == OK for outcome in checks.values())
        self._note(ready, checks)
        return JSONResponse(
            {"status": "ready" if ready else "unready", "checks": checks},
            status_code=200 if ready else 503,
            headers={"Cache-Control": "no-store"},
        )

    async def _database(self, gateway: Gateway) -> str:
        # One query at a time: while the database hangs, probes share the one
        # already waiting instead of taking every I/O thread of the gateway.
        probe = self._probe
        if probe is None or probe.done():
            probe = self._probe = asyncio.ensure_future(gateway.run(_ping, gateway.engine))
            probe.add_done_callback(_retrieve)
        try:
            await asyncio.wait_for(asyncio.shield(probe), self.database_timeout)
        except TimeoutError:
            return f"no answer within {self.database_timeout:g} s"
        except Exception as exc:
            # The type only: driver messages may name hosts and users.
            return f"error: {type(exc).__name__}"
        return OK

    def _note(self, ready: bool, checks: dict[str, str]) -> None:
        """Log when readiness changes (probes come every few seconds: not each one)."""
        if ready == self._was_ready:
            return
        if ready:
            if self._was_ready is not None:
                log.info("ready again")
        else:
            failing = ", ".join(f"{name}: {why}" for name, why in checks.items() if why != OK)
            log.warning("not ready: %s", failing)
        self._was_ready = ready


def _carrier(gateway: Gateway) -> str:
    carrier = gateway.carrier
    if carrier is None:
        return "not started"
    if carrier.bound:
        return OK
    return f"not bound to {carrier.config.url} ({carrier.submitter.state})"
