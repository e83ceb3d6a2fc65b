"""Score drift: the two-sample statistic below the threshold, and the false-alarm rate."""

import numpy as np
import pytest
from scipy.stats import ks_2samp

from models.drift import MIN_REFERENCE, false_alarm_rate, score_drift


def lognormal(n: int, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    return np.exp(np.random.default_rng(seed).normal(-0.5 + shift, 0.2, n))


def test_scores_from_the_same_distribution_do_not_drift():
    reference, recent = lognormal(200, seed=1), lognormal(300, seed=2)
    d = score_drift(reference, recent, threshold=1.0)
    assert d.reason is None and 0 <= d.statistic < 0.15
    assert d.p_value > 0.05


def test_normals_that_score_higher_drift_with_a_small_p_value():
    reference, recent = lognormal(200, seed=1), lognormal(300, shift=0.15, seed=2)
    d = score_drift(reference, recent, threshold=1.0)
    assert d.p_value < 1e-4
    assert d.recent_median > d.reference_median


def test_both_samples_are_cut_at_the_threshold():
    reference = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 5.0, 6.0])
    recent = np.tile([0.15, 0.25, 0.35, 0.45, 0.55], 5)
    d = score_drift(reference, recent, threshold=1.0)
    assert (d.reference, d.recent) == (6, 25)
    expected = ks_2samp(reference[:6], recent)
    assert d.statistic == pytest.approx(expected.statistic)
    assert d.p_value == pytest.approx(expected.pvalue)


def test_too_few_scores_give_no_statistic_and_say_why():
    short = score_drift(lognormal(200), lognormal(5), threshold=1.0)
    assert short.statistic is None and short.p_value is None
    assert short.reason == "5 recent normal score(s), fewer than 20"
    empty = score_drift([], lognormal(50), threshold=1.0)
    assert empty.statistic is None and empty.recent == 50
    assert empty.reason == (f"the bundle keeps 0 held-out normal score(s) below its threshold, "
                            f"fewer than {MIN_REFERENCE}")


def test_false_alarm_rate_is_false_alarms_among_reviewed_good():
    assert false_alarm_rate(3, 12) == 0.25
    assert false_alarm_rate(0, 0) is None
