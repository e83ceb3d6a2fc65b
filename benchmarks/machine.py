"""What the figures were measured on: CPU, cores, torch, GPU, date, load, commit."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import cv2
import torch


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return cpu_model() if device == "cpu" else device


def machine_info() -> dict:
    """CPU model and cores, torch, GPU name, date: what the figures were measured on."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "opencv": cv2.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "cuda": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_start": list(os.getloadavg()),
        "git_commit": git_commit(),
        "omp_env": {k: v for k, v in os.environ.items()
                    if k.startswith(("OMP_", "KMP_", "GOMP_", "MKL_"))},
        "torch_threads_layout": "as kensa serve: a main-thread OpenMP team, then all work in "
                                "one worker thread (see run_bench)",
        "note": "absolute times are of this machine and whatever else ran on it; compare ratios",
    }


def git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True, timeout=5, cwd=Path(__file__).resolve().parent,
                           check=False)
        return r.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
