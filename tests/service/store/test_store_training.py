"""`kensa train --labels <store>`: reviewed records with kept images are training labels."""

import json

import pytest
from service_helpers import TestClient, upload, washer_png

from service.app import create_app
from service.cli import main
from service.store.training import is_store

pytestmark = pytest.mark.slow


def test_kensa_train_learns_from_reviewed_records(make_settings, db_url, data_dir, tiny_bundle,
                                                  tmp_path, capsys):
    url = db_url if db_url.startswith("postgresql") else None
    with TestClient(create_app(make_settings(database_url=url, keep_images="all"))) as c:
        ids = [c.post("/v1/inspect", files=upload(washer_png(seed, defect))).json()["id"]
               for seed, defect in ((101, None), (102, "scratch"), (103, None))]
        c.put(f"/v1/inspections/{ids[0]}/review", json={"label": "good"})
        c.put(f"/v1/inspections/{ids[1]}/review", json={"label": "scratch"})
        # ids[2] is not reviewed: not a label
    source = url or str(data_dir)
    assert is_store(source)
    out = tmp_path / "retrained"
    code = main(["train", "--data", str(tiny_bundle.parent / "data"), "--out", str(out),
                 "--preset", "tiny", "--epochs", "1", "--max-minutes", "0.05", "--quiet",
                 "--labels", source, "--data-dir", str(data_dir)])
    assert code == 0
    assert "labels: 2 reviewed record(s) with kept images" in capsys.readouterr().out
    data = json.loads((out / "bundle.json").read_text())["data"]
    assert (data["labeled_images"], data["labeled_good_trained"]) == (2, 1)
