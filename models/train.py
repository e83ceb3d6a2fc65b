"""The orchestration of a training run: read the data, fit the networks, calibrate on
held-out normals, write the bundle, then evaluate on the test split if there is one."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .autoencoder import DefectModel
from .bundle import Bundle, save_bundle, write_metrics
from .calibrate import calibrate, flip_names
from .config import FUSION_RULES, SYNTH_KINDS, ModelConfig, TrainConfig
from .cutouts import cutouts
from .data import (
    Dataset,
    Item,
    RegionSpec,
    check_boxes,
    open_dataset,
    read_label_regions,
    read_labels,
    split_holdout,
)
from .device import pick_device, to_device
from .errors import DataError
from .evaluate import evaluate
from .fit import Progress, fit_defect_model, fit_vae
from .generator import PATCH, ConditionalGenerator, DefectBank, fit_generator
from .inference import Inspector
from .labels import (
    LabelRows,
    labeled_images,
    labels_file,
    match_label_keys,
    split_rows,
    spread_labels,
)
from .latent import LatentClassifier
from .maps import IMAGE_SCORES
from .positives import Positive, read_positives
from .positives import summary as positives_summary
from .preprocess import model_shape, vae_views
from .reuse import REUSE_HOW, check_same_data, reused, reused_networks, source_configs
from .thresholds import Calibration
from .training_images import read_training_images, training_scale
from .vae import VAE, latent_means

log = logging.getLogger(__name__)

GENERATOR_SHARE = 0.1  # of the budget, for the defect generator when the run trains one
LATENT_BATCH = 64  # VAE views per forward pass when the trainer encodes its normals
# TrainConfig.extra["labeled_defects"]; latent by default
LABELED_DEFECTS = ("latent", "head", "paste", "generator")
POSITIVE_STEPS = ("extra", "mixed")  # TrainConfig.extra["positive_step"] (head); extra
LATENT_LABELS = ("spread", "classifier")  # TrainConfig.extra["latent_labels"]; spread
LABELED_DEFECTS_HOW = {
    "latent": "label spreading in the latent space (a share of the latent score only if it "
              "ranked them above the held-out normals better than the distance alone by more "
              "than luck), the fusion weight (another than the default only by more than "
              "luck), with --image-score auto the map's pooling (the same rule), with the f1 "
              "rule the threshold; each judged on them as unseen images (each one's label "
              "hidden); no network trained on them (--labeled-defects head trains the "
              "segmentation head on them: that lowered image AUROC at the same budget, "
              "benchmarks/HISTORY.md); none was scored in the evaluation",
    "head": "each labeled defect also trained the segmentation head beside the synthetic "
            "defects, augmented (flips, shifts, brightness): 'image' labels by multiple-"
            "instance learning (the top of its map high), 'boxes' the same inside each box and "
            "every pixel outside low, 'mask' every pixel; so they no longer judge the fusion "
            "weight nor an f1 threshold: the held-out normals set it; none was scored in the "
            "evaluation",
    "generator": "only the conditional defect generator learned from them (models.generator):"
                 " neither the latent classifier, the fusion weight nor the threshold saw "
                 "them; none was scored in the evaluation",
    "paste": "each labeled defect's region (its mask; else the top of the model's own map in "
             "each box or in the whole image, read again as training went) was pasted onto "
             "training normals at random places, flips, turns and opacities, in place of a "
             "share of the synthetic defects; the labeled images themselves did not train the "
             "head, and no held-out normal was pasted on; so they no longer judge the fusion "
             "weight nor an f1 threshold: the held-out normals set it; none was scored in the "
             "evaluation",
}
POSITIVE_STEPS_HOW = {"mixed": "in two windows of every training batch, at the coarse view's "
                               "scale, instead of a forward pass of their own every second step"}
LATENT_LABELS_HOW = {"classifier": "the latent classifier's defect probability came from a "
                                   "nearest-centre classifier on the latent codes (one centre "
                                   "per type and one for the normals), not label spreading"}


@dataclass
class RunData:
    """The images of a training run, read and split.

    Attributes:
        mcfg: the model config completed with the training images' scale and channels.
        fit_images: prepared images the networks train on (operator-confirmed normals last).
        holdout: prepared held-out normals that calibration sees.
        label_rows: every operator label matched to a file.
        good_rows: labeled normals that joined ``fit_images``.
        defect_rows: labeled defects (calibration and label spreading).
        positives: the labeled defects as the segmentation head trains on them (empty
            unless ``tcfg.extra["labeled_defects"]`` is ``head`` or ``paste``).
        summary: what ``bundle.json`` says of the data.
    """

    mcfg: ModelConfig
    fit_images: list[np.ndarray]
    holdout: list[np.ndarray]
    label_rows: LabelRows
    good_rows: LabelRows
    defect_rows: LabelRows
    positives: list[Positive]
    summary: dict
    labeled: list[Positive] = field(default_factory=list)


@dataclass
class Fitted:
    """The trained networks and what training them measured.

    Attributes:
        model: the reconstruction autoencoder with its segmentation head.
        vae: the VAE (in eval mode).
        history: ``{"autoencoder": ..., "vae": ...}`` loss curves and step counts.
        normal_mu: ``(N, P, D)`` latent means of the images the networks were fitted on.
        holdout_views: ``(H, V, V, C)`` the VAE's views of the held-out normals.
        generator: the conditional defect generator, when one was trained.
    """

    model: DefectModel
    vae: VAE
    history: dict
    normal_mu: np.ndarray
    holdout_views: np.ndarray
    generator: ConditionalGenerator | None = None


def train(data: str | Path, out: str | Path, model_cfg: ModelConfig | None = None,
          train_cfg: TrainConfig | None = None,
          labels: str | Path | dict[str, str] | None = None,
          device: str = "auto", progress: bool = True, name: str | None = None,
          regions: dict[str, tuple[str, list]] | None = None,
          key: bytes | None = None, networks_from: str | Path | None = None) -> dict:
    """Trains, calibrates, evaluates and writes a bundle (signed with ``key`` when given).
    Returns the bundle's metrics.

    Labeled defects (``labels``) are never scored in the evaluation. With
    ``train_cfg.extra["labeled_defects"] == "head"`` they also train the segmentation head as
    real positives beside the synthetic defects (:mod:`models.positives`), and the threshold
    comes from the held-out normals alone. Their regions are checked either way.

    Args:
        regions: with ``labels`` as a dict (reviewed records), ``{image path: (where it was
            said, boxes [[x, y, w, h], ...])}``; a labels CSV carries its own.
        networks_from: an earlier bundle trained on the same ``data``: its networks, model
            settings and held-out split are taken instead of training, and only the
            calibration settings of ``train_cfg`` apply (:mod:`models.reuse`).

    Raises:
        DataError: no usable training image, a bad labels file, or a bad region (naming the
            row).
    """
    tcfg = train_cfg or TrainConfig()
    source = None
    if networks_from is not None:  # nothing trains: the earlier bundle's networks, its split
        source, generator = reused(networks_from, key)
        model_cfg, tcfg = source_configs(source, tcfg)
    check_settings(tcfg)
    torch.manual_seed(tcfg.seed)
    dev = pick_device(device)
    started = time.monotonic()
    ds = open_dataset(data)
    run = read_run_data(ds, labels, model_cfg or ModelConfig(), tcfg, regions)
    if source is None:
        fitted = fit_networks(run.mcfg, tcfg, run.fit_images, run.holdout, dev,
                              Progress(progress), started, run.positives, run.labeled)
    else:
        check_same_data(source, run.mcfg, run.summary, Path(networks_from))
        fitted = Fitted(*reused_networks(source, run.fit_images, run.holdout, dev,
                                         LATENT_BATCH), generator=generator)
        run.summary |= {"labeled_good_trained": 0, "labeled_good_latent": len(run.good_rows),
                        "networks_from": fitted.history["networks_from"] | {"how": REUSE_HOW}}
    insp = Inspector(run.mcfg, fitted.model, fitted.vae, LatentClassifier.fit(fitted.normal_mu),
                     Calibration(fusion=tcfg.fusion, fusion_weight=tcfg.fusion_weight),
                     device=dev.type)
    calib = calibrate_run(insp, run, ds, fitted.normal_mu, tcfg)
    train_s = time.monotonic() - started
    meta = {"name": name or Path(out).name, "train_config": tcfg.to_dict(), "seed": tcfg.seed,
            "threshold_rule": calib["rule"], "fusion_rule": calib["fusion_rule"],
            "image_score": calib["image_score"],
            "data": run.summary, "device": dev.type, "training_seconds": round(train_s, 1)}
    metrics = {"training": {**fitted.history, "seconds": train_s},
               "calibration": calib, "evaluation": {}}
    # the bundle first: nothing the evaluation meets (a test file, memory) can cost the model
    save_bundle(out, Bundle(run.mcfg, insp.model, insp.vae, insp.latent, insp.cal,
                            generator=fitted.generator), meta, metrics, key)
    if ds.test:
        labeled_paths = {str(it.path) for it, _ in run.label_rows}
        test_items = [it for it in ds.test if str(it.path) not in labeled_paths]
        normals = (fitted.normal_mu[:run.summary["used_train_images"]],
                   latent_means(fitted.vae, to_device(fitted.holdout_views, dev), LATENT_BATCH))
        metrics["evaluation"] = evaluate_written(insp, out, data, test_items,
                                                 calib["holdout_fused_scores"], normals)
        write_metrics(out, metrics)
    return metrics


def read_run_data(ds: Dataset, labels: str | Path | dict[str, str] | None, mcfg: ModelConfig,
                  tcfg: TrainConfig, regions: dict[str, tuple[str, list]] | None = None
                  ) -> RunData:
    """Reads the training images and the operator labels (with their regions), and splits the
    held-out normals off (seeded by ``tcfg.seed``)."""
    label_rows, region_specs = read_label_rows(labels, ds, regions)
    mcfg, images, skipped = read_images(ds, mcfg)
    fit_idx, hold_idx = split_holdout(len(images), tcfg, np.random.default_rng(tcfg.seed))
    good_rows, defect_rows = split_rows(label_rows, ds.train)
    fit_images = [images[i] for i in fit_idx] + labeled_images(good_rows, mcfg)
    mode = labeled_defects_mode(tcfg)
    positives = read_positives(defect_rows, region_specs, mcfg)  # checks the regions too
    summary = ds.summary() | {"used_train_images": len(fit_idx), "holdout_images": len(hold_idx),
                              "skipped_files": skipped, "skipped": len(skipped),
                              "labeled_images": len(label_rows),
                              "labeled_good_trained": len(good_rows)}
    if positives:
        summary |= labeled_summary(positives, tcfg)
    if wants_generator(tcfg) and not positives:
        raise DataError("the defect generator (--generator, --synth learned) learns from "
                        "labeled defects: give --labels with at least one defect row")
    return RunData(mcfg, fit_images, [images[i] for i in hold_idx], label_rows, good_rows,
                   defect_rows, positives if mode in ("head", "paste") else [], summary,
                   positives)


def wants_generator(tcfg: TrainConfig) -> bool:
    """Whether the run trains the conditional defect generator."""
    return (tcfg.generator or tcfg.synth == "learned"
            or tcfg.extra.get("labeled_defects") == "generator")


def labeled_summary(positives: list[Positive], tcfg: TrainConfig) -> dict:
    """What ``bundle.json`` says of the labeled defects: how many of each type with which
    regions, and what they trained, how (the options that were not the defaults named)."""
    mode = labeled_defects_mode(tcfg)
    out = {"labeled_defects": positives_summary(positives), "labeled_defects_used_by": mode,
           "labeled_defects_how": LABELED_DEFECTS_HOW[mode]}
    step = tcfg.extra.get("positive_step", "extra")
    if mode == "head" and step != "extra":
        out |= {"positive_step": step, "positive_step_how": POSITIVE_STEPS_HOW[step]}
    latent = tcfg.extra.get("latent_labels", "spread")
    if latent != "spread":
        out |= {"latent_labels": latent, "latent_labels_how": LATENT_LABELS_HOW[latent]}
    return out


def labeled_defects_mode(tcfg: TrainConfig) -> str:
    """What the labeled defects train: ``latent`` (label spreading, fusion weight, f1 rule),
    ``head`` (the segmentation head too), ``paste`` (pasted onto training normals) or
    ``generator`` (the defect generator alone), from
    ``tcfg.extra``; its ``positive_step`` and ``latent_labels`` are checked too.

    Raises:
        DataError: another value of any of the three.
    """
    mode = tcfg.extra.get("labeled_defects", "latent")
    if mode not in LABELED_DEFECTS:
        raise DataError(f"labeled_defects {mode!r}: use one of {LABELED_DEFECTS}")
    for key, allowed in (("positive_step", POSITIVE_STEPS), ("latent_labels", LATENT_LABELS)):
        if tcfg.extra.get(key, allowed[0]) not in allowed:
            raise DataError(f"{key} {tcfg.extra[key]!r}: use one of {allowed}")
    return mode


def calibrate_run(insp: Inspector, run: RunData, ds: Dataset, normal_mu: np.ndarray,
                  tcfg: TrainConfig) -> dict:
    """Spreads the labeled defects' names over the latent graph (when there are some, and they
    are not the generator's alone), then calibrates on the held-out normals and those defects
    (:func:`models.calibrate.calibrate`)."""
    rows = [] if labeled_defects_mode(tcfg) == "generator" else run.defect_rows
    defect_images = labeled_images(rows, run.mcfg)
    if rows:
        labeled_paths = {str(it.path) for it, _ in run.label_rows}
        spread_labels(insp, normal_mu, rows, defect_images, ds, labeled_paths,
                      tcfg.extra.get("latent_labels", "spread"))
    labeled = (defect_images, np.ones(len(rows), bool)) if rows else None
    return calibrate(insp, run.holdout, tcfg, labeled=labeled,
                     head_trained_on_labeled=bool(run.positives))


def check_settings(tcfg: TrainConfig) -> None:
    """Fails before any training on a setting that would fail after it.

    Raises:
        DataError: an unknown fusion rule, flip name or image score.
    """
    labeled_defects_mode(tcfg)
    image_score = tcfg.extra.get("image_score", "max")
    if image_score != "auto" and image_score not in IMAGE_SCORES:
        raise DataError(f"image score {image_score!r}: use auto or one of "
                        f"{', '.join(IMAGE_SCORES)}")
    if tcfg.synth not in SYNTH_KINDS:
        raise DataError(f"unknown synth {tcfg.synth!r}: use one of {SYNTH_KINDS}")
    if tcfg.fusion not in FUSION_RULES:
        raise DataError(f"unknown fusion rule {tcfg.fusion!r}: use one of {FUSION_RULES}")
    flip_names(tcfg.flips)


def read_label_rows(labels: str | Path | dict[str, str] | None, ds: Dataset,
                    regions: dict[str, tuple[str, list]] | None = None
                    ) -> tuple[LabelRows, dict[str, RegionSpec]]:
    """The operator labels matched to image files, and their regions by resolved image path:
    ``--labels`` as a CSV or a labels folder (regions in the CSV, or masks beside it), or
    already read as ``{path: label}`` (reviewed records, read by the CLI, with ``regions``).

    Raises:
        DataError: a bad labels file, or a region with a negative origin or size (naming the
            row).
    """
    if isinstance(labels, dict):
        specs = {key: RegionSpec(where, boxes=check_boxes(boxes, where))
                 for key, (where, boxes) in (regions or {}).items()}
        keyed = match_label_keys(labels, ds)
    else:
        path = labels_file(labels)
        if path is None:
            return [], {}
        specs = read_label_regions(path)
        keyed = match_label_keys(read_labels(path), ds, path.parent)
    by_path = {str(it.path.resolve()): specs[key] for key, it, _ in keyed if key in specs}
    return [(it, label) for _, it, label in keyed], by_path


def read_images(ds: Dataset, mcfg: ModelConfig
                ) -> tuple[ModelConfig, list[np.ndarray], list[str]]:
    """The training images prepared at their model shapes, the model config completed with
    their scale and channels, and the files skipped.

    Raises:
        DataError: no training file decodes as an image.
    """
    if mcfg.keep_aspect:
        mcfg = replace(mcfg, **training_scale(ds.train, mcfg.image_size))
    images, skipped = read_training_images(ds.train, lambda h, w: model_shape(h, w, mcfg))
    if not images:
        raise DataError(f"none of the {len(ds.train)} training file(s) in {ds.root} decodes as "
                        "an image: use PNG, JPEG, BMP or TIFF files")
    return replace(mcfg, channels=images[0].shape[2]), images, skipped


def fit_networks(mcfg: ModelConfig, tcfg: TrainConfig, images: list[np.ndarray],
                 holdout: list[np.ndarray], dev: torch.device, bar: Progress,
                 started: float, positives: list[Positive] | None = None,
                 labeled: list[Positive] | None = None) -> Fitted:
    """Fits the defect generator on ``labeled`` when the run wants one (its share of the
    budget, ``GENERATOR_SHARE``), the reconstruction model (its head also on ``positives``,
    labeled real defects; with ``--synth learned`` also on generated defects), then the VAE,
    within ``tcfg.max_minutes`` counted from ``started``; the VAE gets its share of the
    budget, and what the autoencoder left."""
    model = DefectModel(mcfg).to(dev).to(memory_format=torch.channels_last)
    vae = VAE(mcfg).to(dev)
    budget = tcfg.max_minutes * 60
    ae_budget, generator, bank, extra = budget * (1 - tcfg.vae_share), None, None, {}
    if wants_generator(tcfg):  # its time comes out of the autoencoder's share
        began = time.monotonic()
        generator, extra["generator"] = fit_generator(
            cutouts(labeled or [], PATCH), tcfg, dev, budget * GENERATOR_SHARE, bar)
        ae_budget = (max(1.0, ae_budget - (time.monotonic() - began)) if budget > 0 else 0.0)
        bank = DefectBank(generator, tcfg.seed) if tcfg.synth == "learned" else None
    ae_history = fit_defect_model(model, images, tcfg, dev, ae_budget, bar, positives, bank)
    views, holdout_views = vae_views(images, mcfg), vae_views(holdout, mcfg)
    # what the AE left of the budget, but never less than half the VAE's share (0 would mean
    # "no budget" to the loop)
    vae_budget = (max(0.5 * tcfg.vae_share * budget, budget - (time.monotonic() - started))
                  if budget > 0 else 0.0)
    vae_history = fit_vae(vae, views, tcfg, dev, vae_budget, bar)
    vae.eval()
    normal_mu = latent_means(vae, to_device(views, dev), LATENT_BATCH)
    return Fitted(model, vae, {"autoencoder": ae_history, "vae": vae_history} | extra,
                  normal_mu, holdout_views, generator)


def evaluate_written(insp: Inspector, out: str | Path, data: str | Path, items: list[Item],
                     holdout_scores: list[float], normals: tuple[np.ndarray, np.ndarray]
                     ) -> dict:
    """The test-split evaluation of a bundle already written to ``out``. A failure is logged
    and recorded as ``{"error": ...}`` instead of raised: the bundle is sound and serves, and
    ``kensa eval`` can evaluate it again once the cause is fixed."""
    try:
        return evaluate(insp, items, holdout_scores, normals=normals)
    except Exception as exc:  # noqa: BLE001 - reported; the trained bundle stays
        msg = f"{type(exc).__name__}: {exc}"
        log.error("bundle %s is written, but evaluating it on the test split failed (%s); "
                  "retry with 'kensa eval --model %s --data %s'", out, msg, out, data)
        return {"error": msg}
