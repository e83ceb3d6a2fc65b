"""service.monitoring: each app keeps its own metrics; log records become JSON lines."""

import json
import logging

from service_helpers import upload, washer_png

from service.monitoring import JsonFormatter


def test_two_apps_keep_their_own_metrics(make_client):
    a, b = make_client(), make_client()
    a.post("/v1/inspect", files=upload(washer_png()))
    assert "kensa_batch_size_count 1.0" in a.get("/metrics").text
    assert "kensa_batch_size_count 0.0" in b.get("/metrics").text


def test_a_log_record_is_one_json_line_with_its_fields():
    record = logging.LogRecord("kensa.access", logging.INFO, __file__, 1, "request", None, None)
    record.fields = {"status": 200, "path": "/v1/inspect"}
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert {k: v for k, v in json.loads(line).items() if k != "time"} == {
        "level": "info", "logger": "kensa.access", "message": "request", "status": 200,
        "path": "/v1/inspect"}
