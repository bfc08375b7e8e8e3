"""``POST /sim/reply``: make the built-in simulator deliver an SMS from a phone.

Only with ``ROXGATE_CARRIER=sim`` (a demo or a test set-up) and only from a
loopback client: it lets an operator try replies, opt-out and forwarding end
to end without a carrier. ``roxgate sim-reply`` calls it.
"""

from __future__ import annotations

import asyncio
import ipaddress

import orjson
from starlette.requests import Request
from starlette.responses import Response

from roxgate.api.gateway import Gateway


def _answer(status: int, result: str, text: str) -> Response:
    return Response(
        orjson.dumps({"Result": result, "ResultText": text}),
        status_code=status,
        media_type="application/json",
    )


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def sim_reply(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    simulator = gateway.simulator
    if simulator is None:
        return _answer(404, "404", "The carrier simulator is not running (ROXGATE_CARRIER=sim)")
    if not _loopback(request):
        return _answer(403, "403", "Only from this machine")
    try:
        doc = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        return _answer(400, "400", 'Expected {"From": "+614…", "Text": "…"}')
    source, text, to = doc.get("From"), doc.get("Text"), doc.get("To", "roxgate")
    if not isinstance(source, str) or not source or not isinstance(text, str) or not text:
        return _answer(400, "400", "From and Text are required strings")
    if not isinstance(to, str) or not to:
        return _answer(400, "400", "To must be a string")
    try:
        # Returns once the gateway acknowledged it: stored, matched and forwarded.
        await asyncio.wait_for(simulator.send_mo(source, to, text), timeout=10)
    except TimeoutError:
        return _answer(504, "504", "The gateway did not acknowledge the SMS within 10 s")
    except ValueError as exc:
        return _answer(400, "400", f"Cannot send that SMS: {exc}")
    return _answer(200, "0000", "Delivered to the gateway")
