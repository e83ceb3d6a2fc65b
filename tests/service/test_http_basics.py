"""Health, model info, OpenAPI and Swagger UI, Prometheus metrics."""

import threading
import time

import pytest
from service_helpers import TestClient, upload, washer_png

from service.app import create_app, load_inspector
from service.deps import NOT_READY

INSPECT_PATHS = ("/v1/inspect", "/v1/inspect/batch", "/v1/inspect/overlay")


def test_health(client, inspector):
    assert client.get("/health/live").json() == {"status": "alive"}
    assert client.get("/health/ready").json() == {"status": "ready",
                                                  "model_version": inspector.info["version"],
                                                  "records": "ok"}


def test_model_info(client, inspector):
    body = client.get("/v1/model").json()
    info = inspector.info
    assert {k: body[k] for k in ("name", "version", "created", "image_size", "channels")} == {
        k: info[k] for k in ("name", "version", "created", "image_size", "channels")}
    assert body["thresholds"] == info["thresholds"]
    assert body["default_threshold"] == inspector.image_threshold
    assert body["fusion"]["rule"] == info["fusion"]["rule"]
    assert body["device"] == "cpu"
    assert body["flips"] == inspector.cal.flips == info["calibration"]["flips"] == []
    assert body["metrics"] == info["metrics"] and "image_auroc" in body["metrics"]
    # what it was trained on, operator labels included, so an operator can tell
    assert body["data"] == info["data"]
    assert body["data"]["train_images"] == 16
    assert (body["data"]["labeled_images"], body["data"]["labeled_good_trained"]) == (0, 0)


def test_openapi_documents_every_field_and_status(client):
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.") and spec["info"]["description"]
    paths = spec["paths"]
    assert set(paths) >= {"/health/live", "/health/ready", "/v1/model", "/metrics",
                          *INSPECT_PATHS}
    for path in INSPECT_PATHS:
        op = paths[path]["post"]
        assert {"200", "400", "401", "413", "415", "422", "503"} <= set(op["responses"]), path
        params = {p["name"]: p for p in op["parameters"]}
        assert params["threshold"]["description"]
        assert path.endswith("overlay") or params["include"]["description"]
    assert "image/jpeg" in paths["/v1/inspect/overlay"]["post"]["responses"]["200"]["content"]
    schemas = spec["components"]["schemas"]
    for name in ("InspectionResult", "ReconstructionOpinion", "LatentOpinion", "Defect",
                 "ModelInfo", "Thresholds", "BatchItemResult", "BatchItemError", "ErrorBody",
                 "Health"):
        for field, prop in schemas[name]["properties"].items():
            assert prop.get("description"), (name, field)
            assert prop.get("examples") or "$ref" in prop, (name, field)
    assert spec["components"]["securitySchemes"]["APIKey"]["name"] == "X-API-Key"


def test_openapi_is_valid(client):
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(client.get("/openapi.json").json())


def test_swagger_ui(client):
    r = client.get("/docs")
    assert r.status_code == 200 and "swagger-ui" in r.text


def test_metrics(client):
    client.post("/v1/inspect", files=upload(washer_png()))
    client.post("/v1/inspect", files=upload(b""))
    client.post("/v1/inspect/batch", files=[("files", ("a.png", washer_png(), "image/png")),
                                            ("files", ("b.png", washer_png(2), "image/png"))])
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'kensa_http_requests_total{endpoint="/v1/inspect",method="POST",status="200"} 1.0' \
        in text
    assert 'kensa_http_requests_total{endpoint="/v1/inspect",method="POST",status="400"} 1.0' \
        in text
    assert 'kensa_inspections_total{label="normal"}' in text
    assert 'kensa_http_request_duration_seconds_bucket{endpoint="/v1/inspect",le="+Inf"} 2.0' \
        in text
    assert "kensa_batch_size_count 2.0" in text and "kensa_batch_size_sum 3.0" in text
    assert "kensa_queue_depth 0.0" in text
    assert 'kensa_model_info{device="cpu",name="tiny"' in text


def test_health_live_answers_while_the_bundle_loads_and_ready_says_503(make_settings):
    """``kensa serve`` binds first and loads in the background (``load``): until the bundle
    is in, liveness is 200 and readiness and the API are 503."""
    loading = threading.Event()

    def slow_load(settings):
        assert loading.wait(30)
        return load_inspector(settings)

    app = create_app(make_settings(), load=slow_load)
    with TestClient(app) as client:
        assert client.get("/health/live").status_code == 200
        ready = client.get("/health/ready")
        assert (ready.status_code, ready.json()) == (503, {"detail": NOT_READY})
        assert client.post("/v1/inspect", files=upload(washer_png())).status_code == 503
        loading.set()
        for _ in range(300):
            if client.get("/health/ready").status_code == 200:
                break
            time.sleep(0.05)
        assert client.get("/health/ready").status_code == 200
        assert client.post("/v1/inspect", files=upload(washer_png())).status_code == 200
