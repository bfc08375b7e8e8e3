"""The ASGI application served by ``roxgate serve``."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from roxgate.api.gateway import Gateway
from roxgate.api.send import send
from roxgate.api.sim import sim_reply
from roxgate.config import Settings


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(settings: Settings, dispatch: bool = True) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gateway = Gateway(settings)
        await gateway.start(dispatch)
        # Everything built so far (metadata, compiled queries, phone tables)
        # lives for the whole process: keep it out of every future GC scan.
        gc.collect()
        gc.freeze()
        app.state.gateway = gateway
        try:
            yield
        finally:
            await gateway.stop()

    return Starlette(
        routes=[
            Route("/smsapi/send", send, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/sim/reply", sim_reply, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
