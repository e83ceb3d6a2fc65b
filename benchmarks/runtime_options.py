"""What pays on a CPU, measured side by side: the runtime's settings and graph variants on one
bundle, each run through the Inspector's one path (``raw_scores``), in interleaved rounds so a
change in the machine's load falls on all of them.

``python -m benchmarks.runtime_options --model BUNDLE [--data DIR] [--rounds 3]``

Variants: torch as shipped (channels-last) and in the plain layout; onnxruntime with every
graph optimization (as shipped: the bundle's ``maps`` graph where it has one), the
per-network graphs alone (exports made before ``maps.onnx``), basic optimizations only, one
thread, spinning pool threads; int8 graphs of the networks,
dynamic (weights only) and static (QDQ, calibrated on normal training images of ``--data``,
the prepared full and coarse views and the VAE's views). With ``--data``, ``--accuracy`` also
evaluates the int8 variants against torch on its test split (image and pixel AUROC).
Prints images/s per variant and round and each variant's ratio to torch in the same round.
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the kensa command, before torch runs

from .inprocess import prepared_batch, whole_batches
from .speed import ensure_graphs
from .timing import cycle
from .workload import decoded, rendered_uploads

CALIBRATION_IMAGES = 32


class PlainLayoutNetworks:
    """torch's networks in the default (NCHW) memory layout instead of channels-last."""

    runtime = "torch-nchw"

    def __init__(self, nets):
        self.model = copy.deepcopy(nets.model).to(memory_format=torch.contiguous_format)
        self.vae = nets.vae

    def defect(self, x):
        recon, logits = self.model(x.contiguous())
        return recon.float(), logits.float()

    def encode(self, x):
        return self.vae.encode(x.contiguous())[0].float().cpu().numpy()


def variants_of(bundle: Path, work: Path, data: Path | None,
                only: list[str] | None = None) -> dict:
    """Name -> networks to run instead of the shipped torch ones (those named in ``only``,
    or all). ``onnx all`` is the shipped onnx runtime (with the bundle's ``maps`` graph where
    its export has one), ``onnx per-network`` the same without it (as exports made before
    it run); the int8 variants quantize the per-network graphs."""
    from models.bundle import read_info
    from models.exports import graph_paths
    from models.inference import Inspector
    from models.networks import OnnxNetworks

    cpu = torch.device("cpu")
    graphs = graph_paths(bundle, read_info(bundle))
    networks = {k: v for k, v in graphs.items() if k != "maps"}  # the per-network graphs
    shipped = Inspector.load(bundle, device="cpu").networks
    out = {"torch nchw": lambda: PlainLayoutNetworks(shipped),
           "onnx all": lambda: OnnxNetworks(graphs, cpu),
           "onnx per-network": lambda: OnnxNetworks(networks, cpu),
           "onnx basic": lambda: OnnxNetworks(graphs, cpu, level="basic"),
           "onnx 1 thread": lambda: OnnxNetworks(graphs, cpu, threads=1),
           "onnx spinning": lambda: OnnxNetworks(graphs, cpu, spinning=True),
           "onnx int8 dynamic": lambda: OnnxNetworks(int8_dynamic(networks, work / "dynamic"),
                                                     cpu)}
    if data is not None:
        out["onnx int8 static"] = lambda: OnnxNetworks(
            int8_static(bundle, networks, work / "static", data), cpu)
    return {name: make() for name, make in out.items() if not only or name in only}


def int8_dynamic(graphs: dict[str, Path], folder: Path) -> dict[str, Path]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, path in graphs.items():
        out[name] = folder / path.name
        quantize_dynamic(str(path), str(out[name]), weight_type=QuantType.QInt8)
    return out


def calibration_inputs(bundle: Path, data: Path) -> dict[str, list[np.ndarray]]:
    """Normal training images, prepared as the Inspector prepares them: the full and coarse
    views for ``defect``, the VAE's views for ``encode``."""
    from models.data import open_dataset, read_image
    from models.inference import Inspector
    from models.preprocess import prepare_for, shrink, vae_input

    insp = Inspector.load(bundle, device="cpu")
    items = open_dataset(data).train[:CALIBRATION_IMAGES]
    out = {"defect": [], "encode": []}
    for item in items:
        [(_, x)] = insp.groups([prepare_for(read_image(item.path), insp.cfg)])
        x = x.contiguous()
        out["defect"] += [x.numpy(), shrink(x, insp.cfg).numpy()]
        out["encode"].append(vae_input(x, insp.cfg.vae_image_size).numpy())
    return out


def int8_static(bundle: Path, graphs: dict[str, Path], folder: Path,
                data: Path) -> dict[str, Path]:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, arrays):
            self.it = iter({"image": a} for a in arrays)

        def get_next(self):
            return next(self.it, None)

    folder.mkdir(parents=True, exist_ok=True)
    inputs = calibration_inputs(bundle, data)
    out = {}
    for name, path in graphs.items():
        pre, out[name] = folder / f"pre-{path.name}", folder / path.name
        quant_pre_process(str(path), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out[name]), Reader(inputs[name]),
                        quant_format=QuantFormat.QDQ, per_channel=True)
    return out


def images_per_s(insp, x: torch.Tensor, seconds: float) -> float:
    with whole_batches(insp, len(x)):
        insp.raw_scores(x)
        n, t0 = 0, time.perf_counter()
        while n < 2 or time.perf_counter() - t0 < seconds:
            insp.raw_scores(x)
            n += 1
        return n * len(x) / (time.perf_counter() - t0)


def rounds(bundle: Path, variants: dict, batch: int, size: int, seconds: float,
           count: int) -> dict[str, list[float]]:
    from models.inference import Inspector

    insp = Inspector.load(bundle, device="cpu")
    shipped = insp.networks
    x = prepared_batch(insp, cycle(decoded(rendered_uploads(size)), 0, batch))
    out = {name: [] for name in ["torch", *variants]}
    for r in range(count):
        for name, values in out.items():
            insp.networks = shipped if name == "torch" else variants[name]
            values.append(round(images_per_s(insp, x, seconds), 2))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]}" for k, v in out.items()),
              flush=True)
    insp.networks = shipped
    return out


def accuracy(bundle: Path, variants: dict, data: Path) -> dict[str, dict]:
    """Image and pixel AUROC of torch and each int8 variant on ``data``'s test split."""
    from models.data import open_dataset
    from models.evaluate import evaluate
    from models.inference import Inspector

    insp = Inspector.load(bundle, device="cpu")
    test = open_dataset(data).test
    out = {}
    for name in ["torch"] + [n for n in variants if "int8" in n]:
        if name != "torch":
            insp.networks = variants[name]
        report = evaluate(insp, test)
        out[name] = {k: round(report[k], 4) for k in ("image_auroc", "pixel_auroc")}
        print(f"{name}: {out[name]}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runtime_options",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="bundle (exported or not)")
    parser.add_argument("--data", type=Path, help="data set: calibrates the static int8 "
                                                  "graphs on train/good, evaluates on test/")
    parser.add_argument("--accuracy", action="store_true", help="evaluate the int8 variants")
    parser.add_argument("--batch", default="8,1", help="batches to time (default 8,1)")
    parser.add_argument("--size", type=int, default=256, help="upload side (default 256)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", help="comma list of variants to time beside torch (default "
                                       "all), e.g. 'onnx all,onnx per-network'")
    args = parser.parse_args(argv)
    ensure_graphs(args.model)
    torch.ones(1 << 22).add_(1)  # the main thread's OpenMP team, as in kensa serve ...
    worker = threading.Thread(target=measure_all, args=(args,))  # ... the work on another
    worker.start()
    worker.join()
    return 0


def measure_all(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="kensa-variants-") as work:
        only = args.only.split(",") if args.only else None
        variants = variants_of(args.model, Path(work), args.data, only)
        for batch in (int(b) for b in args.batch.split(",")):
            print(f"batch {batch}, uploads {args.size}x{args.size}: raw_scores images/s",
                  flush=True)
            got = rounds(args.model, variants, batch, args.size, args.seconds, args.rounds)
            for name, values in got.items():
                ratio = [round(v / t, 2) for v, t in zip(values, got["torch"])]
                print(f"  {name:<18} {values}  / torch {ratio}", flush=True)
        if args.accuracy and args.data:
            accuracy(args.model, variants, args.data)


if __name__ == "__main__":
    raise SystemExit(main())
