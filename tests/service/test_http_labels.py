"""Operator labels: POST /v1/labels keeps labeled images where `kensa train --labels` reads
them, and the next training run uses them."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading

import pytest
from PIL import Image
from service_helpers import upload, washer, washer_png
from tiny import TINY_MODEL, TINY_TRAINING

from models.data import read_labels
from models.synth_demo import make_demo_dataset
from models.train import train
from service.labels import LabelStore


def label(client, data: bytes, lab: str, name: str = "part.png", kind: str = "image/png"):
    return client.post("/v1/labels", files=upload(data, name, kind), data={"label": lab})


def test_a_label_stores_the_bytes_and_a_csv_row(make_client, tmp_path):
    client = make_client(records=False, labels_dir=tmp_path / "labels")
    data = washer_png(3, "scratch")
    r = label(client, data, "scratch")
    assert r.status_code == 201, r.text
    body = r.json()
    digest = hashlib.sha256(data).hexdigest()
    assert body["path"] == f"images/{digest[:32]}.png"
    assert body["sha256"] == digest and body["new_image"] is True
    assert (body["label"], body["total"], body["counts"]) == ("scratch", 1, {"scratch": 1})
    assert body["labels_file"] == str(tmp_path / "labels" / "labels.csv")
    assert (tmp_path / "labels" / body["path"]).read_bytes() == data  # byte for byte
    rows = list(csv.reader((tmp_path / "labels" / "labels.csv").open()))
    assert rows == [["path", "label"], [body["path"], "scratch"]]


def test_relabeling_the_same_image_replaces_its_label_and_keeps_one_file(make_client, tmp_path):
    client = make_client(records=False, labels_dir=tmp_path)
    data = washer_png(4)
    assert label(client, data, "dent").json()["new_image"] is True
    again = label(client, data, "good").json()
    assert again["new_image"] is False
    assert (again["total"], again["counts"]) == (1, {"good": 1})
    assert len(list((tmp_path / "images").iterdir())) == 1
    assert read_labels(tmp_path / "labels.csv") == {again["path"]: "good"}


def test_counts_per_label_good_first(make_client, tmp_path):
    client = make_client(records=False, labels_dir=tmp_path)
    assert client.get("/v1/labels").json() == {
        "labels_file": str(tmp_path / "labels.csv"), "total": 0, "counts": {}}
    for seed, lab in [(1, "stain"), (2, "Good"), (3, "chip"), (5, "stain")]:
        assert label(client, washer_png(seed), lab).status_code == 201
    r = client.get("/v1/labels")
    assert r.status_code == 200
    assert r.json()["total"] == 4
    assert list(r.json()["counts"].items()) == [("good", 1), ("chip", 1), ("stain", 2)]


def test_jpeg_keeps_its_format(make_client, tmp_path):
    buf = io.BytesIO()
    Image.fromarray(washer(2)).save(buf, format="JPEG")
    r = label(make_client(records=False, labels_dir=tmp_path), buf.getvalue(), "good", "p.jpg", "image/jpeg")
    assert r.status_code == 201 and r.json()["path"].endswith(".jpg")


@pytest.mark.parametrize("bad", ["has space", "../up", "-dash-first", "x" * 65, "a/b"])
def test_a_bad_label_is_422_and_nothing_is_stored(make_client, tmp_path, bad):
    client = make_client(records=False, labels_dir=tmp_path)
    r = label(client, washer_png(), bad)
    assert r.status_code == 422
    assert r.json()["detail"].startswith(f"field 'label' is {bad!r}: send 'good' or a defect name")
    assert list(tmp_path.rglob("*")) == []  # the labels folder stays empty


@pytest.mark.parametrize("form", [{}, {"label": ""}])
def test_missing_or_empty_label_field_is_422(make_client, tmp_path, form):
    r = make_client(records=False, labels_dir=tmp_path).post("/v1/labels", files=upload(washer_png()),
                                              data=form)
    assert r.status_code == 422
    assert r.json()["detail"] == ("missing (or empty) multipart field 'label': send it as a "
                                  "form field (for example: curl -F label=VALUE URL)")
    assert list(tmp_path.rglob("*")) == []


def test_bytes_that_do_not_decode_are_400_and_not_stored(make_client, tmp_path):
    client = make_client(records=False, labels_dir=tmp_path)
    data = washer_png()
    r = label(client, data[: len(data) // 2], "good")
    assert r.status_code == 400 and "truncated or corrupt" in r.json()["detail"]
    r = label(client, b"not an image at all", "good", "x.png")
    assert r.status_code == 400
    r = label(client, b"hello", "good", "notes.txt", "text/plain")
    assert r.status_code == 415
    assert list(tmp_path.rglob("*")) == []


def test_an_upload_over_the_size_limit_is_413(make_client, tmp_path):
    client = make_client(records=False, labels_dir=tmp_path, max_upload_mb=0.001)
    r = label(client, washer_png(size=96), "good")
    assert r.status_code == 413 and "KENSA_MAX_UPLOAD_MB" in r.json()["detail"]


def test_without_a_labels_folder_labeling_is_off_with_advice(make_client):
    client = make_client(records=False)  # with records on, labels go to the records store
    for r in (label(client, washer_png(), "good"), client.get("/v1/labels")):
        assert r.status_code == 503
        assert "KENSA_LABELS_DIR" in r.json()["detail"]


def test_labels_need_the_api_key_when_keys_are_set(make_client, tmp_path):
    client = make_client(records=False, labels_dir=tmp_path, api_keys="k1")
    assert label(client, washer_png(), "good").status_code == 401
    assert client.get("/v1/labels").status_code == 401
    r = client.post("/v1/labels", files=upload(washer_png()), data={"label": "good"},
                    headers={"X-API-Key": "k1"})
    assert r.status_code == 201


def test_concurrent_labels_are_all_kept(tmp_path):
    # the store's own lock: 16 threads at once, every row and file must survive
    store = LabelStore(tmp_path)
    datas = [washer_png(seed) for seed in range(16)]
    threads = [threading.Thread(target=store.add, args=(d, f"k{i % 3}"))
               for i, d in enumerate(datas)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    labels = read_labels(tmp_path / "labels.csv")
    assert len(labels) == 16 and sum(store.counts().values()) == 16
    for d in datas:
        path = f"images/{hashlib.sha256(d).hexdigest()[:32]}.png"
        assert (tmp_path / path).read_bytes() == d and path in labels
    assert not list(tmp_path.glob("images/.*.tmp"))


def as_format(path, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.open(path).save(buf, format=fmt)
    return buf.getvalue()


def test_labels_from_the_server_train_the_next_bundle(make_client, tmp_path):
    # the loop a line runs: operators label flagged images over HTTP, the trainer reads the
    # folder's labels.csv (paths relative to it) and builds a semi-supervised bundle; one
    # labeled image in each format the labels route accepts, so each is one training reads
    data = tmp_path / "data"
    make_demo_dataset(data, seed=3, n_train=16, n_test_good=2, n_per_defect=1, size=48)
    client = make_client(records=False, labels_dir=tmp_path / "labels")
    sent = {"chip": (data / "test/chip/000.png", "PNG"), "dent": (data / "test/dent/000.png",
                                                                  "JPEG"),
            "good": (data / "test/good/000.png", "BMP"), "stain": (data / "test/stain/000.png",
                                                                   "TIFF")}
    stored = []
    for lab, (path, fmt) in sent.items():
        r = label(client, as_format(path, fmt), lab)
        assert r.status_code == 201, r.text
        stored.append(r.json()["path"].rsplit(".", 1)[1])
    assert stored == ["png", "jpg", "bmp", "tif"]
    out = tmp_path / "bundle"
    # --labels takes the folder itself, as the compose trainer is given it
    train(data, out, TINY_MODEL, TINY_TRAINING, labels=tmp_path / "labels", device="cpu",
          progress=False)
    info = json.loads((out / "bundle.json").read_text())
    assert info["data"]["labeled_images"] == 4 and info["data"]["skipped"] == 0
    assert info["data"]["labeled_good_trained"] == 1  # the false alarm joins the normals
    assert info["latent"]["semi_supervised"] is True
    assert set(info["latent"]["classes"]) == {"good", "chip", "dent", "stain"}


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_a_format_training_does_not_read_is_415_and_not_stored(make_client, tmp_path, fmt):
    client = make_client(records=False, labels_dir=tmp_path)
    r = label(client, as_format(io.BytesIO(washer_png()), fmt), "dent", f"part.{fmt.lower()}",
              f"image/{fmt.lower()}")
    assert (r.status_code, r.json()) == (415, {"detail": (
        f"the image is a {fmt} file: Kensa reads PNG, JPEG, BMP or TIFF (8- or 16-bit; gray, "
        "RGB or RGBA); convert it to one of those")})
    assert not (tmp_path / "labels.csv").exists() and not list(tmp_path.glob("images/*"))


@pytest.mark.parametrize(("files", "data", "field"), [
    ([("file", ("a.png", washer_png(1), "image/png")),
      ("file", ("b.png", washer_png(2), "image/png"))], {"label": "dent"}, "file"),
    ([("file", ("a.png", washer_png(1), "image/png"))], {"label": ["good", "dent"]}, "label"),
])
def test_a_repeated_field_is_422_and_nothing_is_stored(make_client, tmp_path, files, data,
                                                       field):
    client = make_client(records=False, labels_dir=tmp_path)
    r = client.post("/v1/labels", files=files, data=data)
    assert r.status_code == 422
    assert r.json()["detail"].startswith(f"multipart field '{field}' was sent 2 times: send one")
    assert not (tmp_path / "labels.csv").exists()
