"""Where one request's time goes inside ``Inspector.inspect``, per runtime and batch: decode,
the network calls (or the one ``maps`` graph call), the SSIM residual, the blur, the views,
the latent map and verdict, the regions. Wall-clock timers wrapped around those functions
(nested ones are not subtracted: ``raw_scores`` holds the networks, the residual and the blur).

``python -m benchmarks.stage_profile --model BUNDLE [--runtime torch,onnx] [--calls 15]``
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the kensa command, before torch runs

from .workload import rendered_uploads

WARM_CALLS = 3


class Timers:
    """Seconds spent per stage name, summed over the calls of the wrapped functions."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)
        self.patched: list[tuple] = []  # (module, name, original) to put back

    def restore(self) -> None:
        for module, name, original in reversed(self.patched):
            setattr(module, name, original)
        self.patched = []

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent[name] += time.perf_counter() - start
        return timed


def instrumented(bundle: Path, runtime: str, timers: Timers):
    """The bundle's Inspector on ``runtime`` with timers around its stages."""
    from models import inference, maps
    from models.inference import Inspector

    insp = Inspector.load(bundle, device="cpu", runtime=runtime)
    nets = insp.networks
    nets.defect = timers.wrap("networks: defect (full + coarse view)", nets.defect)
    nets.encode = timers.wrap("networks: VAE encode", nets.encode)
    if nets.fused:
        nets.maps = timers.wrap("maps graph (networks, residual, blur, VAE)", nets.maps)
    for module, name, label in ((maps, "residual_map", "residual (SSIM + L1)"),
                                (maps, "gaussian_blur", "blur"),
                                (inference, "coarse_view", "coarse and VAE views"),
                                (inference, "vae_input", "coarse and VAE views")):
        timers.patched.append((module, name, getattr(module, name)))
        setattr(module, name, timers.wrap(label, getattr(module, name)))
    insp.add_latent_map = timers.wrap("latent map", insp.add_latent_map)
    insp.latent.score = timers.wrap("latent verdict", insp.latent.score)
    insp.regions = timers.wrap("regions and mask", insp.regions)
    insp.raw_scores = timers.wrap("raw_scores (all model-resolution maths)", insp.raw_scores)
    return insp


def profile(bundle: Path, runtime: str, batch: int, calls: int) -> dict[str, float]:
    """ms per image of each stage over ``calls`` calls of ``batch`` 256x256 uploads."""
    from models.data import decode_image

    jpegs = rendered_uploads(256)
    timers = Timers()
    insp = instrumented(bundle, runtime, timers)
    decode = timers.wrap("decode", decode_image)
    inspect = timers.wrap("inspect, all", insp.inspect)
    try:
        with torch.inference_mode():
            for n in range(WARM_CALLS + calls):
                if n == WARM_CALLS:
                    timers.spent.clear()
                inspect([decode(jpegs[(n * batch + j) % len(jpegs)]) for j in range(batch)])
    finally:
        timers.restore()  # the module functions it wrapped
    return {k: round(1000 * v / (calls * batch), 2)
            for k, v in sorted(timers.spent.items(), key=lambda kv: -kv[1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stage_profile",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="bundle (exported for onnx)")
    parser.add_argument("--runtime", default="torch,onnx", help="default torch,onnx")
    parser.add_argument("--batch", default="1,8", help="default 1,8")
    parser.add_argument("--calls", type=int, default=15, help="timed calls (after 3 warm ones)")
    args = parser.parse_args(argv)
    for runtime in args.runtime.split(","):
        for batch in (int(b) for b in args.batch.split(",")):
            print(f"{runtime}, batch {batch}: ms per image", flush=True)
            for stage, ms in profile(args.model, runtime, batch, args.calls).items():
                print(f"  {stage:<45} {ms:8.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
