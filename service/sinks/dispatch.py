"""The dispatcher: one thread per sink, feeding it from the outbox in order.

Each thread reads the outbox after its sink's position, skips what the sink's filter does not
want, and delivers the rest one by one; a failed delivery is retried after
``retry_initial_s``, doubling up to ``retry_max_s``, and nothing after it goes first. The
position is saved after each delivery, so a restart resumes where the sink stood (a record
delivered just before a ``kill -9`` may be delivered again: at least once). When more than
``max_backlog`` records wait, the oldest are skipped and counted as dropped.
"""

from __future__ import annotations

import logging
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy.exc import SQLAlchemyError

from ..store.outbox import Outbox
from .config import MqttSink, SinksFile, WebhookSink
from .delivery import DeliveryFailed, message

log = logging.getLogger("kensa.sinks")
POLL_S = 1.0  # how often a thread looks for records written by other servers
PAGE = 100


class SinkMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.delivered = Counter("kensa_sink_delivered", "Records delivered, per sink.",
                                 ["sink"], registry=registry)
        self.retried = Counter("kensa_sink_retried", "Failed deliveries that will be retried.",
                               ["sink"], registry=registry)
        self.dropped = Counter("kensa_sink_dropped",
                               "Records skipped because the sink's backlog was full.",
                               ["sink"], registry=registry)
        self.backlog = Gauge("kensa_sink_backlog", "Records the sink has not taken yet.",
                             ["sink"], registry=registry)


def connector(config: WebhookSink | MqttSink):
    if isinstance(config, WebhookSink):
        from .webhook import Webhook

        return Webhook(config)
    from .mqtt import Mqtt

    return Mqtt(config)


class SinkWorker:
    def __init__(self, config: WebhookSink | MqttSink, outbox: Outbox, metrics: SinkMetrics,
                 stop: threading.Event) -> None:
        self.config, self.outbox, self.stop = config, outbox, stop
        self.wake = threading.Event()
        self.sink = connector(config)
        name = config.name
        self.delivered, self.retried = metrics.delivered.labels(name), metrics.retried.labels(name)
        self.dropped, self.backlog = metrics.dropped.labels(name), metrics.backlog.labels(name)
        self.thread = threading.Thread(target=self._run, name=f"kensa-sink-{name}", daemon=True)
        self.position: int | None = None

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                if self.position is None:
                    self.position = self.outbox.position(self.config.name)
                if not self._round():
                    self.wake.wait(POLL_S)
                    self.wake.clear()
            except SQLAlchemyError as exc:
                log.warning("sink %s: records database unreachable (%s)", self.config.name, exc)
                self.stop.wait(POLL_S)
            except Exception:
                log.exception("sink %s failed; going on", self.config.name)
                self.stop.wait(POLL_S)
        self.sink.close()

    def _round(self) -> bool:
        """Delivers one page; False when there was nothing to do."""
        self._trim()
        entries = self.outbox.after(self.position, PAGE)
        saved = self.position
        for seq, record in entries:
            if record is not None and self.config.wants(record):
                if not self._deliver(record):
                    return True  # stopping, or the backlog was trimmed: read again
                self.outbox.advance(self.config.name, seq)
                saved = seq
            self.position = seq
        if self.position != saved:  # records the filter skipped: one write for the page
            self.outbox.advance(self.config.name, self.position)
        self.backlog.set(self.outbox.count_after(self.position))
        return bool(entries)

    def _trim(self) -> bool:
        """Skips the oldest records beyond ``max_backlog``; True when it did."""
        waiting = self.outbox.count_after(self.position)
        self.backlog.set(min(waiting, self.config.max_backlog))
        excess = waiting - self.config.max_backlog
        if excess <= 0:
            return False
        self.position = self.outbox.seq_before_last(self.config.max_backlog)
        self.outbox.advance(self.config.name, self.position)
        self.dropped.inc(excess)
        log.error("sink %s: backlog over %d, dropped the %d oldest record(s)",
                  self.config.name, self.config.max_backlog, excess)
        return True

    def _deliver(self, record: dict) -> bool:
        """Delivers ``record``, retrying with backoff; False when it gave up (stopping, or
        this record was dropped with the backlog)."""
        body = message(record)
        wait = self.config.retry_initial_s
        while not self.stop.is_set():
            try:
                self.sink.send(record["id"], body, record)
                self.delivered.inc()
                return True
            except DeliveryFailed as exc:
                self.retried.inc()
                log.warning("sink %s: delivery of %s failed (%s); again in %.1f s",
                            self.config.name, record["id"], exc, wait)
            deadline = time.monotonic() + wait
            while not self.stop.is_set() and time.monotonic() < deadline:
                self.stop.wait(min(POLL_S, deadline - time.monotonic()))
            wait = min(wait * 2, self.config.retry_max_s)
            if self._trim():
                return False
        return False


class Dispatcher:
    """The sinks of one server. ``notify()`` after records are written wakes every sink."""

    def __init__(self, sinks: SinksFile, outbox: Outbox, registry: CollectorRegistry) -> None:
        self._stop = threading.Event()
        metrics = SinkMetrics(registry)
        self.workers = [SinkWorker(s, outbox, metrics, self._stop) for s in sinks.sinks]

    def start(self) -> None:
        """Starts the threads. A sink's first position is taken here, before the server
        answers anything, so a new sink gets every record from its first start on."""
        for w in self.workers:
            try:
                w.position = w.outbox.position(w.config.name)
            except SQLAlchemyError:
                pass  # the database is away: the thread takes it once it answers
            w.thread.start()

    def notify(self) -> None:
        for w in self.workers:
            w.wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self.notify()
        for w in self.workers:
            if w.thread.is_alive():
                w.thread.join(timeout_s)
