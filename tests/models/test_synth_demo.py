import json

import cv2
import numpy as np
import pytest

from models.data import open_dataset, read_image, read_mask
from models.errors import DataError
from models.synth_demo import DEFECT_KINDS, MARKER, make_demo_dataset, render_washer

SMALL = {"n_train": 3, "n_test_good": 2, "n_per_defect": 2, "size": 64}


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*.png"))}


def test_layout_and_counts(tmp_path):
    out = tmp_path / "demo"
    summary = make_demo_dataset(out, seed=1, **SMALL)
    assert summary["counts"] == {"train/good": 3, "test/good": 2,
                                 **{f"test/{k}": 2 for k in DEFECT_KINDS}}
    assert summary["reused"] is False and summary["size"] == 64 and summary["seed"] == 1
    assert sorted(p.name for p in (out / "train" / "good").iterdir()) == \
        ["000.png", "001.png", "002.png"]
    ds = open_dataset(out)
    assert ds.layout == "mvtec" and len(ds.train) == 3
    assert ds.summary()["test_by_type"] == {"good": 2, **{k: 2 for k in DEFECT_KINDS}}
    for item in ds.test:
        assert (item.mask_path is None) == item.is_good
    assert read_image(ds.train[0].path).shape == (64, 64, 3)
    assert not (out / ".kensa-demo-staging").exists()


def test_masks_are_binary_image_sized_and_not_empty(tmp_path):
    out = tmp_path / "demo"
    make_demo_dataset(out, seed=2, **SMALL)
    for kind in DEFECT_KINDS:
        for name in ("000", "001"):
            raw = cv2.imread(str(out / "ground_truth" / kind / f"{name}_mask.png"),
                             cv2.IMREAD_UNCHANGED)
            assert raw.dtype == np.uint8 and raw.shape == (64, 64)
            assert set(np.unique(raw).tolist()) == {0, 255}
            assert read_mask(out / "ground_truth" / kind / f"{name}_mask.png").any()


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_defect_masks_lie_on_the_metal(kind):
    for i in range(3):
        img, mask = render_washer(96, np.random.default_rng(i), kind)
        gray = img.mean(axis=2) / 255.0
        assert mask.sum() >= 4
        # The belt is dark (~0.1), the steel bright (~0.5): surface defects sit on steel,
        # a chip's mask is the steel that is gone, so the belt shows through it.
        if kind == "chip":
            assert np.median(gray[mask]) < 0.25
        else:
            assert np.median(gray[mask]) > 0.3


def test_good_part_has_empty_mask_and_looks_like_a_washer():
    img, mask = render_washer(96, np.random.default_rng(0))
    assert img.shape == (96, 96, 3) and img.dtype == np.uint8 and not mask.any()
    gray = img.mean(axis=2)
    # Bright ring, dark hole in the middle, dark belt in the corners.
    assert gray[48, 48 - 25] > 90 and gray[48, 48] < 60 and gray[3, 3] < 60


def test_same_seed_gives_identical_bytes(tmp_path):
    make_demo_dataset(tmp_path / "a", seed=5, **SMALL)
    make_demo_dataset(tmp_path / "b", seed=5, **SMALL)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_different_seed_gives_different_images(tmp_path):
    make_demo_dataset(tmp_path / "a", seed=5, **SMALL)
    make_demo_dataset(tmp_path / "b", seed=6, **SMALL)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a if not k.endswith("_mask.png"))


def test_train_images_differ_from_each_other(tmp_path):
    make_demo_dataset(tmp_path, seed=0, **SMALL)
    imgs = [read_image(p) for p in sorted((tmp_path / "train" / "good").iterdir())]
    for i in range(len(imgs)):
        for j in range(i + 1, len(imgs)):
            assert np.abs(imgs[i] - imgs[j]).mean() > 0.01


def test_second_call_reuses_the_data(tmp_path):
    first = make_demo_dataset(tmp_path, seed=0, **SMALL)
    stamp = (tmp_path / "train" / "good" / "000.png").stat().st_mtime_ns
    second = make_demo_dataset(tmp_path, seed=0, **SMALL)
    assert second["reused"] is True
    assert {k: v for k, v in second.items() if k != "reused"} == \
        {k: v for k, v in first.items() if k != "reused"}
    assert (tmp_path / "train" / "good" / "000.png").stat().st_mtime_ns == stamp
    assert json.loads((tmp_path / MARKER).read_text())["complete"] is True


def test_other_parameters_replace_the_demo_data(tmp_path):
    make_demo_dataset(tmp_path, seed=0, **SMALL)
    summary = make_demo_dataset(tmp_path, seed=0, **{**SMALL, "n_train": 2})
    assert summary["reused"] is False
    assert len(list((tmp_path / "train" / "good").iterdir())) == 2


def test_refuses_to_overwrite_foreign_data(tmp_path):
    (tmp_path / "train" / "good").mkdir(parents=True)
    (tmp_path / "train" / "good" / "mine.png").write_bytes(b"not ours")
    with pytest.raises(DataError, match="did not write"):
        make_demo_dataset(tmp_path, **SMALL)
    assert (tmp_path / "train" / "good" / "mine.png").read_bytes() == b"not ours"


def test_unknown_defect_kind():
    with pytest.raises(ValueError, match="unknown defect"):
        render_washer(64, np.random.default_rng(0), "crack")
