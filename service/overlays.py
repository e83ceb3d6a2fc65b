"""Overlays of recorded inspections, rendered once and kept (least recently used first out).

``GET /v1/inspections/{id}/overlay`` renders from the kept image with a model pass; the
operator page asks for the same overlays from every open screen (Live thumbnails, Review), so
each is kept under what determines it: the image's SHA-256, the threshold and the judging
model's version. A hot-swapped model therefore renders afresh.

While a page is open (it called the API with its header within ``PAGE_OPEN_S``), the inspect
routes draw the overlay of every answer whose image is kept right after answering, from the
map they already have (:meth:`OverlayCache.draw_ahead`), so the page's requests for it find it
here and cost no second model pass; with no page open nothing is drawn ahead.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)

MAX_ITEMS = 256  # about 256 x 20-100 KB of JPEG
PAGE_OPEN_S = 10.0  # a page polls every 1.5 s (Live) or 10 s (Yield)


class OverlayCache:
    """A small LRU of rendered JPEG bytes; used from the event loop only (no lock)."""

    def __init__(self, max_items: int = MAX_ITEMS) -> None:
        self.max_items = max_items
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._seen = -math.inf  # when a page last called
        self._drawing: set[asyncio.Task] = set()

    def get(self, key: tuple) -> bytes | None:
        jpeg = self._items.get(key)
        if jpeg is not None:
            self._items.move_to_end(key)
        return jpeg

    def put(self, key: tuple, jpeg: bytes) -> None:
        self._items[key] = jpeg
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def page_called(self) -> None:
        """An operator page called the API (its header was on the request)."""
        self._seen = time.monotonic()

    @property
    def page_open(self) -> bool:
        return time.monotonic() - self._seen < PAGE_OPEN_S

    @property
    def drawing(self) -> int:
        """Overlays being drawn ahead now."""
        return len(self._drawing)

    def draw_ahead(self, key: tuple, render: Callable[[], bytes]) -> None:
        """Runs ``render`` in a worker thread after the answer and keeps its JPEG under
        ``key`` (a failure is logged, never raised: the answer has gone already)."""
        if key in self._items:
            return

        async def draw() -> None:
            try:
                self.put(key, await run_in_threadpool(render))
            except Exception:  # a picture for the page, never an answer: log and go on
                log.exception("drawing an overlay ahead failed")

        task = asyncio.get_running_loop().create_task(draw())
        self._drawing.add(task)
        task.add_done_callback(self._drawing.discard)
