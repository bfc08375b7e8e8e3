"""The ASGI application served by ``roxgate serve``."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from roxgate.api.gateway import Gateway, Role
from roxgate.api.openapi import openapi
from roxgate.api.send import send
from roxgate.api.sim import sim_reply
from roxgate.config import Settings


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(settings: Settings, role: Role = "all") -> Starlette:
    """The app of one process: ``api`` takes requests, ``worker`` sends and
    reports back (with ``/healthz`` for probes), ``all`` does both."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gateway = Gateway(settings)
        await gateway.start(role)
        # Everything built so far (metadata, compiled queries, phone tables)
        # lives for the whole process: keep it out of every future GC scan.
        gc.collect()
        gc.freeze()
        app.state.gateway = gateway
        try:
            yield
        finally:
            await gateway.stop()

    routes = [Route("/healthz", healthz, methods=["GET"])]
    if role != "worker":
        routes.append(Route("/smsapi/send", send, methods=["POST"]))
        routes.append(Route("/openapi.json", openapi, methods=["GET"]))
    if role != "api":  # the simulator lives where the sending is done
        routes.append(Route("/sim/reply", sim_reply, methods=["POST"]))
    return Starlette(routes=routes, lifespan=lifespan)
