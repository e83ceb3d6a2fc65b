"""The training images: read small as they are decoded, at the scale and in the channels the
networks will see."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .data import Item, image_shape, read_items
from .preprocess import prepare


def read_training_images(items: list[Item], shape: int | Callable[[int, int], tuple[int, int]]
                         ) -> tuple[list[np.ndarray], list[str]]:
    """The training images, each ``(h, w, C)`` at ``shape(H, W)`` of its own size (an int:
    that square), and the paths skipped.

    Each photograph is shrunk as soon as it is decoded, so memory holds one full-size image at
    a time (9,900 magnetic-tile JPEGs of about 300 x 300 pixels took 4.8 GB decoded all at
    once before shrinking); ``C`` is :func:`choose_channels` of them.
    """
    shape_of = (lambda h, w: (shape, shape)) if isinstance(shape, int) else shape
    small, _kept, skipped = read_items(
        items, lambda im: prepare(im, shape_of(*im.shape[:2]), im.shape[2]))
    channels = choose_channels(small)
    return [prepare(im, im.shape[:2], channels) for im in small], skipped


def training_scale(items: list[Item], size: int) -> dict:
    """``ModelConfig.pixel_scale`` and ``train_sides`` for these training images: ``size``
    over their median geometric side ``sqrt(h * w)``, and the range of those sides (file
    headers only); no scale (0) when no header reads."""
    sides = [math.sqrt(sh[0] * sh[1]) for sh in (image_shape(it.path) for it in items) if sh]
    if not sides:
        return {"pixel_scale": 0.0}
    return {"pixel_scale": size / float(np.median(sides)),
            "train_sides": (float(min(sides)), float(max(sides)))}


def choose_channels(images: list[np.ndarray]) -> int:
    """3 when any training image has real colour, else 1 (gray saves a third of the work)."""
    for im in images:
        if im.shape[2] == 3 and not (np.allclose(im[..., 0], im[..., 1], atol=2 / 255)
                                     and np.allclose(im[..., 1], im[..., 2], atol=2 / 255)):
            return 3
    return 1
