"""Operator labels in the records store: POST /v1/labels keeps them there, an old labels
folder is imported once, retention keeps their images, the trainer reads them."""

import json

import pytest
from service_helpers import upload, washer_png

from service.cli import main
from service.labels import LabelStore
from service.store.images import ImageFolder
from service.store.retention import Retention, prune


def label(client, data: bytes, what: str):
    return client.post("/v1/labels", files=upload(data), data={"label": what})


def test_labels_go_to_the_store_and_the_last_one_wins(records_client, data_dir):
    c = records_client()
    first = label(c, washer_png(1), "scratch")
    assert first.status_code == 201
    body = first.json()
    assert (body["label"], body["new_image"], body["counts"]) == ("scratch", True,
                                                                 {"scratch": 1})
    assert (data_dir / body["path"]).read_bytes() == washer_png(1)
    again = label(c, washer_png(1), "Good").json()
    assert (again["new_image"], again["counts"], again["total"]) == (False, {"good": 1}, 1)
    label(c, washer_png(2), "dent")
    assert c.get("/v1/labels").json()["counts"] == {"good": 1, "dent": 1}


def test_a_labels_folder_is_imported_once(records_client, tmp_path):
    folder = tmp_path / "old-labels"
    old = LabelStore(folder)
    old.add(washer_png(3), "good")
    old.add(washer_png(4), "chip")
    for _ in range(2):  # a restart must not import it again
        c = records_client(labels_dir=folder)
        assert c.get("/v1/labels").json()["counts"] == {"good": 1, "chip": 1}
    label(c, washer_png(5), "chip")
    assert c.get("/v1/labels").json()["total"] == 3


def test_retention_keeps_labeled_images(records_client, engine, data_dir):
    c = records_client(keep_images="none")
    path = data_dir / label(c, washer_png(6), "dent").json()["path"]
    import os
    os.utime(path, (0, 0))
    prune(engine, ImageFolder(data_dir / "images"), Retention())
    assert path.is_file()


@pytest.mark.slow
def test_kensa_train_reads_the_stores_labels(records_client, db_url, data_dir, tiny_bundle,
                                              tmp_path, capsys):
    c = records_client()
    label(c, washer_png(7, "scratch"), "scratch")
    label(c, washer_png(8), "good")
    source = db_url if db_url.startswith("postgresql") else str(data_dir)
    out = tmp_path / "retrained"
    assert main(["train", "--data", str(tiny_bundle.parent / "data"), "--out", str(out),
                 "--preset", "tiny", "--epochs", "1", "--max-minutes", "0.05", "--quiet",
                 "--labels", source, "--data-dir", str(data_dir)]) == 0
    data = json.loads((out / "bundle.json").read_text())["data"]
    assert (data["labeled_images"], data["labeled_good_trained"]) == (2, 1)
