"""Labeled defects pasted onto training normals: a positive source for the segmentation head
beside the procedural defects of :mod:`models.synth` (``--labeled-defects paste``).

The labeled images themselves never train the head here. Each one gives a patch: its defect
region (the mask when there is one; inside each box, or in the whole image for an image-level
label, the connected top of the model's own map around its peak, read again as training
goes) cut out with a soft edge. A share of the training windows that would get a synthetic
defect get a patch instead, flipped, turned, brightened, matched to the window's brightness,
at a random place and opacity; the autoencoder must return the clean window, the head must
find the pasted pixels. So a handful of real defects appears on many normals in many places,
and the normal surface around a labeled defect is never a target (the multiple-instance
objective's fault, ``docs/labeled-defects.md``). Held-out normals are never pasted on: only
the windows the networks fit are.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .device import to_device
from .maps import gaussian_blur, residual_map
from .positives import Positive
from .synth import MIN_VISIBLE

PASTE_SHARE = 0.5  # of the windows that get a defect, the share that gets a real one
PASTE_FROM = 0.25  # image and box labels: pasting starts at this share of training
REFRESH_EVERY = 0.1  # their regions are read again from the map at this interval
REGION_LEVEL = 0.5  # a read region: the connected pixels at >= this share of the peak
MAX_REGION = 0.25  # the largest share of its bag (box or image) a read region may cover
MARGIN = 3  # pixels of surface kept around a region, faded out by the soft edge


@dataclass
class Patch:
    """One labeled defect cut out for pasting.

    Attributes:
        image: ``(ph, pw, C)`` the labeled image around its region.
        alpha: ``float32 (ph, pw)`` the soft edge: 1 on the region, fading to 0.
        region: ``bool (ph, pw)`` the defect's pixels.
        label: the defect name.
    """

    image: np.ndarray
    alpha: np.ndarray
    region: np.ndarray
    label: str


class PasteSource:
    """The patches of a run's labeled defects, their regions read again as training goes."""

    def __init__(self, positives: list[Positive]):
        self.positives = positives
        self.fixed = [patch_of(p, p.target > 0.5) for p in positives if p.how == "mask"]
        self.patches = [q for q in self.fixed if q is not None]
        self.read_at: float | None = None

    @property
    def needs_map(self) -> bool:
        return any(p.how != "mask" for p in self.positives)

    def update(self, model: torch.nn.Module, frac: float, device: torch.device) -> None:
        """Reads the image and box labels' regions from ``model``'s map once training has
        reached ``PASTE_FROM``, and again every ``REFRESH_EVERY``."""
        if not self.needs_map or frac < PASTE_FROM:
            return
        if self.read_at is not None and frac - self.read_at < REFRESH_EVERY:
            return
        self.read_at = frac
        read = [patch_of(p, read_region(p, m))
                for p, m in zip(self.positives, defect_maps(model, self.positives, device))
                if p.how != "mask"]
        self.patches = [q for q in self.fixed + read if q is not None]

    def draw(self, rng: np.random.Generator) -> Patch | None:
        return self.patches[int(rng.integers(len(self.patches)))] if self.patches else None


@torch.no_grad()
def defect_maps(model: torch.nn.Module, positives: list[Positive], device: torch.device
                ) -> list[np.ndarray]:
    """``(h, w)`` per labeled image: the head's probability plus the residual (each image's
    residual over its own largest value), smoothed: where the model now sees its defect."""
    out = []
    for p in positives:
        x = to_device(p.image[None], device)
        recon, logits = model(x)
        res = residual_map(x, recon.float())
        res = res / res.amax().clamp_min(1e-6)
        amap = gaussian_blur(0.5 * (torch.sigmoid(logits.float()) + res), 1.0)
        out.append(amap[0, 0].cpu().numpy())
    return out


def read_region(p: Positive, amap: np.ndarray) -> np.ndarray:
    """``bool (h, w)``: the defect pixels of ``p`` by the map ``amap``: in each box (each bag)
    the connected top of the map around its peak."""
    region = np.zeros(amap.shape, bool)
    for bag in np.unique(p.bags):
        if bag > 0:
            region |= peak_region(amap, p.bags == bag)
    return region


def peak_region(amap: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """``bool``: the pixels of ``inside`` connected to the map's peak there at
    ``REGION_LEVEL`` of it or more, cut to at most ``MAX_REGION`` of ``inside``."""
    values = np.where(inside, amap, -np.inf)
    peak = np.unravel_index(int(values.argmax()), amap.shape)
    candidate = (values >= REGION_LEVEL * amap[peak]).astype(np.uint8)
    _, parts = cv2.connectedComponents(candidate, connectivity=8)
    region = parts == parts[peak]
    most = max(1, int(MAX_REGION * inside.sum()))
    if region.sum() > most:  # keep its highest pixels
        level = np.sort(amap[region])[-most]
        region &= amap >= level
    return region


def patch_of(p: Positive, region: np.ndarray) -> Patch | None:
    """The patch of ``p`` around ``region`` (``None`` for an empty region)."""
    ys, xs = np.nonzero(region)
    if len(ys) == 0:
        return None
    h, w = region.shape
    y0, y1 = max(0, ys.min() - MARGIN), min(h, ys.max() + MARGIN + 1)
    x0, x1 = max(0, xs.min() - MARGIN), min(w, xs.max() + MARGIN + 1)
    cut = region[y0:y1, x0:x1]
    grown = cv2.dilate(cut.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
    alpha = np.maximum(cv2.GaussianBlur(grown, (5, 5), 1.0), cut)
    return Patch(np.ascontiguousarray(p.image[y0:y1, x0:x1]), alpha.astype(np.float32), cut,
                 p.label)


def paste(rng: np.random.Generator, window: np.ndarray, patch: Patch
          ) -> tuple[np.ndarray, np.ndarray]:
    """``(window with the patch pasted (S, S, C), mask float32 (S, S))``: the patch flipped,
    turned and brightened at random, its surface matched to the window's brightness, at a
    random place (partly outside the window at most by half its size) and opacity."""
    image, alpha, region = patch.image, patch.alpha, patch.region.astype(np.float32)
    turn = int(rng.integers(4))
    image, alpha, region = (np.rot90(a, turn) for a in (image, alpha, region))
    if rng.random() < 0.5:
        image, alpha, region = (a[:, ::-1] for a in (image, alpha, region))
    ph, pw = alpha.shape
    S = window.shape[0]
    y = int(rng.integers(-(ph // 2), max(1, S - ph // 2)))
    x = int(rng.integers(-(pw // 2), max(1, S - pw // 2)))
    wy, wx = slice(max(0, y), min(S, y + ph)), slice(max(0, x), min(S, x + pw))
    py, px = slice(wy.start - y, wy.stop - y), slice(wx.start - x, wx.stop - x)
    under, src = window[wy, wx], image[py, px]
    a = alpha[py, px, None] * rng.uniform(0.7, 1.0)
    surface = alpha[py, px] < 0.5  # what of the patch is not defect: its brightness matches
    shift = float(under.mean() - (src[surface].mean() if surface.any() else src.mean()))
    src = np.clip(src * rng.uniform(0.9, 1.1) + shift, 0, 1)
    out = window.copy()
    out[wy, wx] = under * (1 - a) + src * a
    mask = np.zeros(window.shape[:2], np.float32)
    visible = np.abs(out[wy, wx] - under).max(axis=2) >= MIN_VISIBLE
    mask[wy, wx] = (visible & (region[py, px] > 0.5)).astype(np.float32)
    return out.astype(np.float32), mask
