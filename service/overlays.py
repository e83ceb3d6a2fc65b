"""Overlays of recorded inspections, rendered once and kept (least recently used first out).

``GET /v1/inspections/{id}/overlay`` renders from the kept image with a model pass; the
operator page asks for the same overlays from every open screen (Live thumbnails, Review), so
each is kept under what determines it (:class:`Overlay`: the image's SHA-256, the threshold,
the judging part and version) and its size. A hot-swapped model therefore renders afresh, and
the ETag, made from the same key, changes with it.

While a page is open (it called the API with its header within ``PAGE_OPEN_S``), the inspect
routes keep what the thumbnail of every answer whose image is kept is drawn from: the map they
already have (:meth:`OverlayCache.draw_ahead`), so the Live views' requests for it cost no
second model pass; with no page open nothing is kept. A small image's thumbnail is drawn only
when first asked for, from the newest ``MAX_PENDING`` answers' arrays held as they are (a
line at 100 parts/s makes ~150 records between two Live refreshes, of which a page shows 24:
drawing them all cost the server more than the pages' requests); a large image's is drawn
right after the answer, since shrinking it is most of the work and frees its arrays.

Requests come as often as pages are open, so a record's overlay is answered without a records
query when the cache knows it (:meth:`OverlayCache.recall`): an index of record id ->
:class:`Overlay`, filled when a thumbnail is drawn ahead or a record was read for its overlay.
An entry holds only while

* the version it names is still the one loaded for its part (a swap: the record is read
  again and the overlay rendered afresh),
* no pruning pass ran since it was filled (:meth:`OverlayCache.pruned`, called by the store
  before and after each pass: a record retention deleted or un-kept is then read again and
  answered 404), and
* it is younger than ``TRUST_S`` (another server on the same database may have pruned it).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from .once import once

log = logging.getLogger(__name__)

MAX_ITEMS = 256  # JPEGs: full ones 20-100 KB, thumbnails 5-25 KB
MAX_RECORDS = 1024  # index entries, about 200 bytes each
MAX_PENDING = 48  # thumbnails not drawn yet: two Live views' worth of the newest answers,
# each holding its image, map and mask (a 384 px RGB upload: about 2.5 MB)
PAGE_OPEN_S = 10.0  # a page polls every 1.5 s (Live) or 10 s (Yield)
TRUST_S = 60.0  # an index entry answers without a records query this long


@dataclass(frozen=True)
class Overlay:
    """What determines a record's overlay."""

    sha256: str
    threshold: float
    part: str
    version: str

    def key(self, size: str) -> tuple:
        return (self.sha256, self.threshold, self.part, self.version, size)

    def etag(self, size: str) -> str:
        """A strong ETag: the same key gives the same picture (same image, threshold, version
        and size; tests/service/test_overlays.py checks that a re-render is byte for byte)."""
        digest = hashlib.blake2b(repr(self.key(size)).encode(), digest_size=16).hexdigest()
        return f'"{digest}"'


class OverlayCache:
    """A small LRU of rendered JPEG bytes and the record index; used from the event loop
    only (no lock), except :meth:`pruned`, which any thread may call."""

    def __init__(self, max_items: int = MAX_ITEMS, max_records: int = MAX_RECORDS) -> None:
        self.max_items = max_items
        self.max_records = max_records
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._records: OrderedDict[str, tuple[Overlay, int, float]] = OrderedDict()
        self.generation = 0  # pruning passes begun or ended
        self._seen = -math.inf  # when a page last called
        self._drawing: dict[tuple, asyncio.Task] = {}  # JPEGs being drawn, ahead or asked
        self._pending: OrderedDict[tuple, Callable[[], bytes]] = OrderedDict()  # not drawn yet

    # -- the JPEGs ------------------------------------------------------------------------
    def get(self, overlay: Overlay, size: str) -> bytes | None:
        key = overlay.key(size)
        jpeg = self._items.get(key)
        if jpeg is not None:
            self._items.move_to_end(key)
        return jpeg

    def put(self, overlay: Overlay, size: str, jpeg: bytes) -> None:
        key = overlay.key(size)
        self._items[key] = jpeg
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    async def drawn(self, overlay: Overlay, size: str) -> bytes | None:
        """The JPEG, waiting for it if it is being drawn right now, or drawing it (in a worker
        thread) from an answer's arrays kept for it."""
        key = overlay.key(size)
        render = self._pending.pop(key, None)
        if render is not None and key not in self._drawing and key not in self._items:
            return await self.render_once(overlay, size, lambda: run_in_threadpool(render))
        task = self._drawing.get(key)
        if task is not None:
            await asyncio.shield(task)
        return self.get(overlay, size)

    async def render_once(self, overlay: Overlay, size: str,
                          render: Callable[[], Awaitable[bytes]]) -> bytes:
        """Renders and keeps the JPEG; requests that come while it renders wait for the same
        one (ten pages opened at once ask for the same pictures). A failure reaches all of
        them; a request that goes away does not stop it for the others."""
        async def rendered() -> bytes:
            jpeg = await render()
            self.put(overlay, size, jpeg)
            return jpeg

        return await once(self._drawing, overlay.key(size), rendered)

    # -- the record index -----------------------------------------------------------------
    def remember(self, ident: str, overlay: Overlay, generation: int) -> None:
        """``ident``'s overlay is ``overlay``, as read when the generation was
        ``generation`` (take it before the records query)."""
        self._records[ident] = (overlay, generation, time.monotonic())
        self._records.move_to_end(ident)
        while len(self._records) > self.max_records:
            self._records.popitem(last=False)

    def recall(self, ident: str, loaded: Mapping[str, Any]) -> Overlay | None:
        """``ident``'s overlay if the index still vouches for it; ``loaded``: part -> the
        loaded :class:`service.serving.Served` (the fleet's)."""
        entry = self._records.get(ident)
        if entry is None:
            return None
        overlay, generation, at = entry
        if generation != self.generation or time.monotonic() - at > TRUST_S:
            del self._records[ident]
            return None
        served = loaded.get(overlay.part)
        if served is None or served.version != overlay.version:
            return None
        self._records.move_to_end(ident)
        return overlay

    def pruned(self) -> None:
        """Records may have been deleted or lost their images: the index vouches for none it
        holds now. Called from the store's pruning thread (one writer; an int under the GIL)."""
        self.generation += 1

    # -- drawing ahead while a page is open -----------------------------------------------
    def page_called(self) -> None:
        """An operator page called the API (its header was on the request)."""
        self._seen = time.monotonic()

    @property
    def page_open(self) -> bool:
        return time.monotonic() - self._seen < PAGE_OPEN_S

    @property
    def drawing(self) -> int:
        """Overlays being drawn now (ahead, or for a request)."""
        return len(self._drawing)

    @property
    def pending(self) -> int:
        """Thumbnails kept to be drawn when asked."""
        return len(self._pending)

    def draw_ahead(self, ident: str, overlay: Overlay, size: str,
                   render: Callable[[], bytes], now: bool) -> None:
        """Remembers ``ident``'s overlay and what draws it: ``render``, run in a worker thread
        after the answer when ``now`` (its JPEG kept; a failure is logged, never raised: the
        answer has gone), else kept among the newest ``MAX_PENDING`` and run when the
        picture is first asked for (:meth:`drawn`)."""
        self.remember(ident, overlay, self.generation)
        key = overlay.key(size)
        if key in self._items or key in self._drawing or key in self._pending:
            return
        if not now:
            self._pending[key] = render
            while len(self._pending) > MAX_PENDING:
                self._pending.popitem(last=False)
            return

        async def draw() -> None:
            try:
                self.put(overlay, size, await run_in_threadpool(render))
            except Exception:  # a picture for the page, never an answer: log and go on
                log.exception("drawing an overlay ahead failed")
            finally:
                self._drawing.pop(key, None)

        self._drawing[key] = asyncio.get_running_loop().create_task(draw())
