"""A whole benchmark run on a tiny setup: accuracy half, speed half with a real ``kensa serve``
process, and the JSON the README tables come from.

The speed half uses a tiny bundle (``tiny_bundle`` in conftest.py) to stay fast.
"""

from __future__ import annotations

import json

import pytest
from bench_helpers import REPORT_KEYS

from benchmarks.cli import build_parser
from benchmarks.run import run_bench

pytestmark = pytest.mark.slow


def test_bench_writes_both_halves_with_positive_throughputs(tiny_data, tiny_bundle, tmp_path):
    out = tmp_path / "bench.json"
    args = build_parser().parse_args([
        "--data", str(tiny_data), "--max-minutes", "0.02", "--epochs", "2",
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
    runs = result["speed"]["runs"]  # torch and onnx (graphs exported first), side by side
    assert [(r["device"], r["size"], r["runtime"]) for r in runs] == [("cpu", 64, "torch"),
                                                                       ("cpu", 64, "onnx")]
    assert "onnx" in json.loads((tiny_bundle / "bundle.json").read_text())["exports"]
    [ratios] = result["speed"]["runtime_ratios"]
    assert (ratios["runtime"], ratios["over"]) == ("onnx", "torch")
    for figure in ("raw images/s", "pipeline batch-1 p50", "http 4 clients images/s",
                   "http 1 clients p99", "server peak RSS"):
        assert ratios[figure] > 0, figure
    for run in runs:
        check_run(run)


def check_run(run: dict) -> None:
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
