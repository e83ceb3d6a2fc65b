"""The demo part: a procedurally rendered machined washer on a conveyor, with defects.

``kensa make-demo-data`` calls :func:`make_demo_dataset`, which writes an MVTec AD-layout
dataset (``train/good``, ``test/<kind>``, ``ground_truth/<kind>/NNN_mask.png``) that the rest
of Kensa reads like any other. Rendering is vectorised numpy + OpenCV and deterministic: each
image draws from its own RNG seeded by ``(seed, split, index)``, so an image does not change
when the counts of other folders do.

A rendered image is ``uint8 (S, S, 3)`` RGB; its defect mask is ``bool (S, S)`` and lies
inside the washer's metal (for ``chip``: the metal that was removed).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from .errors import DataError

DEFECT_KINDS = ("scratch", "dent", "stain", "chip")
MARKER = ".kensa-demo.json"
_STAGING = ".kensa-demo-staging"
_FOLDERS = ("train", "test", "ground_truth")
_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 3]
_SPLIT_CODE = {"train": 0, "test_good": 1, **{k: 10 + i for i, k in enumerate(DEFECT_KINDS)}}
_MIN_DEFECT_PIXELS = 4


def render_washer(
    size: int, rng: np.random.Generator, defect: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Renders one washer seen from above, optionally with one defect.

    Args:
        size: side ``S`` of the square image in pixels.
        rng: the source of every random choice (pose, light, texture, defect).
        defect: ``None`` for a good part, or one of :data:`DEFECT_KINDS`.

    Returns:
        ``(image, mask)``: ``uint8 (S, S, 3)`` RGB and ``bool (S, S)`` (all False when good).
    """
    if defect is not None and defect not in DEFECT_KINDS:
        raise ValueError(f"unknown defect kind {defect!r}; choose from {DEFECT_KINDS}")
    g = _geometry(size, rng)
    background = _background(g, rng)
    metal = _metal(g, rng)
    alpha = g["alpha"]
    mask = np.zeros((size, size), dtype=bool)
    if defect == "chip":
        alpha, mask = _chip(g, rng)
    elif defect is not None:
        metal, mask = _SURFACE_DEFECTS[defect](g, metal, rng)
    background = _cast_shadow(g, background, alpha)
    a = alpha[..., None]
    img = background * (1.0 - a) + metal * a
    grain = rng.normal(0.0, 0.008, (size, size, 1)) + rng.normal(0.0, 0.003, (size, size, 3))
    img = np.clip(img + grain.astype(np.float32), 0.0, 1.0)
    return (img * 255.0 + 0.5).astype(np.uint8), mask


# --- the part -------------------------------------------------------------------------------

def _geometry(size: int, rng: np.random.Generator) -> dict:
    """Pose, radii, light direction and the polar grid of one washer."""
    u = size / 256.0  # lengths below are in pixels at 256x256
    scale = rng.uniform(0.95, 1.05)
    cx = size / 2 + rng.uniform(-4, 4) * u
    cy = size / 2 + rng.uniform(-4, 4) * u
    r_out = 0.39 * size * scale * (1 + rng.uniform(-0.015, 0.015))
    r_in = r_out * (0.45 + rng.uniform(-0.015, 0.015))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    r = np.sqrt(dx * dx + dy * dy)
    theta = np.arctan2(dy, dx)
    # Anti-aliased annulus: one-pixel ramps at both rims.
    alpha = np.clip(r_out - r + 0.5, 0, 1) * np.clip(r - r_in + 0.5, 0, 1)
    light = rng.uniform(0, 2 * np.pi)
    return {"size": size, "u": u, "cx": cx, "cy": cy, "r_out": r_out, "r_in": r_in,
            "xx": xx, "yy": yy, "r": r, "theta": theta, "alpha": alpha.astype(np.float32),
            "metal": alpha > 0.5, "light": light,
            "lx": np.float32(np.cos(light)), "ly": np.float32(np.sin(light))}


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int]):
    """Low-frequency noise ``float32 shape`` in about ``[-1, 1]``: a coarse grid, upsampled."""
    coarse = rng.standard_normal(cells).astype(np.float32)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC) * 0.6


def _background(g: dict, rng: np.random.Generator) -> np.ndarray:
    """Dark rubber conveyor belt: faint lengthwise streaks and blotches, ``float32 (S,S,3)``."""
    s = g["size"]
    streaks = cv2.resize(rng.standard_normal((s, max(s // 24, 2))).astype(np.float32), (s, s),
                         interpolation=cv2.INTER_LINEAR)
    blotch = _smooth_noise(rng, (s, s), (5, 5))
    v = 0.115 + 0.012 * streaks + 0.015 * blotch
    v += 0.03 * ((g["xx"] - g["cx"]) * g["lx"] + (g["yy"] - g["cy"]) * g["ly"]) / s
    return v[..., None] * np.array([1.0, 1.02, 1.06], dtype=np.float32)


def _cast_shadow(g: dict, background: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Darkens the belt under a soft shadow of the part, thrown away from the light."""
    shift = 5.0 * g["u"]
    m = np.float32([[1, 0, -g["lx"] * shift], [0, 1, -g["ly"] * shift]])
    shadow = cv2.warpAffine(alpha, m, (g["size"], g["size"]), flags=cv2.INTER_LINEAR)
    shadow = cv2.GaussianBlur(shadow, (0, 0), 3.0 * g["u"] + 0.5)
    return background * (1.0 - 0.55 * shadow)[..., None]


def _metal(g: dict, rng: np.random.Generator) -> np.ndarray:
    """Lathe-turned steel: concentric tool marks, anisotropic sheen, bevels, ``(S,S,3)``."""
    u, r, theta = g["u"], g["r"], g["theta"]
    # Radial profile sampled every quarter pixel: fine tool-mark rings and broader bands.
    n = int(g["size"] * 4) + 8
    fine = cv2.GaussianBlur(rng.standard_normal((n, 1)).astype(np.float32), (1, 0), 1.2).ravel()
    broad = cv2.GaussianBlur(rng.standard_normal((n, 1)).astype(np.float32), (1, 0),
                             24.0 * u + 1).ravel()
    broad /= np.abs(broad).max() + 1e-6
    ri = np.minimum((r * 4).astype(np.int32), n - 1)
    period = rng.uniform(2.2, 3.0) * u + 0.8
    rings = (0.022 * np.sin(2 * np.pi * r / period + rng.uniform(0, 2 * np.pi))
             + 0.05 * fine[ri] + 0.045 * broad[ri])
    # Ring strength wanders a little around the part (tool chatter).
    rings *= 1.0 + 0.35 * _smooth_noise(rng, r.shape, (4, 4))
    # Turned surfaces light up in two opposite sectors across the light direction.
    sheen_angle = g["light"] + np.pi / 2 + rng.uniform(-0.2, 0.2)
    sheen = ((1 + np.cos(2 * (theta - sheen_angle))) / 2) ** 3
    along = ((g["xx"] - g["cx"]) * g["lx"] + (g["yy"] - g["cy"]) * g["ly"]) / g["r_out"]
    facing = np.cos(theta - g["light"])
    bevel = 2.6 * u + 0.6
    outer = np.clip(1 - (g["r_out"] - r) / bevel, 0, 1)
    inner = np.clip(1 - (r - g["r_in"]) / bevel, 0, 1)
    sx, sy = g["cx"] + 0.45 * g["r_out"] * g["lx"], g["cy"] + 0.45 * g["r_out"] * g["ly"]
    spec = np.exp(-((g["xx"] - sx) ** 2 + (g["yy"] - sy) ** 2) / (2 * (0.3 * g["r_out"]) ** 2))
    v = (0.47 + rng.uniform(-0.02, 0.02) + rings + 0.17 * sheen + 0.08 * along
         + 0.10 * spec + 0.22 * outer * facing - 0.16 * inner * facing)
    tint = np.array([0.97, 1.0, 1.04], dtype=np.float32) * np.float32(1 + rng.uniform(-0.01, 0.01))
    return np.clip(v, 0, 1).astype(np.float32)[..., None] * tint


# --- defects --------------------------------------------------------------------------------

def _point_on_metal(g: dict, rng: np.random.Generator, margin: float) -> tuple[float, float]:
    """A random point of the annulus at least ``margin`` pixels inside both rims."""
    lo, hi = g["r_in"] + margin, g["r_out"] - margin
    rad = np.sqrt(rng.uniform(lo * lo, hi * hi))  # uniform over the annulus area
    ang = rng.uniform(0, 2 * np.pi)
    return g["cx"] + rad * np.cos(ang), g["cy"] + rad * np.sin(ang)


def _contrast(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Log-uniform contrast: many subtle defects, a few obvious ones."""
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _retry(make):
    """Redraws a defect until its mask has a few pixels on the metal (small sizes)."""
    def wrapped(g, metal, rng):
        for _ in range(50):
            out, mask = make(g, metal, rng)
            if mask.sum() >= _MIN_DEFECT_PIXELS:
                return out, mask
        raise RuntimeError("could not place a defect on the part; the image is too small")
    return wrapped


@_retry
def _scratch(g, metal, rng):
    """A thin curved line, brighter or darker than the metal, fading at its ends."""
    u, s = g["u"], g["size"]
    x0, y0 = _point_on_metal(g, rng, 3 * u)
    length = rng.uniform(20, 90) * u
    ang = rng.uniform(0, 2 * np.pi)
    bend = rng.uniform(-0.35, 0.35) * length
    p0 = np.array([x0, y0])
    d = np.array([np.cos(ang), np.sin(ang)])
    p2 = p0 + length * d
    p1 = (p0 + p2) / 2 + bend * np.array([-d[1], d[0]])
    t = np.linspace(0, 1, 32)[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t * t * p2
    thick = max(1, round(rng.choice([1, 1, 2, 3]) * u))
    shape = np.zeros((s, s), np.uint8)
    ink = np.zeros((s, s), np.uint8)
    taper = np.sin(np.pi * (np.arange(31) + 0.5) / 31) ** 0.5
    fix = 16  # cv2 draws at 1/16-pixel precision with shift=4
    ipts = np.round(pts * fix).astype(np.int32)
    for i in range(31):
        a, b = tuple(ipts[i]), tuple(ipts[i + 1])
        cv2.line(shape, a, b, 255, thick, cv2.LINE_AA, shift=4)
        cv2.line(ink, a, b, int(40 + 215 * taper[i]), thick, cv2.LINE_AA, shift=4)
    mask = (shape > 96) & g["metal"]
    stroke = (ink.astype(np.float32) / 255.0) * g["metal"]
    sign = 1.0 if rng.random() < 0.5 else -1.0
    c = _contrast(rng, 0.06, 0.35)
    return np.clip(metal + (sign * c * stroke)[..., None], 0, 1), mask


@_retry
def _dent(g, metal, rng):
    """A small elliptical pit: darker floor, the wall facing the light catches it."""
    u = g["u"]
    x0, y0 = _point_on_metal(g, rng, 5 * u)
    a = max(1.5, rng.uniform(2.5, 9.0) * u)
    b = max(1.2, a * rng.uniform(0.45, 1.0))
    phi = rng.uniform(0, np.pi)
    dx, dy = g["xx"] - x0, g["yy"] - y0
    pu = (dx * np.cos(phi) + dy * np.sin(phi)) / a
    pv = (-dx * np.sin(phi) + dy * np.cos(phi)) / b
    d2 = pu * pu + pv * pv
    depth = np.clip(1 - d2, 0, None) ** 2
    gy, gx = np.gradient(depth)
    c = _contrast(rng, 0.05, 0.35)
    shade = c * (-0.5 * depth + 1.6 * a * (gx * g["lx"] + gy * g["ly"]))
    mask = (d2 < 1) & g["metal"]
    return np.clip(metal + (shade * g["metal"])[..., None], 0, 1), mask


_STAIN_TINTS = (
    np.array([1.0, 0.72, 0.48], np.float32),  # rust
    np.array([0.55, 0.55, 0.6], np.float32),  # oil / coolant residue
    np.array([0.95, 0.8, 1.05], np.float32),  # heat tint
    np.array([1.22, 1.2, 1.12], np.float32),  # dried water mark (lighter)
)


@_retry
def _stain(g, metal, rng):
    """An irregular low-frequency blob of discoloration with a soft edge inside its mask."""
    u, s = g["u"], g["size"]
    x0, y0 = _point_on_metal(g, rng, 6 * u)
    radius = rng.uniform(6, 24) * u + 1
    phi, squash = rng.uniform(0, np.pi), rng.uniform(0.5, 1.0)
    dx, dy = g["xx"] - x0, g["yy"] - y0
    pu = dx * np.cos(phi) + dy * np.sin(phi)
    pv = (-dx * np.sin(phi) + dy * np.cos(phi)) / squash
    d2 = (pu * pu + pv * pv) / (radius * radius)
    # Noise features about the stain's own size make its outline ragged.
    cells = max(3, int(s / radius * rng.uniform(0.7, 1.5)))
    field = np.exp(-d2) * (1 + 1.1 * _smooth_noise(rng, (s, s), (cells, cells)))
    level = 0.55
    weight = np.clip((field - level) / 0.15, 0, 1) * g["metal"]
    mask = weight > 0
    weight *= 1 + 0.3 * _smooth_noise(rng, (s, s), (12, 12))  # mottled inside
    tint = _STAIN_TINTS[int(rng.integers(len(_STAIN_TINTS)))]
    c = _contrast(rng, 0.3, 0.95)
    w = np.clip(c * weight, 0, 1)[..., None]
    return np.clip(metal * (1 - w + w * tint), 0, 1), mask


def _chip(g, rng):
    """A piece broken off the outer rim; returns the new alpha and the removed metal."""
    u, s = g["u"], g["size"]
    ang = rng.uniform(0, 2 * np.pi)
    for _ in range(50):
        size = max(2.0, rng.uniform(4, 15) * u)
        px = g["cx"] + g["r_out"] * np.cos(ang)
        py = g["cy"] + g["r_out"] * np.sin(ang)
        k = np.linspace(0, 2 * np.pi, 14, endpoint=False)
        rad = size * (1 + 0.18 * rng.uniform(-1, 1, k.size)) * np.array([1.0, 0.7])[:, None]
        rot = rng.uniform(0, np.pi)
        xs = rad[0] * np.cos(k)
        ys = rad[1] * np.sin(k)
        poly = np.stack([px + xs * np.cos(rot) - ys * np.sin(rot),
                         py + xs * np.sin(rot) + ys * np.cos(rot)], axis=1)
        cut = np.zeros((s, s), np.uint8)
        cv2.fillPoly(cut, [np.round(poly * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
        removed = cut.astype(bool) & (g["alpha"] > 0)
        if removed.sum() >= _MIN_DEFECT_PIXELS:
            return g["alpha"] * (1 - cut.astype(np.float32)), removed
        ang = rng.uniform(0, 2 * np.pi)
    raise RuntimeError("could not place a chip on the part; the image is too small")


_SURFACE_DEFECTS = {"scratch": _scratch, "dent": _dent, "stain": _stain}


# --- the dataset ----------------------------------------------------------------------------

def make_demo_dataset(
    out: str | Path,
    seed: int = 0,
    n_train: int = 160,
    n_test_good: int = 30,
    n_per_defect: int = 15,
    size: int = 256,
) -> dict:
    """Writes the demo washer dataset in the MVTec AD layout, or reuses one already there.

    Layout: ``out/train/good/000.png``, ``out/test/good/000.png``, ``out/test/<kind>/000.png``
    and ``out/ground_truth/<kind>/000_mask.png`` (``uint8`` 0/255, image-sized) for each kind
    in :data:`DEFECT_KINDS`. The same arguments give the same bytes on every run.

    Images are rendered into ``out/.kensa-demo-staging`` and moved into place; the marker
    ``out/.kensa-demo.json`` is written last, so a dataset with a marker is complete. A second
    call with the same arguments returns at once; with other arguments it replaces the demo
    data (only folders it made itself).

    Args:
        out: the dataset folder (created if missing).
        seed: seeds every image.
        n_train: normal training images.
        n_test_good: normal test images.
        n_per_defect: test images per defect kind.
        size: image side in pixels.

    Returns:
        Summary: ``root``, ``seed``, ``size``, ``counts`` (``{"train/good": n, ...}``),
        ``defects`` and ``reused`` (True when the data was already there).

    Raises:
        DataError: ``out`` holds a ``train``, ``test`` or ``ground_truth`` folder that this
            function did not write (it is never overwritten).
    """
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    out = Path(out)
    params = {"seed": seed, "size": size, "n_train": n_train, "n_test_good": n_test_good,
              "n_per_defect": n_per_defect, "defects": list(DEFECT_KINDS), "version": 1}
    marker = _read_marker(out)
    if marker is not None and marker.get("complete") and marker.get("params") == params:
        return {**marker["summary"], "root": str(out), "reused": True}
    if marker is None and any((out / f).exists() for f in _FOLDERS):
        raise DataError(
            f"{out} already holds data that make-demo-data did not write (no {MARKER}); "
            "choose an empty or new folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    staging = out / _STAGING
    shutil.rmtree(staging, ignore_errors=True)
    counts = _render_all(staging, seed, size, n_train, n_test_good, n_per_defect)
    summary = {"seed": seed, "size": size, "counts": counts, "defects": list(DEFECT_KINDS)}
    _move_into_place(staging, out, params, summary)
    return {**summary, "root": str(out), "reused": False}


def _move_into_place(staging: Path, out: Path, params: dict, summary: dict) -> None:
    """Replaces ``out``'s demo folders with the rendered ones; the marker says complete last."""
    # Claim the folders before touching them, so an interrupted swap is ours to redo.
    _write_marker(out, {"complete": False, "params": params})
    for name in _FOLDERS:
        shutil.rmtree(out / name, ignore_errors=True)
        os.replace(staging / name, out / name)
    staging.rmdir()
    _write_marker(out, {"complete": True, "params": params, "summary": summary})


def _render_all(root: Path, seed, size, n_train, n_test_good, n_per_defect) -> dict:
    jobs = [("train", "train/good", None, n_train), ("test_good", "test/good", None, n_test_good)]
    jobs += [(k, f"test/{k}", k, n_per_defect) for k in DEFECT_KINDS]
    counts = {}
    for split, folder, defect, n in jobs:
        (root / folder).mkdir(parents=True, exist_ok=True)
        if defect:
            (root / "ground_truth" / defect).mkdir(parents=True, exist_ok=True)
        width = max(3, len(str(n - 1)))
        for i in range(n):
            rng = np.random.default_rng([seed, _SPLIT_CODE[split], i])
            img, mask = render_washer(size, rng, defect)
            name = f"{i:0{width}d}"
            _write_png(root / folder / f"{name}.png", img[..., ::-1])  # OpenCV writes BGR
            if defect:
                _write_png(root / "ground_truth" / defect / f"{name}_mask.png",
                           mask.astype(np.uint8) * 255)
        counts[folder] = n
    return counts


def _write_png(path: Path, arr: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(arr), _PNG):
        raise OSError(f"could not write {path}")


def _read_marker(out: Path) -> dict | None:
    try:
        return json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _write_marker(out: Path, data: dict) -> None:
    tmp = out / (MARKER + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, out / MARKER)
