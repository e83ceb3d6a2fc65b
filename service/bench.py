"""``kensa bench``: how good and how fast, side by side in one run.

Accuracy half (per ``--data`` dataset): train Kensa and the AE-L2 baseline
(:mod:`service.baseline`) with the same time budget, evaluate both with the same metric
functions, print them side by side.

Speed half (per device: the CPU, and CUDA when present; per upload size in ``--sizes``):

(a) **raw**: :meth:`Inspector.raw_scores` on prepared tensors, at the best batch size (the
    compute limit);
(b) **pipeline**: JPEG bytes -> ``decode_image`` -> ``Inspector.inspect`` -> the service's
    answer (``service.routes.build_result`` + JSON), without and with the mask and heatmap
    PNGs, at batch 1 and at the best batch; plus a per-stage cost breakdown;
(c) **http**: a real ``kensa serve`` subprocess on 127.0.0.1, 1/8/64 concurrent clients on
    ``/v1/inspect`` and ``/v1/inspect/batch``.

Every measurement is bounded in time (``--seconds``) and in count. Absolute figures depend on
the machine and on whatever else runs on it; the ratios (b)/(a), (c)/(a), (c)/(b) are measured
minutes apart in the same run and are what to compare across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import torch

CPU_BATCHES = (1, 8, 32, 64)
GPU_BATCHES = (1, 8, 32, 64, 128, 256)
UPLOADS = 16  # distinct rendered parts per size, cycled
JPEG_QUALITY = 90
MAX_CALLS = 100_000  # count bound of one measurement (the time bound usually ends it first)
SPEED_BUNDLE_MINUTES = 0.25  # training budget of the bundle made when --model is not given
SPEED_BUNDLE_EPOCHS = 20
READY_TIMEOUT_S = 180.0
HTTP_TIMEOUT_S = 300.0
BOUNDARY = "kensa-bench-7d1f3c"
LIVE_SERVERS: set = set()
WAVE_LIMIT = 3.0  # an HTTP level whose first wave needs more than this x --seconds ...
WAVE_FLOOR_S = 20.0  # ... and more than this many seconds is skipped


# ---------------------------------------------------------------------------- entry point


def run_bench(args: argparse.Namespace) -> int:
    """Runs the halves that ``args`` asks for, prints tables, writes ``args.json``.

    Torch runs here the way it runs in ``kensa serve``: one op on the main thread (the server
    loads its bundle there), then all the work in one dedicated worker thread (the server's
    batcher thread). This matters on a CPU that another process keeps busy: libgomp spins at
    every barrier while it has no more OpenMP threads than CPUs, and stops spinning once a
    second thread has its own team. Measured on a busy 2-core machine: one batch-1 forward
    took 1.3 s with one team and 0.05 s with two (or with ``OMP_WAIT_POLICY=PASSIVE``), so
    without this the in-process figures would not be comparable with the server's.

    Returns:
        The process exit status (0).
    """
    torch.ones(1 << 22).add_(1)  # the main thread's OpenMP team, as the server's
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["status"] = _run_bench(args)
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


def _run_bench(args: argparse.Namespace) -> int:
    started = time.monotonic()
    for noisy in ("httpx", "httpcore"):  # one INFO line per request would drown the tables
        logging.getLogger(noisy).setLevel(logging.WARNING)
    work = Path(getattr(args, "work_dir", None) or "runs/bench")
    out: dict = {"kensa_bench": 1, "machine": machine_info(), "settings": _settings(args),
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
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2, sort_keys=True, default=_json_default))
    print(f"wrote {args.json}")
    return 0


def _settings(args: argparse.Namespace) -> dict:
    keys = ("data", "max_minutes", "epochs", "sizes", "seconds", "device", "model", "concurrency",
            "http_batch", "skip_speed", "skip_http", "skip_accuracy")
    return {k: getattr(args, k, None) for k in keys}


def _json_default(v):
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    """CPU model and cores, torch, GPU name, date: what the figures were measured on."""
    info = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "opencv": cv2.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "cuda": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_start": list(os.getloadavg()),
        "git_commit": _git_commit(),
        "omp_env": {k: v for k, v in os.environ.items()
                    if k.startswith(("OMP_", "KMP_", "GOMP_", "MKL_"))},
        "torch_threads_layout": "as kensa serve: a main-thread OpenMP team, then all work in "
                                "one worker thread (see run_bench)",
        "note": "absolute times are of this machine and whatever else ran on it; compare ratios",
    }
    return info


def _git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True, timeout=5, cwd=Path(__file__).resolve().parent,
                           check=False)
        return r.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# ------------------------------------------------------------------------------ accuracy


def accuracy(data: Path, minutes: float, device: str, work: Path,
             epochs: int | None = None) -> dict:
    """Kensa and the AE-L2 baseline on one dataset, same budget (time, and ``epochs`` when
    given), same metrics."""
    from models.config import ModelConfig
    from models.data import open_dataset
    from models.train import train

    from .baseline import train_baseline

    name = data.resolve().name
    bundle = work / name / "kensa"
    print(f"[accuracy] {data}: training Kensa ({minutes:g} min budget) -> {bundle}", flush=True)
    metrics = train(data, bundle, ModelConfig(), _train_config(minutes, epochs),
                    device=device, progress=True, name=f"bench-{name}")
    kensa = dict(metrics.get("evaluation") or {})
    kensa["training_seconds"] = round(float(metrics["training"]["seconds"]), 1)
    print(f"[accuracy] {data}: training the AE-L2 baseline ({minutes:g} min budget)",
          flush=True)
    base = train_baseline(data, minutes, device=device, progress=True, epochs=epochs)
    ds = open_dataset(data)
    baseline = base.evaluate(ds.test) if ds.test else {}
    baseline["training_seconds"] = round(base.train_seconds, 1)
    return {"dataset": str(data), "name": name, "bundle": str(bundle),
            "kensa": kensa, "baseline": baseline}


def _train_config(minutes: float, epochs: int | None):
    from models.config import TrainConfig

    return TrainConfig(max_minutes=minutes, **({"epochs": epochs} if epochs else {}))


ACC_COLUMNS = (("image AUROC", "image_auroc"), ("pixel AUROC", "pixel_auroc"),
               ("AUPRO", "aupro"), ("F1", "f1"), ("false alarms", "false_alarm_rate"),
               ("misses", "miss_rate"), ("train s", "training_seconds"))


def accuracy_table(rows: list[dict]) -> str:
    head = ["dataset", "model"] + [c for c, _ in ACC_COLUMNS]
    body = []
    for r in rows:
        for model in ("kensa", "baseline"):
            rep = r[model]
            cells = [_f(rep.get(k), 1 if k == "training_seconds" else 3) for _, k in ACC_COLUMNS]
            ci = rep.get("image_auroc_ci95")
            if ci and None not in ci:  # the 95 % bootstrap interval beside the figure
                cells[0] += f" ({ci[0]:.2f}-{ci[1]:.2f})"
            body.append([r["name"], "Kensa" if model == "kensa" else "AE-L2"] + cells)
    return "Accuracy (each model at its own calibrated threshold)\n" + _table(head, body)


# --------------------------------------------------------------------------------- speed


def speed(args: argparse.Namespace, work: Path) -> dict:
    """The speed half: every device x size, raw / pipeline / http side by side."""
    from models.bundle import read_info

    sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    concurrency = [int(c) for c in str(getattr(args, "concurrency", "1,8,64")).split(",")
                   if c.strip()]
    http_batch = int(getattr(args, "http_batch", 32))
    bundle = Path(args.model) if getattr(args, "model", None) else speed_bundle(
        work, min(args.max_minutes, SPEED_BUNDLE_MINUTES), args.device,
        getattr(args, "epochs", None) or SPEED_BUNDLE_EPOCHS)
    info = read_info(bundle)
    http = not args.skip_http and _server_available()
    out = {"bundle": str(bundle), "model_version": info.get("version"),
           "image_size": info.get("image_size"), "channels": info.get("channels"),
           "model_config": info.get("model_config"), "http_batch_files": http_batch,
           "http": http, "runs": []}
    if not args.skip_http and not http:
        out["http_skipped"] = "service.app has no run(): the server is not there yet"
    for device in devices(args.device):
        out["runs"] += speed_on(device, bundle, sizes, args.seconds, concurrency, http_batch,
                                http)
    return out


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
    train(data, bundle, ModelConfig(), _train_config(minutes, epochs), device=device,
          progress=False, name="bench-demo")
    return bundle


def _server_available() -> bool:
    try:
        from service import app
    except Exception:  # noqa: BLE001 - a half-written server module means: no HTTP runs
        return False
    return callable(getattr(app, "run", None))


def uploads(size: int, n: int = UPLOADS) -> list[bytes]:
    """``n`` rendered demo washers at ``size`` x ``size``, every fourth with a defect, as JPEG
    quality 90 (what a line camera sends)."""
    from models.synth_demo import DEFECT_KINDS, render_washer

    rng = np.random.default_rng(1234 + size)
    out = []
    for i in range(n):
        defect = DEFECT_KINDS[(i // 4) % len(DEFECT_KINDS)] if i % 4 == 3 else None
        rgb, _ = render_washer(size, rng, defect)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        assert ok
        out.append(buf.tobytes())
    return out


def speed_on(device: str, bundle: Path, sizes: list[int], seconds: float,
             concurrency: list[int], http_batch: int, http: bool) -> list[dict]:
    """All sizes on one device; one server process serves them all."""
    from models.inference import Inspector

    insp = Inspector.load(bundle, device=device)
    server = Server(bundle, device) if http else None
    runs, best = [], None
    try:
        if server is not None:
            server.start()
        for size in sizes:
            print(f"[speed] {device} {size}x{size}: rendering uploads", flush=True)
            jpegs = uploads(size)
            if best is None:
                best = best_batch(insp, jpegs, seconds, device)
            run = {"device": device, "device_name": _device_name(device), "size": size,
                   "upload_bytes_mean": int(np.mean([len(j) for j in jpegs]))}
            print(f"[speed] {device} {size}: (a) raw forward", flush=True)
            run["raw"] = {"best_batch": best["best_batch"], "search": best["search"],
                          **raw_forward(insp, jpegs, best["best_batch"], seconds)}
            print(f"[speed] {device} {size}: (b) in-process pipeline", flush=True)
            run["pipeline"] = pipeline(insp, jpegs, best["best_batch"], seconds)
            run["stages_ms_per_image"] = stages(insp, jpegs, best["best_batch"], seconds)
            if server is not None:
                print(f"[speed] {device} {size}: (c) HTTP", flush=True)
                run["http"] = server.load_all(
                    jpegs, concurrency, http_batch, seconds,
                    run["pipeline"]["verdict"]["best"]["images_per_s"])
            run["memory"] = memory(device, server)
            run["ratios"] = ratios(run)
            runs.append(run)
    finally:
        if server is not None:
            server.stop()
    return runs


def _device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return cpu_model() if device == "cpu" else device


# --- timing -------------------------------------------------------------------------------


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
    lat = []
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    deadline = t0 + seconds
    i = 0
    while i < MAX_CALLS and (i < 3 or time.perf_counter() < deadline):
        t = time.perf_counter()
        call(i)
        if sync:
            sync()
        lat.append(time.perf_counter() - t)
        i += 1
    wall = time.perf_counter() - t0
    out = summary(lat, wall, per_call)
    out["cpu_ms_per_image"] = round(1000 * (time.process_time() - cpu0) / max(1, out["images"]),
                                    3)
    return out


def summary(latencies: Sequence[float], wall: float, per_call: int) -> dict:
    lat = np.asarray(latencies, dtype=np.float64) * 1000.0
    n = len(lat)
    return {"images_per_s": round(n * per_call / wall, 2) if wall > 0 and n else 0.0,
            "p50_ms": round(float(np.percentile(lat, 50)), 3) if n else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 3) if n else None,
            "calls": n, "images": n * per_call, "seconds": round(wall, 3),
            "images_per_call": per_call}


def _sync(device: str) -> Callable[[], None] | None:
    return torch.cuda.synchronize if device == "cuda" else None


def _decoded(jpegs: list[bytes]) -> list[np.ndarray]:
    from models.data import decode_image

    return [decode_image(j) for j in jpegs]


def _cycle(items: list, start: int, n: int) -> list:
    return [items[(start + k) % len(items)] for k in range(n)]


# --- (a) raw forward ------------------------------------------------------------------------


def _prepared(insp, jpegs: list[bytes], batch: int) -> torch.Tensor:
    images = _decoded(jpegs)
    return insp.to_tensor(_cycle(images, 0, batch))


def raw_forward(insp, jpegs: list[bytes], batch: int, seconds: float) -> dict:
    """(a) ``raw_scores`` on a prepared ``(B, C, S, S)`` tensor already on the device."""
    x = _prepared(insp, jpegs, batch)
    with _max_batch(insp, batch):
        return measure(lambda i: insp.raw_scores(x), seconds, batch, _sync(insp.device))


def best_batch(insp, jpegs: list[bytes], seconds: float, device: str) -> dict:
    """Tries each batch size for a share of ``seconds``; the fastest in images/s wins."""
    cands = GPU_BATCHES if device == "cuda" else CPU_BATCHES
    share = max(0.3, seconds / 2)
    search = {}
    for b in cands:
        try:
            search[str(b)] = raw_forward(insp, jpegs, b, share)["images_per_s"]
        except torch.cuda.OutOfMemoryError:
            break
    best = max(search, key=search.get)
    print(f"[speed] {device}: raw images/s by batch {search} -> best batch {best}", flush=True)
    return {"best_batch": int(best), "search": search}


class _max_batch:
    """Lets the Inspector run a whole batch in one forward (it chunks at ``max_batch``)."""

    def __init__(self, insp, batch: int):
        self.insp, self.batch = insp, batch

    def __enter__(self):
        self.old = self.insp.max_batch
        self.insp.max_batch = max(self.old, self.batch)

    def __exit__(self, *exc):
        self.insp.max_batch = self.old


# --- (b) in-process pipeline -------------------------------------------------------------


def answer_encoder(insp) -> Callable[[np.ndarray, object, frozenset], bytes]:
    """The service's own answer builder (``routes.build_result`` + JSON), so (b) does the
    work that a request does minus HTTP; falls back to ``service.imaging`` directly."""
    try:
        from .routes import build_result
        from .schemas import InspectionResult

        def encode(image, result, include):
            body = build_result(InspectionResult, image, result, include, insp,
                                time.perf_counter())
            return body.model_dump_json(exclude_none=True).encode()
        return encode
    except Exception:  # noqa: BLE001 - the routes are another engineer's moving target
        from . import imaging

        def encode_plain(image, result, include):
            d = {"label": result.label, "score": result.score, "threshold": result.threshold,
                 "defects": [{"bbox": r.bbox, "area": r.area, "score": r.score}
                             for r in result.regions]}
            if "mask" in include:
                d["mask"] = imaging.b64(imaging.mask_png(result.mask))
            if "heatmap" in include:
                d["heatmap"] = imaging.b64(imaging.heatmap_png(result.anomaly_map,
                                                               result.pixel_threshold))
            return json.dumps(d).encode()
        return encode_plain


NO_PICTURES = frozenset()
PICTURES = frozenset({"heatmap", "mask"})


def pipeline(insp, jpegs: list[bytes], best: int, seconds: float) -> dict:
    """(b) bytes -> decode -> inspect -> answer, at batch 1 and ``best``, without and with
    the heatmap and mask PNGs."""
    from models.data import decode_image

    encode = answer_encoder(insp)
    out = {}
    for name, include in (("verdict", NO_PICTURES), ("pictures", PICTURES)):
        out[name] = {}
        for batch in sorted({1, best}):
            def call(i, batch=batch, include=include):
                images = [decode_image(j) for j in _cycle(jpegs, i * batch, batch)]
                results = insp.inspect(images)
                return [encode(im, r, include) for im, r in zip(images, results)]
            with _max_batch(insp, batch):
                out[name][f"batch_{batch}"] = measure(call, seconds / 2, batch)
        out[name]["best"] = max(out[name].values(), key=lambda m: m["images_per_s"])
    return out


def stages(insp, jpegs: list[bytes], batch: int, seconds: float) -> dict:
    """Where the pipeline's time goes, ms per image at ``batch``: decode, prepare (resize to
    the model and copy to the device), forward (``raw_scores``), post-processing (the rest
    of ``inspect``: latent verdict, map resized to the upload, mask, regions), the answer
    without pictures, and each picture."""
    from models.data import decode_image

    from . import imaging

    share = max(0.2, seconds / 8)
    images = _decoded(jpegs)
    encode = answer_encoder(insp)
    results = insp.inspect(images)
    ms = lambda m: round(1000.0 / m["images_per_s"], 3) if m["images_per_s"] else None
    with _max_batch(insp, batch):
        x = insp.to_tensor(_cycle(images, 0, batch))
        t = {
            "decode": measure(lambda i: decode_image(jpegs[i % len(jpegs)]), share, 1),
            "prepare": measure(lambda i: insp.to_tensor(_cycle(images, i, batch)), share,
                               batch, _sync(insp.device)),
            "forward": measure(lambda i: insp.raw_scores(x), share, batch, _sync(insp.device)),
            "inspect": measure(lambda i: insp.inspect(_cycle(images, i, batch)), share, batch),
            "answer": measure(lambda i: encode(images[i % len(images)],
                                               results[i % len(results)], NO_PICTURES),
                              share, 1),
            "heatmap_png": measure(lambda i: imaging.heatmap_png(
                results[i % len(results)].anomaly_map, results[i % len(results)].pixel_threshold),
                share, 1),
            "mask_png": measure(lambda i: imaging.mask_png(results[i % len(results)].mask),
                                share, 1),
        }
    out = {k: ms(v) for k, v in t.items()}
    if None not in (out["inspect"], out["prepare"], out["forward"]):
        # a difference of separately timed loops: noisy, floored at 0
        out["post"] = round(max(0.0, out["inspect"] - out["prepare"] - out["forward"]), 3)
    out["batch"] = batch
    return out


# --- (c) HTTP ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multipart(field: str, jpegs: Sequence[bytes]) -> bytes:
    """A ready-made multipart body (built once, so the load generator spends no CPU on it)."""
    parts = []
    for n, j in enumerate(jpegs):
        parts.append(f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; "
                     f"filename=\"part{n}.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n".encode())
        parts.append(j)
        parts.append(b"\r\n")
    parts.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(parts)


@dataclass(eq=False)
class Server:
    """A real ``kensa serve`` subprocess on 127.0.0.1 (loopback only)."""

    bundle: Path
    device: str
    proc: subprocess.Popen | None = None
    port: int = 0
    logfile: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import httpx

        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KENSA_")}
        env.update({"KENSA_LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1"})
        fd, name = tempfile.mkstemp(prefix="kensa-bench-server-", suffix=".log")
        self.logfile = Path(name)
        cmd = [sys.executable, "-m", "service.cli", "serve", "--model", str(self.bundle),
               "--host", "127.0.0.1", "--port", str(self.port), "--device", self.device]
        print(f"[speed] starting {' '.join(cmd[1:])}", flush=True)
        self.proc = subprocess.Popen(cmd, stdout=fd, stderr=subprocess.STDOUT, env=env,
                                     cwd=Path(__file__).resolve().parents[1])
        os.close(fd)
        LIVE_SERVERS.add(self)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kensa serve exited with {self.proc.returncode}: "
                                   f"{self.log_tail()}")
            try:
                if httpx.get(self.url + "/health/ready", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"kensa serve not ready after {READY_TIMEOUT_S:.0f} s: "
                           f"{self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-n:] if self.logfile else ""
        except OSError:
            return ""

    def stop(self) -> None:
        LIVE_SERVERS.discard(self)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if self.logfile is not None:
            self.logfile.unlink(missing_ok=True)

    def peak_rss_mb(self) -> float | None:
        return _vm(self.proc.pid, "VmHWM") if self.proc and self.proc.poll() is None else None

    def load_all(self, jpegs: list[bytes], concurrency: list[int], batch_files: int,
                 seconds: float, expected_images_per_s: float) -> dict:
        """Both endpoints at every concurrency level; checks one answer of each first.

        Every client sends at least one request, so a level whose first wave alone
        (clients x images per request) would take over ``WAVE_LIMIT`` x ``seconds`` and over
        ``WAVE_FLOOR_S`` at ``expected_images_per_s`` (the in-process pipeline's rate) is
        skipped, and says so.
        """
        single = [multipart("file", [j]) for j in jpegs]
        batch = [multipart("files", _cycle(jpegs, k, batch_files)) for k in range(len(jpegs))]
        self._check(single[0], batch[0], batch_files)
        out = {"inspect": {}, "batch": {}}
        for name, path, bodies, per in (("inspect", "/v1/inspect", single, 1),
                                        ("batch", "/v1/inspect/batch", batch, batch_files)):
            for c in concurrency:
                wave_s = c * per / max(expected_images_per_s, 1e-9)
                if c > 1 and wave_s > max(WAVE_LIMIT * seconds, WAVE_FLOOR_S):
                    out[name][str(c)] = {"skipped": f"one wave of {c} x {per} images would take "
                                                    f"about {wave_s:.0f} s at "
                                                    f"{expected_images_per_s:.1f} images/s"}
                    print(f"[speed]   {name:<8} {c:>3} clients: skipped "
                          f"({out[name][str(c)]['skipped']})", flush=True)
                    continue
                before = self.snapshot()
                m = asyncio.run(load(self.url + path, bodies, c, seconds, per))
                m.update(self.delta(before, self.snapshot(), m["images"]),
                         server_peak_rss_mb=self.peak_rss_mb())
                out[name][str(c)] = m
                _say_http(name, c, m)
            out[name]["best"] = max((m for m in out[name].values() if "images_per_s" in m),
                                    key=lambda m: m["images_per_s"])
        return out

    def snapshot(self) -> dict:
        """Server and bench CPU seconds, and the server's batch-size counters."""
        snap = {"server_cpu": _cpu_seconds(self.proc.pid), "bench_cpu": time.process_time()}
        import httpx

        with contextlib.suppress(httpx.HTTPError, ValueError):  # diagnostics only
            text = httpx.get(self.url + "/metrics", timeout=10.0).text
            for line in text.splitlines():
                if line.startswith(("kensa_batch_size_sum ", "kensa_batch_size_count ")):
                    key, value = line.split()
                    snap[key] = float(value)
        return snap

    @staticmethod
    def delta(before: dict, after: dict, images: int) -> dict:
        """What one load run cost: mean images per model call (dynamic batching at work),
        server and client (this process: the load generator) CPU seconds per image."""
        d = {k: after[k] - before[k] for k in before if k in after and before[k] is not None
             and after[k] is not None}
        calls = d.get("kensa_batch_size_count")
        return {
            "mean_model_batch": round(d["kensa_batch_size_sum"] / calls, 2) if calls else None,
            "server_cpu_ms_per_image": round(1000 * d["server_cpu"] / images, 3)
            if images and "server_cpu" in d else None,
            "client_cpu_ms_per_image": round(1000 * d["bench_cpu"] / images, 3)
            if images else None,
        }

    def _check(self, single: bytes, batch: bytes, batch_files: int) -> None:
        import httpx

        headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
        r = httpx.post(self.url + "/v1/inspect", content=single, headers=headers,
                       timeout=HTTP_TIMEOUT_S)
        if r.status_code != 200 or "label" not in r.json():
            raise RuntimeError(f"/v1/inspect answered {r.status_code}: {r.text[:300]}")
        r = httpx.post(self.url + "/v1/inspect/batch", content=batch, headers=headers,
                       timeout=HTTP_TIMEOUT_S)
        results = r.json().get("results", []) if r.status_code == 200 else []
        if len(results) != batch_files or any("error" in e for e in results):
            raise RuntimeError(f"/v1/inspect/batch answered {r.status_code}: {r.text[:300]}")


def _say_http(name: str, c: int, m: dict) -> None:
    print(f"[speed]   {name:<8} {c:>3} clients: {m['images_per_s']:8.1f} images/s, "
          f"p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms, model batch {m['mean_model_batch']}, "
          f"CPU ms/image server {m['server_cpu_ms_per_image']} client "
          f"{m['client_cpu_ms_per_image']}, errors {m['errors'] or 0}", flush=True)


async def load(url: str, bodies: list[bytes], clients: int, seconds: float,
               images_per_request: int) -> dict:
    """``clients`` concurrent connections, each posting one body after another until
    ``seconds`` have passed (every client sends at least one) or :data:`MAX_CALLS` requests.

    Returns:
        :func:`summary` of the 200 answers, plus ``errors`` (status or exception -> count).
    """
    import httpx

    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    lat: list[float] = []
    errors: Counter = Counter()
    issued = 0
    async with httpx.AsyncClient(limits=limits, timeout=HTTP_TIMEOUT_S) as client:
        # open every connection and warm the server before the clock starts
        await asyncio.gather(*(client.get(url.rsplit("/v1/", 1)[0] + "/health/live")
                                for _ in range(clients)))
        t0 = time.perf_counter()
        deadline = t0 + seconds

        async def worker(k: int) -> None:
            nonlocal issued
            first = True
            while issued < MAX_CALLS and (first or time.perf_counter() < deadline):
                first = False
                body = bodies[issued % len(bodies)]
                issued += 1
                t = time.perf_counter()
                try:
                    r = await client.post(url, content=body, headers=headers)
                    await r.aread()
                    status = r.status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                if status == 200:
                    lat.append(time.perf_counter() - t)
                else:
                    errors[str(status)] += 1

        await asyncio.gather(*(worker(k) for k in range(clients)))
        wall = time.perf_counter() - t0
    out = summary(lat, wall, images_per_request)
    out.update(clients=clients, errors=dict(errors),
               request_p50_ms_per_image=round(out["p50_ms"] / images_per_request, 3)
               if out["p50_ms"] is not None else None)
    return out


# --- memory and ratios ------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _vm(pid: int | str, key: str) -> float | None:
    """``VmHWM`` (peak resident set) or ``VmRSS`` of a process, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    return None


def memory(device: str, server: Server | None) -> dict:
    """Peak RSS so far (the bench process's includes rendering and any training it did)."""
    out = {"bench_peak_rss_mb": _vm("self", "VmHWM"), "bench_rss_mb": _vm("self", "VmRSS"),
           "server_peak_rss_mb": server.peak_rss_mb() if server else None}
    if device == "cuda":
        out["bench_gpu_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        out["server_gpu_used_mb"] = _nvidia_smi_used(server.proc.pid) if server else None
    return out


def _nvidia_smi_used(pid: int) -> float | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        r = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                            "--format=csv,noheader,nounits"], capture_output=True, text=True,
                           timeout=10, check=False)
        for line in r.stdout.splitlines():
            p, used = (s.strip() for s in line.split(","))
            if p == str(pid):
                return float(used)
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    return None


def ratios(run: dict) -> dict:
    """(b)/(a), (c)/(a), (c)/(b) in images/s, each at its best batch or concurrency."""
    raw = run["raw"]["images_per_s"]
    pv = run["pipeline"]["verdict"]["best"]["images_per_s"]
    pp = run["pipeline"]["pictures"]["best"]["images_per_s"]
    out = {"pipeline_over_raw": _div(pv, raw), "pipeline_pictures_over_raw": _div(pp, raw)}
    if "http" in run:
        hi = run["http"]["inspect"]["best"]["images_per_s"]
        hb = run["http"]["batch"]["best"]["images_per_s"]
        out.update(http_inspect_over_raw=_div(hi, raw), http_batch_over_raw=_div(hb, raw),
                   http_inspect_over_pipeline=_div(hi, pv),
                   http_batch_over_pipeline=_div(hb, pv))
    return out


def _div(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


# ---------------------------------------------------------------------------------- tables


def speed_tables(sp: dict) -> str:
    lines = [(f"Speed: bundle {sp['bundle']} (model input {sp['image_size']}x"
              f"{sp['image_size']}, {sp['channels']} channel(s)); uploads are JPEG "
              f"q{JPEG_QUALITY} at the size shown")]
    head = ["device", "size", "what", "batch/clients", "images/s", "p50 ms", "p99 ms",
            "CPU ms/img", "model batch"]

    def row(dev, size, label, key, m):
        cpu = m.get("cpu_ms_per_image", m.get("server_cpu_ms_per_image"))
        return [dev, size, label, key, _f(m["images_per_s"], 1), _f(m["p50_ms"], 2),
                _f(m["p99_ms"], 2), _f(cpu, 2), _f(m.get("mean_model_batch"), 1)]

    body = []
    for r in sp["runs"]:
        dev, size = r["device"], r["size"]
        body.append(row(dev, size, "(a) raw forward", r["raw"]["best_batch"], r["raw"]))
        for name, label in (("verdict", "(b) pipeline"), ("pictures", "(b) +heatmap+mask")):
            for key, m in r["pipeline"][name].items():
                if key != "best":
                    body.append(row(dev, size, label, key.split("_")[1], m))
        for name, label in (("inspect", "(c) /v1/inspect"),
                            ("batch", f"(c) /v1/inspect/batch x{sp['http_batch_files']}")):
            for key, m in (r.get("http") or {}).get(name, {}).items():
                if key != "best":
                    body.append(row(dev, size, label, key, m) if "images_per_s" in m else
                                [dev, size, label, key, "skipped", "", "", "", ""])
    lines.append(_table(head, body))
    lines.append("(CPU ms/img: the bench process for (a) and (b), the server process for (c); "
                 "p50/p99 are per call: one batch, or one request)")
    lines.append("\nRatios of images/s (each at its best batch / concurrency)")
    keys = sorted({k for r in sp["runs"] for k in r["ratios"]})
    lines.append(_table(["device", "size"] + keys,
                        [[r["device"], r["size"]] + [_f(r["ratios"].get(k), 3) for k in keys]
                         for r in sp["runs"]]))
    lines.append("\nWhere the time goes (ms per image, in-process, at the best batch)")
    skeys = ["decode", "prepare", "forward", "post", "answer", "heatmap_png", "mask_png"]
    lines.append(_table(["device", "size"] + skeys,
                        [[r["device"], r["size"]] + [_f(r["stages_ms_per_image"].get(k), 3)
                                                     for k in skeys] for r in sp["runs"]]))
    lines.append("\nMemory (MiB)")
    mkeys = sorted({k for r in sp["runs"] for k in r["memory"]})
    lines.append(_table(["device", "size"] + mkeys,
                        [[r["device"], r["size"]] + [_f(r["memory"].get(k), 1) for k in mkeys]
                         for r in sp["runs"]]))
    return "\n".join(lines)


def _f(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _table(head: list, rows: list[list]) -> str:
    cells = [[str(c) for c in head]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.rjust(w) if i > 1 else c.ljust(w)
                              for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(cells[0]), "  ".join("-" * w for w in widths)]
                     + [fmt(r) for r in cells[1:]])
