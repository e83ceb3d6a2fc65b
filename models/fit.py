"""The training loop: fitting the reconstruction model and the VAE on prepared normal images
within a step count and a time budget.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .autoencoder import DefectModel
from .config import TrainConfig
from .device import to_device
from .losses import dice_loss, focal_loss, kl_divergence, positive_loss, reconstruction_loss
from .paste import PASTE_SHARE, PasteSource, paste
from .positives import (
    MIXED_SLOTS,
    POSITIVE_EVERY,
    POSITIVE_WEIGHT,
    Positive,
    mixed_windows,
    positive_batch,
)
from .preprocess import has_coarse_view, resized, shrink
from .synth import add_defect
from .vae import VAE
from .vaegan import LearnedSimilarity

LEARNED_SHARE = 0.5  # --synth learned: the share of synthetic defects that are generated


class Progress:
    """A one-line progress bar on stderr: stage, epoch, loss, ETA."""

    def __init__(self, enabled: bool = True, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.last = 0.0

    def update(self, stage: str, frac: float, epoch: int, loss: float, started: float,
               force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self.last < (0.2 if self.tty else 10.0)):
            return
        self.last = now
        eta = (now - started) * (1 - frac) / max(frac, 1e-9)
        bar = "#" * int(20 * frac)
        line = (f"{stage:>4} [{bar:<20}] {100 * frac:5.1f}% epoch {epoch} loss {loss:.4f} "
                f"ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        if force and self.tty:
            self.stream.write("\n")
        self.stream.flush()


def cosine_lr(progress: float, base: float, warmup: float = 0.02) -> float:
    """Learning rate at ``progress`` in ``[0, 1]``: linear warm-up, then cosine decay."""
    if progress < warmup:
        return base * (0.1 + 0.9 * progress / warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def run_loop(name: str, step_fn: Callable[[int, float], float], cfg: TrainConfig,
             n_images: int, budget_s: float, progress: Progress) -> dict:
    """Runs ``step_fn(step, progress) -> loss`` until ``epochs`` are done or the time budget
    is spent, whichever comes first.

    Progress (which drives the learning-rate schedule) is the larger of the share of steps and
    the share of the budget used, so the schedule always completes: a slow or busy machine
    takes fewer steps, not a truncated schedule. With the budget binding, the number of steps
    depends on the machine's speed; for bit-identical reruns use a budget that does not bind.
    """
    per_epoch = max(1, math.ceil(n_images / cfg.batch_size))
    total = cfg.epochs * per_epoch
    started = time.monotonic()
    curve, losses, step, frac = [], [], 0, 0.0
    while frac < 1.0:
        losses.append(step_fn(step, frac))
        step += 1
        elapsed = time.monotonic() - started
        frac = max(step / total, elapsed / budget_s if budget_s > 0 else 0.0)
        if step % per_epoch == 0 or frac >= 1.0:
            curve.append({"epoch": round(step / per_epoch, 2), "step": step,
                          "loss": float(np.mean(losses[-per_epoch:])),
                          "seconds": round(elapsed, 1)})
        progress.update(name, frac, step // per_epoch, losses[-1], started)
    progress.update(name, 1.0, step // per_epoch, losses[-1], started, force=True)
    return {"steps": step, "epochs": round(step / per_epoch, 2),
            "seconds": time.monotonic() - started, "curve": curve,
            "stopped_by_budget": step < total}


def fit_defect_model(model: DefectModel, images: list[np.ndarray], cfg: TrainConfig,
                     device: torch.device, budget_s: float, progress: Progress,
                     positives: list[Positive] | None = None, bank=None) -> dict:
    """Denoising training: images ``(h, w, C)`` (prepared, of one or several shapes) get
    synthetic defects; the autoencoder returns the clean image (L1 + SSIM), the head finds the
    defect (focal + Dice). With ``positives`` (operator-labeled real defects), as
    ``cfg.extra`` says (:func:`positive_plan`): ``labeled_defects`` ``head`` trains the head on
    them, every ``POSITIVE_EVERY``-th step in a forward pass of their own
    (:func:`positive_step_loss`) or, with ``positive_step`` ``mixed``, in ``MIXED_SLOTS`` of
    every batch; ``paste`` pastes their defects onto the training windows instead
    (:mod:`models.paste`). Without, the run is what it was before they existed, bit for bit
    (their draws come from a random stream of their own). With ``cfg.adversarial`` a patch
    discriminator's features also judge the reconstruction (:mod:`models.vaegan`; not in a
    ``mixed`` step, whose reconstruction is part of :func:`mixed_step_loss`); without, nothing
    of it runs. With ``bank`` (a :class:`models.generator.DefectBank`, ``--synth learned``)
    half the synthetic defects are generated ones of the labeled types (drawn from a random
    stream of their own)."""
    rng = np.random.default_rng(cfg.seed + 1)
    pos_rng = np.random.default_rng(cfg.seed + 3)
    bank_rng = np.random.default_rng(cfg.seed + 6)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-5)
    model.train()
    size = model.cfg.image_size
    crop = cfg.crop if 0 < cfg.crop < size else size
    shapes = np.array([im.shape[:2] for im in images])
    coarse = None
    if has_coarse_view(model.cfg):  # whole images at the coarse scale, as inference sees
        coarse = resized(images, lambda x: shrink(x, model.cfg))
    similarity = (LearnedSimilarity(model.cfg, device, cfg.seed + 4) if cfg.adversarial
                  else None)
    plan = positive_plan(cfg, positives)
    source = PasteSource(positives) if plan == "paste" else None

    def step(i: int, frac: float) -> float:
        idx = rng.integers(0, len(images), cfg.batch_size)
        ys, xs = window_origins(rng, shapes[idx], crop, cfg.border_windows)
        clean = np.stack([window(images[k], coarse[k] if coarse else None, y, x, crop, rng)
                          for k, y, x in zip(idx, ys, xs)])
        if source is not None:
            source.update(model, frac, device)
        noisy, masks = with_defects(rng, clean, images, cfg.anomaly_prob, bank=bank,
                                    bank_rng=bank_rng,
                                    pasting=(source, pos_rng) if source else None)
        for group in opt.param_groups:
            group["lr"] = cosine_lr(frac, cfg.lr)
        recon = target = None
        if plan == "mixed":
            loss = mixed_step_loss(model, noisy, clean, masks, positives, pos_rng, device)
        else:
            x, target = to_device(noisy, device), to_device(clean, device)
            mask = torch.from_numpy(masks)[:, None].to(device)
            recon, logits = model(x)
            loss = synthetic_loss(recon, target, logits, mask)
            if plan == "extra" and i % POSITIVE_EVERY == 0:
                loss = loss + POSITIVE_WEIGHT * positive_step_loss(model, positives, pos_rng,
                                                                   device)
        if similarity is not None and recon is not None:
            loss = loss + similarity.decoder_loss(recon, target, frac)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        if similarity is not None and recon is not None:
            similarity.update(recon, target)
        return float(loss.detach())

    history = run_loop("AE", step, cfg, len(images), budget_s, progress)
    if similarity is not None:
        history["adversarial"] = dict(similarity.last)
    return history


def positive_plan(cfg: TrainConfig, positives: list[Positive] | None) -> str:
    """How labeled defects train the head: ``none`` (there are none, or they do not),
    ``extra`` (a positive step of their own), ``mixed`` (in the synthetic batch) or ``paste``."""
    if not positives:
        return "none"
    if cfg.extra.get("labeled_defects") == "paste":
        return "paste"
    return "mixed" if cfg.extra.get("positive_step") == "mixed" else "extra"


def synthetic_loss(recon: torch.Tensor, target: torch.Tensor, logits: torch.Tensor,
                   mask: torch.Tensor) -> torch.Tensor:
    """Reconstruction (L1 + SSIM) plus the head's focal + Dice on the synthetic masks."""
    return (reconstruction_loss(recon, target) + focal_loss(logits, mask) * 5
            + dice_loss(logits, mask))


def mixed_step_loss(model: DefectModel, noisy: np.ndarray, clean: np.ndarray,
                    masks: np.ndarray, positives: list[Positive], rng: np.random.Generator,
                    device: torch.device) -> torch.Tensor:
    """One forward pass over the batch with its last ``MIXED_SLOTS`` windows replaced by
    labeled defects (:func:`models.positives.mixed_windows`): the synthetic windows train as
    always, the labeled ones the head alone (their reconstruction gets no gradient: no clean
    copy of a real defect exists)."""
    n = len(noisy) - min(MIXED_SLOTS, len(positives), len(noisy) - 1)
    pos_x, maps, shares = mixed_windows(rng, positives, model.cfg, noisy.shape[1],
                                        len(noisy) - n)
    x = to_device(np.concatenate([noisy[:n], pos_x]), device)
    target = to_device(clean[:n], device)
    mask = torch.from_numpy(masks[:n])[:, None].to(device)
    m = torch.from_numpy(maps).to(device)
    recon = model.autoencoder(x)
    logits = model.segmenter(x, torch.cat([recon[:n], recon[n:].detach()]))
    return (synthetic_loss(recon[:n], target, logits[:n], mask) + POSITIVE_WEIGHT *
            positive_loss(logits[n:], m[:, :1], m[:, 1:2], m[:, 2:], torch.from_numpy(shares)))


def positive_step_loss(model: DefectModel, positives: list[Positive],
                       rng: np.random.Generator, device: torch.device) -> torch.Tensor:
    """The head's loss on a batch of labeled real defects (:func:`models.losses.positive_loss`).
    The autoencoder only reconstructs them (no gradient): no clean copy of a real defect
    exists to teach it, and what it learns stays "return the normal texture"."""
    x, known, target, bags, shares = positive_batch(rng, positives, model.cfg, device)
    with torch.no_grad():
        recon = model.autoencoder(x)
    return positive_loss(model.segmenter(x, recon), known, target, bags, shares)


def with_defects(rng: np.random.Generator, clean: np.ndarray, pool: list[np.ndarray],
                 share: float, *, bank=None, bank_rng: np.random.Generator | None = None,
                 pasting: tuple[PasteSource, np.random.Generator] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(noisy (B, h, w, C), masks float32 (B, h, w))``: ``share`` of the clean windows get a
    synthetic defect (textures drawn from ``pool``), the rest stay clean with empty masks.
    With ``pasting`` (a :class:`models.paste.PasteSource` with patches, and its own random
    stream), ``PASTE_SHARE`` of those get a labeled defect pasted instead; with ``bank``,
    ``LEARNED_SHARE`` of the others are generated ones (their draws from ``bank_rng``). Without
    either the run is what it was before they existed."""
    noisy, masks = clean.copy(), np.zeros(clean.shape[:3], np.float32)
    for j in range(len(clean)):
        if rng.random() < share:
            patch = None
            if pasting is not None and pasting[1].random() < PASTE_SHARE:
                patch = pasting[0].draw(pasting[1])
            if patch is not None:
                noisy[j], masks[j] = paste(pasting[1], clean[j], patch)
            elif bank is not None and bank_rng.random() < LEARNED_SHARE:
                noisy[j], masks[j] = bank.add(bank_rng, clean[j])
            else:
                noisy[j], masks[j] = add_defect(rng, clean[j], pool)
    return noisy, masks


def window_origins(rng: np.random.Generator, shapes: np.ndarray, crop: int,
                   border_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corners ``(ys, xs)`` of training windows of side ``crop``, one in each image
    of ``shapes`` (``(n, 2)``: height, width). Per axis, ``border_share`` of the coordinates
    sit on an image border (half on each side), the rest anywhere; a side shorter than
    ``crop`` starts at 0 (:func:`window` pads it).

    Why: uniform positions almost never put a window's edge on the image's edge (1 in 65 per
    side for 64-pixel windows of 128-pixel images), so the networks learned the zero padding at
    a window's edge as "more of the part" and never saw the real rim of the image, where the
    inference maps then showed false spots in corners and along edges.
    """
    room = np.maximum(np.asarray(shapes) - crop, 0).T  # (2, n)
    ys, xs = rng.integers(0, room + 1)
    draws = rng.random(room.shape)
    for pos, draw, span in ((ys, draws[0], room[0]), (xs, draws[1], room[1])):
        pos[draw < border_share / 2] = 0
        at_end = (draw >= border_share / 2) & (draw < border_share)
        pos[at_end] = span[at_end]
    return ys, xs


def window(image: np.ndarray, coarse: np.ndarray | None, y: int, x: int, crop: int,
           rng: np.random.Generator) -> np.ndarray:
    """One training window: the ``crop`` window of ``image`` at ``(y, x)``, or (half the
    time, with a coarse view) a window of the same size from ``coarse``, the image's shrunk
    whole view, at the same relative place. Sides shorter than ``crop`` are reflect-padded."""
    if coarse is not None and rng.random() < 0.5:
        (h, w), (ch, cw) = image.shape[:2], coarse.shape[:2]
        y = int(y) * (ch - crop) // max(1, h - crop) if ch > crop else 0
        x = int(x) * (cw - crop) // max(1, w - crop) if cw > crop else 0
        image = coarse
    win = image[y:y + crop, x:x + crop]
    pad_h, pad_w = crop - win.shape[0], crop - win.shape[1]
    if pad_h or pad_w:
        win = np.pad(win, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect")
    return win


def fit_vae(vae: VAE, images: np.ndarray, cfg: TrainConfig, device: torch.device,
            budget_s: float, progress: Progress) -> dict:
    """VAE on normal images ``(N, V, V, C)``: per-pixel reconstruction + beta * KL."""
    rng = np.random.default_rng(cfg.seed + 2)
    opt = torch.optim.Adam(vae.parameters(), lr=cfg.lr)
    vae.train()
    pixels = float(np.prod(images.shape[1:]))

    def step(i: int, frac: float) -> float:
        x = to_device(images[rng.integers(0, len(images), cfg.batch_size)], device)
        for group in opt.param_groups:
            group["lr"] = cosine_lr(frac, cfg.lr)
        recons, mu, logvar = vae(x)  # one reconstruction per latent grid, each its own VAE
        rec = sum(F.mse_loss(r, x, reduction="sum") for r in recons) / len(x)
        loss = (rec + cfg.beta * kl_divergence(mu, logvar)) / pixels
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return run_loop("VAE", step, cfg, len(images), budget_s, progress)
