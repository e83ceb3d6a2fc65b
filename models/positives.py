"""Operator-labeled defects as real positives for the segmentation head.

The head learns "anything that is not normal texture" from synthetic defects; a labeled
defect image shows it what a real one looks like. How much the label says decides the
objective (:func:`models.losses.positive_loss`):

- ``image``: a defect name alone (the operator drew nothing). Multiple-instance: somewhere in
  the image the map must be high, so the top ``TOP_SHARE`` of its logits train towards 1;
  the rest of the image is left alone (it may hold more of the defect). The normals keep
  every pixel low through the synthetic-defect objective.
- ``boxes``: boxes ``[x, y, w, h]`` in image pixels (a review's ``regions``). Inside each
  box the top ``BOX_TOP_SHARE`` of its logits train towards 1 (a box around a crack is
  mostly intact surface); every pixel outside all boxes trains towards 0.
- ``mask``: a defect mask (MVTec-style, beside a labels CSV): every pixel is supervised.

Each labeled image is augmented every time it is drawn (flips, a small shift, brightness), so
a handful goes far without being memorised; half the time it is shown at the coarse view's
scale, as inference also looks at it there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .config import ModelConfig
from .data import Item, RegionSpec, read_image, read_mask
from .errors import DataError
from .preprocess import has_coarse_view, model_shape, prepare_for, shrink

POSITIVE_BATCH = 4  # labeled defect images per positive step
POSITIVE_EVERY = 2  # a positive step every this many training steps
TOP_SHARE = 0.01  # image-level labels: the share of the map that must be high
BOX_TOP_SHARE = 0.2  # boxes: the share of each box that must be high
SHIFT = 0.08  # the largest shift, as a share of each side
BRIGHTNESS = 0.15  # gain within 1 +- this, plus an offset within +- a third of it
POSITIVE_WEIGHT = 1.0  # the positive loss beside the synthetic-defect loss
MIXED_SLOTS = 2  # --positive-step mixed: windows of each training batch that are labeled defects
HOW = ("image", "boxes", "mask")


@dataclass
class Positive:
    """One labeled defect, prepared for the head.

    Attributes:
        image: ``(h, w, C)`` at its model shape.
        label: the defect name.
        how: ``image``, ``boxes`` or ``mask`` (see the module).
        known: ``float32 (h, w)``: 1 where the pixel target is known.
        target: ``float32 (h, w)``: the pixel target where known.
        bags: ``float32 (h, w)``: 0 outside every bag, ``i`` inside bag ``i`` (1-based): the
            top ``share`` of each bag must be high.
        share: the share of a bag that must be high.
    """

    image: np.ndarray
    label: str
    how: str
    known: np.ndarray
    target: np.ndarray
    bags: np.ndarray
    share: float


def read_positives(rows: list[tuple[Item, str]], regions: dict[str, RegionSpec],
                   cfg: ModelConfig) -> list[Positive]:
    """The labeled defects ``rows`` as positives, their regions (``regions``: by resolved
    image path) scaled onto the prepared image.

    Raises:
        DataError: an image that does not decode, a box outside its image or a mask that
            does not decode; naming the row.
    """
    out = []
    for item, label in rows:
        spec = regions.get(str(item.path.resolve()))
        where = spec.where if spec else str(item.path)
        try:
            image = read_image(item.path)
        except Exception as exc:  # noqa: BLE001 - named, with the row
            raise DataError(f"{where}: the labeled image {item.path} does not decode ({exc})"
                            ) from None
        out.append(positive(image, label, spec, cfg))
    return out


def positive(image: np.ndarray, label: str, spec: RegionSpec | None,
             cfg: ModelConfig) -> Positive:
    """One decoded labeled image ``(H, W, C)`` and its regions -> a :class:`Positive`.

    Raises:
        DataError: a box outside the image, or a mask that does not decode.
    """
    H, W = image.shape[:2]
    h, w = model_shape(H, W, cfg)
    prepared = prepare_for(image, cfg)
    zeros = np.zeros((h, w), np.float32)
    if spec is not None and spec.mask is not None:
        try:
            mask = read_mask(spec.mask)
        except Exception as exc:  # noqa: BLE001 - named, with the row
            raise DataError(f"{spec.where}: the mask {spec.mask} does not decode ({exc})"
                            ) from None
        small = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
        target = (small > 0.25).astype(np.float32)
        return Positive(prepared, label, "mask", np.ones((h, w), np.float32), target, zeros,
                        0.0)
    if spec is not None and spec.boxes:
        bags = zeros.copy()
        for i, (x, y, bw, bh) in enumerate(spec.boxes):
            if x + bw > W or y + bh > H:
                raise DataError(f"{spec.where}: region {i} {[x, y, bw, bh]} is not inside the "
                                f"{W}x{H} image (x + w <= {W}, y + h <= {H})")
            x0, y0 = math.floor(x * w / W), math.floor(y * h / H)
            x1 = max(x0 + 1, math.ceil((x + bw) * w / W))
            y1 = max(y0 + 1, math.ceil((y + bh) * h / H))
            bags[y0:y1, x0:x1] = i + 1  # an overlap belongs to the later box
        known = (bags == 0).astype(np.float32)
        return Positive(prepared, label, "boxes", known, zeros, bags, BOX_TOP_SHARE)
    return Positive(prepared, label, "image", zeros, zeros.copy(), np.ones((h, w), np.float32),
                    TOP_SHARE)


def summary(positives: list[Positive]) -> dict:
    """What ``bundle.json`` says: labeled defects per type, by how they were supervised."""
    out: dict[str, dict[str, int]] = {}
    for p in positives:
        out.setdefault(p.label, {h: 0 for h in HOW})[p.how] += 1
    return dict(sorted(out.items()))


def augmented(rng: np.random.Generator, p: Positive
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(image, known, target, bags)`` of ``p`` flipped, shifted (mirrored at the edges)
    and brightened at random; the maps move with the image."""
    arrays = [p.image, p.known[..., None], p.target[..., None], p.bags[..., None]]
    if rng.random() < 0.5:
        arrays = [a[:, ::-1] for a in arrays]
    if rng.random() < 0.5:
        arrays = [a[::-1] for a in arrays]
    h, w = p.image.shape[:2]
    dy, dx = (int(rng.integers(-int(SHIFT * d), int(SHIFT * d) + 1)) for d in (h, w))
    if dy or dx:
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        arrays = [cv2.warpAffine(np.ascontiguousarray(a), m, (w, h), flags=cv2.INTER_NEAREST,
                                 borderMode=cv2.BORDER_REFLECT_101).reshape(a.shape)
                  for a in arrays]
    image, known, target, bags = (np.ascontiguousarray(a) for a in arrays)
    gain = rng.uniform(1 - BRIGHTNESS, 1 + BRIGHTNESS)
    image = np.clip(image * gain + rng.uniform(-BRIGHTNESS / 3, BRIGHTNESS / 3), 0, 1)
    return image.astype(np.float32), known[..., 0], target[..., 0], bags[..., 0]


def positive_batch(rng: np.random.Generator, positives: list[Positive], cfg: ModelConfig,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                  torch.Tensor, torch.Tensor]:
    """``(x (B, C, H, W), known, target, bags (B, 1, H, W), shares (B,))``: up to
    ``POSITIVE_BATCH`` labeled defects drawn at random and augmented, padded (mirrored, the
    padding neither known nor in a bag) to one shape; half the time at the coarse view."""
    idx = rng.choice(len(positives), min(POSITIVE_BATCH, len(positives)), replace=False)
    samples = [augmented(rng, positives[i]) for i in idx]
    H = max(s[0].shape[0] for s in samples)
    W = max(s[0].shape[1] for s in samples)
    xs, maps = [], []
    for image, known, target, bags in samples:
        pad = ((0, H - image.shape[0]), (0, W - image.shape[1]))
        xs.append(np.pad(image, pad + ((0, 0),), mode="symmetric"))
        maps.append(np.stack([np.pad(m, pad) for m in (known, target, bags)]))
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2)
    m = torch.from_numpy(np.stack(maps))  # (B, 3, H, W)
    if has_coarse_view(cfg) and rng.random() < 0.5:
        x = shrink(x, cfg)
        area = torch.nn.functional.interpolate(m[:, :2], size=x.shape[-2:], mode="area")
        bags = torch.nn.functional.interpolate(m[:, 2:], size=x.shape[-2:], mode="nearest")
        m = torch.cat([(area[:, :1] > 0.999).float(), (area[:, 1:] > 0.5).float(), bags], 1)
    shares = torch.tensor([positives[i].share for i in idx], dtype=torch.float32)
    x = x.to(device).contiguous(memory_format=torch.channels_last)
    m = m.to(device)
    return x, m[:, :1], m[:, 1:2], m[:, 2:], shares


def mixed_windows(rng: np.random.Generator, positives: list[Positive], cfg: ModelConfig,
                  crop: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x (n, crop, crop, C), maps (n, 3, crop, crop): known, target, bags, shares (n,))``:
    ``n`` labeled defects drawn at random and augmented, each whole at the coarse view's scale
    (smaller still when that is larger than a window) and mirrored out to a training window,
    so they ride in the synthetic defects' batch (``--positive-step mixed``) instead of a
    forward pass of their own. The padding is neither known nor in a bag."""
    idx = rng.choice(len(positives), min(n, len(positives)), replace=False)
    xs, maps = [], []
    for i in idx:
        image, known, target, bags = augmented(rng, positives[i])
        h, w = image.shape[:2]
        scale = min(cfg.coarse_scale if has_coarse_view(cfg) else 1.0, crop / max(h, w))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA).reshape(
            size[1], size[0], -1)
        known = cv2.resize(known, size, interpolation=cv2.INTER_AREA) > 0.999
        target = cv2.resize(target, size, interpolation=cv2.INTER_AREA) > 0.5
        bags = cv2.resize(bags, size, interpolation=cv2.INTER_NEAREST)
        pad = ((0, crop - size[1]), (0, crop - size[0]))
        xs.append(np.pad(image, pad + ((0, 0),), mode="symmetric"))
        maps.append(np.stack([np.pad(m.astype(np.float32), pad) for m in (known, target, bags)]))
    shares = np.array([positives[i].share for i in idx], np.float32)
    return np.stack(xs).astype(np.float32), np.stack(maps), shares
