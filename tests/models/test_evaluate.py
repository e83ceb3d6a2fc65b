"""Evaluation helpers with hand-checked cases (whole evaluations run in test_end_to_end)."""

import json

import numpy as np
import pytest

from models.calibrate import false_alarm_threshold
from models.data import open_dataset
from models.evaluate import bundle_normals, format_table, operating_points
from models.inference import Inspector
from models.latent import LatentClassifier


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
