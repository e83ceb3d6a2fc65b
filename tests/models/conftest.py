"""Small generated data and one tiny bundle for the core's tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from texture_helpers import SIZE, plant_defect, texture
from tiny import TEXTURE_MODEL, TEXTURE_TRAINING, TINY_MODEL, TINY_TRAINING

from models.train import train


@pytest.fixture(scope="session")
def texture_data(tmp_path_factory) -> Path:
    """MVTec layout: 40 normal training textures, 6 normal and 6 defective test images."""
    root = tmp_path_factory.mktemp("texture")
    rng = np.random.default_rng(0)
    for sub in ("train/good", "test/good", "test/pit", "ground_truth/pit"):
        (root / sub).mkdir(parents=True)
    for i in range(40):
        cv2.imwrite(str(root / f"train/good/{i:03d}.png"), texture(rng))
    for i in range(6):
        cv2.imwrite(str(root / f"test/good/{i:03d}.png"), texture(rng))
        c = tuple(int(v) for v in rng.integers(16, SIZE - 16, 2))
        img, mask = plant_defect(texture(rng), c, int(rng.integers(4, 8)))
        cv2.imwrite(str(root / f"test/pit/{i:03d}.png"), img)
        cv2.imwrite(str(root / f"ground_truth/pit/{i:03d}_mask.png"), mask.astype(np.uint8) * 255)
    return root


@pytest.fixture(scope="session")
def texture_bundle(texture_data, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bundle") / "texture"
    metrics = train(texture_data, out, TEXTURE_MODEL, TEXTURE_TRAINING, device="cpu", progress=False)
    return out, metrics


@pytest.fixture(scope="session")
def tiny_bundle(texture_data, tmp_path_factory) -> Path:
    """A bundle of the tiny configuration (seconds): for tests that edit a bundle, not judge
    with it."""
    out = tmp_path_factory.mktemp("tiny") / "tiny"
    train(texture_data, out, TINY_MODEL, TINY_TRAINING, device="cpu", progress=False)
    return out


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> Path:
    """A copy of the golden fixture's bundle with its ONNX graphs (``kensa export``)."""
    import shutil

    from golden_cases import GOLDEN

    from models.exports import export_onnx

    bundle = tmp_path_factory.mktemp("exported") / "golden"
    shutil.copytree(GOLDEN / "bundle", bundle)
    export_onnx(bundle)
    return bundle
