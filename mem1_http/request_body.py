"""Request bodies and JSON, read within limits on size, time and nesting depth.

A client controls every byte of a body: how many there are, how slowly they arrive, and
how deep its JSON nests. Each limit breaks with an :class:`HTTPError` naming it (the
server answers it as a 4xx), never with a hung handler or a ``RecursionError``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request


class HTTPError(Exception):
    """A request the server refuses: the status to answer, a one-line message, and whether the
    connection must close afterwards (an unread or half-read body cannot be skipped over)."""

    def __init__(self, status: int, message: str, close: bool = False):
        super().__init__(message)
        self.status = int(status)
        self.message = message
        self.close = close


async def read_body(request: Request, max_bytes: int, timeout: float) -> bytes:
    """The whole body of ``request``.

    Raises:
        HTTPError: 411 without a Content-Length (or chunked encoding), 413 over ``max_bytes``
            (declared or received), 408 when the body takes longer than ``timeout`` seconds.
    """
    declared = request.headers.get("content-length")
    if declared is None and "transfer-encoding" not in request.headers:
        raise HTTPError(411, "a Content-Length header is required", close=True)
    # The protocol layer (h11) has already refused a Content-Length that is not a number.
    if declared is not None and int(declared) > max_bytes:
        raise HTTPError(413, f"the body is {int(declared)} bytes; the limit is {max_bytes}", close=True)

    async def collect() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise HTTPError(413, f"the body is over {max_bytes} bytes", close=True)
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(collect(), timeout)
    except asyncio.TimeoutError:
        raise HTTPError(408, f"the body did not arrive within {timeout:g} s", close=True) from None


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects (a scalar is 0, ``[]`` is 1)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json(body: bytes, max_depth: int) -> Any:
    """Decode ``body`` as UTF-8 JSON nesting at most ``max_depth`` lists/objects deep.

    Raises:
        HTTPError: 400 naming what is wrong.
    """
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HTTPError(400, f"malformed JSON body: {exc}") from None
    except RecursionError:
        # The decoder recurses per level; far deeper than any limit we allow.
        raise HTTPError(400, f"the JSON body nests deeper than {max_depth} levels") from None
    if json_depth(value) > max_depth:
        raise HTTPError(400, f"the JSON body nests deeper than {max_depth} levels")
    return value


async def read_json(request: Request, max_bytes: int, timeout: float, max_depth: int) -> Any:
    """:func:`read_body` then :func:`parse_json`."""
    return parse_json(await read_body(request, max_bytes, timeout), max_depth)
