"""Threshold maths: thresholds from held-out normal scores (or from labels), and the
:class:`Calibration` record that carries them in a bundle.

Pure numpy; :mod:`models.calibrate` runs the procedure that feeds these functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    ``sqrt(1 + 1/n)`` term pay for estimating mean and spread from few images). Always
    strictly above the median normal score, so it can never flag every normal image.

    Args:
        normal_scores: ``(N,)`` scores of held-out normal images, higher = more anomalous.
        rate: false-alarm budget in ``(0, 1)``.
    """
    scores = np.asarray(normal_scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("no normal scores to calibrate on")
    empirical = float(np.quantile(scores, 1 - rate))
    n = scores.size
    factor = float(student_t.ppf(1 - rate, n - 1)) * np.sqrt(1 + 1 / n) if n > 2 else 0.0
    if scores.min() > 0 and n > 2:
        logs = np.log(scores)
        parametric = float(np.exp(logs.mean() + factor * logs.std(ddof=1)))
    else:
        parametric = float(scores.mean() + factor * scores.std(ddof=1)) if n > 2 else empirical
    threshold = max(empirical, parametric)
    median = float(np.median(scores))
    if threshold <= median:  # all scores equal: nudge so normal images pass
        threshold = median + 1e-6 * max(1.0, abs(median))
    return threshold


def pixel_threshold(normal_pixels: np.ndarray | list[np.ndarray], rate: float) -> float:
    """Pixel threshold with ``rate`` of held-out normal pixels above it (empirical quantile:
    there are hundreds of thousands of pixels). ``normal_pixels``: an array, or a list of
    maps of different shapes."""
    if not isinstance(normal_pixels, np.ndarray):
        normal_pixels = np.concatenate([np.ravel(m) for m in normal_pixels])
    pixels = np.asarray(normal_pixels, dtype=np.float64).ravel()
    threshold = float(np.quantile(pixels, 1 - rate))
    return threshold if threshold > float(pixels.min()) else float(pixels.min()) + 1e-6


def f1_threshold(labels: np.ndarray | list, scores: np.ndarray | list) -> float:
    """The score that, used as threshold (``score >= threshold``), maximises F1.

    Ties between thresholds with the same F1 go to the lowest one (the most defects caught),
    the rule the trainer's ``threshold_rule == "f1"`` has always used.

    Args:
        labels: ``(N,)`` 1 (or True) for defective, 0 for good.
        scores: ``(N,)`` image anomaly scores, higher = more anomalous.

    Returns:
        One of ``scores``.

    Raises:
        ValueError: no defective image (F1 is 0 at every threshold), or lengths differ.
    """
    defective = np.asarray(labels).ravel().astype(bool)
    values = np.asarray(scores, dtype=np.float64).ravel()
    if defective.shape != values.shape:
        raise ValueError(f"{defective.size} labels but {values.size} scores")
    if not defective.any():
        raise ValueError("f1_threshold needs at least one defective image (label 1)")
    order = np.argsort(-values, kind="stable")
    values, defective = values[order], defective[order]
    caught = np.cumsum(defective)
    false_alarms = np.cumsum(~defective)
    last = np.flatnonzero(np.diff(values, append=-np.inf) != 0)  # thresholds admit whole ties
    missed = caught[-1] - caught[last]
    f1 = 2 * caught[last] / (2 * caught[last] + false_alarms[last] + missed)
    lowest_best = len(f1) - 1 - int(np.argmax(f1[::-1]))
    return float(values[last[lowest_best]])


def flip_looks_normal(scores: np.ndarray, flipped: np.ndarray,
                      alpha: float = FLIP_ALPHA) -> tuple[bool, float]:
    """Whether the model finds flipped normal images as normal as the images themselves.

    A one-sided paired Wilcoxon signed-rank test on the log score ratios of the same held-out
    normal images, flipped and not: the flip is refused when the flipped copies score higher
    at level ``alpha`` (a part lit from one side, or a fixtured part, is not itself when
    flipped; a turned washer or a texture is), and with fewer than ``MIN_FLIP_IMAGES`` images,
    which cannot tell. Returns ``(looks normal, p-value)``; p is nan when too few.
    """
    plain = np.maximum(np.asarray(scores, np.float64), 1e-12)
    turned = np.maximum(np.asarray(flipped, np.float64), 1e-12)
    if plain.size < MIN_FLIP_IMAGES:
        return False, float("nan")
    log_ratios = np.log(turned) - np.log(plain)
    if np.allclose(log_ratios, 0.0, atol=1e-9):  # the model is exactly flip-symmetric on them
        return True, 1.0
    p_value = float(wilcoxon(log_ratios, alternative="greater").pvalue)
    return p_value >= alpha, p_value


@dataclass
class Calibration:
    """Everything the trainer measured on held-out normals that scoring needs.

    Attributes:
        residual_scale: normal-pixel residual level; residual maps are divided by it.
        map_scale: the reconstruction map's normal level (its 99.9th percentile on held-out
            normal pixels): a latent cell at the latent threshold counts this much in the
            anomaly map (see ``Inspector.add_latent_map``). 0 = no latent cells in the
            map (``ModelConfig.latent_map`` off, or a bundle written before they were).
        map_distance: the map grid's own distance threshold (its cells' largest distance on
            held-out normals, the rule of ``latent_distance``): map cells are shown in units
            of it (with one grid it equals ``latent_distance``). 0 = ``latent_distance``
            (bundles written before the map grid).
        reconstruction: image threshold on the reconstruction score.
        latent: threshold on the latent score.
        latent_distance: distance scale used by the semi-supervised latent score.
        latent_spread: weight of the label-spread defect probability in the semi-supervised
            latent score (see ``LatentClassifier.score``), chosen at calibration.
        image: threshold on the fused score (the label's threshold).
        pixel: threshold on the anomaly map (the mask's threshold).
        fusion: ``reconstruction``, ``max`` or ``weighted``.
        fusion_weight: weight of the reconstruction score under ``weighted``.
        flips: test-time flips (keys of ``models.inference.FLIPS``): the reconstruction map
            is the mean of the image's map and the maps of these flipped copies, flipped
            back. Chosen at calibration (``TrainConfig.flips``); empty = the image alone (and
            bundles written before flips).
        image_score: how the smoothed reconstruction map becomes the reconstruction score:
            ``max`` (its largest pixel; bundles written before the choice) or ``top0.1``,
            ``top1``, ``top5`` (the mean of its largest 0.1, 1, 5 % of pixels), a key of
            ``models.maps.IMAGE_SCORES``. Chosen at calibration from labeled defects
            (``models.calibrate.choose_image_score``); every threshold above was set under it.
        latent_score: the form of a semi-supervised latent score (``LatentClassifier.score``):
            ``mixed`` (the spread probability at ``latent_spread`` and the squashed distance;
            every labeled bundle written before the choice) or ``distance`` (the distance
            itself, as without labels: written when the labels earned the spread no share, so
            that labels which earned nothing change no score).
    """

    residual_scale: float = 1.0
    map_scale: float = 0.0
    map_distance: float = 0.0
    reconstruction: float = 1.0
    latent: float = 1.0
    latent_distance: float = 1.0
    latent_spread: float = 0.5
    image: float = 1.0
    pixel: float = 0.5
    fusion: str = "weighted"
    fusion_weight: float = 0.8
    flips: list[str] = field(default_factory=list)
    image_score: str = "max"
    latent_score: str = "mixed"

    def fuse(self, recon_score: np.ndarray, latent_score: np.ndarray) -> np.ndarray:
        """Fused image score from both sub-scores, each first divided by its own threshold
        (so 1.0 means "at its threshold" for either)."""
        recon = recon_score / self.reconstruction
        latent = latent_score / self.latent
        if self.fusion == "reconstruction":
            return recon
        if self.fusion == "max":
            return np.maximum(recon, latent)
        return self.fusion_weight * recon + (1 - self.fusion_weight) * latent
