"""The latent classifier: the normal cluster, Mahalanobis distance, label spreading."""

import json

import numpy as np
import pytest

from models.config import ModelConfig, TrainConfig
from models.inference import Inspector
from models.latent import SPREAD_WEIGHTS, LatentClassifier
from models.metrics import auroc
from models.train import train


def test_distance_is_mahalanobis_for_a_known_covariance():
    rng = np.random.default_rng(0)
    normal = rng.normal(0, 1, (4000, 2)) * np.array([1.0, 3.0])
    clf = LatentClassifier.fit(normal)
    # one unit along the narrow axis weighs as much as three along the wide one
    d = clf.distance(np.array([[1.0, 0.0], [0.0, 3.0]]))
    assert d[0] == pytest.approx(1.0, abs=0.08)
    assert d[1] == pytest.approx(1.0, abs=0.08)


def test_spreading_names_the_defect_cluster_from_a_few_labels():
    rng = np.random.default_rng(1)
    good = rng.normal(0, 1, (60, 3))
    crack = rng.normal(6, 0.5, (30, 3))
    clf = LatentClassifier.fit(good[:40])
    points = np.concatenate([good, crack])
    labels = [None] * len(points)
    labels[0], labels[60], labels[61] = "good", "crack", "crack"  # three labels in 90 points
    clf.spread(points, labels)
    assert clf.classes == ["good", "crack"] and clf.semi_supervised
    probe = np.concatenate([rng.normal(0, 1, (5, 3)), rng.normal(6, 0.5, (5, 3))])
    score, _dist, clusters = clf.score(probe, distance_scale=3.0)
    assert clusters == ["good"] * 5 + ["crack"] * 5
    assert score[5:].min() > score[:5].max()


def test_state_round_trip():
    clf = LatentClassifier.fit(np.random.default_rng(2).normal(0, 1, (50, 4)))
    again = LatentClassifier.from_state(clf.state(), clf.classes)
    z = np.ones((1, 4), np.float32)
    assert again.distance(z) == pytest.approx(clf.distance(z))


def test_train_with_labels_builds_a_semi_supervised_bundle(texture_data, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\ntest/pit/000.png,pit\ntest/pit/001.png,pit\n"
                      "test/good/000.png,good\n")
    out = tmp_path / "b"
    cfg = ModelConfig(image_size=32, width=8, depth=2, seg_width=8, vae_image_size=16,
                      vae_width=8, latent_dim=4)
    metrics = train(texture_data, out, cfg, TrainConfig(epochs=2, max_minutes=0.1),
                    labels=labels, device="cpu", progress=False)
    info = json.loads((out / "bundle.json").read_text())
    assert info["latent"] == {"classes": ["good", "pit"], "semi_supervised": True}
    assert info["data"]["labeled_images"] == 3
    # labeled images are not evaluated on
    assert metrics["evaluation"]["images"] == 12 - 3
    # auto fusion: labeled defects pick the weight of the weighted rule, and say how
    assert info["fusion"]["rule"] == "weighted" and 0.5 <= info["fusion"]["weight"] <= 1.0
    assert info["fusion"]["chosen_by"].startswith(
        f"auto: weight {info['fusion']['weight']:g} ranked 2 labeled defects")
    # the labels' share of the latent score was chosen on the labeled images too
    w = info["calibration"]["latent_spread"]
    assert w in SPREAD_WEIGHTS
    assert metrics["calibration"]["latent_rule"].startswith(f"spread weight {w:g} ranked 2 ")


def test_auto_fusion_without_labels_mixes_both_scores_at_the_configured_weight(texture_data,
                                                                              tmp_path):
    cfg = ModelConfig(image_size=32, width=8, depth=2, seg_width=8, vae_image_size=16,
                      vae_width=8, latent_dim=4)
    train(texture_data, tmp_path / "b", cfg,
          TrainConfig(epochs=1, max_minutes=0, fusion_weight=0.7), device="cpu", progress=False)
    info = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert info["fusion"]["rule"] == "weighted" and info["fusion"]["weight"] == 0.7
    assert info["fusion"]["chosen_by"] == "auto: no labeled defects, the default weight 0.7"
    insp = Inspector.load(tmp_path / "b", "cpu")
    [r] = insp.inspect([np.full((32, 32, 1), 0.5, np.float32)])
    want = (0.7 * r.reconstruction.score / insp.cal.reconstruction
            + 0.3 * r.latent.score / insp.cal.latent)
    assert r.score == pytest.approx(want, rel=1e-6)


def test_each_cell_of_the_grid_has_its_own_normal_cluster():
    rng = np.random.default_rng(3)
    # two cells of two values: the first varies little on normal images, the second a lot
    normal = np.stack([rng.normal(0, 1, (3000, 2)), rng.normal(0, 10, (3000, 2))], axis=1)
    clf = LatentClassifier.fit(normal)
    z = np.array([[[5.0, 0.0], [0.0, 0.0]],    # five units off in the quiet cell
                  [[0.0, 0.0], [5.0, 0.0]]])   # the same five units in the busy cell
    cells = clf.cell_distances(z)
    assert cells[0] == pytest.approx([5.0, 0.0], abs=0.3)
    assert cells[1] == pytest.approx([0.0, 0.5], abs=0.3)
    # an image is as far as its most unusual cell, and that cell's code stands for it
    assert clf.distance(z) == pytest.approx(cells.max(1))
    np.testing.assert_allclose(clf.descriptor(z)[0], clf.whitened(z)[0, 0])
    np.testing.assert_allclose(clf.descriptor(z)[1], clf.whitened(z)[1, 1])


def test_grid_state_round_trip():
    clf = LatentClassifier.fit(np.random.default_rng(4).normal(0, 1, (50, 3, 4)))
    again = LatentClassifier.from_state(clf.state(), clf.classes)
    z = np.random.default_rng(5).normal(0, 1, (2, 3, 4)).astype(np.float32)
    assert again.distance(z) == pytest.approx(clf.distance(z))


def _labeled_graph(normal: np.ndarray, defects: np.ndarray) -> LatentClassifier:
    """Normal cluster fitted on normal[100:]; graph of normal[:100] (30 labeled good) and 20
    defects (10 labeled dent)."""
    clf = LatentClassifier.fit(normal[100:])
    clf.spread(np.concatenate([normal[:100], defects]),
               ["good"] * 30 + [None] * 70 + ["dent"] * 10 + [None] * 10)
    return clf


def test_labels_earn_a_share_of_the_latent_score_only_where_they_rank_defects_better():
    rng = np.random.default_rng(6)
    normal = rng.normal(0, 1, (300, 2))
    y = np.r_[np.ones(10, int), np.zeros(30, int)]
    # a tight defect cluster no farther out than ordinary normals: the distance alone ranks
    # it poorly, the labels find it
    tight = rng.normal([1.5, 0.0], 0.05, (20, 2))
    clf = _labeled_graph(normal, tight)
    assert auroc(y, clf.distance(np.concatenate([tight[:10], normal[:30]]))) < 0.75
    weight, a = clf.choose_spread_weight(tight[:10], normal[:30], distance_scale=2.0)
    assert (weight, a) == (0.5, pytest.approx(1.0))
    # defects scattered all around, just outside the normal cloud: the distance ranks them
    # perfectly, while their graph neighbours are normals, so any share of the spread
    # probability costs ranking and the labels only name clusters
    ang = rng.uniform(0, 2 * np.pi, 20)
    scattered = 3.0 * np.c_[np.cos(ang), np.sin(ang)]
    clf = _labeled_graph(normal, scattered)
    z = np.concatenate([scattered[:10], normal[:30]])
    assert auroc(y, clf.score(z, 2.0, 0.5, leave_out=True)[0]) < 1.0
    weight, a = clf.choose_spread_weight(scattered[:10], normal[:30], distance_scale=2.0)
    assert (weight, a) == (0.0, pytest.approx(1.0))
