"""A new bundle from an earlier bundle's networks and new operator labels, without training.

By default labeled defects train no network: they name defect kinds by label spreading in the
latent space, choose the fusion weight (and, with ``--image-score auto``, the pooling; with the
f1 rule, the threshold). A run with new labels therefore needs only the earlier run's networks
and the same held-out normals: ``kensa train --networks-from BUNDLE`` reads the data and the
labels again, takes the networks of ``BUNDLE`` and goes on as a training run goes on after
fitting (label spreading, calibration, the bundle, the evaluation). It takes about as long as
an evaluation, and a benchmark comparing labels against none compares them on the same
weights.

What makes the reuse sound is checked, not assumed: the labels must not ask to train a
network (``--labeled-defects head|paste|generator``), the data must be the images the
networks trained on (the same count, and the same scale for images that keep their aspect),
and the held-out split is the earlier run's (its seed and share). Images labeled ``good``
cannot join the training of reused networks: they join the latent classifier's normals only,
and ``bundle.json`` says so.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .bundle import load_bundle, load_generator
from .config import ModelConfig, TrainConfig
from .device import to_device
from .errors import DataError
from .preprocess import vae_views
from .recalibrate import train_config
from .vae import latent_means

# what a run with reused networks may set anew: calibration, never training
CALIBRATION_FIELDS = ("false_alarm_rate", "pixel_false_alarm_rate", "fusion", "fusion_weight",
                      "flips")
CALIBRATION_EXTRA = ("threshold_rule", "image_score", "latent_labels")
# the latent classifier's normals when the networks are reused (bundle.json, data.networks_from)
REUSE_HOW = ("the networks were not trained again: they are those of the bundle named, trained "
             "on the same images; the labels went where a training run sends them after "
             "fitting (label spreading, the fusion weight, the image score's pooling with auto, "
             "the f1 rule), and images labeled good joined the latent classifier's normals only")


def source_configs(source, tcfg: TrainConfig) -> tuple[ModelConfig, TrainConfig]:
    """The earlier bundle's (``source``, :class:`models.bundle.Bundle`) model config and
    training config, with the calibration settings of ``tcfg`` (the new run's command line)
    in place of its own.

    Raises:
        DataError: ``tcfg`` asks labeled defects to train a network.
    """
    mode = tcfg.extra.get("labeled_defects", "latent")
    if mode != "latent" or tcfg.generator or tcfg.synth != "procedural" or tcfg.adversarial:
        raise DataError("--networks-from reuses trained networks, so nothing may train: leave "
                        "out --labeled-defects head|paste|generator, --generator, --synth and "
                        "--adversarial, or train without --networks-from")
    stored = train_config(source.info)
    extra = {k: v for k, v in stored.extra.items() if k not in CALIBRATION_EXTRA}
    extra |= {k: v for k, v in tcfg.extra.items() if k in CALIBRATION_EXTRA}
    return source.cfg, replace(stored, **{name: getattr(tcfg, name)
                                          for name in CALIBRATION_FIELDS}, extra=extra)


def check_same_data(source, mcfg: ModelConfig, summary: dict, bundle: Path) -> None:
    """Refuses data that is not what the earlier bundle's (``source``) networks trained on.

    Raises:
        DataError: another count of training images or held-out normals, or another scale.
    """
    was = source.info.get("data") or {}
    for key in ("train_images", "used_train_images", "holdout_images"):
        if key in was and was[key] != summary.get(key):
            raise DataError(f"--data is not what {bundle} was trained on: {key} "
                            f"{summary.get(key)} against its {was[key]}; give the same data, "
                            "or train without --networks-from")
    if mcfg.train_sides != source.cfg.train_sides or mcfg.channels != source.cfg.channels:
        raise DataError(f"--data is not what {bundle} was trained on: its images' sizes or "
                        "channels differ; give the same data, or train without "
                        "--networks-from")


def reused(bundle: str | Path, key: bytes | None = None):
    """The earlier bundle (verified, with ``key`` signed by it) and its generator, if any."""
    source = load_bundle(bundle, key)
    generator = load_generator(bundle, key) if source.info.get("generator") else None
    return source, generator


def reused_networks(source, fit_images: list[np.ndarray], holdout: list[np.ndarray],
                    dev: torch.device, batch: int
                    ) -> tuple[torch.nn.Module, torch.nn.Module, dict, np.ndarray, np.ndarray]:
    """What fitting would have returned (:class:`models.train.Fitted`), from the earlier
    bundle ``source``: its networks on ``dev``, its training history with ``networks_from``
    naming it, the latent means of ``fit_images`` (encoded ``batch`` at a time) and the VAE's
    views of the held-out normals."""
    model = source.model.to(dev).to(memory_format=torch.channels_last).eval()
    vae = source.vae.to(dev).eval()
    normal_mu = latent_means(vae, to_device(vae_views(fit_images, source.cfg), dev), batch)
    history = dict(_stored_metrics(source.info.get("path")).get("training", {}))
    history.pop("seconds", None)
    history["networks_from"] = {"bundle": str(Path(source.info["path"]).resolve()),
                                "version": source.info.get("version")}
    return model, vae, history, normal_mu, vae_views(holdout, source.cfg)


def _stored_metrics(path: str | None) -> dict:
    file = Path(path or "") / "metrics.json"
    return json.loads(file.read_text()) if file.is_file() else {}
