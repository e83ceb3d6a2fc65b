"""The Live feed's snapshots: one answer shared by every open page for a moment.

Every open operator page refreshes its Live view every 1.5 s with the same question (the
newest records, their thumbnails). Asked separately, ten pages cost ten records queries, ten
JSON bodies and the thumbnails of every record any of them happened to catch, a different
set each time. ``GET /v1/inspections/live`` instead builds its answer at most once per
``max_age_s`` per question (filters and limit) and hands the same bytes to every caller in
that window; a caller that sends the answer's ETag back gets 304 with no body while nothing
changed (an idle line costs the pages almost nothing). Builds that are asked for while one is
running wait for that one.

What it promises: an answer is at most ``max_age_s`` older than the request (measured from
the start of its records query). ``GET /v1/inspections`` is never shared: a client that wants
to read what it just wrote uses that.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

from .once import once

MAX_QUESTIONS = 32  # snapshots kept: one per filter combination the open pages use


@dataclass(frozen=True)
class Snapshot:
    """One built answer."""

    body: bytes  # the JSON
    etag: str  # strong: a digest of the body
    started: float  # time.monotonic() when its records query began


class LiveFeed:
    """The newest snapshot per question; used from the event loop only (no lock)."""

    def __init__(self, max_age_s: float, max_questions: int = MAX_QUESTIONS) -> None:
        self.max_age_s = max_age_s
        self.max_questions = max_questions
        self._snapshots: OrderedDict[Hashable, Snapshot] = OrderedDict()
        self._building: dict[Hashable, asyncio.Task] = {}
        self.builds = 0  # answers built (the rest were shared)

    async def answer(self, question: Hashable,
                     build: Callable[[], Awaitable[bytes]]) -> Snapshot:
        """The snapshot for ``question`` if it is young enough, else a new one from ``build``
        (one build at a time per question: :func:`service.once.once`)."""
        snapshot = self._snapshots.get(question)
        if snapshot is not None and time.monotonic() - snapshot.started <= self.max_age_s:
            self._snapshots.move_to_end(question)
            return snapshot
        return await once(self._building, question, lambda: self._build(question, build))

    async def _build(self, question: Hashable, build: Callable[[], Awaitable[bytes]]
                     ) -> Snapshot:
        started = time.monotonic()
        body = await build()
        digest = hashlib.blake2b(body, digest_size=16).hexdigest()
        snapshot = Snapshot(body, f'"{digest}"', started)
        self.builds += 1
        self._snapshots[question] = snapshot
        self._snapshots.move_to_end(question)
        while len(self._snapshots) > self.max_questions:
            self._snapshots.popitem(last=False)
        return snapshot
