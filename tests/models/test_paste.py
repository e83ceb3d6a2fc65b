"""Labeled defects pasted onto training normals (``--labeled-defects paste``): the regions read
from a map, the patches cut around them, and the pasting itself."""

from __future__ import annotations

import numpy as np
import torch
from tiny import TINY_MODEL

from models.autoencoder import DefectModel
from models.data import RegionSpec
from models.fit import with_defects
from models.paste import (
    MAX_REGION,
    PASTE_FROM,
    PasteSource,
    paste,
    patch_of,
    peak_region,
    read_region,
)
from models.positives import positive

CFG = TINY_MODEL.__class__(**{**TINY_MODEL.to_dict(), "keep_aspect": False, "channels": 1})


def spot_image() -> tuple[np.ndarray, np.ndarray]:
    """A flat grey 32 x 32 image with a dark 4 x 4 spot, and the spot's mask."""
    image = np.full((32, 32, 1), 0.6, np.float32)
    image[10:14, 20:24] = 0.1
    return image, image[..., 0] < 0.3


def test_the_region_is_the_connected_top_of_the_map_around_its_peak():
    amap = np.zeros((32, 32), np.float32)
    amap[10:14, 20:24] = 1.0
    amap[25:27, 2:4] = 0.9  # high too, but not connected to the peak
    amap[12, 24] = 0.6  # connected, above half the peak
    region = peak_region(amap, np.ones_like(amap, bool))
    assert region[10:14, 20:24].all() and region[12, 24] and not region[25:27, 2:4].any()
    assert region.sum() == 17
    # a region may not cover more than MAX_REGION of its bag: its highest pixels are kept
    ramp = np.tile(np.linspace(0.6, 1.0, 32, dtype=np.float32), (32, 1))
    wide = peak_region(ramp, np.ones_like(ramp, bool))
    assert wide.sum() <= MAX_REGION * ramp.size and wide[:, -1].all()


def test_in_a_box_the_region_is_read_inside_the_box_only():
    image, _ = spot_image()
    p = positive(image, "pit", RegionSpec("row", boxes=((0, 0, 16, 16),)), CFG)
    amap = np.zeros((32, 32), np.float32)
    amap[10:14, 20:24] = 1.0  # the map's peak is outside the box
    amap[4:6, 4:6] = 0.5
    region = read_region(p, amap)
    assert region[4:6, 4:6].all() and region.sum() == 4


def test_a_pasted_patch_changes_the_window_only_around_it_and_masks_only_its_region():
    image, spot = spot_image()
    p = positive(image, "pit", None, CFG)
    patch = patch_of(p, spot)
    assert patch.image.shape[:2] == patch.alpha.shape == (10, 10)  # 4 + 2 * MARGIN
    window = np.full((32, 32, 1), 0.5, np.float32)
    out, mask = paste(np.random.default_rng(0), window, patch)
    changed = np.abs(out - window)[..., 0] > 1e-6
    assert 0 < mask.sum() <= 16 and (changed[mask > 0]).all()
    ys, xs = np.nonzero(changed)
    assert ys.max() - ys.min() < 10 and xs.max() - xs.min() < 10  # within the patch
    # the surface around the spot is matched to the window's brightness: only the spot shows
    assert np.abs(out - window)[..., 0][~(mask > 0)].max() < 0.15


def test_image_labels_paste_only_once_the_map_is_read_and_masks_at_once():
    image, spot = spot_image()
    model = DefectModel(CFG)
    masked = positive(image, "pit", None, CFG)
    masked.how, masked.target = "mask", spot.astype(np.float32)
    source = PasteSource([masked])
    assert len(source.patches) == 1 and not source.needs_map
    source = PasteSource([positive(image, "pit", None, CFG)])
    source.update(model, PASTE_FROM / 2, torch.device("cpu"))
    assert source.patches == []
    source.update(model, PASTE_FROM, torch.device("cpu"))
    assert len(source.patches) == 1 and source.read_at == PASTE_FROM
    # the windows that get a defect get a pasted one PASTE_SHARE of the time: a change within
    # the masked patch's 10 x 10 pixels, masked on at most its 16 spot pixels
    clean = np.full((200, 32, 32, 1), 0.5, np.float32)
    noisy, masks = with_defects(np.random.default_rng(1), clean, [], 1.0,
                                pasting=(PasteSource([masked]), np.random.default_rng(2)))
    small = 0
    for j in range(200):
        ys, xs = np.nonzero(np.abs(noisy[j] - clean[j])[..., 0] > 1e-6)
        small += int(len(ys) > 0 and np.ptp(ys) < 10 and np.ptp(xs) < 10
                     and 0 < masks[j].sum() <= 16)
    assert 70 < small < 150, small
    # without a source the windows are what they were before pasting existed
    plain, _ = with_defects(np.random.default_rng(1), clean, [], 1.0)
    again, _ = with_defects(np.random.default_rng(1), clean, [], 1.0, pasting=None)
    np.testing.assert_array_equal(again, plain)
