"""The ASGI application served by ``roxgate serve``."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from roxgate.api.gateway import Gateway, Role
from roxgate.api.metrics import Metrics
from roxgate.api.openapi import openapi
from roxgate.api.proxies import TrustedProxies
from roxgate.api.readiness import Readiness
from roxgate.api.send import send
from roxgate.api.sim import sim_reply
from roxgate.config import Settings
from roxgate.console import console_mount
from roxgate.netpolicy import parse_nets


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(settings: Settings, role: Role = "all") -> Starlette:
    """The app of one process: ``api`` takes requests, ``worker`` sends and
    reports back (with ``/healthz``, ``/readyz`` and ``/metrics``), ``all`` does both."""

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

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        # Every role: a worker's carrier link and callbacks are worth watching too.
        Route("/readyz", Readiness().endpoint, methods=["GET"]),
        Route("/metrics", Metrics(settings.metrics_token).endpoint, methods=["GET"]),
    ]
    if role != "worker":
        routes.append(Route("/smsapi/send", send, methods=["POST"]))
        routes.append(Route("/openapi.json", openapi, methods=["GET"]))
        routes.append(console_mount(settings))  # the operators' console
    if role != "api":  # the simulator lives where the sending is done
        routes.append(Route("/sim/reply", sim_reply, methods=["POST"]))
    middleware = []
    if settings.trusted_proxies:  # the client's address from X-Forwarded-For, see proxies.py
        nets = parse_nets(settings.trusted_proxies)
        middleware.append(Middleware(TrustedProxies, nets=nets))
    return Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
