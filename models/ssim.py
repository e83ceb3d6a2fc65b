"""Structural similarity (Wang et al. 2004) as a differentiable per-pixel map."""

from __future__ import annotations

import torch
import torch.nn.functional as F

C1 = 0.01**2
C2 = 0.03**2


def gaussian_kernel(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 1-D Gaussian, ``(size,)``."""
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def _blur(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    c = int(x.shape[1])  # a constant when traced (kensa export): the kernel's shape
    pad = k.numel() // 2
    kx = k.view(1, 1, 1, -1).repeat(c, 1, 1, 1).to(x)
    ky = k.view(1, 1, -1, 1).repeat(c, 1, 1, 1).to(x)
    x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    return F.conv2d(F.conv2d(x, kx, groups=c), ky, groups=c)


def ssim_map(a: torch.Tensor, b: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM of two images in ``[0, 1]``.

    Args:
        a, b: ``(B, C, H, W)``.

    Returns:
        ``(B, C, H, W)``, 1 where the images agree in luminance, contrast and structure.
    """
    k = gaussian_kernel(size, sigma)
    mu_a, mu_b = _blur(a, k), _blur(b, k)
    var_a = _blur(a * a, k) - mu_a**2
    var_b = _blur(b * b, k) - mu_b**2
    cov = _blur(a * b, k) - mu_a * mu_b
    num = (2 * mu_a * mu_b + C1) * (2 * cov + C2)
    den = (mu_a**2 + mu_b**2 + C1) * (var_a + var_b + C2)
    return num / den


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image, ``(B,)``."""
    return ssim_map(a, b).flatten(1).mean(1)
