"""Every curl line in README.md's HTTP API section, run against a real `kensa serve`."""

import json
import re
import shutil
import subprocess
from pathlib import Path

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
                 "/metrics"):
        assert path.strip() in joined, path


def test_readme_curl_lines_work(tiny_bundle, tmp_path):
    # the README's files, laid out as `make demo` leaves them, in a scratch working directory
    make_demo_dataset(tmp_path / "data" / "demo", seed=0, n_train=2, n_test_good=1,
                      n_per_defect=1, size=64)
    shutil.copy(README, tmp_path / "README.md")
    port = free_port()
    proc = serve("--model", str(tiny_bundle), "--port", str(port), stderr=subprocess.DEVNULL,
                 # the README's labels folder is the KENSA_RECORDS=off mode since issue 25
                 # (with records on, labels go to the records store: docs/records.md)
                 env_extra={"KENSA_LABELS_DIR": str(tmp_path / "labels"),
                            "KENSA_RECORDS": "off"})
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        for line in readme_curl_lines():
            cmd = line.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
            cmd = re.sub(r"^curl ", "curl -w '\\n%{http_code}' ", cmd)
            out = subprocess.run(cmd, shell=True, cwd=tmp_path, capture_output=True, check=False,
                                 text=True, timeout=60)
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
        assert len(list((tmp_path / "labels" / "images").iterdir())) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
