"""Dynamic batching in front of the :class:`~models.inference.Inspector`.

Requests put a *job* (one or more decoded images, plus how to inspect them) on a bounded
queue and await its future. One worker task takes the first waiting job, gathers more for up
to ``wait_ms`` or until ``max_size`` images, and runs them through the inspector in a single
dedicated thread, so the event loop never blocks on torch and the model sees one batch at a
time. Jobs that asked for different thresholds or for the reconstruction image share the
batch but are inspected in separate groups, so every request gets exactly what it asked for.
A job may name the inspector it is for (a part or version of the models root,
:mod:`service.serving`): jobs of one inspector are batched together, and a job accepted before
a hot swap is inspected by the version it was accepted with.

Requests are admitted (:meth:`Batcher.admit`) before their bodies are read; beyond one running
batch and a full queue they get :class:`~service.errors.Overloaded` (503 with ``Retry-After``)
at once, instead of letting memory and latency grow with the backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from models.results import Result

from . import memory
from .config import MB
from .errors import NotReady, OverBudget, Overloaded
from .uploads import human_size

log = logging.getLogger("kensa.service")


class InflightGate:
    """Bounds the memory that decoded images take while requests are being served.

    Every request holds its images' estimated bytes (:func:`service.uploads.footprint`: the
    upload, the decoded image, its anomaly map, mask and the pictures asked for) from before
    its bytes are read until its answer is built. A request that would pass ``max_bytes``
    waits until others finish; after ``wait_s`` it gets :class:`Overloaded` (503 with
    Retry-After). A request larger than the whole budget is refused at once
    (:class:`OverBudget`, 413): it could never run within it. When the last request leaves
    after at least ``trim_bytes`` were served, the freed memory goes back to the system
    (:func:`service.memory.give_back`), so the server returns to its idle size. Without the
    gate memory grows with the number of concurrent clients times their images' sizes
    (benchmarks/HISTORY.md).
    """

    def __init__(self, max_bytes: int, wait_s: float = 30.0, trim_bytes: int = 32 * MB) -> None:
        self.max_bytes = max(1, int(max_bytes))
        self.wait_s = wait_s
        self.trim_bytes = trim_bytes
        self.used = 0
        self.freed = 0  # bytes released since memory was last given back
        self._cond = asyncio.Condition()

    def refusal(self, nbytes: int, what: str = "the image") -> OverBudget:
        """The 413 for a request or image that needs more than the whole budget."""
        return OverBudget(
            f"{what} needs about {human_size(nbytes)} of memory while it is served (decoded "
            f"pixels, anomaly map and the pictures asked for), over the server's whole "
            f"in-flight budget of {human_size(self.max_bytes)}: send a smaller image, ask "
            "for fewer pictures (include=), or raise KENSA_MAX_INFLIGHT_MB")

    @contextlib.asynccontextmanager
    async def hold(self, nbytes: int) -> AsyncIterator[None]:
        """Holds ``nbytes`` of the budget for the block.

        Raises:
            OverBudget: ``nbytes`` is more than the whole budget (413).
            Overloaded: the budget stayed full for ``wait_s`` (503).
        """
        share = max(0, int(nbytes))
        if share > self.max_bytes:
            raise self.refusal(share)
        async with self._cond:
            try:
                await asyncio.wait_for(
                    self._cond.wait_for(lambda: self.used + share <= self.max_bytes), self.wait_s)
            except TimeoutError:
                raise Overloaded(
                    f"the server is busy: images of other requests fill its "
                    f"{self.max_bytes // MB} MiB in-flight budget (KENSA_MAX_INFLIGHT_MB); "
                    "retry after the Retry-After delay", retry_after_s=1) from None
            self.used += share
        try:
            yield
        finally:
            async with self._cond:
                self.used -= share
                self.freed += share
                if self.used == 0 and self.freed >= self.trim_bytes:
                    self.freed = 0
                    memory.give_back()
                self._cond.notify_all()


@dataclass
class Job:
    """One request's images and how they are to be inspected."""

    images: list[np.ndarray]
    threshold: float | None
    with_reconstruction: bool
    future: asyncio.Future = field(repr=False)
    inspector: object = field(default=None, repr=False)  # None: the batcher's own


class Batcher:
    """Gathers concurrent inspection requests into batches for one inspector.

    Args:
        inspector: has ``inspect(images, threshold=, with_reconstruction=)`` and ``max_batch``.
        max_size: gather jobs until the batch holds this many images.
        wait_ms: ... or until this long after the first job was taken; not at all when every
            request admitted (:meth:`admit`) is in the batch already (a single client does
            not pay the window: no other request could join it).
        queue_size: most jobs waiting; one more raises :class:`Overloaded`.
        on_batch: called with the image count of every inspector call (metrics).
        on_queue: called with the queue depth whenever it changes (metrics).
        max_inflight_bytes: the budget of :attr:`gate`, which requests hold from decode to
            answer.
    """

    def __init__(self, inspector, max_size: int = 32, wait_ms: float = 2.0,
                 queue_size: int = 128, on_batch: Callable[[int], None] | None = None,
                 on_queue: Callable[[int], None] | None = None,
                 max_inflight_bytes: int = 512 * MB) -> None:
        self.inspector = inspector
        self.gate = InflightGate(max_inflight_bytes)
        self.max_size = max_size
        self.wait_s = wait_ms / 1000.0
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=queue_size)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kensa-inference")
        self.on_batch = on_batch or (lambda n: None)
        self.on_queue = on_queue or (lambda n: None)
        self.running_images = 0  # images in the batch the worker thread is inspecting now
        self.capacity = queue_size + max_size  # requests admitted at once (see admit)
        self.admitted = 0
        self._task: asyncio.Task | None = None
        self._running: list[Job] = []

    @property
    def started(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._work(), name="kensa-batcher")

    async def stop(self) -> None:
        """Stops the worker; running and waiting jobs fail with :class:`NotReady`."""
        running = self._running  # the worker clears it as it stops
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        left = running + [self.queue.get_nowait() for _ in range(self.queue.qsize())]
        for job in left:
            if not job.future.done():
                job.future.set_exception(NotReady("the server is shutting down; retry shortly"))
        self._running = []
        self.on_queue(0)
        self.executor.shutdown(wait=False, cancel_futures=True)

    def admit(self) -> None:
        """Reserves room for one inspection request from before its body is read until its
        answer (:meth:`release`): one model batch running plus ``queue_size`` waiting.
        Asked first, a full server refuses in milliseconds instead of after reading and
        decoding the upload.

        Raises:
            Overloaded: ``capacity`` requests are already in progress (503 with Retry-After).
        """
        if self.admitted >= self.capacity:
            raise Overloaded(
                f"the server is busy: {self.admitted} inspection requests are in progress, as "
                "many as it takes (KENSA_QUEUE_SIZE waiting plus KENSA_BATCH_MAX_SIZE in the "
                "model); retry after the Retry-After delay", retry_after_s=1)
        self.admitted += 1

    def release(self) -> None:
        """Gives back the room an :meth:`admit` reserved."""
        self.admitted -= 1

    async def inspect(self, images: list[np.ndarray], threshold: float | None = None,
                      with_reconstruction: bool = False, inspector=None) -> list[Result]:
        """Inspects ``images`` (Kensa form, any sizes) in a shared batch, with ``inspector``
        (default: the batcher's own).

        Returns:
            One :class:`Result` per image, in order.

        Raises:
            Overloaded: the queue is full (503 with Retry-After).
            NotReady: the worker is not running.
        """
        if not images:
            return []
        if not self.started:
            raise NotReady("the model is not loaded yet: retry when /health/ready answers 200")
        job = Job(images, threshold, with_reconstruction,
                  asyncio.get_running_loop().create_future(), inspector or self.inspector)
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            raise Overloaded(
                f"the server is busy: {self.queue.maxsize} requests are already waiting for "
                "the model; retry after the Retry-After delay", retry_after_s=1) from None
        self.on_queue(self.queue.qsize())
        return await job.future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._gather(loop)
            self.on_queue(self.queue.qsize())
            jobs = [j for j in jobs if not j.future.done()]  # cancelled by a gone client
            if not jobs:
                continue
            self._running = jobs
            self.running_images = sum(len(j.images) for j in jobs)
            try:
                outcomes = await loop.run_in_executor(self.executor, self._run, jobs)
            except Exception as exc:  # never leave a request waiting on a dead batch
                log.exception("the inference batch failed")
                outcomes = [exc] * len(jobs)
            finally:
                self.running_images = 0
                self._running = []
            for job, outcome in zip(jobs, outcomes):
                if job.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> list[Job]:
        jobs = [await self.queue.get()]
        count = len(jobs[0].images)
        deadline = loop.time() + self.wait_s
        while count < self.max_size:
            try:
                job = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0 or 0 < self.admitted <= len(jobs):
                    break  # the window is over, or no other admitted request could join
                try:
                    job = await asyncio.wait_for(self.queue.get(), remaining)
                except TimeoutError:
                    break
            jobs.append(job)
            count += len(job.images)
        return jobs

    def _run(self, jobs: list[Job]) -> list[list[Result] | BaseException]:
        """Inspects every job (worker thread). A failing group is retried job by job, so a
        single bad input fails only its own request."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        for n, job in enumerate(jobs):
            groups[(id(job.inspector), job.threshold, job.with_reconstruction)].append(n)
        outcomes: list = [None] * len(jobs)
        with torch.inference_mode():
            for (_, threshold, recon), members in groups.items():
                try:
                    results = self._inspect(
                        [im for n in members for im in jobs[n].images], threshold, recon,
                        jobs[members[0]].inspector)
                except Exception as exc:
                    if len(members) == 1:
                        log.exception("inspection failed for a job of %d image(s)",
                                      len(jobs[members[0]].images))
                        outcomes[members[0]] = exc
                    else:
                        for n in members:
                            outcomes[n] = self._inspect_alone(jobs[n])
                    continue
                start = 0
                for n in members:
                    end = start + len(jobs[n].images)
                    outcomes[n] = results[start:end]
                    start = end
        return outcomes

    def _inspect_alone(self, job: Job) -> list[Result] | BaseException:
        try:
            return self._inspect(job.images, job.threshold, job.with_reconstruction,
                                 job.inspector)
        except Exception as exc:
            log.exception("inspection failed for a job of %d image(s)", len(job.images))
            return exc

    def _inspect(self, images: list[np.ndarray], threshold: float | None,
                 with_reconstruction: bool, inspector) -> list[Result]:
        step = max(1, int(getattr(inspector, "max_batch", len(images)) or len(images)))
        results: list[Result] = []
        for start in range(0, len(images), step):
            chunk = images[start:start + step]
            self.on_batch(len(chunk))
            results.extend(inspector.inspect(
                chunk, threshold=threshold, with_reconstruction=with_reconstruction))
        return results
