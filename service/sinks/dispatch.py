"""The dispatcher: one thread per sink, feeding it from the outbox in order.

Each thread reads the outbox after its sink's position, skips what the sink's filter does not
want, and delivers the rest one by one; a failed delivery is retried after
``retry_initial_s``, doubling up to ``retry_max_s``, and nothing after it goes first. The
position is saved after each delivery, so a restart resumes where the sink stood (a record
delivered just before a ``kill -9`` may be delivered again: at least once). When more than
``max_backlog`` records wait, the oldest are skipped and counted as dropped.

Servers sharing one records database share each sink's position; a thread delivers only while
its server holds the sink's lease (:meth:`Outbox.claim <..store.outbox.Outbox.claim>`), which
every saved position renews and which a thread also renews while it retries. The others wait
and take over once a holder stops renewing (died, or lost the database) for ``lease_s``. A
*local* sink (OPC UA: each server serves its own nodes) keeps its position in the process
instead, from the end of the log at start, and needs no lease.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy.exc import SQLAlchemyError

from ..store.outbox import Outbox
from .config import MqttSink, OpcUaSink, SinksFile, WebhookSink
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
        self.lease = Gauge("kensa_sink_lease",
                           "1 while this server delivers the sink (holds its lease).",
                           ["sink"], registry=registry)


def connector(config: WebhookSink | MqttSink | OpcUaSink):
    if isinstance(config, WebhookSink):
        from .webhook import Webhook

        return Webhook(config)
    if isinstance(config, OpcUaSink):
        from .opcua import OpcUa

        return OpcUa(config)
    from .mqtt import Mqtt

    return Mqtt(config)


class LeaseLost(Exception):
    """Another server took the sink over: stop delivering it."""


class SinkWorker:
    def __init__(self, config: WebhookSink | MqttSink | OpcUaSink, outbox: Outbox,
                 metrics: SinkMetrics, stop: threading.Event, holder: str,
                 lease_s: float) -> None:
        self.config, self.outbox, self.stop = config, outbox, stop
        self.holder, self.lease_s = holder, lease_s
        self.wake = threading.Event()
        self.sink = connector(config)
        self.local = getattr(self.sink, "local", False)
        name = config.name
        self.delivered, self.retried = metrics.delivered.labels(name), metrics.retried.labels(name)
        self.dropped, self.backlog = metrics.dropped.labels(name), metrics.backlog.labels(name)
        self.leased = metrics.lease.labels(name)
        self.thread = threading.Thread(target=self._run, name=f"kensa-sink-{name}", daemon=True)
        self.position: int | None = None
        self.renew_at = 0.0  # time.monotonic() by which the lease is renewed

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                if not self._hold():
                    self.stop.wait(POLL_S)
                elif not self._round():
                    self.wake.wait(POLL_S)
                    self.wake.clear()
            except LeaseLost:
                log.warning("sink %s: another server took it over", self.config.name)
                self._let_go()
            except SQLAlchemyError as exc:
                log.warning("sink %s: records database unreachable (%s)", self.config.name, exc)
                self.stop.wait(POLL_S)
            except Exception:
                log.exception("sink %s failed; going on", self.config.name)
                self.stop.wait(POLL_S)
        self._release()
        self.sink.close()

    def _hold(self) -> bool:
        """Whether this server may deliver the sink now: takes or renews its lease when due
        (the position then comes from the database, where the last holder left it)."""
        if self.local:
            if self.position is None:
                self.position = self.outbox.last_seq()
            return True
        if self.position is not None and time.monotonic() < self.renew_at:
            return True
        position = self.outbox.claim(self.config.name, self.holder, self.lease_s)
        if position is None:
            self._let_go()
            return False
        if self.position is None:
            log.info("sink %s: delivering from this server", self.config.name)
        self.position = position
        self._renewed()
        return True

    def _renewed(self) -> None:
        self.renew_at = time.monotonic() + self.lease_s / 3
        self.leased.set(1)

    def _let_go(self) -> None:
        self.position = None
        self.leased.set(0)

    def _release(self) -> None:
        if self.local or self.position is None:
            return
        try:
            self.outbox.release(self.config.name, self.holder)
        except SQLAlchemyError:
            pass  # it expires on its own
        self._let_go()

    def _save(self, seq: int) -> None:
        """Saves the position (renewing the lease); raises LeaseLost if another server
        holds the sink now."""
        if self.local:
            return
        if not self.outbox.advance(self.config.name, seq, self.holder, self.lease_s):
            raise LeaseLost
        self._renewed()

    def _round(self) -> bool:
        """Delivers one page; False when there was nothing to do."""
        self._trim()
        entries = self.outbox.after(self.position, PAGE)
        saved = self.position
        for seq, record in entries:
            if record is not None and self.config.wants(record):
                if not self._deliver(record):
                    return True  # stopping, or the backlog was trimmed: read again
                self._save(seq)
                saved = seq
            self.position = seq
        if self.position != saved:  # records the filter skipped: one write for the page
            self._save(self.position)
        self.backlog.set(self.outbox.count_after(self.position))
        return bool(entries)

    def _trim(self) -> bool:
        """Skips the oldest records beyond ``max_backlog``; True when it did."""
        waiting = self.outbox.count_after(self.position)
        self.backlog.set(min(waiting, self.config.max_backlog))
        if waiting <= self.config.max_backlog:
            return False
        skipped_from = self.position
        self.position = self.outbox.seq_before_last(self.config.max_backlog)
        self._save(self.position)
        # counted over what was skipped: records written since `waiting` moved the cut
        excess = self.outbox.count_after(skipped_from, upto=self.position)
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
                self._keep_lease()  # a wait may be longer than the lease
            wait = min(wait * 2, self.config.retry_max_s)
            if self._trim():
                return False
        return False

    def _keep_lease(self) -> None:
        """Renews the lease while a delivery is retried; raises LeaseLost when it is gone."""
        if self.local or time.monotonic() < self.renew_at:
            return
        if self.outbox.claim(self.config.name, self.holder, self.lease_s) is None:
            raise LeaseLost
        self._renewed()


class Dispatcher:
    """The sinks of one server. ``notify()`` after records are written wakes every sink."""

    def __init__(self, sinks: SinksFile, outbox: Outbox, registry: CollectorRegistry,
                 lease_s: float = 30.0) -> None:
        self._stop = threading.Event()
        metrics = SinkMetrics(registry)
        # who holds a lease: readable by an operator, unique per process start
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.workers = [SinkWorker(s, outbox, metrics, self._stop, self.holder, lease_s)
                        for s in sinks.sinks]

    def start(self) -> None:
        """Opens the sinks that serve (OPC UA) and starts the threads. A sink's first
        position is taken here, before the server answers anything, so a new sink gets every
        record from its first start on.

        Raises:
            SinksConfigError: a sink cannot start (an OPC UA port that is taken).
        """
        opened = []
        try:
            for w in self.workers:
                if hasattr(w.sink, "open"):
                    w.sink.open()
                    opened.append(w.sink)
        except Exception:
            for sink in opened:
                sink.close()
            raise
        for w in self.workers:
            try:
                if w.local:
                    w.position = w.outbox.last_seq()
                else:
                    w.outbox.position(w.config.name)
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
