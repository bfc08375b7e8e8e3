"""``GET /openapi.json``: the OpenAPI 3.1 description of the ROX API and its webhooks.

The document is a file shipped in the package (``roxgate/rox/schemas/openapi.json``):
the JSON Schemas (draft 2020-12) of ``ROX_API_Request``, ``ROX_API_Response``,
the ``ROX_API_Receipt`` / ``ROX_API_Reply`` callback bodies and their answers, and
the result codes, with ``POST /smsapi/send``, ``GET /healthz`` and the ``receipt``
and ``reply`` webhooks. It is read and serialised once per process. Its server
is the relative URL ``/``: the gateway that served it, whatever host, scheme or
proxy the client reached it through.
"""

from __future__ import annotations

import copy
import functools
from importlib.resources import files
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from roxgate import __version__

_DOCUMENT = "schemas/openapi.json"  # next to roxgate/rox/request.py
_COMPONENT = "#/components/schemas/"


@functools.cache
def _document() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(files("roxgate.rox").joinpath(_DOCUMENT).read_bytes())
    doc["info"]["version"] = __version__
    return doc


def document() -> dict[str, Any]:
    """The OpenAPI document, as a new dict (the cached one is never handed out)."""
    return copy.deepcopy(_document())


@functools.cache
def document_bytes() -> bytes:
    return orjson.dumps(_document())


def json_schema(name: str) -> dict[str, Any]:
    """A standalone JSON Schema (draft 2020-12) of one component, e.g. ``ROX_API_Receipt``.

    Its references to other components point into its own ``$defs``, so any
    2020-12 validator can use it without the OpenAPI document around it.
    """
    schemas = _document()["components"]["schemas"]

    def local(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: "#/$defs/" + v.removeprefix(_COMPONENT)
                if k == "$ref" and isinstance(v, str) and v.startswith(_COMPONENT)
                else local(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [local(v) for v in node]
        return node

    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **local(schemas[name]),
        "$defs": {k: local(v) for k, v in schemas.items()},
    }


async def openapi(_request: Request) -> Response:
    return Response(document_bytes(), media_type="application/json")
