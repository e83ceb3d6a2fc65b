"""Evaluation on a labeled test split, through the same Inspector that serves."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import fields

import numpy as np

from .config import TrainConfig
from .data import GOOD, Item, read_image, read_mask, split_holdout
from .errors import KensaError
from .inference import Inspector
from .latent import LatentClassifier
from .metrics import (
    PixelSample,
    auroc,
    auroc_interval,
    f1_at,
    image_budget,
    per_type_auroc,
    sample_pixels,
    sampled_aupro,
    sampled_per_type_pixel_auroc,
    sampled_pixel_auroc,
)
from .thresholds import false_alarm_threshold

log = logging.getLogger(__name__)

BATCH = 16
# decoded pixels per batch: a 12-megapixel photograph costs about 370 MB in flight (the float
# image, its full-size map, mask and labels), so 16 of them at once took 5.9 GB
BATCH_PIXELS = 16 * 1024 * 1024
BUDGETS = (0.01, 0.02, 0.05, 0.1)  # false-alarm budgets of the operating-point table


class TestImages:
    """Decodes test items in batches of ``batch`` images, or fewer once they hold
    ``batch_pixels`` pixels; files that do not decode are skipped and counted."""

    def __init__(self, items: Sequence[Item], batch: int = BATCH,
                 batch_pixels: int = BATCH_PIXELS):
        self.items, self.batch, self.skipped = list(items), batch, 0
        self.batch_pixels = batch_pixels

    def __iter__(self) -> Iterator[tuple[list[Item], list[np.ndarray]]]:
        chunk, imgs, pixels = [], [], 0
        for it in self.items:
            try:
                imgs.append(read_image(it.path))
                chunk.append(it)
                pixels += imgs[-1].shape[0] * imgs[-1].shape[1]
            except Exception:  # noqa: BLE001 - counted and reported, not fatal
                self.skipped += 1
            if len(imgs) >= self.batch or pixels >= self.batch_pixels:
                yield chunk, imgs
                chunk, imgs, pixels = [], [], 0
        if imgs:
            yield chunk, imgs


def ground_truth(item: Item, shape: tuple[int, int]) -> np.ndarray | None:
    """The item's defect mask ``bool (H, W)`` at ``shape`` (all False for a good image), or
    ``None`` for a defective image without a mask (it then counts for image metrics only)."""
    if item.mask_path is None:
        return np.zeros(shape, bool) if item.is_good else None
    gt = read_mask(item.mask_path)
    if gt.shape == shape:
        return gt
    (mh, mw), (h, w) = gt.shape, shape
    if abs(mw * h - w * mh) > 0.02 * w * mh + max(h, w):  # not a resized copy of the image
        log.warning("ground-truth mask %s is %dx%d but its image %s is %dx%d, another shape: "
                    "stretched over the image; check that the mask belongs to it", item.mask_path,
                    mw, mh, item.path, w, h)
    return _resize_mask(gt, shape)


class PixelTruth:
    """The test images that count for pixel metrics: for each, its defect type and a
    :class:`~models.metrics.PixelSample` of its ground truth and anomaly map (see
    :func:`ground_truth` for which images count).

    Only the sample is kept, at most :func:`~models.metrics.image_budget` pixels of each
    image, so memory stays bounded whatever the test set's size and the photographs' size
    (every map at full size used to be held until the end: about 60 MB per 12-megapixel
    photograph, and the trainer then evaluated before it wrote the bundle).
    """

    def __init__(self, n_images: int):
        self.budget = image_budget(n_images)
        self.samples: list[PixelSample] = []
        self.types: list[str] = []
        self.unreadable: list[str] = []

    def add(self, item: Item, amap: np.ndarray) -> None:
        """A mask file that does not decode is named in a warning and counted; its image then
        counts for the image metrics only (as one without a mask), so a bad mask never costs
        ``kensa train`` the model it has just trained."""
        try:
            gt = ground_truth(item, amap.shape)
        except (KensaError, OSError) as e:
            log.warning("ground-truth mask %s does not decode (%s): its image counts for the "
                        "image metrics only", item.mask_path, e)
            self.unreadable.append(str(item.mask_path))
            return
        if gt is not None:
            self.samples.append(sample_pixels(gt, amap, self.budget, seed=len(self.samples)))
            self.types.append(item.defect)


def score_report(types: list[str], scores: Sequence[float], threshold: float,
                 pixels: PixelTruth, skipped: int) -> dict:
    """The metrics every model is judged by: image AUROC, pixel AUROC, AUPRO, F1, precision,
    recall, false-alarm and miss rates at ``threshold``, image and pixel AUROC per defect
    type."""
    samples = pixels.samples
    labels = np.array([t != GOOD for t in types], int)
    s = np.array(scores, dtype=np.float64)
    at = f1_at(labels, s, threshold) if len(s) else {}
    return {
        "images": len(s), "skipped": skipped, "unreadable_masks": pixels.unreadable,
        "defective_images": int(labels.sum()), "normal_images": int((1 - labels).sum()),
        "image_auroc": auroc(labels, s) if len(s) else math.nan,
        # 95 % bootstrap interval: a test split of a few dozen images moves this figure by
        # several points from run to run, and readers of one number should know by how much
        "image_auroc_ci95": list(auroc_interval(labels, s)) if len(s) else [math.nan] * 2,
        "pixel_auroc": sampled_pixel_auroc(samples) if samples else math.nan,
        "aupro": sampled_aupro(samples) if samples else math.nan,
        "f1": at.get("f1", math.nan), "precision": at.get("precision", math.nan),
        "recall": at.get("recall", math.nan),
        "false_alarm_rate": at.get("false_alarm_rate", math.nan),
        "miss_rate": at.get("miss_rate", math.nan),
        "threshold": threshold,
        "per_type_auroc": per_type_auroc(types, s) if len(s) else {},
        "per_type_pixel_auroc": sampled_per_type_pixel_auroc(pixels.types, samples)
        if samples else {},
    }


def evaluate(insp: Inspector, items: Sequence[Item],
             holdout_scores: Sequence[float] | None = None,
             normals: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Scores every test item at its original size through ``insp`` and reports
    :func:`score_report`'s metrics plus the sub-verdicts' AUROCs, the latent AUROC with a
    handful of labels (:func:`latent_label_gain`) and :func:`operating_points`.

    Args:
        holdout_scores: the held-out normal scores the bundle was calibrated on (default: the
            loaded bundle's, ``insp.info["holdout_scores"]``); without them no operating points.
        normals: latent means of the bundle's own training and held-out normal images (see
            :func:`bundle_normals`), for the with-labels check.

    Images whose file does not decode are skipped and counted.
    """
    if holdout_scores is None:
        holdout_scores = insp.info.get("holdout_scores") or []
    scores, recon, latent, types, mus = [], [], [], [], []
    pixels = PixelTruth(len(items))
    images = TestImages(items)
    for chunk, imgs in images:
        results, raw = insp.inspect_raw(imgs)
        mus.append(raw.latent_mu)
        for it, res in zip(chunk, results):
            scores.append(res.score)
            recon.append(res.reconstruction.score)
            latent.append(res.latent.score)
            types.append(it.defect)
            pixels.add(it, res.anomaly_map)
    report = score_report(types, scores, insp.image_threshold, pixels, images.skipped)
    labels = np.array([t != GOOD for t in types], int)
    report |= {
        "reconstruction_auroc": auroc(labels, recon) if len(labels) else math.nan,
        "latent_auroc": auroc(labels, latent) if len(labels) else math.nan,
        "latent_with_labels": latent_label_gain(insp, np.concatenate(mus), types, normals)
        if mus else {},
        "operating_points": operating_points(labels, scores, holdout_scores),
    }
    return {k: json_safe(v) for k, v in report.items()}


def operating_points(labels: np.ndarray, scores: Sequence[float],
                     holdout_scores: Sequence[float],
                     budgets: Sequence[float] = BUDGETS) -> list[dict]:
    """What other false-alarm budgets would have given: for each budget, the image threshold
    that the trainer's rule sets from the same held-out normal scores, and the false-alarm and
    miss rates it gives on the test split. An operator who finds the bundle's budget too
    strict reads the threshold here and serves it (``KENSA_THRESHOLD`` or ``?threshold=``),
    without retraining."""
    if len(holdout_scores) < 2 or not len(scores):
        return []
    out = []
    for rate in budgets:
        t = false_alarm_threshold(np.asarray(holdout_scores, dtype=np.float64), rate)
        at = f1_at(labels, scores, t)
        out.append({"budget": rate, "threshold": t, "false_alarm_rate": at["false_alarm_rate"],
                    "miss_rate": at["miss_rate"], "f1": at["f1"]})
    return out


def latent_label_gain(insp: Inspector, mus: np.ndarray, types: list[str],
                      normals: tuple[np.ndarray, np.ndarray] | None = None,
                      per_type: tuple[int, ...] = (2, 5), seed: int = 0) -> dict:
    """How much a handful of labels sharpens the latent verdict.

    For ``k`` in ``per_type``: label ``k`` random test images of every type (good included),
    run label spreading over the graph ``kensa train --labels`` builds (the training normals,
    known good, and all test latent points ``mus``), choose the spread weight as training does
    (:meth:`LatentClassifier.choose_spread_weight`: the labeled images judged with their
    labels hidden, against the held-out normals), and compare the latent AUROC on the images
    left unlabeled with the label-free distance's AUROC on the same images.

    Args:
        normals: latent means (training normals, held-out normals) of the bundle's own
            training split (:func:`bundle_normals`); without them the graph is the test images
            alone and the choice sees only the labeled ones.
    """
    known, held = normals if normals is not None else (mus[:0], mus[:0])
    types_arr = np.array(types)
    out = {}
    for k in per_type:
        chosen = labeled_sample(types_arr, k, seed)
        if chosen is None:
            return out
        clf = LatentClassifier(insp.latent.mean, insp.latent.whiten, np.zeros((0, 1)),
                               np.zeros((0, 1)), [GOOD])
        clf.spread(np.concatenate([known, mus]),
                   [GOOD] * len(known) + [t if c else None for t, c in zip(types, chosen)])
        weight, _ = clf.choose_spread_weight(len(known) + np.flatnonzero(chosen), held,
                                             insp.cal.latent_distance)
        score, dist, _ = clf.score(mus[~chosen], insp.cal.latent_distance, weight)
        y = (types_arr[~chosen] != GOOD).astype(int)
        out[f"{k}_per_type"] = {"labeled": int(chosen.sum()), "evaluated": int((~chosen).sum()),
                                "graph_normals": len(known), "held_out_normals": len(held),
                                "spread_weight": weight,
                                "auroc_without_labels": auroc(y, dist),
                                "auroc_with_labels": auroc(y, score)}
    return out


def labeled_sample(types: np.ndarray, k: int, seed: int) -> np.ndarray | None:
    """``bool (N,)``: ``k`` images of every type of ``types`` drawn at random (seeded), or
    ``None`` when some type has no more than ``k`` images (none would be left to judge)."""
    rng = np.random.default_rng(seed)
    chosen = np.zeros(len(types), bool)
    for name in np.unique(types):
        idx = np.flatnonzero(types == name)
        if len(idx) <= k:
            return None
        chosen[rng.choice(idx, k, replace=False)] = True
    return chosen


def bundle_normals(insp: Inspector, train_items: Sequence[Item]
                   ) -> tuple[np.ndarray, np.ndarray] | None:
    """Latent means (training normals, held-out normals) of a bundle's own training split,
    found again among ``train_items`` by replaying the split from the bundle's seed; ``None``
    when the items are not the set the bundle was trained on (another count of decodable
    images) or the bundle does not record its split."""
    data, tc = insp.info.get("data") or {}, insp.info.get("train_config")
    used, held = data.get("used_train_images"), data.get("holdout_images")
    if tc is None or used is None or held is None:
        return None
    if len(train_items) != used + held + data.get("skipped", 0):
        return None
    images = TestImages(train_items)
    mus = [insp.latent_means(imgs) for _, imgs in images]
    z = np.concatenate(mus) if mus else np.zeros((0,))
    if len(z) != used + held:
        return None
    names = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in tc.items() if k in names})
    fit_idx, hold_idx = split_holdout(used + held, cfg, np.random.default_rng(cfg.seed))
    return z[fit_idx], z[hold_idx]


def _resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]),
                      interpolation=cv2.INTER_NEAREST).astype(bool)


def json_safe(v):
    """A report value fit for JSON: NaN becomes ``None``, numpy numbers plain ones, tuples
    lists, through nested dicts and lists."""
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        return json_safe(v.item())
    return v


def format_table(report: dict) -> str:
    """A plain-text table of an evaluation report."""
    counts = (f"{report.get('images')} ({report.get('defective_images')}/"
              f"{report.get('normal_images')})")
    rows = [("images (defective/normal)", counts)]
    if report.get("unreadable_masks"):
        rows.append(("unreadable masks (image metrics only)",
                     ", ".join(report["unreadable_masks"])))
    for key in ("image_auroc", "pixel_auroc", "aupro", "f1", "precision", "recall",
                "false_alarm_rate", "miss_rate", "threshold", "reconstruction_auroc",
                "latent_auroc"):
        value = _fmt(report.get(key))
        ci = report.get("image_auroc_ci95") if key == "image_auroc" else None
        if ci and None not in ci:
            value += f"  (95 % interval {ci[0]:.3f}-{ci[1]:.3f})"
        rows.append((key, value))
    for t, v in (report.get("per_type_auroc") or {}).items():
        rows.append((f"image_auroc[{t}]", _fmt(v)))
    for t, v in (report.get("per_type_pixel_auroc") or {}).items():
        rows.append((f"pixel_auroc[{t}]", _fmt(v)))
    for p in report.get("operating_points") or []:
        point = (f"threshold {_fmt(p['threshold'])}: false alarms "
                 f"{_fmt(p['false_alarm_rate'])}, misses {_fmt(p['miss_rate'])}")
        rows.append((f"at a {100 * p['budget']:g} % budget", point))
    for k, v in (report.get("latent_with_labels") or {}).items():
        gain = (f"{_fmt(v['auroc_without_labels'])} -> {_fmt(v['auroc_with_labels'])} "
                f"(on {v['evaluated']} unlabeled; spread weight {v['spread_weight']:g})")
        rows.append((f"latent_auroc, {k.replace('_', ' ')} labeled", gain))
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)
