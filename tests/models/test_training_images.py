"""The training images: shrunk as they are read, in colour only when they have it."""

import numpy as np
from PIL import Image

from models.data import Item
from models.training_images import read_training_images


def test_training_images_are_shrunk_as_read_and_take_colour_only_when_present(tmp_path):
    rng = np.random.default_rng(0)
    gray = Image.fromarray(rng.integers(0, 256, (300, 200), dtype=np.uint8))
    gray.save(tmp_path / "gray.png")
    # an RGB file whose channels agree is gray too
    Image.fromarray(np.repeat(np.asarray(gray)[..., None], 3, axis=2)).save(tmp_path / "g3.png")
    colour = rng.integers(0, 256, (40, 90, 3), dtype=np.uint8)
    colour[..., 0] = 255  # strongly red: real colour
    Image.fromarray(colour).save(tmp_path / "red.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    items = [Item(tmp_path / n) for n in ("gray.png", "g3.png", "broken.png")]

    images, skipped = read_training_images(items, 32)
    images = np.stack(images)
    assert images.shape == (2, 32, 32, 1) and images.dtype == np.float32
    assert skipped == [str(tmp_path / "broken.png")]
    assert np.allclose(images[0], images[1], atol=1e-6)

    images, _ = read_training_images(items + [Item(tmp_path / "red.png")], 32)
    images = np.stack(images)
    assert images.shape == (3, 32, 32, 3)
    assert images[2, ..., 0].min() > 0.99 and images[0].std(axis=2).max() < 1e-6

    images, skipped = read_training_images(items[2:], 32)
    assert images == [] and len(skipped) == 1
