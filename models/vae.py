"""Variational autoencoder whose latent space holds the normal-parts cluster.

The latent is a grid of codes, not one vector: each of the ``latent_grid x latent_grid`` cells
has its own mean and log-variance and describes its part of the image. A defect a few pixels
wide barely moves a single code for the whole image (that design's latent verdict was near
chance on every data set tried), but it moves the code of the cell it lies in.

Two grids: the verdict wants small cells (16 x 16 ranked defects better than 8 x 8), the
anomaly map wants large ones (a large, smooth stain fills a 16 x 16 cell and looks normal
there); figures in ``benchmarks/HISTORY.md``. So when ``map_grid`` differs from
``latent_grid`` a second, independent VAE with ``map_grid`` cells trains beside the first
(``VAE.map_vae``), and :meth:`VAE.encode` returns both grids' cells, the first grid's first.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .config import ModelConfig
from .layers import Decoder, Encoder, stage_widths


def vae_depth(image_size: int, grid: int) -> int:
    """Stride-2 stages from ``image_size`` down to ``grid`` cells on a side."""
    ratio = image_size / grid
    depth = round(math.log2(ratio)) if ratio >= 1 else -1
    if depth < 0 or 2**depth != ratio:
        raise ValueError(f"vae_image_size {image_size} must be the latent grid {grid} "
                         "times a power of two")
    return depth


def grid_cells(cfg: ModelConfig) -> tuple[int, int]:
    """``(verdict cells, map cells)``: the cells of ``latent_grid`` come first in the latent
    means, then those of ``map_grid`` (0 of them when it is the same grid)."""
    extra = cfg.map_grid**2 if cfg.map_grid != cfg.latent_grid else 0
    return cfg.latent_grid**2, extra


class VAE(nn.Module):
    """``(B, C, V, V) -> (recons, mu (B, P, D), logvar (B, P, D))`` with ``V`` the config's
    ``vae_image_size``, ``recons`` one ``(B, C, V, V)`` reconstruction per grid, ``P`` the
    cells of both grids (row by row, ``latent_grid`` first; see :func:`grid_cells`) and ``D``
    its ``latent_dim``."""

    def __init__(self, cfg: ModelConfig, grid: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.grid = cfg.latent_grid if grid is None else grid
        depth = vae_depth(cfg.vae_image_size, self.grid)
        c = stage_widths(cfg.vae_width, depth)[-1]
        self.encoder = Encoder(cfg.channels, cfg.vae_width, depth)
        self.to_stats = nn.Conv2d(c, 2 * cfg.latent_dim, 1)
        self.from_latent = nn.Conv2d(cfg.latent_dim, c, 1)
        self.decoder = Decoder(cfg.channels, cfg.vae_width, depth, skips=False)
        own_grid = grid is None and cfg.map_grid != cfg.latent_grid
        self.map_vae = VAE(cfg, cfg.map_grid) if own_grid else None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C, V, V) -> (mu (B, P, D), logvar (B, P, D))``."""
        h, _ = self.encoder(x)
        stats = self.to_stats(h).flatten(2).transpose(1, 2)  # (B, g * g, 2D)
        mu, logvar = stats.chunk(2, dim=2)
        if self.map_vae is not None:
            mu2, logvar2 = self.map_vae.encode(x)
            mu, logvar = torch.cat([mu, mu2], 1), torch.cat([logvar, logvar2], 1)
        return mu, logvar.clamp(-10, 10)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps: sampling that gradients can flow through."""
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(B, P, D) ->`` one ``(B, C, V, V)`` image per grid."""
        g = self.grid
        h = z[:, :g * g].transpose(1, 2).reshape(len(z), -1, g, g)
        out = (torch.sigmoid(self.decoder(self.from_latent(h))),)
        if self.map_vae is not None:
            out += self.map_vae.decode(z[:, g * g:])
        return out

    def forward(self, x: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor,
                                                torch.Tensor]:
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


@torch.inference_mode()
def latent_means(vae: VAE, x: torch.Tensor, batch_size: int,
                 autocast: bool = False) -> np.ndarray:
    """The VAE's latent means of its inputs: ``(N, C, V, V)`` -> ``float32 (N, P, D)`` on the
    CPU, ``batch_size`` images per forward pass (``autocast``: in bfloat16 on CUDA). The
    trainer's cluster fit and the Inspector both encode through this one function."""
    out = []
    for i in range(0, len(x), batch_size):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            out.append(vae.encode(x[i:i + batch_size])[0].float().cpu().numpy())
    return np.concatenate(out)
