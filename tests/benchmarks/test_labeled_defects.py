"""The labeled-defects protocol: the draw, the data view without it, the labels files of each
variant, and a whole tiny run with its paired differences."""

from __future__ import annotations

import csv
import json

import pytest

from benchmarks.labeled_defects import (
    VARIANTS,
    data_view,
    draw,
    main,
    plan,
    table,
    write_labels,
)


def capsys_lines(results) -> list[str]:
    return table(json.loads(results.read_text())).splitlines()
from models.data import open_dataset
from models.synth_demo import make_demo_dataset


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("labeled") / "data"
    make_demo_dataset(root, seed=0, n_train=16, n_test_good=2, n_per_defect=3, size=48)
    return root


def test_the_draw_is_seeded_nested_and_leaves_images_to_judge(demo):
    test = open_dataset(demo).test
    five = draw(test, 2, seed=4)
    assert draw(test, 2, seed=4) == five and draw(test, 2, seed=5) != five
    assert set(five) == {it.defect for it in test if not it.is_good}  # no good images drawn
    assert all(len(v) == 2 for v in five.values())
    with pytest.raises(ValueError, match="has 3 test images: cannot draw 3"):
        draw(test, 3, seed=0)


def test_the_view_holds_every_test_image_but_the_drawn_ones(demo, tmp_path):
    ds = open_dataset(demo)
    drawn = draw(ds.test, 1, seed=0)
    view = open_dataset(data_view(demo, drawn, tmp_path / "view"))
    taken = {it.path.name + it.defect for v in drawn.values() for it in v}
    assert len(view.train) == len(ds.train)
    assert sorted(it.path.name + it.defect for it in view.test) == sorted(
        it.path.name + it.defect for it in ds.test if it.path.name + it.defect not in taken)
    # the masks of the images left are found through the view
    assert all(it.mask_path is not None for it in view.test if not it.is_good)


def test_each_variant_writes_its_own_regions(demo, tmp_path):
    drawn = draw(open_dataset(demo).test, 2, seed=0)
    rows = {v: list(csv.reader(write_labels(drawn, 1, v, tmp_path / f"{v}.csv").open()))[1:]
            for v in ("image", "boxes", "mask")}
    assert all(len(r) == 4 for r in rows.values())  # the first of each type's two
    assert [r[2] for r in rows["image"]] == [""] * 4
    for _path, _label, boxes in rows["boxes"]:
        assert all(len(b) == 4 and b[2] > 0 and b[3] > 0 for b in json.loads(boxes))
    assert all(r[2].endswith("_mask.png") for r in rows["mask"])


def test_each_variant_runs_at_every_k_or_at_its_own():
    assert plan("paste@2,mixed,classifier@10", [0, 5]) == [
        ("paste", 2), ("mixed", 5), ("classifier", 10)]
    assert plan("paste,paste@5", [5]) == [("paste", 5)]  # once each
    with pytest.raises(ValueError, match="unknown variant 'none'"):
        plan("none@2", [5])
    with pytest.raises(ValueError, match="paste@0: k must be 1 or more"):
        plan("paste@0", [5])
    # the pasting and classifier variants train as their options say, from their own regions
    assert VARIANTS["paste-boxes"] == ("boxes", {"labeled_defects": "paste"})
    assert VARIANTS["mixed"][1] == {"labeled_defects": "head", "positive_step": "mixed"}
    assert VARIANTS["classifier"][1] == {"latent_labels": "classifier"}
    assert VARIANTS["labels"] == ("image", {})  # kensa train --labels as it is by default


def test_pasting_variants_write_the_regions_they_name(demo, tmp_path):
    drawn = draw(open_dataset(demo).test, 1, seed=0)
    boxes = list(csv.reader(write_labels(drawn, 1, "paste-boxes", tmp_path / "b.csv").open()))
    image = list(csv.reader(write_labels(drawn, 1, "paste", tmp_path / "i.csv").open()))
    assert all(json.loads(r[2]) for r in boxes[1:]) and all(r[2] == "" for r in image[1:])


@pytest.mark.slow
def test_a_tiny_protocol_run_pairs_each_variant_with_the_unlabeled_run(demo, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["--data", str(demo), "--k", "1", "--seeds", "0", "--preset", "tiny",
                 "--variants", "image,boxes,latent", "--epochs", "2", "--max-minutes", "1",
                 "--work-dir", str(tmp_path / "w"), "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    runs = {r["variant"]: r for r in result["runs"]}
    assert set(runs) == {"none", "image", "boxes", "latent"} and not result["failed"]
    # where the labels judged the calibration, the same weights are judged under every
    # pooling of the image score, the labels' choice (auto) giving back the bundle itself
    assert [v for v, r in runs.items() if "pooling" in r] == ["latent"]
    pooling = runs["latent"]["pooling"]
    assert pooling["reproduces_bundle"] and set(pooling["by_rule"]) == {
        "auto", "max", "top0.1", "top1", "top5", "labels_best"}
    assert pooling["by_rule"]["auto"]["pooling"] == pooling["chosen"]
    assert pooling["by_rule"]["auto"]["image_auroc"] == pytest.approx(
        runs["latent"]["image_auroc"], abs=1e-9)
    assert set(pooling["labels_ranking"]) == {"max", "top0.1", "top1", "top5"}
    [pair] = result["pooling_paired"]
    assert pair["top5"]["image_auroc"] == pytest.approx(
        pooling["by_rule"]["top5"]["image_auroc"] - pooling["by_rule"]["max"]["image_auroc"],
        abs=1e-4)
    # every variant judged on the same images: the test split less the drawn ones
    assert {r["evaluated_images"] for r in runs.values()} == {2 + 4 * 3 - 4}
    assert runs["none"]["labeled_defects"] == {}
    assert runs["image"]["labeled_defects"]["chip"] == {"image": 1, "boxes": 0, "mask": 0}
    assert runs["boxes"]["labeled_defects"]["chip"] == {"image": 0, "boxes": 1, "mask": 0}
    # the labeled variants train the head on their labels
    assert runs["image"]["labeled_defects_used_by"] == "head" == runs["boxes"][
        "labeled_defects_used_by"]
    [image] = [d for d in result["paired"] if d["variant"] == "image"]
    assert image["image_auroc"] == pytest.approx(
        runs["image"]["image_auroc"] - runs["none"]["image_auroc"], abs=1e-4)
    assert result["protocol"]["epochs"] == 2 and result["machine"]["cpu_count"]
    # labels that train no network take the none run's: the same weights, paired exactly
    none_info = json.loads((tmp_path / "w" / "data" / "seed0" / "none" / "bundle.json")
                           .read_text())
    latent_info = json.loads((tmp_path / "w" / "data" / "seed0" / "latent-k1" / "bundle.json")
                             .read_text())
    assert runs["latent"]["networks_from"] == none_info["version"]
    assert runs["image"]["networks_from"] is None
    assert latent_info["files"]["model.safetensors"] == none_info["files"]["model.safetensors"]
    assert runs["latent"]["autoencoder_steps"] == runs["none"]["autoencoder_steps"]

    # --resume: the finished runs are taken as they stand, a new variant joins them
    created = none_info["created"]
    again = tmp_path / "again.json"
    assert main(["--data", str(demo), "--k", "1", "--seeds", "0", "--preset", "tiny",
                 "--variants", "labels", "--epochs", "2", "--max-minutes", "1", "--resume",
                 "--work-dir", str(tmp_path / "w"), "--json", str(again)]) == 0
    rerun = {r["variant"]: r for r in json.loads(again.read_text())["runs"]}
    assert set(rerun) == {"none", "labels"}
    assert json.loads((tmp_path / "w" / "data" / "seed0" / "none" / "bundle.json")
                      .read_text())["created"] == created  # not trained again
    assert rerun["none"]["image_auroc"] == runs["none"]["image_auroc"]
    assert rerun["labels"]["networks_from"] == none_info["version"]
    assert rerun["labels"]["labeled_defects_used_by"] == "latent"

    # the table the README shows, from the results file
    assert main(["report", str(again)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.startswith("| data | labels | k |")]
    assert len(rows) == 3  # printed after each of the two runs, and by report
    [pair] = json.loads(again.read_text())["paired"]
    labels_row = next(line for line in capsys_lines(again) if "| labels | 1 |" in line)
    assert f"| {pair['image_auroc']:+.3f} |" in labels_row


def test_the_readme_table_is_what_the_protocol_reports_from_its_results_file():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    results = root / "benchmarks" / "results" / "labeled-defects-per-k-cpu-2026-12-05.json"
    assert table(json.loads(results.read_text())) in (root / "README.md").read_text()
