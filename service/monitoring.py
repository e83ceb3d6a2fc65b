"""Prometheus metrics and the JSON log lines (one per request, see
:class:`service.middleware.RequestMetricsMiddleware`).

Each app owns its :class:`Metrics` with its own ``CollectorRegistry``, so several apps in one
process (the test suite) never collide. ``/metrics`` is open like the health endpoints: it
carries counts and timings, never images or verdicts of a single part, and scrapers rarely
hold API keys. Put it behind the network, not behind a key.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

access_log = logging.getLogger("kensa.access")

LOG_KEY = "kensa.log"  # routes put their per-request log fields here in the ASGI scope
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The server's metrics, registered in a registry of its own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "kensa_http_requests", "HTTP requests answered, by endpoint and status.",
            ["endpoint", "method", "status"], registry=registry)
        self.latency = Histogram(
            "kensa_http_request_duration_seconds", "Time to answer a request, in seconds.",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=registry)
        self.inspections = Counter(
            "kensa_inspections", "Images inspected, by verdict (normal, abnormal, error).",
            ["label"], registry=registry)
        self.batch_size = Histogram(
            "kensa_batch_size", "Images per model call (dynamic batching).",
            buckets=BATCH_BUCKETS, registry=registry)
        self.queue_depth = Gauge(
            "kensa_queue_depth", "Requests waiting for the model.", registry=registry)
        self.model_info = Gauge(
            "kensa_model_info", "The loaded bundle (value 1).",
            ["name", "version", "device"], registry=registry)
        self.model_swaps = Counter(
            "kensa_model_swaps", "Active versions swapped in, by part.", ["part"],
            registry=registry)
        self.model_refused = Counter(
            "kensa_model_refused", "Versions that failed to load or verify and were not "
                                   "swapped in, by part.", ["part"], registry=registry)
        self.challenger_scored = Counter(
            "kensa_challenger_scored", "Images the challenger scored, by part.", ["part"],
            registry=registry)
        self.challenger_dropped = Counter(
            "kensa_challenger_dropped", "Images the challenger skipped because it was behind, "
                                        "by part.", ["part"], registry=registry)
        # score drift (service.drift), set from the records store at each scrape
        parts = ["part", "source"]
        self.drift_statistic = Gauge(
            "kensa_drift_statistic", "Kolmogorov-Smirnov statistic of recent normal scores "
            "against the bundle's held-out normals (source '*': all sources).", parts,
            registry=registry)
        self.drift_p_value = Gauge(
            "kensa_drift_p_value", "p-value of the drift statistic (small: the line's normals "
            "score differently from the held-out ones).", parts, registry=registry)
        self.drift_false_alarm_rate = Gauge(
            "kensa_drift_false_alarm_rate", "Share of recent images reviewed good that were "
            "judged abnormal.", parts, registry=registry)
        self.drift_normals = Gauge(
            "kensa_drift_normals", "Recent normal scores the drift statistic compares.", parts,
            registry=registry)

    def drift_gauges(self) -> tuple[Gauge, ...]:
        return (self.drift_statistic, self.drift_p_value, self.drift_false_alarm_rate,
                self.drift_normals)

    def render(self) -> bytes:
        return generate_latest(self.registry)


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
