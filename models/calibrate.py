"""The calibration procedure: every threshold of a trained bundle, set from held-out normal
images (and operator-labeled defects, when there are some).

The maths of each threshold is in :mod:`models.thresholds`; this module decides which scores
feed it, in which order (each step reads what the steps before it set).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from .config import TrainConfig
from .errors import DataError
from .inference import FLIPS, Inspector, RawScores
from .latent import FOLDS
from .maps import IMAGE_SCORES, pool_map, residual_map
from .metrics import auroc, auroc_gain_interval
from .thresholds import (
    FLIP_ALPHA,
    MIN_FLIP_IMAGES,
    f1_threshold,
    false_alarm_threshold,
    flip_looks_normal,
    pixel_threshold,
)

log = logging.getLogger(__name__)

FUSION_WEIGHTS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)  # tried by ``auto``; ties keep the larger
TRAINED_ON_LABELED = (" the labeled defects trained the segmentation head, so they score "
                      "higher than an unseen defect would")


@dataclass
class LabeledScores:
    """The operator-labeled images' scores, each as if nobody had labeled it.

    Attributes:
        is_defect: ``bool (L,)`` which labeled images are defects.
        raw: their :class:`RawScores`.
        latent: ``(L,)`` their latent scores.
    """

    is_defect: np.ndarray
    raw: RawScores
    latent: np.ndarray


def calibrate(insp: Inspector, holdout: list[np.ndarray] | np.ndarray, cfg: TrainConfig,
              labeled: tuple[list[np.ndarray] | np.ndarray, np.ndarray] | None = None,
              head_trained_on_labeled: bool = False) -> dict:
    """Sets every threshold of ``insp.cal`` from held-out normal images, prepared (``(h, w,
    C)`` each, at their model shapes). Returns the rules that set them, for ``metrics.json``.

    Args:
        labeled: optional (prepared images, is_defect ``(L,)``) operator-labeled images; with
            defects among them and ``threshold_rule == "f1"`` the image threshold is the
            F1-optimal one.
        head_trained_on_labeled: the labeled defects trained the segmentation head, so their
            reconstruction scores are not what an unseen defect would score: they no longer
            choose the fusion weight nor set an F1 threshold (the held-out normals decide,
            and the rule says why).
    """
    groups = insp.groups(list(holdout))
    insp.cal.image_score = "max"  # flips are judged on the maps' maxima
    insp.cal.residual_scale = residual_scale(insp, groups)
    insp.cal.flips, flip_rule = choose_flips(insp, groups, cfg.flips)
    has_defects = labeled is not None and bool(labeled[1].any())
    image_score = choose_image_score(insp, groups, labeled if has_defects else None,
                                     cfg.extra.get("image_score", "max"),
                                     head_trained_on_labeled)
    raw = normal_thresholds(insp, groups, cfg)  # under the chosen image score
    labeled_scores, latent_rule = None, "the distance alone (no labeled defects)"
    if has_defects:
        labeled_scores, latent_rule = score_labeled(insp, *labeled, raw, len(holdout))
    latent, _, _ = insp.latent.score(raw.latent_mu, insp.cal.latent_distance,
                                     insp.cal.latent_spread, insp.cal.latent_score)
    insp.cal.latent = false_alarm_threshold(latent, cfg.false_alarm_rate)
    judging = None if head_trained_on_labeled else labeled_scores
    fusion_rule = choose_fusion(insp, cfg, raw, latent, judging)
    if labeled_scores is not None and judging is None and cfg.fusion == "auto":
        fusion_rule = f"auto: the default weight {cfg.fusion_weight:g}, as{TRAINED_ON_LABELED}"
    fused = insp.cal.fuse(raw.recon_scores, latent)
    insp.cal.image, rule = image_threshold(fused, cfg)
    if labeled_scores is not None and cfg.extra.get("threshold_rule") == "f1":
        if judging is None:
            rule += f" (not F1: asked, but{TRAINED_ON_LABELED})"
            log.warning("--threshold-rule f1: the labeled defects trained the segmentation "
                        "head, so their scores cannot judge a threshold; it comes from the "
                        "held-out normals")
        else:
            insp.cal.image, rule = f1_image_threshold(insp, fused, labeled_scores)
    return {"rule": rule, "fusion_rule": fusion_rule, "latent_rule": latent_rule,
            "flips": insp.cal.flips, "flip_rule": flip_rule, "image_score": image_score,
            "holdout_images": len(holdout),
            # full precision: evaluation replays the threshold rule on them
            "holdout_fused_scores": [float(s) for s in fused],
            "holdout_false_alarms": int((fused >= insp.cal.image).sum())}


def residual_scale(insp: Inspector, groups: list[tuple[np.ndarray, torch.Tensor]]) -> float:
    """The normal pixels' residual level (99.9th percentile, every 7th pixel) that residual
    maps are divided by."""
    residuals = []
    with torch.inference_mode():  # in chunks: a forward pass over 1,500 images at once is GBs
        for _, x in groups:
            for i in range(0, len(x), insp.max_batch):
                chunk = x[i:i + insp.max_batch]
                residuals.append(
                    residual_map(chunk, insp.model(chunk)[0].float()).cpu().numpy())
    # numpy's quantile: torch.quantile refuses inputs over 2**24 values (about 7,000 images)
    sample = np.concatenate([r.ravel() for r in residuals])[::7]
    return max(float(np.quantile(sample, 0.999)), 1e-6)


def choose_image_score(insp: Inspector, groups: list[tuple[np.ndarray, torch.Tensor]],
                       labeled: tuple[list[np.ndarray] | np.ndarray, np.ndarray] | None,
                       setting: str, head_trained_on_labeled: bool = False) -> dict:
    """Sets ``insp.cal.image_score``, how the smoothed map becomes the reconstruction score;
    returns the choice, why, and (when labels chose) each candidate's ranking.

    ``auto`` ranks the labeled defects above the held-out normals (and the labeled normals)
    by each pooling of :data:`models.maps.IMAGE_SCORES`, on the reconstruction score alone,
    and keeps ``max`` unless another ranks them better by more than luck: the lower end of a
    90 % paired bootstrap interval of its AUROC gain over ``max`` above 0 (the rule the label
    spreading share earns its weight by); among those that pass, the best (ties: the earlier).
    Without labeled defects, or when they trained the segmentation head (their maps are no
    longer an unseen defect's), ``auto`` is ``max``: the maps' maximum, as before the choice.
    """
    insp.cal.image_score = "max"
    if setting == "max":
        return {"pooling": "max", "chosen_by": "the map's maximum, the default (kensa train "
                "--image-score auto lets labeled defects choose; on magnetic tiles it did "
                "not rank unseen defects better, benchmarks/HISTORY.md)"}
    if setting != "auto":
        insp.cal.image_score = setting
        return {"pooling": setting, "chosen_by": "as configured"}
    if labeled is None:
        return {"pooling": "max", "chosen_by": "auto: no labeled defects, the map's maximum"}
    if head_trained_on_labeled:
        return {"pooling": "max", "chosen_by": f"auto: the map's maximum, as{TRAINED_ON_LABELED}"}
    images, is_defect = labeled
    insp.cal.map_scale = 0.0  # the reconstruction maps alone (normal_thresholds sets it)
    maps = list(insp.grouped_scores(insp.groups(list(images))).maps)
    maps += list(insp.grouped_scores(groups).maps)
    truth = np.concatenate([is_defect, np.zeros(len(maps) - len(is_defect), bool)]).astype(int)
    scores = {rule: np.array([float(pool_map(torch.from_numpy(np.asarray(m))[None], rule)[0])
                              for m in maps]) for rule in IMAGE_SCORES}
    ranking = {rule: auroc(truth, s) for rule, s in scores.items()}
    gain_low = {rule: float(auroc_gain_interval(truth, s, scores["max"])[0])
                for rule, s in scores.items() if rule != "max"}
    chosen = "max"
    for rule, low in gain_low.items():
        if low > 0 and ranking[rule] > ranking[chosen] + 1e-9:
            chosen = rule
    insp.cal.image_score = chosen
    n_def, n_norm = int(truth.sum()), int(len(truth) - truth.sum())
    said = ", ".join(f"{rule} {a:.3f}" for rule, a in ranking.items())
    why = ("ranked them best by more than luck (90 % paired bootstrap of the gain over max)"
           if chosen != "max" else "kept: no other pooling ranked them better by more than "
           "luck (90 % paired bootstrap of the gain over max)")
    return {"pooling": chosen, "ranking": ranking, "gain_over_max_low": gain_low,
            "chosen_by": f"auto: {chosen} {why}; AUROC of {n_def} labeled defects against "
                         f"{n_norm} normals, reconstruction score alone: {said}"}


def normal_thresholds(insp: Inspector, groups: list[tuple[np.ndarray, torch.Tensor]],
                      cfg: TrainConfig) -> RawScores:
    """Sets the thresholds the held-out normals alone decide: reconstruction, latent
    distances, the map's latent scale and the pixel threshold. Returns their scores (maps
    with the latent cells drawn in)."""
    # the reconstruction maps alone first: their normal level is the unit the latent cells are
    # shown in (Inspector.add_latent_map)
    insp.cal.map_scale = 0.0
    raw = insp.grouped_scores(groups)
    rate = cfg.false_alarm_rate
    insp.cal.reconstruction = false_alarm_threshold(raw.recon_scores, rate)
    cells = insp.latent.cell_distances(raw.latent_mu)  # whitened once for both thresholds
    insp.cal.latent_distance = false_alarm_threshold(cells.max(1), rate)
    # the map grid's cells come last (with one grid they are all the cells: latent_distance)
    insp.cal.map_distance = false_alarm_threshold(cells[:, -insp.cfg.map_grid**2:].max(1), rate)
    if insp.cfg.latent_map:
        insp.cal.map_scale = pixel_threshold(raw.maps, cfg.pixel_false_alarm_rate)
        raw.maps = [insp.add_latent_map(m[None], mu[None])[0]
                    for m, mu in zip(raw.maps, raw.latent_mu)]
    insp.cal.pixel = pixel_threshold(raw.maps, cfg.pixel_false_alarm_rate)
    return raw


def score_labeled(insp: Inspector, images: list[np.ndarray] | np.ndarray,
                  is_defect: np.ndarray, raw: RawScores, n_holdout: int
                  ) -> tuple[LabeledScores, str]:
    """The labeled images' scores, and with a semi-supervised latent classifier, the share of
    the latent score its spread labels earn (``insp.cal.latent_spread``) and why."""
    labeled_raw = insp.grouped_scores(insp.groups(list(images)))
    if not insp.latent.semi_supervised:
        latent, _, _ = insp.latent.score(labeled_raw.latent_mu, insp.cal.latent_distance)
        return (LabeledScores(is_defect, labeled_raw, latent),
                "the distance alone (no labeled defects)")
    # the labeled images are graph points, in label-file order (see models.labels)
    index = np.flatnonzero(insp.latent.graph_labels >= 0)[-len(images):]
    probs = insp.latent.held_out_probabilities(index)
    insp.cal.latent_spread, ranking = insp.latent.choose_spread_weight(
        index, raw.latent_mu, insp.cal.latent_distance, probs)
    # labels that earned no share change no score: the distance, as without them
    insp.cal.latent_score = "distance" if insp.cal.latent_spread == 0 else "mixed"
    rule = (f"spread weight {insp.cal.latent_spread:g} ranked {int(is_defect.sum())} labeled "
            f"defects above {n_holdout + int((~is_defect).sum())} normals best (AUROC "
            f"{ranking:.3f}, labels hidden {FOLDS} folds at a time)")
    # each scored as if nobody had labeled it
    latent = insp.latent.held_out_scores(index, insp.cal.latent_distance,
                                         insp.cal.latent_spread, probs, insp.cal.latent_score)
    return LabeledScores(is_defect, labeled_raw, latent), rule


def choose_fusion(insp: Inspector, cfg: TrainConfig, raw: RawScores, latent: np.ndarray,
                  labeled: LabeledScores | None) -> str:
    """Sets ``insp.cal``'s fusion rule and weight; returns why. ``auto`` keeps
    ``cfg.fusion_weight`` unless another weight of :data:`FUSION_WEIGHTS` ranks the labeled
    defects above the held-out normals (and the labeled normals) better by more than luck: the
    lower end of a 90 % paired bootstrap interval of its AUROC gain over the default weight
    above 0, the rule every other choice labels make follows; among those that pass, the best
    (ties: the larger weight).

    Why the guard: with the weight taken by AUROC alone, 2-10 labeled defects per type moved
    it on chance and lowered image AUROC on unseen images on the same weights (demo set, 5 per
    type: 3 seeds of 3, ``benchmarks/HISTORY.md``)."""
    if cfg.fusion != "auto":
        return "as configured"
    insp.cal.fusion, insp.cal.fusion_weight = "weighted", cfg.fusion_weight
    if labeled is None:
        return f"auto: no labeled defects, the default weight {cfg.fusion_weight:g}"
    truth = np.concatenate([labeled.is_defect, np.zeros(len(latent), bool)]).astype(int)

    def fused(weight: float) -> np.ndarray:
        insp.cal.fusion_weight = weight
        return np.concatenate([insp.cal.fuse(labeled.raw.recon_scores, labeled.latent),
                               insp.cal.fuse(raw.recon_scores, latent)])

    base = fused(cfg.fusion_weight)
    best, chosen = auroc(truth, base), cfg.fusion_weight
    default_ranking = best
    for weight in (w for w in FUSION_WEIGHTS if w != cfg.fusion_weight):
        scores = fused(weight)
        ranking = auroc(truth, scores)
        if ranking > best + 1e-9 and auroc_gain_interval(truth, scores, base)[0] > 0:
            best, chosen = ranking, weight
    insp.cal.fusion_weight = chosen
    n_def, n_norm = int(labeled.is_defect.sum()), len(truth) - int(labeled.is_defect.sum())
    if chosen == cfg.fusion_weight:
        return (f"auto: the default weight {chosen:g} kept: no other ranked {n_def} labeled "
                f"defects above {n_norm} normals better by more than luck (90 % paired "
                f"bootstrap; AUROC {default_ranking:.3f})")
    return (f"auto: weight {chosen:g} ranked {n_def} labeled defects above {n_norm} normals "
            f"better than the default {cfg.fusion_weight:g} by more than luck (AUROC "
            f"{best:.3f} against {default_ranking:.3f}, 90 % paired bootstrap)")


def image_threshold(fused: np.ndarray, cfg: TrainConfig) -> tuple[float, str]:
    """The image threshold under the false-alarm budget, and the rule in words (a warning
    when there are too few held-out normals to show that budget)."""
    n = len(fused)
    rule = f"false-alarm budget {cfg.false_alarm_rate:g} on {n} held-out normals"
    if n * cfg.false_alarm_rate < 1:
        # the empirical quantile sits at the largest score, so the Student-t bound usually
        # sets the threshold, cautiously
        need = math.ceil(1 / cfg.false_alarm_rate)
        rule += (f" (fewer than {need}: the threshold is at least the largest held-out score, "
                 "usually a Student-t bound beyond it, cautious; more normal images or a "
                 "larger budget lower it)")
        log.warning("%d held-out normals cannot show a %g false-alarm rate (%d needed): the "
                    "image threshold is a cautious Student-t bound; expect more misses, or add "
                    "normal images or raise --false-alarm-rate", n, cfg.false_alarm_rate, need)
    return false_alarm_threshold(fused, cfg.false_alarm_rate), rule


def f1_image_threshold(insp: Inspector, fused: np.ndarray, labeled: LabeledScores
                       ) -> tuple[float, str]:
    """The F1-optimal image threshold over the labeled images and the held-out normals."""
    labeled_fused = insp.cal.fuse(labeled.raw.recon_scores, labeled.latent)
    threshold = f1_threshold(np.concatenate([labeled.is_defect, np.zeros(len(fused))]),
                             np.concatenate([labeled_fused, fused]))
    return threshold, (f"F1-optimal on {len(labeled.is_defect)} labeled + {len(fused)} "
                       "held-out images")


def flip_names(setting: str) -> list[str] | None:
    """``TrainConfig.flips`` -> the flips it names, or ``None`` for ``auto``.

    Raises:
        DataError: a name that is not ``auto``, ``none`` or a comma list of ``FLIPS`` keys.
    """
    if setting == "auto":
        return None
    names = [] if setting == "none" else [n.strip() for n in setting.split(",") if n.strip()]
    bad = [n for n in names if n not in FLIPS]
    if bad or not (names or setting == "none"):
        raise DataError(f"flips {setting!r}: use auto, none or a comma list of "
                        f"{', '.join(FLIPS)}")
    return list(dict.fromkeys(names))


def choose_flips(insp: Inspector, groups: list[tuple[np.ndarray, torch.Tensor]], setting: str
                 ) -> tuple[list[str], str]:
    """The test-time flips for a bundle, and why. ``auto`` keeps each flip under which the
    held-out normals (``groups``: :meth:`Inspector.groups` of them) still look normal to the
    model (:func:`flip_looks_normal`: their flipped copies do not score higher than
    themselves), so a symmetric part gets the averaged, steadier map and a part lit from one
    side keeps its own orientation."""
    named = flip_names(setting)
    if named is not None:
        return named, f"{', '.join(named) or 'none'} (configured)"
    n = sum(len(idx) for idx, _ in groups)
    if n < MIN_FLIP_IMAGES:
        return [], (f"none: {n} held-out normals cannot show that a flipped part looks "
                    f"normal ({MIN_FLIP_IMAGES} needed)")

    def scores(flip: str | None) -> np.ndarray:  # in group order, the same for every view
        return np.concatenate([insp.view_scores(x, flip) for _, x in groups])

    base = scores(None)
    chosen, said = [], []
    for name in FLIPS:
        ok, p_value = flip_looks_normal(base, scores(name))
        chosen += [name] if ok else []
        said.append(f"{name} {'kept' if ok else 'refused'} (p {p_value:.3g})")
    return chosen, (f"auto on {n} held-out normals (a flip is refused when their flipped "
                    "copies score higher, one-sided Wilcoxon p < "
                    f"{FLIP_ALPHA:g}): " + ", ".join(said))
