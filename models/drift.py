"""Score drift: whether the images a line calls normal still score like the held-out normals
the bundle's thresholds were set on.

Pure numpy and scipy; the server (``service.drift``) reads the recent scores from the records
store and hands them here.

Both samples are compared below the image threshold only. Recent normals are the images
judged normal (or reviewed ``good``); an image the threshold sent to review is not among them
until someone reviews it, so the recent sample is cut at the threshold, and the held-out
normals are cut there too, or a line with no drift at all would show some (its missing tail).
What happens above the threshold is the false-alarm rate among reviewed images
(:func:`false_alarm_rate`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import ks_2samp

MIN_RECENT = 20  # fewer recent normals say little about a distribution (KS p ~ 1 anyway)
MIN_REFERENCE = 5


@dataclass(frozen=True)
class Drift:
    """One two-sample comparison of recent normal scores with the held-out normal scores.

    Attributes:
        recent: recent normal scores below the threshold (the sample compared).
        reference: held-out normal scores below the threshold.
        statistic: the two-sample Kolmogorov-Smirnov statistic, the largest gap between the
            two empirical distribution functions, in ``[0, 1]``; None when a sample is too
            small (``reason`` says which).
        p_value: the chance of a gap at least this large if both samples came from one
            distribution (two-sided); small means the line's normals score differently.
        recent_median, reference_median: the samples' medians (which way it drifted).
        reason: why there is no statistic, else None.
    """

    recent: int
    reference: int
    statistic: float | None
    p_value: float | None
    recent_median: float | None
    reference_median: float | None
    reason: str | None = None


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if values.size else None


def score_drift(reference: np.ndarray | list, recent: np.ndarray | list, threshold: float,
                min_recent: int = MIN_RECENT) -> Drift:
    """Compares ``recent`` normal scores with the held-out ``reference`` ones below
    ``threshold`` (two-sample Kolmogorov-Smirnov test).

    Args:
        reference: ``(N,)`` the bundle's held-out normal fused scores.
        recent: ``(M,)`` fused scores of recent images judged or reviewed normal.
        threshold: the image threshold both samples are cut at.
        min_recent: fewer recent scores than this give no statistic.
    """
    ref = np.asarray(reference, np.float64).ravel()
    new = np.asarray(recent, np.float64).ravel()
    ref, new = ref[ref < threshold], new[new < threshold]
    medians = (_median(new), _median(ref))
    if ref.size < MIN_REFERENCE:
        return Drift(new.size, ref.size, None, None, *medians,
                     reason=f"the bundle keeps {ref.size} held-out normal score(s) below its "
                            f"threshold, fewer than {MIN_REFERENCE}")
    if new.size < min_recent:
        return Drift(new.size, ref.size, None, None, *medians,
                     reason=f"{new.size} recent normal score(s), fewer than {min_recent}")
    test = ks_2samp(ref, new, alternative="two-sided")
    return Drift(new.size, ref.size, float(test.statistic), float(test.pvalue), *medians)


def false_alarm_rate(false_alarms: int, reviewed_good: int) -> float | None:
    """The share of images reviewed ``good`` that the model had judged abnormal; None with
    none reviewed good."""
    return false_alarms / reviewed_good if reviewed_good else None
