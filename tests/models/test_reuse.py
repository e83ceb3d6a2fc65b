"""A run that takes an earlier bundle's networks (``train(..., networks_from=...)``,
``kensa train --networks-from``): the same answers without labels, the labels applied with them,
and refusals of what would make the reuse unsound."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest
from tiny import TINY_MODEL, TINY_TRAINING

from models.config import TrainConfig
from models.errors import DataError
from models.train import train


def _info(bundle) -> dict:
    return json.loads((bundle / "bundle.json").read_text())


def _labels(texture_data, path, rows=(("pit", 2),), good=0):
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["path", "label"])
        for kind, n in rows:
            for f in sorted((texture_data / "test" / kind).glob("*.png"))[:n]:
                out.writerow([str(f), kind])
        for f in sorted((texture_data / "test" / "good").glob("*.png"))[:good]:
            out.writerow([str(f), "good"])
    return path


def test_without_labels_the_earlier_bundle_comes_back_with_its_version(texture_data,
                                                                        tiny_bundle, tmp_path):
    # another seed and budget on the command line: the source's split and settings still rule
    metrics = train(texture_data, tmp_path / "again", None,
                    replace(TINY_TRAINING, seed=TINY_TRAINING.seed + 5, max_minutes=9),
                    device="cpu", progress=False, networks_from=tiny_bundle)
    was, now = _info(tiny_bundle), _info(tmp_path / "again")
    assert now["version"] == was["version"] and now["files"] == was["files"]
    assert now["thresholds"] == was["thresholds"] and now["seed"] == was["seed"]
    assert now["data"]["networks_from"]["version"] == was["version"]
    assert metrics["training"]["networks_from"]["bundle"] == str(tiny_bundle.resolve())
    # the earlier run's training history is kept, this run trained nothing
    stored = json.loads((tiny_bundle / "metrics.json").read_text())["training"]
    assert metrics["training"]["autoencoder"]["steps"] == stored["autoencoder"]["steps"]
    assert metrics["evaluation"]["image_auroc"] == pytest.approx(
        json.loads((tiny_bundle / "metrics.json").read_text())["evaluation"]["image_auroc"])


def test_labels_change_the_latent_side_and_leave_the_networks(texture_data, tiny_bundle,
                                                              tmp_path):
    labels = _labels(texture_data, tmp_path / "l.csv", good=1)
    metrics = train(texture_data, tmp_path / "labeled", None, TINY_TRAINING, labels=labels,
                    device="cpu", progress=False, networks_from=tiny_bundle)
    was, now = _info(tiny_bundle), _info(tmp_path / "labeled")
    for name in ("model.safetensors", "vae.safetensors"):
        assert now["files"][name] == was["files"][name]
    assert now["version"] != was["version"]
    assert now["latent"]["classes"] == ["good", "pit"] and now["latent"]["semi_supervised"]
    assert now["data"]["labeled_defects"]["pit"]["image"] == 2
    # a good label cannot train reused networks: it joins the latent normals, and says so
    assert now["data"]["labeled_good_trained"] == 0 and now["data"]["labeled_good_latent"] == 1
    assert "joined the latent classifier's normals only" in now["data"]["networks_from"]["how"]
    # the labeled images are not judged: 6 normals + 6 pits less the 3 labeled
    assert metrics["evaluation"]["images"] == 12 - 3
    # the reconstruction side was calibrated on the same held-out normals
    assert now["thresholds"]["reconstruction"] == was["thresholds"]["reconstruction"]


@pytest.mark.parametrize("extra, flag", [({"labeled_defects": "head"}, {}),
                                         ({"labeled_defects": "paste"}, {}),
                                         ({}, {"generator": True}),
                                         ({}, {"adversarial": True})])
def test_options_that_train_are_refused_before_anything_is_read(tiny_bundle, tmp_path, extra,
                                                                  flag):
    with pytest.raises(DataError, match="--networks-from reuses trained networks"):
        train(tmp_path / "no-such-data", tmp_path / "out", None,
              TrainConfig(extra=extra, **flag), device="cpu", progress=False,
              networks_from=tiny_bundle)
    assert not (tmp_path / "out").exists()


def test_other_data_is_refused_naming_what_differs(texture_data, tiny_bundle, tmp_path):
    fewer = tmp_path / "fewer"
    shutil.copytree(texture_data, fewer)
    for f in sorted((fewer / "train" / "good").glob("*.png"))[:5]:
        f.unlink()
    with pytest.raises(DataError, match="not what .* was trained on: train_images 35 against "
                                        "its 40"):
        train(fewer, tmp_path / "out", None, TINY_TRAINING, device="cpu", progress=False,
              networks_from=tiny_bundle)
    assert not (tmp_path / "out").exists()


def test_a_missing_bundle_is_named(texture_data, tmp_path):
    from models.errors import BundleError

    with pytest.raises(BundleError, match="does not exist"):
        train(texture_data, tmp_path / "out", TINY_MODEL, TINY_TRAINING, device="cpu",
              progress=False, networks_from=tmp_path / "nothing")


def test_the_cli_applies_labels_to_a_bundle_and_refuses_head(texture_data, tiny_bundle,
                                                             tmp_path):
    labels = _labels(texture_data, tmp_path / "l.csv")
    kensa = [sys.executable, "-m", "service.cli", "train", "--data", str(texture_data),
             "--networks-from", str(tiny_bundle), "--labels", str(labels), "--quiet"]
    done = subprocess.run([*kensa, "--out", str(tmp_path / "b")], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _info(tmp_path / "b")["latent"]["classes"] == ["good", "pit"]
    refused = subprocess.run([*kensa, "--out", str(tmp_path / "c"), "--labeled-defects", "head"],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--networks-from reuses trained networks" in refused.stderr
    assert not (tmp_path / "c").exists()


def test_labels_that_earn_nothing_change_no_score(texture_data, tiny_bundle, tmp_path):
    import numpy as np

    from models.data import open_dataset, read_image
    from models.inference import Inspector

    labels = _labels(texture_data, tmp_path / "l.csv")  # two pits, no good image
    train(texture_data, tmp_path / "labeled", None, TINY_TRAINING, labels=labels, device="cpu",
          progress=False, networks_from=tiny_bundle)
    cal = _info(tmp_path / "labeled")["calibration"]
    # what the tiny model's two labels earn (deterministic): no spread share, the default weight
    assert cal["latent_spread"] == 0.0 and cal["fusion_weight"] == 0.8
    assert cal["latent_score"] == "distance"  # written only when it is not the default
    assert "latent_score" not in _info(tiny_bundle)["calibration"]
    images = [read_image(it.path) for it in open_dataset(texture_data).test]
    was, now = (Inspector.load(b, "cpu").inspect(images) for b in (tiny_bundle,
                                                                    tmp_path / "labeled"))
    np.testing.assert_allclose([r.score for r in now], [r.score for r in was], rtol=1e-6)
    assert [r.label for r in now] == [r.label for r in was]
    # the labels still name the clusters
    assert {r.latent.cluster for r in now} <= {"good", "pit", "anomaly"}
