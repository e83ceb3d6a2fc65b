"""(c) Speed over HTTP: a real ``kensa serve`` process on the loopback and a load generator
of concurrent clients on ``/v1/inspect`` and ``/v1/inspect/batch``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .resources import cpu_seconds, memory_mb
from .timing import MAX_CALLS, cycle, summary

READY_TIMEOUT_S = 180.0
HTTP_TIMEOUT_S = 300.0
BOUNDARY = "kensa-bench-7d1f3c"
HEADERS = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
LIVE_SERVERS: set = set()  # started and not yet stopped; run_bench stops them all at the end
WAVE_LIMIT = 3.0  # an HTTP level whose first wave needs more than this x --seconds ...
WAVE_FLOOR_S = 20.0  # ... and more than this many seconds is skipped
REPO_ROOT = Path(__file__).resolve().parents[1]  # where ``python -m service.cli`` imports


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multipart(field_name: str, jpegs: Sequence[bytes]) -> bytes:
    """A ready-made multipart body (built once, so the load generator spends no CPU on it)."""
    parts = []
    for n, j in enumerate(jpegs):
        parts.append(f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field_name}\"; "
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
    runtime: str = "torch"
    proc: subprocess.Popen | None = None
    port: int = 0
    logfile: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # KENSA_* settings for this server
    cpus: str = ""  # taskset core list the server is pinned to ("": none)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import httpx

        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KENSA_")}
        env.update({"KENSA_LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1", **self.env})
        fd, name = tempfile.mkstemp(prefix="kensa-bench-server-", suffix=".log")
        self.logfile = Path(name)
        cmd = [sys.executable, "-m", "service.cli", "serve", "--model", str(self.bundle),
               "--host", "127.0.0.1", "--port", str(self.port), "--device", self.device,
               "--runtime", self.runtime]
        if self.cpus:
            cmd = ["taskset", "-c", self.cpus, *cmd]
        print(f"[speed] starting {' '.join(cmd[1:])}", flush=True)
        self.proc = subprocess.Popen(cmd, stdout=fd, stderr=subprocess.STDOUT, env=env,
                                     cwd=REPO_ROOT)
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
        return memory_mb(self.proc.pid, "VmHWM") if self.proc and self.proc.poll() is None else None

    def load_all(self, jpegs: list[bytes], concurrency: list[int], batch_files: int,
                 seconds: float, expected_images_per_s: float) -> dict:
        """Both endpoints at every concurrency level; checks one answer of each first.

        Every client sends at least one request, so a level whose first wave alone
        (clients x images per request) would take over ``WAVE_LIMIT`` x ``seconds`` and over
        ``WAVE_FLOOR_S`` at ``expected_images_per_s`` (the in-process pipeline's rate) is
        skipped, and says so.
        """
        single = [multipart("file", [j]) for j in jpegs]
        batch = [multipart("files", cycle(jpegs, k, batch_files)) for k in range(len(jpegs))]
        self._check(single[0], batch[0], batch_files)
        out = {"inspect": {}, "batch": {}}
        for name, path, bodies, per in (("inspect", "/v1/inspect", single, 1),
                                        ("batch", "/v1/inspect/batch", batch, batch_files)):
            for clients in concurrency:
                wave_s = clients * per / max(expected_images_per_s, 1e-9)
                if clients > 1 and wave_s > max(WAVE_LIMIT * seconds, WAVE_FLOOR_S):
                    skipped = (f"one wave of {clients} x {per} images would take about "
                               f"{wave_s:.0f} s at {expected_images_per_s:.1f} images/s")
                    out[name][str(clients)] = {"skipped": skipped}
                    print(f"[speed]   {name:<8} {clients:>3} clients: skipped ({skipped})",
                          flush=True)
                    continue
                out[name][str(clients)] = self.load_one(path, bodies, clients, seconds, per)
                say_http(name, clients, out[name][str(clients)])
            out[name]["best"] = max((m for m in out[name].values() if "images_per_s" in m),
                                    key=lambda m: m["images_per_s"])
        return out

    def load_one(self, path: str, bodies: list[bytes], clients: int, seconds: float,
                 per_request: int) -> dict:
        """One :func:`load` run on ``path``, with what it cost the server and this process."""
        before = self.snapshot()
        m = asyncio.run(load(self.url + path, bodies, clients, seconds, per_request))
        m.update(self.delta(before, self.snapshot(), m["images"]),
                 server_peak_rss_mb=self.peak_rss_mb())
        return m

    def snapshot(self) -> dict:
        """Server and bench CPU seconds, and the server's batch-size counters."""
        snap = {"server_cpu": cpu_seconds(self.proc.pid), "bench_cpu": time.process_time()}
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

        r = httpx.post(self.url + "/v1/inspect", content=single, headers=HEADERS,
                       timeout=HTTP_TIMEOUT_S)
        if r.status_code != 200 or "label" not in r.json():
            raise RuntimeError(f"/v1/inspect answered {r.status_code}: {r.text[:300]}")
        r = httpx.post(self.url + "/v1/inspect/batch", content=batch, headers=HEADERS,
                       timeout=HTTP_TIMEOUT_S)
        results = r.json().get("results", []) if r.status_code == 200 else []
        if len(results) != batch_files or any("error" in e for e in results):
            raise RuntimeError(f"/v1/inspect/batch answered {r.status_code}: {r.text[:300]}")


def say_http(name: str, clients: int, m: dict) -> None:
    print(f"[speed]   {name:<8} {clients:>3} clients: {m['images_per_s']:8.1f} images/s, "
          f"p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms, model batch {m['mean_model_batch']}, "
          f"CPU ms/image server {m['server_cpu_ms_per_image']} client "
          f"{m['client_cpu_ms_per_image']}, errors {m['errors'] or 0}", flush=True)


@dataclass
class Tally:
    """What the clients of one load run saw: 200 latencies (s), other outcomes, requests."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    issued: int = 0


async def load(url: str, bodies: list[bytes], clients: int, seconds: float,
               images_per_request: int) -> dict:
    """``clients`` concurrent connections, each posting one body after another until
    ``seconds`` have passed (every client sends at least one) or :data:`MAX_CALLS` requests.

    Returns:
        :func:`summary` of the 200 answers, plus ``errors`` (status or exception -> count).
    """
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    tally = Tally()
    async with httpx.AsyncClient(limits=limits, timeout=HTTP_TIMEOUT_S) as client:
        # open every connection and warm the server before the clock starts
        await asyncio.gather(*(client.get(url.rsplit("/v1/", 1)[0] + "/health/live")
                                for _ in range(clients)))
        t0 = time.perf_counter()
        await asyncio.gather(*(_post_until(client, url, bodies, t0 + seconds, tally)
                               for _ in range(clients)))
        wall = time.perf_counter() - t0
    out = summary(tally.latencies, wall, images_per_request)
    out.update(clients=clients, errors=dict(tally.errors),
               request_p50_ms_per_image=round(out["p50_ms"] / images_per_request, 3)
               if out["p50_ms"] is not None else None)
    return out


async def _post_until(client, url: str, bodies: list[bytes], deadline: float,
                      tally: Tally) -> None:
    """One client: posts bodies in turn until ``deadline`` (at least one) or MAX_CALLS."""
    import httpx

    first = True
    while tally.issued < MAX_CALLS and (first or time.perf_counter() < deadline):
        first = False
        body = bodies[tally.issued % len(bodies)]
        tally.issued += 1
        t = time.perf_counter()
        try:
            r = await client.post(url, content=body, headers=HEADERS)
            await r.aread()
            status = r.status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        if status == 200:
            tally.latencies.append(time.perf_counter() - t)
        else:
            tally.errors[str(status)] += 1
