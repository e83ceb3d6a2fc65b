"""VAEGAN's learned similarity (models.vaegan): the discriminator, the warm-up, and training
with it through the real loop."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from tiny import TINY_MODEL, TINY_TRAINING

from models.autoencoder import DefectModel
from models.fit import Progress, fit_defect_model
from models.vaegan import RAMP, WARMUP, LearnedSimilarity, PatchDiscriminator, ramp

CPU = torch.device("cpu")


def test_the_patch_discriminator_scores_patches_of_any_window():
    disc = PatchDiscriminator(channels=3, width=8)
    feats, logits = disc(torch.rand(2, 3, 64, 48))
    assert [f.shape[1:] for f in feats] == [(8, 32, 24), (16, 16, 12), (32, 8, 6)]
    assert logits.shape == (2, 1, 8, 6)


def test_the_weight_is_zero_while_warming_up_then_ramps_to_one():
    assert ramp(0.0) == ramp(WARMUP) == 0.0
    assert ramp(WARMUP + RAMP / 2) == pytest.approx(0.5)
    assert ramp(WARMUP + RAMP) == ramp(1.0) == 1.0


def test_no_discriminator_pass_in_the_warm_up_and_finite_losses_after():
    sim = LearnedSimilarity(TINY_MODEL, CPU, seed=0)
    recon = torch.rand(4, 1, 32, 32, requires_grad=True)
    clean = torch.rand(4, 1, 32, 32)
    assert float(sim.decoder_loss(recon, clean, frac=0.1)) == 0.0
    loss = sim.decoder_loss(recon, clean, frac=1.0)
    assert math.isfinite(float(loss.detach())) and float(loss.detach()) > 0
    loss.backward()
    assert recon.grad is not None and float(recon.grad.abs().sum()) > 0
    assert all(p.grad is None for p in sim.disc.parameters())  # the decoder's step only
    before = [p.detach().clone() for p in sim.disc.parameters()]
    assert math.isfinite(sim.update(recon, clean))
    assert any(not torch.equal(b, p) for b, p in zip(before, sim.disc.parameters()))


def test_its_discriminator_leaves_the_global_random_stream_alone():
    torch.manual_seed(3)
    want = torch.rand(3)
    torch.manual_seed(3)
    LearnedSimilarity(TINY_MODEL, CPU, seed=0)
    assert torch.equal(torch.rand(3), want)


def fit(adversarial: bool, images: list[np.ndarray]) -> tuple[DefectModel, dict]:
    torch.manual_seed(0)
    model = DefectModel(replace(TINY_MODEL, channels=1))
    cfg = replace(TINY_TRAINING, epochs=2, adversarial=adversarial)
    history = fit_defect_model(model, images, cfg, CPU, 0.0, Progress(False))
    return model, history


def test_training_with_it_runs_and_changes_the_autoencoder_only_when_on():
    rng = np.random.default_rng(0)
    images = [rng.random((32, 32, 1), dtype=np.float32) for _ in range(8)]
    off, h_off = fit(False, images)
    again, _ = fit(False, images)
    on, h_on = fit(True, images)
    assert "adversarial" not in h_off
    assert h_on["adversarial"]["weight"] > 0  # past the warm-up at the last step
    assert all(math.isfinite(v) for v in h_on["adversarial"].values())
    assert all(math.isfinite(c["loss"]) for c in h_on["curve"])
    state_off, state_again, state_on = (m.state_dict() for m in (off, again, on))
    assert all(torch.equal(state_off[k], state_again[k]) for k in state_off)
    assert not all(torch.equal(state_off[k], state_on[k]) for k in state_off)
