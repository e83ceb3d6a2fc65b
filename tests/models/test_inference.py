"""The Inspector's maps: the latent cells in the anomaly map, test-time flips, and bundles
from before either existed."""

from dataclasses import replace

import numpy as np
from texture_helpers import far_cell_codes

from models.config import ModelConfig
from models.device import to_device
from models.inference import Inspector
from models.preprocess import prepare_for
from models.thresholds import Calibration
from models.vae import grid_cells


def test_a_model_config_without_coarse_scale_loads_without_the_coarse_view():
    old = ModelConfig().to_dict()
    del old["coarse_scale"]
    assert ModelConfig.from_dict(old).coarse_scale == 0.0
    assert ModelConfig.from_dict(ModelConfig().to_dict()).coarse_scale == 0.5


def test_a_model_config_without_map_grid_loads_with_one_grid():
    # bundles from before the map grid drew their map from the verdict grid's cells
    old = ModelConfig(latent_grid=8).to_dict()
    del old["map_grid"]
    assert ModelConfig.from_dict(old).map_grid == 8


def test_a_far_latent_cell_lights_its_part_of_the_map_and_nothing_else(texture_bundle):
    insp = Inspector.load(texture_bundle[0], "cpu")
    cal, g, s = insp.cal, insp.cfg.map_grid, insp.cfg.image_size
    assert cal.map_scale > 0 and insp.cfg.latent_map
    verdict_cells, map_cells = grid_cells(insp.cfg)
    assert map_cells == g * g and g != insp.cfg.latent_grid and cal.map_distance > 0
    maps = np.full((1, s, s), 0.1 * cal.map_scale, np.float32)
    row, col, k = 2, 5, s // g  # cell (2, 5) covers rows 2k..3k, columns 5k..6k
    cell = verdict_cells + row * g + col  # the map grid's cells follow the verdict grid's
    mu = far_cell_codes(insp.latent, cell, 3 * cal.map_distance)
    np.testing.assert_allclose(insp.latent.cell_distances(mu)[0, cell],
                               3 * cal.map_distance, rtol=1e-3)
    out = insp.add_latent_map(maps, mu)[0]
    centre = out[row * k + k // 2, col * k + k // 2]
    # bilinear stretch: the cell's centre pixel carries (nearly) the cell's own value,
    # 3x the map grid's latent threshold in the reconstruction map's units
    assert centre > 0.85 * 3 * cal.map_scale
    # cells two away are untouched: the reconstruction map shows through unchanged
    far = np.ones((s, s), bool)
    far[max(0, (row - 1) * k):(row + 2) * k, max(0, (col - 1) * k):(col + 2) * k] = False
    np.testing.assert_array_equal(out[far], maps[0][far])
    # a far cell of the verdict grid alone leaves the map as it was
    np.testing.assert_array_equal(
        insp.add_latent_map(maps, far_cell_codes(insp.latent, 0, 10 * cal.latent_distance)), maps)


def test_without_a_map_scale_the_map_is_the_reconstruction_map(texture_bundle):
    """Bundles calibrated before the latent cells joined the map have no ``map_scale``; their
    pixel threshold was set on reconstruction maps alone, so those maps must stay as they were."""
    insp = Inspector.load(texture_bundle[0], "cpu")
    insp.cal = replace(insp.cal, map_scale=0.0)
    maps = np.random.default_rng(0).random((1, 32, 32)).astype(np.float32)
    mu = far_cell_codes(insp.latent, 0, 10 * insp.cal.latent_distance)
    np.testing.assert_array_equal(insp.add_latent_map(maps, mu), maps)
    assert Calibration().map_scale == 0.0


def test_pixel_threshold_is_set_on_the_maps_with_latent_cells(texture_bundle):
    cal = Inspector.load(texture_bundle[0], "cpu").cal
    # the latent cells can only raise a pixel, so the 99.9th percentile cannot fall below the
    # reconstruction map's own, which is map_scale
    assert cal.pixel >= cal.map_scale > 0


def test_with_every_flip_the_map_turns_with_the_image_and_the_score_stays(texture_bundle):
    insp = Inspector.load(texture_bundle[0], "cpu")
    insp.cal = replace(insp.cal, map_scale=0.0)  # the reconstruction map alone
    img = np.random.default_rng(3).random((40, 40, 1), dtype=np.float32)
    x = to_device(np.stack([prepare_for(im, insp.cfg) for im in (img, img[:, ::-1], img[::-1])]),
                  insp.torch_device)
    plain = insp.raw_scores(x)
    insp.cal = replace(insp.cal, flips=["h", "v", "hv"])
    tta = insp.raw_scores(x)
    # the mean over the image and its three flips is the same for each of them, turned
    np.testing.assert_allclose(tta.maps[1], tta.maps[0][:, ::-1], atol=1e-5)
    np.testing.assert_allclose(tta.maps[2], tta.maps[0][::-1], atol=1e-5)
    np.testing.assert_allclose(tta.recon_scores, tta.recon_scores[0], rtol=1e-5)
    # ... which the single view is not: the flips did something
    assert np.abs(plain.maps[1] - plain.maps[0][:, ::-1]).max() > 1e-3
    # one view alone, flipped, is what calibration compares
    np.testing.assert_allclose(insp.view_scores(x[:1], "h"), plain.recon_scores[1:2], rtol=1e-5)
    assert Calibration().flips == []
