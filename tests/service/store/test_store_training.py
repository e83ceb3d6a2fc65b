"""`kensa train --labels <store>`: reviewed records with kept images are training labels."""

import json

import pytest
from service_helpers import TestClient, upload, washer_png

from service.app import create_app
from service.cli import main
from service.store.training import is_store, reviewed_labels, reviewed_regions

pytestmark = pytest.mark.slow


def test_kensa_train_learns_from_reviewed_records(make_settings, db_url, data_dir, tiny_bundle,
                                                  tmp_path, capsys):
    url = db_url if db_url.startswith("postgresql") else None
    with TestClient(create_app(make_settings(database_url=url, keep_images="all"))) as c:
        ids = [c.post("/v1/inspect", files=upload(washer_png(seed, defect))).json()["id"]
               for seed, defect in ((101, None), (102, "scratch"), (103, None))]
        c.put(f"/v1/inspections/{ids[0]}/review", json={"label": "good"})
        # the box a review draws trains the segmentation head inside it
        assert c.put(f"/v1/inspections/{ids[1]}/review",
                     json={"label": "scratch", "regions": [[2, 3, 10, 12]]}).status_code == 200
        # ids[2] is not reviewed: not a label
    source = url or str(data_dir)
    assert is_store(source)
    out = tmp_path / "retrained"
    code = main(["train", "--data", str(tiny_bundle.parent / "data"), "--out", str(out),
                 "--preset", "tiny", "--epochs", "1", "--max-minutes", "0.05", "--quiet",
                 "--labels", source, "--data-dir", str(data_dir)])
    assert code == 0
    assert ("labels: 2 reviewed record(s) with kept images in the records store (1 with "
            "regions)") in capsys.readouterr().out
    data = json.loads((out / "bundle.json").read_text())["data"]
    assert (data["labeled_images"], data["labeled_good_trained"]) == (2, 1)
    assert data["labeled_defects"] == {"scratch": {"image": 0, "boxes": 1, "mask": 0}}
    assert data["labeled_defects_used_by"] == "latent"  # the head trains on them when asked
    assert reviewed_regions(source, data_dir) == {
        str(p): (f"inspection record {ids[1]}", [[2, 3, 10, 12]])
        for p, label in reviewed_labels(source, data_dir).items() if label == "scratch"}
