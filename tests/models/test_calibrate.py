"""The calibration procedure: flip settings, and what too few held-out normals say."""

import numpy as np
import pytest
from texture_helpers import SIZE, texture

from models.calibrate import calibrate, flip_names
from models.config import TrainConfig
from models.errors import DataError
from models.inference import Inspector


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


def test_flips_are_auto_none_or_named():
    assert flip_names("auto") is None and flip_names("none") == []
    assert flip_names("hv, h,h") == ["hv", "h"]
    for bad in ("x", "h,y", ""):
        with pytest.raises(DataError, match="auto, none or a comma list of h, v, hv"):
            flip_names(bad)
