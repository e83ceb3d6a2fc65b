"""The VAE: a grid of latent codes (two grids: one for the verdict, one for the map), and the
shapes that follow from the config."""

import pytest
import torch

from models.config import ModelConfig
from models.vae import VAE, grid_cells, vae_depth


def test_the_latent_is_a_grid_of_codes_and_decodes_back_to_the_image_size():
    cfg = ModelConfig(vae_image_size=32, vae_width=8, latent_dim=6, latent_grid=4, map_grid=4)
    vae = VAE(cfg)
    x = torch.rand(2, 1, 32, 32)
    (recon,), mu, logvar = vae(x)
    assert recon.shape == x.shape
    assert mu.shape == logvar.shape == (2, 16, 6)
    assert vae.decode(mu)[0].shape == x.shape
    assert vae_depth(32, 4) == 3
    assert vae.map_vae is None and grid_cells(cfg) == (16, 0)


def test_a_separate_map_grid_is_a_second_vae_whose_cells_come_last():
    cfg = ModelConfig(vae_image_size=32, vae_width=8, latent_dim=6, latent_grid=8, map_grid=4)
    vae = VAE(cfg).eval()
    x = torch.rand(2, 1, 32, 32)
    recons, mu, logvar = vae(x)
    assert [r.shape for r in recons] == [x.shape, x.shape]  # each VAE rebuilds the image
    assert grid_cells(cfg) == (64, 16)
    assert mu.shape == logvar.shape == (2, 64 + 16, 6)
    with torch.no_grad():
        mu, _ = vae.encode(x)
        own, _ = vae.map_vae.encode(x)
    torch.testing.assert_close(mu[:, 64:], own)
    # two networks, not one with two heads: the map grid's weights are its own
    names = {n.split(".")[0] for n, _ in vae.named_parameters()}
    assert names == {"encoder", "to_stats", "from_latent", "decoder", "map_vae"}


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
