"""Losses and SSIM against hand-computed values."""

import math

import pytest
import torch

from models.losses import dice_loss, focal_loss, kl_divergence, l2_loss, reconstruction_loss
from models.ssim import gaussian_kernel, ssim, ssim_map


def test_ssim_of_identical_images_is_one():
    x = torch.rand(2, 1, 24, 24)
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-5)


def test_ssim_of_constant_images_matches_the_luminance_formula():
    # constant images: variances and covariance are 0, so SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b = 0.2, 0.6
    got = ssim_map(torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b))
    c1 = 0.01**2
    want = (2 * a * b + c1) / (a * a + b * b + c1)
    # float32 E[x^2] - E[x]^2 leaves variances of ~1e-7 against C2 = 9e-4: 1e-3 tolerance
    assert torch.allclose(got, torch.full_like(got, want), atol=1e-3)


def test_ssim_drops_where_structure_differs():
    x = torch.rand(1, 1, 32, 32)
    y = x.clone()
    y[..., 8:16, 8:16] = 1 - y[..., 8:16, 8:16]
    m = ssim_map(x, y)[0, 0]
    assert m[10:14, 10:14].mean() < 0.2
    assert m[24:, 24:].mean() > 0.99


def test_gaussian_kernel_is_normalised_and_symmetric():
    k = gaussian_kernel(11, 1.5)
    assert k.sum().item() == pytest.approx(1.0)
    assert torch.allclose(k, k.flip(0))


def test_reconstruction_loss_is_l1_plus_one_minus_ssim():
    x = torch.full((1, 1, 16, 16), 0.5)
    y = torch.full((1, 1, 16, 16), 0.7)
    c1 = 0.01**2
    ssim_v = (2 * 0.5 * 0.7 + c1) / (0.25 + 0.49 + c1)
    assert reconstruction_loss(y, x).item() == pytest.approx(0.2 + (1 - ssim_v), abs=1e-3)


def test_l2_loss_value():
    assert l2_loss(torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5)).item() == 0.25


def test_focal_loss_hand_value():
    # one pixel, logit 0 (p = 0.5), label 1: alpha * (1 - 0.5)^2 * ln 2
    got = focal_loss(torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1), gamma=2.0, alpha=0.75)
    assert got.item() == pytest.approx(0.75 * 0.25 * math.log(2), rel=1e-5)


def test_focal_loss_rewards_confident_correct_answers():
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :2] = 1
    good = focal_loss((mask * 2 - 1) * 6, mask)
    bad = focal_loss(-(mask * 2 - 1) * 6, mask)
    assert good < 1e-3 < bad


def test_dice_loss_perfect_and_disjoint():
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :] = 1
    assert dice_loss((mask * 2 - 1) * 50, mask, eps=0).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_loss(-(mask * 2 - 1) * 50, mask, eps=0).item() == pytest.approx(1.0, abs=1e-6)


def test_kl_divergence_hand_values():
    assert kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0
    # mu = 1 in two dims, logvar 0: 0.5 * sum(mu^2) = 1
    mu = torch.tensor([[1.0, 1.0, 0.0]])
    assert kl_divergence(mu, torch.zeros(1, 3)).item() == pytest.approx(1.0)
    # a grid of codes (B, P, D): summed over every cell and value of an image, averaged over
    # the batch: image 0 has 0.5 * (4 + 4), image 1 has 0.5 * 2, mean 2.5
    grid = torch.zeros(2, 2, 3)
    grid[0, 0, :2], grid[1, 1, 0] = 2.0, 2.0 ** 0.5
    assert kl_divergence(grid, torch.zeros(2, 2, 3)).item() == pytest.approx(2.5)
