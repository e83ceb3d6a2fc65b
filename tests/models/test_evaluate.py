"""Evaluation helpers with hand-checked cases (whole evaluations run in test_end_to_end)."""

import json

import numpy as np
import pytest
from PIL import Image

from models import evaluate
from models.data import Item, open_dataset
from models.evaluate import (
    PixelTruth,
    bundle_normals,
    format_table,
    operating_points,
    score_report,
)
from models.inference import Inspector
from models.latent import LatentClassifier
from models.metrics import aupro, pixel_auroc
from models.thresholds import false_alarm_threshold


def test_operating_points_count_false_alarms_and_misses_at_each_budgets_threshold():
    held_out = np.linspace(0.5, 1.0, 20)  # normal scores the thresholds come from
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.6, 0.9, 1.05, 1.25, 0.95, 1.1, 1.4, 2.0])
    points = operating_points(labels, scores, held_out, budgets=(0.01, 0.1))
    for p in points:
        t = false_alarm_threshold(held_out, p["budget"])
        assert p["threshold"] == pytest.approx(t)
        flagged = scores >= t
        assert p["false_alarm_rate"] == pytest.approx(flagged[labels == 0].mean())
        assert p["miss_rate"] == pytest.approx(1 - flagged[labels == 1].mean())
    strict, loose = points
    assert strict["threshold"] > loose["threshold"]
    # by hand: the 1 % bound is 1.28 (no normal flagged; 1.4 and 2.0 caught), the 10 % one
    # 0.98 (normals 1.05 and 1.25 flagged; only 0.95 missed)
    assert strict["threshold"] == pytest.approx(1.281, abs=1e-3)
    assert strict["false_alarm_rate"] == 0.0 and strict["miss_rate"] == 0.5
    assert loose["threshold"] == pytest.approx(0.982, abs=1e-3)
    assert loose["false_alarm_rate"] == 0.5 and loose["miss_rate"] == 0.25
    assert "at a 1 % budget" in format_table({"operating_points": points})


def test_no_operating_points_without_held_out_scores_or_test_images():
    assert operating_points(np.array([0, 1]), [0.1, 0.9], []) == []
    assert operating_points(np.array([]), [], [0.5, 0.6, 0.7]) == []


def test_the_with_labels_check_replays_the_bundles_own_training_split(texture_bundle,
                                                                      texture_data):
    out, metrics = texture_bundle
    insp = Inspector.load(out, "cpu")
    data = json.loads((out / "bundle.json").read_text())["data"]
    train_items = open_dataset(texture_data).train
    known, held = bundle_normals(insp, train_items)
    assert (len(known), len(held)) == (data["used_train_images"], data["holdout_images"])
    # the same images the latent cluster was fitted on: refitting gives its centres back
    np.testing.assert_allclose(LatentClassifier.fit(known).mean, insp.latent.mean,
                               rtol=1e-4, atol=1e-5)
    # training's own evaluation built the same graph
    for check in metrics["evaluation"]["latent_with_labels"].values():
        assert (check["graph_normals"], check["held_out_normals"]) == (len(known), len(held))
    # another set of training images: no replay
    assert bundle_normals(insp, train_items[:-1]) is None


def test_pixel_truth_keeps_a_bounded_sample_of_large_images_and_the_same_figures(tmp_path):
    # 1,000 test images share 8 M pixels: 8,000 of each of these 120,000-pixel ones are kept
    rng = np.random.default_rng(0)
    pixels, items, masks, maps = PixelTruth(n_images=1000), [], [], []
    for i in range(6):
        mask = np.zeros((300, 400), bool)
        if i % 2:
            mask[50 + 20 * i:90 + 20 * i, 100:160] = True  # a blob
            mask[250, 20:300] = True  # and a one-pixel-wide crack
            Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / f"{i}_mask.png")
        amap = rng.random(mask.shape).astype(np.float32) + 0.7 * mask
        item = Item(tmp_path / f"{i}.png", "dent" if i % 2 else "good",
                    tmp_path / f"{i}_mask.png" if i % 2 else None)
        pixels.add(item, amap)
        items.append(item.defect)
        masks.append(mask)
        maps.append(amap)
    assert all(p.scores.size <= 8000 + 2 * 64 for p in pixels.samples)
    assert [p.n_regions for p in pixels.samples] == [0, 2, 0, 2, 0, 2]
    report = score_report(items, [m.max() for m in maps], 1.0, pixels, 0)
    assert report["pixel_auroc"] == pytest.approx(pixel_auroc(masks, maps), abs=0.01)
    assert report["aupro"] == pytest.approx(aupro(masks, maps), abs=0.01)
    assert report["per_type_pixel_auroc"]["dent"] == pytest.approx(report["pixel_auroc"])


def test_test_images_come_in_batches_bounded_by_count_and_by_pixels(tmp_path):
    sizes = [(40, 50), (40, 50), (300, 400), (40, 50), (40, 50), (40, 50)]
    items = []
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(np.zeros((h, w), np.uint8)).save(tmp_path / f"{i}.png")
        items.append(Item(tmp_path / f"{i}.png"))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    items.insert(1, Item(tmp_path / "broken.png"))
    # at most 3 images, and a batch ends once it holds 100,000 pixels (the large one does)
    images = evaluate.TestImages(items, batch=3, batch_pixels=100_000)
    batches = [[im.shape[:2] for im in imgs] for _chunk, imgs in images]
    assert batches == [[(40, 50), (40, 50), (300, 400)], [(40, 50), (40, 50), (40, 50)]]
    assert images.skipped == 1
    assert [len(c) for c, _ in evaluate.TestImages(items, batch=16, batch_pixels=100_000)] == [3, 3]


def test_an_unreadable_mask_is_named_and_its_image_counts_for_image_metrics_only(
        texture_bundle, texture_data, tmp_path, caplog):
    insp = Inspector.load(texture_bundle[0], "cpu")
    items = open_dataset(texture_data).test
    pits = [i for i, it in enumerate(items) if it.defect == "pit"]
    broken = tmp_path / "000_mask.png"
    broken.write_bytes(b"not a png")
    items[pits[0]] = Item(items[pits[0]].path, "pit", broken)
    whole = evaluate.evaluate(insp, items)
    assert whole["unreadable_masks"] == [str(broken)]
    assert str(broken) in caplog.text
    assert whole["images"] == len(items)  # the image itself is still scored ...
    # ... and the pixel metrics are those of the other images alone
    others = evaluate.evaluate(insp, [it for i, it in enumerate(items) if i != pits[0]])
    assert others["unreadable_masks"] == []
    assert whole["pixel_auroc"] == pytest.approx(others["pixel_auroc"])
    assert whole["aupro"] == pytest.approx(others["aupro"])
    assert "unreadable masks (image metrics only)" in format_table(whole)


def test_a_mask_of_another_shape_is_named_and_a_resized_one_is_not(texture_bundle, texture_data,
                                                                    tmp_path, caplog):
    insp = Inspector.load(texture_bundle[0], "cpu")
    pit = next(it for it in open_dataset(texture_data).test if it.defect == "pit")
    w, h = Image.open(pit.path).size
    half = tmp_path / "half_mask.png"  # the same mask at half the size: a legitimate copy
    Image.open(pit.mask_path).resize((w // 2, h // 2), Image.NEAREST).save(half)
    wrong = tmp_path / "wrong_mask.png"  # a strip: not this image's mask
    Image.fromarray(np.full((7, 300), 255, np.uint8)).save(wrong)
    evaluate.evaluate(insp, [Item(pit.path, "pit", half)])
    assert "another shape" not in caplog.text
    evaluate.evaluate(insp, [Item(pit.path, "pit", wrong)])
    assert f"{wrong} is 300x7 but its image {pit.path} is {w}x{h}" in caplog.text
