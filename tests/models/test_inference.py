"""models.inference helpers: the coarse view's size, the latent cells in the anomaly map, and
bundles from before either existed."""

from dataclasses import replace

import numpy as np
import torch
from texture_helpers import far_cell_codes

from models.config import ModelConfig
from models.inference import Calibration, Inspector, shrink
from models.vae import grid_cells


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
    x = insp.to_tensor([img, img[:, ::-1], img[::-1]])
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


def test_the_model_sees_a_square_unless_the_aspect_is_kept():
    from models.inference import MAX_AREA_FACTOR, MAX_SIDE_FACTOR, model_shape

    assert model_shape(300, 100, ModelConfig()) == (128, 128)
    # a bundle trained before keep_aspect existed squashes, as it was calibrated
    old = ModelConfig(keep_aspect=True, pixel_scale=0.5).to_dict()
    del old["keep_aspect"]
    assert model_shape(300, 100, ModelConfig.from_dict(old)) == (128, 128)
    cfg = ModelConfig(keep_aspect=True, pixel_scale=0.5)  # depth 4: sides in multiples of 16
    assert model_shape(256, 256, cfg) == (128, 128)  # the training size: the usual square
    assert model_shape(300, 100, cfg) == (144, 48)  # 150 x 50, to the stride
    assert model_shape(100, 618, cfg) == (48, 304)
    assert model_shape(5, 7, cfg) == (16, 16)  # never below one deepest-stage cell
    h, w = model_shape(3000, 4000, cfg)  # far larger than the training images: bounded
    assert h * w <= MAX_AREA_FACTOR * 128**2 * 1.1 and abs(w / h - 4 / 3) < 0.1
    assert model_shape(1, 40_000_000, cfg) == (16, MAX_SIDE_FACTOR * 128)  # a strip: bounded
    # outside the training images' sides, an image is scaled as if at the nearest one
    ranged = replace(cfg, train_sides=(200.0, 400.0))
    assert model_shape(300, 100, ranged) == (176, 64)  # sqrt 173 -> as if 200
    assert model_shape(300, 300, ranged) == model_shape(300, 300, cfg) == (144, 144)  # inside
    one_camera = replace(cfg, train_sides=(256.0, 256.0))  # every training image 256 x 256
    assert model_shape(512, 512, one_camera) == (128, 128)  # a sharper camera, the same view
    assert model_shape(1024, 512, one_camera) == (176, 96)  # about 128**2 pixels, aspect kept


def test_the_coarse_view_halves_each_side_of_a_wide_input():
    cfg = ModelConfig(depth=4, seg_depth=3, coarse_scale=0.5)
    assert shrink(torch.rand(1, 1, 144, 320), cfg).shape == (1, 1, 64, 160)
