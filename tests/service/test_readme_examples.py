"""Every curl line of README.md's HTTP API section and of docs/records-and-review.md, and the
command block of docs/models-and-versions.md, run against a real `kensa serve`."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from test_server_process import free_port, serve, wait_ready

from models.synth_demo import make_demo_dataset

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RECORDS_PAGE = ROOT / "docs" / "records-and-review.md"
MODELS_PAGE = ROOT / "docs" / "models-and-versions.md"


def curl_lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip().startswith("curl ")]


def readme_curl_lines() -> list[str]:
    """The README's HTTP API calls, then the records calls of docs/records-and-review.md."""
    text = README.read_text()
    api = curl_lines(text[text.index("## HTTP API"):text.index("## Environment variables")])
    records = curl_lines(RECORDS_PAGE.read_text())
    assert api and records, "a page that held curl lines holds none"
    return api + records


def test_readme_lists_a_call_for_every_endpoint():
    joined = "\n".join(readme_curl_lines())
    for path in ("/health/live", "/health/ready", "/v1/model", "/v1/inspect ",
                 "/v1/inspect?", "/v1/inspect/batch", "/v1/inspect/overlay", "/v1/labels",
                 "/metrics", "/v1/inspections?", "/v1/inspections/$ID ", "/v1/inspections/$ID/image",
                 "/v1/inspections/$ID/overlay", "/v1/inspections/$ID/review", "/v1/stats",
                 "/v1/inspections/export", "/v1/models/demo/drift"):
        assert path.strip() in joined, path


def test_readme_curl_lines_work(tiny_bundle, tmp_path):
    # the README's files, laid out as `make demo` leaves them (the models root `bundles/`, part
    # `demo`), in a scratch working directory;
    # the server records as it does by default, keeping every image so that the README's
    # record ($ID, the newest) has one to show
    make_demo_dataset(tmp_path / "data" / "demo", seed=0, n_train=2, n_test_good=1,
                      n_per_defect=1, size=64)
    shutil.copy(README, tmp_path / "README.md")
    from service.registry import ModelsRoot

    version = json.loads((tiny_bundle / "bundle.json").read_text())["version"]
    shutil.copytree(tiny_bundle, tmp_path / "bundles" / "demo" / version)  # part `demo`
    ModelsRoot(tmp_path / "bundles").set_active("demo", version)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = serve("--port", str(port), stderr=subprocess.DEVNULL,
                 env_extra={"KENSA_MODELS_DIR": str(tmp_path / "bundles"),
                            "KENSA_DATA_DIR": str(tmp_path / "kensa-data"),
                            "KENSA_KEEP_IMAGES": "all"})
    try:
        wait_ready(base, proc)
        for line in readme_curl_lines():
            cmd = line.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
            cmd = re.sub(r"^curl ", "curl -w '\\n%{http_code}' ", cmd)
            env = dict(os.environ)
            if "$ID" in line or "$NEXT" in line:
                env |= newest_record_and_cursor(base)
            out = subprocess.run(cmd, shell=True, cwd=tmp_path, capture_output=True, check=False,
                                 text=True, timeout=60, env=env)
            assert out.returncode == 0, (line, out.stderr)
            body, _, status = out.stdout.rpartition("\n")
            if "text/plain" in line:
                assert status == "415", line
                assert "not an image" in json.loads(body)["detail"]
            elif "-F label=" in line:
                assert status == "201", (line, status, body[:300])
            else:
                assert status == "200", (line, status, body[:300])
        assert (tmp_path / "overlay.jpg").read_bytes()[:2] == b"\xff\xd8"
        assert (tmp_path / "part-overlay.jpg").read_bytes()[:2] == b"\xff\xd8"
        assert (tmp_path / "part-thumb.jpg").read_bytes()[:2] == b"\xff\xd8"
        assert (tmp_path / "part.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # the review line reviewed the newest record; the label line went to the store
        (newest,) = httpx.get(f"{base}/v1/inspections?limit=1").json()["items"]
        assert newest["review"]["label"] == "scratch", newest
        assert httpx.get(f"{base}/v1/labels").json()["counts"] == {"scratch": 1}
        header, *rows = (tmp_path / "inspections.csv").read_text().splitlines()
        assert "id" in header.split(",") and len(rows) >= 5, header
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def newest_record_and_cursor(base: str) -> dict[str, str]:
    """``ID``: the newest record's id; ``NEXT``: the cursor after the first record."""
    page = httpx.get(f"{base}/v1/inspections?limit=1").json()
    assert page["items"] and page["next"], page
    return {"ID": page["items"][0]["id"], "NEXT": page["next"]}


def readme_model_lines() -> list[str]:
    """The command lines of docs/models-and-versions.md's first block, in order."""
    block = MODELS_PAGE.read_text().split("```")[1]
    return [ln.strip() for ln in block.splitlines()
            if ln.strip() and not ln.strip().startswith("#")]


def test_readme_models_lines_work(tiny_bundle, tmp_path):
    """The page's lines train a second version, run it as a challenger, activate it and roll
    it back against a real `kensa serve` of the models root `make demo` leaves, which is never
    restarted. Only the preset differs (tiny, 2 epochs: seconds, not minutes) and the port."""
    import sys

    from service.registry import ModelsRoot

    make_demo_dataset(tmp_path / "data" / "demo", seed=0, n_train=16, n_test_good=1,
                      n_per_defect=1, size=48)
    first = json.loads((tiny_bundle / "bundle.json").read_text())["version"]
    shutil.copytree(tiny_bundle, tmp_path / "bundles" / "demo" / first)
    ModelsRoot(tmp_path / "bundles").set_active("demo", first)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = serve("--port", str(port), stderr=subprocess.DEVNULL, env_extra={
        "KENSA_MODELS_DIR": str(tmp_path / "bundles"), "KENSA_MODEL_POLL_S": "0.2",
        "KENSA_DATA_DIR": str(tmp_path / "kensa-data"), "KENSA_KEEP_IMAGES": "all"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("KENSA_")}
    env["PYTHONPATH"] = str(ROOT)
    try:
        wait_ready(base, proc)
        outputs = []
        for line in readme_model_lines():
            cmd = line.replace("127.0.0.1:8000", f"127.0.0.1:{port}").replace(
                ".venv/bin/kensa", f"{sys.executable} -m service.cli").replace(
                "--preset demo", "--preset tiny --epochs 2")
            cmd = re.sub(r"^curl ", "curl -w '\\n%{http_code}' ", cmd)
            out = subprocess.run(cmd, shell=True, cwd=tmp_path, capture_output=True, text=True,
                                 check=False, timeout=300, env=env)
            assert out.returncode == 0, (line, out.stdout[-500:], out.stderr[-2000:])
            outputs.append(out.stdout)
            if "kensa train" in line:
                env["VERSION"] = re.search(r"new version (\w+) of demo", out.stdout).group(1)
            if line.startswith("curl"):
                assert out.stdout.rpartition("\n")[2] == "200", (line, out.stdout[-300:])
            if "rollback" in line:
                wait_for_version(base, first)
        new = env["VERSION"]
        assert new != first and f"* {first}" in outputs[1] and new in outputs[1]
        challenger, inspected, report, activated = (
            json.loads(o.rpartition("\n")[0]) for o in outputs[2:6])
        assert challenger["version"] == new
        assert (inspected["model"], inspected["model_version"]) == ("demo", first)
        assert report["version"] == new and report["scored"] + report["dropped"] <= 1
        assert activated["serving"] == new and activated["previous"] == first
        listed = json.loads(outputs[-1].rpartition("\n")[0])["models"][0]
        assert (listed["active"], listed["previous"], listed["serving"]) == (first, new, first)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_for_version(base: str, version: str, timeout_s: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while httpx.get(f"{base}/v1/model", timeout=10).json()["version"] != version:
        assert time.monotonic() < deadline, "the server did not follow the active file"
        time.sleep(0.1)
