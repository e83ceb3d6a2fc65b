"""Timing loops bounded in time and in count, and their summary (throughput, p50, p99)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

MAX_CALLS = 100_000  # count bound of one measurement (the time bound usually ends it first)


def measure(call: Callable[[int], object], seconds: float, per_call: int,
            sync: Callable[[], None] | None = None, warmup: int = 1) -> dict:
    """Calls ``call(i)`` for ``i = 0, 1, ...`` until ``seconds`` have passed (at least 3
    calls) or :data:`MAX_CALLS`; each call handles ``per_call`` images.

    Returns:
        ``images_per_s``, ``p50_ms`` and ``p99_ms`` (per call), ``calls``, ``seconds``.
    """
    for i in range(warmup):
        call(i)
    if sync:
        sync()
    latencies = []
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    deadline = t0 + seconds
    i = 0
    while i < MAX_CALLS and (i < 3 or time.perf_counter() < deadline):
        t = time.perf_counter()
        call(i)
        if sync:
            sync()
        latencies.append(time.perf_counter() - t)
        i += 1
    wall = time.perf_counter() - t0
    out = summary(latencies, wall, per_call)
    out["cpu_ms_per_image"] = round(1000 * (time.process_time() - cpu0) / max(1, out["images"]),
                                    3)
    return out


def summary(latencies: Sequence[float], wall: float, per_call: int) -> dict:
    """Images per second over ``wall`` seconds and the p50/p99 of ``latencies`` (seconds,
    one per call of ``per_call`` images), in ms."""
    ms = np.asarray(latencies, dtype=np.float64) * 1000.0
    n = len(ms)
    return {"images_per_s": round(n * per_call / wall, 2) if wall > 0 and n else 0.0,
            "p50_ms": round(float(np.percentile(ms, 50)), 3) if n else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 3) if n else None,
            "calls": n, "images": n * per_call, "seconds": round(wall, 3),
            "images_per_call": per_call}


def device_sync(device: str) -> Callable[[], None] | None:
    """What waits for queued device work before the clock is read: CUDA's, or nothing."""
    return torch.cuda.synchronize if device == "cuda" else None


def cycle(items: list, start: int, n: int) -> list:
    """``n`` items from ``start`` on, wrapping around."""
    return [items[(start + k) % len(items)] for k in range(n)]
