"""``kensa recalibrate``: a new bundle, the same weights, the image threshold set again from
the held-out normals plus records reviewed through the real app."""

import json
import shutil

import pytest
from service_helpers import TestClient, upload, washer_png
from test_http_drift import noisy

from models.bundle import read_info
from service.app import create_app
from service.cli import main
from service.registry import ModelsRoot


def inspect_and_review(settings, images, review) -> list[dict]:
    """Inspects ``images`` through a started app, then reviews each answer with
    ``review(answer)`` (None: not reviewed); returns the answers."""
    with TestClient(create_app(settings)) as c:
        answers = [c.post("/v1/inspect", files=upload(data)).json() for data in images]
        for answer in answers:
            label = review(answer)
            if label is not None:
                r = c.put(f"/v1/inspections/{answer['id']}/review", json={"label": label})
                assert r.status_code == 200
    return answers


def abnormal_count(settings, images) -> int:
    with TestClient(create_app(settings)) as c:
        return sum(c.post("/v1/inspect", files=upload(data)).json()["label"] == "abnormal"
                   for data in images)


def recalibrate(capsys, *args: str) -> tuple[int, str]:
    code = main(["recalibrate", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def noisy_line(make_settings, washers_bundle, data_dir):
    """A line whose camera got noisier: its normal washers were judged, mostly abnormal, and
    an operator reviewed every false alarm ``good``."""
    return inspect_and_review(make_settings(model=washers_bundle),
                              [noisy(s, 25) for s in range(200, 220)],
                              lambda a: "good" if a["label"] == "abnormal" else None)


def test_confirmed_false_alarms_raise_the_threshold_in_a_new_version(
        noisy_line, make_settings, washers_bundle, data_dir, tmp_path, capsys):
    alarms = sum(a["label"] == "abnormal" for a in noisy_line)
    out = tmp_path / "washers-recal"
    code, said = recalibrate(capsys, "--model", str(washers_bundle), "--from-records",
                             str(data_dir), "--out", str(out))
    assert code == 0, said
    old, new = read_info(washers_bundle), read_info(out)
    assert new["version"] != old["version"] and new["files"] == old["files"]  # same weights
    assert new["calibration"]["image"] > old["calibration"]["image"]
    assert {k: v for k, v in new["calibration"].items() if k != "image"} == \
        {k: v for k, v in old["calibration"].items() if k != "image"}
    source = new["recalibrated_from"]
    assert (source["version"], source["reviewed_good"], source["reviewed_defects"]) == \
        (old["version"], alarms, 0)
    assert (source["stored_scores"], source["rescored"], source["skipped"]) == (alarms, 0, 0)
    assert new["threshold_rule"].startswith(
        f"false-alarm budget 0.01 on 24 held-out normals + {alarms} reviewed good")
    assert f"wrote {out} (version {new['version']})" in said
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["evaluation"] == {}
    assert len(metrics["calibration"]["recalibration"]["reviewed_good_scores"]) == alarms
    # fresh washers from the same noisy camera: fewer false alarms under the new version
    fresh = [noisy(s, 25) for s in range(300, 320)]
    before = abnormal_count(make_settings(model=washers_bundle), fresh)
    after = abnormal_count(make_settings(model=out), fresh)
    assert after < before, (before, after)


def test_records_of_another_version_are_scored_again_from_kept_images(
        noisy_line, make_settings, data_dir, tmp_path, capsys, washers_bundle):
    first, second = tmp_path / "v2", tmp_path / "v3"
    assert recalibrate(capsys, "--model", str(washers_bundle), "--from-records", str(data_dir),
                       "--out", str(first))[0] == 0
    # v2 never judged these records: their kept images are scored again under it, and the
    # same weights and sub-thresholds give the same scores, so the same threshold
    code, said = recalibrate(capsys, "--model", str(first), "--from-records", str(data_dir),
                             "--out", str(second))
    assert code == 0, said
    v2, v3 = read_info(first), read_info(second)
    source = v3["recalibrated_from"]
    assert source["rescored"] == v2["recalibrated_from"]["stored_scores"] > 0
    assert source["stored_scores"] == 0
    assert v3["calibration"]["image"] == pytest.approx(v2["calibration"]["image"], rel=1e-5)


def test_f1_uses_the_reviewed_defects(make_settings, washers_bundle, data_dir, tmp_path, capsys):
    settings = make_settings(model=washers_bundle, keep_images="all")
    images = [washer_png(s) for s in range(400, 410)]
    images += [washer_png(s, defect) for s in range(410, 414) for defect in ("scratch", "dent")]
    goods = inspect_and_review(settings, images[:10], lambda a: "good")
    defects = inspect_and_review(settings, images[10:], lambda a: "scratch")
    out = tmp_path / "f1"
    code, said = recalibrate(capsys, "--model", str(washers_bundle), "--from-records",
                             str(data_dir), "--out", str(out), "--threshold-rule", "f1")
    assert code == 0, said
    new = read_info(out)
    assert new["recalibrated_from"]["reviewed_defects"] == len(defects) == 8
    assert new["threshold_rule"].startswith(
        "F1-optimal on 8 reviewed defects + 24 held-out normals + 10 reviewed good")
    holdout = json.loads((washers_bundle / "metrics.json").read_text())[
        "calibration"]["holdout_fused_scores"]
    normal_scores = holdout + [a["score"] for a in goods]
    defect_scores = [a["score"] for a in defects]
    threshold = new["calibration"]["image"]
    assert min(abs(threshold - s) for s in normal_scores + defect_scores) < 1e-6
    assert f1(normal_scores, defect_scores, threshold) >= f1(
        normal_scores, defect_scores, read_info(washers_bundle)["calibration"]["image"])


def f1(normal_scores, defect_scores, threshold) -> float:
    caught = sum(s >= threshold for s in defect_scores)
    alarms = sum(s >= threshold for s in normal_scores)
    return 2 * caught / (2 * caught + alarms + len(defect_scores) - caught)


def test_f1_without_reviewed_defects_is_refused(noisy_line, washers_bundle, data_dir, tmp_path,
                                                capsys):
    code, said = recalibrate(capsys, "--model", str(washers_bundle), "--from-records",
                             str(data_dir), "--out", str(tmp_path / "x"),
                             "--threshold-rule", "f1")
    assert code == 2
    assert "--threshold-rule f1 needs reviewed defects" in said
    assert not (tmp_path / "x").exists()


def test_a_bad_since_is_refused_naming_the_format(washers_bundle, data_dir, tmp_path, capsys):
    code, said = recalibrate(capsys, "--model", str(washers_bundle), "--from-records",
                             str(data_dir), "--out", str(tmp_path / "x"), "--since", "yesterday")
    assert code == 2
    assert "--since 'yesterday' is not an ISO 8601 time" in said


def test_since_leaves_older_records_out(noisy_line, washers_bundle, data_dir, tmp_path, capsys):
    code, said = recalibrate(capsys, "--model", str(washers_bundle), "--from-records",
                             str(data_dir), "--out", str(tmp_path / "x"),
                             "--since", "2999-01-01")
    assert code == 0, said
    source = read_info(tmp_path / "x")["recalibrated_from"]
    assert (source["reviewed_good"], source["since"]) == (0, "2999-01-01T00:00:00+00:00")


def test_a_folder_without_records_is_refused_naming_it(washers_bundle, tmp_path, capsys):
    code, said = recalibrate(capsys, "--model", str(washers_bundle), "--from-records",
                             str(tmp_path / "empty"), "--out", str(tmp_path / "x"))
    assert code == 2
    assert f"{tmp_path / 'empty'} holds no records database (kensa.db)" in said
    assert not (tmp_path / "empty").exists()


def test_an_unreadable_database_is_refused_without_a_traceback(washers_bundle, tmp_path,
                                                               capsys):
    url = "postgresql+psycopg://kensa:secret@127.0.0.1:1/kensa"
    code, said = recalibrate(capsys, "--model", str(washers_bundle), "--from-records", url,
                             "--out", str(tmp_path / "x"))
    assert code == 2
    assert "cannot read the records at postgresql+psycopg://kensa:***@127.0.0.1:1/kensa" in said
    assert "Traceback" not in said and "secret" not in said


def test_the_bundle_itself_is_never_the_output(washers_bundle, data_dir, capsys):
    before = read_info(washers_bundle)["version"]
    code, said = recalibrate(capsys, "--model", str(washers_bundle), "--from-records",
                             str(data_dir), "--out", str(washers_bundle))
    assert code == 2 and "is the bundle being recalibrated" in said
    assert read_info(washers_bundle)["version"] == before


def test_a_part_of_the_models_root_gets_a_new_version_that_waits_for_activation(
        make_settings, washers_bundle, data_dir, tmp_path, capsys, monkeypatch):
    root, old = tmp_path / "models", read_info(washers_bundle)["version"]
    # the part is not named like the bundle: its records are found by their `model` column
    shutil.copytree(washers_bundle, root / "line-3" / old)
    ModelsRoot(root).set_active("line-3", old)
    settings = make_settings(model=None, models_dir=root)
    answers = inspect_and_review(settings, [noisy(s, 25) for s in range(200, 220)],
                                 lambda a: "good" if a["label"] == "abnormal" else None)
    assert {a["model"] for a in answers} == {"line-3"}
    alarms = sum(a["label"] == "abnormal" for a in answers)
    assert alarms > 0
    monkeypatch.setenv("KENSA_MODELS_DIR", str(root))
    code, said = recalibrate(capsys, "--model", str(root / "line-3"), "--from-records",
                             str(data_dir))  # no --out: a new version of the part
    assert code == 0, said
    [new] = [v.name for v in ModelsRoot(root).versions("line-3") if v.name != old]
    assert ModelsRoot(root).active("line-3") == old  # not activated
    assert f"kensa models activate line-3 {new}" in said
    info = read_info(root / "line-3" / new)
    source = info["recalibrated_from"]
    assert (source["part"], source["version"], source["reviewed_good"],
            source["stored_scores"]) == ("line-3", old, alarms, alarms)
    assert info["calibration"]["image"] > read_info(washers_bundle)["calibration"]["image"]
    fresh = [noisy(s, 25) for s in range(300, 320)]
    with TestClient(create_app(settings)) as c:
        def abnormal(version: str) -> int:
            got = [c.post("/v1/inspect", files=upload(data)).json() for data in fresh]
            assert {a["model_version"] for a in got} == {version}
            return sum(a["label"] == "abnormal" for a in got)

        before = abnormal(old)
        r = c.post("/v1/models/line-3/activate", json={"version": new})
        assert r.status_code == 200, r.text
        after = abnormal(new)
    assert after < before, (before, after)


def test_a_part_without_an_active_version_is_refused_naming_the_fix(washers_bundle, data_dir,
                                                                    tmp_path, capsys):
    version = read_info(washers_bundle)["version"]
    shutil.copytree(washers_bundle, tmp_path / "models" / "line-3" / version)
    code, said = recalibrate(capsys, "--model", str(tmp_path / "models" / "line-3"),
                             "--from-records", str(data_dir))
    assert code == 2
    assert "has no active version" in said and "kensa models activate line-3" in said
    assert [p.name for p in (tmp_path / "models" / "line-3").iterdir()] == [version]


def test_a_plain_bundle_needs_out(washers_bundle, data_dir, capsys):
    code, said = recalibrate(capsys, "--model", str(washers_bundle), "--from-records",
                             str(data_dir))
    assert code == 2 and "--out is needed" in said
