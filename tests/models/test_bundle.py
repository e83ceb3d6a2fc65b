"""Bundles: round trip, atomic writes, refusal of corrupt or foreign bundles."""

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file, save_file
from texture_helpers import far_cell_codes, write_as_format_2

from models.bundle import FORMAT_VERSION, WEIGHT_FILES, load_bundle, read_info, sha256
from models.errors import BundleError
from models.inference import Inspector


def test_round_trip_gives_identical_scores(texture_bundle, tmp_path):
    path, _ = texture_bundle
    img = np.random.default_rng(1).random((40, 50, 1), dtype=np.float32)
    a = Inspector.load(path, "cpu").inspect([img])[0]
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    b = Inspector.load(copy, "cpu").inspect([img])[0]
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
    write_as_format_2(copy, info)
    old, new = Inspector.load(copy, "cpu"), Inspector.load(path, "cpu")
    assert old.cal.map_scale == 0.0
    img = np.random.default_rng(2).random((40, 50, 1), dtype=np.float32)
    a, b = old.inspect([img])[0], new.inspect([img])[0]
    assert a.score == b.score and a.reconstruction.score == b.reconstruction.score
    new.cal.map_scale = 0.0  # the same bundle with the cells left out of its map
    np.testing.assert_array_equal(a.anomaly_map, new.inspect([img])[0].anomaly_map)


def test_a_bundle_with_one_latent_grid_loads_and_draws_its_map_from_it(texture_bundle,
                                                                        tmp_path):
    """Bundles from before the map grid have one VAE (no ``map_vae`` weights), latent arrays
    for its cells only, no ``model_config.map_grid`` and no ``calibration.map_distance``. Made
    here from the new bundle by dropping the map grid's parts: it loads, its verdict is the one
    the new bundle's verdict grid gives, and its map cells come from that grid."""
    path, _ = texture_bundle
    copy = tmp_path / "one-grid"
    shutil.copytree(path, copy)
    info = json.loads((copy / "bundle.json").read_text())
    del info["model_config"]["map_grid"], info["calibration"]["map_distance"]
    vae = load_file(str(copy / "vae.safetensors"))
    save_file({k: v for k, v in vae.items() if not k.startswith("map_vae.")},
              str(copy / "vae.safetensors"))
    g = info["model_config"]["latent_grid"]
    lat = load_numpy(str(copy / "latent.safetensors"))
    lat["mean"], lat["whiten"] = lat["mean"][:g * g], lat["whiten"][:g * g]
    save_numpy(lat, str(copy / "latent.safetensors"))
    info["files"] = {name: sha256(copy / name) for name in WEIGHT_FILES}
    write_as_format_2(copy, info)

    old, new = Inspector.load(copy, "cpu"), Inspector.load(path, "cpu")
    assert old.vae.map_vae is None and old.cfg.map_grid == g and old.cal.map_distance == 0.0
    img = np.random.default_rng(3).random((40, 50, 1), dtype=np.float32)
    mu = old.scores_of([img]).latent_mu
    assert mu.shape[1] == g * g
    new_mu = new.scores_of([img]).latent_mu
    np.testing.assert_allclose(mu, new_mu[:, :g * g], rtol=1e-5, atol=1e-6)
    # the map's cells are the verdict grid's, in units of the latent threshold: a far cell
    # (row 1, column 2) lights its own part of the map
    s, k = old.cfg.image_size, old.cfg.image_size // g
    far = far_cell_codes(old.latent, 1 * g + 2, 3 * old.cal.latent_distance)
    lit = old.add_latent_map(np.zeros((1, s, s), np.float32), far)[0]
    peak = np.unravel_index(lit.argmax(), lit.shape)
    assert k <= peak[0] < 2 * k and 2 * k <= peak[1] < 3 * k
    assert lit.max() > 0.5 * 3 * old.cal.map_scale  # bilinear: at worst 0.75 ** 2 of the cell
    assert lit[s - 1, s - 1] == 0  # cells far from it sit at their normal centre: distance 0


def test_a_bundle_from_before_test_time_flips_loads_without_them(texture_bundle, tmp_path):
    path, _ = texture_bundle
    copy = tmp_path / "old"
    shutil.copytree(path, copy)
    info = json.loads((copy / "bundle.json").read_text())
    assert info["calibration"].pop("flips") == []
    write_as_format_2(copy, info)
    img = np.random.default_rng(4).random((40, 50, 1), dtype=np.float32)
    old, new = Inspector.load(copy, "cpu"), Inspector.load(path, "cpu")
    assert old.cal.flips == [] and old.inspect([img])[0].score == new.inspect([img])[0].score


def test_an_image_score_is_stored_only_when_chosen_and_an_unknown_one_is_refused(
        texture_bundle, tmp_path):
    from models.fingerprint import stamp

    path, _ = texture_bundle
    info = json.loads((path / "bundle.json").read_text())
    assert "image_score" not in info["calibration"]  # the maximum: absent, as before the choice
    assert Inspector.load(path, "cpu").cal.image_score == "max"
    copy = tmp_path / "edited"
    shutil.copytree(path, copy)
    for rule, loads in (("top5", True), ("median", False)):
        info["calibration"]["image_score"] = rule
        stamp(info)  # a bundle written so, not one edited by hand
        (copy / "bundle.json").write_text(json.dumps(info))
        if loads:
            assert load_bundle(copy).cal.image_score == "top5"
        else:
            with pytest.raises(BundleError, match="image_score 'median' is not one of max"):
                load_bundle(copy)
