"""A models root made from the committed golden bundle: version A is the golden bundle as
committed, version B the same networks with another fusion weight (so its scores differ and
its version id too). Both are real bundles, written by models.bundle in milliseconds."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from golden_cases import GOLDEN

from models.bundle import Bundle, load_bundle, save_bundle
from service.registry import publish, staging_folder

META_KEYS = ("train_config", "seed", "threshold_rule", "data", "device", "training_seconds")


def golden_version(part_folder: Path) -> str:
    """Copies the golden bundle into ``part_folder`` as a version; returns its id."""
    info = json.loads((GOLDEN / "bundle" / "bundle.json").read_text())
    shutil.copytree(GOLDEN / "bundle", part_folder / info["version"])
    return info["version"]


def reweighted_version(part_folder: Path, weight: float = 0.5) -> str:
    """The golden networks with fusion weight ``weight``, written as a new version."""
    source = load_bundle(GOLDEN / "bundle")
    info = source.info
    bundle = Bundle(source.cfg, source.model, source.vae, source.latent,
                    replace(source.cal, fusion_weight=weight))
    meta = {"name": part_folder.name, **{k: info[k] for k in META_KEYS if k in info}}
    metrics = json.loads((GOLDEN / "bundle" / "metrics.json").read_text())
    staged = save_bundle(staging_folder(part_folder), bundle, meta, metrics)
    return publish(staged).name


def make_root(root: Path, part: str = "washer") -> tuple[str, str]:
    """A models root with one part holding versions A (active) and B; returns (A, B)."""
    folder = root / part
    folder.mkdir(parents=True)
    a, b = golden_version(folder), reweighted_version(folder)
    from service.registry import ModelsRoot

    ModelsRoot(root).set_active(part, a)
    return a, b
