"""Model bundles: a directory of safetensors weights plus JSON, written atomically, verified
on load. No pickles: the networks are rebuilt from the stored config.

Layout::

    BUNDLE/
      bundle.json          format version, version id and the digests it is made of (and an
                           optional signature: models.fingerprint), config, calibration,
                           thresholds, fusion, data summary
      metrics.json         training curves and evaluation
      model.safetensors    reconstruction autoencoder + segmentation head
      vae.safetensors      VAE
      latent.safetensors   latent classifier arrays
      generator.safetensors  optional: the conditional defect generator (``kensa generate``;
                           models.generator), described in bundle.json ``generator`` with its
                           digest; no answer depends on it, so it is not in the version
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import uuid
from dataclasses import asdict, dataclass, field
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
from .fingerprint import stamp, verify
from .generator import ConditionalGenerator, GeneratorConfig
from .latent import LATENT_SCORES, LatentClassifier
from .maps import IMAGE_SCORES
from .preprocess import stride_multiple
from .thresholds import Calibration
from .vae import VAE

# 2: the VAE's latent is a grid of codes (models.vae); format-1 bundles must be retrained
# 3: per-part digests, a version that covers latent.classes, an optional signature; format 2
#    still loads (models.fingerprint says what its version covers)
FORMAT_VERSION = 3
READ_FORMATS = (2, 3)
WEIGHT_FILES = ("model.safetensors", "vae.safetensors", "latent.safetensors")
GENERATOR_FILE = "generator.safetensors"


@dataclass
class Bundle:
    """What a bundle holds: the networks rebuilt from their config, the latent classifier,
    the calibration, and (when read) ``bundle.json`` with the stored evaluation.

    Attributes:
        cfg: the networks' shapes and how images are prepared for them.
        model: the reconstruction autoencoder with its segmentation head.
        vae: the VAE.
        latent: the latent classifier.
        cal: the thresholds and fusion rule.
        generator: the conditional defect generator, when the bundle ships one (written, not
            read: :func:`load_generator` reads it).
        info: ``bundle.json`` plus ``metrics`` (the stored evaluation), ``holdout_scores``
            and ``path``; empty for a bundle not read from disk.
    """

    cfg: ModelConfig
    model: DefectModel
    vae: VAE
    latent: LatentClassifier
    cal: Calibration
    info: dict = field(default_factory=dict)
    generator: ConditionalGenerator | None = None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def save_bundle(out: str | Path, bundle: Bundle, meta: dict, metrics: dict,
                key: bytes | None = None) -> Path:
    """Writes a bundle atomically: everything goes to a temporary sibling directory that is
    renamed into place at the end, so a crash never leaves half a bundle at ``out``.

    Args:
        out: the bundle directory (replaced if it exists).
        bundle: the trained, calibrated networks (``bundle.info`` is not written).
        meta: extra ``bundle.json`` fields (training config, data summary, threshold rule...).
        metrics: ``metrics.json`` content.
        key: signs the bundle (HMAC-SHA256, :mod:`models.fingerprint`) when given.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        files = _write_weights(tmp, bundle)
        info = _bundle_json(out, bundle, files, meta)
        if bundle.generator is not None:
            info["generator"] = {"file": GENERATOR_FILE, "sha256": sha256(tmp / GENERATOR_FILE),
                                 "config": bundle.generator.cfg.to_dict()}
        stamp(info, key)
        (tmp / "bundle.json").write_text(json.dumps(info, indent=2, sort_keys=True))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_weights(folder: Path, bundle: Bundle) -> dict[str, str]:
    """The three safetensors files of ``WEIGHT_FILES`` -> ``{file name: sha256}``."""
    for name, module in (("model.safetensors", bundle.model), ("vae.safetensors", bundle.vae)):
        state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        save_file(state, str(folder / name))
    save_numpy({k: np.ascontiguousarray(v) for k, v in bundle.latent.state().items()},
               str(folder / "latent.safetensors"))
    if bundle.generator is not None:
        state = {k: v.detach().cpu().contiguous()
                 for k, v in bundle.generator.state_dict().items()}
        save_file(state, str(folder / GENERATOR_FILE))
    return {name: sha256(folder / name) for name in WEIGHT_FILES}


def _bundle_json(out: Path, bundle: Bundle, files: dict[str, str], meta: dict) -> dict:
    """``bundle.json``: what a user needs to know of the bundle (the version id is added by
    :func:`models.fingerprint.stamp`)."""
    cfg, cal = bundle.cfg, bundle.cal
    info = {
        "format_version": FORMAT_VERSION,
        "name": meta.get("name", out.name),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "image_size": cfg.image_size,
        "channels": cfg.channels,
        "normalization": normalization_text(cfg),
        "model_config": cfg.to_dict(),
        "calibration": calibration_dict(cal),
        "thresholds": thresholds_view(cal),
        "fusion": {"rule": cal.fusion, "weight": cal.fusion_weight,
                   "description": fusion_description(cal),
                   "chosen_by": meta.get("fusion_rule", "as configured")},
        "latent": {"classes": bundle.latent.classes,
                   "semi_supervised": bundle.latent.semi_supervised},
        "packages": package_versions(),
        "files": files,
        **{k: v for k, v in meta.items() if k not in ("name", "fusion_rule")},
    }
    return info


def write_metrics(bundle: str | Path, metrics: dict) -> None:
    """Replaces a written bundle's ``metrics.json`` atomically (a temporary file, then
    rename). ``metrics.json`` is not part of the version hash, so the bundle keeps its id: the
    trainer writes the bundle before it evaluates and adds the evaluation afterwards."""
    write_json(Path(bundle) / "metrics.json", metrics)


def write_json(path: Path, obj: dict) -> None:
    """Writes ``obj`` to ``path`` as sorted, indented JSON through a temporary file renamed
    over it, so a reader sees the old file or the new one, never half of one."""
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def swap_into_place(tmp: Path, out: Path) -> None:
    """Renames the finished folder ``tmp`` to ``out``, moving an existing ``out`` aside first
    and removing it after, so ``out`` is always a whole folder."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out, old)
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def calibration_dict(cal: Calibration) -> dict:
    """``bundle.json``'s ``calibration``: every field, but ``image_score`` only when it is not
    ``max`` and ``latent_score`` only when it is not ``mixed`` (absent means those, as in every
    bundle written before each choice), so a run without labels writes the calibration, and
    gets the version, it always did."""
    out = asdict(cal)
    for name, default in (("image_score", "max"), ("latent_score", "mixed")):
        if out[name] == default:
            del out[name]
    return out


def thresholds_view(cal: Calibration) -> dict[str, float]:
    return {"image": cal.image, "pixel": cal.pixel, "reconstruction": cal.reconstruction,
            "latent": cal.latent}


def fusion_description(cal: Calibration) -> str:
    recon = "reconstruction_score / reconstruction_threshold"
    latent = "latent_score / latent_threshold"
    if cal.fusion == "reconstruction":
        return f"score = {recon}"
    if cal.fusion == "max":
        return f"score = max({recon}, {latent})"
    return f"score = {cal.fusion_weight:g} * {recon} + {1 - cal.fusion_weight:g} * {latent}"


def read_info(path: str | Path, key: bytes | None = None) -> dict:
    """Reads and checks ``bundle.json``: format version, listed files and their hashes, the
    version id against everything that decides an answer, and (with ``key``) the signature."""
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
    if not isinstance(info, dict) or info.get("format_version") not in READ_FORMATS:
        got = info.get("format_version") if isinstance(info, dict) else None
        raise BundleError(f"{path} has bundle format {got!r}; this Kensa reads formats "
                          f"{' and '.join(map(str, READ_FORMATS))}: retrain it with this version")
    for name in WEIGHT_FILES:
        file = path / name
        if not file.is_file():
            raise BundleError(f"{path} is incomplete: {name} is missing")
        if sha256(file) != info.get("files", {}).get(name):
            raise BundleError(f"{file} does not match the hash in bundle.json: the file is "
                              "corrupt or was replaced; copy the bundle again or retrain")
    verify(path, info, key)
    return info


def load_bundle(path: str | Path, key: bytes | None = None) -> Bundle:
    """Reads and verifies a bundle: the networks rebuilt from the stored config and loaded
    with the stored weights (on the CPU), the latent classifier and the calibration.

    Args:
        key: when given, only a bundle signed with it loads (``KENSA_BUNDLE_KEY``).

    Raises:
        BundleError: missing directory or file, bad format version, hash mismatch, a part
            changed since the bundle was written, a missing or wrong signature, or weights
            that do not fit the stored config.
    """
    path = Path(path)
    info = read_info(path, key)
    try:
        cfg = ModelConfig.from_dict(info["model_config"])
        model, vae = DefectModel(cfg), VAE(cfg)
        model.load_state_dict(load_file(str(path / "model.safetensors")))
        vae.load_state_dict(load_file(str(path / "vae.safetensors")))
        latent = LatentClassifier.from_state(load_numpy(str(path / "latent.safetensors")),
                                             info["latent"]["classes"])
        cal = Calibration(**info["calibration"])
        if cal.latent_score not in LATENT_SCORES:
            raise ValueError(f"calibration.latent_score {cal.latent_score!r} is not one of "
                             f"{', '.join(LATENT_SCORES)}")
        if cal.image_score not in IMAGE_SCORES:
            raise ValueError(f"calibration.image_score {cal.image_score!r} is not one of "
                             f"{', '.join(IMAGE_SCORES)}")
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
    return Bundle(cfg, model, vae, latent, cal, info)


def load_generator(path: str | Path, key: bytes | None = None) -> ConditionalGenerator:
    """The conditional defect generator a bundle ships (on the CPU, in eval mode), after the
    bundle itself is verified (:func:`read_info`) and the generator's file against the digest
    ``bundle.json`` records.

    Raises:
        BundleError: the bundle does not verify, ships no generator, or its file is missing,
            changed or does not fit its config.
    """
    path = Path(path)
    info = read_info(path, key)
    entry = info.get("generator")
    if not isinstance(entry, dict):
        raise BundleError(f"{path} has no defect generator: train one with 'kensa train "
                          "--labels CSV --generator' (labeled defects with masks or boxes)")
    file = path / GENERATOR_FILE
    if not file.is_file() or sha256(file) != entry.get("sha256"):
        raise BundleError(f"{file} is missing or does not match the digest in bundle.json: "
                          "copy the bundle again or retrain")
    try:
        gen = ConditionalGenerator(GeneratorConfig.from_dict(entry["config"]))
        gen.load_state_dict(load_file(str(file)))
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise BundleError(f"{file} cannot be loaded ({type(exc).__name__}: {exc}); "
                          "retrain it with this version of Kensa") from None
    return gen.eval()
