"""The ASGI middlewares: admission of inspection requests, the request body limit (size and
time), and the metrics and log line of each request.

They wrap the whole app (``service.app.create_app``), so they see every answer, the error
answers included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from http.cookies import CookieError, SimpleCookie

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import MB
from .deps import SESSION_COOKIE, valid_key
from .errors import BodyTimeout, Overloaded, UploadTooLarge
from .monitoring import LOG_KEY, Metrics, access_log
from .uploads import human_size

PART_OVERHEAD = 64 * 1024  # multipart boundary and part headers, generously
OTHER_BODY_LIMIT = 1 * MB  # any request that carries no image


class BodyLimitMiddleware:
    """Refuses request bodies over a cap or slower than a deadline, before and while they
    stream in (ASGI middleware).

    The cap depends on the endpoint: one file plus multipart overhead for the single-image
    endpoints and ``/v1/labels``, ``max_batch`` files for the batch endpoint, 1 MiB for the
    rest. A declared ``Content-Length`` over the cap is refused before a byte is read; a
    chunked body is counted and refused as soon as it passes the cap. The whole body must
    arrive within ``body_timeout_s`` of the request's headers, else 408 and the connection
    closes: a client that sends half a body and waits holds nothing for long.
    """

    def __init__(self, app: ASGIApp, max_upload_bytes: int, max_batch: int,
                 body_timeout_s: float = 60.0) -> None:
        self.app = app
        self.single = max_upload_bytes + PART_OVERHEAD
        self.batch = max_batch * (max_upload_bytes + PART_OVERHEAD) + PART_OVERHEAD
        self.max_upload_bytes = max_upload_bytes
        self.body_timeout_s = body_timeout_s

    def cap(self, path: str) -> int:
        if path.rstrip("/").endswith("/inspect/batch"):
            return self.batch
        if path.startswith(("/v1/inspect", "/v1/labels")):
            return self.single
        return OTHER_BODY_LIMIT

    def detail(self, cap: int) -> str:
        return (f"the request body is over {human_size(cap)}; each file may be at most "
                f"{human_size(self.max_upload_bytes)}: compress or resize the images, or "
                "raise KENSA_MAX_UPLOAD_MB")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.cap(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            await _send_json(send, 413, {"detail": self.detail(cap)})
            return
        seen, done = 0, False
        deadline = asyncio.get_running_loop().time() + self.body_timeout_s

        async def limited_receive() -> Message:
            nonlocal seen, done
            if done:  # after the body only a disconnect can come: no deadline on that wait
                return await receive()
            try:
                message = await asyncio.wait_for(
                    receive(), deadline - asyncio.get_running_loop().time())
            except TimeoutError:
                raise BodyTimeout(
                    f"the request body did not arrive within {self.body_timeout_s:g} s "
                    f"({seen:,} bytes came): send it faster, or raise "
                    "KENSA_BODY_TIMEOUT_S") from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                done = not message.get("more_body", False)
                if seen > cap:
                    raise UploadTooLarge(self.detail(cap))
            return message

        await self.app(scope, limited_receive, send)


class AdmissionMiddleware:
    """Sheds inspection requests the server has no room for before their bodies are read
    (ASGI middleware; :meth:`service.batcher.Batcher.admit`).

    Reading and decoding an upload only to refuse it made a 503 cost 0.5 s (median) to 4.7 s
    (p99) under load (issue 27); asked first, it costs milliseconds, and the connection is
    closed since its body stays unread. Requests without a valid API key (when keys are set)
    take no room: the route refuses them.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        batcher = self._batcher(scope)
        if batcher is None:
            await self.app(scope, receive, send)
            return
        try:
            batcher.admit()
        except Overloaded as exc:
            await _send_json(send, 503, {"detail": str(exc)}, exc.headers)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            batcher.release()

    @staticmethod
    def _batcher(scope: Scope):
        """The running batcher when this request is an inspection that takes room."""
        if (scope["type"] != "http" or scope["method"] != "POST"
                or not scope["path"].startswith("/v1/inspect")):
            return None
        state = scope["app"].state
        batcher = getattr(state, "batcher", None)
        if batcher is None or not batcher.started:
            return None  # the route answers 503 not ready
        keys = state.settings.api_keys
        if keys and not valid_key(_request_key(scope), keys):
            return None  # the route answers 401
        return batcher


def _request_key(scope: Scope) -> str:
    """The API key a request carries: ``X-API-Key``, else the operator page's cookie (as
    :func:`service.deps.require_api_key` reads them)."""
    headers = dict(scope.get("headers", ()))
    key = headers.get(b"x-api-key", b"").decode("latin-1")
    if key:
        return key
    cookies = SimpleCookie()
    with contextlib.suppress(CookieError):
        cookies.load(headers.get(b"cookie", b"").decode("latin-1"))
    morsel = cookies.get(SESSION_COOKIE)
    return morsel.value if morsel is not None else ""


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_json(send: Send, status: int, body: dict,
                     headers: dict[str, str] | None = None) -> None:
    """Answers with ``body`` and closes the connection (the request body stays unread)."""
    data = json.dumps(body).encode()
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()),
                            (b"connection", b"close"), *extra]})
    await send({"type": "http.response.body", "body": data})


class RequestMetricsMiddleware:
    """Counts and times every HTTP request and writes its one log line (ASGI middleware).

    The log record carries ``fields``: method, path, status, elapsed_ms, plus whatever the
    route put in ``scope["kensa.log"]`` (for inspections: id, label, score);
    :class:`JsonFormatter` writes them as one JSON line.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(endpoint, scope["method"], str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(elapsed)
            fields = {"method": scope["method"], "path": scope["path"], "status": status,
                      "elapsed_ms": round(elapsed * 1000.0, 2)}
            fields.update(scope.get(LOG_KEY, {}))
            access_log.info("request", extra={"fields": fields})
