"""service.cli helpers that are not covered through a subprocess elsewhere."""

import sys

import pytest

from service.cli import limit_malloc_arenas


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_malloc_arena_cap_is_set_unless_the_environment_says_otherwise(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas(2) is True
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas(2) is False  # the operator's setting wins


def test_every_training_preset_is_offered_by_the_cli_and_builds_working_networks():
    import torch

    from models.autoencoder import DefectModel
    from models.config import PRESETS, ModelConfig, TrainConfig
    from models.preprocess import shrink
    from service.cli import build_parser

    parser = build_parser()
    for name, preset in PRESETS.items():
        args = parser.parse_args(["train", "--data", "d", "--out", "o", "--preset", name])
        assert args.preset == name
        mcfg, tcfg = ModelConfig(**preset["model"]), TrainConfig(**preset["train"])
        model = DefectModel(mcfg).eval()
        side = tcfg.crop if 0 < tcfg.crop < mcfg.image_size else mcfg.image_size
        with torch.inference_mode():  # a training window, the whole image, its coarse view
            for x in (torch.rand(1, mcfg.channels, side, side),
                      torch.rand(1, mcfg.channels, mcfg.image_size, mcfg.image_size)):
                for view in (x, shrink(x, mcfg)):
                    recon, logits = model(view)
                    assert recon.shape == view.shape
                    assert logits.shape == (1, 1, *view.shape[-2:])
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--data", "d", "--out", "o", "--preset", "nonesuch"])


def test_labeled_defects_train_the_head_only_when_the_cli_asks():
    from service.cli import build_parser, training_configs

    parser = build_parser()
    base = ["train", "--data", "d", "--out", "o"]
    _, tcfg = training_configs(parser.parse_args(base))
    assert "labeled_defects" not in tcfg.extra  # bundle.json as before issue 26
    _, tcfg = training_configs(parser.parse_args(base + ["--labeled-defects", "head"]))
    assert tcfg.extra["labeled_defects"] == "head"
    with pytest.raises(SystemExit):
        parser.parse_args(base + ["--labeled-defects", "both"])
    # the issue-26 levers: each one key in extra, absent by default
    assert not {"positive_step", "latent_labels"} & set(tcfg.extra)
    _, tcfg = training_configs(parser.parse_args(base + [
        "--labeled-defects", "paste", "--positive-step", "mixed", "--latent-labels",
        "classifier"]))
    assert (tcfg.extra["labeled_defects"], tcfg.extra["positive_step"],
            tcfg.extra["latent_labels"]) == ("paste", "mixed", "classifier")
    for flag in ("--positive-step", "--latent-labels"):
        with pytest.raises(SystemExit):
            parser.parse_args(base + [flag, "both"])


def test_the_image_score_option_names_a_pooling_or_auto():
    from models.maps import IMAGE_SCORES
    from service.cli import IMAGE_SCORES as CHOICES
    from service.cli import build_parser, training_configs

    assert CHOICES == ("auto", *IMAGE_SCORES)  # the CLI's copy, kept without importing torch
    parser = build_parser()
    base = ["train", "--data", "d", "--out", "o"]
    assert "image_score" not in training_configs(parser.parse_args(base))[1].extra  # max
    for rule in ("top1", "auto"):
        _, tcfg = training_configs(parser.parse_args(base + ["--image-score", rule]))
        assert tcfg.extra["image_score"] == rule
    with pytest.raises(SystemExit) as done:
        parser.parse_args(base + ["--image-score", "mean"])
    assert done.value.code == 2


def test_eval_replays_the_bundles_training_split_or_says_it_cannot(tiny_bundle, tmp_path,
                                                                   capsys):
    import json
    import shutil

    from service.cli import main

    data = tiny_bundle.parent / "data"
    assert main(["eval", "--model", str(tiny_bundle), "--data", str(data),
                 "--json", str(tmp_path / "a.json")]) == 0
    assert "note:" not in capsys.readouterr().out
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["latent_with_labels"] == {}  # 1 image per defect type: too few to label
    # the same test split beside other training images: the check says it uses the tests alone
    other = tmp_path / "other"
    shutil.copytree(data, other)
    min((other / "train" / "good").iterdir()).unlink()
    assert main(["eval", "--model", str(tiny_bundle), "--data", str(other)]) == 0
    assert "note: these training images are not the ones" in capsys.readouterr().out


def test_train_refuses_a_bad_flips_setting_before_it_reads_anything(tmp_path, capsys):
    from service.cli import main

    rc = main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "b"),
               "--flips", "sideways", "--quiet"])
    assert rc != 0 and not (tmp_path / "b").exists()
    assert "flips 'sideways': use auto, none or a comma list of h, v, hv" in capsys.readouterr().err


def test_train_keeps_the_aspect_unless_told_to_squash(tiny_bundle, tmp_path):
    from models.bundle import read_info
    from service.cli import main

    data = tiny_bundle.parent / "data"
    for flag, keep in (([], True), (["--aspect", "squash"], False)):
        out = tmp_path / f"b{int(keep)}"
        assert main(["train", "--data", str(data), "--out", str(out), "--preset", "tiny",
                     "--epochs", "1", "--max-minutes", "0", "--quiet", *flag]) == 0
        cfg = read_info(out)["model_config"]
        assert cfg["keep_aspect"] is keep
        assert (cfg["pixel_scale"] > 0) is keep  # the training images' scale, when kept


def test_kensa_bench_is_python_m_benchmarks(capsys):
    from service.cli import main

    with pytest.raises(SystemExit) as done:
        main(["bench", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: kensa bench") and "--skip-accuracy" in out


def test_kensa_bench_says_how_to_get_the_benchmarks_where_they_are_absent(monkeypatch, capsys):
    from service.cli import NO_BENCHMARKS, main

    for name in [n for n in sys.modules if n == "benchmarks" or n.startswith("benchmarks.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "benchmarks", None)  # as in the image: no such package

    assert main(["bench", "--help"]) == 2
    assert capsys.readouterr().err == NO_BENCHMARKS + "\n"


def test_train_signs_with_kensa_bundle_key_and_eval_checks_it(tiny_bundle, tmp_path,
                                                              monkeypatch, capsys):
    from models.bundle import read_info
    from service.cli import main

    out = tmp_path / "signed"
    monkeypatch.setenv("KENSA_BUNDLE_KEY", "a-key-of-the-plant")
    assert main(["train", "--data", str(tiny_bundle.parent / "data"), "--out", str(out),
                 "--preset", "tiny", "--epochs", "1", "--max-minutes", "0", "--quiet"]) == 0
    assert read_info(out, b"a-key-of-the-plant")["signature"].startswith("hmac-sha256:")
    monkeypatch.setenv("KENSA_BUNDLE_KEY", "another-key-of-another-plant")
    assert main(["eval", "--model", str(out), "--data", str(tiny_bundle.parent / "data")]) == 2
    assert "is not signed with this KENSA_BUNDLE_KEY" in capsys.readouterr().err
    monkeypatch.setenv("KENSA_BUNDLE_KEY", "short")
    assert main(["eval", "--model", str(out), "--data", str(tiny_bundle.parent / "data")]) == 2
    assert "KENSA_BUNDLE_KEY must have at least 16 characters" in capsys.readouterr().err


def test_export_then_eval_on_onnx_reproduces_the_torch_metrics(tiny_bundle, tmp_path, capsys):
    import json
    import shutil

    from service.cli import main

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    data = tiny_bundle.parent / "data"
    assert main(["export", "--model", str(bundle), "--format", "onnx"]) == 0
    assert f"kensa serve --model {bundle} --runtime onnx" in capsys.readouterr().out
    reports = {}
    for runtime in ("torch", "onnx"):
        out = tmp_path / f"{runtime}.json"
        assert main(["eval", "--model", str(bundle), "--data", str(data), "--runtime", runtime,
                     "--json", str(out)]) == 0
        reports[runtime] = json.loads(out.read_text())
    for key in ("image_auroc", "pixel_auroc", "aupro", "f1", "false_alarm_rate"):
        assert reports["onnx"][key] == pytest.approx(reports["torch"][key], abs=1e-6), key


def test_train_with_export_publishes_a_version_that_auto_serves_on_onnx(tiny_bundle, tmp_path,
                                                                       capsys, monkeypatch):
    from models.inference import Inspector
    from service.cli import main
    from service.registry import ModelsRoot

    root = tmp_path / "models"
    root.mkdir()
    monkeypatch.setenv("KENSA_MODELS_DIR", str(root))
    assert main(["train", "--data", str(tiny_bundle.parent / "data"), "--out",
                 str(root / "washer"), "--preset", "tiny", "--epochs", "1", "--max-minutes",
                 "0", "--quiet", "--export", "onnx"]) == 0
    assert "exported onnx/" in capsys.readouterr().out
    version = root / "washer" / ModelsRoot(root).active("washer")
    assert sorted(p.name for p in (version / "onnx").iterdir()) == [
        "defect.onnx", "encode.onnx", "maps.onnx"]  # in the version as first published
    assert Inspector.load(version, device="cpu", runtime="auto").runtime == "onnx"


def test_train_without_onnx_installed_refuses_export_before_training(tmp_path, capsys,
                                                                     monkeypatch):
    import importlib.util

    from service.cli import main

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",  # this interpreter without onnxruntime
                        lambda name, *a: None if name == "onnxruntime" else find_spec(name, *a))
    assert main(["train", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "b"),
                 "--export", "onnx"]) == 2
    assert "--export onnx needs onnxruntime: pip install 'kensa[onnx]'" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
