"""Hot swap under load, against a real `kensa serve` process over a socket: 8 clients inspect
while the active version changes 5 times (through the API and through the `active` file);
every request gets a 200 and an answer consistent with the version it names."""

from __future__ import annotations

import math
import threading
import time

import httpx
import pytest
from models_root_helpers import make_root
from service_helpers import decoded, upload, washer_png
from test_server_process import running_server

from models.inference import Inspector
from service.registry import ModelsRoot

pytestmark = pytest.mark.slow

CLIENTS = 8


def test_every_request_is_answered_while_the_active_version_changes_five_times(tmp_path):
    folder = tmp_path / "models"
    a, b = make_root(folder)
    image = washer_png(size=32)
    expected = {v: float(Inspector.load(folder / "washer" / v, "cpu").inspect(
        [decoded(image)])[0].score) for v in (a, b)}
    assert not math.isclose(expected[a], expected[b], rel_tol=1e-3)
    env = {"KENSA_MODELS_DIR": str(folder), "KENSA_MODEL_POLL_S": "0.2", "KENSA_RECORDS": "off"}
    answers, failures, stop = [], [], threading.Event()

    def client() -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            while not stop.is_set():
                r = http.post("/v1/inspect", files=upload(image))
                if r.status_code != 200:
                    failures.append((r.status_code, r.text))
                else:
                    answers.append((r.json()["model"], r.json()["model_version"],
                                    r.json()["score"]))

    with running_server(None, env, tmp_path / "server.log") as base:
        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        try:
            for n, target in enumerate([b, a, b, a, b]):
                seen = len(answers)
                if n % 2 == 0:  # through the API
                    r = httpx.post(f"{base}/v1/models/washer/activate",
                                   json={"version": target}, timeout=60)
                    assert r.status_code == 200, r.text
                else:  # through the file, as the CLI or another replica does
                    ModelsRoot(folder).set_active("washer", target)
                wait_until(lambda t=target, s=seen: any(v == t for _, v, _ in answers[s:]))
                wait_until(lambda s=seen: len(answers) > s + 2 * CLIENTS)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        metrics = httpx.get(f"{base}/metrics", timeout=30).text
        client_and_watch_name_the_part(base, image, tmp_path)
    assert failures == []
    assert {v for _, v, _ in answers} == {a, b} and {p for p, _, _ in answers} == {"washer"}
    wrong = [(v, s) for _, v, s in answers if not math.isclose(s, expected[v], rel_tol=1e-4)]
    assert wrong == [], wrong[:5]
    assert 'kensa_model_swaps_total{part="washer"} 5.0' in metrics
    assert 'kensa_inspections_total{label="error"}' not in metrics


def wait_until(check, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def client_and_watch_name_the_part(base: str, image: bytes, tmp_path) -> None:
    """service.client and `kensa watch` send ?model= (the part) to the same server."""
    import json

    from service.client import Client, NotFound
    from service.watch import WatchConfig, Watcher

    with Client(base) as kensa:
        assert kensa.inspect(image, model="washer").model == "washer"
        assert [p.model for p in kensa.models().models] == ["washer"]
        with pytest.raises(NotFound, match="known parts: washer"):
            kensa.inspect(image, model="gear")
    folder = tmp_path / "camera"
    folder.mkdir()
    (folder / "part.png").write_bytes(image)
    counts = Watcher(WatchConfig(folder=folder, url=base, done=tmp_path / "done",
                                 failed=tmp_path / "failed", model="washer",
                                 settle_s=0.1)).run(once=True)
    assert counts["done"] == 1
    assert json.loads((tmp_path / "done" / "part.png.json").read_text())["model"] == "washer"
