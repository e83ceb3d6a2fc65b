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


# how a smoothed map becomes the reconstruction image score: its maximum, or the mean of its
# highest share of pixels (``Calibration.image_score``; chosen at calibration from labeled
# defects, models.calibrate.choose_image_score)
IMAGE_SCORES: dict[str, float] = {"max": 0.0, "top0.1": 0.001, "top1": 0.01, "top5": 0.05}


def pool_map(maps: torch.Tensor, rule: str = "max") -> torch.Tensor:
    """Smoothed maps ``(B, h, w)`` -> image scores ``(B,)`` under ``rule`` (a key of
    :data:`IMAGE_SCORES`): ``max`` the largest pixel, ``topQ`` the mean of the largest Q %
    of the pixels (at least one). A blowhole covers 0.2 % of a magnetic tile, an uneven
    surface 25 %: the maximum suits the first, a mean over more pixels may rank a large faint
    defect better.

    Raises:
        ValueError: an unknown rule.
    """
    if rule not in IMAGE_SCORES:
        raise ValueError(f"image score {rule!r}: use one of {', '.join(IMAGE_SCORES)}")
    flat = maps.flatten(1)
    if rule == "max":
        return flat.amax(1)
    k = max(1, math.ceil(IMAGE_SCORES[rule] * flat.shape[1]))
    return flat.topk(k, dim=1).values.mean(1)
