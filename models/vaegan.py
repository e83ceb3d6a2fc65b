"""VAEGAN's "learned similarity" for the reconstruction autoencoder (``kensa train
--adversarial``; Larsen et al. 2016, "Autoencoding beyond pixels using a learned similarity
metric").

A small patch discriminator learns to tell the clean training windows from the autoencoder's
reconstructions of them. Its intermediate features then judge the reconstruction beside L1 +
SSIM: the decoder is pushed to give back the texture the discriminator sees in real windows
(the fine tool-mark rings) rather than their blurred average, which L1 and SSIM tolerate. The
discriminator only exists during training: the bundle and the inference path are the same
with or without it.

Stability on a CPU budget: the extra loss has zero weight for the first ``WARMUP`` of
training (the autoencoder first learns to reconstruct at all; the discriminator trains from
the start, so it is useful when its weight comes in), then ramps linearly to full weight over
``RAMP``; the discriminator is spectrally normalised and trained with the hinge loss; the
decoder's adversarial term proper is small beside the feature matching.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .config import ModelConfig

WARMUP = 0.3  # share of training before the learned similarity counts
RAMP = 0.3  # share of training over which its weight rises to full
FEATURE_WEIGHT = 1.0  # feature matching beside L1 + SSIM (both are of order 0.1-1)
GAN_WEIGHT = 0.05  # the non-saturating adversarial term, beside feature matching
DISC_LR = 2e-4
DISC_STAGES = 3


class PatchDiscriminator(nn.Module):
    """``(B, C, H, W) -> (features per stage, logits (B, 1, H / 2**stages, W / 2**stages))``:
    one real-or-reconstructed score per patch; fully convolutional, so any window size."""

    def __init__(self, channels: int, width: int, stages: int = DISC_STAGES):
        super().__init__()
        layers, c = [], channels
        for i in range(stages):
            out = width * 2**i
            layers.append(nn.Sequential(spectral_norm(nn.Conv2d(c, out, 4, 2, 1)),
                                        nn.LeakyReLU(0.2)))
            c = out
        self.stages = nn.ModuleList(layers)
        self.head = spectral_norm(nn.Conv2d(c, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats, self.head(x)


def ramp(frac: float, warmup: float = WARMUP, span: float = RAMP) -> float:
    """The learned similarity's weight at training progress ``frac`` in ``[0, 1]``: 0 until
    ``warmup``, then linear up to 1 at ``warmup + span``."""
    return float(min(1.0, max(0.0, (frac - warmup) / span)))


def feature_loss(fake: list[torch.Tensor], real: list[torch.Tensor]) -> torch.Tensor:
    """Mean L1 between the discriminator's features of the reconstruction and of the clean
    window, stage by stage (the real features are targets: no gradient through them)."""
    return sum(F.l1_loss(f, r.detach()) for f, r in zip(fake, real)) / len(fake)


class LearnedSimilarity:
    """The discriminator, its optimiser and the two losses of a training step.

    ``decoder_loss`` is added to the autoencoder's loss before its step; ``update`` then trains
    the discriminator on the same batch (clean windows real, reconstructions fake).
    """

    def __init__(self, cfg: ModelConfig, device: torch.device, seed: int):
        gen = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):  # its init leaves the global stream alone
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            self.disc = PatchDiscriminator(cfg.channels, max(8, cfg.width)).to(device)
        self.opt = torch.optim.Adam(self.disc.parameters(), lr=DISC_LR, betas=(0.5, 0.999))
        self.last = {"disc": 0.0, "feature": 0.0, "weight": 0.0}

    def decoder_loss(self, recon: torch.Tensor, clean: torch.Tensor,
                     frac: float) -> torch.Tensor:
        """Feature matching + a small adversarial term, times :func:`ramp` (0 while warming up:
        then no discriminator pass at all)."""
        weight = ramp(frac)
        self.last["weight"] = weight
        if weight == 0.0:
            return recon.new_zeros(())
        for p in self.disc.parameters():
            p.requires_grad_(False)
        fake_feats, fake_logits = self.disc(recon)
        with torch.no_grad():
            real_feats, _ = self.disc(clean)
        for p in self.disc.parameters():
            p.requires_grad_(True)
        feat = feature_loss(fake_feats, real_feats)
        self.last["feature"] = float(feat.detach())
        return weight * (FEATURE_WEIGHT * feat + GAN_WEIGHT * F.softplus(-fake_logits).mean())

    def update(self, recon: torch.Tensor, clean: torch.Tensor) -> float:
        """One hinge-loss step of the discriminator; returns its loss."""
        _, real = self.disc(clean)
        _, fake = self.disc(recon.detach())
        loss = F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.last["disc"] = float(loss.detach())
        return self.last["disc"]
