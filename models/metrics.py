"""Evaluation metrics: image AUROC, pixel AUROC, AUPRO and F1 at a threshold.

Pure functions over numpy arrays. Labels follow one convention everywhere: ``1`` / ``True``
means *defective*, and a higher score means *more anomalous*. Metrics that are undefined for
the data given (one class only, no defect region) return ``float('nan')`` rather than raise,
so an evaluation report can still be written for a set without defects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from .data import GOOD

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


PIXEL_BUDGET = 8_000_000  # pixels the pixel metrics keep in all, over every image of a set
MIN_IMAGE_PIXELS = 4096  # ... and at least this many of each image
MIN_REGION_PIXELS = 64  # ... and of each defect region (all of it when smaller)


@dataclass
class PixelSample:
    """One image's pixels for the pixel metrics: all of them, or a weighted sample.

    Attributes:
        scores: ``float32 (P,)`` anomaly scores of the kept pixels.
        region: ``int32 (P,)`` 0 for a normal pixel, ``k`` for a pixel of the image's ``k``-th
            defect region (8-connected component of its mask).
        weights: ``float32 (P,)`` how many of the image's pixels each kept pixel stands for
            (1 when all are kept); they add up to the pixel count of its region, or of the
            image's normal pixels.
        n_regions: defect regions in the image.
    """

    scores: np.ndarray
    region: np.ndarray
    weights: np.ndarray
    n_regions: int


def sample_pixels(mask: np.ndarray, amap: np.ndarray, budget: int, seed: int = 0) -> PixelSample:
    """The pixels of one image the pixel metrics need, at most about ``budget`` of them.

    An image within the budget keeps every pixel (weight 1), so metrics are exact. A larger
    one is sampled stratified: each defect region keeps the same share of its pixels, but at
    least :data:`MIN_REGION_PIXELS` (all of a smaller one), so a pin-hole or a one-pixel-wide
    crack never vanishes; the defect pixels take at most half the budget and the normal
    pixels the rest. Each kept pixel weighs as many pixels as it stands for, so the weighted
    ROC and per-region-overlap curves are unbiased estimates of the whole image's.

    Args:
        mask: ``bool (H, W)``, True on defect pixels.
        amap: ``float (H, W)`` anomaly scores.
        budget: about how many pixels to keep (regions' minimums may add a few).
        seed: seeds the sampling, so a report is repeatable.
    """
    if np.shape(mask) != np.shape(amap):
        raise ValueError(f"mask shape {np.shape(mask)} != map shape {np.shape(amap)}")
    labels, n = _regions(mask)
    lab = labels.ravel()
    s = np.asarray(amap, dtype=np.float32).ravel()
    if s.size <= budget:
        return PixelSample(s, lab.astype(np.int32), np.ones(s.size, np.float32), n)
    rng = np.random.default_rng(seed)
    sizes = np.bincount(lab, minlength=n + 1)
    share = min(1.0, (budget // 2) / max(1, s.size - sizes[0]))
    order = np.argsort(lab, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    keep, weights = [], []
    for r in range(n, -1, -1):  # regions first: the normal pixels get what they leave
        members = order[starts[r]:starts[r + 1]]
        if r:
            k = min(len(members), max(MIN_REGION_PIXELS, math.ceil(share * len(members))))
        else:
            k = min(len(members), max(budget - sum(len(i) for i in keep), budget // 2))
        if k:
            keep.append(members if k == len(members) else rng.choice(members, k, replace=False))
            weights.append(np.full(k, len(members) / k, np.float32))
    idx = np.concatenate(keep)
    return PixelSample(s[idx], lab[idx].astype(np.int32), np.concatenate(weights), n)


def sample_images(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray],
                  max_pixels: int = PIXEL_BUDGET) -> list[PixelSample]:
    """:func:`sample_pixels` of every image, ``max_pixels`` shared out evenly among them."""
    if len(masks) != len(maps):  # each pair's shapes: sample_pixels
        raise ValueError(f"{len(masks)} masks but {len(maps)} maps")
    budget = image_budget(len(masks), max_pixels)
    return [sample_pixels(m, a, budget, seed=i) for i, (m, a) in enumerate(zip(masks, maps))]


def image_budget(n_images: int, max_pixels: int = PIXEL_BUDGET) -> int:
    """Pixels kept of each of ``n_images`` images: memory for the pixel metrics stays near
    ``max_pixels`` whatever the images' sizes (a set of 12-megapixel photographs would
    otherwise hold every map at full size until the end)."""
    return max(MIN_IMAGE_PIXELS, max_pixels // max(1, n_images))


def pixel_auroc(
    masks: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    max_pixels: int = PIXEL_BUDGET,
) -> float:
    """Pixel-level area under the ROC curve over all pixels of all images.

    Args:
        masks: ``N`` arrays ``bool (H_i, W_i)``, True on defect pixels (sizes may differ
            between images, not within a pair).
        maps: ``N`` arrays ``float (H_i, W_i)`` of pixel anomaly scores.
        max_pixels: shared out evenly among the images; an image larger than its share is
            sampled (see :func:`sample_pixels`) to bound time and memory.

    Returns:
        ROC AUC in ``[0, 1]``; ``nan`` when the pixels hold only one class.
    """
    return sampled_pixel_auroc(sample_images(masks, maps, max_pixels))


def sampled_pixel_auroc(samples: Sequence[PixelSample]) -> float:
    """:func:`pixel_auroc` from images' :class:`PixelSample` s (weighted ROC)."""
    if not samples:
        return NAN
    y = np.concatenate([p.region for p in samples]) > 0
    if y.all() or not y.any():
        return NAN
    return float(roc_auc_score(y, np.concatenate([p.scores for p in samples]),
                               sample_weight=np.concatenate([p.weights for p in samples])))


def aupro(
    masks: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    max_fpr: float = 0.3,
    max_pixels: int = PIXEL_BUDGET,
) -> float:
    """Normalised area under the per-region-overlap curve (Bergmann et al., MVTec AD).

    Ground-truth regions are the 8-connected components of each mask. At a threshold ``t``,
    ``PRO(t)`` is the mean over *all* regions of all images of the share of the region's
    pixels with ``map >= t``, and ``FPR(t)`` the share of normal pixels (mask False, in every
    image, defect-free images included) with ``map >= t``. PRO is integrated over FPR from 0
    to ``max_fpr`` with the trapezoid rule (the point at exactly ``max_fpr`` is interpolated
    linearly) and divided by ``max_fpr``: a perfect map scores 1.0.

    Every distinct score is a threshold (one sort). Each image gets an even share of
    ``max_pixels`` (:func:`image_budget`); one within it is kept whole, a larger one is sampled
    (:func:`sample_pixels`: every region kept, each pixel weighted by the pixels it stands for),
    so the result is exact when every image fits its share.

    Args:
        masks: ``N`` arrays ``bool (H_i, W_i)``, True on defect pixels.
        maps: ``N`` arrays ``float (H_i, W_i)`` of pixel anomaly scores.
        max_fpr: upper end of the FPR integration range, in ``(0, 1]``.
        max_pixels: pixels kept in all, shared out evenly among the images.

    Returns:
        AUPRO in ``[0, 1]``; ``nan`` when there is no defect region or no normal pixel.
    """
    return sampled_aupro(sample_images(masks, maps, max_pixels), max_fpr)


def sampled_aupro(samples: Sequence[PixelSample], max_fpr: float = 0.3) -> float:
    """:func:`aupro` from images' :class:`PixelSample` s."""
    if not 0.0 < max_fpr <= 1.0:
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}")
    n_regions = sum(p.n_regions for p in samples)
    n_normal = sum(float(p.weights[p.region == 0].sum()) for p in samples)
    if n_regions == 0 or n_normal == 0:
        return NAN
    fpr, pro = _pro_curve(samples, n_regions, n_normal)
    return _area_to(fpr, pro, max_fpr) / max_fpr


def _regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components: ``int32 (H, W)`` labels (0 = normal, 1..n regions) and n."""
    n, labels = cv2.connectedComponents(np.asarray(mask, dtype=np.uint8), connectivity=8)
    return labels, n - 1


def _pro_curve(samples: Sequence[PixelSample], n_regions: int, n_normal: float):
    """(FPR, PRO) at every distinct score, thresholds descending; both ``float64 (T+1,)``."""
    scores, pro_w, fpr_w = [], [], []
    for p in samples:
        w = p.weights.astype(np.float64)
        sizes = np.bincount(p.region, weights=w, minlength=p.n_regions + 1)
        # Each region adds 1/n_regions to PRO once all its pixels are over the threshold.
        pro_w.append(np.where(p.region > 0, w / (n_regions * sizes[p.region]), 0.0))
        fpr_w.append(np.where(p.region == 0, w, 0.0))
        scores.append(p.scores.astype(np.float64))
    s = np.concatenate(scores)
    order = np.argsort(-s, kind="stable")
    s = s[order]
    pro = np.cumsum(np.concatenate(pro_w)[order])
    fpr = np.cumsum(np.concatenate(fpr_w)[order]) / n_normal
    # A threshold admits every pixel with an equal score: keep the last index of each tie.
    last = np.flatnonzero(np.diff(s, append=-np.inf) != 0)
    return np.concatenate([[0.0], fpr[last]]), np.concatenate([[0.0], pro[last]])


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
    if not len(types) == len(masks) == len(maps):
        raise ValueError(f"{len(types)} types, {len(masks)} masks and {len(maps)} maps")
    return sampled_per_type_pixel_auroc(types, sample_images(masks, maps))


def sampled_per_type_pixel_auroc(types: Sequence[str],
                                 samples: Sequence[PixelSample]) -> dict[str, float]:
    """:func:`per_type_pixel_auroc` from images' :class:`PixelSample` s (``types`` in step)."""
    t = list(types)
    good = [i for i, name in enumerate(t) if name == GOOD]
    return {name: sampled_pixel_auroc([samples[i] for i in good + [
                i for i, n in enumerate(t) if n == name]])
            for name in sorted(set(t) - {GOOD})}
