"""The tiny training configurations the tests share (``from tiny import ...``).

``TINY_MODEL`` / ``TINY_TRAINING`` train a bundle in seconds: the service tests' bundle, the
golden fixture (``tests/fixtures/make_golden.py``; changing them changes its version) and any
models test that needs a bundle but not a good one. ``TEXTURE_MODEL`` / ``TEXTURE_TRAINING``
train the models tests' texture bundle, which has to find planted defects.
"""

from __future__ import annotations

from models.config import ModelConfig, TrainConfig

TINY_MODEL = ModelConfig(image_size=32, width=8, depth=2, seg_width=4, vae_image_size=16,
                         vae_width=4, latent_dim=4)
# the epochs bind, not the time (bit-identical reruns on one machine)
TINY_TRAINING = TrainConfig(epochs=2, max_minutes=5, batch_size=8, min_holdout=4, seed=0)

TEXTURE_MODEL = ModelConfig(image_size=64, width=8, depth=3, seg_width=8, vae_image_size=32,
                            vae_width=8, latent_dim=8)
TEXTURE_TRAINING = TrainConfig(epochs=60, max_minutes=0.6, batch_size=8)
