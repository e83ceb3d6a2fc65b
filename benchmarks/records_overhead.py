"""What recording costs: ``kensa serve`` with records on (SQLite in a temp folder) and off,
the same bundle and uploads, C concurrent clients on ``/v1/inspect`` for S seconds each, the
two settings alternated ``--rounds`` times so a busy machine hurts both alike.

    python -m benchmarks.records_overhead --model tests/fixtures/golden/bundle --size 256

Prints requests/s and median/p95 latency per setting and the on/off ratios (issue 25's target:
throughput >= 90 % of off, median latency +2 ms at most).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from .http_load import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]


def washers(size: int, n: int) -> list[bytes]:
    from models.synth_demo import render_washer

    out = []
    for seed in range(n):
        defect = "scratch" if seed % 4 == 0 else None  # some abnormal ones: images kept
        image, _ = render_washer(size, np.random.default_rng(seed), defect)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def cpu_list(text: str) -> set[int]:
    """``0,1`` or ``2-7`` or ``0,4-5``: a set of CPU numbers (argparse type)."""
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            first, _, last = part.partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a CPU list such as 0,1 or 2-7"
                                         ) from None
    if not cpus or not cpus <= os.sched_getaffinity(0):
        raise argparse.ArgumentTypeError(f"CPUs {text} are not all usable here (usable: "
                                         f"{sorted(os.sched_getaffinity(0))})")
    return cpus


def start(model: str, env_extra: dict[str, str], cpus: set[int] | None = None,
          root: Path = REPO_ROOT) -> tuple[subprocess.Popen, str]:
    """``kensa serve`` from the checkout ``root`` (this one by default), pinned to ``cpus``
    (all by default); returns it and its base URL once ready."""
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KENSA_") or k == "KENSA_SWITCH_S"} | env_extra
    if root != REPO_ROOT:
        env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep)
    # pinned before the interpreter starts, so torch sizes its thread pool to these CPUs
    pin = None if cpus is None else (lambda: os.sched_setaffinity(0, cpus))
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--model", model,
                             "--port", str(port), "--device", "cpu"], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=pin)  # noqa: PLW1509 - one syscall, no lock taken
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server never became ready")


async def load(base: str, bodies: list[bytes], clients: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client(n: int, c: httpx.AsyncClient) -> None:
        k = n
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            r = await c.post(f"{base}/v1/inspect",
                             files={"file": ("p.png", bodies[k % len(bodies)], "image/png")})
            r.raise_for_status()
            latencies.append(time.perf_counter() - t0)
            k += clients

    async with httpx.AsyncClient(timeout=60) as c:
        await asyncio.gather(*(client(n, c) for n in range(clients)))
    return latencies


def side_by_side_arguments(description: str) -> argparse.ArgumentParser:
    """The flags of the side-by-side benchmarks: bundle, upload size, clients, time, rounds,
    and where server and clients run (:func:`pin_clients` applies ``--client-cpus``)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", required=True)
    p.add_argument("--size", type=int, default=256, help="upload side, pixels")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--server-cpus", type=cpu_list, metavar="LIST",
                   help="pin the server to these CPUs, e.g. 0,1 (default: where this runs)")
    p.add_argument("--client-cpus", type=cpu_list, metavar="LIST",
                   help="pin this process (the load generator and any emulated pages) to "
                        "these CPUs, e.g. 2-7 (default: where this runs)")
    return p


def pin_clients(args: argparse.Namespace) -> None:
    """Moves this process (the clients) to ``--client-cpus``, if given; prints the pinning."""
    if args.client_cpus:
        os.sched_setaffinity(0, args.client_cpus)
    print(f"server CPUs {sorted(args.server_cpus or os.sched_getaffinity(0))}, client CPUs "
          f"{sorted(os.sched_getaffinity(0))} (of {os.cpu_count()})")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far, all its threads (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def warm_server(model: str, env_extra: dict[str, str], bodies: list[bytes], clients: int,
                cpus: set[int] | None = None, root: Path = REPO_ROOT
                ) -> Iterator[tuple[subprocess.Popen, str]]:
    """A server (from ``root``, on ``cpus``) with ``env_extra``, warmed up by ``clients``
    for 2 s, and its base URL; stopped on the way out."""
    proc, base = start(model, env_extra, cpus, root)
    try:
        asyncio.run(load(base, bodies, clients, 2.0))  # warm-up
        yield proc, base
    finally:
        proc.terminate()
        proc.wait(30)


def one_round(model: str, env_extra: dict[str, str], bodies: list[bytes], clients: int,
              measure: Callable[[str], Awaitable[list[float]]], cpus: set[int] | None = None,
              root: Path = REPO_ROOT, cpu_seconds: list[float] | None = None) -> list[float]:
    """Returns ``measure(base)``'s latencies on a :func:`warm_server`; appends the CPU
    seconds the server used during ``measure`` (all its threads) to ``cpu_seconds``, if
    given."""
    with warm_server(model, env_extra, bodies, clients, cpus, root) as (proc, base):
        before = process_cpu_s(proc.pid)
        latencies = asyncio.run(measure(base))
        if cpu_seconds is not None:
            cpu_seconds.append(process_cpu_s(proc.pid) - before)
        return latencies


def main() -> None:
    p = side_by_side_arguments(__doc__.split("\n\n")[0])
    p.add_argument("--keep-images", default="abnormal")
    a = p.parse_args()
    pin_clients(a)
    bodies = washers(a.size, 32)
    runs: dict[str, list[list[float]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        settings = {"off": {"KENSA_RECORDS": "off"},
                    "on": {"KENSA_DATA_DIR": f"{tmp}/data", "KENSA_KEEP_IMAGES": a.keep_images}}
        for _ in range(a.rounds):
            for name in ("off", "on"):
                runs[name].append(one_round(
                    a.model, settings[name], bodies, a.clients,
                    lambda base: load(base, bodies, a.clients, a.seconds), a.server_cpus))
    result = {}
    for name, rounds in runs.items():
        rates = [len(lat) / a.seconds for lat in rounds]
        every = [x for lat in rounds for x in lat]
        result[name] = (statistics.median(rates), statistics.median(every) * 1000,
                        float(np.percentile(every, 95)) * 1000)
        print(f"records {name:3}: {result[name][0]:7.1f} req/s (median of {a.rounds} rounds), "
              f"latency median {result[name][1]:.2f} ms, p95 {result[name][2]:.2f} ms")
    print(f"on/off throughput {result['on'][0] / result['off'][0]:.3f}; median latency "
          f"{result['on'][1] - result['off'][1]:+.2f} ms ({a.clients} clients, {a.size}px PNG, "
          f"keep {a.keep_images})")


if __name__ == "__main__":
    main()
