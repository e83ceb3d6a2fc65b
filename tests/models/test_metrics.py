import math

import numpy as np
import pytest

from models.metrics import (
    aupro,
    auroc,
    auroc_gain_interval,
    auroc_interval,
    f1_at,
    per_type_auroc,
    per_type_pixel_auroc,
    pixel_auroc,
    sample_pixels,
)


def _hand_case():
    """Two images, two defect regions, ten normal pixels.

    Image 1 (2x4)            map                 Image 2 (1x5, defect-free)
      A A . B                0.9 0.5 0.8 0.7       0.1 0.1 0.1 0.1 0.1
      . . . .                0.6 0.1 0.1 0.1
    Region A = 2 pixels (0.9, 0.5), region B = 1 pixel (0.7), normal pixels: 0.8, 0.6 and
    eight at 0.1, so 10 in all.
    """
    m1 = np.array([[1, 1, 0, 1], [0, 0, 0, 0]], dtype=bool)
    a1 = np.array([[0.9, 0.5, 0.8, 0.7], [0.6, 0.1, 0.1, 0.1]])
    m2 = np.zeros((1, 5), dtype=bool)
    a2 = np.full((1, 5), 0.1)
    return [m1, m2], [a1, a2]


def test_aupro_hand_computed():
    masks, maps = _hand_case()
    # t=0.9: FPR 0/10 = 0,  PRO = (1/2 + 0)/2 = 0.25
    # t=0.8: FPR 1/10,      PRO = 0.25
    # t=0.7: FPR 0.1,       PRO = (1/2 + 1)/2 = 0.75
    # t=0.6: FPR 0.2,       PRO = 0.75
    # t=0.5: FPR 0.2,       PRO = (1 + 1)/2 = 1.0
    # t=0.1: FPR 1.0,       PRO = 1.0   (so PRO at FPR 0.3 interpolates to 1.0)
    # area over [0, 0.3] = 0.1*0.25 + 0.1*0.75 + 0.1*1.0 = 0.2; normalised 0.2/0.3 = 2/3
    assert aupro(masks, maps, max_fpr=0.3) == pytest.approx(2 / 3)


def test_aupro_hand_computed_interpolates_at_max_fpr():
    masks, maps = _hand_case()
    # Over [0, 0.15]: 0.1*0.25 + 0.05*0.75 = 0.0625; normalised 0.0625/0.15
    assert aupro(masks, maps, max_fpr=0.15) == pytest.approx(0.0625 / 0.15)


def test_aupro_regions_are_eight_connected():
    # Two diagonal pixels form ONE region: half of it found gives PRO 0.5, not (1 + 0)/2 twice.
    mask = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=bool)
    amap = np.array([[1.0, 0, 0], [0, 0.5, 0], [0, 0, 0]])
    # t=1.0: FPR 0, PRO 0.5; t=0.5: FPR 0, PRO 1 -> perfect at FPR 0
    assert aupro([mask], [amap]) == pytest.approx(1.0)
    amap2 = np.array([[1.0, 0.7, 0], [0, 0.5, 0], [0, 0, 0]])
    # t=1: (0, 0.5); t=0.7: FPR 1/7, PRO 0.5; t=0.5: (1/7, 1); area over [0, 0.3]:
    # (1/7)*0.5 + (0.3 - 1/7)*1
    expected = ((1 / 7) * 0.5 + (0.3 - 1 / 7)) / 0.3
    assert aupro([mask], [amap2]) == pytest.approx(expected)


def _random_set(seed=0, n=6, size=32):
    rng = np.random.default_rng(seed)
    masks, maps = [], []
    for i in range(n):
        m = np.zeros((size, size), dtype=bool)
        if i % 3:  # every third image is defect-free
            for _ in range(rng.integers(1, 4)):
                y, x = rng.integers(0, size - 6, 2)
                h, w = rng.integers(1, 6, 2)
                m[y:y + h, x:x + w] = True
        masks.append(m)
        maps.append(rng.random((size, size)) + 0.8 * m * rng.random((size, size)))
    return masks, maps


def test_aupro_perfect_map_is_one():
    masks, _ = _random_set()
    maps = [m.astype(float) for m in masks]
    assert aupro(masks, maps) == pytest.approx(1.0)


def test_aupro_inverted_map_is_zero():
    masks, _ = _random_set()
    maps = [(~m).astype(float) for m in masks]
    assert aupro(masks, maps) == pytest.approx(0.0)


def test_aupro_random_map_is_low():
    masks, _ = _random_set()
    rng = np.random.default_rng(1)
    maps = [rng.random(m.shape) for m in masks]
    # A random map's PRO follows FPR, so the normalised area is near max_fpr / 2.
    assert aupro(masks, maps) < 0.25


def test_aupro_of_sampled_images_stays_near_the_exact_value():
    masks, maps = _random_set(seed=3, n=8, size=64)
    exact = aupro(masks, maps)
    sampled = aupro(masks, maps, max_pixels=8 * 1000)  # 1,000 of each image's 4,096 pixels
    assert 0.2 < exact < 0.99
    assert sampled == pytest.approx(exact, abs=0.02)
    assert pixel_auroc(masks, maps, max_pixels=8 * 1000) == pytest.approx(
        pixel_auroc(masks, maps), abs=0.02)


def test_aupro_without_regions_is_nan():
    masks = [np.zeros((4, 4), dtype=bool)]
    assert math.isnan(aupro(masks, [np.random.default_rng(0).random((4, 4))]))


def test_aupro_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        aupro([np.zeros((4, 4), dtype=bool)], [np.zeros((4, 5))])


def test_auroc_known_value():
    # Pairs (defect, good) ordered correctly: 3 of 4 -> 0.75
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auroc([0, 1], [0.2, 0.9]) == pytest.approx(1.0)
    assert auroc([0, 1], [0.9, 0.2]) == pytest.approx(0.0)


def test_auroc_one_class_is_nan():
    assert math.isnan(auroc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert math.isnan(auroc([0, 0], [0.1, 0.2]))


def test_auroc_interval_brackets_the_figure_and_narrows_with_more_images():
    rng = np.random.default_rng(3)

    def sample(n):  # defects score higher on average: true AUROC about 0.76
        y = np.r_[np.ones(n), np.zeros(n)]
        return y, np.r_[rng.normal(1.0, 1.0, n), rng.normal(0.0, 1.0, n)]

    y, s = sample(30)
    lo, hi = auroc_interval(y, s)
    assert lo < auroc(y, s) < hi
    assert 0.1 < hi - lo < 0.4  # 30 + 30 images: the interval is wide
    y, s = sample(3000)
    lo2, hi2 = auroc_interval(y, s)
    assert lo2 < auroc(y, s) < hi2
    assert hi2 - lo2 < 0.05  # a hundred times the images: a tenth of the width
    assert auroc_interval(y, s) == (lo2, hi2)  # seeded: repeatable


def test_each_bootstrap_draw_is_the_auroc_of_the_resampled_images():
    # one resample, drawn as documented (stratified, seeded), against sklearn on the images it
    # drew, repeated; scores rounded so that ties occur
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(40), np.zeros(25)].astype(bool)
    s = np.round(np.r_[rng.normal(1, 1, 40), rng.normal(0, 1, 25)], 1)
    pos, neg = s[y], s[~y]
    for seed in range(5):
        draw = np.random.default_rng(seed)
        cp = draw.multinomial(len(pos), np.full(len(pos), 1 / len(pos)))
        cn = draw.multinomial(len(neg), np.full(len(neg), 1 / len(neg)))
        ps, ns = np.repeat(pos, cp), np.repeat(neg, cn)
        expected = auroc(np.r_[np.ones(len(ps)), np.zeros(len(ns))], np.r_[ps, ns])
        lo, hi = auroc_interval(y, s, resamples=1, seed=seed)
        assert lo == pytest.approx(expected) and hi == pytest.approx(expected)


def test_auroc_interval_agrees_with_auroc_on_ties_and_edge_cases():
    # perfect separation: every resample is 1.0; all tied: every resample is 0.5
    assert auroc_interval([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == (1.0, 1.0)
    assert auroc_interval([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5]) == (0.5, 0.5)
    assert all(math.isnan(v) for v in auroc_interval([1, 1], [0.1, 0.2]))
    with pytest.raises(ValueError, match="labels"):
        auroc_interval([0, 1, 1], [0.1, 0.2])


def test_pixel_auroc_known_value_over_images_of_different_sizes():
    masks = [np.array([[True, False]]), np.array([[False], [True], [False]])]
    maps = [np.array([[0.9, 0.1]]), np.array([[0.5], [0.3], [0.2]])]
    # defects 0.9, 0.3; normals 0.1, 0.5, 0.2 -> pairs won: 3 + 2 = 5 of 6
    assert pixel_auroc(masks, maps) == pytest.approx(5 / 6)


def test_pixel_auroc_one_class_is_nan():
    assert math.isnan(pixel_auroc([np.zeros((3, 3), dtype=bool)], [np.ones((3, 3))]))


def test_sampled_image_keeps_every_region_and_weighs_pixels_by_what_they_stand_for():
    mask = np.zeros((300, 400), dtype=bool)
    mask[10, 10] = True  # a pin-hole: one pixel of 120,000
    mask[100:300, 200:220] = True  # a wide band: 4,000 pixels
    mask[50, 100:200] = True  # a one-pixel-wide crack
    amap = np.random.default_rng(0).random(mask.shape).astype(np.float32)
    p = sample_pixels(mask, amap, budget=5000)
    assert p.n_regions == 3
    kept = np.bincount(p.region, minlength=4)
    assert kept[1] == 1 and kept[2] >= 64 and kept[3] >= 64  # small regions whole, or >= 64
    assert p.scores.size < 5000 + 3 * 64
    # the weights add up to each region's pixels and to the normal pixels
    sizes = np.bincount(p.region, weights=p.weights, minlength=4)
    assert sizes == pytest.approx([mask.size - mask.sum(), 1, 100, 4000], rel=1e-5)
    # repeatable, and an image within the budget is kept whole
    again = sample_pixels(mask, amap, budget=5000)
    assert np.array_equal(p.scores, again.scores) and np.array_equal(p.region, again.region)
    whole = sample_pixels(mask, amap, budget=mask.size)
    assert whole.scores.size == mask.size and (whole.weights == 1).all()


def test_pixel_auroc_of_a_large_set_keeps_a_tiny_defect():
    masks, maps = [], []
    for i in range(4):
        m = np.zeros((100, 100), dtype=bool)
        if i == 2:
            m[50, 50] = True  # one tiny defect among 40 000 pixels
        masks.append(m)
        maps.append(np.full((100, 100), 0.1) + 0.9 * m)
    assert pixel_auroc(masks, maps, max_pixels=1000) == pytest.approx(1.0)


def test_f1_at_hand_case():
    labels = [0, 0, 0, 0, 1, 1, 1]
    scores = [0.1, 0.2, 0.6, 0.3, 0.7, 0.5, 0.4]
    r = f1_at(labels, scores, 0.45)
    # flagged: 0.6 (good), 0.7, 0.5 (defective) -> tp 2, fp 1, fn 1 (0.4), tn 3
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (2, 1, 1, 3)
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 / 3)
    assert r["false_alarm_rate"] == pytest.approx(1 / 4)
    assert r["miss_rate"] == pytest.approx(1 / 3)


def test_f1_at_threshold_is_inclusive():
    r = f1_at([0, 1], [0.2, 0.5], 0.5)
    assert r["tp"] == 1 and r["f1"] == pytest.approx(1.0) and r["false_alarm_rate"] == 0.0


def test_per_type_auroc():
    types = ["good", "good", "scratch", "scratch", "dent"]
    scores = [0.1, 0.3, 0.9, 0.2, 0.05]
    r = per_type_auroc(types, scores)
    assert list(r) == ["dent", "scratch"]
    assert r["scratch"] == pytest.approx(0.75)  # 0.9 beats both goods, 0.2 beats one: 3 of 4
    assert r["dent"] == pytest.approx(0.0)
    assert math.isnan(per_type_auroc(["dent"], [0.4])["dent"])


def test_per_type_pixel_auroc_judges_each_type_against_the_good_images_only():
    good = np.zeros((2, 2), bool)
    spot = np.array([[True, False], [False, False]])
    masks = [good, spot, spot]
    maps = [np.array([[0, 0], [0, 0.5]]),       # one bright clean pixel on the good image
            np.array([[1.0, 0], [0, 0]]),       # scratch: its defect pixel beats every clean one
            np.array([[0.2, 0], [0, 0]])]       # dent: beats 6 of 7 clean pixels (not the 0.5)
    r = per_type_pixel_auroc(["good", "scratch", "dent"], masks, maps)
    assert list(r) == ["dent", "scratch"]
    assert r["scratch"] == pytest.approx(1.0)
    assert r["dent"] == pytest.approx(6 / 7)  # the scratch image's pixels are not in it
    with pytest.raises(ValueError, match="2 types, 3 masks"):
        per_type_pixel_auroc(["good", "dent"], masks, maps)


def test_auroc_gain_interval_tells_a_real_gain_from_luck():
    rng = np.random.default_rng(4)
    y = np.r_[np.ones(200), np.zeros(200)]
    noise = rng.normal(0, 1, 400)
    base = noise + 0.3 * y  # AUROC about 0.58
    better = noise + 1.5 * y  # the same images, ranked far better
    lo, hi = auroc_gain_interval(y, better, base)
    assert 0 < lo < auroc(y, better) - auroc(y, base) < hi
    assert auroc_gain_interval(y, base, base) == (0.0, 0.0)
    # two defects and two goods, the second ranking perfect and the first half right: the
    # draws that pick one image twice say "no gain", so the interval reaches 0
    lo, hi = auroc_gain_interval([1, 1, 0, 0], [0.9, 0.8, 0.1, 0.2], [0.9, 0.1, 0.8, 0.2])
    assert lo <= 0 < hi
    assert all(math.isnan(v) for v in auroc_gain_interval([1, 1], [0.1, 0.2], [0.2, 0.1]))
