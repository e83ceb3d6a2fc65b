"""The latent classifier: the normal cluster, Mahalanobis distance, label spreading."""

import json

import numpy as np
import pytest
from tiny import TINY_MODEL

from models.config import TrainConfig
from models.inference import Inspector
from models.latent import NEIGHBOURS, SPREAD_WEIGHTS, LatentClassifier, _neighbour_probabilities
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


def test_many_images_are_scored_in_chunks_with_the_same_result():
    # 2,500 images cross two chunk boundaries (1,024 images a chunk): distances and descriptors
    # match the whole-array arithmetic, and no images give empty arrays of the right width
    rng = np.random.default_rng(4)
    z = rng.normal(0, 1, (2500, 5, 3)).astype(np.float32)
    clf = LatentClassifier.fit(z[:300])
    w = clf.whitened(z)
    np.testing.assert_allclose(clf.cell_distances(z), np.linalg.norm(w, axis=2), rtol=1e-6)
    worst = np.linalg.norm(w, axis=2).argmax(1)
    np.testing.assert_allclose(clf.descriptor(z), w[np.arange(len(z)), worst], rtol=1e-6)
    assert clf.cell_distances(z[:0]).shape == (0, 5) and clf.descriptor(z[:0]).shape == (0, 3)


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
    metrics = train(texture_data, out, TINY_MODEL, TrainConfig(epochs=2, max_minutes=0.1),
                    labels=labels, device="cpu", progress=False)
    info = json.loads((out / "bundle.json").read_text())
    assert info["latent"] == {"classes": ["good", "pit"], "semi_supervised": True}
    assert info["data"]["labeled_images"] == 3
    # the image labeled good is not a training image: it trains with the normals
    assert info["data"]["labeled_good_trained"] == 1
    # labeled images are not evaluated on
    assert metrics["evaluation"]["images"] == 12 - 3
    # auto fusion: labeled defects may move the weight of the weighted rule (by more than
    # luck), and say how it was chosen
    assert info["fusion"]["rule"] == "weighted" and 0.5 <= info["fusion"]["weight"] <= 1.0
    assert info["fusion"]["chosen_by"].startswith(
        "auto: the default weight 0.8 kept: no other ranked 2 labeled defects"
        if info["fusion"]["weight"] == 0.8 else
        f"auto: weight {info['fusion']['weight']:g} ranked 2 labeled defects")
    # the labels' share of the latent score was chosen on the labeled images too
    w = info["calibration"]["latent_spread"]
    assert w in SPREAD_WEIGHTS
    assert metrics["calibration"]["latent_rule"].startswith(f"spread weight {w:g} ranked 2 ")


def test_auto_fusion_without_labels_mixes_both_scores_at_the_configured_weight(texture_data,
                                                                              tmp_path):
    train(texture_data, tmp_path / "b", TINY_MODEL,
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


LABELED = np.r_[np.arange(30), np.arange(100, 110)]  # graph points with a label


def test_labels_earn_a_share_of_the_latent_score_only_where_they_rank_defects_better():
    rng = np.random.default_rng(6)
    normal = rng.normal(0, 1, (300, 2))
    fresh = rng.normal(0, 1, (40, 2))  # normal images outside the graph
    # a tight defect cluster no farther out than ordinary normals: the distance alone ranks
    # it poorly, the labels find it
    tight = rng.normal([1.5, 0.0], 0.05, (20, 2))
    clf = _labeled_graph(normal, tight)
    y = np.r_[np.zeros(30, int), np.ones(10, int), np.zeros(40, int)]
    z = np.concatenate([normal[:30], tight[:10], fresh])
    assert auroc(y, clf.distance(z)) < 0.8
    weight, a = clf.choose_spread_weight(LABELED, fresh, distance_scale=2.0)
    assert (weight, a) == (0.5, pytest.approx(1.0))
    # defects scattered all around, just outside the normal cloud: the distance ranks them
    # perfectly, while their graph neighbours are normals, so any share of the spread
    # probability costs ranking and the labels only name clusters
    ang = rng.uniform(0, 2 * np.pi, 20)
    scattered = 3.0 * np.c_[np.cos(ang), np.sin(ang)]
    clf = _labeled_graph(normal, scattered)
    z = np.concatenate([normal[:30], scattered[:10], fresh])
    assert auroc(y, clf.score(z, 2.0, 0.5)[0]) < 1.0
    weight, a = clf.choose_spread_weight(LABELED, fresh, distance_scale=2.0)
    assert (weight, a) == (0.0, pytest.approx(1.0))


def test_a_labeled_image_is_checked_as_if_nobody_had_labeled_it():
    # ten small clumps far out, each one labeled point amid six unlabeled ones: spreading
    # passes each label to its own clump only, so a clump's label says nothing about the
    # other clumps. Leaving just the point itself out of its neighbour vote still hears its
    # label through the six it was passed to; hiding the label and re-spreading does not.
    rng = np.random.default_rng(8)
    normal = rng.normal(0, 1, (200, 2))
    centres = rng.normal(0, 1, (10, 2))
    centres = 30 * centres / np.linalg.norm(centres, axis=1, keepdims=True)
    clumps = (centres[:, None, :] + rng.normal(0, 0.1, (10, 7, 2))).reshape(70, 2)
    clf = LatentClassifier.fit(normal[100:])
    labels = ["good"] * 50 + [None] * 50 + ["pit" if i % 7 == 0 else None for i in range(70)]
    clf.spread(np.concatenate([normal[:100], clumps]), labels)
    index = np.flatnonzero(clf.graph_labels >= 0)
    pit = clf.graph_labels[index] == 1
    assert pit.sum() == 10
    # with their labels in the graph, the clumps are pits
    assert clf.class_probabilities(clumps[::7])[:, 1].min() > 0.9
    # hidden, a clump with no other pit label nearby is nothing the labels know
    held = clf.held_out_probabilities(index)
    assert held[pit, 1].max() < 0.5
    # labeled goods, hidden in turn, are still good: they sit among other good labels
    assert held[~pit, 0].min() > 0.9
    np.testing.assert_array_equal(held, clf.held_out_probabilities(index))  # seeded


def test_no_share_for_labels_on_a_handful_of_images():
    # with its labels hidden in turn, the spread probability ranks 4 labeled defects above 2
    # labeled goods perfectly and the distance only half right, but 8 pairs cannot show that
    # this is more than luck: weight 0
    rng = np.random.default_rng(9)
    normal = rng.normal(0, 1, (300, 2))
    tight = rng.normal([1.5, 0.0], 0.05, (20, 2))
    clf = LatentClassifier.fit(normal[100:])
    graph = np.concatenate([normal[:100], tight])
    labels = [None] * 120
    labels[0] = labels[1] = "good"
    for i in (100, 101, 102, 103):
        labels[i] = "dent"
    clf.spread(graph, labels)
    index = np.flatnonzero(clf.graph_labels >= 0)
    y = (clf.graph_labels[index] > 0).astype(int)
    d = clf.distance(graph[index])
    assert auroc(y, clf.held_out_scores(index, 2.0, 0.5)) > auroc(y, d)
    assert clf.choose_spread_weight(index, graph[:0], distance_scale=2.0)[0] == 0.0


def test_graph_labels_survive_the_state_round_trip():
    clf = LatentClassifier.fit(np.random.default_rng(10).normal(0, 1, (50, 2)))
    clf.spread(np.random.default_rng(11).normal(0, 1, (20, 2)),
               ["good", "dent"] + [None] * 18)
    again = LatentClassifier.from_state(clf.state(), clf.classes)
    np.testing.assert_array_equal(again.graph_labels, [0, 1] + [-1] * 18)


def _two_islands(rng):
    """A labeled cluster near the origin and an island far off that no label reaches."""
    near = rng.normal(0, 1, (40, 3))
    island = rng.normal(50, 1, (30, 3))
    clf = LatentClassifier.fit(near)
    labels = [None] * 70
    labels[0], labels[1], labels[2] = "good", "crack", "crack"
    clf.spread(np.concatenate([near, island]), labels)
    return clf, island


def test_an_image_no_label_reaches_is_judged_on_its_distance_not_called_a_defect():
    rng = np.random.default_rng(5)
    clf, island = _two_islands(rng)
    probe = island[:4] + rng.normal(0, 0.1, (4, 3))
    assert not clf.class_probabilities(probe).any()  # its neighbours carry no label mass
    for w in SPREAD_WEIGHTS:
        score, dist, clusters = clf.score(probe, distance_scale=3.0, spread_weight=w)
        # the spread term falls back to the squashed distance: the same score at every weight
        assert score == pytest.approx(dist / (dist + 3.0), rel=1e-6)
        assert clusters == [""] * 4  # no class named by an argmax over zeros


def test_unreached_images_get_a_cluster_from_the_latent_threshold(texture_bundle, texture_data):
    bundle, _ = texture_bundle
    insp = Inspector.load(bundle, "cpu")
    t = insp.cal.latent
    clf, _ = _two_islands(np.random.default_rng(6))
    insp.latent = clf
    assert insp.latent_verdict(2 * t, 9.0, "").cluster == "anomaly"
    assert insp.latent_verdict(0.5 * t, 1.0, "").cluster == "good"
    assert insp.latent_verdict(2 * t, 9.0, "crack").cluster == "crack"


def test_neighbour_probabilities_in_chunks_match_the_direct_computation():
    rng = np.random.default_rng(7)
    x, points = rng.normal(0, 1, (50, 6)), rng.normal(0, 1, (300, 6))
    dist = rng.dirichlet(np.ones(3), 300).astype(np.float32)
    d2 = ((x[:, None] - points[None]) ** 2).sum(-1)
    nearest = np.argsort(d2, axis=1)[:, :NEIGHBOURS]
    want = dist[nearest].mean(1)
    want /= want.sum(1, keepdims=True)
    got = _neighbour_probabilities(x, points, dist, chunk=16)
    assert got == pytest.approx(want, abs=1e-5)


def test_the_classifier_names_types_from_a_few_labels_and_survives_the_round_trip():
    rng = np.random.default_rng(12)
    good = rng.normal(0, 1, (60, 3))
    crack = rng.normal([6, 0, 0], 0.5, (20, 3))
    dent = rng.normal([0, -6, 0], 0.5, (20, 3))
    clf = LatentClassifier.fit(good[:40])
    labels = ["good"] * 60 + ["crack"] * 3 + [None] * 17 + ["dent"] * 3 + [None] * 17
    clf.spread(np.concatenate([good, crack, dent]), labels, method="classifier")
    assert clf.uses_classifier and clf.classes == ["good", "crack", "dent"]
    probe = np.concatenate([rng.normal(0, 1, (5, 3)), rng.normal([6, 0, 0], 0.5, (5, 3)),
                            rng.normal([0, -6, 0], 0.5, (5, 3))])
    _, _, clusters = clf.score(probe, distance_scale=3.0)
    assert clusters == ["good"] * 5 + ["crack"] * 5 + ["dent"] * 5
    again = LatentClassifier.from_state(clf.state(), clf.classes)
    np.testing.assert_allclose(again.class_probabilities(probe), clf.class_probabilities(probe))
    # label spreading keeps the state it had: no classifier arrays in it
    clf.spread(np.concatenate([good, crack, dent]), labels)
    assert not clf.uses_classifier and "centres" not in clf.state()


def test_the_classifier_judges_a_labeled_point_with_its_label_hidden():
    # ten labeled pits in a clump, one labeled dent alone: hidden in turn, a pit is still
    # a pit (the other nine make the centre), the dent is nothing its class knows
    rng = np.random.default_rng(13)
    normal = rng.normal(0, 1, (200, 2))
    pits = rng.normal([8, 0], 0.5, (10, 2))
    dent = np.array([[0.0, 8.0]])
    clf = LatentClassifier.fit(normal[100:])
    clf.spread(np.concatenate([normal[:100], pits, dent]),
               ["good"] * 100 + ["pit"] * 10 + ["dent"], method="classifier")
    assert clf.classes == ["good", "dent", "pit"]
    index = np.flatnonzero(clf.graph_labels >= 0)
    held = clf.held_out_probabilities(index)
    assert held[100:110, 2].min() > 0.9 and held[:100, 0].mean() > 0.9
    assert clf.class_probabilities(dent)[0, 1] > 0.5  # its own label in the centre
    assert held[110, 1] == 0.0  # hidden, its class has no point left
