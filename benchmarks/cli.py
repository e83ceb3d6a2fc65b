"""``python -m benchmarks`` (and its alias ``kensa bench``): the command line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from models.config import DEVICES


def build_parser(prog: str = "python -m benchmarks") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Accuracy and speed benchmarks (prints tables, writes JSON).")
    parser.add_argument("--data", type=Path, action="append", default=[],
                        help="dataset for the accuracy half (repeatable); none = speed only")
    parser.add_argument("--max-minutes", type=float, default=15.0,
                        help="training budget per model for the accuracy half (default 15)")
    parser.add_argument("--sizes", default="256,512", help="image sides for the speed half")
    parser.add_argument("--skip-speed", action="store_true", help="accuracy half only")
    parser.add_argument("--skip-http", action="store_true", help="no end-to-end HTTP runs")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="time per speed measurement")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="default auto")
    parser.add_argument("--runtime", default="torch,onnx",
                        help="comma list of what runs the networks in the speed half, side by "
                             "side on the same bundle (default torch,onnx; onnx exports the "
                             "bundle's graphs first when it has none)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/latest.json"),
                        help="where to write the results")
    parser.add_argument("--model", type=Path,
                        help="bundle for the speed half (default: train a default-architecture "
                             "bundle on demo data for a few seconds)")
    parser.add_argument("--epochs", type=int,
                        help="upper bound on passes over the images for every model trained "
                             "(default: the trainer's; the time budget usually binds first)")
    parser.add_argument("--skip-accuracy", action="store_true", help="speed half only")
    parser.add_argument("--concurrency", default="1,8,64",
                        help="concurrent HTTP clients to try (default 1,8,64)")
    parser.add_argument("--http-batch", type=int, default=32,
                        help="images per /v1/inspect/batch request (default 32)")
    parser.add_argument("--server-cpus", default="",
                        help="pin the HTTP rows' servers to these cores (taskset list, e.g. "
                             "0,1) while this process and its clients run where it was "
                             "started (default: no pinning)")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench"),
                        help="where trained bundles and demo data go (default runs/bench)")
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m benchmarks") -> int:
    """Parses ``argv``, runs the benchmarks; returns the exit status (2 on a KensaError)."""
    from models.errors import KensaError

    from .run import run_bench

    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run_bench(args)
    except KensaError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
