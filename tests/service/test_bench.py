"""``kensa bench`` on a tiny setup: the AE-L2 baseline, and one whole run (accuracy half, speed
half with a real ``kensa serve`` process) that writes the JSON the README tables come from.

The speed half uses the session's tiny bundle (``tiny_bundle`` in conftest.py) to stay fast.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from models.data import open_dataset
from models.synth_demo import make_demo_dataset
from service.baseline import train_baseline
from service.bench import run_bench
from service.cli import build_parser

pytestmark = pytest.mark.slow

REPORT_KEYS = {"image_auroc", "image_auroc_ci95", "pixel_auroc", "aupro", "f1", "false_alarm_rate", "miss_rate",
               "per_type_auroc", "images", "threshold"}
RATES = ("image_auroc", "pixel_auroc", "aupro", "f1", "false_alarm_rate", "miss_rate")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """16 normal 64x64 washers to train on, 3 normal and one of each defect to test on."""
    root = tmp_path_factory.mktemp("bench") / "data"
    make_demo_dataset(root, seed=0, n_train=16, n_test_good=3, n_per_defect=1, size=64)
    return root


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


def test_bench_writes_both_halves_with_positive_throughputs(tiny_data, tiny_bundle, tmp_path):
    out = tmp_path / "bench.json"
    args = build_parser().parse_args([
        "bench", "--data", str(tiny_data), "--max-minutes", "0.02", "--epochs", "2",
        "--model", str(tiny_bundle), "--sizes", "64", "--seconds", "0.2", "--device", "cpu",
        "--concurrency", "1,4", "--http-batch", "4", "--work-dir", str(tmp_path / "work"),
        "--json", str(out)])

    assert run_bench(args) == 0

    result = json.loads(out.read_text())
    assert {"cpu_model", "cpu_count", "torch", "date"} <= result["machine"].keys()
    [acc] = result["accuracy"]
    for model in ("kensa", "baseline"):
        assert REPORT_KEYS <= acc[model].keys()
        assert acc[model]["training_seconds"] > 0
    [run] = result["speed"]["runs"]
    assert (run["device"], run["size"]) == ("cpu", 64)
    assert run["raw"]["images_per_s"] > 0
    for variant in ("verdict", "pictures"):
        assert run["pipeline"][variant]["best"]["images_per_s"] > 0
    for endpoint in ("inspect", "batch"):
        for clients in ("1", "4"):
            m = run["http"][endpoint][clients]
            assert m["images_per_s"] > 0 and m["errors"] == {}, (endpoint, clients, m)
    assert run["memory"]["server_peak_rss_mb"] > 0
    assert {"pipeline_over_raw", "http_inspect_over_raw", "http_inspect_over_pipeline"} \
        <= run["ratios"].keys()
    assert run["stages_ms_per_image"]["forward"] > 0
