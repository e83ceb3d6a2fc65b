"""Training: determinism for a seed, the time budget, the CLI's error for an empty folder,
where training windows are placed."""

import json
import math
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
from texture_helpers import SIZE, plant_defect, texture

from models.bundle import read_info
from models.config import ModelConfig, TrainConfig
from models.data import open_dataset
from models.errors import DataError
from models.inference import Inspector
from models.train import _evaluate_written, calibrate, flip_names, train, window_origins

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
    report = _evaluate_written(insp, path, texture_data, open_dataset(texture_data).test,
                               [0.5, 0.6, 0.7], bad)
    assert report["error"].startswith("ValueError")
    assert f"bundle {path} is written, but evaluating it" in caplog.text
    assert f"kensa eval --model {path} --data {texture_data}" in caplog.text


def test_flips_are_auto_none_or_named_and_a_bad_name_fails_before_training(texture_data,
                                                                           tmp_path):
    assert flip_names("auto") is None and flip_names("none") == []
    assert flip_names("hv, h,h") == ["hv", "h"]
    for bad in ("x", "h,y", ""):
        with pytest.raises(DataError, match="auto, none or a comma list of h, v, hv"):
            flip_names(bad)
    started = time.monotonic()
    with pytest.raises(DataError, match="flips 'sideways'"):
        train(texture_data, tmp_path / "x", TINY, TrainConfig(flips="sideways"), device="cpu",
              progress=False)
    assert time.monotonic() - started < 5 and not (tmp_path / "x").exists()


def test_named_flips_ship_with_the_bundle_and_too_few_normals_choose_none_under_auto(texture_data,
                                                                         texture_bundle,
                                                                         tmp_path):
    # none by default; and the fixture's 6 held-out normals are too few for auto to tell
    assert Inspector.load(texture_bundle[0], "cpu").cal.flips == []
    assert texture_bundle[1]["calibration"]["flip_rule"] == "none (configured)"
    metrics = train(texture_data, tmp_path / "a", TINY,
                    TrainConfig(epochs=2, max_minutes=0, flips="auto"), device="cpu",
                    progress=False)
    assert metrics["calibration"]["flips"] == []
    assert "6 held-out normals cannot show" in metrics["calibration"]["flip_rule"]
    metrics = train(texture_data, tmp_path / "b", TINY,
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


def test_training_windows_sit_on_the_image_rim_as_often_as_configured():
    rng = np.random.default_rng(0)
    n, size, crop = 20000, 128, 64
    ys, xs = window_origins(rng, np.full((n, 2), size), crop, border_share=0.5)
    for pos in (ys, xs):
        assert pos.min() == 0 and pos.max() == size - crop  # every window lies inside
        # a quarter on each rim (plus the 1 in 65 that uniform placement puts there anyway)
        assert abs((pos == 0).mean() - (0.25 + 0.5 / 65)) < 0.01
        assert abs((pos == size - crop).mean() - (0.25 + 0.5 / 65)) < 0.01
        inner = pos[(pos > 0) & (pos < size - crop)]
        assert len(inner) > 0.45 * n and len(np.unique(inner)) == size - crop - 1
    # the two axes are drawn independently: a window sits in a corner when both do
    on_rim = 0.5 + 1 / 65
    corner = ((ys == 0) | (ys == size - crop)) & ((xs == 0) | (xs == size - crop))
    assert abs(corner.mean() - on_rim ** 2) < 0.02
    for pos in window_origins(np.random.default_rng(0), np.full((n, 2), size), crop,
                              border_share=0.0):
        assert abs((pos == 0).mean() - 1 / 65) < 0.005  # 0 = uniform placement


def test_labels_folder_means_its_labels_csv_and_an_empty_folder_means_none(tmp_path, caplog):
    from models.train import labels_file

    assert labels_file(None) is None
    assert labels_file(tmp_path / "mine.csv") == tmp_path / "mine.csv"  # a file stays a file
    with caplog.at_level("WARNING"):
        assert labels_file(tmp_path) is None  # the trainer's first run, before any label
    assert f"no labels.csv in {tmp_path} yet" in caplog.text
    (tmp_path / "labels.csv").write_text("path,label\nimages/a.png,good\n")
    assert labels_file(tmp_path) == tmp_path / "labels.csv"


def test_label_rows_may_name_images_beside_the_labels_file(texture_data, tmp_path):
    from models.data import open_dataset
    from models.train import match_labels

    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "x.png").write_bytes(
        (texture_data / "test" / "pit" / "000.png").read_bytes())
    ds = open_dataset(texture_data)
    rows = match_labels({"images/x.png": "pit", "test/good/000.png": "good",
                         "images/missing.png": "pit"}, ds, tmp_path)
    assert [(str(it.path), lab) for it, lab in rows] == [
        (str(tmp_path / "images" / "x.png"), "pit"),
        (str(texture_data / "test" / "good" / "000.png"), "good")]


def test_a_label_row_naming_an_outside_file_is_not_taken_for_a_dataset_namesake(texture_data,
                                                                             tmp_path):
    from models.data import open_dataset
    from models.train import match_labels

    # train/good/000.png exists in the dataset; so does this other 000.png outside it
    (tmp_path / "new").mkdir()
    outside = tmp_path / "new" / "000.png"
    outside.write_bytes((texture_data / "test" / "pit" / "001.png").read_bytes())
    ds = open_dataset(texture_data)
    [(it, lab)] = match_labels({str(outside): "good"}, ds, tmp_path)
    assert (it.path, lab) == (outside, "good")
    # a bare name still finds the dataset file when it is unique there and nowhere else
    [(it, _)] = match_labels({"007.png": "good"}, ds, tmp_path)
    assert it.path == texture_data / "train" / "good" / "007.png"


def test_good_labels_join_the_training_normals_once(texture_data, tmp_path):
    # a normal image labeled good trains with the normals (so the retrained model stops
    # flagging it); one that is a training image already is not added twice; labeled images
    # are never evaluated on
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\ntest/good/000.png,good\ntest/good/001.png,good\n"
                      "train/good/003.png,good\n")
    cfg = ModelConfig(image_size=32, width=8, depth=2, seg_width=8, vae_image_size=16,
                      vae_width=8, latent_dim=4)
    tc = TrainConfig(epochs=3, max_minutes=0, batch_size=7)
    metrics = train(texture_data, tmp_path / "b", cfg, tc, labels=labels, device="cpu",
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


def test_training_images_are_shrunk_as_read_and_take_colour_only_when_present(tmp_path):
    from PIL import Image

    from models.data import Item
    from models.train import read_training_images

    rng = np.random.default_rng(0)
    gray = Image.fromarray(rng.integers(0, 256, (300, 200), dtype=np.uint8))
    gray.save(tmp_path / "gray.png")
    # an RGB file whose channels agree is gray too
    Image.fromarray(np.repeat(np.asarray(gray)[..., None], 3, axis=2)).save(tmp_path / "g3.png")
    colour = rng.integers(0, 256, (40, 90, 3), dtype=np.uint8)
    colour[..., 0] = 255  # strongly red: real colour
    Image.fromarray(colour).save(tmp_path / "red.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    items = [Item(tmp_path / n) for n in ("gray.png", "g3.png", "broken.png")]

    images, skipped = read_training_images(items, 32)
    images = np.stack(images)
    assert images.shape == (2, 32, 32, 1) and images.dtype == np.float32
    assert skipped == [str(tmp_path / "broken.png")]
    assert np.allclose(images[0], images[1], atol=1e-6)

    images, _ = read_training_images(items + [Item(tmp_path / "red.png")], 32)
    images = np.stack(images)
    assert images.shape == (3, 32, 32, 3)
    assert images[2, ..., 0].min() > 0.99 and images[0].std(axis=2).max() < 1e-6

    images, skipped = read_training_images(items[2:], 32)
    assert images == [] and len(skipped) == 1


def test_too_few_held_out_normals_for_the_budget_are_said_plainly(texture_bundle, caplog):
    # 8 held-out normals (at the texture bundle's image size, SIZE) cannot show a 1 %
    # false-alarm rate: the rule says so and a warning names the fixes; at a 20 % budget
    # (1.6 false alarms expected) they can, and nothing is said
    rng = np.random.default_rng(5)
    holdout = np.stack([texture(rng, SIZE)[..., None] / np.float32(255) for _ in range(8)])
    insp = Inspector.load(texture_bundle[0], "cpu")
    with caplog.at_level("WARNING"):
        few = calibrate(insp, holdout.astype(np.float32), TrainConfig(false_alarm_rate=0.01))
    assert "fewer than 100" in few["rule"] and "--false-alarm-rate" in caplog.text
    assert insp.cal.image >= max(few["holdout_fused_scores"])
    caplog.clear()
    with caplog.at_level("WARNING"):
        enough = calibrate(insp, holdout.astype(np.float32), TrainConfig(false_alarm_rate=0.2))
    assert "fewer than" not in enough["rule"] and "false-alarm" not in caplog.text


def test_training_windows_fit_images_of_several_shapes():
    shapes = np.array([[128, 48], [48, 304], [64, 64]] * 2000)
    ys, xs = window_origins(np.random.default_rng(0), shapes, 64, border_share=0.5)
    room = np.maximum(shapes - 64, 0)
    assert (ys >= 0).all() and (xs >= 0).all()
    assert (ys <= room[:, 0]).all() and (xs <= room[:, 1]).all()
    # each image's own far rim is reached, and a side shorter than the window starts at 0
    assert (ys[::3] == 64).mean() > 0.2 and (xs[1::3] == 240).mean() > 0.2
    assert (xs[::3] == 0).all() and (ys[1::3] == 0).all()
    from models.train import _window

    win = _window(np.random.rand(128, 48, 1).astype(np.float32), None, 10, 0, 64,
                  np.random.default_rng(0))
    assert win.shape == (64, 64, 1)  # the narrow side mirrored out to the window


def test_keeping_the_aspect_changes_nothing_when_every_image_has_one_size(texture_data,
                                                                          tmp_path):
    # one camera, one image size: the aspect-kept model sees the same square, and trains and
    # calibrates to the same bits as the squashing one
    cfg = TrainConfig(epochs=2, max_minutes=0, seed=3)
    for name, keep in (("squash", False), ("keep", True)):
        train(texture_data, tmp_path / name, replace(TINY, keep_aspect=keep), cfg,
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
    from models.inference import model_shape

    rng = np.random.default_rng(4)
    sizes = [(64, 128), (96, 64), (64, 64), (48, 160)]
    _sized_textures(tmp_path / "d/train/good", sizes * 6, rng)
    _sized_textures(tmp_path / "d/test/good", sizes[:3], rng)
    masks = _sized_textures(tmp_path / "d/test/pit", sizes[1:], rng, defects=3)
    (tmp_path / "d/ground_truth/pit").mkdir(parents=True)
    for i, m in enumerate(masks):
        Image.fromarray(m.astype(np.uint8) * 255).save(tmp_path / f"d/ground_truth/pit/{i:03d}_mask.png")
    metrics = train(tmp_path / "d", tmp_path / "b", replace(TINY, keep_aspect=True),
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
