"""Training losses, as pure functions of tensors."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .ssim import ssim_map


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 + (1 - SSIM) between ``(B, C, H, W)`` images (Bergmann et al. 2019): SSIM keeps
    edges and texture that a pixel loss alone blurs away."""
    return F.l1_loss(recon, target) + (1 - ssim_map(recon, target)).mean()


def l2_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Plain mean squared error: the AE-L2 baseline's loss."""
    return F.mse_loss(recon, target)


def focal_loss(logits: torch.Tensor, mask: torch.Tensor, gamma: float = 2.0,
               alpha: float = 0.75) -> torch.Tensor:
    """Binary focal loss (Lin et al. 2017) for defect masks, whose pixels are rare.

    Args:
        logits: ``(B, 1, H, W)`` raw scores.
        mask: ``(B, 1, H, W)`` in ``{0, 1}``.
    """
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, mask, reduction="none")
    p_t = p * mask + (1 - p) * (1 - mask)
    a_t = alpha * mask + (1 - alpha) * (1 - mask)
    return (a_t * (1 - p_t) ** gamma * ce).mean()


def dice_loss(logits: torch.Tensor, mask: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice over the batch, ``(B, 1, H, W)`` inputs: rewards overlap, not pixel count."""
    p = torch.sigmoid(logits)
    inter = (p * mask).sum()
    return 1 - (2 * inter + eps) / (p.sum() + mask.sum() + eps)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) summed over every latent value of an image, averaged over the
    batch; ``mu, logvar`` are ``(B, ...)`` (one code ``(B, D)`` or a grid ``(B, P, D)``)."""
    return (-0.5 * (1 + logvar - mu**2 - logvar.exp()).flatten(1).sum(1)).mean()


def positive_loss(logits: torch.Tensor, known: torch.Tensor, target: torch.Tensor,
                  bags: torch.Tensor, shares: torch.Tensor, min_top: int = 4) -> torch.Tensor:
    """The segmentation head's loss on labeled real defects (:mod:`models.positives`):
    focal + Dice on the pixels whose target is known, plus, for each bag (a box, or the whole
    of an image labeled without regions), multiple-instance: the top ``share`` of its logits
    (at least ``min_top``) must be high.

    Args:
        logits: ``(B, 1, H, W)`` raw scores.
        known, target: ``(B, 1, H, W)``: where the pixel target is known, and that target.
        bags: ``(B, 1, H, W)``: 0 outside every bag, ``i`` inside bag ``i``.
        shares: ``(B,)`` the share of each image's bags that must be high.
    """
    loss = logits.new_zeros(())
    if bool(known.any()):
        p = torch.sigmoid(logits)
        ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        p_t = p * target + (1 - p) * (1 - target)
        a_t = 0.75 * target + 0.25 * (1 - target)
        focal = a_t * (1 - p_t) ** 2 * ce
        loss = loss + 5 * (focal * known).sum() / known.sum()
        if bool((target * known).any()):
            inter = (p * target * known).sum()
            loss = loss + 1 - (2 * inter + 1) / ((p * known).sum() + (target * known).sum() + 1)
    tops = []
    for b in range(len(logits)):
        for bag in torch.unique(bags[b]):
            if bag <= 0:
                continue
            values = logits[b][bags[b] == bag]
            k = min(len(values), max(min_top, math.ceil(float(shares[b]) * len(values))))
            tops.append(values.topk(k).values)
    if tops:
        top = torch.cat(tops)
        loss = loss + F.binary_cross_entropy_with_logits(top, torch.ones_like(top))
    return loss
