"""Device placement: image batches reach the networks as channels-last tensors."""

import numpy as np
import torch

from models.device import pick_device, to_device


def test_a_batch_of_images_becomes_a_channels_last_tensor_with_the_same_pixels():
    batch = np.random.default_rng(0).random((2, 5, 7, 3), dtype=np.float32)
    x = to_device(batch[:, ::-1], pick_device("cpu"))  # a reversed view copies, not fails
    assert x.shape == (2, 3, 5, 7) and x.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_array_equal(x.permute(0, 2, 3, 1).numpy(), batch[:, ::-1])
