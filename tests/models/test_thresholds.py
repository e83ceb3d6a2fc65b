"""Threshold maths: false-alarm, pixel and F1 thresholds, and the flip test."""

import numpy as np
import pytest

from models.thresholds import (
    MIN_FLIP_IMAGES,
    f1_threshold,
    false_alarm_threshold,
    flip_looks_normal,
    pixel_threshold,
)


def test_false_alarm_threshold_keeps_false_alarms_near_the_budget():
    # averaged over many small hold-out sets, the rate on fresh normals stays near 1 %
    rng = np.random.default_rng(0)
    fresh = rng.lognormal(0, 0.3, 20000)
    rates = []
    for _ in range(50):
        held_out = rng.lognormal(0, 0.3, 25)
        t = false_alarm_threshold(held_out, 0.01)
        assert (held_out >= t).mean() <= 0.04  # at most one of 25
        rates.append((fresh >= t).mean())
    assert np.mean(rates) <= 0.02


def test_false_alarm_threshold_extrapolates_beyond_the_largest_of_few_scores():
    scores = np.array([1.0, 1.1, 1.2, 1.05, 0.95, 1.15])
    assert false_alarm_threshold(scores, 0.01) > scores.max()


def test_false_alarm_threshold_never_flags_every_normal_image():
    t = false_alarm_threshold(np.full(10, 0.3), 0.01)
    assert t > 0.3


def test_false_alarm_threshold_needs_scores():
    with pytest.raises(ValueError):
        false_alarm_threshold(np.array([]), 0.01)


def test_pixel_threshold_is_the_quantile():
    p = np.arange(1000, dtype=float)
    assert pixel_threshold(p, 0.01) == pytest.approx(np.quantile(p, 0.99))


def test_f1_threshold_separates_clean_classes():
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert f1_threshold(labels, scores) == 0.8


def test_f1_threshold_trades_off_overlap():
    # flagging >= 0.4 catches 3/3 defects with 1 false alarm: F1 = 6/7, the best on offer
    labels = np.array([0, 0, 1, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.4, 0.5, 0.6, 0.7])
    assert f1_threshold(labels, scores) == 0.4


def test_a_flip_is_kept_only_when_flipped_normals_score_no_higher():
    rng = np.random.default_rng(0)
    s = rng.lognormal(0, 0.2, 24)
    same = s * rng.lognormal(0, 0.1, 24)  # a symmetric part: noise either way
    ok, p = flip_looks_normal(s, same)
    assert ok and p > 0.05
    lit_from_one_side = s * rng.lognormal(0.15, 0.1, 24)
    ok, p = flip_looks_normal(s, lit_from_one_side)
    assert not ok and p < 0.01
    assert flip_looks_normal(s, s) == (True, 1.0)
    ok, p = flip_looks_normal(s[:MIN_FLIP_IMAGES - 1], same[:MIN_FLIP_IMAGES - 1])
    assert not ok and np.isnan(p)  # too few images to tell


def test_f1_threshold_takes_the_best_of_unsorted_scores():
    labels = [0, 0, 0, 0, 1, 1, 1]
    scores = [0.1, 0.2, 0.6, 0.3, 0.7, 0.5, 0.4]
    # t=0.4: tp 3, fp 1 -> F1 6/7, the best (t=0.5: 2/3, t=0.7: 1/2, t=0.3: 3/4)
    assert f1_threshold(labels, scores) == pytest.approx(0.4)
    assert f1_threshold([0, 1, 1], [0.1, 0.8, 0.9]) == pytest.approx(0.8)


def test_f1_threshold_needs_a_defect():
    with pytest.raises(ValueError, match="defective"):
        f1_threshold([0, 0], [0.1, 0.2])


def test_f1_threshold_ties_go_to_the_lowest_threshold():
    # >= 0.9 and >= 0.6 both give F1 2/3: the lower one catches both defects
    assert f1_threshold([1, 0, 0, 1], [0.9, 0.8, 0.7, 0.6]) == 0.6
