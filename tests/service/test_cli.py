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
    from models.config import ModelConfig, TrainConfig
    from models.inference import shrink
    from models.train import PRESETS
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
