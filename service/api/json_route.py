"""A route class that refuses a JSON body repeating a key: JSON parsers keep the last one silently, so
`{"epochs": 1, "epochs": 500}` would run what its reader did not see. FastAPI's documented way to see
the body before the route does (a custom `APIRoute`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute


def repeated_keys(body: bytes) -> list[str]:
    """Keys any object of the JSON document repeats; none when it does not parse (the route says why)."""
    repeated: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                repeated.append(key)
            seen.add(key)
        return dict(items)

    try:
        json.loads(body, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return []
    return repeated


class UniqueKeysRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            if "json" in request.headers.get("content-type", ""):
                repeated = repeated_keys(await request.body())  # the route reads the same (cached) body
                if repeated:
                    raise RequestValidationError([{"loc": ("body",), "type": "value_error",
                                                   "msg": f"a key appears twice in one object: {', '.join(sorted(set(repeated)))}"}])
            return await handler(request)

        return route
