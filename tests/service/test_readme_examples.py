"""Every curl line in README.md's HTTP API section, run against a real `kensa serve`."""

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

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_curl_lines() -> list[str]:
    text = README.read_text()
    section = text[text.index("## HTTP API"):text.index("## Environment variables")]
    return [ln.strip() for ln in section.splitlines() if ln.strip().startswith("curl ")]


def test_readme_lists_a_call_for_every_endpoint():
    joined = "\n".join(readme_curl_lines())
    for path in ("/health/live", "/health/ready", "/v1/model", "/v1/inspect ",
                 "/v1/inspect?", "/v1/inspect/batch", "/v1/inspect/overlay", "/v1/labels",
                 "/metrics", "/v1/inspections?", "/v1/inspections/$ID ", "/v1/inspections/$ID/image",
                 "/v1/inspections/$ID/overlay", "/v1/inspections/$ID/review", "/v1/stats",
                 "/v1/inspections/export", "/v1/models/demo/drift"):
        assert path.strip() in joined, path


def test_readme_curl_lines_work(tiny_bundle, tmp_path):
    # the README's files, laid out as `make demo` leaves them, in a scratch working directory;
    # the server records as it does by default, keeping every image so that the README's
    # record ($ID, the newest) has one to show
    make_demo_dataset(tmp_path / "data" / "demo", seed=0, n_train=2, n_test_good=1,
                      n_per_defect=1, size=64)
    shutil.copy(README, tmp_path / "README.md")
    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundles" / "demo")  # part `demo`
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = serve("--model", str(bundle), "--port", str(port), stderr=subprocess.DEVNULL,
                 env_extra={"KENSA_DATA_DIR": str(tmp_path / "kensa-data"),
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
