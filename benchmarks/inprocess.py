"""Speed in process, no HTTP: (a) the raw forward pass and (b) the whole pipeline from upload
bytes to the service's answer, plus where the pipeline's time goes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from .timing import cycle, device_sync, measure
from .workload import decoded

CPU_BATCHES = (1, 8, 32, 64)
GPU_BATCHES = (1, 8, 32, 64, 128, 256)
NO_PICTURES = frozenset()
PICTURES = frozenset({"heatmap", "mask"})


def prepared_batch(inspector, images: Sequence[np.ndarray]) -> torch.Tensor:
    """Images ``(H, W, C)`` -> one ``(B, C, h, w)`` tensor on the inspector's device, every
    image at the model shape of the first (the benchmarks time one shape; inspection groups
    images by their own shape)."""
    from models.preprocess import model_shape, prepare

    shape = model_shape(*images[0].shape[:2], inspector.cfg)
    [(_, x)] = inspector.groups([prepare(im, shape, inspector.cfg.channels) for im in images])
    return x


@contextmanager
def whole_batches(inspector, batch: int) -> Iterator[None]:
    """Lets the Inspector run a whole batch in one forward (it chunks at ``max_batch``)."""
    old = inspector.max_batch
    inspector.max_batch = max(old, batch)
    try:
        yield
    finally:
        inspector.max_batch = old


# --- (a) raw forward ------------------------------------------------------------------------


def raw_forward(inspector, jpegs: list[bytes], batch: int, seconds: float) -> dict:
    """(a) ``raw_scores`` on a prepared ``(B, C, S, S)`` tensor already on the device."""
    x = prepared_batch(inspector, cycle(decoded(jpegs), 0, batch))
    with whole_batches(inspector, batch):
        return measure(lambda i: inspector.raw_scores(x), seconds, batch,
                       device_sync(inspector.device))


def best_batch(inspector, jpegs: list[bytes], seconds: float, device: str) -> dict:
    """Tries each batch size for a share of ``seconds``; the fastest in images/s wins."""
    candidates = GPU_BATCHES if device == "cuda" else CPU_BATCHES
    share = max(0.3, seconds / 2)
    search = {}
    for batch in candidates:
        try:
            search[str(batch)] = raw_forward(inspector, jpegs, batch, share)["images_per_s"]
        except torch.cuda.OutOfMemoryError:
            break
    best = max(search, key=search.get)
    print(f"[speed] {device} {inspector.runtime}: raw images/s by batch {search} -> best batch "
          f"{best}", flush=True)
    return {"best_batch": int(best), "search": search}


# --- (b) in-process pipeline -------------------------------------------------------------


def answer_encoder(inspector) -> Callable[[np.ndarray, object, frozenset], bytes]:
    """The service's own answer builder (``build_result`` + JSON), so (b) does the work that
    a request does minus HTTP."""
    from service.routes.inspect import build_result
    from service.schemas import InspectionResult
    from service.serving import Served

    served = Served("bench", str(inspector.info.get("version", "")), inspector, from_root=False)

    def encode(image, result, include):
        body = build_result(InspectionResult, image, result, include, served,
                            time.perf_counter())
        return body.model_dump_json(exclude_none=True).encode()
    return encode


def pipeline(inspector, jpegs: list[bytes], best: int, seconds: float) -> dict:
    """(b) bytes -> decode -> inspect -> answer, at batch 1 and ``best``, without and with
    the heatmap and mask PNGs."""
    from models.data import decode_image

    encode = answer_encoder(inspector)
    out = {}
    for name, include in (("verdict", NO_PICTURES), ("pictures", PICTURES)):
        out[name] = {}
        for batch in sorted({1, best}):
            def call(i, batch=batch, include=include):
                images = [decode_image(j) for j in cycle(jpegs, i * batch, batch)]
                results = inspector.inspect(images)
                return [encode(im, r, include) for im, r in zip(images, results)]
            with whole_batches(inspector, batch):
                out[name][f"batch_{batch}"] = measure(call, seconds / 2, batch)
        out[name]["best"] = max(out[name].values(), key=lambda m: m["images_per_s"])
    return out


def stages(inspector, jpegs: list[bytes], batch: int, seconds: float) -> dict:
    """Where the pipeline's time goes, ms per image at ``batch``: decode, prepare (resize to
    the model and copy to the device), forward (``raw_scores``), post-processing (the rest
    of ``inspect``: latent verdict, map resized to the upload, mask, regions), the answer
    without pictures, and each picture."""
    with whole_batches(inspector, batch):
        timings = _stage_timings(inspector, jpegs, batch, max(0.2, seconds / 8))
    out = {k: round(1000.0 / m["images_per_s"], 3) if m["images_per_s"] else None
           for k, m in timings.items()}
    if None not in (out["inspect"], out["prepare"], out["forward"]):
        # a difference of separately timed loops: noisy, floored at 0
        out["post"] = round(max(0.0, out["inspect"] - out["prepare"] - out["forward"]), 3)
    out["batch"] = batch
    return out


def _stage_timings(inspector, jpegs: list[bytes], batch: int, share: float) -> dict:
    from models.data import decode_image
    from service import pictures

    images = decoded(jpegs)
    encode = answer_encoder(inspector)
    results = inspector.inspect(images)
    sync = device_sync(inspector.device)
    x = prepared_batch(inspector, cycle(images, 0, batch))
    result = lambda i: results[i % len(results)]
    return {
        "decode": measure(lambda i: decode_image(jpegs[i % len(jpegs)]), share, 1),
        "prepare": measure(lambda i: prepared_batch(inspector, cycle(images, i, batch)), share,
                           batch, sync),
        "forward": measure(lambda i: inspector.raw_scores(x), share, batch, sync),
        "inspect": measure(lambda i: inspector.inspect(cycle(images, i, batch)), share, batch),
        "answer": measure(lambda i: encode(images[i % len(images)], result(i), NO_PICTURES),
                          share, 1),
        "heatmap_png": measure(lambda i: pictures.heatmap_png(
            result(i).anomaly_map, result(i).pixel_threshold), share, 1),
        "mask_png": measure(lambda i: pictures.mask_png(result(i).mask), share, 1),
    }
