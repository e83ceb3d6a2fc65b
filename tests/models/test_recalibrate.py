"""Recalibration: only the image threshold moves, by the bundle's rule, on held-out plus
reviewed scores."""

import dataclasses

import numpy as np
import pytest

from models.calibrate import image_threshold
from models.config import TrainConfig
from models.errors import DataError
from models.recalibrate import Confirmed, recalibrated, train_config
from models.thresholds import Calibration, f1_threshold

HOLDOUT = np.exp(np.random.default_rng(0).normal(-0.2, 0.05, 40))
CAL = Calibration(reconstruction=0.7, latent=12.0, image=1.0, pixel=0.6, flips=["h"])


def confirmed(good=(), defects=()) -> Confirmed:
    return Confirmed(np.array(good, float), np.array(defects, float))


def test_false_alarm_rule_is_the_budget_on_held_out_plus_reviewed_good():
    good = [1.05, 1.1, 1.2, 1.15]
    cal, rule = recalibrated(CAL, HOLDOUT, confirmed(good), TrainConfig(false_alarm_rate=0.05),
                             "false-alarm")
    expected, _ = image_threshold(np.r_[HOLDOUT, good], TrainConfig(false_alarm_rate=0.05))
    assert cal.image == expected
    assert cal.image > image_threshold(HOLDOUT, TrainConfig(false_alarm_rate=0.05))[0]
    assert rule.startswith("false-alarm budget 0.05 on 40 held-out normals + 4 reviewed good")
    assert rule.endswith("(recalibrated)")


def test_everything_but_the_image_threshold_stays():
    cal, _ = recalibrated(CAL, HOLDOUT, confirmed([1.3]), TrainConfig(), "false-alarm")
    assert dataclasses.replace(cal, image=CAL.image) == CAL
    assert CAL.image == 1.0  # the bundle's own record is not changed


def test_f1_rule_weighs_the_reviewed_defects_against_every_normal():
    good, defects = [0.95, 1.0], [1.2, 1.4, 0.9]
    cal, rule = recalibrated(CAL, HOLDOUT, confirmed(good, defects), TrainConfig(), "f1")
    normals = np.r_[HOLDOUT, good]
    assert cal.image == f1_threshold(np.r_[np.zeros(normals.size), np.ones(3)],
                                     np.r_[normals, defects])
    assert rule == "F1-optimal on 3 reviewed defects + 40 held-out normals + 2 reviewed good " \
                   "(recalibrated)"


@pytest.mark.parametrize(("holdout", "rule", "says"), [
    (HOLDOUT, "f1", "--threshold-rule f1 needs reviewed defects"),
    ([], "false-alarm", "keeps no held-out normal scores"),
    (HOLDOUT, "median", "threshold rule 'median': use one of false-alarm, f1"),
])
def test_what_cannot_be_recalibrated_is_refused_saying_why(holdout, rule, says):
    with pytest.raises(DataError, match=says):
        recalibrated(CAL, holdout, confirmed([1.0]), TrainConfig(), rule)


def test_train_config_comes_from_bundle_json_with_defaults_for_what_it_lacks():
    tcfg = train_config({"train_config": {"false_alarm_rate": 0.02, "retired_field": 1,
                                          "extra": {"threshold_rule": "f1"}}})
    assert (tcfg.false_alarm_rate, tcfg.extra, tcfg.seed) == (0.02, {"threshold_rule": "f1"}, 0)
    assert train_config({}) == TrainConfig()
