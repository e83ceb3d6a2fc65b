"""Pooling a smoothed map into an image score: the maximum, or the mean of its top share."""

import pytest
import torch

from models.maps import IMAGE_SCORES, pool_map


def test_max_is_the_largest_pixel_and_top_shares_the_mean_of_the_largest():
    maps = torch.zeros(2, 20, 50)  # 1,000 pixels each
    maps[0, 0, 0] = 1.0  # one bright speck
    maps[1, :, :10] = 0.5  # a faint region over a fifth of the image
    assert pool_map(maps, "max").tolist() == [1.0, 0.5]
    assert pool_map(maps, "max").equal(maps.flatten(1).amax(1))  # the rule before the choice
    assert pool_map(maps, "top0.1").tolist() == [1.0, 0.5]  # one pixel of 1,000
    assert pool_map(maps, "top1").tolist() == pytest.approx([0.1, 0.5])  # 10 pixels
    assert pool_map(maps, "top5").tolist() == pytest.approx([0.02, 0.5])  # 50 pixels
    # the speck ranks first by the maximum, the faint region by a mean over more pixels
    assert set(IMAGE_SCORES) == {"max", "top0.1", "top1", "top5"}


def test_a_tiny_map_pools_at_least_one_pixel_and_an_unknown_rule_is_refused():
    maps = torch.arange(12.0).reshape(1, 3, 4)
    assert pool_map(maps, "top5").tolist() == [11.0]
    with pytest.raises(ValueError, match="use one of max, top0.1, top1, top5"):
        pool_map(maps, "top2")
