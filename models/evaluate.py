"""Evaluation on a labeled test split, through the same Inspector that serves."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .data import GOOD, Item, read_image, read_mask
from .inference import Inspector
from .latent import LatentClassifier
from .metrics import aupro, auroc, f1_at, per_type_auroc, pixel_auroc

BATCH = 16


def evaluate(insp: Inspector, items: Sequence[Item]) -> dict:
    """Scores every test item at its original size and computes image AUROC, pixel AUROC,
    AUPRO (to 30 % FPR), F1, false-alarm and miss rates at the bundle's threshold, the
    sub-verdicts' AUROCs and image AUROC per defect type.

    Images whose file does not decode are skipped and counted.
    """
    scores, recon, latent, types, maps, masks, pred, mus = [], [], [], [], [], [], [], []
    skipped = 0
    for i in range(0, len(items), BATCH):
        chunk, imgs = [], []
        for it in items[i:i + BATCH]:
            try:
                imgs.append(read_image(it.path))
                chunk.append(it)
            except Exception:  # noqa: BLE001 - counted and reported, not fatal
                skipped += 1
        if imgs:
            mus.append(insp.raw_scores(insp.to_tensor(imgs)).latent_mu)
        for it, img, res in zip(chunk, imgs, insp.inspect(imgs)):
            scores.append(res.score)
            recon.append(res.reconstruction.score)
            latent.append(res.latent.score)
            types.append(it.defect)
            pred.append(res.label == "abnormal")
            if it.is_good or it.mask_path is not None:
                gt = (read_mask(it.mask_path) if it.mask_path is not None
                      else np.zeros(img.shape[:2], bool))
                if gt.shape != res.anomaly_map.shape:
                    gt = _resize_mask(gt, res.anomaly_map.shape)
                masks.append(gt)
                maps.append(res.anomaly_map)
    labels = np.array([t != "good" for t in types], int)
    s = np.array(scores)
    at = f1_at(labels, s, insp.image_threshold) if len(s) else {}
    report = {
        "images": len(s), "skipped": skipped,
        "defective_images": int(labels.sum()), "normal_images": int((1 - labels).sum()),
        "image_auroc": auroc(labels, s),
        "pixel_auroc": pixel_auroc(masks, maps) if masks else math.nan,
        "aupro": aupro(masks, maps) if masks else math.nan,
        "f1": at.get("f1", math.nan), "precision": at.get("precision", math.nan),
        "recall": at.get("recall", math.nan),
        "false_alarm_rate": at.get("false_alarm_rate", math.nan),
        "miss_rate": at.get("miss_rate", math.nan),
        "threshold": insp.image_threshold,
        "reconstruction_auroc": auroc(labels, recon),
        "latent_auroc": auroc(labels, latent),
        "per_type_auroc": per_type_auroc(types, s),
        "latent_with_labels": latent_label_gain(insp, np.concatenate(mus), types)
        if mus else {},
    }
    return {k: _clean(v) for k, v in report.items()}


def latent_label_gain(insp: Inspector, mus: np.ndarray, types: list[str],
                      per_type: tuple[int, ...] = (2, 5), seed: int = 0) -> dict:
    """How much a handful of labels sharpens the latent verdict.

    For ``k`` in ``per_type``: label ``k`` random test images of every type (good included),
    run label spreading over all test latent points, and compare the latent AUROC on the
    images left unlabeled with the label-free Mahalanobis AUROC on the same images.
    """
    types_arr = np.array(types)
    out = {}
    for k in per_type:
        rng = np.random.default_rng(seed)
        chosen = np.zeros(len(types), bool)
        for t in np.unique(types_arr):
            idx = np.flatnonzero(types_arr == t)
            if len(idx) <= k:
                return out
            chosen[rng.choice(idx, k, replace=False)] = True
        clf = LatentClassifier(insp.latent.mean, insp.latent.whiten, np.zeros((0, 1)),
                               np.zeros((0, 1)), [GOOD])
        clf.spread(mus, [t if c else None for t, c in zip(types, chosen)])
        score, dist, _ = clf.score(mus[~chosen], insp.cal.latent_distance)
        y = (types_arr[~chosen] != GOOD).astype(int)
        out[f"{k}_per_type"] = {"labeled": int(chosen.sum()), "evaluated": int((~chosen).sum()),
                                "auroc_without_labels": auroc(y, dist),
                                "auroc_with_labels": auroc(y, score)}
    return out


def _resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]),
                      interpolation=cv2.INTER_NEAREST).astype(bool)


def _clean(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (np.floating, np.integer)):
        return _clean(v.item())
    return v


def format_table(report: dict) -> str:
    """A plain-text table of an evaluation report."""
    rows = [("images (defective/normal)",
             f"{report.get('images')} ({report.get('defective_images')}/"
             f"{report.get('normal_images')})")]
    for key in ("image_auroc", "pixel_auroc", "aupro", "f1", "precision", "recall",
                "false_alarm_rate", "miss_rate", "threshold", "reconstruction_auroc",
                "latent_auroc"):
        rows.append((key, _fmt(report.get(key))))
    for t, v in (report.get("per_type_auroc") or {}).items():
        rows.append((f"image_auroc[{t}]", _fmt(v)))
    for k, v in (report.get("latent_with_labels") or {}).items():
        rows.append((f"latent_auroc, {k.replace('_', ' ')} labeled",
                     f"{_fmt(v['auroc_without_labels'])} -> {_fmt(v['auroc_with_labels'])} "
                     f"(on {v['evaluated']} unlabeled)"))
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)
