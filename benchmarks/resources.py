"""What a process costs: CPU seconds and resident memory from ``/proc``, GPU memory."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import torch


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def memory_mb(pid: int | str, key: str) -> float | None:
    """``VmHWM`` (peak resident set) or ``VmRSS`` of a process, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    return None


def memory(device: str, server) -> dict:
    """Peak RSS so far (the bench process's includes rendering and any training it did).

    Args:
        server: the :class:`benchmarks.http_load.Server` measured, or None.
    """
    out = {"bench_peak_rss_mb": memory_mb("self", "VmHWM"),
           "bench_rss_mb": memory_mb("self", "VmRSS"),
           "server_peak_rss_mb": server.peak_rss_mb() if server else None}
    if device == "cuda":
        out["bench_gpu_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        out["server_gpu_used_mb"] = nvidia_smi_used(server.proc.pid) if server else None
    return out


def nvidia_smi_used(pid: int) -> float | None:
    """GPU memory (MiB) that ``nvidia-smi`` says process ``pid`` uses; None if unknown."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        r = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                            "--format=csv,noheader,nounits"], capture_output=True, text=True,
                           timeout=10, check=False)
        for line in r.stdout.splitlines():
            app_pid, used = (s.strip() for s in line.split(","))
            if app_pid == str(pid):
                return float(used)
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    return None
