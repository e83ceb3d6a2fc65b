"""Variational autoencoder whose latent space holds the normal-parts cluster."""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .layers import Decoder, Encoder

VAE_DEPTH = 4


class VAE(nn.Module):
    """``(B, C, V, V) -> (recon (B, C, V, V), mu (B, D), logvar (B, D))`` with ``V`` the
    config's ``vae_image_size`` and ``D`` its ``latent_dim``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg.channels, cfg.vae_width, VAE_DEPTH)
        c = self.encoder.downs[-1][0][0].out_channels
        self.side = cfg.vae_image_size // 2**VAE_DEPTH
        flat = c * self.side * self.side
        self.to_stats = nn.Linear(flat, 2 * cfg.latent_dim)
        self.from_latent = nn.Linear(cfg.latent_dim, flat)
        self.decoder = Decoder(cfg.channels, cfg.vae_width, VAE_DEPTH, skips=False)
        self.c = c

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C, V, V) -> (mu (B, D), logvar (B, D))``."""
        h, _ = self.encoder(x)
        mu, logvar = self.to_stats(h.flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps: sampling that gradients can flow through."""
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.from_latent(z).view(-1, self.c, self.side, self.side)
        return torch.sigmoid(self.decoder(h))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar
