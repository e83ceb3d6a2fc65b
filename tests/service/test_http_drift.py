"""Score drift through the real app: ``GET /v1/models/{part}/drift`` and the drift gauges,
from the records of real inspections and reviews."""

import numpy as np
import pytest
from models_root_helpers import make_root
from service_helpers import png, upload, washer, washer_png

NORMAL_SEEDS = range(100, 130)


def noisy(seed: int, sigma: float) -> bytes:
    """A washer seen by a camera whose sensor got noisier (Gaussian noise, ``sigma`` grey
    levels): the kind of change on a line that moves normal scores."""
    image = washer(seed).astype(np.float64)
    image += np.random.default_rng(seed).normal(0, sigma, image.shape)
    return png(np.clip(image, 0, 255).astype(np.uint8))


@pytest.fixture
def washers_client(make_client, washers_bundle):
    return make_client(model=washers_bundle)


def inspect_all(client, images, source: str) -> list[dict]:
    answers = [client.post("/v1/inspect", files=upload(data), data={"source": source})
               for data in images]
    assert all(a.status_code == 200 for a in answers)
    return [a.json() for a in answers]


def test_a_noisier_camera_drifts_and_an_unchanged_one_does_not(washers_client):
    c = washers_client
    inspect_all(c, [png(washer(s)) for s in NORMAL_SEEDS], "cam-ok")
    inspect_all(c, [noisy(s, 12) for s in NORMAL_SEEDS], "cam-noisy")
    # a request with its own low threshold: abnormal, so not a normal; the cut stays
    low = c.post("/v1/inspect?threshold=0.01", files=upload(png(washer(1))),
                 data={"source": "cam-ok"}).json()
    assert low["label"] == "abnormal"
    r = c.get("/v1/models/washers/drift")
    assert r.status_code == 200, r.text
    report = r.json()
    model = c.get("/v1/model").json()
    assert (report["part"], report["version"], report["window"]) == (
        "washers", model["version"], 1000)
    assert report["reference"]["images"] == 24
    by_source = {s["source"]: s for s in report["sources"]}
    ok, noisy_cam = by_source["cam-ok"], by_source["cam-noisy"]
    assert (ok["records"], noisy_cam["records"]) == (31, 30)
    assert ok["normals"] + 1 == ok["records"]
    assert report["threshold"] == model["thresholds"]["image"]
    assert ok["p_value"] > 0.05
    assert noisy_cam["p_value"] < 1e-4 and noisy_cam["statistic"] > ok["statistic"]
    assert noisy_cam["median"] > report["reference"]["median"]
    assert report["all"]["records"] == 61
    assert report["all"]["reviewed"] == 0 and report["all"]["false_alarm_rate"] is None


def test_reviews_give_the_false_alarm_rate_and_join_the_normals(washers_client):
    c = washers_client
    alarms = [a for a in inspect_all(c, [noisy(s, 25) for s in range(200, 206)], "cam-1")
              if a["label"] == "abnormal"]
    assert len(alarms) >= 4
    normal = inspect_all(c, [png(washer(1))], "cam-1")[0]
    assert normal["label"] == "normal"
    for answer, label in zip(alarms[:4], ["good", "good", "good", "scratch"]):
        assert c.put(f"/v1/inspections/{answer['id']}/review",
                     json={"label": label}).status_code == 200
    assert c.put(f"/v1/inspections/{normal['id']}/review", json={"label": "good"}).status_code == 200
    entry = c.get("/v1/models/washers/drift").json()["all"]
    assert (entry["reviewed"], entry["reviewed_good"], entry["false_alarms"]) == (5, 4, 3)
    assert entry["false_alarm_rate"] == 0.75
    # too few normals for a statistic: it says so instead of a number
    assert entry["statistic"] is None and "fewer than 20" in entry["reason"]


def test_the_drift_gauges_match_the_report(washers_client):
    c = washers_client
    inspect_all(c, [noisy(s, 12) for s in NORMAL_SEEDS[:25]], "cam-noisy")
    report = c.get("/v1/models/washers/drift").json()
    text = c.get("/metrics").text
    noisy_cam = report["sources"][0]
    line = 'kensa_drift_p_value{part="washers",source="cam-noisy"} '
    [value] = [ln[len(line):] for ln in text.splitlines() if ln.startswith(line)]
    assert float(value) == pytest.approx(noisy_cam["p_value"])
    assert 'kensa_drift_normals{part="washers",source="*"} 25.0' in text
    assert 'kensa_drift_false_alarm_rate{part="washers",source="*"} NaN' in text


def test_an_unknown_part_is_404_naming_the_served_ones(washers_client):
    r = washers_client.get("/v1/models/screws/drift")
    assert r.status_code == 404
    assert r.json() == {"detail": "no model part 'screws'; this server serves washers"}


def test_without_records_drift_is_503_saying_why(make_client, washers_bundle):
    c = make_client(model=washers_bundle, records=False)
    r = c.get("/v1/models/washers/drift")
    assert r.status_code == 503
    assert "KENSA_RECORDS" in r.json()["detail"]
    assert "kensa_drift_p_value{" not in c.get("/metrics").text


def test_with_a_models_root_drift_follows_the_part_and_its_active_version(make_client, tmp_path):
    a, b = make_root(tmp_path / "models")  # part `washer`, version a active
    c = make_client(model=None, models_dir=tmp_path / "models")
    for _ in range(3):
        assert c.post("/v1/inspect?model=washer", files=upload(washer_png(size=32))).json()[
            "model_version"] == a
    report = c.get("/v1/models/washer/drift").json()
    assert (report["part"], report["version"], report["all"]["records"]) == ("washer", a, 3)
    assert 'kensa_drift_normals{part="washer",source="*"}' in c.get("/metrics").text
    assert c.post("/v1/models/washer/activate", json={"version": b}).status_code == 200
    report = c.get("/v1/models/washer/drift").json()  # the new version's records: none yet
    assert (report["version"], report["all"]["records"]) == (b, 0)
    assert 'kensa_drift_normals{part="washer",source="*"} 0.0' in c.get("/metrics").text
    r = c.get("/v1/models/bolts/drift")
    assert r.status_code == 404
    assert "bolts" in r.json()["detail"] and "washer" in r.json()["detail"]
