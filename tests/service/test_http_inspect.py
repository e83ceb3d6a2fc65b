"""POST /v1/inspect and /v1/inspect/overlay against the real app and a real tiny bundle.

One inference path: the server's score, label, defects and maps equal what
``Inspector.inspect`` gives for the same bytes decoded with ``models.data.decode_image``; the
tests that pin this run on both runtimes (``runtime_client``: torch and onnx).
"""

import base64
import uuid

import cv2
import numpy as np
import pytest
from service_helpers import decoded, png, upload, washer, washer_png

from models.data import read_image
from service.pictures import heatmap_u16

INCLUDE_ALL = "mask,heatmap,overlay,reconstruction"


def picture(b64: str, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), flags)


def test_answer_equals_the_inspector_for_the_same_bytes(runtime_client, runtime_inspector):
    data = washer_png(seed=3, defect="scratch")
    r = runtime_client.post("/v1/inspect", files=upload(data),
                            params={"include": "mask,heatmap"})
    assert r.status_code == 200
    body = r.json()
    [want] = runtime_inspector.inspect([decoded(data)])
    assert uuid.UUID(body["id"]).version == 4
    assert body["model_version"] == runtime_inspector.info["version"]
    assert (body["label"], body["score"], body["threshold"]) == (want.label, want.score,
                                                                 want.threshold)
    assert (body["width"], body["height"]) == (48, 48)
    assert body["elapsed_ms"] > 0
    assert body["reconstruction"] == {"score": want.reconstruction.score,
                                      "threshold": want.reconstruction.threshold,
                                      "label": want.reconstruction.label}
    assert body["latent"] == {"label": want.latent.label, "distance": want.latent.distance,
                              "threshold": want.latent.threshold, "score": want.latent.score,
                              "cluster": want.latent.cluster,
                              "confidence": want.latent.confidence}
    assert body["defects"] == [{"bbox": [r.x, r.y, r.w, r.h], "area": r.area, "score": r.score}
                               for r in want.regions]
    np.testing.assert_array_equal(picture(body["mask"]) == 255, want.mask)
    np.testing.assert_array_equal(picture(body["heatmap"]),
                                  heatmap_u16(want.anomaly_map, want.pixel_threshold))


def test_answer_equals_what_kensa_eval_reads_from_the_file(runtime_client, runtime_inspector,
                                                           tmp_path):
    """kensa eval reads files with models.data.read_image; the server decodes uploads with
    the same decoder, so a file and its upload give the same verdict and map."""
    path = tmp_path / "part.png"
    path.write_bytes(washer_png(seed=13, defect="stain", size=57))
    [want] = runtime_inspector.inspect([read_image(path)])
    body = runtime_client.post("/v1/inspect?include=mask,heatmap",
                               files=upload(path.read_bytes())).json()
    assert (body["score"], body["label"]) == (want.score, want.label)
    np.testing.assert_array_equal(picture(body["heatmap"]),
                                  heatmap_u16(want.anomaly_map, want.pixel_threshold))
    np.testing.assert_array_equal(picture(body["mask"]) == 255, want.mask)


def test_label_is_abnormal_exactly_when_score_reaches_threshold(client):
    for seed, defect in [(4, None), (5, "stain"), (6, "chip")]:
        body = client.post("/v1/inspect", files=upload(washer_png(seed, defect))).json()
        assert body["label"] == ("abnormal" if body["score"] >= body["threshold"] else "normal")


def test_heatmap_formula_on_the_wire(runtime_client, runtime_inspector):
    data = washer_png(seed=7, defect="dent", size=61)
    body = runtime_client.post("/v1/inspect?include=heatmap", files=upload(data)).json()
    [want] = runtime_inspector.inspect([decoded(data)])
    heat = picture(body["heatmap"])
    assert heat.dtype == np.uint16 and heat.shape == (61, 61)
    s, t = want.anomaly_map.astype(np.float64), want.pixel_threshold
    np.testing.assert_array_equal(heat, np.rint(65535 * np.minimum(1, np.maximum(0, s / (2 * t)))))


def test_no_include_no_pictures(client):
    body = client.post("/v1/inspect", files=upload(washer_png())).json()
    assert not {"mask", "heatmap", "overlay", "reconstruction_image"} & set(body)


def test_every_picture_has_the_upload_size(runtime_client):
    data = png(washer(seed=2, size=48)[:, :40])  # 40 wide, 48 high
    body = runtime_client.post("/v1/inspect", files=upload(data),
                               params={"include": INCLUDE_ALL}).json()
    assert picture(body["mask"]).shape == (48, 40)
    assert picture(body["heatmap"]).shape == (48, 40)
    assert picture(body["overlay"], cv2.IMREAD_COLOR).shape == (48, 40, 3)
    assert base64.b64decode(body["overlay"])[:2] == b"\xff\xd8"  # JPEG
    assert picture(body["reconstruction_image"]).shape[:2] == (48, 40)
    assert base64.b64decode(body["reconstruction_image"])[:8] == b"\x89PNG\r\n\x1a\n"


def test_request_threshold_decides_the_label(client):
    data = washer_png(seed=8)
    score = client.post("/v1/inspect", files=upload(data)).json()["score"]
    low = client.post("/v1/inspect", files=upload(data), params={"threshold": score}).json()
    high = client.post("/v1/inspect", files=upload(data),
                       params={"threshold": score * 2 + 1}).json()
    assert (low["threshold"], low["label"]) == (score, "abnormal")
    assert (high["threshold"], high["label"]) == (score * 2 + 1, "normal")


def test_startup_threshold_overrides_the_bundle(make_client):
    client = make_client(threshold=0.001)
    body = client.post("/v1/inspect", files=upload(washer_png())).json()
    assert (body["threshold"], body["label"]) == (0.001, "abnormal")
    assert client.get("/v1/model").json()["default_threshold"] == 0.001
    # a request's own threshold still wins
    assert client.post("/v1/inspect?threshold=1e9", files=upload(washer_png())).json()[
        "label"] == "normal"


@pytest.mark.parametrize("name,image", [
    ("gray", washer(9)[..., 0]),
    ("rgba", np.dstack([washer(9), np.full((48, 48), 200, np.uint8)])),
    ("16-bit", washer(9)[..., 1].astype(np.uint16) * 257),
    ("16x16", washer(9)[16:32, 16:32]),  # KENSA_MIN_SIDE
    ("wide", np.tile(washer(9)[16:32, 8:24], (1, 20, 1))),  # 16 x 320: KENSA_MAX_ASPECT
    ("tall", np.tile(washer(9)[8:24, 16:32], (20, 1, 1))),  # 320 x 16
])
def test_image_kinds_are_inspected_like_the_inspector_does(client, inspector, name, image):
    data = png(image)
    r = client.post("/v1/inspect", files=upload(data), params={"include": INCLUDE_ALL})
    assert r.status_code == 200, r.text
    body = r.json()
    [want] = inspector.inspect([decoded(data)], with_reconstruction=True)
    h, w = image.shape[:2]
    assert (body["width"], body["height"]) == (w, h)
    assert (body["score"], body["label"]) == (want.score, want.label)
    assert picture(body["mask"]).shape == (h, w)
    np.testing.assert_array_equal(picture(body["heatmap"]),
                                  heatmap_u16(want.anomaly_map, want.pixel_threshold))


def test_octet_stream_and_untyped_uploads_are_sniffed(client):
    data = washer_png()
    for kind in ("application/octet-stream", ""):
        r = client.post("/v1/inspect", files={"file": ("blob", data, kind)})
        assert r.status_code == 200, r.text


def test_jpeg_upload(client, inspector):
    _, buf = cv2.imencode(".jpg", washer(11)[..., ::-1])
    data = buf.tobytes()
    body = client.post("/v1/inspect", files=upload(data, "p.jpg", "image/jpeg")).json()
    assert body["score"] == inspector.inspect([decoded(data)])[0].score


def test_overlay_endpoint_answers_a_jpeg(client, inspector):
    data = png(washer(12, "scratch")[:, :30])
    r = client.post("/v1/inspect/overlay", files=upload(data))
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (48, 30, 3)
    [want] = inspector.inspect([decoded(data)])
    assert r.headers["x-kensa-label"] == want.label
    assert float(r.headers["x-kensa-score"]) == want.score
    assert float(r.headers["x-kensa-threshold"]) == want.threshold
    uuid.UUID(r.headers["x-kensa-id"])


def test_overlay_endpoint_takes_a_threshold(client):
    r = client.post("/v1/inspect/overlay?threshold=0.001", files=upload(washer_png()))
    assert (r.headers["x-kensa-label"], r.headers["x-kensa-threshold"]) == ("abnormal", "0.001")
