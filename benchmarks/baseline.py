"""The plain AE-L2 baseline: the reference Kensa is measured against in the benchmarks.

A small convolutional autoencoder (four stride-2 stages down, four up, no skips), trained
with an L2 loss on the same normal images, with the same held-out split and time budget as
Kensa. Its anomaly map is the per-pixel squared error (mean over channels), smoothed; its
image score is the map's maximum. Thresholds come from held-out normals with the same
false-alarm budgets as Kensa's, and it is scored with the same metric functions at the
original image size. It is deliberately plain (Bergmann et al. 2019 call it the L2-AE): it
shows what the denoising objective, the segmentation head and the fused verdict buy.

It lives in ``benchmarks/``, not in ``models/``: nothing serves it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.config import TrainConfig
from models.data import Item, open_dataset, split_holdout
from models.device import pick_device, to_device
from models.errors import DataError
from models.evaluate import PixelTruth, TestImages, json_safe, score_report
from models.fit import Progress, cosine_lr, run_loop
from models.maps import gaussian_blur
from models.preprocess import prepare
from models.thresholds import false_alarm_threshold, pixel_threshold
from models.training_images import read_training_images

MAP_SIGMA = 2.0  # same smoothing as Kensa's default ModelConfig.map_sigma
# the baseline keeps the learning rate its figures were measured with; Kensa's own default
# (TrainConfig.lr) was lowered for its denoising model, which says nothing about this one
BASELINE_LR = 1e-3


class BaselineAE(nn.Module):
    """``(B, C, S, S) -> (B, C, S, S)``; ``S`` divisible by 16.

    Encoder: four 4x4 stride-2 convs (``width, 2w, 4w, 4w`` channels) to ``S/16``, a 1x1 conv
    down to ``code`` channels (the bottleneck), then the mirror image with transposed convs.
    No skips and no normalisation: the textbook L2 autoencoder.
    """

    def __init__(self, channels: int, width: int = 32, code: int = 16):
        super().__init__()
        w = [width, 2 * width, 4 * width, 4 * width]
        act = lambda: nn.LeakyReLU(0.2, inplace=True)
        enc, c = [], channels
        for co in w:
            enc += [nn.Conv2d(c, co, 4, stride=2, padding=1), act()]
            c = co
        enc += [nn.Conv2d(c, code, 1), act()]
        dec = [nn.Conv2d(code, c, 1), act()]
        for co in reversed([channels] + w[:-1]):
            dec += [nn.ConvTranspose2d(c, co, 4, stride=2, padding=1), act()]
            c = co
        dec[-1] = nn.Sigmoid()
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


@dataclass
class Baseline:
    """A trained, calibrated AE-L2 model.

    Attributes:
        image_threshold: on the image score (max of the map), from held-out normals.
        pixel_threshold: on the map, from held-out normal pixels.
        train_seconds: wall-clock time of :func:`train_baseline` up to calibration.
    """

    model: BaselineAE
    image_size: int
    channels: int
    device: torch.device
    image_threshold: float = math.inf
    pixel_threshold: float = math.inf
    train_seconds: float = 0.0
    history: dict = field(default_factory=dict)

    @torch.inference_mode()
    def maps(self, x: torch.Tensor, chunk: int = 32) -> np.ndarray:
        """Prepared inputs ``(B, C, S, S)`` -> smoothed squared-error maps ``(B, S, S)``, run
        ``chunk`` images at a time (the held-out set can be thousands of images)."""
        self.model.eval()
        out = []
        for i in range(0, len(x), chunk):
            xc = x[i:i + chunk]
            err = ((xc - self.model(xc)) ** 2).mean(1, keepdim=True)
            out.append(gaussian_blur(err, MAP_SIGMA)[:, 0].cpu().numpy())
        return np.concatenate(out)

    def anomaly_maps(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Kensa images ``(H, W, C)`` -> maps ``(H, W)`` at each image's own size."""
        batch = np.stack([prepare(im, self.image_size, self.channels) for im in images])
        small = self.maps(to_device(batch, self.device))
        return [cv2.resize(m, (im.shape[1], im.shape[0]), interpolation=cv2.INTER_LINEAR)
                for m, im in zip(small, images)]

    def calibrate(self, held_out: np.ndarray, cfg: TrainConfig) -> None:
        """Sets both thresholds from held-out normal images ``(N, S, S, C)`` at ``cfg``'s
        false-alarm budgets, as Kensa's calibration does."""
        maps = self.maps(to_device(held_out, self.device))
        self.image_threshold = false_alarm_threshold(maps.reshape(len(maps), -1).max(1),
                                                     cfg.false_alarm_rate)
        self.pixel_threshold = pixel_threshold(maps, cfg.pixel_false_alarm_rate)

    def evaluate(self, items: Sequence[Item]) -> dict:
        """The report of :func:`models.evaluate.evaluate` (same keys, same metric functions,
        maps at the original size), for the baseline. It has no latent verdict:
        ``latent_auroc`` is None and ``reconstruction_auroc`` equals ``image_auroc``."""
        scores, types, pixels = [], [], PixelTruth(len(items))
        images = TestImages(items)
        for chunk, imgs in images:
            for it, amap in zip(chunk, self.anomaly_maps(imgs)):
                scores.append(float(amap.max()))
                types.append(it.defect)
                pixels.add(it, amap)
        report = score_report(types, scores, self.image_threshold, pixels, images.skipped)
        report |= {"reconstruction_auroc": report["image_auroc"], "latent_auroc": math.nan}
        return {k: json_safe(v) for k, v in report.items()}


def train_baseline(data: str | Path, minutes: float, image_size: int = 128, seed: int = 0,
                   device: str = "auto", progress: bool = False,
                   epochs: int | None = None) -> Baseline:
    """Trains and calibrates the AE-L2 baseline on ``data``'s normal training images.

    Uses Kensa's trainer pieces: the same decoding, preparation, held-out split (same seed, so
    the same images are held out), time-budgeted loop and cosine schedule; only the network,
    the loss (L2) and the anomaly map differ.

    Args:
        data: MVTec AD layout folder or plain folder of normal images.
        minutes: training time budget (0 = no budget; ``train_cfg.epochs`` bounds it).
        image_size: side of the square the network sees (a multiple of 16).
        epochs: upper bound on passes over the images (default: TrainConfig's, as Kensa).

    Raises:
        DataError: no usable training image.
    """
    if image_size % 16:
        raise ValueError(f"image_size must be a multiple of 16, got {image_size}")
    cfg = TrainConfig(max_minutes=minutes, seed=seed, lr=BASELINE_LR,
                      **({"epochs": epochs} if epochs is not None else {}))
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    torch_device = pick_device(device)
    started = time.monotonic()
    images = _training_squares(data, image_size)
    channels = images.shape[3]
    fit_idx, hold_idx = split_holdout(len(images), cfg, rng)
    model = BaselineAE(channels).to(torch_device)
    history = _fit(model, images[fit_idx], cfg, torch_device, minutes * 60, Progress(progress))
    base = Baseline(model, image_size, channels, torch_device, history=history)
    base.calibrate(images[hold_idx], cfg)
    base.train_seconds = time.monotonic() - started
    return base


def _training_squares(data: str | Path, image_size: int) -> np.ndarray:
    """The dataset's normal training images as ``(N, S, S, C)``, as Kensa's trainer reads them.

    Raises:
        DataError: no usable training image.
    """
    dataset = open_dataset(data)
    squares, _ = read_training_images(dataset.train, image_size)
    if not squares:
        raise DataError(f"none of the {len(dataset.train)} training file(s) in {dataset.root} "
                        "decodes as an image")
    return np.stack(squares)


def _fit(model: BaselineAE, images: np.ndarray, cfg: TrainConfig, device: torch.device,
         budget_s: float, progress: Progress) -> dict:
    """Plain L2 reconstruction of normal images ``(N, S, S, C)`` (no synthetic defects)."""
    rng = np.random.default_rng(cfg.seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model.train()

    def step(i: int, frac: float) -> float:
        x = to_device(images[rng.integers(0, len(images), cfg.batch_size)], device)
        for g in opt.param_groups:
            g["lr"] = cosine_lr(frac, cfg.lr)
        loss = F.mse_loss(model(x), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return run_loop("L2AE", step, cfg, len(images), budget_s, progress)
