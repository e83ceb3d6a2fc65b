"""Every bad input gets its status and a {"detail": ...} that says what to fix; none a 500."""

import asyncio
import os
import threading
import time

import httpx
import numpy as np
import pytest
from service_helpers import TestClient, png, upload, washer, washer_png

from models.data import decode_image
from models.errors import BundleError, ImageError
from service.app import create_app

NOT_READY = "the model is not loaded yet: retry when /health/ready answers 200"
EMPTY = ("the upload is empty (0 bytes): send the bytes of a PNG, JPEG, BMP or TIFF "
         "(8- or 16-bit; gray, RGB or RGBA) file")
MISSING_FILE = ("missing multipart field 'file': send the image as multipart/form-data field "
                "'file' (for example: curl -F file=@part.png URL)")


def decoder_message(data: bytes) -> str:
    with pytest.raises(ImageError) as err:
        decode_image(data)
    return str(err.value)


def test_zero_length_is_400(client):
    r = client.post("/v1/inspect", files=upload(b""))
    assert (r.status_code, r.json()) == (400, {"detail": EMPTY})


@pytest.mark.parametrize("data", [
    washer_png()[:200],                               # truncated PNG
    os.urandom(0) + bytes(range(256)) * 8,            # random-looking bytes
    b"\x89PNG\r\n\x1a\n" + b"\0" * 64,                # a PNG signature and nothing else
    b"GIF89a",                                        # too short to be anything
])
def test_undecodable_bytes_are_400_with_the_decoders_message(client, data):
    r = client.post("/v1/inspect", files=upload(data))
    assert (r.status_code, r.json()) == (400, {"detail": decoder_message(data)})


@pytest.mark.parametrize("kind", ["text/plain", "application/json"])
def test_non_image_content_type_is_415(client, kind):
    r = client.post("/v1/inspect", files=upload(washer_png(), "notes.txt", kind))
    assert r.status_code == 415
    assert r.json() == {"detail": (
        f"the upload of 'notes.txt' has content type {kind}, not an image: send a PNG, JPEG, "
        "BMP or TIFF file as image/* (or application/octet-stream)")}


def test_file_over_the_upload_limit_is_413(make_client):
    client = make_client(max_upload_mb=0.001)  # 1048 bytes
    data = washer_png()
    assert len(data) > 1048
    r = client.post("/v1/inspect", files=upload(data))
    assert r.status_code == 413
    assert r.json() == {"detail": (
        f"the upload 'part.png' is {len(data):,} bytes, over the limit of 1,048 bytes: "
        "compress or resize the image, or raise KENSA_MAX_UPLOAD_MB")}


def test_too_many_pixels_is_413(make_client):
    client = make_client(max_pixels=1000)
    r = client.post("/v1/inspect", files=upload(washer_png()))  # 48x48 = 2304 pixels
    assert r.status_code == 413
    assert r.json() == {"detail": "the image is 48x48 = 2,304 pixels, over the limit of 1,000: "
                                  "resize it before upload or raise KENSA_MAX_PIXELS"}


def test_a_side_over_the_limit_is_413_and_the_connection_lives_on(client):
    """A 100000 x 1 upload with the overlay asked for was a 500 (the JPEG encoder stops at
    65,500 pixels a side); it is refused at decode now, before any model work."""
    line = png(np.zeros((1, 100_000, 3), np.uint8))
    r = client.post("/v1/inspect?include=overlay", files=upload(line))
    assert (r.status_code, r.json()) == (413, {"detail": (
        "the image is 100000x1: its longer side, 100,000 pixels, is over the limit of 32,768: "
        "resize it before upload or raise KENSA_MAX_SIDE (at most 65,500)")})
    assert client.post("/v1/inspect?include=overlay", files=upload(washer_png())
                       ).status_code == 200


@pytest.mark.parametrize(("shape", "detail"), [
    ((1, 1), ("the image is 1x1: its shorter side, 1 pixel, is under the minimum of 16: send "
             "the whole part, not a crop of it, or lower KENSA_MIN_SIDE")),
    ((15, 48), ("the image is 48x15: its shorter side, 15 pixels, is under the minimum of 16: "
               "send the whole part, not a crop of it, or lower KENSA_MIN_SIDE")),
    ((16, 336), ("the image is 336x16, 21 times as long as wide, over the limit of 20: cut it "
                "into pieces at most 20 times as long as wide, or raise KENSA_MAX_ASPECT")),
])
def test_a_sliver_is_422(client, shape, detail):
    for route in ("/v1/inspect", "/v1/inspect/overlay"):
        r = client.post(route, files=upload(png(np.zeros(shape, np.uint8))))
        assert (r.status_code, r.json()) == (422, {"detail": detail})
    r = client.post("/v1/inspect/batch", files=[("files", ("a.png", png(np.zeros(shape,
                                                                                 np.uint8))))])
    assert (r.json()["results"][0]["status"], r.json()["results"][0]["error"]) == (422, detail)


def test_the_geometry_limits_are_settings(make_client):
    client = make_client(max_side=40, min_side=1, max_aspect=1000)
    r = client.post("/v1/inspect", files=upload(washer_png()))
    assert r.status_code == 413 and "limit of 40:" in r.json()["detail"]
    r = client.post("/v1/inspect", files=upload(png(np.zeros((1, 30), np.uint8))))
    assert r.status_code == 200, r.text


def test_missing_field_is_422(client):
    r = client.post("/v1/inspect", files={"image": ("p.png", washer_png(), "image/png")})
    assert (r.status_code, r.json()) == (422, {"detail": MISSING_FILE})


def test_no_body_is_422(client):
    r = client.post("/v1/inspect")
    assert (r.status_code, r.json()) == (
        422, {"detail": f"the request body is untyped, not multipart/form-data; {MISSING_FILE}"})


def test_raw_image_body_is_422_with_advice(client):
    r = client.post("/v1/inspect", content=washer_png(), headers={"content-type": "image/png"})
    assert (r.status_code, r.json()) == (
        422, {"detail": f"the request body is image/png, not multipart/form-data; {MISSING_FILE}"})


def test_text_field_instead_of_file_is_422(client):
    r = client.post("/v1/inspect", data={"file": "not a file"})
    assert (r.status_code, r.json()) == (422, {"detail": (
        "the request body is application/x-www-form-urlencoded, not multipart/form-data; "
        "field 'file' must be a file (a multipart part with a filename), not a text value")})


def test_unknown_include_is_422(client):
    r = client.post("/v1/inspect?include=mask,xray", files=upload(washer_png()))
    assert (r.status_code, r.json()) == (422, {"detail": (
        "query parameter 'include': unknown value(s) xray; choose from mask, heatmap, "
        "overlay, reconstruction (comma-separated)")})


@pytest.mark.parametrize("value", ["0", "-1", "1e-320", "0.0009", "-inf"])
def test_a_threshold_under_a_thousandth_is_422(client, value):
    """threshold=0, -1 or 1e-320 labeled every image abnormal without a word."""
    for route in ("/v1/inspect", "/v1/inspect/overlay"):
        r = client.post(f"{route}?threshold={value}", files=upload(washer_png()))
        assert r.status_code == 422, r.text
        assert r.json()["detail"] in (
            (f"query parameter 'threshold' is {float(value)!r}: send a number of at least 0.001 "
            "(the fused score is in units of the calibrated thresholds, about 1; under 0.001 "
            "every image would be abnormal)"),
            f"query parameter 'threshold': Input should be a finite number (got '{value}')")
    r = client.post(f"/v1/inspect/batch?threshold={value}", files=[("files", ("a.png",
                                                                              washer_png()))])
    assert r.status_code == 422
    assert client.post("/v1/inspect?threshold=0.001", files=upload(washer_png())
                       ).json()["label"] == "abnormal"


def test_kensa_threshold_under_a_thousandth_is_refused(make_settings):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="KENSA_THRESHOLD must be at least 0.001"):
        make_settings(threshold=0.0)


@pytest.mark.parametrize("value,why", [
    ("abc", "Input should be a valid number, unable to parse string as a number"),
    ("nan", "Input should be a finite number"),
    ("inf", "Input should be a finite number"),
])
def test_bad_threshold_is_422(client, value, why):
    r = client.post(f"/v1/inspect?threshold={value}", files=upload(washer_png()))
    assert (r.status_code, r.json()) == (
        422, {"detail": f"query parameter 'threshold': {why} (got '{value}')"})


def test_malformed_multipart_is_400(client):
    r = client.post("/v1/inspect", content=b"--x\r\nnot a header\r\n\r\n",
                    headers={"content-type": "multipart/form-data; boundary=y"})
    assert r.status_code == 400
    assert r.json() == {"detail": "the request body is not valid multipart/form-data: send "
                                  "the image as multipart field 'file' (or 'files' for a batch)"}


def test_unknown_path_and_method(client):
    assert client.get("/v2/inspect").json() == {
        "detail": "no such endpoint: /v2/inspect; the API is listed at /docs"}
    r = client.get("/v1/inspect")
    assert (r.status_code, r.json()) == (405, {
        "detail": "GET is not allowed on /v1/inspect; the allowed methods are listed at /docs"})


def test_everything_is_503_before_the_model_is_ready(make_settings):
    client = TestClient(create_app(make_settings()))  # no `with`: the lifespan never ran
    assert client.get("/health/live").status_code == 200
    for r in (client.get("/health/ready"), client.get("/v1/model"),
              client.post("/v1/inspect", files=upload(washer_png())),
              client.post("/v1/inspect/overlay", files=upload(washer_png())),
              client.post("/v1/inspect/batch", files=[("files", ("a.png", washer_png()))])):
        assert (r.status_code, r.json()) == (503, {"detail": NOT_READY})


def test_a_missing_bundle_stops_startup(make_settings, tmp_path):
    app = create_app(make_settings(model=tmp_path / "nowhere"))
    with pytest.raises(BundleError, match=str(tmp_path / "nowhere")), TestClient(app):
        pass


def test_a_corrupt_bundle_stops_startup(make_settings, tiny_bundle, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_bundle.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not weights")
    app = create_app(make_settings(model=broken))
    with pytest.raises(BundleError, match=str(broken)), TestClient(app):
        pass


def test_full_queue_is_503_with_retry_after(make_settings):
    """With the inference thread held, one job runs, one waits, the next is refused."""
    app = create_app(make_settings(queue_size=1, batch_max_size=1, batch_wait_ms=0))
    data = washer_png()

    async def scenario():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://kensa") as c:
                gate, running, waiting = await fill(app, c, data)
                refused = await c.post("/v1/inspect", files=upload(data))
                gate.set()
                return refused, await running, await waiting

    refused, running, waiting = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json() == {"detail": BUSY}
    assert (running.status_code, waiting.status_code) == (200, 200)


def test_a_request_without_a_valid_key_takes_no_room_and_gets_401(make_settings):
    app = create_app(make_settings(queue_size=1, batch_max_size=1, batch_wait_ms=0,
                                   api_keys="alpha-key"))
    data = washer_png()

    async def scenario():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://kensa") as c:
                gate, running, waiting = await fill(app, c, data, {"X-API-Key": "alpha-key"})
                stranger = await c.post("/v1/inspect", files=upload(data),
                                        headers={"X-API-Key": "guess"})
                gate.set()
                return stranger, await running, await waiting

    stranger, running, waiting = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert stranger.status_code == 401  # not 503: a full server tells strangers nothing
    assert (running.status_code, waiting.status_code) == (200, 200)


async def fill(app, client, data: bytes, headers: dict | None = None):
    """Holds the model thread and fills a server of one running and one waiting place.

    Returns:
        (the event that frees the model thread, the running request, the waiting one).
    """
    batcher = app.state.batcher
    gate = threading.Event()
    batcher.executor.submit(gate.wait)  # the model thread is busy
    running = asyncio.create_task(client.post("/v1/inspect", files=upload(data),
                                              headers=headers))
    await until(lambda: batcher.running_images == 1)
    waiting = asyncio.create_task(client.post("/v1/inspect", files=upload(data),
                                              headers=headers))
    await until(lambda: batcher.queue.qsize() == 1)
    return gate, running, waiting


BUSY = ("the server is busy: 2 inspection requests are in progress, as many as it takes "
        "(KENSA_QUEUE_SIZE waiting plus KENSA_BATCH_MAX_SIZE in the model); retry after the "
        "Retry-After delay")


def test_a_full_server_answers_503_without_reading_the_body(make_settings):
    """Capacity is reserved before the body is read: a request whose body never completes
    still gets its 503, at once."""
    app = create_app(make_settings(queue_size=1, batch_max_size=1, batch_wait_ms=0))
    data = washer_png()
    never = asyncio.Event()

    async def endless_body():
        yield b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
        await never.wait()  # the rest never comes
        yield b""

    async def scenario():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://kensa") as c:
                gate, running, waiting = await fill(app, c, data)
                start = time.perf_counter()
                refused = await asyncio.wait_for(c.post(
                    "/v1/inspect", content=endless_body(),
                    headers={"Content-Type": "multipart/form-data; boundary=x"}), 10)
                took = time.perf_counter() - start
                gate.set()
                return refused, took, await running, await waiting

    refused, took, running, waiting = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert (refused.status_code, refused.json()) == (503, {"detail": BUSY})
    assert refused.headers["retry-after"] == "1"
    assert took < 1.0  # milliseconds in fact; generous for a shared machine
    assert (running.status_code, waiting.status_code) == (200, 200)


async def until(condition, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never came true")


def test_batch_over_max_batch_is_413(make_client):
    client = make_client(max_batch=2)
    files = [("files", (f"{i}.png", washer_png(i), "image/png")) for i in range(3)]
    r = client.post("/v1/inspect/batch", files=files)
    assert (r.status_code, r.json()) == (413, {"detail": (
        "too many files: a batch takes at most 2 images (KENSA_MAX_BATCH); split it into "
        "several requests")})


def test_no_500_for_odd_requests(client):
    data = png(washer(1))
    odd = [
        client.post("/v1/inspect", files={"file": ("p.png", data, "image/png"),
                                          "file2": ("q.png", data, "image/png")}),
        client.post("/v1/inspect", data={"file": "not a file"}),
        client.post("/v1/inspect?include=", files=upload(data)),
        client.post("/v1/inspect?include=,,MASK", files=upload(data)),
        client.post("/v1/inspect/batch", content=b"", headers={"content-type": "image/png"}),
        client.post("/v1/inspect", content=data, headers={"content-type": "image/png"}),
        client.post("/health/live"),
    ]
    for r in odd:
        assert r.status_code < 500, r.text
        assert r.status_code == 200 or isinstance(r.json()["detail"], str)


@pytest.mark.parametrize("route", ["/v1/inspect", "/v1/inspect/overlay"])
def test_two_file_fields_are_422(client, route):
    """The last of two `file` parts was judged, silently."""
    two = [("file", ("a.png", washer_png(1), "image/png")),
           ("file", ("b.png", washer_png(2), "image/png"))]
    r = client.post(route, files=two)
    assert (r.status_code, r.json()) == (422, {"detail": (
        "multipart field 'file' was sent 2 times: send one image per request (several go to "
        "/v1/inspect/batch, each as a 'files' field)")})


def test_a_float_tiff_is_415_with_the_reason(client):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((48, 48), 0.5, np.float32)).save(buf, format="TIFF")
    r = client.post("/v1/inspect", files=upload(buf.getvalue(), "part.tif", "image/tiff"))
    assert (r.status_code, r.json()) == (415, {"detail": (
        "the image is a TIFF of floating-point samples, whose value range (0-1, raw counts, "
        "millimetres...) the file does not say: convert it to 8- or 16-bit, scaled as the "
        "training images are")})
