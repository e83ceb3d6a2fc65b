"""Train a tiny model for seconds; a planted defect must stand out and be found."""

import numpy as np
import pytest
from texture_helpers import plant_defect, texture

from models.data import open_dataset, read_image
from models.evaluate import evaluate
from models.inference import Inspector
from models.thresholds import false_alarm_threshold


def test_planted_defect_scores_above_normals_and_its_mask_overlaps(texture_bundle):
    path, _ = texture_bundle
    insp = Inspector.load(path, "cpu")
    rng = np.random.default_rng(123)
    normals = [texture(rng) for _ in range(8)]
    defective, mask = plant_defect(texture(rng), (30, 34), 7)
    results = insp.inspect([(im[..., None] / 255).astype(np.float32)
                            for im in normals + [defective]])
    normal_scores = [r.score for r in results[:-1]]
    planted = results[-1]
    assert planted.score > max(normal_scores)
    assert planted.label == "abnormal"
    assert (planted.mask & mask).sum() > 0.3 * mask.sum()
    assert planted.regions and planted.regions[0].score >= planted.pixel_threshold
    x, y, w, h = planted.regions[0].bbox
    assert x <= 30 <= x + w and y <= 34 <= y + h


def test_training_report_beats_chance_on_the_test_split(texture_bundle):
    _, metrics = texture_bundle
    ev = metrics["evaluation"]
    assert ev["image_auroc"] > 0.9
    lo, hi = ev["image_auroc_ci95"]  # its bootstrap interval brackets it
    assert 0.0 <= lo <= ev["image_auroc"] <= hi <= 1.0
    assert ev["pixel_auroc"] > 0.9
    # one defect type: its own pixel AUROC is the whole set's
    assert ev["per_type_pixel_auroc"] == {"pit": pytest.approx(ev["pixel_auroc"])}
    assert ev["images"] == 12


def test_results_come_back_at_the_input_size_for_any_shape(texture_bundle):
    path, _ = texture_bundle
    insp = Inspector.load(path, "cpu")
    shapes = [(8, 8, 1), (3, 300, 1), (120, 40, 3), (1, 1, 1)]
    imgs = [np.random.default_rng(0).random(s, dtype=np.float32) for s in shapes]
    for img, res in zip(imgs, insp.inspect(imgs, with_reconstruction=True)):
        assert res.anomaly_map.shape == img.shape[:2]
        assert res.mask.shape == img.shape[:2]
        assert res.reconstruction_image.shape[:2] == img.shape[:2]
        assert (res.label == "abnormal") == (res.score >= res.threshold)


def test_threshold_override_decides_the_label(texture_bundle, texture_data):
    path, _ = texture_bundle
    insp = Inspector.load(path, "cpu")
    img = read_image(next((texture_data / "test/good").iterdir()))
    r = insp.inspect([img], threshold=-1.0)[0]
    assert r.label == "abnormal" and r.threshold == -1.0
    r = insp.inspect([img], threshold=1e9)[0]
    assert r.label == "normal"


def test_batched_and_single_scores_agree(texture_bundle, texture_data):
    path, _ = texture_bundle
    insp = Inspector.load(path, "cpu")
    imgs = [read_image(p) for p in sorted((texture_data / "test/pit").iterdir())]
    together = insp.inspect(imgs)
    for img, r in zip(imgs, together):
        alone = insp.inspect([img])[0]
        assert abs(alone.score - r.score) < 1e-4


def test_operating_points_replay_the_calibration_rule_and_survive_loading(texture_bundle,
                                                                        texture_data):
    path, metrics = texture_bundle
    points = metrics["evaluation"]["operating_points"]
    held_out = metrics["calibration"]["holdout_fused_scores"]
    assert [p["budget"] for p in points] == [0.01, 0.02, 0.05, 0.1]
    # the 1 % point is the bundle's own threshold; looser budgets never raise it
    assert points[0]["threshold"] == pytest.approx(metrics["evaluation"]["threshold"])
    assert all(p["threshold"] == pytest.approx(false_alarm_threshold(np.array(held_out),
                                                                     p["budget"]))
               for p in points)
    thresholds = [p["threshold"] for p in points]
    assert thresholds == sorted(thresholds, reverse=True)
    misses = [p["miss_rate"] for p in points]
    assert misses == sorted(misses, reverse=True)  # a lower threshold never misses more
    # kensa eval on the loaded bundle reads the held-out scores back from metrics.json
    again = evaluate(Inspector.load(path, "cpu"), open_dataset(texture_data).test)
    assert [p.keys() for p in again["operating_points"]] == [p.keys() for p in points]
    for p, q in zip(again["operating_points"], points):
        assert p == pytest.approx(q)
