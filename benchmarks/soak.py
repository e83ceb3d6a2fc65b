"""Soak: N clients for T seconds against a real ``kensa serve``, with a mix of good, bad,
huge and abandoned uploads; then the server's memory and open connections must come back.

``python -m benchmarks.soak --model BUNDLE [--clients 16] [--seconds 300] [--budget-mb 128]``
prints the figures and exits 1 when a check fails: an answer of 500 or more other than 503,
a peak RSS over 1.2 x (idle + ``KENSA_MAX_INFLIGHT_MB``), an RSS that stays more than the
budget over idle after the load, or connections left open. ``tests/benchmarks/test_soak.py``
runs a 20-second version in the default suite.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from .http_load import Server
from .resources import memory_mb

HEADER_TIMEOUT_S = 2  # idle keep-alive connections close this soon after the load


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def uploads(seed: int = 0) -> dict[str, bytes]:
    """The mix: a normal part, bytes that are no image, a cut image, a large image of few
    bytes (over a small budget) and one that fits it."""
    rng = np.random.default_rng(seed)
    good = png(rng.integers(90, 160, (64, 64, 3), dtype=np.uint8))
    flat = np.full((3000, 3000), 120, np.uint8)
    return {"good": good, "garbage": rng.bytes(2000), "cut": good[: len(good) // 2],
            "huge": png(flat), "large": png(flat[:1000, :1000])}


def one_request(client: httpx.Client, base: str, kind: str, data: bytes) -> int:
    """One request of ``kind``; the status, or 0 for an upload the client abandoned."""
    if kind == "abandoned":
        abandon(base, data)
        return 0
    if kind == "batch":
        files = [("files", (f"{n}.png", data, "image/png")) for n in range(4)]
        return client.post(f"{base}/v1/inspect/batch", files=files).status_code
    query = "?include=overlay" if kind == "overlay" else ""
    return client.post(f"{base}/v1/inspect{query}",
                       files={"file": ("p.png", data, "image/png")}).status_code


def abandon(base: str, data: bytes) -> None:
    """Sends the head and half the body of an upload, then hangs up."""
    host, port = base.removeprefix("http://").split(":")
    body = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.png\"\r\n\r\n"
            + data + b"\r\n--b--\r\n")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST /v1/inspect HTTP/1.1\r\nHost: kensa\r\nContent-Length: {len(body)}"
                     "\r\nContent-Type: multipart/form-data; boundary=b\r\n\r\n".encode()
                     + body[: len(body) // 2])


MIX = [("single", "good")] * 6 + [("batch", "good"), ("overlay", "good"), ("single", "garbage"),
                                  ("single", "cut"), ("single", "huge"), ("single", "large"),
                                  ("batch", "huge"), ("abandoned", "good")]


def client_loop(base: str, until: float, data: dict[str, bytes], seed: int,
                tally: Counter, lock: threading.Lock) -> None:
    pick = random.Random(seed)
    with httpx.Client(timeout=120) as client:
        while time.monotonic() < until:
            kind, name = pick.choice(MIX)
            try:
                status = one_request(client, base, kind, data[name])
            except httpx.HTTPError as exc:
                status = f"transport error {type(exc).__name__}"
            with lock:
                tally[(kind, name, status)] += 1


def sockets(pid: int) -> int:
    """Open sockets of the process (its listening one included)."""
    fds = Path(f"/proc/{pid}/fd")
    return sum(1 for fd in fds.iterdir() if os.readlink(fd).startswith("socket:"))


def load(base: str, clients: int, seconds: float) -> Counter:
    """``clients`` threads sending the mix for ``seconds``; the answers counted by kind."""
    tally, lock, data = Counter(), threading.Lock(), uploads()
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=client_loop, args=(base, until, data, n, tally, lock))
               for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally


def settle() -> None:
    """Waits for abandoned bodies to time out and idle connections to close."""
    time.sleep(5 + HEADER_TIMEOUT_S + 1)


def soak(bundle: Path, clients: int, seconds: float, budget_mb: float) -> dict:
    """Runs the soak and returns its figures and checks."""
    server = Server(bundle=bundle, device="cpu", env={
        "KENSA_MAX_INFLIGHT_MB": str(budget_mb), "KENSA_RECORDS": "off",
        "KENSA_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S), "KENSA_BODY_TIMEOUT_S": "5"})
    server.start()
    try:
        pid = server.proc.pid
        load(server.url, clients, min(5.0, seconds / 4))  # warm: threads, caches, pools
        settle()
        idle, idle_sockets = memory_mb(pid, "VmRSS"), sockets(pid)
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM from here
        tally = load(server.url, clients, seconds)
        peak = memory_mb(pid, "VmHWM")
        settle()
        after, after_sockets = memory_mb(pid, "VmRSS"), sockets(pid)
    finally:
        server.stop()
    bad = {f"{k} {n} {s}": c for (k, n, s), c in tally.items()
           if not isinstance(s, int) or (s >= 500 and s != 503)}
    return {"clients": clients, "seconds": seconds, "budget_mb": budget_mb,
            "requests": sum(tally.values()), "statuses": dict(Counter(
                str(s) for (_, _, s) in tally.elements())),
            "idle_rss_mb": idle, "peak_rss_mb": peak, "after_rss_mb": after,
            "idle_sockets": idle_sockets, "after_sockets": after_sockets,
            "checks": {"no_5xx_but_503": not bad,
                       "peak_within_1.2x_idle_plus_budget": peak <= 1.2 * (idle + budget_mb),
                       "memory_back_within_budget": after <= idle + budget_mb,
                       "connections_back": after_sockets <= idle_sockets},
            "bad_answers": bad}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="bundle directory")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--budget-mb", type=float, default=128.0,
                        help="the server's KENSA_MAX_INFLIGHT_MB (default 128)")
    args = parser.parse_args(argv)
    figures = soak(args.model, args.clients, args.seconds, args.budget_mb)
    for key, value in figures.items():
        print(f"{key}: {value}")
    return 0 if all(figures["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
