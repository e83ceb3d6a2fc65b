"""docs/line-integration.md ("Connecting a line", moved out of README.md): its sinks file loads,
its watch command and its Python snippet run against a real `kensa serve`."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from service_helpers import washer_png

from service.sinks.config import load_sinks

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "line-integration.md"
KEY = "line-key"
pytestmark = pytest.mark.slow


def section() -> str:
    return PAGE.read_text()


def block(lang: str) -> str:
    return re.search(rf"```{lang}\n(.*?)```", section(), re.DOTALL).group(1)


def test_the_readme_sinks_file_loads(tmp_path, monkeypatch):
    path = tmp_path / "sinks.yaml"
    path.write_text(block("yaml"))
    monkeypatch.setenv("KENSA_MES_SECRET", "mes-secret")
    monkeypatch.setenv("KENSA_OPCUA_PASSWORD", "plc-password")
    mes, gate, plc = load_sinks(path).sinks
    assert (mes.type, gate.type, gate.filter, gate.source) == (
        "webhook", "mqtt", "abnormal", ["line-2/cam-1"])
    assert mes.secret.get_secret_value() == "mes-secret"
    assert (plc.type, plc.port, plc.namespace, plc.security) == (
        "opcua", 4840, "urn:kensa:line-2", ["none"])
    assert plc.password.get_secret_value() == "plc-password"


def test_the_readme_watch_command_runs(live_server, tmp_path):
    [line] = [ln for ln in section().splitlines() if ln.startswith("kensa watch ")]
    args = line.replace("/srv/camera-2", str(tmp_path / "cam")).replace(
        "http://127.0.0.1:8000", live_server).split()[2:]
    (tmp_path / "cam").mkdir()
    (tmp_path / "cam" / "a.png").write_bytes(washer_png(40))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KENSA_")} | {
        "KENSA_API_KEY": KEY}
    done = subprocess.run([sys.executable, "-m", "service.cli", "watch", *args, "--once"],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cam" / "done" / "a.png.json").exists()


def test_the_readme_python_snippet_runs(live_server, tmp_path):
    code = block("python").replace('Client("http://127.0.0.1:8000")',
                                   f'Client("{live_server}", api_key="{KEY}")')
    assert code != block("python")
    (tmp_path / "part.png").write_bytes(washer_png(41))
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=False,
                          env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0].split()
    assert first[0] in ("normal", "abnormal") and float(first[1]) >= 0
