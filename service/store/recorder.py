"""The recorder: writes inspection records, one transaction per batch, before answers go out.

Routes hand each inspected image's record to :meth:`Recorder.record` and await it before
answering, so an answered inspection is on disk. One writer thread takes everything that
arrived while it was busy (the answers of one model batch arrive together) and writes it in
one transaction: the database sees one commit per batch and the event loop never waits on it.

When the database cannot be written, the batch goes to the :class:`~.journal.Journal`
(fsynced) instead and inspection goes on (``/health/ready`` says ``records: degraded``); the
thread retries every ``retry_s`` and, once the database answers, replays the journal in order
(idempotent on the record id) before it writes anything new.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError

from models.errors import KensaError

from .images import ImageFolder, content_type, sha256
from .journal import Journal
from .records import Records

KEEP = ("all", "abnormal", "none")
log = logging.getLogger("kensa.store")


class RecordingFailed(KensaError):
    """Neither the database nor the journal took a record (the disk is full or read-only)."""


@dataclass
class Pending:
    """One image's record before it is written: its columns (all but the image fields, which
    the writer fills in) and the uploaded bytes."""

    row: dict
    data: bytes


@dataclass
class _Job:
    items: list[Pending]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop = field(repr=False)


_STOP = object()


class Recorder:
    """Args:
        records: the database side.
        images: where kept images go.
        journal: where records wait while the database is away.
        keep: which images to keep: ``all``, ``abnormal`` or ``none``.
        upgrade: brings the schema up to date; called before the first write after an outage
            that began at start-up.
        on_pending: called with the number of journaled records whenever it changes.
        on_failure: called once per batch the database refused.
        on_written: called after records reached the database (wakes the sinks).
    """

    def __init__(self, records: Records, images: ImageFolder, journal: Journal,
                 keep: str = "abnormal", upgrade: Callable[[], None] | None = None,
                 on_pending: Callable[[int], None] | None = None,
                 on_failure: Callable[[], None] | None = None, retry_s: float = 2.0,
                 on_written: Callable[[], None] | None = None) -> None:
        if keep not in KEEP:
            raise ValueError(f"keep must be one of {KEEP}")
        self.records, self.images, self.journal, self.keep = records, images, journal, keep
        self.upgrade = upgrade
        self.on_pending = on_pending or (lambda n: None)
        self.on_failure = on_failure or (lambda: None)
        self.on_written = on_written or (lambda: None)
        self.retry_s = retry_s
        self.schema_ready = upgrade is None
        self.pending = journal.pending()
        self.on_pending(self.pending)
        self._last_try = 0.0
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="kensa-recorder", daemon=True)

    @property
    def degraded(self) -> bool:
        """Records are waiting in the journal (the database was unreachable)."""
        return self.pending > 0 or not self.schema_ready

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Writes what is queued, then ends the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout_s)

    async def record(self, items: list[Pending]) -> None:
        """Returns once ``items`` are committed to the database or fsynced to the journal.

        Raises:
            RecordingFailed: neither would take them.
        """
        if not items:
            return
        loop = asyncio.get_running_loop()
        job = _Job(items, loop.create_future(), loop)
        self._queue.put(job)
        await job.future

    # ----------------------------------------------------------- the writer thread

    def _work(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.retry_s if self.degraded else None)
            except queue.Empty:
                self._recover()
                continue
            jobs, stop = ([] if first is _STOP else [first]), first is _STOP
            while not stop:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is _STOP:
                    stop = True
                else:
                    jobs.append(job)
            if jobs:
                self._write(jobs)
            if stop:
                return

    def _write(self, jobs: list[_Job]) -> None:
        error: BaseException | None = None
        try:
            rows = [self._prepare(p) for job in jobs for p in job.items]
            self._store(rows)
        except Exception as exc:
            log.exception("could not record %d inspection(s)", sum(len(j.items) for j in jobs))
            error = RecordingFailed(
                f"the inspection could not be recorded ({type(exc).__name__}: {exc}); the "
                "records database and the journal in KENSA_DATA_DIR both failed")
        for job in jobs:
            job.loop.call_soon_threadsafe(_settle, job.future, error)

    def _prepare(self, item: Pending) -> dict:
        row = dict(item.row)
        row["sha256"] = sha256(item.data)
        keep = self.keep == "all" or (self.keep == "abnormal" and row["label"] == "abnormal")
        row["image_kept"] = keep
        row["image_type"] = content_type(item.data) if keep else None
        row["image_bytes"] = len(item.data) if keep else None
        if keep:
            self.images.put(item.data, row["sha256"])
        return row

    def _store(self, rows: list[dict]) -> None:
        if self.degraded:
            self._recover()
        if not self.degraded:
            try:
                self.records.add(rows)
                self.on_written()
                return
            except SQLAlchemyError as exc:
                self.on_failure()
                log.error("records database unreachable, journaling: %s", exc)
        self.journal.append(rows)
        self.pending += len(rows)
        self.on_pending(self.pending)

    def _recover(self) -> None:
        """Tries the database again (at most every ``retry_s``): schema, then the journal."""
        now = time.monotonic()
        if now - self._last_try < self.retry_s:
            return
        self._last_try = now
        try:
            if not self.schema_ready:
                self.upgrade()
                self.schema_ready = True
            if self.pending or self.journal.pending():
                moved = self.journal.drain(self.records.add)
                log.info("records database back: wrote %d journaled record(s)", moved)
                self.on_written()
            self.pending = 0
            self.on_pending(0)
        except SQLAlchemyError as exc:
            self.on_failure()
            log.warning("records database still unreachable: %s", exc)


def _settle(future: asyncio.Future, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
