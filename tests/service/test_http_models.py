"""Serving a models root through the real app (httpx via TestClient): parts chosen with
?model=, activation and rollback with hot swap, the `active` file followed, refusals, the
cap on loaded parts, challenger scoring and records that name the part."""

from __future__ import annotations

import math
import shutil
import time

import pytest
from models_root_helpers import golden_version, make_root, reweighted_version
from service_helpers import TestClient, upload, washer_png

from models.inference import Inspector
from service.app import create_app
from service.config import Settings
from service.registry import ModelsRoot, ModelsRootError


@pytest.fixture(scope="module")
def source_root(tmp_path_factory):
    """Versions A (active) and B of part `washer`, made once and copied per test."""
    folder = tmp_path_factory.mktemp("models-source") / "models"
    a, b = make_root(folder)
    return folder, a, b


@pytest.fixture(scope="module")
def expected(source_root):
    """The score each version gives the test image, from the Inspector directly."""
    from service_helpers import decoded

    folder, a, b = source_root
    image = decoded(washer_png(size=32))
    return {v: float(Inspector.load(folder / "washer" / v, "cpu").inspect([image])[0].score)
            for v in (a, b)}


@pytest.fixture
def root(source_root, tmp_path):
    folder, a, b = source_root
    shutil.copytree(folder, tmp_path / "models")
    return tmp_path / "models", a, b


@pytest.fixture
def serve(root, data_dir):
    with_clients = []

    def make(**overrides) -> TestClient:
        settings = Settings(**{"models_dir": root[0], "device": "cpu", "data_dir": data_dir,
                               "model_poll_s": 0.05, **overrides})
        client = TestClient(create_app(settings))
        with_clients.append(client)
        return client.__enter__()
    yield make
    for client in with_clients:
        client.__exit__(None, None, None)


def inspect(client, model: str | None = None, headers=None) -> dict:
    r = client.post("/v1/inspect", params={"model": model} if model else {},
                    files=upload(washer_png(size=32)), headers=headers or {})
    assert r.status_code == 200, r.text
    return r.json()


def wait_for(check, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (got := check()):
            return got
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_answers_name_the_part_and_version_that_judged(serve, root, expected):
    _, a, _ = root
    client = serve()
    body = inspect(client)
    assert (body["model"], body["model_version"]) == ("washer", a)
    assert math.isclose(body["score"], expected[a], rel_tol=1e-5)
    assert inspect(client, "washer")["model_version"] == a
    info = client.get("/v1/model", params={"model": "washer"}).json()
    assert (info["model"], info["version"]) == ("washer", a)
    assert client.get("/v1/model").json()["version"] == a  # the page's call
    overlay = client.post("/v1/inspect/overlay", files=upload(washer_png(size=32)))
    assert (overlay.headers["X-Kensa-Model"], overlay.headers["X-Kensa-Model-Version"]) == (
        "washer", a)
    batch = client.post("/v1/inspect/batch?model=washer",
                        files=[("files", ("a.png", washer_png(size=32), "image/png"))] * 2)
    assert [r["model_version"] for r in batch.json()["results"]] == [a, a]


def test_an_unknown_part_is_404_listing_the_known_ones(serve):
    client = serve()
    r = client.post("/v1/inspect?model=bolt", files=upload(washer_png(size=32)))
    assert r.status_code == 404
    assert r.json()["detail"].endswith("known parts: washer")
    assert client.get("/v1/model?model=bolt").status_code == 404


def test_activate_swaps_and_rollback_returns(serve, root, expected):
    folder, a, b = root
    client = serve()
    r = client.post("/v1/models/washer/activate", json={"version": b})
    assert (r.status_code, r.json()["active"], r.json()["serving"], r.json()["previous"]) == (
        200, b, b, a)
    body = inspect(client)
    assert body["model_version"] == b
    assert math.isclose(body["score"], expected[b], rel_tol=1e-5)
    assert expected[a] != pytest.approx(expected[b], rel=1e-3)  # the two really differ
    assert ModelsRoot(folder).active("washer") == b
    listed = client.get("/v1/models").json()
    assert listed["default"] == "washer"
    [part] = listed["models"]
    assert [(v["version"], v["active"]) for v in part["versions"]] == [(a, False), (b, True)]
    assert part["versions"][0]["created"] and "image_auroc" in part["versions"][0]["metrics"]
    rollback = client.post("/v1/models/washer/activate", json={"version": part["previous"]})
    assert rollback.json()["serving"] == a and inspect(client)["model_version"] == a
    assert 'kensa_model_swaps_total{part="washer"} 2.0' in client.get("/metrics").text


def test_an_invalid_version_is_409_with_the_reason_and_the_old_one_stays(serve, root):
    folder, a, b = root
    (folder / "washer" / b / "model.safetensors").write_bytes(b"not weights")
    client = serve()
    r = client.post("/v1/models/washer/activate", json={"version": b})
    assert r.status_code == 409
    assert r.json()["detail"].startswith(f"version '{b}' of 'washer' is not a valid bundle: ")
    assert "does not match the hash in bundle.json" in r.json()["detail"]
    assert ModelsRoot(folder).active("washer") == a and inspect(client)["model_version"] == a
    assert 'kensa_model_refused_total{part="washer"} 1.0' in client.get("/metrics").text
    missing = client.post("/v1/models/washer/activate", json={"version": "nope"})
    assert missing.status_code == 404 and "its versions:" in missing.json()["detail"]
    assert client.post("/v1/models/bolt/activate", json={"version": a}).status_code == 404


def test_activation_needs_the_api_key(serve, root):
    _, _, b = root
    client = serve(api_keys="k1")
    assert client.post("/v1/models/washer/activate", json={"version": b}).status_code == 401
    assert client.get("/v1/models").status_code == 401
    ok = client.post("/v1/models/washer/activate", json={"version": b},
                     headers={"X-API-Key": "k1"})
    assert ok.status_code == 200


def test_a_change_of_the_active_file_on_disk_is_followed(serve, root):
    folder, a, b = root
    client = serve()
    assert inspect(client)["model_version"] == a
    ModelsRoot(folder).set_active("washer", b)  # the CLI, or another replica
    wait_for(lambda: inspect(client)["model_version"] == b)
    (folder / "washer" / "active").write_text("not-a-version\n")  # refused, b stays
    wait_for(lambda: 'kensa_model_refused_total{part="washer"} 1.0' in client.get(
        "/metrics").text)
    assert inspect(client)["model_version"] == b


def test_auto_activate_makes_a_completed_version_active(serve, root):
    folder, a, _ = root
    client = serve(auto_activate=True)
    assert inspect(client)["model_version"] == a
    c = reweighted_version(folder / "washer", 0.3)
    wait_for(lambda: inspect(client)["model_version"] == c)
    assert ModelsRoot(folder).active("washer") == c


def test_several_parts_a_default_and_the_loaded_cap(root, serve):
    folder, a, _ = root
    for part in ("gear", "nut"):
        (folder / part).mkdir()
        ModelsRoot(folder).set_active(part, golden_version(folder / part))
    client = serve(default_model="washer", max_loaded_models=2)
    assert inspect(client)["model"] == "washer"
    assert inspect(client, "gear")["model"] == "gear"
    assert inspect(client, "nut")["model"] == "nut"  # gear unloaded: washer is the default
    serving = {p["model"]: p["serving"] for p in client.get("/v1/models").json()["models"]}
    assert serving == {"gear": None, "nut": a, "washer": a}
    assert inspect(client, "gear")["model_version"] == a  # loads again on use


def test_without_a_default_a_request_must_name_the_part(root, serve):
    folder, a, _ = root
    (folder / "gear").mkdir()
    ModelsRoot(folder).set_active("gear", golden_version(folder / "gear"))
    client = serve()
    r = client.post("/v1/inspect", files=upload(washer_png(size=32)))
    assert r.status_code == 422
    assert "serves several parts (gear, washer)" in r.json()["detail"]
    assert inspect(client, "gear")["model_version"] == a
    # the operator page asks /v1/model without a part: it gets the part loaded first
    assert client.get("/v1/model").json()["model"] == "gear"


def test_kensa_serve_stops_at_once_naming_a_missing_root_or_a_bad_challenger(
        tmp_path, monkeypatch, capsys):
    from service.app import run

    monkeypatch.setenv("KENSA_RECORDS", "off")
    monkeypatch.setenv("KENSA_MODELS_DIR", str(tmp_path / "nope"))
    with pytest.raises(SystemExit) as stopped:
        run()
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"kensa serve: cannot serve the models root: KENSA_MODELS_DIR {tmp_path / 'nope'} is "
        f"not a folder: create it and train into it ('kensa train --data DIR --out "
        f"{tmp_path / 'nope'}/PART'), or fix the mount")
    monkeypatch.setenv("KENSA_CHALLENGER", "washer")
    with pytest.raises(SystemExit):
        run()
    assert "KENSA_CHALLENGER is 'washer': write PART=VERSION" in capsys.readouterr().err


def test_a_missing_models_root_stops_start_up_naming_it(tmp_path):
    app = create_app(Settings(models_dir=tmp_path / "nope", device="cpu", records=False))
    with (pytest.raises(ModelsRootError, match=f"KENSA_MODELS_DIR {tmp_path / 'nope'} is not"),
          TestClient(app)):
        pass


def test_records_name_the_part(serve):
    client = serve()
    body = inspect(client)
    record = client.get(f"/v1/inspections/{body['id']}").json()
    assert (record["model"], record["model_version"]) == ("washer", body["model_version"])
    page = client.get("/v1/inspections", params={"model": "washer"}).json()
    assert [i["id"] for i in page["items"]] == [body["id"]]
    assert client.get("/v1/inspections", params={"model": "gear"}).json()["items"] == []


def test_challenger_scores_beside_the_answers_and_reports_agreement(serve, root):
    _, a, b = root
    client = serve(keep_images="all")
    r = client.post("/v1/models/washer/challenger", json={"version": b})
    assert (r.status_code, r.json()["version"], r.json()["scored"]) == (200, b, 0)
    answers = [inspect(client) for _ in range(6)]
    assert {x["model_version"] for x in answers} == {a}  # answers stay the active version's
    def finished():
        got = client.get("/v1/models/washer/challenger").json()
        return got if got["scored"] + got["dropped"] == 6 else None

    report = wait_for(finished)
    assert report["active_labels"]["normal"] + report["active_labels"]["abnormal"] == \
        report["scored"]
    ids = {x["id"] for x in answers}
    assert set(report["disagreements"]) <= ids
    assert report["scored"] == 6  # its queue (32) never filled
    client.put(f"/v1/inspections/{answers[0]['id']}/review", json={"label": "good"})
    report = client.get("/v1/models/washer/challenger").json()
    assert report["reviewed"] == 1
    assert report["active_accuracy"] == (1.0 if answers[0]["label"] == "normal" else 0.0)
    assert report["challenger_accuracy"] in (0.0, 1.0)
    stopped = client.delete("/v1/models/washer/challenger")
    assert stopped.status_code == 200
    assert client.get("/v1/models/washer/challenger").status_code == 404


def test_challenger_setting_starts_one(serve, root):
    _, _, b = root
    client = serve(challenger=f"washer={b}")
    assert client.get("/v1/models").json()["models"][0]["challenger"] == b


def test_a_challenger_behind_skips_images_and_counts_them(source_root):
    from service_helpers import decoded

    from service.challenger import Challenger
    from service.serving import Served

    folder, _, b = source_root
    served = Served("washer", b, Inspector.load(folder / "washer" / b, "cpu"))
    challenger = Challenger(served, queue_size=1)
    image = decoded(washer_png(size=32))
    for n in range(50):  # far faster than it scores
        challenger.offer(image, str(n), "normal")
    wait_for(lambda: challenger.snapshot()["scored"] + challenger.dropped == 50)
    challenger.stop()
    assert challenger.dropped > 0 and challenger.snapshot()["scored"] >= 1
