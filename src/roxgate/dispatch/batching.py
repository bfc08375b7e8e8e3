"""Turn many small writes into few large ones, without adding a timer.

Submissions and receipts arrive one at a time, thousands a second; writing
each as its own statement cost more Python time than the SMPP work around it.
A :class:`Batcher` keeps at most one write in flight: the first item is
written at once, and everything that arrives while that write commits goes
into the next one. Under light load a batch is one item and nothing waits;
under heavy load batches grow by themselves to what arrives during one
commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    def __init__(
        self,
        write: Callable[[list[Item]], Awaitable[Sequence[Result]]],
        max_items: int = 5_000,
    ) -> None:
        """``write(items)`` commits the items and returns one result per item, in order."""
        self._write = write
        self._max_items = max_items
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._writing = False
        self._task: asyncio.Task[None] | None = None

    async def add(self, item: Item) -> Result:
        """The item's result once it is committed (or the write's exception)."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if not self._writing:
            self._writing = True
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_items]
                del self._pending[: self._max_items]
                try:
                    results = await self._write([item for item, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"{len(results)} results for {len(batch)} items")
                except BaseException as exc:  # every waiter learns it was not written
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            # Items added while a cancelled drain ended are taken by the next add().
            self._writing = False
