"""The conditional defect generator (models.cutouts, models.generator, models.generate):
cut-outs of labeled defects, a few training steps, pasting, a bundle that ships it, and the
MVTec folder ``kensa generate`` writes, read back through the normal reader."""

from __future__ import annotations

import csv
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from tiny import TINY_MODEL, TINY_TRAINING

from models.bundle import load_bundle, load_generator
from models.cutouts import cutouts
from models.data import RegionSpec, open_dataset, read_image, read_mask
from models.errors import BundleError, DataError
from models.fit import Progress
from models.generate import generate_dataset
from models.generator import (
    ALPHA_FLOOR,
    PATCH,
    ConditionalGenerator,
    fit_generator,
    paste,
    sample,
)
from models.positives import positive
from models.train import train

CPU = torch.device("cpu")


def crack_image(rng: np.random.Generator, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A textured gray square with a dark bar: ``(image (S, S, 1), mask (S, S) bool)``."""
    image = (0.6 + 0.05 * rng.standard_normal((size, size, 1))).astype(np.float32)
    mask = np.zeros((size, size), bool)
    y, x = rng.integers(8, size - 16, 2)
    mask[y:y + 3, x:x + 12] = True
    image[mask] = 0.15
    return np.clip(image, 0, 1), mask


@pytest.fixture
def labeled(tmp_path):
    """Two labeled defect types, one with masks, one with boxes, one with a name alone."""
    rng = np.random.default_rng(0)
    cfg = replace(TINY_MODEL, image_size=48, keep_aspect=False)
    out = []
    for i in range(3):
        image, mask = crack_image(rng)
        path = tmp_path / f"m{i}.png"
        import cv2

        cv2.imwrite(str(path), (mask * 255).astype(np.uint8))
        out.append(positive(image, "crack", RegionSpec("row", mask=path), cfg))
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1)
        out.append(positive(image, "scuff", RegionSpec("row", boxes=(box,)), cfg))
        out.append(positive(image, "dent", None, cfg))
    return out


def test_masks_boxes_and_bare_names_all_give_cutouts_around_the_defect(labeled):
    cuts = cutouts(labeled, PATCH)
    assert sorted({c.label for c in cuts}) == ["crack", "dent", "scuff"]
    for c in cuts:
        assert c.image.shape == (PATCH, PATCH, 1) and c.alpha.shape == (PATCH, PATCH)
        assert 0 <= c.alpha.min() and c.alpha.max() <= 1 and c.alpha.max() > 0.5
        # the dark bar is inside the alpha: darker there than in the context
        inside = c.image[..., 0][c.alpha > 0.5].mean()
        assert inside < c.image[..., 0][c.alpha < 0.1].mean() - 0.2
        assert c.size[0] >= 12  # the bar's length and its margin


def test_a_few_steps_give_patches_of_every_type_with_finite_losses(labeled):
    cuts = cutouts(labeled, PATCH)
    gen, history = fit_generator(cuts, replace(TINY_TRAINING, epochs=1), CPU, 0.0,
                                 Progress(False))
    assert history["steps"] == math.ceil(9 / TINY_TRAINING.batch_size)
    assert history["cutouts"] == {"crack": 3, "dent": 3, "scuff": 3}
    assert all(math.isfinite(c["loss"]) for c in history["curve"])
    out = gen(torch.randn(5, gen.cfg.z_dim), torch.tensor([0, 1, 2, 0, 1]))
    assert out.shape == (5, 2, PATCH, PATCH) and bool(torch.isfinite(out).all())
    patches, alphas, sizes = sample(gen, "scuff", 4, seed=1)
    assert patches.shape == (4, PATCH, PATCH, 1) and alphas.shape == (4, PATCH, PATCH)
    assert sizes.shape == (4, 2)
    again = sample(gen, "scuff", 4, seed=1)
    assert np.array_equal(patches, again[0])  # seeded


def test_no_region_no_generator():
    with pytest.raises(DataError, match="no defect region"):
        fit_generator([], TINY_TRAINING, CPU, 0.0, Progress(False))


def test_a_paste_changes_the_image_only_under_its_alpha_and_masks_what_shows():
    image = np.full((40, 50, 3), 0.5, np.float32)
    patch = np.full((PATCH, PATCH, 1), 0.5, np.float32)
    patch[12:20, 4:28] = 0.0  # a dark bar in an even context
    alpha = np.zeros((PATCH, PATCH), np.float32)
    alpha[12:20, 4:28] = 1.0
    out, mask = paste(np.random.default_rng(0), image, patch, alpha, (16, 16))
    assert out.shape == image.shape and mask.shape == (40, 50)
    assert 0 < mask.sum() <= 16 * 16
    changed = np.abs(out - image).max(axis=2) > 1e-6
    ys, xs = np.nonzero(changed)
    assert np.ptp(ys) < 16 and np.ptp(xs) < 16  # inside the 16 x 16 square pasted
    assert (changed | (mask == 0)).all()  # every masked pixel changed
    assert out[mask > 0].mean() < 0.1  # the bar, its context matched to the part


def test_a_haze_of_low_alpha_pastes_nothing_of_the_patch_context():
    image = np.full((40, 40, 1), 0.5, np.float32)
    patch = np.zeros((PATCH, PATCH, 1), np.float32)  # another part's dark surface
    alpha = np.full((PATCH, PATCH), ALPHA_FLOOR, np.float32)  # an unsure generator
    out, mask = paste(np.random.default_rng(0), image, patch, alpha, (20, 20))
    assert np.array_equal(out, image) and mask.sum() == 0


def write_labels(root, path, k: int = 1):
    """A labels CSV: ``k`` test images of each demo type, with their masks."""
    ds = open_dataset(root)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "regions"])
        for kind in sorted({it.defect for it in ds.test if not it.is_good}):
            for it in [it for it in ds.test if it.defect == kind][:k]:
                w.writerow([str(it.path), kind, str(it.mask_path)])
    return path


@pytest.fixture(scope="module")
def generator_bundle(tmp_path_factory):
    from models.synth_demo import make_demo_dataset

    root = tmp_path_factory.mktemp("gen")
    make_demo_dataset(root / "data", seed=0, n_train=16, n_test_good=2, n_per_defect=2,
                      size=48)
    labels = write_labels(root / "data", root / "labels.csv")
    tcfg = replace(TINY_TRAINING, synth="learned", adversarial=True,
                   extra={"labeled_defects": "generator"})
    metrics = train(root / "data", root / "bundle", TINY_MODEL, tcfg, labels=labels,
                    device="cpu", progress=False)
    return root, metrics


def test_a_bundle_trained_with_learned_defects_ships_its_generator(generator_bundle):
    root, metrics = generator_bundle
    training = metrics["training"]
    assert training["generator"]["cutouts"] == {"chip": 1, "dent": 1, "scratch": 1, "stain": 1}
    assert training["autoencoder"]["adversarial"]["weight"] > 0
    bundle = load_bundle(root / "bundle")
    assert bundle.info["train_config"]["synth"] == "learned"
    assert bundle.info["data"]["labeled_defects_used_by"] == "generator"
    assert bundle.latent.classes == ["good"]  # the labels trained the generator alone
    gen = load_generator(root / "bundle")
    assert isinstance(gen, ConditionalGenerator)
    assert gen.cfg.types == ("chip", "dent", "scratch", "stain")


def test_generate_writes_an_mvtec_folder_the_normal_reader_and_eval_read(generator_bundle,
                                                                        tmp_path):
    root, _ = generator_bundle
    out = tmp_path / "made"
    summary = generate_dataset(root / "bundle", root / "data", "scratch", 5, out, seed=2)
    assert summary["n"] == 5
    ds = open_dataset(out)
    made = [it for it in ds.test if it.defect == "scratch"]
    assert len(made) == 5 and all(it.mask_path is not None for it in made)
    assert 1 <= len([it for it in ds.test if it.is_good]) <= 4  # the held-out normals
    for it in made:
        image, mask = read_image(it.path), read_mask(it.mask_path)
        assert image.shape[:2] == mask.shape == (48, 48)
    assert sum(read_mask(it.mask_path).sum() > 0 for it in made) >= 3
    from models.evaluate import evaluate
    from models.inference import Inspector

    report = evaluate(Inspector.load(root / "bundle", device="cpu"), ds.test)
    assert report["defective_images"] == 5 and 0 <= report["image_auroc"] <= 1


def test_generate_refuses_an_unknown_type_and_a_bundle_without_a_generator(
        generator_bundle, tiny_bundle, tmp_path):
    root, _ = generator_bundle
    with pytest.raises(DataError, match="not 'crack'"):
        generate_dataset(root / "bundle", root / "data", "crack", 2, tmp_path / "x")
    with pytest.raises(BundleError, match="no defect generator"):
        generate_dataset(tiny_bundle, root / "data", "scratch", 2, tmp_path / "y")


def test_learned_synthesis_without_labeled_defects_is_refused_before_training(tmp_path):
    from models.synth_demo import make_demo_dataset

    make_demo_dataset(tmp_path / "d", seed=0, n_train=8, n_test_good=1, n_per_defect=1,
                      size=32)
    with pytest.raises(DataError, match="learns from labeled defects"):
        train(tmp_path / "d", tmp_path / "b", TINY_MODEL,
              replace(TINY_TRAINING, synth="learned"), device="cpu", progress=False)
