"""Thresholds from scores of held-out normal images (or from labels, when given)."""

from __future__ import annotations

import numpy as np
from scipy.stats import t as student_t
from scipy.stats import wilcoxon

MIN_FLIP_IMAGES = 10  # fewer held-out normals cannot show that a flip looks normal
FLIP_ALPHA = 0.05


def false_alarm_threshold(normal_scores: np.ndarray, rate: float) -> float:
    """The score above which about ``rate`` of normal images fall.

    With a few dozen held-out images the empirical quantile at 99 % is just the largest score,
    which under-estimates the tail; so the threshold is the larger of the empirical quantile
    and a Student-t prediction bound for one new image under a normal distribution fitted to
    the log scores (scores here are positive and right-skewed; the t factor and the
    ``sqrt(1 + 1/n)`` term pay for estimating mean and spread from few images). Always strictly above the median normal score, so it can never
    flag every normal image.

    Args:
        normal_scores: ``(N,)`` scores of held-out normal images, higher = more anomalous.
        rate: false-alarm budget in ``(0, 1)``.
    """
    s = np.asarray(normal_scores, dtype=np.float64)
    if s.size == 0:
        raise ValueError("no normal scores to calibrate on")
    empirical = float(np.quantile(s, 1 - rate))
    n = s.size
    z = float(student_t.ppf(1 - rate, n - 1)) * np.sqrt(1 + 1 / n) if n > 2 else 0.0
    if s.min() > 0 and n > 2:
        logs = np.log(s)
        parametric = float(np.exp(logs.mean() + z * logs.std(ddof=1)))
    else:
        parametric = float(s.mean() + z * s.std(ddof=1)) if n > 2 else empirical
    t = max(empirical, parametric)
    if t <= float(np.median(s)):  # all scores equal: nudge so normal images pass
        t = float(np.median(s)) + 1e-6 * max(1.0, abs(float(np.median(s))))
    return t


def pixel_threshold(normal_pixels: np.ndarray | list[np.ndarray], rate: float) -> float:
    """Pixel threshold with ``rate`` of held-out normal pixels above it (empirical quantile:
    there are hundreds of thousands of pixels). ``normal_pixels``: an array, or a list of
    maps of different shapes."""
    if not isinstance(normal_pixels, np.ndarray):
        normal_pixels = np.concatenate([np.ravel(m) for m in normal_pixels])
    p = np.asarray(normal_pixels, dtype=np.float64).ravel()
    t = float(np.quantile(p, 1 - rate))
    return t if t > float(p.min()) else float(p.min()) + 1e-6


def f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold (one of the scores) that maximises F1 of ``score >= t``; labels 1 = defect."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    best, best_t = -1.0, float(scores.max())
    for t in np.unique(scores):
        pred = scores >= t
        tp = float((pred & labels).sum())
        f1 = 2 * tp / max(float(pred.sum() + labels.sum()), 1e-12)
        if f1 > best:
            best, best_t = f1, float(t)
    return best_t


def flip_looks_normal(scores: np.ndarray, flipped: np.ndarray,
                      alpha: float = FLIP_ALPHA) -> tuple[bool, float]:
    """Whether the model finds flipped normal images as normal as the images themselves.

    A one-sided paired Wilcoxon signed-rank test on the log score ratios of the same held-out
    normal images, flipped and not: the flip is refused when the flipped copies score higher
    at level ``alpha`` (a part lit from one side, or a fixtured part, is not itself when
    flipped; a turned washer or a texture is), and with fewer than ``MIN_FLIP_IMAGES`` images,
    which cannot tell. Returns ``(looks normal, p-value)``; p is nan when too few.
    """
    s = np.maximum(np.asarray(scores, np.float64), 1e-12)
    f = np.maximum(np.asarray(flipped, np.float64), 1e-12)
    if s.size < MIN_FLIP_IMAGES:
        return False, float("nan")
    d = np.log(f) - np.log(s)
    if np.allclose(d, 0.0, atol=1e-9):  # the model is exactly flip-symmetric on them
        return True, 1.0
    p = float(wilcoxon(d, alternative="greater").pvalue)
    return p >= alpha, p
