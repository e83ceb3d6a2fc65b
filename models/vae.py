"""Variational autoencoder whose latent space holds the normal-parts cluster.

The latent is a grid of codes, not one vector: each of the ``latent_grid x latent_grid`` cells
has its own mean and log-variance and describes its part of the image. A defect a few pixels
wide barely moves a single code for the whole image (the latent AUROC of that design measured
0.45-0.58 on every data set tried), but it moves the code of the cell it lies in.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import ModelConfig
from .layers import Decoder, Encoder, stage_widths


def vae_depth(cfg: ModelConfig) -> int:
    """Stride-2 stages from ``vae_image_size`` down to ``latent_grid`` cells on a side."""
    ratio = cfg.vae_image_size / cfg.latent_grid
    depth = round(math.log2(ratio)) if ratio >= 1 else -1
    if depth < 0 or 2**depth != ratio:
        raise ValueError(f"vae_image_size {cfg.vae_image_size} must be latent_grid "
                         f"{cfg.latent_grid} times a power of two")
    return depth


class VAE(nn.Module):
    """``(B, C, V, V) -> (recon (B, C, V, V), mu (B, P, D), logvar (B, P, D))`` with ``V`` the
    config's ``vae_image_size``, ``P = latent_grid ** 2`` cells (row by row) and ``D`` its
    ``latent_dim``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        depth = vae_depth(cfg)
        c = stage_widths(cfg.vae_width, depth)[-1]
        self.encoder = Encoder(cfg.channels, cfg.vae_width, depth)
        self.to_stats = nn.Conv2d(c, 2 * cfg.latent_dim, 1)
        self.from_latent = nn.Conv2d(cfg.latent_dim, c, 1)
        self.decoder = Decoder(cfg.channels, cfg.vae_width, depth, skips=False)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C, V, V) -> (mu (B, P, D), logvar (B, P, D))``."""
        h, _ = self.encoder(x)
        stats = self.to_stats(h).flatten(2).transpose(1, 2)  # (B, P, 2D)
        mu, logvar = stats.chunk(2, dim=2)
        return mu, logvar.clamp(-10, 10)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps: sampling that gradients can flow through."""
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, P, D) -> (B, C, V, V)``."""
        g = self.cfg.latent_grid
        h = z.transpose(1, 2).reshape(len(z), -1, g, g)
        return torch.sigmoid(self.decoder(self.from_latent(h)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar
