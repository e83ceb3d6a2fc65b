"""Record factories and a real ``kensa serve`` process for the store tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx


def row(label: str = "normal", when: datetime | None = None, **extra) -> dict:
    """The columns of one record as the recorder writes them."""
    base = {
        "id": str(uuid.uuid4()), "created_at": when or datetime.now(UTC), "source": None,
        "part_id": None, "model_name": "tiny", "model_version": "v1", "label": label,
        "score": 0.9 if label == "abnormal" else 0.1, "threshold": 0.5,
        "reconstruction": {"label": label}, "latent": {"label": label}, "defects": [],
        "width": 48, "height": 48, "elapsed_ms": 3.0, "sha256": "0" * 64,
        "image_kept": False}
    return base | extra


def engine_at(db_url: str, revision: str):
    """An engine on ``db_url`` with the schema migrated only as far as ``revision``."""
    from alembic import command

    from service.store.database import alembic_config, make_engine

    eng = make_engine(db_url)
    cfg = alembic_config(db_url)
    with eng.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return eng


def ago(**delta) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(bundle, port: int, env_extra: dict[str, str], log_path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KENSA_")} | env_extra
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--model", str(bundle), "--port",
             str(port), "--device", "cpu"], stdout=subprocess.DEVNULL, stderr=log, env=env)


def wait_ready(base: str, proc: subprocess.Popen, timeout_s: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}")
        try:
            r = httpx.get(f"{base}/health/ready", timeout=2)
            if r.status_code == 200:
                return r.json()
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server never became ready")


def wait_for(check, timeout_s: float = 30.0, every_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every_s)
