"""The one result type every Kensa consumer reads (server, ``kensa eval``, benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NORMAL = "normal"
ABNORMAL = "abnormal"


@dataclass(frozen=True)
class Region:
    """A connected defect region, in the original image's pixel coordinates."""

    x: int
    y: int
    w: int
    h: int
    area: int
    score: float  # highest pixel anomaly score inside the region

    @property
    def bbox(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


@dataclass(frozen=True)
class ReconstructionVerdict:
    """The reconstruction model's own opinion of one image."""

    score: float
    threshold: float
    label: str


@dataclass(frozen=True)
class LatentVerdict:
    """The VAE latent classifier's opinion of one image.

    ``distance`` is the Mahalanobis distance of the image's most unusual cell of the latent
    grid to that cell's normal cluster; ``score`` is what ``threshold`` applies to (the
    distance itself without labels, or with labels that earned no share; otherwise a mix of
    the spread defect probability and the distance); ``cluster`` is the defect name (or
    ``"good"``) that label spreading assigned when labels were given at training, else
    ``"good"`` or ``"anomaly"`` after ``label`` (also when no label reached the image's
    neighbours); ``confidence`` in ``[0, 1]`` how sure the classifier is of ``label``.
    """

    label: str
    distance: float
    threshold: float
    cluster: str
    confidence: float
    score: float


@dataclass
class Result:
    """Everything Kensa says about one image.

    Attributes:
        label: ``"abnormal"`` exactly when ``score >= threshold``.
        score: the fused image score (see the bundle's fusion rule).
        threshold: the image threshold that was applied to ``score``.
        pixel_threshold: the threshold applied to ``anomaly_map`` to make ``mask``.
        anomaly_map: ``float32 (H, W)`` pixel anomaly scores at the input's size.
        mask: ``bool (H, W)`` defect pixels (map >= pixel threshold, specks removed).
        regions: connected components of ``mask``.
        reconstruction_image: ``float32 (H, W, C)`` in ``[0, 1]``, the cleaned image at the
            input's size, only when asked for.
    """

    label: str
    score: float
    threshold: float
    pixel_threshold: float
    width: int
    height: int
    reconstruction: ReconstructionVerdict
    latent: LatentVerdict
    anomaly_map: np.ndarray
    mask: np.ndarray
    regions: list[Region] = field(default_factory=list)
    reconstruction_image: np.ndarray | None = None
