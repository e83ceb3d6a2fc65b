"""Evaluation metrics: image AUROC, pixel AUROC, AUPRO and F1 at a threshold.

Pure functions over numpy arrays. Labels follow one convention everywhere: ``1`` / ``True``
means *defective*, and a higher score means *more anomalous*. Metrics that are undefined for
the data given (one class only, no defect region) return ``float('nan')`` rather than raise,
so an evaluation report can still be written for a set without defects.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

GOOD = "good"
DEFAULT_MAX_PIXELS = 8_000_000
NAN = float("nan")


def auroc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Image-level area under the ROC curve.

    Args:
        labels: ``(N,)`` 1 (or True) for defective images, 0 for good ones.
        scores: ``(N,)`` image anomaly scores, higher = more anomalous.

    Returns:
        ROC AUC in ``[0, 1]``; ``nan`` when only one class is present.
    """
    y, s = _labels_scores(labels, scores)
    if y.all() or not y.any():
        return NAN
    return float(roc_auc_score(y, s))


def auroc_interval(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray,
                   level: float = 0.95, resamples: int = 2000,
                   seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of :func:`auroc`: how far the figure could move on another test set
    of the same size.

    Defective and good images are resampled separately (stratified), so every resample keeps
    both classes and their counts. A resample is a count of draws per image; its AUROC is the
    draw-weighted share of (defect, good) pairs ranked right (ties count 1/2), read from
    running sums of the good images' draws in score order: O(resamples x images), so 2,000
    resamples of a thousand images take well under a second.

    Args:
        labels: ``(N,)`` 1 (or True) for defective images, 0 for good ones.
        scores: ``(N,)`` image anomaly scores, higher = more anomalous.
        level: coverage of the percentile interval.
        resamples: bootstrap draws; ``seed`` makes them repeatable.

    Returns:
        ``(low, high)``; ``(nan, nan)`` when only one class is present.
    """
    y, s = _labels_scores(labels, scores)
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        return NAN, NAN
    rng = np.random.default_rng(seed)
    cp = rng.multinomial(len(pos), np.full(len(pos), 1 / len(pos)), size=resamples)
    cn = rng.multinomial(len(neg), np.full(len(neg), 1 / len(neg)), size=resamples)
    order = np.argsort(neg, kind="stable")
    below = np.zeros((resamples, len(neg) + 1))  # below[b, k]: draws of the k lowest goods
    np.cumsum(cn[:, order], axis=1, out=below[:, 1:])
    lt = np.searchsorted(neg[order], pos, side="left")  # goods strictly below each defect
    le = np.searchsorted(neg[order], pos, side="right")  # ... below or tied
    wins = 0.5 * (below[:, lt] + below[:, le])
    boot = (cp * wins).sum(1) / (len(pos) * len(neg))
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(boot, [tail, 100 - tail])
    return float(lo), float(hi)


def auroc_gain_interval(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray,
                        base: Sequence[float] | np.ndarray, level: float = 0.90,
                        resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Paired bootstrap interval of ``auroc(labels, scores) - auroc(labels, base)``: whether
    one score ranks the same images better than another by more than the luck of which images
    there were.

    Defective and good images are resampled separately, as in :func:`auroc_interval`, and
    each resample scores both rankings on the same draws (so what the two share cancels).
    Cost ``O(resamples x defects x goods)``: meant for labeled sets of up to a few hundred.

    Returns:
        ``(low, high)``; ``(nan, nan)`` when only one class is present.
    """
    y, s = _labels_scores(labels, scores)
    _, b = _labels_scores(labels, base)
    if y.all() or not y.any():
        return NAN, NAN

    def wins(v: np.ndarray) -> np.ndarray:  # (defects, goods): 1 ranked right, 1/2 tied
        d = v[y][:, None] - v[~y][None, :]
        return (d > 0) + 0.5 * (d == 0)

    gain = wins(s) - wins(b)
    npos, nneg = gain.shape
    rng = np.random.default_rng(seed)
    cp = rng.multinomial(npos, np.full(npos, 1 / npos), size=resamples)
    cn = rng.multinomial(nneg, np.full(nneg, 1 / nneg), size=resamples)
    boot = np.einsum("rp,pn,rn->r", cp, gain, cn) / (npos * nneg)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(boot, [tail, 100 - tail])
    return float(lo), float(hi)


def pixel_sample(
    masks: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Flattens the pixels of a set of images, subsampling normal pixels past a cap.

    Every defect pixel is kept, so a tiny defect never vanishes from the sample. When the
    images hold more than ``max_pixels`` pixels, normal pixels are kept independently with one
    fixed probability (fixed-seed RNG), which leaves the normal score distribution, and so the
    ROC curve, unbiased.

    Args:
        masks: ``N`` arrays ``bool (H_i, W_i)``, True on defect pixels.
        maps: ``N`` arrays ``float (H_i, W_i)`` of pixel anomaly scores.
        max_pixels: the cap on pixels returned (approximately: normal pixels are drawn
            independently; defect pixels alone may exceed it, then at least half the cap is
            normal pixels).
        seed: seeds the subsampling.

    Returns:
        ``(labels, scores)``: ``bool (P,)`` and ``float32 (P,)``.
    """
    _check_pairs(masks, maps)
    total = sum(int(m.size) for m in masks)
    n_defect = sum(int(np.count_nonzero(m)) for m in masks)
    n_normal = total - n_defect
    keep = 1.0
    if total > max_pixels and n_normal > 0:
        keep = min(1.0, max(max_pixels - n_defect, max_pixels // 2) / n_normal)
    rng = np.random.default_rng(seed)
    labels, scores = [], []
    for mask, amap in zip(masks, maps):
        m = np.asarray(mask, dtype=bool).ravel()
        s = np.asarray(amap, dtype=np.float32).ravel()
        if keep < 1.0:
            m_keep = m | (rng.random(m.size) < keep)
            m, s = m[m_keep], s[m_keep]
        labels.append(m)
        scores.append(s)
    if not labels:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=np.float32)
    return np.concatenate(labels), np.concatenate(scores)


def pixel_auroc(
    masks: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> float:
    """Pixel-level area under the ROC curve over all pixels of all images.

    Args:
        masks: ``N`` arrays ``bool (H_i, W_i)``, True on defect pixels (sizes may differ
            between images, not within a pair).
        maps: ``N`` arrays ``float (H_i, W_i)`` of pixel anomaly scores.
        max_pixels: past this many pixels, normal pixels are subsampled (every defect pixel
            is kept; see :func:`pixel_sample`) to bound time and memory.

    Returns:
        ROC AUC in ``[0, 1]``; ``nan`` when the pixels hold only one class.
    """
    y, s = pixel_sample(masks, maps, max_pixels=max_pixels)
    if y.all() or not y.any():
        return NAN
    return float(roc_auc_score(y, s))


def aupro(
    masks: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    max_fpr: float = 0.3,
    num_thresholds: int = 1000,
    exact_max_pixels: int = 1_000_000,
) -> float:
    """Normalised area under the per-region-overlap curve (Bergmann et al., MVTec AD).

    Ground-truth regions are the 8-connected components of each mask. At a threshold ``t``,
    ``PRO(t)`` is the mean over *all* regions of all images of the share of the region's
    pixels with ``map >= t``, and ``FPR(t)`` the share of normal pixels (mask False, in every
    image, defect-free images included) with ``map >= t``. PRO is integrated over FPR from 0
    to ``max_fpr`` with the trapezoid rule (the point at exactly ``max_fpr`` is interpolated
    linearly) and divided by ``max_fpr``: a perfect map scores 1.0.

    How: when the images hold at most ``exact_max_pixels`` pixels, every distinct score is a
    threshold (one sort of all scores; exact). Past that, ``num_thresholds`` thresholds are
    placed at evenly spaced quantiles of the normal scores across ``[0, max_fpr]`` of FPR, and
    FPR and PRO are counted exactly at each of them per image (memory bounded by one image);
    the result then differs from the exact value by at most ``1 / (2 * num_thresholds)``.

    Args:
        masks: ``N`` arrays ``bool (H_i, W_i)``, True on defect pixels.
        maps: ``N`` arrays ``float (H_i, W_i)`` of pixel anomaly scores.
        max_fpr: upper end of the FPR integration range, in ``(0, 1]``.
        num_thresholds: thresholds used on large sets.
        exact_max_pixels: largest total pixel count computed exactly.

    Returns:
        AUPRO in ``[0, 1]``; ``nan`` when there is no defect region or no normal pixel.
    """
    if not 0.0 < max_fpr <= 1.0:
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}")
    _check_pairs(masks, maps)
    region_maps = [_regions(m) for m in masks]
    n_regions = sum(n for _, n in region_maps)
    total = sum(int(m.size) for m in masks)
    n_normal = total - sum(int(np.count_nonzero(m)) for m in masks)
    if n_regions == 0 or n_normal == 0:
        return NAN
    if total <= exact_max_pixels:
        fpr, pro = _pro_curve_exact(region_maps, maps, n_regions, n_normal)
    else:
        fpr, pro = _pro_curve_binned(region_maps, masks, maps, n_regions, n_normal, max_fpr,
                                     num_thresholds)
    return _area_to(fpr, pro, max_fpr) / max_fpr


def _regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components: ``int32 (H, W)`` labels (0 = normal, 1..n regions) and n."""
    n, labels = cv2.connectedComponents(np.asarray(mask, dtype=np.uint8), connectivity=8)
    return labels, n - 1


def _pro_curve_exact(region_maps, maps, n_regions: int, n_normal: int):
    """(FPR, PRO) at every distinct score, thresholds descending; both ``float64 (T+1,)``."""
    scores, weights, normal = [], [], []
    for (labels, n), amap in zip(region_maps, maps):
        lab = labels.ravel()
        sizes = np.bincount(lab, minlength=n + 1).astype(np.float64)
        # Each region adds 1/n_regions to PRO once all its pixels are over the threshold.
        w = np.where(lab > 0, 1.0 / (n_regions * sizes[lab]), 0.0)
        scores.append(np.asarray(amap, dtype=np.float64).ravel())
        weights.append(w)
        normal.append(lab == 0)
    s = np.concatenate(scores)
    order = np.argsort(-s, kind="stable")
    s = s[order]
    pro = np.cumsum(np.concatenate(weights)[order])
    fpr = np.cumsum(np.concatenate(normal)[order]) / n_normal
    # A threshold admits every pixel with an equal score: keep the last index of each tie.
    last = np.flatnonzero(np.diff(s, append=-np.inf) != 0)
    return np.concatenate([[0.0], fpr[last]]), np.concatenate([[0.0], pro[last]])


def _pro_curve_binned(region_maps, masks, maps, n_regions, n_normal, max_fpr, num_thresholds):
    """(FPR, PRO) at ``num_thresholds`` quantiles of the normal scores, thresholds descending."""
    labels, sample = pixel_sample(masks, maps, max_pixels=2_000_000)
    normal_s = sample[~labels]  # quantiles only place the thresholds; counts below are exact
    top = max(float(np.max(np.asarray(a)[~np.asarray(m, dtype=bool)]))
              for m, a in zip(masks, maps) if not np.all(m))
    # FPR levels evenly spaced over [0, max_fpr], a few past it so max_fpr is bracketed.
    levels = np.linspace(0.0, max_fpr, num_thresholds + 1)
    levels = np.concatenate([levels, max_fpr * np.array([1.02, 1.1, 1.3])])
    thr = np.quantile(normal_s, 1.0 - np.clip(levels, 0.0, 1.0))
    thr = np.unique(np.concatenate([thr, [np.nextafter(top, np.inf), -np.inf]]))
    k = thr.size
    normal_ge = np.zeros(k, dtype=np.int64)
    pro = np.zeros(k, dtype=np.float64)
    for (labels, n), amap in zip(region_maps, maps):
        # idx[p] = number of thresholds <= score, so pixel p passes thresholds 0..idx-1.
        idx = np.searchsorted(thr, np.asarray(amap, dtype=np.float64).ravel(), side="right")
        lab = labels.ravel()
        counts = np.bincount(lab * (k + 1) + idx, minlength=(n + 1) * (k + 1)).reshape(n + 1, -1)
        ge = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1][:, 1:]  # pixels passing thr[j]
        normal_ge += ge[0]
        if n:
            pro += (ge[1:] / ge[1:, :1]).sum(axis=0)  # ge[:, 0] = region sizes (thr[0] = -inf)
    fpr = normal_ge[::-1] / n_normal
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], pro[::-1] / n_regions])


def _area_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area under a curve with non-decreasing ``x`` from ``x[0]`` to ``x_max``."""
    inside = x <= x_max
    xs, ys = x[inside], y[inside]
    after = np.flatnonzero(~inside)
    if after.size and xs[-1] < x_max:
        j = after[0]
        t = (x_max - x[j - 1]) / (x[j] - x[j - 1])
        xs = np.append(xs, x_max)
        ys = np.append(ys, y[j - 1] + t * (y[j] - y[j - 1]))
    return float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2.0))


def f1_at(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    threshold: float,
) -> dict:
    """Image-level verdict quality when ``score >= threshold`` means defective.

    Args:
        labels: ``(N,)`` 1 for defective, 0 for good.
        scores: ``(N,)`` image anomaly scores.
        threshold: the decision threshold.

    Returns:
        ``precision``, ``recall``, ``f1``, ``false_alarm_rate`` (good images flagged / good
        images), ``miss_rate`` (defective images passed / defective images) and the counts
        ``tp``, ``fp``, ``tn``, ``fn``. Precision is 0.0 when nothing is flagged; recall and
        miss rate are ``nan`` without defective images, false alarm rate without good ones.
    """
    y, s = _labels_scores(labels, scores)
    flagged = s >= threshold
    tp = int(np.count_nonzero(flagged & y))
    fp = int(np.count_nonzero(flagged & ~y))
    fn = int(np.count_nonzero(~flagged & y))
    tn = int(np.count_nonzero(~flagged & ~y))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else NAN
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else NAN
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "false_alarm_rate": fp / (fp + tn) if fp + tn else NAN,
        "miss_rate": fn / (tp + fn) if tp + fn else NAN,
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
    }


def best_f1_threshold(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray
) -> float:
    """The score that, used as threshold (``score >= threshold``), maximises F1.

    Ties between thresholds with the same F1 go to the highest one (fewest false alarms).

    Args:
        labels: ``(N,)`` 1 for defective, 0 for good.
        scores: ``(N,)`` image anomaly scores.

    Returns:
        One of ``scores``.

    Raises:
        ValueError: no defective image (F1 is 0 at every threshold).
    """
    y, s = _labels_scores(labels, scores)
    if not y.any():
        raise ValueError("best_f1_threshold needs at least one defective image (label 1)")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    last = np.flatnonzero(np.diff(s, append=-np.inf) != 0)  # thresholds admit whole ties
    f1 = 2 * tp[last] / (2 * tp[last] + fp[last] + (tp[-1] - tp[last]))
    return float(s[last[int(np.argmax(f1))]])


def per_type_auroc(types: Sequence[str], scores: Sequence[float] | np.ndarray) -> dict[str, float]:
    """AUROC of good images against each defect type alone.

    Args:
        types: ``(N,)`` ``"good"`` or a defect name per image.
        scores: ``(N,)`` image anomaly scores.

    Returns:
        ``{defect name: AUROC}`` for every name other than ``"good"``, sorted by name;
        ``nan`` for every type when there is no good image.
    """
    t = np.asarray(list(types), dtype=object)
    s = np.asarray(scores, dtype=np.float64).ravel()
    if t.shape != s.shape:
        raise ValueError(f"{t.size} types but {s.size} scores")
    good = t == GOOD
    out = {}
    for name in sorted(set(t.tolist()) - {GOOD}):
        pick = good | (t == name)
        out[name] = auroc(t[pick] == name, s[pick])
    return out


def _labels_scores(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).ravel().astype(bool)
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    return y, s


def _check_pairs(masks, maps) -> None:
    if len(masks) != len(maps):
        raise ValueError(f"{len(masks)} masks but {len(maps)} maps")
    for i, (m, a) in enumerate(zip(masks, maps)):
        if np.shape(m) != np.shape(a):
            raise ValueError(f"image {i}: mask shape {np.shape(m)} != map shape {np.shape(a)}")


def per_type_pixel_auroc(types: Sequence[str], masks: Sequence[np.ndarray],
                         maps: Sequence[np.ndarray]) -> dict[str, float]:
    """Pixel AUROC of each defect type alone: every pixel of that type's images (defect and
    clean) against every pixel of the good images, as :func:`pixel_auroc` computes it.

    A single pixel AUROC is dominated by the types with the largest defect areas; this says
    which kinds the map localizes and which it only detects.

    Args:
        types: ``N`` names, ``"good"`` or a defect name per mask.
        masks, maps: as :func:`pixel_auroc`, in the same order as ``types``.

    Returns:
        ``{defect name: pixel AUROC}`` for every name other than ``"good"``, sorted by name.
    """
    t = list(types)
    if not len(t) == len(masks) == len(maps):
        raise ValueError(f"{len(t)} types, {len(masks)} masks and {len(maps)} maps")
    good = [i for i, name in enumerate(t) if name == GOOD]
    out = {}
    for name in sorted(set(t) - {GOOD}):
        pick = good + [i for i, n in enumerate(t) if n == name]
        out[name] = pixel_auroc([masks[i] for i in pick], [maps[i] for i in pick])
    return out
