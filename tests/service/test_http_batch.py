"""POST /v1/inspect/batch: upload order, per-item errors, one inference path."""

import base64

import cv2
import numpy as np
from service_helpers import decoded, png, washer, washer_png


def files(*items):
    return [("files", item) for item in items]


def test_results_in_upload_order_equal_the_inspector(runtime_client, runtime_inspector):
    uploads = [washer_png(seed, defect) for seed, defect in
               [(1, None), (2, "scratch"), (3, None), (4, "chip"), (5, "stain")]]
    r = runtime_client.post("/v1/inspect/batch",
                            files=files(*[(f"{i}.png", d, "image/png")
                                          for i, d in enumerate(uploads)]))
    assert r.status_code == 200
    results = r.json()["results"]
    want = runtime_inspector.inspect([decoded(d) for d in uploads])
    assert [e["filename"] for e in results] == [f"{i}.png" for i in range(5)]
    assert [(e["score"], e["label"], e["threshold"]) for e in results] == [
        (w.score, w.label, w.threshold) for w in want]
    assert len({e["id"] for e in results}) == 5


def test_bad_files_get_errors_and_do_not_fail_the_others(make_client, inspector):
    client = make_client(max_pixels=48 * 48)
    good_a, good_b = washer_png(1), washer_png(2, "dent")
    big = png(np.zeros((49, 49), np.uint8))
    r = client.post("/v1/inspect/batch", files=files(
        ("a.png", good_a, "image/png"), ("empty.png", b"", "image/png"),
        ("notes.txt", b"hello", "text/plain"), ("big.png", big, "image/png"),
        ("cut.png", good_a[:100], "image/png"), ("b.png", good_b, "image/png")))
    assert r.status_code == 200
    a, empty, notes, too_big, cut, b = r.json()["results"]
    want_a, want_b = inspector.inspect([decoded(good_a), decoded(good_b)])
    assert (a["filename"], a["score"]) == ("a.png", want_a.score)
    assert (b["filename"], b["score"]) == ("b.png", want_b.score)
    assert empty == {"filename": "empty.png", "status": 400, "error": (
        "the upload is empty (0 bytes): send the bytes of a PNG, JPEG, BMP or TIFF "
        "(8- or 16-bit; gray, RGB or RGBA) file")}
    assert notes == {"filename": "notes.txt", "status": 415, "error": (
        "the upload of 'notes.txt' has content type text/plain, not an image: send a PNG, "
        "JPEG, BMP or TIFF file as image/* (or application/octet-stream)")}
    assert too_big == {"filename": "big.png", "status": 413, "error": (
        "the image is 49x49 = 2,401 pixels, over the limit of 2,304: resize it before "
        "upload or raise KENSA_MAX_PIXELS")}
    assert cut["status"] == 400 and cut["error"].startswith("the PNG data is truncated")


def test_every_file_bad_is_still_200(client):
    r = client.post("/v1/inspect/batch", files=files(("x", b"", "image/png")))
    assert r.status_code == 200
    assert r.json()["results"][0]["status"] == 400


def test_batch_pictures_and_threshold(client):
    shapes = [(48, 48), (48, 20), (16, 48)]
    uploads = [png(washer(i)[:h, :w]) for i, (h, w) in enumerate(shapes)]
    r = client.post("/v1/inspect/batch?include=mask,heatmap&threshold=0.001",
                    files=files(*[(f"{i}.png", d, "image/png") for i, d in enumerate(uploads)]))
    for entry, (h, w) in zip(r.json()["results"], shapes):
        assert (entry["threshold"], entry["label"]) == (0.001, "abnormal")
        for key, dtype in (("mask", np.uint8), ("heatmap", np.uint16)):
            pic = cv2.imdecode(np.frombuffer(base64.b64decode(entry[key]), np.uint8),
                               cv2.IMREAD_UNCHANGED)
            assert (pic.shape, pic.dtype) == ((h, w), dtype)


def test_batch_larger_than_one_model_batch_keeps_order(make_client, inspector):
    client = make_client(batch_max_size=2)  # the route works through it two files at a time
    uploads = [washer_png(seed) for seed in range(5)]
    r = client.post("/v1/inspect/batch",
                    files=files(*[(f"{i}.png", d, "image/png") for i, d in enumerate(uploads)]))
    scores = [e["score"] for e in r.json()["results"]]
    want = [inspector.inspect([decoded(d) for d in uploads[i:i + 2]]) for i in (0, 2, 4)]
    assert scores == [w.score for chunk in want for w in chunk]


def test_a_batch_of_several_shapes_keeps_each_aspect_and_equals_the_inspector(runtime_client,
                                                                              runtime_inspector):
    # the tiny bundle keeps the aspect (the default): each upload is seen at its own shape,
    # the batch is run a shape at a time, and the answers come back in upload order
    assert runtime_inspector.cfg.keep_aspect
    w = washer(3, "scratch", size=96)
    uploads = [png(w[:48]), png(w[:, :40]), washer_png(4), png(w[10:30, :90])]
    r = runtime_client.post("/v1/inspect/batch",
                            files=files(*[(f"{i}.png", d, "image/png")
                                          for i, d in enumerate(uploads)]))
    assert r.status_code == 200
    results = r.json()["results"]
    want = runtime_inspector.inspect([decoded(d) for d in uploads])
    assert [(e["filename"], e["width"], e["height"]) for e in results] == [
        (f"{i}.png", x.width, x.height) for i, x in enumerate(want)]
    assert [(96, 48), (40, 96), (48, 48), (90, 20)] == [(x.width, x.height) for x in want]
    assert [(e["score"], e["label"]) for e in results] == [(x.score, x.label) for x in want]
    model = runtime_client.get("/v1/model").json()
    assert model["keep_aspect"] is True


def test_a_batch_answers_413_for_an_image_over_the_budget_and_inspects_the_rest(make_client):
    client = make_client(max_inflight_mb=100 / 1024)  # a washer fits, a 200x200 image does not
    big = png(np.full((200, 200, 3), 90, np.uint8))
    r = client.post("/v1/inspect/batch", files=[("files", ("a.png", washer_png(1), "image/png")),
                                                ("files", ("big.png", big, "image/png"))])
    assert r.status_code == 200
    ok, refused = r.json()["results"]
    assert ok["label"] in ("normal", "abnormal")
    assert refused["status"] == 413
    assert "over the server's whole in-flight budget of 102,400 bytes" in refused["error"]


def test_a_batch_over_the_pixel_cap_is_refused_before_decoding(make_client):
    client = make_client(max_batch_pixels=3 * 48 * 48)
    files = [("files", (f"{n}.png", washer_png(n), "image/png")) for n in range(4)]
    r = client.post("/v1/inspect/batch", files=files)
    assert r.status_code == 413
    assert r.json()["detail"] == (
        "the batch's images have 9,216 pixels in all, over the limit of 6,912 "
        "(KENSA_MAX_BATCH_PIXELS); split it into several requests")
