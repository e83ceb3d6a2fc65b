"""benchmarks.stage_profile: the stages it times are the ones each runtime's path takes."""

from __future__ import annotations

import shutil

from benchmarks.stage_profile import profile
from models import maps
from models.exports import export_onnx


def test_torch_times_the_networks_and_the_maths_onnx_one_graph_call(tiny_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    export_onnx(bundle)
    on_torch = profile(bundle, "torch", batch=2, calls=1)
    on_onnx = profile(bundle, "onnx", batch=2, calls=1)
    for stage in ("networks: defect (full + coarse view)", "residual (SSIM + L1)", "blur"):
        assert on_torch[stage] > 0 and stage not in on_onnx
    assert on_onnx["maps graph (networks, residual, blur, VAE)"] > 0
    assert maps.residual_map.__module__ == "models.maps"  # the timers are taken off again
    for timings in (on_torch, on_onnx):
        assert timings["inspect, all"] >= timings["raw_scores (all model-resolution maths)"]
        assert timings["decode"] > 0 and timings["regions and mask"] >= 0
