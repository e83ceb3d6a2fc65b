"""models.inference helpers: the coarse view's size, and bundles from before it existed."""

import torch

from models.config import ModelConfig
from models.inference import shrink


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
