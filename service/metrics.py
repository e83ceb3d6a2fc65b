"""Prometheus metrics and the one-line-per-request log.

Each app owns its :class:`Metrics` with its own ``CollectorRegistry``, so several apps in one
process (the test suite) never collide. ``/metrics`` is open like the health endpoints: it
carries counts and timings, never images or verdicts of a single part, and scrapers rarely
hold API keys. Put it behind the network, not behind a key.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("kensa.access")

LOG_KEY = "kensa.log"  # routes put their per-request log fields here in the ASGI scope
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The server's metrics, registered in a registry of its own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "kensa_http_requests", "HTTP requests answered, by endpoint and status.",
            ["endpoint", "method", "status"], registry=r)
        self.latency = Histogram(
            "kensa_http_request_duration_seconds", "Time to answer a request, in seconds.",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.inspections = Counter(
            "kensa_inspections", "Images inspected, by verdict (normal, abnormal, error).",
            ["label"], registry=r)
        self.batch_size = Histogram(
            "kensa_batch_size", "Images per model call (dynamic batching).",
            buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge(
            "kensa_queue_depth", "Requests waiting for the model.", registry=r)
        self.model_info = Gauge(
            "kensa_model_info", "The loaded bundle (value 1).",
            ["name", "version", "device"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


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


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        line = {"time": when,
                "level": record.levelname.lower(), "logger": record.name,
                "message": record.getMessage()}
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str) -> None:
    """Sends the ``kensa`` loggers to stderr as JSON lines (uvicorn keeps its own)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("kensa")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
