"""The reconstruction model: a denoising autoencoder plus a small segmentation head.

The autoencoder is trained on normal images that carry synthetic defects and must return the
clean image, so at test time it removes real defects (denoising and defect localization are
the same trick). The segmentation head sees the input beside its reconstruction and learns
where the two differ in a way that matters; it is what turns a blurry residual into a sharp
defect map (the idea of DRAEM, Zavrtanik et al. 2021, made small enough to train on a CPU).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .layers import Decoder, Encoder, conv_block


class Autoencoder(nn.Module):
    """``(B, C, S, S) -> (B, C, S, S)`` reconstruction; no skip connections, so the bottleneck
    (``S / 2**depth`` on a side) cannot copy a defect through."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.encoder = Encoder(cfg.channels, cfg.width, cfg.depth)
        c = self.encoder.downs[-1][0][0].out_channels
        self.bottleneck = nn.Sequential(conv_block(c, c), conv_block(c, c))
        self.decoder = Decoder(cfg.channels, cfg.width, cfg.depth, skips=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, _ = self.encoder(x)
        return torch.sigmoid(self.decoder(self.bottleneck(z)))


class SegmentationHead(nn.Module):
    """U-Net on ``cat(input, reconstruction)``: ``(B, 2C, S, S) -> (B, 1, S, S)`` logits."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        depth = cfg.seg_depth
        self.encoder = Encoder(2 * cfg.channels, cfg.seg_width, depth)
        self.decoder = Decoder(1, cfg.seg_width, depth, skips=True)

    def forward(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        z, feats = self.encoder(torch.cat([x, recon], dim=1))
        return self.decoder(z, feats)


class DefectModel(nn.Module):
    """Reconstruction + segmentation: ``(B, C, S, S) -> (recon (B, C, S, S), logits (B, 1, S, S))``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.autoencoder = Autoencoder(cfg)
        self.segmenter = SegmentationHead(cfg)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        recon = self.autoencoder(x)
        return recon, self.segmenter(x, recon)
