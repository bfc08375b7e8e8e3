"""The carrier simulator as an SMSC of the test's own, on a port that stays the same
when it is stopped and started again (an SMSC outage as the gateway sees it)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from roxgate.carriers.simulator import SmscSimulator
from tests.conftest import free_port

T = TypeVar("T")


class ThreadedSmsc:
    """An :class:`SmscSimulator` on its own event loop, in a daemon thread."""

    def __init__(self, port: int | None = None, **options: Any) -> None:
        self.port = port or free_port()
        self.options = options
        self.sim: SmscSimulator | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 15) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def url(self, system_id: str, password: str, **options: str) -> str:
        """A carrier URL for the gateway (the simulator takes any credentials)."""
        query = "&".join(f"{k}={v}" for k, v in options.items())
        base = f"smpp://{system_id}:{password}@127.0.0.1:{self.port}"
        return f"{base}?{query}" if query else base

    def start(self) -> None:
        async def listen() -> SmscSimulator:
            sim = SmscSimulator(**self.options)
            await sim.start("127.0.0.1", self.port)
            return sim

        assert self.sim is None, "already running"
        self.sim = self._call(listen())

    def stop(self) -> None:
        """Close the port and every connection (the gateway sees its link drop)."""
        sim, self.sim = self.sim, None
        if sim is not None:
            self._call(sim.stop())

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
