"""Labeled defects cut out of their images, as the conditional generator learns from them.

A cut-out is a square patch around one defect region, resized to ``patch`` pixels, with the
defect's mask (its alpha) and the region's size in model pixels (so a generated defect is
pasted at a size the type really has). Where the region comes from depends on the label
(:class:`models.positives.Positive`):

- ``mask``: each connected region of the mask, the mask as the alpha;
- ``boxes``: each box; inside it the alpha is where the image departs from its local median
  (the box is mostly intact surface around a crack);
- ``image`` (a name, nothing drawn): the largest blob of the image's strongest departure from
  its local median. This is a guess: the generator trains before the model, so no anomaly map
  exists yet to cut by; a defect of low local contrast (a large, even discolouration) is
  missed or cut too small. Masks or boxes make better cut-outs.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .positives import Positive

MARGIN = 0.25  # context around a region, as a share of its side on each side
MIN_SIDE = 6  # model pixels: a smaller region is cut with this much
IMAGE_TOP = 0.01  # image-only labels: the share of strongest departure that seeds the blob


@dataclass
class Cutout:
    """One labeled defect region.

    Attributes:
        image: ``float32 (P, P, C)`` the region with its context, resized to the patch.
        alpha: ``float32 (P, P)`` in ``[0, 1]``: the defect inside the patch.
        label: the defect type.
        size: ``(h, w)`` of the cut region in model pixels.
    """

    image: np.ndarray
    alpha: np.ndarray
    label: str
    size: tuple[int, int]


def departure(image: np.ndarray) -> np.ndarray:
    """``float32 (h, w)``: how far each pixel's gray value is from its neighbourhood's median
    (a window of about an eighth of the shorter side)."""
    gray = image.mean(axis=2).astype(np.float32)
    k = max(3, min(gray.shape) // 8) | 1
    median = cv2.medianBlur(np.clip(gray * 255, 0, 255).astype(np.uint8), min(k, 255))
    return np.abs(gray - median.astype(np.float32) / 255)


def region_alpha(dev: np.ndarray) -> np.ndarray:
    """Inside a box: Otsu's threshold on the departure, a little smoothed."""
    u8 = np.clip(dev / max(float(dev.max()), 1e-6) * 255, 0, 255).astype(np.uint8)
    _, m = cv2.threshold(u8, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return m.astype(np.float32)


def boxes_of(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """``[(x, y, w, h)]`` of the connected regions of a binary mask."""
    n, _, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8))
    return [tuple(int(v) for v in stats[i, :4]) for i in range(1, n)]


def regions(p: Positive) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
    """``[(box (x, y, w, h), alpha of the whole image)]`` of a labeled defect."""
    if p.how == "mask":
        return [(box, p.target) for box in boxes_of(p.target)]
    dev = departure(p.image)
    if p.how == "boxes":
        out = []
        for bag in np.unique(p.bags[p.bags > 0]):
            box = boxes_of(p.bags == bag)[0]
            x, y, w, h = box
            alpha = np.zeros_like(dev)
            alpha[y:y + h, x:x + w] = region_alpha(dev[y:y + h, x:x + w])
            out.append((box, alpha))
        return out
    seed = dev >= np.quantile(dev, 1 - IMAGE_TOP)
    blob = cv2.dilate(seed.astype(np.uint8), np.ones((3, 3), np.uint8))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(blob)
    if n < 2:
        return []
    big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    alpha = (lab == big).astype(np.float32)
    return [(boxes_of(alpha)[0], alpha)]


def cut(p: Positive, box: tuple[int, int, int, int], alpha: np.ndarray,
        patch: int) -> Cutout:
    """The square around ``box`` (with ``MARGIN``, mirrored where it leaves the image),
    resized to ``patch``."""
    x, y, w, h = box
    side = max(MIN_SIDE, round(max(w, h) * (1 + 2 * MARGIN)))
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    H, W = alpha.shape
    pad = side
    img = cv2.copyMakeBorder(p.image, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    a = np.pad(alpha, pad)  # no defect outside the image
    img = img.reshape(H + 2 * pad, W + 2 * pad, -1)[y0 + pad:y0 + pad + side,
                                                   x0 + pad:x0 + pad + side]
    a = a[y0 + pad:y0 + pad + side, x0 + pad:x0 + pad + side]
    img = cv2.resize(img, (patch, patch), interpolation=cv2.INTER_AREA).reshape(
        patch, patch, -1)
    a = cv2.resize(a, (patch, patch), interpolation=cv2.INTER_AREA)
    return Cutout(img.astype(np.float32), np.clip(a, 0, 1).astype(np.float32), p.label,
                  (side, side))


def cutouts(positives: list[Positive], patch: int) -> list[Cutout]:
    """Every region of every labeled defect as a :class:`Cutout`."""
    return [cut(p, box, alpha, patch) for p in positives for box, alpha in regions(p)
            if box[2] * box[3] > 0]
