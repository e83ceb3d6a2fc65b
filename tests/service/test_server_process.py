"""A real `kensa serve` process, talked to over a socket; and its fail-fast start."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
from service_helpers import png, upload, washer_png

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(*args: str, stderr, env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KENSA_")} | (env_extra or {})
    return subprocess.Popen([sys.executable, "-m", "service.cli", "serve", *args],
                            stdout=subprocess.DEVNULL, stderr=stderr, env=env)


def wait_ready(base: str, proc: subprocess.Popen, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server never became ready")


@contextmanager
def running_server(bundle, env: dict[str, str], log_path) -> Iterator[str]:
    """A real ``kensa serve`` of ``bundle`` (CPU; None: what ``env`` names, e.g.
    KENSA_MODELS_DIR) on a free loopback port with ``env`` added and its stderr in
    ``log_path``; yields the base URL once it is ready, then stops it with SIGTERM (and kills
    it after 20 s)."""
    port = free_port()
    model = ("--model", str(bundle)) if bundle is not None else ()
    with open(log_path, "wb") as err:
        proc = serve(*model, "--port", str(port), "--device", "cpu", stderr=err, env_extra=env)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base, proc)
            yield base
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_kensa_serve_answers_over_a_socket(tiny_bundle, inspector, tmp_path):
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as err:
        proc = serve("--model", str(tiny_bundle), "--port", str(port), "--device", "cpu",
                     stderr=err)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(base, proc)
            r = httpx.post(f"{base}/v1/inspect?include=mask", files=upload(washer_png(3)),
                           timeout=30)
            assert r.status_code == 200
            body = r.json()
            assert body["model_version"] == inspector.info["version"]
            bad = httpx.post(f"{base}/v1/inspect", files=upload(b""), timeout=30)
            assert bad.status_code == 400
            with httpx.Client(base_url=base, timeout=30) as keep_alive:  # one connection
                line = png(np.zeros((1, 100_000, 3), np.uint8))
                r = keep_alive.post("/v1/inspect?include=overlay", files=upload(line))
                assert r.status_code == 413, r.text
                r = keep_alive.post("/v1/inspect?include=overlay", files=upload(washer_png(3)))
                assert r.status_code == 200, r.text
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean stop
    lines = [json.loads(line) for line in log.read_text().splitlines()
             if line.startswith("{")]
    assert [line["message"] for line in lines if line["logger"] == "kensa.service"] == [
        "ready", "stopped"]
    request = next(line for line in lines if line.get("id") == body["id"])
    assert (request["label"], request["score"], request["status"]) == (
        body["label"], body["score"], 200)
    assert request["elapsed_ms"] > 0


def test_kensa_serve_stops_at_once_without_a_bundle(tmp_path):
    missing = tmp_path / "no-bundle"
    proc = serve("--model", str(missing), "--port", str(free_port()), stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 2
    message = err.decode()
    assert message.startswith("kensa serve: cannot load the model bundle: ")
    assert str(missing) in message


def test_kensa_serve_stops_at_once_when_it_cannot_write_the_labels_folder(tiny_bundle, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = serve("--model", str(tiny_bundle), "--port", str(free_port()), stderr=subprocess.PIPE,
                 env_extra={"KENSA_LABELS_DIR": str(blocker / "labels"),
                            "KENSA_RECORDS": "off"})  # with records on, labels go to the store
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 2
    assert err.decode().startswith(
        f"kensa serve: KENSA_LABELS_DIR {blocker / 'labels'} is not a writable folder")


def test_kensa_serve_stops_at_once_on_an_edited_bundle(tiny_bundle, tmp_path):
    """The factory-network finding: calibration.image set to 99 by hand served every defect
    as normal under the old version. Now the server does not start, and says what changed."""
    edited = tmp_path / "edited"
    shutil.copytree(tiny_bundle, edited)
    info = json.loads((edited / "bundle.json").read_text())
    info["calibration"]["image"] = 99.0
    (edited / "bundle.json").write_text(json.dumps(info))
    proc = serve("--model", str(edited), "--port", str(free_port()), stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 2
    assert err.decode().startswith(f"kensa serve: cannot load the model bundle: {edited} was "
                                   "changed after it was written: calibration differs")


def test_kensa_serve_with_a_bundle_key_refuses_an_unsigned_bundle(tiny_bundle):
    proc = serve("--model", str(tiny_bundle), "--port", str(free_port()), stderr=subprocess.PIPE,
                 env_extra={"KENSA_BUNDLE_KEY": "a-key-of-the-plant"})
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 2
    assert err.decode().startswith(f"kensa serve: cannot load the model bundle: {tiny_bundle} "
                                   "is not signed, and KENSA_BUNDLE_KEY is set")


def test_kensa_serve_on_onnx_without_graphs_says_how_to_export(tiny_bundle):
    proc = serve("--model", str(tiny_bundle), "--port", str(free_port()), "--runtime", "onnx",
                 stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 2
    assert err.decode().startswith(
        f"kensa serve: cannot load the model bundle: {tiny_bundle} has no ONNX graphs for the "
        f"onnx runtime: export them with 'kensa export --model {tiny_bundle} --format onnx'")
