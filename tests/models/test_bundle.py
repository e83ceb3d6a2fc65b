"""Bundles: round trip, atomic writes, refusal of corrupt or foreign bundles."""

import json
import shutil

import numpy as np
import pytest

from models.bundle import FORMAT_VERSION, load_bundle, read_info
from models.errors import BundleError
from models.inference import Inspector


def test_round_trip_gives_identical_scores(texture_bundle, tmp_path):
    path, _ = texture_bundle
    img = np.random.default_rng(1).random((40, 50, 1), dtype=np.float32)
    a = Inspector.load(path, "cpu").inspect([img])[0]
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    b = load_bundle(copy, "cpu").inspect([img])[0]
    assert a.score == b.score and a.label == b.label
    np.testing.assert_array_equal(a.anomaly_map, b.anomaly_map)


def test_bundle_json_records_what_a_user_needs(texture_bundle):
    path, _ = texture_bundle
    info = json.loads((path / "bundle.json").read_text())
    assert info["format_version"] == FORMAT_VERSION
    for key in ("version", "created", "image_size", "channels", "normalization", "thresholds",
                "fusion", "train_config", "seed", "packages", "data", "threshold_rule"):
        assert key in info, key
    assert set(info["thresholds"]) == {"image", "pixel", "reconstruction", "latent"}
    assert info["channels"] == 1  # gray textures
    assert info["data"]["holdout_images"] >= 4
    assert len(info["version"]) == 16
    assert not list(path.parent.glob(".texture.tmp-*")), "temporary directory left behind"


def test_missing_bundle_names_the_path(tmp_path):
    with pytest.raises(BundleError, match=str(tmp_path / "nope")):
        load_bundle(tmp_path / "nope")


def test_corrupt_weights_are_refused(texture_bundle, tmp_path):
    path, _ = texture_bundle
    copy = tmp_path / "b"
    shutil.copytree(path, copy)
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match the hash"):
        load_bundle(copy)


def test_foreign_format_version_is_refused(texture_bundle, tmp_path):
    path, _ = texture_bundle
    copy = tmp_path / "b"
    shutil.copytree(path, copy)
    info = json.loads((copy / "bundle.json").read_text())
    info["format_version"] = 99
    (copy / "bundle.json").write_text(json.dumps(info))
    with pytest.raises(BundleError, match="format 99"):
        read_info(copy)


def test_missing_file_and_bad_json_are_refused(texture_bundle, tmp_path):
    path, _ = texture_bundle
    copy = tmp_path / "b"
    shutil.copytree(path, copy)
    (copy / "vae.safetensors").unlink()
    with pytest.raises(BundleError, match="vae.safetensors is missing"):
        load_bundle(copy)
    (copy / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="corrupt"):
        load_bundle(copy)


def test_a_bundle_from_before_the_latent_map_loads_and_keeps_its_maps(texture_bundle, tmp_path):
    """bundle.json written before the latent cells joined the anomaly map has no
    ``calibration.map_scale``: it loads, its maps are the reconstruction maps its pixel
    threshold was set on, and its image scores are the ones the new bundle gives."""
    path, _ = texture_bundle
    copy = tmp_path / "old"
    shutil.copytree(path, copy)
    info = json.loads((copy / "bundle.json").read_text())
    assert info["calibration"].pop("map_scale") > 0
    (copy / "bundle.json").write_text(json.dumps(info))
    old, new = load_bundle(copy, "cpu"), load_bundle(path, "cpu")
    assert old.cal.map_scale == 0.0
    img = np.random.default_rng(2).random((40, 50, 1), dtype=np.float32)
    a, b = old.inspect([img])[0], new.inspect([img])[0]
    assert a.score == b.score and a.reconstruction.score == b.reconstruction.score
    new.cal.map_scale = 0.0  # the same bundle with the cells left out of its map
    np.testing.assert_array_equal(a.anomaly_map, new.inspect([img])[0].anomaly_map)
