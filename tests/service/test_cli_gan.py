"""The two GANs from the command line (issue 32): ``kensa train --adversarial --synth
learned`` with labeled defects, the bundle it writes served through the real app, and
``kensa generate`` writing a folder ``kensa eval`` reads."""

from __future__ import annotations

import csv
import json

from service_helpers import upload, washer_png

from models.data import open_dataset, read_mask
from service.app import create_app
from service.cli import build_parser, main, training_configs


def test_the_gan_options_reach_the_train_config_and_are_off_by_default():
    parser = build_parser()
    base = ["train", "--data", "d", "--out", "o"]
    _, tcfg = training_configs(parser.parse_args(base))
    assert (tcfg.adversarial, tcfg.synth, tcfg.generator) == (False, "procedural", False)
    _, tcfg = training_configs(parser.parse_args(base + ["--adversarial", "--synth", "learned",
                                                         "--generator"]))
    assert (tcfg.adversarial, tcfg.synth, tcfg.generator) == (True, "learned", True)


def test_train_with_both_gans_serves_and_generates_what_eval_reads(tmp_path, make_settings,
                                                                  capsys):
    from fastapi.testclient import TestClient

    from models.synth_demo import make_demo_dataset

    data = tmp_path / "data"
    make_demo_dataset(data, seed=0, n_train=16, n_test_good=2, n_per_defect=2, size=48)
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as fh:
        rows = csv.writer(fh)
        rows.writerow(["path", "label", "regions"])
        for it in open_dataset(data).test:
            if it.defect in ("scratch", "stain") and it.path.stem == "000":
                rows.writerow([str(it.path), it.defect, str(it.mask_path)])
    bundle = tmp_path / "bundle"
    assert main(["train", "--data", str(data), "--out", str(bundle), "--preset", "tiny",
                 "--epochs", "2", "--max-minutes", "0", "--labels", str(labels),
                 "--adversarial", "--synth", "learned", "--quiet"]) == 0
    info = json.loads((bundle / "bundle.json").read_text())
    assert info["train_config"]["adversarial"] is True
    assert info["generator"]["config"]["types"] == ["scratch", "stain"]
    with TestClient(create_app(make_settings(model=bundle))) as client:
        body = client.post("/v1/inspect", files=upload(washer_png(3, "scratch"))).json()
        assert body["model_version"] == info["version"]
        assert body["label"] in ("normal", "abnormal") and body["score"] >= 0
    made = tmp_path / "made"
    assert main(["generate", "--model", str(bundle), "--data", str(data), "--type", "stain",
                 "--n", "3", "--out", str(made)]) == 0
    stains = [it for it in open_dataset(made).test if it.defect == "stain"]
    assert len(stains) == 3 and all(read_mask(it.mask_path).shape == (48, 48) for it in stains)
    capsys.readouterr()
    assert main(["eval", "--model", str(bundle), "--data", str(made)]) == 0
    assert "image_auroc[stain]" in capsys.readouterr().out
    assert main(["generate", "--model", str(bundle), "--data", str(data), "--type", "chip",
                 "--out", str(tmp_path / "no")]) == 2
    assert "not 'chip'" in capsys.readouterr().err
