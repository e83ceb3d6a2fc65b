"""A real `kensa serve` process under hostile load: its memory read from /proc, stalled
uploads, overload and shutdown (issue 27)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Self

import httpx
import numpy as np
import pytest
import torch
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


def stalled_upload(port: int, sent: int = 5000, declared: int = 100_000) -> socket.socket:
    """A connection that sends the headers of a multipart upload and part of its body, then
    goes quiet with the socket open."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    boundary = "kensa-stall"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            "filename=\"part.png\"\r\nContent-Type: image/png\r\n\r\n").encode()
    sock.sendall(f"POST /v1/inspect HTTP/1.1\r\nHost: kensa\r\nContent-Length: {declared}\r\n"
                 f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode()
                 + head + b"\x89PNG" + b"\0" * (sent - len(head) - 4))
    return sock


def until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    start, got = time.monotonic(), b""
    while chunk := sock.recv(65536):
        got += chunk
    return got, time.monotonic() - start


TIMEOUTS = {"KENSA_HEADER_TIMEOUT_S": "2", "KENSA_BODY_TIMEOUT_S": "3",
            "KENSA_SHUTDOWN_TIMEOUT_S": "2"}


def test_a_stalled_upload_gets_408_and_is_closed_after_the_body_timeout(tiny_bundle, tmp_path):
    with Server(tiny_bundle, tmp_path, **TIMEOUTS) as server:
        with stalled_upload(server.port) as sock:
            got, waited = until_closed(sock)
        assert got.startswith(b"HTTP/1.1 408 "), got[:200]
        assert b'{"detail":"the request body did not arrive within 3 s' in got
        assert waited < 3 + 5
        # the server still answers
        r = httpx.post(f"{server.base}/v1/inspect", files=upload(washer_png(2)), timeout=30)
        assert r.status_code == 200


def test_a_connection_that_never_finishes_its_headers_is_closed(tiny_bundle, tmp_path):
    with Server(tiny_bundle, tmp_path, **TIMEOUTS) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(b"POST /v1/inspect HTTP/1.1\r\nHost: kensa\r\n")
            time.sleep(1)
            sock.sendall(b"X-Slow: 1\r\n")  # a trickle does not keep it open
            got, waited = until_closed(sock)
        assert got == b""
        assert waited < 2 + 5


def test_sigterm_stops_the_server_promptly_despite_a_stalled_upload(tiny_bundle, tmp_path):
    env = TIMEOUTS | {"KENSA_BODY_TIMEOUT_S": "600"}  # the stalled client would wait forever
    with Server(tiny_bundle, tmp_path, **env) as server, stalled_upload(server.port):
        time.sleep(0.5)
        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(timeout=60)
        stopped = time.monotonic() - start
    assert code in (0, -signal.SIGTERM)
    assert stopped < 2 + 8, f"took {stopped:.1f} s to stop"


def test_a_connection_beyond_the_cap_gets_503_at_once(tiny_bundle, tmp_path):
    with Server(tiny_bundle, tmp_path, KENSA_MAX_CONNECTIONS="3", **TIMEOUTS) as server:
        held = [stalled_upload(server.port) for _ in range(3)]
        try:
            with stalled_upload(server.port) as extra:
                got, waited = until_closed(extra)
        finally:
            for sock in held:
                sock.close()
        assert got.startswith(b"HTTP/1.1 503 "), got[:200]
        assert waited < 2  # before any timeout: the cap, not the deadline, answered


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_bundle_that_fails_to_load_after_the_port_opened_still_ends_the_server(
        tiny_bundle, tmp_path):
    proc = serve("--model", str(tiny_bundle), "--port", str(free_port()), "--device", "cuda",
                 stderr=subprocess.PIPE, env_extra={"KENSA_RECORDS": "off"})
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 2
    assert f"kensa serve: cannot load the model bundle {tiny_bundle}: " in err.decode()
