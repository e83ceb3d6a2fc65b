"""Model bundles: a directory of safetensors weights plus JSON, written atomically, verified
on load. No pickles: the networks are rebuilt from the stored config.

Layout::

    BUNDLE/
      bundle.json          format version, version id, config, thresholds, fusion, data summary
      metrics.json         training curves and evaluation
      model.safetensors    reconstruction autoencoder + segmentation head
      vae.safetensors      VAE
      latent.safetensors   latent classifier arrays
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file, save_file

from . import __version__
from .autoencoder import DefectModel
from .config import ModelConfig
from .errors import BundleError
from .inference import Calibration, Inspector, stride_multiple
from .latent import LatentClassifier
from .vae import VAE

# 2: the VAE's latent is a grid of codes (models.vae); format-1 bundles must be retrained
FORMAT_VERSION = 2
WEIGHT_FILES = ("model.safetensors", "vae.safetensors", "latent.safetensors")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    import cv2
    import sklearn

    return {"kensa": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "opencv": cv2.__version__, "scikit-learn": sklearn.__version__,
            "python": platform.python_version()}


def normalization_text(cfg: ModelConfig) -> str:
    """How an image becomes the model's input, in words (``bundle.json`` ``normalization``)."""
    lo, hi = cfg.train_sides
    outside = (f"an image whose sqrt(h * w) is outside {lo:.0f}-{hi:.0f} as if it were at the "
               "nearest end; " if 0 < lo <= hi else "")
    size = (f"scaled by {cfg.pixel_scale:.4g} keeping its aspect ({outside}sides to multiples "
            f"of {stride_multiple(cfg)})" if cfg.keep_aspect and cfg.pixel_scale > 0
            else f"resized to {cfg.image_size} x {cfg.image_size}")
    return (f"decoded to [0, 1]; gray<->RGB to match 'channels'; {size} (area when shrinking, "
            "bilinear else)")


def save_bundle(out: str | Path, inspector: Inspector, meta: dict, metrics: dict) -> Path:
    """Writes a bundle atomically: everything goes to a temporary sibling directory that is
    renamed into place at the end, so a crash never leaves half a bundle at ``out``.

    Args:
        out: the bundle directory (replaced if it exists).
        inspector: the trained, calibrated models.
        meta: extra ``bundle.json`` fields (training config, data summary, threshold rule...).
        metrics: ``metrics.json`` content.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in inspector.model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        vstate = {k: v.detach().cpu().contiguous() for k, v in inspector.vae.state_dict().items()}
        save_file(vstate, str(tmp / "vae.safetensors"))
        save_numpy({k: np.ascontiguousarray(v) for k, v in inspector.latent.state().items()},
                   str(tmp / "latent.safetensors"))
        files = {name: sha256(tmp / name) for name in WEIGHT_FILES}
        info = {
            "format_version": FORMAT_VERSION,
            "name": meta.get("name", out.name),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "image_size": inspector.cfg.image_size,
            "channels": inspector.cfg.channels,
            "normalization": normalization_text(inspector.cfg),
            "model_config": inspector.cfg.to_dict(),
            "calibration": asdict(inspector.cal),
            "thresholds": thresholds_view(inspector.cal),
            "fusion": {"rule": inspector.cal.fusion, "weight": inspector.cal.fusion_weight,
                       "description": fusion_description(inspector.cal),
                       "chosen_by": meta.get("fusion_rule", "as configured")},
            "latent": {"classes": inspector.latent.classes,
                       "semi_supervised": inspector.latent.semi_supervised},
            "packages": package_versions(),
            "files": files,
            **{k: v for k, v in meta.items() if k not in ("name", "fusion_rule")},
        }
        info["version"] = hashlib.sha256(
            json.dumps({"files": files, "calibration": info["calibration"],
                        "model_config": info["model_config"]}, sort_keys=True).encode()
        ).hexdigest()[:16]
        (tmp / "bundle.json").write_text(json.dumps(info, indent=2, sort_keys=True))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def write_metrics(bundle: str | Path, metrics: dict) -> None:
    """Replaces a written bundle's ``metrics.json`` atomically (a temporary file, then
    rename). ``metrics.json`` is not part of the version hash, so the bundle keeps its id: the
    trainer writes the bundle before it evaluates and adds the evaluation afterwards."""
    bundle = Path(bundle)
    tmp = bundle / f".metrics.json.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True))
        os.replace(tmp, bundle / "metrics.json")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out, old)
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def thresholds_view(cal: Calibration) -> dict[str, float]:
    return {"image": cal.image, "pixel": cal.pixel, "reconstruction": cal.reconstruction,
            "latent": cal.latent}


def fusion_description(cal: Calibration) -> str:
    r = "reconstruction_score / reconstruction_threshold"
    lat = "latent_score / latent_threshold"
    if cal.fusion == "reconstruction":
        return f"score = {r}"
    if cal.fusion == "max":
        return f"score = max({r}, {lat})"
    return f"score = {cal.fusion_weight:g} * {r} + {1 - cal.fusion_weight:g} * {lat}"


def read_info(path: str | Path) -> dict:
    """Reads and checks ``bundle.json`` (format version, listed files and their hashes)."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"model bundle {path} does not exist: train one with "
                          f"'kensa train --data DIR --out {path}'")
    meta_path = path / "bundle.json"
    try:
        info = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{path} is not a Kensa bundle: bundle.json is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{meta_path} is corrupt: {exc}") from None
    if not isinstance(info, dict) or info.get("format_version") != FORMAT_VERSION:
        got = info.get("format_version") if isinstance(info, dict) else None
        raise BundleError(f"{path} has bundle format {got!r}; this Kensa reads format "
                          f"{FORMAT_VERSION}: retrain it with this version")
    for name in WEIGHT_FILES:
        f = path / name
        if not f.is_file():
            raise BundleError(f"{path} is incomplete: {name} is missing")
        if sha256(f) != info.get("files", {}).get(name):
            raise BundleError(f"{f} does not match the hash in bundle.json: the file is "
                              "corrupt or was replaced; copy the bundle again or retrain")
    return info


def load_bundle(path: str | Path, device: str = "auto") -> Inspector:
    """Loads and verifies a bundle into an :class:`Inspector`.

    Raises:
        BundleError: missing directory or file, bad format version, hash mismatch, or
            weights that do not fit the stored config.
    """
    path = Path(path)
    info = read_info(path)
    try:
        cfg = ModelConfig.from_dict(info["model_config"])
        model, vae = DefectModel(cfg), VAE(cfg)
        model.load_state_dict(load_file(str(path / "model.safetensors")))
        vae.load_state_dict(load_file(str(path / "vae.safetensors")))
        latent = LatentClassifier.from_state(load_numpy(str(path / "latent.safetensors")),
                                             info["latent"]["classes"])
        cal = Calibration(**info["calibration"])
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise BundleError(f"{path} cannot be loaded ({type(exc).__name__}: {exc}); "
                          "retrain it with this version of Kensa") from None
    metrics_path = path / "metrics.json"
    stored = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    info["metrics"] = stored.get("evaluation", {})
    # the held-out normal scores the thresholds came from: evaluation re-derives the
    # thresholds other false-alarm budgets would give (operating points)
    info["holdout_scores"] = stored.get("calibration", {}).get("holdout_fused_scores", [])
    info["path"] = str(path)
    return Inspector(cfg, model, vae, latent, cal, device=device, info=info)
