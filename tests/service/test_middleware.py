"""service.middleware: the request body limit and the per-request metrics and log line."""

import asyncio
import logging

import httpx
from service_helpers import upload, washer_png

from service.app import create_app


def test_body_over_the_cap_is_refused_before_reading(make_client):
    client = make_client(max_upload_mb=0.001)
    r = client.post("/v1/inspect", files=upload(b"\0" * 200_000))
    assert r.status_code == 413
    assert r.json() == {"detail": (
        "the request body is over 66,584 bytes; each file may be at most 1,048 bytes: "
        "compress or resize the images, or raise KENSA_MAX_UPLOAD_MB")}


def test_chunked_body_over_the_cap_is_cut_off(make_settings):
    app = create_app(make_settings(max_upload_mb=0.001))
    sent = []

    async def chunks():  # no Content-Length: the server counts as it reads
        yield (b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
               b"Content-Type: image/png\r\n\r\n")
        for _ in range(1000):
            sent.append(1)
            yield b"x" * 1024

    async def scenario():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://kensa") as c:
                return await c.post("/v1/inspect", content=chunks(), headers={
                    "content-type": "multipart/form-data; boundary=b"})

    r = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert r.status_code == 413
    assert r.json()["detail"].startswith("the request body is over 66,584 bytes")
    assert len(sent) < 70  # it stopped reading at the cap


def test_one_log_line_per_request(client, caplog):
    with caplog.at_level(logging.INFO, logger="kensa.access"):
        body = client.post("/v1/inspect", files=upload(washer_png())).json()
        client.get("/health/live")
    lines = [r.fields for r in caplog.records if r.name == "kensa.access"]
    assert len(lines) == 2
    assert {k: lines[0][k] for k in ("method", "path", "status", "id", "label", "score")} == {
        "method": "POST", "path": "/v1/inspect", "status": 200, "id": body["id"],
        "label": body["label"], "score": body["score"]}
    assert lines[0]["elapsed_ms"] > 0
    assert lines[1]["path"] == "/health/live"
