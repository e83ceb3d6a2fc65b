"""Overlays of recorded inspections, rendered once and kept (least recently used first out).

``GET /v1/inspections/{id}/overlay`` renders from the kept image with a model pass; the
operator page asks for the same overlays from every open screen (Live thumbnails, Review), so
each is kept under what determines it: the image's SHA-256, the threshold and the loaded
model's version. A hot-swapped model therefore renders afresh.
"""

from __future__ import annotations

from collections import OrderedDict

MAX_ITEMS = 256  # about 256 x 20-100 KB of JPEG


class OverlayCache:
    """A small LRU of rendered JPEG bytes; used from the event loop only (no lock)."""

    def __init__(self, max_items: int = MAX_ITEMS) -> None:
        self.max_items = max_items
        self._items: OrderedDict[tuple, bytes] = OrderedDict()

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
