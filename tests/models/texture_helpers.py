"""Generated textures, planted defects and placed latent codes for the core's tests (a module
of its own, so its name cannot clash with another folder's conftest)."""

from __future__ import annotations

import cv2
import numpy as np

SIZE = 64


def texture(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A brushed-metal-like normal image: a soft gradient plus fine horizontal grain, uint8."""
    y, x = np.mgrid[0:size, 0:size] / size
    angle = rng.uniform(0, 2 * np.pi)
    base = 0.5 + 0.15 * (np.cos(angle) * x + np.sin(angle) * y)
    grain = cv2.resize(rng.normal(0, 0.04, (size, 8)), (size, size))
    img = np.clip(base + grain + rng.normal(0, 0.01, (size, size)), 0, 1)
    return (img * 255).astype(np.uint8)


def plant_defect(img: np.ndarray, center: tuple[int, int], radius: int) -> tuple[np.ndarray,
                                                                                 np.ndarray]:
    """A dark pit; returns (image, bool mask)."""
    out = img.copy()
    mask = np.zeros(img.shape[:2], np.uint8)
    cv2.circle(mask, center, radius, 1, -1)
    out[mask > 0] = 20
    return out, mask.astype(bool)


def far_cell_codes(latent, far_cell: int, distance: float) -> np.ndarray:
    """``(1, P, D)`` latent means for a ``LatentClassifier`` ``latent``: every cell at its
    normal centre except ``far_cell``, placed ``distance`` Mahalanobis units away along its
    first whitened axis."""
    mu = latent.mean.copy()[None].astype(np.float64)
    w = latent.whiten[far_cell].astype(np.float64)  # |(z - mean) @ W| is the distance
    mu[0, far_cell] += distance * np.linalg.solve(w.T, np.eye(len(w))[0])
    return mu.astype(np.float32)


def write_as_format_2(folder, info: dict) -> None:
    """Writes ``info`` as the ``bundle.json`` of a format-2 bundle (the format before per-part
    digests) with the version that format computes: an edited copy of a new bundle becomes
    the old bundle it stands for, not a tampered one."""
    import json

    from models.fingerprint import legacy_version

    info = {k: v for k, v in info.items() if k not in ("digests", "signature")}
    info["format_version"] = 2
    info["version"] = legacy_version(info)
    (folder / "bundle.json").write_text(json.dumps(info))
