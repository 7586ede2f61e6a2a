"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware): body-size limit and request metrics."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import PayloadTooLarge
from service.prometheus import Metrics

API_PREFIX = "/v1"
STREAMED = "/items/import"  # a whole archive in one request: its limit is per line, not per body


class BodyLimit:
    """413 with a JSON body naming the limit, from Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _body(self, size: int | None) -> bytes:
        got = f" ({size} bytes)" if size is not None else ""
        msg = f"request body{got} is larger than the limit of {self.max_bytes} bytes"
        error = PayloadTooLarge(msg, "body")
        return json.dumps({**error.body(), "limit_bytes": self.max_bytes}).encode()

    async def _reject(self, send: Send, size: int | None) -> None:
        body = self._body(size)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send(
            {"type": "http.response.start", "status": PayloadTooLarge.status, "headers": headers}
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].endswith(STREAMED):
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = None
                if size is not None and size > self.max_bytes:
                    await self._reject(send, size)
                    return
        seen = 0
        exceeded = False
        started = False

        async def counted() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise _TooLarge
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # whatever the app makes of the aborted body, the client gets the 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except _TooLarge:
            pass
        if exceeded and not started:
            await self._reject(send, None)


class _TooLarge(Exception):
    pass


class RequestMetrics:
    """Counts and times requests by route template (never by raw path: bounded cardinality)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            route: Any = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            # FastAPI reports the route as declared in its router, without the include prefix
            if scope["path"].startswith(API_PREFIX + "/") and not name.startswith(API_PREFIX):
                name = API_PREFIX + name
            took = time.perf_counter() - start
            self.metrics.record_request(scope.get("method", ""), name, str(status), took)
