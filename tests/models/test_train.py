"""Training: determinism for a seed, the time budget, the CLI's error for an empty folder."""

import json
import subprocess
import sys
import time

from models.config import ModelConfig, TrainConfig
from models.train import train

TINY = ModelConfig(image_size=32, width=8, depth=2, seg_width=8, vae_image_size=16,
                   vae_width=8, latent_dim=4)


def test_same_seed_same_bundle_on_cpu(texture_data, tmp_path):
    # epochs bound training here (no time budget), so both runs take the same steps
    cfg = TrainConfig(epochs=2, max_minutes=0, seed=3)
    for name in ("a", "b"):
        train(texture_data, tmp_path / name, TINY, cfg, device="cpu", progress=False)
    a = json.loads((tmp_path / "a" / "bundle.json").read_text())
    b = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert a["files"] == b["files"] and a["version"] == b["version"]
    assert a["thresholds"] == b["thresholds"]


def test_time_budget_ends_training_and_still_writes_the_bundle(texture_data, tmp_path):
    started = time.monotonic()
    metrics = train(texture_data, tmp_path / "b", TINY,
                    TrainConfig(epochs=100000, max_minutes=0.05), device="cpu", progress=False)
    assert metrics["training"]["autoencoder"]["stopped_by_budget"]
    assert (tmp_path / "b" / "bundle.json").is_file()
    assert time.monotonic() - started < 60


def test_cli_names_the_folder_and_formats_when_there_is_no_image(tmp_path):
    out = subprocess.run([sys.executable, "-m", "service.cli", "train", "--data", str(tmp_path),
                          "--out", str(tmp_path / "b"), "--quiet"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2
    assert str(tmp_path) in out.stderr and "PNG, JPEG, BMP or TIFF" in out.stderr
    assert not (tmp_path / "b").exists()
