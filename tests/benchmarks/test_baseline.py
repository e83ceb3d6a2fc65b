"""benchmarks.baseline: the AE-L2 baseline trains, calibrates and reports like Kensa."""

from __future__ import annotations

import math

import pytest
from bench_helpers import REPORT_KEYS

from benchmarks.baseline import train_baseline
from models.data import open_dataset

pytestmark = pytest.mark.slow

RATES = ("image_auroc", "pixel_auroc", "aupro", "f1", "false_alarm_rate", "miss_rate")


def test_baseline_trains_and_reports_finite_metrics(tiny_data):
    base = train_baseline(tiny_data, minutes=0.02, image_size=32, device="cpu", epochs=3)
    report = base.evaluate(open_dataset(tiny_data).test)
    assert REPORT_KEYS <= report.keys()
    assert report["images"] == 7
    for key in RATES:
        assert 0.0 <= report[key] <= 1.0, key
    assert set(report["per_type_pixel_auroc"]) == set(report["per_type_auroc"]) == {
        "chip", "dent", "scratch", "stain"}
    assert all(0.0 <= v <= 1.0 for v in report["per_type_pixel_auroc"].values())
    assert math.isfinite(base.image_threshold) and base.image_threshold > 0
    assert math.isfinite(base.pixel_threshold) and base.pixel_threshold > 0
