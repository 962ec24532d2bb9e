"""A route class that reads a JSON body before the route does (FastAPI's documented custom `APIRoute`)
and refuses, with a 422 saying why, what the route's own parsing would take silently or answer with a bare
400: a key repeated in one object (parsers keep the last, so `{"epochs": 1, "epochs": 500}` would run what
its reader did not see), nesting deeper than MAX_DEPTH, and integers longer than MAX_DIGITS."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

MAX_DEPTH = 32  # a study spec is 4 levels deep; activation parameters add 2
MAX_DIGITS = 100


def depth(body: bytes) -> int:
    """How deeply the document's arrays and objects nest (brackets inside strings do not count)."""
    deepest = level = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            level += 1
            deepest = max(deepest, level)
        elif byte in (0x5D, 0x7D):
            level -= 1
    return deepest


def problems(body: bytes) -> list[str]:
    """Why the document is refused; none when it passes, or when it does not parse (the route says why)."""
    if depth(body) > MAX_DEPTH:
        return [f"nested deeper than {MAX_DEPTH} levels"]
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict:
        keys = [key for key, _ in items]
        found.extend(f"a key appears twice in one object: {key}" for key in sorted({k for k in keys if keys.count(k) > 1}))
        return dict(items)

    def integer(text: str) -> int:
        if len(text.lstrip("-")) > MAX_DIGITS:
            found.append(f"an integer of {len(text.lstrip('-'))} digits (at most {MAX_DIGITS})")
            return 0
        return int(text)

    try:
        json.loads(body, object_pairs_hook=pairs, parse_int=integer)
    except (ValueError, RecursionError):
        return []
    return found


class CheckedJsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            if "json" in request.headers.get("content-type", ""):
                found = problems(await request.body())  # the route reads the same (cached) body
                if found:
                    raise RequestValidationError([{"loc": ("body",), "type": "value_error", "msg": msg} for msg in found])
            return await handler(request)

        return route
