"""Synthetic defects for the denoising objective.

Normal training images get a defect painted in (irregular noise blobs, ellipses, scratches and
cracks) filled with foreign material (another image's texture, procedural noise, a shift in
brightness, a blur or a flat colour) and blended at a random opacity. The autoencoder must give
back the clean image; the segmentation head must find the painted pixels. None of this knows
what the real defects look like: it only teaches "anything that is not normal texture".
"""

from __future__ import annotations

import cv2
import numpy as np

MIN_VISIBLE = 0.03  # a painted pixel counts as defect only if it changed by at least this


def fractal_noise(rng: np.random.Generator, size: int, octaves: int = 4,
                  base: int | None = None) -> np.ndarray:
    """Smooth random field in ``[0, 1]``, ``(size, size)``: octaves of upsampled random grids
    (a cheap stand-in for Perlin noise)."""
    base = base or int(rng.integers(2, 7))
    out = np.zeros((size, size), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = min(size, base * 2**o)
        grid = rng.random((cells, cells), dtype=np.float32)
        out += amp * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def blob_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """Irregular blobs: thresholded fractal noise, one to a few components, ``(S, S)`` in {0,1}."""
    noise = fractal_noise(rng, size)
    # area from about 0.5 % to 40 % of the window, small ones more often: real defects run
    # from pin-holes to whole faces of a part
    q = 1 - np.exp(rng.uniform(np.log(0.005), np.log(0.4)))
    m = (noise >= np.quantile(noise, q)).astype(np.uint8)
    n, lab = cv2.connectedComponents(m)
    if n > 2:  # keep a random subset of components so blobs stay few
        keep = rng.choice(np.arange(1, n), size=int(rng.integers(1, min(3, n - 1) + 1)),
                          replace=False)
        m = np.isin(lab, keep).astype(np.uint8)
    return m.astype(np.float32)


def ellipse_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    c = tuple(int(v) for v in rng.integers(0, size, 2))
    axes = tuple(int(v) for v in rng.integers(1, max(2, size // 8), 2))
    cv2.ellipse(m, c, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return m.astype(np.float32)


def line_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """A scratch or crack: a jagged polyline, 1-3 pixels wide at ``size``."""
    m = np.zeros((size, size), np.uint8)
    n = int(rng.integers(2, 7))
    p = rng.integers(0, size, 2).astype(np.float64)
    step = size * rng.uniform(0.05, 0.2)
    angle = rng.uniform(0, 2 * np.pi)
    pts = [p.copy()]
    for _ in range(n):
        angle += rng.normal(0, 0.5)
        p = p + step * np.array([np.cos(angle), np.sin(angle)])
        pts.append(p.copy())
    pts_i = np.round(np.array(pts)).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(m, [pts_i], False, 1, int(rng.integers(1, max(2, size // 48) + 1)))
    return m.astype(np.float32)


def _fill(rng: np.random.Generator, img: np.ndarray, pool: list[np.ndarray]) -> np.ndarray:
    """What the defect is made of, ``(S, S, C)`` in ``[0, 1]``."""
    size, c = img.shape[0], img.shape[2]
    kind = rng.integers(0, 5)
    if kind == 0 and pool:  # foreign texture: another image, turned and flipped
        other = pool[int(rng.integers(0, len(pool)))]
        y, x = (int(rng.integers(0, max(1, d - size + 1))) for d in other.shape[:2])
        other = other[y:y + size, x:x + size]
        if other.shape[:2] != (size, size):  # a narrower image (aspect kept): mirror it out
            other = np.pad(other, ((0, size - other.shape[0]), (0, size - other.shape[1]),
                                   (0, 0)), mode="reflect")
        other = np.rot90(other, int(rng.integers(0, 4)))
        if rng.random() < 0.5:
            other = other[:, ::-1]
        fill = np.ascontiguousarray(other)
        fill = fill * rng.uniform(0.6, 1.4) + rng.uniform(-0.2, 0.2)
    elif kind == 1:  # procedural texture
        fill = np.stack([fractal_noise(rng, size, base=int(rng.integers(4, 32)))
                         for _ in range(c)], axis=2)
        fill = fill * rng.uniform(0.3, 1.0) + rng.uniform(0, 0.5)
    elif kind == 2:  # brighter or darker material
        fill = img * rng.uniform(0.2, 1.8) + rng.uniform(-0.3, 0.3)
    elif kind == 3:  # smudge: local blur plus a shift
        k = int(rng.integers(2, 6)) * 2 + 1
        fill = cv2.GaussianBlur(img, (k, k), 0).reshape(img.shape) + rng.uniform(-0.2, 0.2)
    else:  # flat colour
        fill = np.broadcast_to(rng.random(c, dtype=np.float32), img.shape)
    return np.clip(fill, 0, 1).astype(np.float32)


def add_defect(rng: np.random.Generator, img: np.ndarray,
               pool: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Paints one synthetic defect into a normal image.

    Args:
        img: ``float32 (S, S, C)`` in ``[0, 1]``.
        pool: other normal images ``(h, w, C)`` to borrow foreign texture from.

    Returns:
        (defective image ``(S, S, C)``, mask ``float32 (S, S)`` in {0, 1}).
    """
    size = img.shape[0]
    shape = rng.random()
    if shape < 0.55:
        m = blob_mask(rng, size)
    elif shape < 0.75:
        m = ellipse_mask(rng, size)
    else:
        m = line_mask(rng, size)
    fill = _fill(rng, img, pool or [])
    beta = rng.uniform(0.15, 1.0)
    soft = cv2.GaussianBlur(m, (3, 3), 0) if rng.random() < 0.5 else m
    out = img * (1 - beta * soft[..., None]) + fill * (beta * soft[..., None])
    visible = np.abs(out - img).max(axis=2) >= MIN_VISIBLE
    return out.astype(np.float32), (visible & (m > 0)).astype(np.float32)
