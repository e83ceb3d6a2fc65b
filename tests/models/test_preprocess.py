"""Preprocessing: the model shape of an image, and the coarse view."""

from dataclasses import replace

import torch

from models.config import ModelConfig
from models.preprocess import MAX_AREA_FACTOR, MAX_SIDE_FACTOR, model_shape, shrink


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


def test_the_model_sees_a_square_unless_the_aspect_is_kept():
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
