"""Group commit for the dispatcher's bookkeeping.

Each submit outcome, receipt and inbound message must be committed before
anyone relies on it (a receipt before its deliver_sm_resp). One fsync'd
transaction each capped dispatch at ~200 messages/s (bench/dispatch.py), so
the recorder collects whatever is waiting and applies it all in one
transaction in a thread, then resolves each caller. If the batch fails, each
operation is retried on its own, so one bad operation cannot fail the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from roxgate.store.engine import immediate

log = logging.getLogger(__name__)
T = TypeVar("T")
_Op = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]


class Recorder:
    def __init__(self, engine: Engine, max_batch: int = 2000) -> None:
        self._engine = immediate(engine)
        self._max_batch = max_batch
        self._pending: list[_Op] = []
        self._more = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="recorder")

    async def stop(self) -> None:
        if self._task is not None:
            if self._pending:  # let the last callers' records be committed
                await asyncio.gather(*(f for _, _, f in self._pending), return_exceptions=True)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def do(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in the next batch; return its result once committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, args, future))
        self._more.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._more.wait()
            self._more.clear()
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                results = await asyncio.to_thread(self._apply, batch)
                for (_, _, future), (ok, value) in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)

    def _apply(self, batch: list[_Op]) -> list[tuple[bool, Any]]:
        try:
            with self._engine.begin() as conn:
                results = [(True, fn(conn, *args)) for fn, args, _ in batch]
            self.batches += 1
            return results
        except Exception:
            if len(batch) == 1:
                log.exception("recording failed")
            else:
                log.warning("a batch of %d records failed; retrying one by one", len(batch))
        results = []
        for fn, args, _ in batch:
            try:
                with self._engine.begin() as conn:
                    results.append((True, self._one(conn, fn, args)))
            except Exception as exc:
                log.exception("recording %s failed", getattr(fn, "__name__", fn))
                results.append((False, exc))
        return results

    @staticmethod
    def _one(conn: Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        return fn(conn, *args)
