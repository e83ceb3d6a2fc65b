"""The VAE: a grid of latent codes, and the shapes that follow from the config."""

import pytest
import torch

from models.config import ModelConfig
from models.vae import VAE, vae_depth


def test_the_latent_is_a_grid_of_codes_and_decodes_back_to_the_image_size():
    cfg = ModelConfig(vae_image_size=32, vae_width=8, latent_dim=6, latent_grid=4)
    vae = VAE(cfg)
    x = torch.rand(2, 1, 32, 32)
    recon, mu, logvar = vae(x)
    assert recon.shape == x.shape
    assert mu.shape == logvar.shape == (2, 16, 6)
    assert vae.decode(mu).shape == x.shape
    assert vae_depth(cfg) == 3


def test_the_codes_are_laid_out_row_by_row():
    # cell p of the code grid is the encoder's feature at row p // G, column p % G
    cfg = ModelConfig(vae_image_size=16, vae_width=4, latent_dim=3, latent_grid=4)
    vae = VAE(cfg).eval()
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        mu, _ = vae.encode(x)
        h, _ = vae.encoder(x)
        stats = vae.to_stats(h)[0, :3]  # the means, (D, G, G)
    assert torch.allclose(mu[0, 1 * 4 + 2], stats[:, 1, 2])


@pytest.mark.parametrize("size,grid", [(48, 8), (4, 8)])
def test_a_grid_that_does_not_divide_the_image_by_a_power_of_two_is_refused(size, grid):
    with pytest.raises(ValueError, match="power of two"):
        VAE(ModelConfig(vae_image_size=size, latent_grid=grid))
