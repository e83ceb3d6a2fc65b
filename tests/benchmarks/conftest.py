"""Fixtures for the benchmark tests: a tiny demo dataset and a bundle trained on it in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.config import ModelConfig, TrainConfig
from models.synth_demo import make_demo_dataset
from models.train import PRESETS, train


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """16 normal 64x64 washers to train on, 3 normal and one of each defect to test on."""
    root = tmp_path_factory.mktemp("bench") / "data"
    make_demo_dataset(root, seed=0, n_train=16, n_test_good=3, n_per_defect=1, size=64)
    return root


@pytest.fixture(scope="session")
def tiny_bundle(tiny_data, tmp_path_factory) -> Path:
    """The ``tiny`` preset, two epochs on :func:`tiny_data` (CPU): speed runs need real shapes
    and code paths, not good weights."""
    bundle = tmp_path_factory.mktemp("bench") / "bundle"
    preset = PRESETS["tiny"]
    train(tiny_data, bundle, ModelConfig(**preset["model"]),
          TrainConfig(**{**preset["train"], "epochs": 2}), device="cpu", progress=False,
          name="tiny")
    return bundle
