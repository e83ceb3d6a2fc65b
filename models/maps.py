"""Pixel maps both training and inference compute: Gaussian smoothing, the residual (input
minus reconstruction) the reconstruction verdict reads, and the reconstruction map of one
inspection (both views, smoothed), which the torch path computes and ``kensa export`` traces
into one graph (:mod:`models.exports`)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .ssim import ssim_map


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Smooths ``(B, 1, H, W)`` maps with a separable Gaussian."""
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=x.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(x.dtype)
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    return F.conv2d(x, kernel.view(1, 1, -1, 1))


def residual_map(x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Input-minus-reconstruction, ``(B, 1, h, w)``: half structural (1 - SSIM), half L1,
    averaged over channels."""
    structural = (1 - ssim_map(x, recon, size=7)).mean(1, keepdim=True)
    l1 = (x - recon).abs().mean(1, keepdim=True)
    return 0.5 * (structural + l1)


def anomaly_map(x: torch.Tensor, recon: torch.Tensor, logits: torch.Tensor, mode: str,
                residual_scale: float | torch.Tensor) -> torch.Tensor:
    """``(B, 1, h, w)``: the segmentation head's defect probability plus the normalised
    reconstruction residual (SSIM and L1), so both a learned and a plain
    input-minus-reconstruction measure vote on every pixel; ``mode`` (``ModelConfig.map_mode``)
    ``segmentation`` or ``residual`` keeps one of them."""
    seg = torch.sigmoid(logits)
    if mode == "segmentation":
        return seg
    res = residual_map(x, recon) / residual_scale
    if mode == "residual":
        return res
    return 0.5 * (seg + res)


def two_view_map(defect: Callable, x: torch.Tensor, small: torch.Tensor | None, mode: str,
                 residual_scale: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reconstruction map ``(B, 1, h, w)`` of ``x`` before smoothing, averaged with the
    coarse view ``small``'s (stretched back over ``x``) when there is one, and the
    reconstruction ``(B, C, h, w)``. ``defect``: ``x -> (recon, logits)``."""
    recon, logits = defect(x)
    amap = anomaly_map(x, recon, logits, mode, residual_scale)
    if small is not None:
        coarse = anomaly_map(small, *defect(small), mode, residual_scale)
        amap = 0.5 * (amap + F.interpolate(coarse, size=amap.shape[-2:], mode="bilinear",
                                           align_corners=False))
    return amap, recon


def smoothed_map(amap: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A reconstruction map ``(B, 1, h, w)`` -> the smoothed map ``(B, h, w)`` and the
    reconstruction score ``(B,)``, its maximum."""
    maps = gaussian_blur(amap, sigma)[:, 0]
    return maps, maps.flatten(1).amax(1)
