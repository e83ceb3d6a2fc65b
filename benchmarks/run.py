"""One benchmark run: the halves ``args`` asks for, the tables printed, the JSON written."""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from pathlib import Path

import torch

from .accuracy import accuracy
from .http_load import LIVE_SERVERS
from .machine import machine_info
from .report import accuracy_table, speed_tables, write_json
from .speed import speed

SETTINGS = ("data", "max_minutes", "epochs", "sizes", "seconds", "device", "runtime", "model",
            "concurrency", "http_batch", "skip_speed", "skip_http", "skip_accuracy")


def run_bench(args: argparse.Namespace) -> int:
    """Runs the halves that ``args`` asks for, prints tables, writes ``args.json``.

    Torch runs here the way it runs in ``kensa serve``: one op on the main thread (the server
    loads its bundle there), then all the work in one dedicated worker thread (the server's
    batcher thread). On a CPU that another process keeps busy, libgomp spins at every barrier
    while it has no more OpenMP threads than CPUs and stops once a second thread has its own
    team, so without this layout the in-process figures would not be comparable with the
    server's (benchmarks/HISTORY.md).

    Returns:
        The process exit status (0).
    """
    torch.ones(1 << 22).add_(1)  # the main thread's OpenMP team, as the server's
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["status"] = run_all(args)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            outcome["error"] = exc

    # a daemon thread, so that Ctrl-C ends the process even in the middle of training
    thread = threading.Thread(target=work, name="kensa-bench", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.5)
    finally:
        for server in list(LIVE_SERVERS):  # no server outlives the benchmark
            server.stop()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["status"]


def run_all(args: argparse.Namespace) -> int:
    """The body of :func:`run_bench`, on its worker thread."""
    started = time.monotonic()
    for noisy in ("httpx", "httpcore"):  # one INFO line per request would drown the tables
        logging.getLogger(noisy).setLevel(logging.WARNING)
    work = Path(getattr(args, "work_dir", None) or "runs/bench")
    out: dict = {"kensa_bench": 1, "machine": machine_info(),
                 "settings": {k: getattr(args, k, None) for k in SETTINGS},
                 "accuracy": [], "speed": None}
    if args.data and not getattr(args, "skip_accuracy", False):
        for data in args.data:
            row = accuracy(Path(data), args.max_minutes, args.device, work,
                           getattr(args, "epochs", None))
            out["accuracy"].append(row)
        print(accuracy_table(out["accuracy"]), flush=True)
    if not args.skip_speed:
        out["speed"] = speed(args, work)
        print(speed_tables(out["speed"]), flush=True)
    out["machine"]["load_average_end"] = list(os.getloadavg())
    out["seconds"] = round(time.monotonic() - started, 1)
    write_json(args.json, out)
    print(f"wrote {args.json}")
    return 0
