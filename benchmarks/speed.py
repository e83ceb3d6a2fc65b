"""The speed half: every device x upload size, (a) raw forward, (b) in-process pipeline and
(c) HTTP side by side, with memory and the ratios between them."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from .accuracy import train_config
from .http_load import Server
from .inprocess import best_batch, pipeline, raw_forward, stages
from .machine import device_name
from .resources import memory
from .workload import rendered_uploads

SPEED_BUNDLE_MINUTES = 0.25  # training budget of the bundle made when --model is not given
SPEED_BUNDLE_EPOCHS = 20


def speed(args: argparse.Namespace, work: Path) -> dict:
    """The speed half: every device x size, raw / pipeline / http side by side, each runtime
    of ``args.runtime`` on the same bundle, and the runtimes' ratios."""
    from models.bundle import read_info

    sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    concurrency = [int(c) for c in str(getattr(args, "concurrency", "1,8,64")).split(",")
                   if c.strip()]
    http_batch = int(getattr(args, "http_batch", 32))
    bundle = Path(args.model) if getattr(args, "model", None) else speed_bundle(
        work, min(args.max_minutes, SPEED_BUNDLE_MINUTES), args.device,
        getattr(args, "epochs", None) or SPEED_BUNDLE_EPOCHS)
    wanted = runtimes(getattr(args, "runtime", None) or "torch")
    if "onnx" in wanted:
        ensure_graphs(bundle)
    info = read_info(bundle)
    http = not args.skip_http
    out = {"bundle": str(bundle), "model_version": info.get("version"),
           "server_cpus": getattr(args, "server_cpus", "") or None,
           "image_size": info.get("image_size"), "channels": info.get("channels"),
           "model_config": info.get("model_config"), "http_batch_files": http_batch,
           "http": http, "runtimes": wanted, "runs": []}
    for device in devices(args.device):
        out["runs"] += speed_on(device, bundle, sizes, args.seconds, concurrency, http_batch,
                                wanted, http, getattr(args, "server_cpus", "") or "")
    out["runtime_ratios"] = runtime_ratios(out["runs"])
    return out


def runtimes(choice: str) -> list[str]:
    """``--runtime``: a comma list of ``torch`` and ``onnx``, in the order given."""
    from models.networks import RUNTIMES

    wanted = [r.strip() for r in str(choice).split(",") if r.strip()]
    bad = [r for r in wanted if r not in RUNTIMES]
    if bad or not wanted:
        raise SystemExit(f"--runtime: {','.join(bad) or 'nothing'} is not one of "
                         f"{', '.join(RUNTIMES)}")
    return list(dict.fromkeys(wanted))


def ensure_graphs(bundle: Path) -> None:
    """Exports the bundle's ONNX graphs when it has none (its version stays the same)."""
    from models.exports import export_onnx, has_graphs

    if not has_graphs(bundle):
        print(f"[speed] {bundle} has no ONNX graphs: exporting them (kensa export)", flush=True)
        export_onnx(bundle)


def devices(choice: str) -> list[str]:
    """``auto``: the CPU, plus CUDA when present (side by side); otherwise just the one."""
    if choice == "auto":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [choice]


def speed_bundle(work: Path, minutes: float, device: str, epochs: int) -> Path:
    """A default-architecture bundle trained for seconds on demo data (weights barely matter
    for speed; the shapes and the code path are the real ones)."""
    from models.config import ModelConfig
    from models.synth_demo import make_demo_dataset
    from models.train import train

    data, bundle = work / "demo-data", work / "demo-bundle"
    make_demo_dataset(data, seed=0, n_train=32, n_test_good=2, n_per_defect=1, size=128)
    print(f"[speed] training a default-architecture bundle for {minutes * 60:.0f} s on demo "
          f"data -> {bundle} (pass --model to reuse one)", flush=True)
    train(data, bundle, ModelConfig(), train_config(minutes, epochs), device=device,
          progress=False, name="bench-demo")
    return bundle


def speed_on(device: str, bundle: Path, sizes: list[int], seconds: float,
             concurrency: list[int], http_batch: int, wanted: list[str],
             http: bool, server_cpus: str = "") -> list[dict]:
    """All sizes on one device, each size measured for every runtime in turn (so a change in
    the machine's load falls on both); one server process per runtime serves all sizes
    (pinned to ``server_cpus`` when given)."""
    from models.inference import Inspector

    inspectors = {r: Inspector.load(bundle, device=device, runtime=r) for r in wanted}
    servers = {r: Server(bundle, device, r, cpus=server_cpus) for r in wanted} if http else {}
    runs, best = [], {}
    try:
        for server in servers.values():
            server.start()
        for size in sizes:
            print(f"[speed] {device} {size}x{size}: rendering uploads", flush=True)
            jpegs = rendered_uploads(size)
            for runtime, inspector in inspectors.items():
                if runtime not in best:
                    best[runtime] = best_batch(inspector, jpegs, seconds, device)
                run = speed_at(inspector, device, size, jpegs, best[runtime], seconds)
                run["runtime"] = runtime
                server = servers.get(runtime)
                if server is not None:
                    print(f"[speed] {device} {runtime} {size}: (c) HTTP", flush=True)
                    run["http"] = server.load_all(
                        jpegs, concurrency, http_batch, seconds,
                        run["pipeline"]["verdict"]["best"]["images_per_s"])
                run["memory"] = memory(device, server)
                run["ratios"] = ratios(run)
                runs.append(run)
    finally:
        for server in servers.values():
            server.stop()
    return runs


def speed_at(inspector, device: str, size: int, jpegs: list[bytes], best: dict,
             seconds: float) -> dict:
    """(a) and (b) at one upload size, with the per-stage costs."""
    run = {"device": device, "device_name": device_name(device), "size": size,
           "upload_bytes_mean": int(np.mean([len(j) for j in jpegs]))}
    label = f"{device} {inspector.runtime} {size}"
    print(f"[speed] {label}: (a) raw forward", flush=True)
    run["raw"] = {"best_batch": best["best_batch"], "search": best["search"],
                  **raw_forward(inspector, jpegs, best["best_batch"], seconds)}
    print(f"[speed] {label}: (b) in-process pipeline", flush=True)
    run["pipeline"] = pipeline(inspector, jpegs, best["best_batch"], seconds)
    run["stages_ms_per_image"] = stages(inspector, jpegs, best["best_batch"], seconds)
    return run


def ratios(run: dict) -> dict:
    """(b)/(a), (c)/(a), (c)/(b) in images/s, each at its best batch or concurrency."""
    raw = run["raw"]["images_per_s"]
    verdict = run["pipeline"]["verdict"]["best"]["images_per_s"]
    with_pictures = run["pipeline"]["pictures"]["best"]["images_per_s"]
    out = {"pipeline_over_raw": _ratio(verdict, raw),
           "pipeline_pictures_over_raw": _ratio(with_pictures, raw)}
    if "http" in run:
        inspect = run["http"]["inspect"]["best"]["images_per_s"]
        batch = run["http"]["batch"]["best"]["images_per_s"]
        out.update(http_inspect_over_raw=_ratio(inspect, raw),
                   http_batch_over_raw=_ratio(batch, raw),
                   http_inspect_over_pipeline=_ratio(inspect, verdict),
                   http_batch_over_pipeline=_ratio(batch, verdict))
    return out


def compared(run: dict) -> dict[str, tuple[str, ...]]:
    """The figures the runtimes are compared on: name -> where it is in a run."""
    out = {"raw images/s": ("raw", "images_per_s"),
           "pipeline images/s": ("pipeline", "verdict", "best", "images_per_s"),
           "pipeline batch-1 p50": ("pipeline", "verdict", "batch_1", "p50_ms")}
    for clients in (k for k in (run.get("http") or {}).get("inspect", {}) if k != "best"):
        out[f"http {clients} clients images/s"] = ("http", "inspect", clients, "images_per_s")
        out[f"http {clients} clients p50"] = ("http", "inspect", clients, "p50_ms")
        out[f"http {clients} clients p99"] = ("http", "inspect", clients, "p99_ms")
    out["server peak RSS"] = ("memory", "server_peak_rss_mb")
    return out


def runtime_ratios(runs: list[dict]) -> list[dict]:
    """Each runtime other than the first against the first (torch, by default), per device and
    size: ``value / first value`` of each :func:`compared` figure (for throughput above 1 is
    faster, for latency and memory below 1 is less)."""
    by_key = {(r["device"], r["size"], r["runtime"]): r for r in runs}
    order = list(dict.fromkeys(r["runtime"] for r in runs))
    out = []
    for (device, size, runtime), run in by_key.items():
        base = by_key.get((device, size, order[0]))
        if runtime == order[0] or base is None:
            continue
        row = {"device": device, "size": size, "runtime": runtime, "over": order[0]}
        for name, where in compared(base).items():
            row[name] = _ratio(_dig(run, where), _dig(base, where))
        out.append(row)
    return out


def _dig(run: dict, where: tuple[str, ...]) -> float | None:
    for key in where:
        run = run.get(key) if isinstance(run, dict) else None
    return run if isinstance(run, (int, float)) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return round(a / b, 3) if b else None
