"""Challenger scoring: a candidate version of a part judges the same images as the active
one, off the answer path, so a line engineer can compare the two before activating.

An inspection route offers every answered image of the part (:meth:`Challenger.offer`, which
never waits); a queue bounded in images and in bytes (an eighth of KENSA_MAX_INFLIGHT_MB) feeds
one worker thread that inspects it with the challenger. When the worker falls behind, the queue
is full and the image is skipped and counted: the answer is never delayed or changed. The
tallies live in this process's memory (a restart or ``DELETE`` starts afresh; each replica
counts its own traffic); the record ids it keeps let the report look up the reviews in the
records store.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter, OrderedDict, deque
from datetime import UTC, datetime

import numpy as np
import torch

from .serving import Served

log = logging.getLogger("kensa.service")

KEEP = 10_000  # record ids remembered, for the disagreement list and reviewed accuracy


class Challenger:
    """Scores a part's images with ``served`` (the challenger version) in its own thread.

    Args:
        on_scored, on_dropped: called once per scored or skipped image (metrics).
    """

    def __init__(self, served: Served, queue_size: int = 32, max_bytes: int = 64 << 20,
                 on_scored=None, on_dropped=None) -> None:
        self.served = served
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.max_bytes = max_bytes  # decoded images waiting, at most (one is always taken)
        self.queued_bytes = 0
        self.on_scored = on_scored or (lambda: None)
        self.on_dropped = on_dropped or (lambda: None)
        self.started = datetime.now(UTC).isoformat(timespec="seconds")
        self.pairs: Counter = Counter()  # (active label, challenger label) -> images
        self.dropped = self.failed = 0
        self.judged: OrderedDict[str, tuple[str, str]] = OrderedDict()  # id -> both labels
        self.disagreements: deque[str] = deque(maxlen=KEEP)
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._work, daemon=True,
                                       name=f"kensa-challenger-{served.part}")
        self.thread.start()

    def offer(self, image: np.ndarray, ident: str, active_label: str) -> None:
        """Queues one answered image ``(H, W, C)``; skips it when the queue is full or its
        images would pass ``max_bytes``."""
        with self.lock:
            room = self.queued_bytes == 0 or self.queued_bytes + image.nbytes <= self.max_bytes
            if room:
                try:
                    self.queue.put_nowait((image, ident, active_label))
                    self.queued_bytes += image.nbytes
                except queue.Full:
                    room = False
            if not room:
                self.dropped += 1
        if not room:
            self.on_dropped()

    def stop(self) -> None:
        self.stopping = True
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass  # the worker sees `stopping` after its current image

    def _work(self) -> None:
        while not self.stopping:
            item = self.queue.get()
            if item is None:
                return
            image, ident, active_label = item
            with self.lock:
                self.queued_bytes -= image.nbytes
            try:
                with torch.inference_mode():
                    [result] = self.served.inspector.inspect([image])
            except Exception:  # a failure costs this image, not the worker
                log.exception("the challenger %s of %s failed on an image",
                              self.served.version, self.served.part)
                with self.lock:
                    self.failed += 1
                continue
            self._count(ident, active_label, result.label)
            self.on_scored()

    def _count(self, ident: str, active: str, challenger: str) -> None:
        with self.lock:
            self.pairs[(active, challenger)] += 1
            self.judged[ident] = (active, challenger)
            if len(self.judged) > KEEP:
                self.judged.popitem(last=False)
            if active != challenger:
                self.disagreements.append(ident)

    def snapshot(self) -> dict:
        """The tallies so far (without reviews; see :func:`report`)."""
        with self.lock:
            pairs, judged = dict(self.pairs), dict(self.judged)
            disagree, dropped, failed = list(self.disagreements), self.dropped, self.failed
        labels = ("normal", "abnormal")
        return {
            "version": self.served.version, "since": self.started,
            "scored": sum(pairs.values()), "dropped": dropped, "failed": failed,
            "waiting": self.queue.qsize(),
            "active_labels": {k: sum(n for (a, _), n in pairs.items() if a == k)
                              for k in labels},
            "challenger_labels": {k: sum(n for (_, c), n in pairs.items() if c == k)
                                  for k in labels},
            "agreement": (sum(n for (a, c), n in pairs.items() if a == c) / sum(pairs.values())
                          if pairs else None),
            "disagreements": disagree[-100:][::-1], "judged": judged}


def reviewed_accuracy(judged: dict[str, tuple[str, str]], reviews: dict[str, str]) -> dict:
    """Each model's accuracy on the reviewed images: a review ``good`` means normal, any
    other label abnormal."""
    truth = {ident: "normal" if label == "good" else "abnormal"
             for ident, label in reviews.items() if ident in judged}
    if not truth:
        return {"reviewed": 0, "active_accuracy": None, "challenger_accuracy": None}
    active = sum(judged[i][0] == t for i, t in truth.items()) / len(truth)
    challenger = sum(judged[i][1] == t for i, t in truth.items()) / len(truth)
    return {"reviewed": len(truth), "active_accuracy": active,
            "challenger_accuracy": challenger}


class Challengers:
    """The running challengers, one per part at most."""

    def __init__(self, metrics, max_bytes: int = 64 << 20) -> None:
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.running: dict[str, Challenger] = {}

    def start(self, served: Served) -> Challenger:
        self.stop(served.part)
        part = served.part
        challenger = Challenger(
            served, max_bytes=self.max_bytes,
            on_scored=self.metrics.challenger_scored.labels(part).inc,
            on_dropped=self.metrics.challenger_dropped.labels(part).inc)
        self.running[part] = challenger
        log.info("challenger started", extra={"fields": {"part": part,
                                                         "version": served.version}})
        return challenger

    def stop(self, part: str) -> Challenger | None:
        challenger = self.running.pop(part, None)
        if challenger is not None:
            challenger.stop()
        return challenger

    def stop_all(self) -> None:
        for part in list(self.running):
            self.stop(part)

    def offer(self, part: str, image: np.ndarray, ident: str, label: str) -> None:
        challenger = self.running.get(part)
        if challenger is not None:
            challenger.offer(image, ident, label)
