"""A real `kensa serve` process under hostile load: its memory read from /proc, stalled
uploads, overload and shutdown (issue 27)."""

from __future__ import annotations

import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Self

import httpx
import numpy as np
import pytest
from service_helpers import png, upload, washer_png
from test_server_process import free_port, serve, wait_ready

pytestmark = pytest.mark.slow
MB = 1024 * 1024


def rss(pid: int, field: str = "VmRSS") -> int:
    """Bytes of the process's resident memory now (VmRSS) or at its peak (VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    """VmHWM starts again from VmRSS (Linux clear_refs, value 5)."""
    with open(f"/proc/{pid}/clear_refs", "w") as refs:
        refs.write("5")


def flat_png(side: int, channels: int = 3) -> bytes:
    """A large image of few bytes (it compresses to almost nothing), like a bomb's cousin."""
    arr = np.full((side, side, channels), 120, np.uint8)
    arr[::9] = 40
    return png(arr if channels == 3 else arr[..., 0])


class Server:
    """``kensa serve`` on a free port with the tiny bundle and ``env`` (records off)."""

    def __init__(self, bundle, tmp_path, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = (tmp_path / "server.log").open("wb")
        self.proc = serve("--model", str(bundle), "--port", str(self.port), "--device", "cpu",
                          stderr=self.log, env_extra={"KENSA_RECORDS": "off", **env})

    def __enter__(self) -> Self:
        wait_ready(self.base, self.proc)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def test_no_sequence_of_requests_takes_the_server_past_its_budget(tiny_bundle, tmp_path):
    budget_mb = 64
    with Server(tiny_bundle, tmp_path, KENSA_MAX_INFLIGHT_MB=str(budget_mb)) as server:
        url = f"{server.base}/v1/inspect"
        small = washer_png(3)
        for include in ("", "mask,heatmap,overlay,reconstruction"):  # warm every code path
            assert httpx.post(f"{url}?include={include}", files=upload(small),
                              timeout=60).status_code == 200
        idle = rss(server.proc.pid)
        reset_peak(server.proc.pid)
        fits, huge = flat_png(1000), flat_png(3000)  # about 32 MB and 290 MB when served

        def post(path: str, files) -> int:
            return httpx.post(f"{server.base}{path}", files=files, timeout=120).status_code

        calls = [("/v1/inspect", upload(fits))] * 6 + [
            ("/v1/inspect", upload(huge)),
            ("/v1/inspect?include=overlay", upload(fits)),
            ("/v1/inspect/batch", [("files", ("h.png", huge, "image/png"))] * 4),
            ("/v1/inspect/batch", [("files", ("f.png", fits, "image/png"))] * 4)]
        with ThreadPoolExecutor(len(calls)) as pool:
            statuses = list(pool.map(lambda c: post(*c), calls))
        peak = rss(server.proc.pid, "VmHWM")
        time.sleep(0.5)
        after = rss(server.proc.pid)
    bound = 1.2 * (idle + budget_mb * MB)
    assert peak <= bound, (
        f"peak RSS {peak / MB:.0f} MiB over 1.2 x (idle {idle / MB:.0f} + budget {budget_mb})")
    # what the load freed goes back to the system (malloc_trim); without it 84 MiB stayed
    assert after <= idle + budget_mb * MB, (
        f"RSS stays at {after / MB:.0f} MiB after the load, idle was {idle / MB:.0f} MiB")
    assert statuses[:6] == [200] * 6
    assert statuses[6:8] == [413, 413]  # one image over the whole budget: refused, not run
    assert statuses[8:] == [200, 200]  # the batch of huge ones answers 413 per image
