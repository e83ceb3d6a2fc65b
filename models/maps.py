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


# how a smoothed map becomes the reconstruction image score: its maximum, or the mean of its
# highest share of pixels (``Calibration.image_score``: the maximum unless set, or chosen at
# calibration from labeled defects with ``auto``, models.calibrate.choose_image_score)
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


def smoothed_map(amap: torch.Tensor, sigma: float, rule: str = "max"
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """A reconstruction map ``(B, 1, h, w)`` -> the smoothed map ``(B, h, w)`` and the
    reconstruction score ``(B,)``, the map pooled by ``rule`` (:func:`pool_map`)."""
    maps = gaussian_blur(amap, sigma)[:, 0]
    return maps, pool_map(maps, rule)
