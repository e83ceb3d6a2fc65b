"""Device placement: the torch device to run on, image batches moved onto it."""

from __future__ import annotations

import numpy as np
import torch


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` takes CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(device)


def to_device(batch: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """Images ``(B, H, W, C)`` (numpy) -> a ``(B, C, H, W)`` channels-last tensor on
    ``device``: the one way training, calibration and inference hand images to the networks."""
    x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)
    return x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
