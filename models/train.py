"""The orchestration of a training run: read the data, fit the networks, calibrate on
held-out normals, write the bundle, then evaluate on the test split if there is one."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .autoencoder import DefectModel
from .bundle import Bundle, save_bundle, write_metrics
from .calibrate import calibrate, flip_names
from .config import FUSION_RULES, ModelConfig, TrainConfig
from .data import Dataset, Item, open_dataset, read_labels, split_holdout
from .device import pick_device, to_device
from .errors import DataError
from .evaluate import evaluate
from .fit import Progress, fit_defect_model, fit_vae
from .inference import Inspector
from .labels import LabelRows, labeled_images, labels_file, match_labels, split_rows, spread_labels
from .latent import LatentClassifier
from .preprocess import model_shape, vae_views
from .thresholds import Calibration
from .training_images import read_training_images, training_scale
from .vae import VAE, latent_means

log = logging.getLogger(__name__)

LATENT_BATCH = 64  # VAE views per forward pass when the trainer encodes its normals


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
        summary: what ``bundle.json`` says of the data.
    """

    mcfg: ModelConfig
    fit_images: list[np.ndarray]
    holdout: list[np.ndarray]
    label_rows: LabelRows
    good_rows: LabelRows
    defect_rows: LabelRows
    summary: dict


@dataclass
class Fitted:
    """The trained networks and what training them measured.

    Attributes:
        model: the reconstruction autoencoder with its segmentation head.
        vae: the VAE (in eval mode).
        history: ``{"autoencoder": ..., "vae": ...}`` loss curves and step counts.
        normal_mu: ``(N, P, D)`` latent means of the images the networks were fitted on.
        holdout_views: ``(H, V, V, C)`` the VAE's views of the held-out normals.
    """

    model: DefectModel
    vae: VAE
    history: dict
    normal_mu: np.ndarray
    holdout_views: np.ndarray


def train(data: str | Path, out: str | Path, model_cfg: ModelConfig | None = None,
          train_cfg: TrainConfig | None = None,
          labels: str | Path | dict[str, str] | None = None,
          device: str = "auto", progress: bool = True, name: str | None = None,
          key: bytes | None = None) -> dict:
    """Trains, calibrates, evaluates and writes a bundle (signed with ``key`` when given).
    Returns the bundle's metrics.

    Raises:
        DataError: no usable training image, or a bad labels file.
    """
    tcfg = train_cfg or TrainConfig()
    check_settings(tcfg)
    torch.manual_seed(tcfg.seed)
    dev = pick_device(device)
    started = time.monotonic()
    ds = open_dataset(data)
    run = read_run_data(ds, labels, model_cfg or ModelConfig(), tcfg)
    fitted = fit_networks(run.mcfg, tcfg, run.fit_images, run.holdout, dev, Progress(progress),
                          started)
    insp = Inspector(run.mcfg, fitted.model, fitted.vae, LatentClassifier.fit(fitted.normal_mu),
                     Calibration(fusion=tcfg.fusion, fusion_weight=tcfg.fusion_weight),
                     device=dev.type)
    calib = calibrate_run(insp, run, ds, fitted.normal_mu, tcfg)
    train_s = time.monotonic() - started
    meta = {"name": name or Path(out).name, "train_config": tcfg.to_dict(), "seed": tcfg.seed,
            "threshold_rule": calib["rule"], "fusion_rule": calib["fusion_rule"],
            "data": run.summary, "device": dev.type, "training_seconds": round(train_s, 1)}
    metrics = {"training": {**fitted.history, "seconds": train_s},
               "calibration": calib, "evaluation": {}}
    # the bundle first: nothing the evaluation meets (a test file, memory) can cost the model
    save_bundle(out, Bundle(run.mcfg, insp.model, insp.vae, insp.latent, insp.cal), meta, metrics,
                key)
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
                  tcfg: TrainConfig) -> RunData:
    """Reads the training images and the operator labels, and splits the held-out normals off
    (seeded by ``tcfg.seed``)."""
    label_rows = read_label_rows(labels, ds)
    mcfg, images, skipped = read_images(ds, mcfg)
    fit_idx, hold_idx = split_holdout(len(images), tcfg, np.random.default_rng(tcfg.seed))
    good_rows, defect_rows = split_rows(label_rows, ds.train)
    fit_images = [images[i] for i in fit_idx] + labeled_images(good_rows, mcfg)
    summary = ds.summary() | {"used_train_images": len(fit_idx), "holdout_images": len(hold_idx),
                              "skipped_files": skipped, "skipped": len(skipped),
                              "labeled_images": len(label_rows),
                              "labeled_good_trained": len(good_rows)}
    return RunData(mcfg, fit_images, [images[i] for i in hold_idx], label_rows, good_rows,
                   defect_rows, summary)


def calibrate_run(insp: Inspector, run: RunData, ds: Dataset, normal_mu: np.ndarray,
                  tcfg: TrainConfig) -> dict:
    """Spreads the labeled defects' names over the latent graph (when there are some), then
    calibrates on the held-out normals and those defects (:func:`models.calibrate.calibrate`)."""
    defect_images = labeled_images(run.defect_rows, run.mcfg)
    if run.defect_rows:
        labeled_paths = {str(it.path) for it, _ in run.label_rows}
        spread_labels(insp, normal_mu, run.defect_rows, defect_images, ds, labeled_paths)
    labeled = ((defect_images, np.ones(len(run.defect_rows), bool)) if run.defect_rows
               else None)
    return calibrate(insp, run.holdout, tcfg, labeled=labeled)


def check_settings(tcfg: TrainConfig) -> None:
    """Fails before any training on a setting that would fail after it.

    Raises:
        DataError: an unknown fusion rule or flip name.
    """
    if tcfg.fusion not in FUSION_RULES:
        raise DataError(f"unknown fusion rule {tcfg.fusion!r}: use one of {FUSION_RULES}")
    flip_names(tcfg.flips)


def read_label_rows(labels: str | Path | dict[str, str] | None, ds: Dataset) -> LabelRows:
    """The operator labels matched to image files: ``--labels`` as a CSV or a labels folder, or
    already read as ``{path: label}`` (reviewed records, read by the CLI)."""
    if isinstance(labels, dict):
        return match_labels(labels, ds)
    path = labels_file(labels)
    return match_labels(read_labels(path), ds, path.parent) if path else []


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
                 started: float) -> Fitted:
    """Fits the reconstruction model, then the VAE, within ``tcfg.max_minutes`` counted from
    ``started``; the VAE gets its share of the budget, and what the autoencoder left."""
    model = DefectModel(mcfg).to(dev).to(memory_format=torch.channels_last)
    vae = VAE(mcfg).to(dev)
    budget = tcfg.max_minutes * 60
    ae_history = fit_defect_model(model, images, tcfg, dev, budget * (1 - tcfg.vae_share), bar)
    views, holdout_views = vae_views(images, mcfg), vae_views(holdout, mcfg)
    # what the AE left of the budget, but never less than half the VAE's share (0 would mean
    # "no budget" to the loop)
    vae_budget = (max(0.5 * tcfg.vae_share * budget, budget - (time.monotonic() - started))
                  if budget > 0 else 0.0)
    vae_history = fit_vae(vae, views, tcfg, dev, vae_budget, bar)
    vae.eval()
    normal_mu = latent_means(vae, to_device(views, dev), LATENT_BATCH)
    return Fitted(model, vae, {"autoencoder": ae_history, "vae": vae_history}, normal_mu,
                  holdout_views)


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
