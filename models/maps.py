"""Pixel maps both training and inference compute: Gaussian smoothing and the residual
(input minus reconstruction) the reconstruction verdict reads."""

from __future__ import annotations

import math

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
