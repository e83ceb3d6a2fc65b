"""The onnx runtime answers as torch does: on real test images (rendered demo parts, and a
few magnetic tiles where the data set is present) the anomaly maps agree within 1e-3 of the
pixel threshold, and every label, score and defect box is the same."""

from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from models.data import open_dataset, read_image
from models.inference import Inspector
from models.networks import providers
from models.synth_demo import make_demo_dataset

TILES = Path(os.environ.get("KENSA_TILES", "/work/shared/data/magnetic_tile"))
MAP_TOLERANCE = 1e-3  # in units of the pixel threshold (the map's normalization)
SCORE_TOLERANCE = 5e-5  # the fused score, about 1 at the threshold: equal to 4 decimals


@pytest.fixture(scope="module")
def runtimes(exported) -> tuple[Inspector, Inspector]:
    return (Inspector.load(exported, device="cpu"),
            Inspector.load(exported, device="cpu", runtime="onnx"))


def with_pixel_threshold(insp: Inspector, pixel: float) -> Inspector:
    out = copy.copy(insp)
    out.cal = dataclasses.replace(insp.cal, pixel=pixel)
    return out


def assert_same_answers(runtimes, images: list[np.ndarray]) -> None:
    first = runtimes[0].inspect(images)
    # the tiny golden bundle marks no pixel of these images: a pixel threshold at the maps'
    # 99th percentile gives boxes to compare
    pixel = float(np.quantile(np.concatenate([r.anomaly_map.ravel() for r in first]), 0.99))
    torch_insp, onnx_insp = (with_pixel_threshold(i, pixel) for i in runtimes)
    scores = sorted(r.score for r in first)
    mid = len(scores) // 2  # between two scores, so that both labels occur
    threshold = (scores[mid - 1] + scores[mid]) / 2
    want = torch_insp.inspect(images, threshold)
    got = onnx_insp.inspect(images, threshold)
    assert {r.label for r in want} == {"normal", "abnormal"}
    for a, b in zip(want, got):
        assert a.label == b.label
        assert abs(a.score - b.score) < SCORE_TOLERANCE
        assert a.reconstruction.label == b.reconstruction.label
        assert a.latent.label == b.latent.label
        off = np.abs(a.anomaly_map - b.anomaly_map).max() / a.pixel_threshold
        assert off < MAP_TOLERANCE
        assert [(r.x, r.y, r.w, r.h, r.area) for r in a.regions] == \
            [(r.x, r.y, r.w, r.h, r.area) for r in b.regions]
    assert sum(len(r.regions) for r in want) > 0  # the boxes compared are not all empty


def test_demo_parts_get_the_same_answers(runtimes, tmp_path):
    make_demo_dataset(tmp_path, seed=3, n_train=1, n_test_good=3, n_per_defect=2, size=56)
    images = [read_image(item.path) for item in open_dataset(tmp_path).test]
    assert_same_answers(runtimes, images)


@pytest.mark.skipif(not (TILES / "test").is_dir(), reason=f"no magnetic tiles at {TILES}")
def test_magnetic_tiles_get_the_same_answers(runtimes):
    """Tiles of many sizes and aspects: the defect graph's dynamic height and width."""
    test = open_dataset(TILES).test
    picked = [item for kind in sorted({i.defect for i in test})
              for item in [i for i in test if i.defect == kind][:2]]
    images = [read_image(item.path) for item in picked]
    assert len({im.shape[:2] for im in images}) > 1
    assert_same_answers(runtimes, images)


def test_onnxruntime_runs_on_the_cpu_unless_cuda_is_there_and_built_in():
    assert providers(["CPUExecutionProvider"], "cpu") == ["CPUExecutionProvider"]
    assert providers(["CPUExecutionProvider"], "cuda") == ["CPUExecutionProvider"]
    assert providers(["CUDAExecutionProvider", "CPUExecutionProvider"], "cuda") == \
        ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers(["CUDAExecutionProvider", "CPUExecutionProvider"], "cpu") == \
        ["CPUExecutionProvider"]
