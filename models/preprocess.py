"""Preprocessing: how an image becomes the networks' input (model shape, resizing, views).

Training, calibration and inference all prepare images through these functions, so the
networks see the same pixels whichever of them runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .config import ModelConfig

GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)
# an aspect-keeping model input has at most this many image_size**2 pixels, and no side longer
# than this many image_size (bounded latency and memory, whatever the upload)
MAX_AREA_FACTOR = 4
MAX_SIDE_FACTOR = 4


def model_shape(h: int, w: int, cfg: ModelConfig) -> tuple[int, int]:
    """The ``(height, width)`` the reconstruction model sees for an ``h x w`` image.

    Square ``image_size`` by default. With ``cfg.keep_aspect`` the image keeps its aspect and
    is scaled by ``cfg.pixel_scale`` (the training images' scale), so a texture has the same
    size in model pixels in every image, whatever the size of the crop it came in. That holds
    for images whose geometric side ``sqrt(h * w)`` lies within the training images'
    (``cfg.train_sides``); one outside it is scaled as if it had the nearest training side (a
    camera of twice the resolution shows the same part twice as large: its upload is seen as
    large as the training images were, not twice). Each side is a multiple of the networks'
    stride; the input has at most ``MAX_AREA_FACTOR * image_size**2`` pixels and no side
    longer than ``MAX_SIDE_FACTOR * image_size`` (a 1 x 40,000 strip is squashed along its
    length), so latency and memory stay bounded whatever is uploaded.
    """
    size = cfg.image_size
    if not cfg.keep_aspect or cfg.pixel_scale <= 0:
        return size, size
    multiple = stride_multiple(cfg)
    side = math.sqrt(h * w)
    lo, hi = cfg.train_sides
    scale = cfg.pixel_scale * (min(max(side, lo), hi) / side if 0 < lo <= hi else 1.0)
    scale = min(scale, size * math.sqrt(MAX_AREA_FACTOR / (h * w)))
    longest = MAX_SIDE_FACTOR * size // multiple * multiple
    return tuple(min(longest, max(multiple, round(d * scale / multiple) * multiple))
                 for d in (h, w))


def stride_multiple(cfg: ModelConfig) -> int:
    """Model input sides must be multiples of this (the stride-2 stages of both networks)."""
    return 2 ** max(cfg.depth, cfg.seg_depth)


def prepare(image: np.ndarray, size: int | tuple[int, int], channels: int) -> np.ndarray:
    """One image ``(H, W, C)`` in ``[0, 1]`` -> ``(h, w, channels)`` for the model, where
    ``size`` is ``(h, w)`` (see :func:`model_shape`) or one side of a square.

    Resizing to a square squashes the aspect ratio; maps are stretched back to the original
    size, so a pixel of the answer always lies over the pixel it describes.
    """
    if image.shape[2] == 3 and channels == 1:
        image = (image @ GRAY_WEIGHTS)[..., None]
    elif image.shape[2] == 1 and channels == 3:
        image = np.repeat(image, 3, axis=2)
    th, tw = (size, size) if isinstance(size, int) else size
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if (h > th and w > tw) else cv2.INTER_LINEAR
    out = cv2.resize(image, (tw, th), interpolation=interp)
    return out.reshape(th, tw, channels)


def prepare_for(image: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """One image ``(H, W, C)`` -> ``(h, w, channels)`` at its :func:`model_shape`: what the
    reconstruction model is given (the trainer prepares its images with this too)."""
    return prepare(image, model_shape(*image.shape[:2], cfg), cfg.channels)


def same_shape_groups(arrays: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Prepared images of possibly different shapes -> ``(indices, stacked (B, h, w, C))``
    per shape, in order of first appearance (one camera's images are one group)."""
    by_shape: dict[tuple, list[int]] = {}
    for i, array in enumerate(arrays):
        by_shape.setdefault(array.shape, []).append(i)
    return [(np.array(idx), np.stack([arrays[i] for i in idx])) for idx in by_shape.values()]


def vae_input(x: torch.Tensor, size: int) -> torch.Tensor:
    """The VAE's view of prepared images: ``(B, C, h, w) -> (B, C, size, size)`` by area
    averaging. Training, the latent cluster fit and inference all use this one function."""
    return F.interpolate(x, size=(size, size), mode="area")


def has_coarse_view(cfg: ModelConfig) -> bool:
    """Whether the model also reads a coarse view of each image (``0 < coarse_scale < 1``)."""
    return 0 < cfg.coarse_scale < 1


def coarse_view(x: torch.Tensor, cfg: ModelConfig) -> torch.Tensor | None:
    """:func:`shrink` where the model has a coarse view, else None."""
    return shrink(x, cfg) if has_coarse_view(cfg) else None


def shrink(x: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """The coarse view of ``cfg.coarse_scale``: ``(B, C, H, W) -> (B, C, h, w)`` by area
    averaging, each side about ``coarse_scale`` of its own and a multiple of
    :func:`stride_multiple`. Training and inference share this function."""
    multiple = stride_multiple(cfg)
    h, w = (max(multiple, round(d * cfg.coarse_scale / multiple) * multiple)
            for d in x.shape[-2:])
    return F.interpolate(x, size=(h, w), mode="area")


def resized(images: list[np.ndarray], resize: Callable[[torch.Tensor], torch.Tensor]
            ) -> list[np.ndarray]:
    """Applies one of the tensor resizers above (``(B, C, H, W)``) to ``(h, w, C)`` numpy
    images, a batch per shape, so training sees exactly the views inference makes."""
    out: list = [None] * len(images)
    for idx, batch in same_shape_groups(images):
        views = resize(torch.from_numpy(batch).permute(0, 3, 1, 2))
        for j, view in zip(idx, views.permute(0, 2, 3, 1).contiguous().numpy()):
            out[j] = view
    return out


def vae_views(images: list[np.ndarray], cfg: ModelConfig) -> np.ndarray:
    """The VAE's square views ``(N, V, V, C)`` of prepared images of any shapes."""
    side = cfg.vae_image_size
    views = resized(images, lambda x: vae_input(x, side))
    return np.stack(views) if views else np.zeros((0, side, side, cfg.channels), np.float32)
