"""Recalibration: a trained bundle's image threshold set again, by the rule it was trained
with, from its held-out normals plus images the line has since confirmed.

Only the image threshold moves. The fused score is made of the reconstruction and latent
scores each divided by its own threshold (:meth:`Calibration.fuse`); those stay, so every
score a record holds, and every held-out score the bundle keeps, means the same under the new
bundle, and the new threshold applies to them directly. The maths is
:func:`models.calibrate.image_threshold` and :func:`models.thresholds.f1_threshold`; the
caller (``kensa recalibrate``) reads the confirmed scores from the records store.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from .calibrate import image_threshold
from .config import TrainConfig
from .errors import DataError
from .thresholds import Calibration, f1_threshold

RULES = ("false-alarm", "f1")


@dataclass(frozen=True)
class Confirmed:
    """Fused scores of images an operator reviewed, under the bundle being recalibrated.

    Attributes:
        good: ``(G,)`` scores of images reviewed ``good``.
        defects: ``(D,)`` scores of images reviewed as a defect.
    """

    good: np.ndarray
    defects: np.ndarray


def train_config(info: dict) -> TrainConfig:
    """The bundle's training config (``bundle.json`` ``train_config``), defaults for fields
    it lacks."""
    stored = info.get("train_config") or {}
    return TrainConfig(**{f.name: stored[f.name] for f in fields(TrainConfig) if f.name in stored})


def recalibrated(cal: Calibration, holdout: list[float] | np.ndarray, confirmed: Confirmed,
                 tcfg: TrainConfig, rule: str) -> tuple[Calibration, str]:
    """A copy of ``cal`` with the image threshold set again, and the rule in words.

    ``false-alarm``: the budget ``tcfg.false_alarm_rate`` on the held-out normals and the
    images reviewed good together (:func:`models.calibrate.image_threshold`). ``f1``: the
    F1-optimal threshold with the reviewed defects against those normals.

    Raises:
        DataError: an unknown rule, no held-out scores in the bundle, or ``f1`` without a
            reviewed defect.
    """
    if rule not in RULES:
        raise DataError(f"threshold rule {rule!r}: use one of {', '.join(RULES)}")
    holdout = np.asarray(holdout, np.float64)
    if holdout.size == 0:
        raise DataError("the bundle keeps no held-out normal scores (metrics.json "
                        "calibration.holdout_fused_scores): retrain it to recalibrate")
    normals = np.concatenate([holdout, np.asarray(confirmed.good, np.float64)])
    said = f"{holdout.size} held-out normals + {len(confirmed.good)} reviewed good"
    if rule == "f1":
        if len(confirmed.defects) == 0:
            raise DataError("--threshold-rule f1 needs reviewed defects, and the records "
                            "hold none for this bundle: review some, or use false-alarm")
        defects = np.asarray(confirmed.defects, np.float64)
        threshold = f1_threshold(np.r_[np.zeros(normals.size), np.ones(defects.size)],
                                 np.r_[normals, defects])
        return (replace(cal, image=threshold),
                f"F1-optimal on {defects.size} reviewed defects + {said} (recalibrated)")
    threshold, text = image_threshold(normals, tcfg)
    return replace(cal, image=threshold), text.replace(
        f"on {normals.size} held-out normals", f"on {said}", 1) + " (recalibrated)"
