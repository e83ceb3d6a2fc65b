"""models.inference helpers: the coarse view's size, the latent cells in the anomaly map, and
bundles from before either existed."""

from dataclasses import replace

import numpy as np
import torch

from models.config import ModelConfig
from models.inference import Calibration, Inspector, shrink


def test_coarse_view_is_half_size_and_fits_the_stride_stages():
    cfg = ModelConfig(image_size=128, depth=4, seg_depth=3, coarse_scale=0.5)
    x = torch.rand(2, 1, 128, 128)
    small = shrink(x, cfg)
    assert small.shape == (2, 1, 64, 64)
    # area averaging: every coarse pixel is the mean of a 2x2 block
    torch.testing.assert_close(small[0, 0, 0, 0], x[0, 0, :2, :2].mean())
    # never smaller than one cell of the deepest stage, whatever the scale
    tiny = ModelConfig(image_size=32, depth=4, seg_depth=3, coarse_scale=0.25)
    assert shrink(torch.rand(1, 1, 32, 32), tiny).shape[-1] == 16


def test_a_model_config_without_coarse_scale_loads_without_the_coarse_view():
    old = ModelConfig().to_dict()
    del old["coarse_scale"]
    assert ModelConfig.from_dict(old).coarse_scale == 0.0
    assert ModelConfig.from_dict(ModelConfig().to_dict()).coarse_scale == 0.5


def _cell_codes(insp, far_cell: int, distance: float) -> np.ndarray:
    """``(1, P, D)`` latent means: every cell at its normal centre except ``far_cell``, placed
    ``distance`` Mahalanobis units away along its first whitened axis."""
    lat = insp.latent
    mu = lat.mean.copy()[None].astype(np.float64)
    w = lat.whiten[far_cell].astype(np.float64)  # |(z - mean) @ W| is the distance
    mu[0, far_cell] += distance * np.linalg.solve(w.T, np.eye(len(w))[0])
    return mu.astype(np.float32)


def test_a_far_latent_cell_lights_its_part_of_the_map_and_nothing_else(texture_bundle):
    insp = Inspector.load(texture_bundle[0], "cpu")
    cal, g, s = insp.cal, insp.cfg.latent_grid, insp.cfg.image_size
    assert cal.map_scale > 0 and insp.cfg.latent_map
    maps = np.full((1, s, s), 0.1 * cal.map_scale, np.float32)
    row, col, k = 2, 5, s // g  # cell (2, 5) covers rows 2k..3k, columns 5k..6k
    mu = _cell_codes(insp, row * g + col, 3 * cal.latent_distance)
    np.testing.assert_allclose(insp.latent.cell_distances(mu)[0, row * g + col],
                               3 * cal.latent_distance, rtol=1e-3)
    out = insp.add_latent_map(maps, mu)[0]
    centre = out[row * k + k // 2, col * k + k // 2]
    # bilinear stretch: the cell's centre pixel carries (nearly) the cell's own value,
    # 3x the latent threshold in the reconstruction map's units
    assert centre > 0.85 * 3 * cal.map_scale
    # cells two away are untouched: the reconstruction map shows through unchanged
    far = np.ones((s, s), bool)
    far[max(0, (row - 1) * k):(row + 2) * k, max(0, (col - 1) * k):(col + 2) * k] = False
    np.testing.assert_array_equal(out[far], maps[0][far])


def test_without_a_map_scale_the_map_is_the_reconstruction_map(texture_bundle):
    """Bundles calibrated before the latent cells joined the map have no ``map_scale``; their
    pixel threshold was set on reconstruction maps alone, so those maps must stay as they were."""
    insp = Inspector.load(texture_bundle[0], "cpu")
    insp.cal = replace(insp.cal, map_scale=0.0)
    maps = np.random.default_rng(0).random((1, 32, 32)).astype(np.float32)
    mu = _cell_codes(insp, 0, 10 * insp.cal.latent_distance)
    np.testing.assert_array_equal(insp.add_latent_map(maps, mu), maps)
    assert Calibration().map_scale == 0.0


def test_pixel_threshold_is_set_on_the_maps_with_latent_cells(texture_bundle):
    cal = Inspector.load(texture_bundle[0], "cpu").cal
    # the latent cells can only raise a pixel, so the 99.9th percentile cannot fall below the
    # reconstruction map's own, which is map_scale
    assert cal.pixel >= cal.map_scale > 0
