"""Training runs: determinism for a seed, the time budget, the evaluation of the written bundle,
labels and flips in a run, the CLI's error for an empty folder, images of several sizes."""

import json
import math
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
from texture_helpers import plant_defect, texture
from tiny import TINY_MODEL, TINY_TRAINING

from models.bundle import read_info
from models.config import TrainConfig
from models.data import open_dataset
from models.errors import DataError
from models.inference import Inspector
from models.train import evaluate_written, train


def test_same_seed_same_bundle_on_cpu(texture_data, tmp_path):
    # epochs bound training here (no time budget), so both runs take the same steps
    cfg = TrainConfig(epochs=2, max_minutes=0, seed=3)
    for name in ("a", "b"):
        train(texture_data, tmp_path / name, TINY_MODEL, cfg, device="cpu", progress=False)
    a = json.loads((tmp_path / "a" / "bundle.json").read_text())
    b = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert a["files"] == b["files"] and a["version"] == b["version"]
    assert a["thresholds"] == b["thresholds"]


def test_time_budget_ends_training_and_still_writes_the_bundle(texture_data, tmp_path):
    started = time.monotonic()
    metrics = train(texture_data, tmp_path / "b", TINY_MODEL,
                    TrainConfig(epochs=100000, max_minutes=0.05), device="cpu", progress=False)
    assert metrics["training"]["autoencoder"]["stopped_by_budget"]
    assert (tmp_path / "b" / "bundle.json").is_file()
    assert time.monotonic() - started < 60


def test_the_evaluation_is_added_to_the_written_bundle_without_changing_its_version(
        texture_bundle):
    path, metrics = texture_bundle
    assert json.loads((path / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert metrics["evaluation"]["images"] == 12
    assert sorted(p.name for p in path.iterdir()) == sorted(
        ["bundle.json", "metrics.json", "model.safetensors", "vae.safetensors",
         "latent.safetensors"])
    read_info(path)  # the hashes still hold


def test_a_failed_evaluation_is_recorded_and_the_written_bundle_kept(texture_bundle,
                                                                    texture_data, caplog):
    path, _ = texture_bundle
    insp = Inspector.load(path, "cpu")
    dim = insp.latent.mean.shape[-1]
    # latent means of the wrong shape make the with-labels check fail, after every image
    bad = (np.zeros((3, 2, dim + 1), np.float32), np.zeros((2, 2, dim + 1), np.float32))
    report = evaluate_written(insp, path, texture_data, open_dataset(texture_data).test,
                               [0.5, 0.6, 0.7], bad)
    assert report["error"].startswith("ValueError")
    assert f"bundle {path} is written, but evaluating it" in caplog.text
    assert f"kensa eval --model {path} --data {texture_data}" in caplog.text


def test_a_bad_flip_name_fails_before_training(texture_data,
                                                                           tmp_path):
    started = time.monotonic()
    with pytest.raises(DataError, match="flips 'sideways'"):
        train(texture_data, tmp_path / "x", TINY_MODEL, TrainConfig(flips="sideways"), device="cpu",
              progress=False)
    assert time.monotonic() - started < 5 and not (tmp_path / "x").exists()


def test_named_flips_ship_with_the_bundle_and_too_few_normals_choose_none_under_auto(texture_data,
                                                                         texture_bundle,
                                                                         tmp_path):
    # none by default; and the fixture's 6 held-out normals are too few for auto to tell
    assert Inspector.load(texture_bundle[0], "cpu").cal.flips == []
    assert texture_bundle[1]["calibration"]["flip_rule"] == "none (configured)"
    metrics = train(texture_data, tmp_path / "a", TINY_MODEL,
                    TrainConfig(epochs=2, max_minutes=0, flips="auto"), device="cpu",
                    progress=False)
    assert metrics["calibration"]["flips"] == []
    assert "6 held-out normals cannot show" in metrics["calibration"]["flip_rule"]
    metrics = train(texture_data, tmp_path / "b", TINY_MODEL,
                    TrainConfig(epochs=2, max_minutes=0, flips="v,hv"), device="cpu",
                    progress=False)
    assert metrics["calibration"]["flips"] == ["v", "hv"]
    assert Inspector.load(tmp_path / "b", "cpu").cal.flips == ["v", "hv"]


def test_cli_names_the_folder_and_formats_when_there_is_no_image(tmp_path):
    out = subprocess.run([sys.executable, "-m", "service.cli", "train", "--data", str(tmp_path),
                          "--out", str(tmp_path / "b"), "--quiet"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2
    assert str(tmp_path) in out.stderr and "PNG, JPEG, BMP or TIFF" in out.stderr
    assert not (tmp_path / "b").exists()


def test_good_labels_join_the_training_normals_once(texture_data, tmp_path):
    # a normal image labeled good trains with the normals (so the retrained model stops
    # flagging it); one that is a training image already is not added twice; labeled images
    # are never evaluated on
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\ntest/good/000.png,good\ntest/good/001.png,good\n"
                      "train/good/003.png,good\n")
    tc = TrainConfig(epochs=3, max_minutes=0, batch_size=7)
    metrics = train(texture_data, tmp_path / "b", TINY_MODEL, tc, labels=labels, device="cpu",
                    progress=False)
    info = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert info["data"]["labeled_good_trained"] == 2
    assert info["data"]["used_train_images"] == 40 - info["data"]["holdout_images"]
    # no labeled defect: nothing to spread, and thresholds come from the held-out normals
    assert info["latent"]["semi_supervised"] is False
    assert metrics["calibration"]["rule"].startswith("false-alarm budget")
    assert metrics["evaluation"]["images"] == 12 - 2
    # three epochs over the 34 + 2 training images in batches of 7 (34 alone would be 15)
    for net in ("autoencoder", "vae"):
        assert metrics["training"][net]["steps"] == 3 * math.ceil(36 / 7) == 18


def test_keeping_the_aspect_changes_nothing_when_every_image_has_one_size(texture_data,
                                                                          tmp_path):
    # one camera, one image size: the aspect-kept model sees the same square, and trains and
    # calibrates to the same bits as the squashing one
    cfg = TrainConfig(epochs=2, max_minutes=0, seed=3)
    for name, keep in (("squash", False), ("keep", True)):
        train(texture_data, tmp_path / name, replace(TINY_MODEL, keep_aspect=keep), cfg,
              device="cpu", progress=False)
    squash, keep = (read_info(tmp_path / n) for n in ("squash", "keep"))
    assert keep["model_config"]["keep_aspect"] and keep["model_config"]["pixel_scale"] == 0.5
    assert keep["model_config"]["train_sides"] == [64, 64]
    assert keep["files"] == squash["files"] and keep["calibration"] == squash["calibration"]


def _sized_textures(root, sizes, rng, defects=0):
    """Textures cut to ``sizes`` (h, w); the last ``defects`` of them get a planted pit."""
    from PIL import Image

    masks = []
    for i, (h, w) in enumerate(sizes):
        img = texture(rng, max(h, w))[:h, :w]
        mask = np.zeros((h, w), bool)
        if i >= len(sizes) - defects:
            img, mask = plant_defect(np.ascontiguousarray(img), (w // 2, h // 2), 5)
        root.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / f"{i:03d}.png")
        masks.append(mask)
    return masks


def test_an_aspect_kept_bundle_inspects_images_of_several_sizes(tmp_path):
    from PIL import Image

    from models.data import read_image
    from models.preprocess import model_shape

    rng = np.random.default_rng(4)
    sizes = [(64, 128), (96, 64), (64, 64), (48, 160)]
    _sized_textures(tmp_path / "d/train/good", sizes * 6, rng)
    _sized_textures(tmp_path / "d/test/good", sizes[:3], rng)
    masks = _sized_textures(tmp_path / "d/test/pit", sizes[1:], rng, defects=3)
    (tmp_path / "d/ground_truth/pit").mkdir(parents=True)
    for i, m in enumerate(masks):
        Image.fromarray(m.astype(np.uint8) * 255).save(tmp_path / f"d/ground_truth/pit/{i:03d}_mask.png")
    metrics = train(tmp_path / "d", tmp_path / "b", replace(TINY_MODEL, keep_aspect=True),
                    TrainConfig(epochs=3, max_minutes=0, seed=1), device="cpu", progress=False)
    insp = Inspector.load(tmp_path / "b", "cpu")
    # 32 over the median geometric side (sqrt(64 * 128) and sqrt(96 * 64) lie in the middle)
    assert insp.cfg.pixel_scale == pytest.approx(32 / np.median([math.sqrt(h * w)
                                                                for h, w in sizes]))
    assert model_shape(48, 160, insp.cfg) == (16, 64)  # wide stays wide, in steps of 4
    paths = sorted((tmp_path / "d/test").glob("*/*.png"))
    images = [read_image(p) for p in paths]
    together = insp.inspect(images, with_reconstruction=True)
    for im, res in zip(images, together):  # a batch of mixed shapes, back in order
        alone = insp.inspect([im], with_reconstruction=True)[0]
        assert res.anomaly_map.shape == im.shape[:2] == res.reconstruction_image.shape[:2]
        # (batch size changes the float rounding of the convolutions, nothing more)
        np.testing.assert_allclose(res.anomaly_map, alone.anomaly_map, rtol=1e-4, atol=1e-5)
        assert abs(res.score - alone.score) < 1e-4
    ev = metrics["evaluation"]
    assert ev["images"] == 6 and 0 <= ev["pixel_auroc"] <= 1 and 0 <= ev["aupro"] <= 1


def test_a_bundle_serves_and_was_calibrated_under_its_stored_image_score(texture_data, tmp_path,
                                                                         tiny_bundle):
    from models.thresholds import false_alarm_threshold
    from models.train import read_run_data

    cfg = replace(TINY_TRAINING, extra={"image_score": "top1"})
    metrics = train(texture_data, tmp_path / "b", TINY_MODEL, cfg, device="cpu", progress=False)
    info = read_info(tmp_path / "b")
    assert info["calibration"]["image_score"] == "top1"
    assert info["image_score"] == {"pooling": "top1", "chosen_by": "as configured"}
    insp = Inspector.load(tmp_path / "b", "cpu")
    assert insp.cal.image_score == "top1"
    # the held-out normals' fused scores the thresholds came from are top1's, not max's
    holdout = read_run_data(open_dataset(texture_data), None, insp.cfg, cfg).holdout
    stored = metrics["calibration"]["holdout_fused_scores"]

    def fused(rule):
        insp.cal.image_score = rule
        return insp.fused_scores(insp.grouped_scores(insp.groups(holdout)))[0]

    assert fused("top1") == pytest.approx(stored, rel=1e-5)
    assert insp.cal.image == pytest.approx(false_alarm_threshold(np.array(stored), 0.01))
    assert not np.allclose(fused("max"), stored, rtol=1e-3)
    # served, an image's reconstruction score is top1's: below the map's maximum
    image = texture(np.random.default_rng(9))[..., None] / np.float32(255)
    top1 = Inspector.load(tmp_path / "b", "cpu").inspect([image])[0].reconstruction.score
    insp.cal.image_score = "max"
    assert top1 < insp.inspect([image])[0].reconstruction.score
    # a run without labels keeps the maximum, and its calibration reads as it always did
    plain = read_info(tiny_bundle)
    assert "image_score" not in plain["calibration"]
    assert plain["image_score"]["pooling"] == "max"


def test_an_unknown_image_score_is_refused_before_training(texture_data, tmp_path):
    with pytest.raises(DataError, match="image score 'top2': use auto or one of max, top0.1"):
        train(texture_data, tmp_path / "x", TINY_MODEL, TrainConfig(extra={"image_score": "top2"}),
              device="cpu", progress=False)
