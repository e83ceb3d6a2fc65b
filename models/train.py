"""Training: fit the reconstruction model and the VAE on normal images, calibrate on held-out
normals, evaluate on the test split if there is one, and write the bundle."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .autoencoder import DefectModel
from .bundle import save_bundle, write_metrics
from .calibrate import (
    FLIP_ALPHA,
    MIN_FLIP_IMAGES,
    f1_threshold,
    false_alarm_threshold,
    flip_looks_normal,
    pixel_threshold,
)
from .config import FUSION_RULES, ModelConfig, TrainConfig
from .data import (
    GOOD,
    LABELS_FILE,
    Dataset,
    Item,
    image_shape,
    open_dataset,
    read_items,
    read_labels,
    split_holdout,
)
from .errors import DataError
from .evaluate import evaluate
from .inference import (
    FLIPS,
    Calibration,
    Inspector,
    model_shape,
    pick_device,
    prepare,
    prepare_for,
    residual_map,
    same_shape_groups,
    shrink,
    vae_input,
)
from .latent import FOLDS, LatentClassifier
from .losses import dice_loss, focal_loss, kl_divergence, reconstruction_loss
from .metrics import auroc
from .synth import add_defect
from .vae import VAE

log = logging.getLogger(__name__)

PRESETS: dict[str, dict] = {
    # finishes in about 5 minutes on a 2-core CPU, for `make demo`
    "demo": {"model": {}, "train": {"max_minutes": 4.0}},
    # the default: a 15-minute budget, what the accuracy table in README.md uses
    "default": {"model": {}, "train": {}},
    # for a GPU: twice the resolution (thin scratches survive resizing), wider networks, larger
    # windows and batches, and the test-time flips the held-out normals allow (a GPU pays
    # little for the extra passes); far too slow for a CPU's 15 minutes. Not yet measured on a GPU:
    # benchmarks/gpu-run.sh compares it with the default there.
    "large": {"model": {"image_size": 256, "width": 32, "seg_width": 24},
              "train": {"crop": 128, "batch_size": 32, "flips": "auto"}},
    # seconds: for tests and smoke checks
    "tiny": {"model": {"image_size": 32, "width": 8, "depth": 3, "seg_width": 8,
                       "vae_image_size": 32, "vae_width": 8, "latent_dim": 8},
             "train": {"max_minutes": 0.2, "epochs": 30, "batch_size": 8}},
}


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


def read_training_images(items: list[Item], shape: int | Callable[[int, int], tuple[int, int]]
                         ) -> tuple[list[np.ndarray], list[str]]:
    """The training images, each ``(h, w, C)`` at ``shape(H, W)`` of its own size (an int:
    that square), and the paths skipped.

    Each photograph is shrunk as soon as it is decoded, so memory holds one full-size image at
    a time (9,900 magnetic-tile JPEGs of about 300 x 300 pixels took 4.8 GB decoded all at
    once before shrinking); ``C`` is :func:`choose_channels` of them.
    """
    shape_of = (lambda h, w: (shape, shape)) if isinstance(shape, int) else shape
    small, _kept, skipped = read_items(
        items, lambda im: prepare(im, shape_of(*im.shape[:2]), im.shape[2]))
    channels = choose_channels(small)
    return [prepare(im, im.shape[:2], channels) for im in small], skipped


def training_scale(items: list[Item], size: int) -> dict:
    """``ModelConfig.pixel_scale`` and ``train_sides`` for these training images: ``size``
    over their median geometric side ``sqrt(h * w)``, and the range of those sides (file
    headers only); no scale (0) when no header reads."""
    sides = [math.sqrt(sh[0] * sh[1]) for sh in (image_shape(it.path) for it in items) if sh]
    if not sides:
        return {"pixel_scale": 0.0}
    return {"pixel_scale": size / float(np.median(sides)),
            "train_sides": (float(min(sides)), float(max(sides)))}


def choose_channels(images: list[np.ndarray]) -> int:
    """3 when any training image has real colour, else 1 (gray saves a third of the work)."""
    for im in images:
        if im.shape[2] == 3 and not (np.allclose(im[..., 0], im[..., 1], atol=2 / 255)
                                     and np.allclose(im[..., 1], im[..., 2], atol=2 / 255)):
            return 3
    return 1


def _cosine(progress: float, base: float, warmup: float = 0.02) -> float:
    """Learning rate at ``progress`` in ``[0, 1]``: linear warm-up, then cosine decay."""
    if progress < warmup:
        return base * (0.1 + 0.9 * progress / warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _loop(name: str, step_fn: Callable[[int, float], float], cfg: TrainConfig, n_images: int,
          budget_s: float, progress: Progress) -> dict:
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
                     device: torch.device, budget_s: float, progress: Progress) -> dict:
    """Denoising training: images ``(h, w, C)`` (prepared, of one or several shapes) get
    synthetic defects; the autoencoder returns the clean image (L1 + SSIM), the head finds the
    defect (focal + Dice)."""
    rng = np.random.default_rng(cfg.seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-5)
    pool = list(images)
    model.train()

    size = model.cfg.image_size
    crop = cfg.crop if 0 < cfg.crop < size else size
    shapes = np.array([im.shape[:2] for im in images])
    coarse = None
    if 0 < model.cfg.coarse_scale < 1:  # whole images at the coarse scale, as inference sees
        coarse = _resized(images, lambda x: shrink(x, model.cfg))

    def step(i: int, frac: float) -> float:
        idx = rng.integers(0, len(images), cfg.batch_size)
        ys, xs = window_origins(rng, shapes[idx], crop, cfg.border_windows)
        clean = np.stack([_window(images[k], coarse[k] if coarse else None, y, x, crop, rng)
                          for k, y, x in zip(idx, ys, xs)])
        noisy, masks = clean.copy(), np.zeros(clean.shape[:3], np.float32)
        for j in range(len(idx)):
            if rng.random() < cfg.anomaly_prob:
                noisy[j], masks[j] = add_defect(rng, clean[j], pool)
        x = _to_device(noisy, device)
        target = _to_device(clean, device)
        m = torch.from_numpy(masks)[:, None].to(device)
        for g in opt.param_groups:
            g["lr"] = _cosine(frac, cfg.lr)
        recon, logits = model(x)
        loss = reconstruction_loss(recon, target) + focal_loss(logits, m) * 5 + dice_loss(logits, m)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        return float(loss.detach())

    return _loop("AE", step, cfg, len(images), budget_s, progress)


def window_origins(rng: np.random.Generator, shapes: np.ndarray, crop: int,
                   border_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corners ``(ys, xs)`` of training windows of side ``crop``, one in each image
    of ``shapes`` (``(n, 2)``: height, width). Per axis, ``border_share`` of the coordinates
    sit on an image border (half on each side), the rest anywhere; a side shorter than
    ``crop`` starts at 0 (:func:`_window` pads it).

    Why: uniform positions almost never put a window's edge on the image's edge (1 in 65 per
    side for 64-pixel windows of 128-pixel images), so the networks learned the zero padding at
    a window's edge as "more of the part" and never saw the real rim of the image, where the
    inference maps then showed false spots in corners and along edges.
    """
    room = np.maximum(np.asarray(shapes) - crop, 0).T  # (2, n)
    ys, xs = rng.integers(0, room + 1)
    u = rng.random(room.shape)
    for pos, v, r in ((ys, u[0], room[0]), (xs, u[1], room[1])):
        pos[v < border_share / 2] = 0
        at_end = (v >= border_share / 2) & (v < border_share)
        pos[at_end] = r[at_end]
    return ys, xs


def _window(image: np.ndarray, coarse: np.ndarray | None, y: int, x: int, crop: int,
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
    ph, pw = crop - win.shape[0], crop - win.shape[1]
    if ph or pw:
        win = np.pad(win, ((0, ph), (0, pw), (0, 0)), mode="reflect")
    return win


def fit_vae(vae: VAE, images: np.ndarray, cfg: TrainConfig, device: torch.device,
            budget_s: float, progress: Progress) -> dict:
    """VAE on normal images ``(N, V, V, C)``: per-pixel reconstruction + beta * KL."""
    rng = np.random.default_rng(cfg.seed + 2)
    opt = torch.optim.Adam(vae.parameters(), lr=cfg.lr)
    vae.train()
    pixels = float(np.prod(images.shape[1:]))

    def step(i: int, frac: float) -> float:
        x = _to_device(images[rng.integers(0, len(images), cfg.batch_size)], device)
        for g in opt.param_groups:
            g["lr"] = _cosine(frac, cfg.lr)
        recons, mu, logvar = vae(x)  # one reconstruction per latent grid, each its own VAE
        rec = sum(F.mse_loss(r, x, reduction="sum") for r in recons) / len(x)
        loss = (rec + cfg.beta * kl_divergence(mu, logvar)) / pixels
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return _loop("VAE", step, cfg, len(images), budget_s, progress)


def _resized(images: list[np.ndarray], resize: Callable[[torch.Tensor], torch.Tensor]
             ) -> list[np.ndarray]:
    """Applies one of inference's tensor resizers (``(B, C, H, W)``) to ``(h, w, C)`` numpy
    images, a batch per shape, so training sees exactly the views inference makes."""
    out: list = [None] * len(images)
    for idx, batch in same_shape_groups(images):
        views = resize(torch.from_numpy(batch).permute(0, 3, 1, 2))
        for j, view in zip(idx, views.permute(0, 2, 3, 1).contiguous().numpy()):
            out[j] = view
    return out


def _vae_views(images: list[np.ndarray], mcfg: ModelConfig) -> np.ndarray:
    """The VAE's square views ``(N, V, V, C)`` of prepared images of any shapes."""
    v = mcfg.vae_image_size
    views = _resized(images, lambda x: vae_input(x, v))
    return np.stack(views) if views else np.zeros((0, v, v, mcfg.channels), np.float32)


def _to_device(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(B, H, W, C)`` numpy -> ``(B, C, H, W)`` channels-last tensor."""
    x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)
    return x.to(device).contiguous(memory_format=torch.channels_last)


def _latent_means(vae: VAE, images: np.ndarray, device: torch.device) -> np.ndarray:
    vae.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), 64):
            mu, _ = vae.encode(_to_device(images[i:i + 64], device))
            out.append(mu.float().cpu().numpy())
    return np.concatenate(out)


def calibrate(insp: Inspector, holdout: list[np.ndarray] | np.ndarray, cfg: TrainConfig,
              labeled: tuple[list[np.ndarray] | np.ndarray, np.ndarray] | None = None) -> dict:
    """Sets every threshold of ``insp.cal`` from held-out normal images, prepared (``(h, w,
    C)`` each, at their model shapes).

    Args:
        labeled: optional (prepared images, is_defect ``(L,)``) operator-labeled images; with
            defects among them and ``threshold_rule == "f1"`` the image threshold is the
            F1-optimal one.
    """
    groups = insp.groups(list(holdout))
    res = []
    with torch.inference_mode():  # in chunks: a forward pass over 1,500 images at once is GBs
        for _, x in groups:
            for i in range(0, len(x), insp.max_batch):
                chunk = x[i:i + insp.max_batch]
                res.append(residual_map(chunk, insp.model(chunk)[0].float()).cpu().numpy())
    # numpy's quantile: torch.quantile refuses inputs over 2**24 values (about 7,000 images)
    res = np.concatenate([r.ravel() for r in res])[::7]
    insp.cal.residual_scale = max(float(np.quantile(res, 0.999)), 1e-6)
    insp.cal.flips, flip_rule = choose_flips(insp, groups, cfg.flips)
    # the reconstruction maps alone first: their normal level is the unit the latent cells are
    # shown in (Inspector.add_latent_map)
    insp.cal.map_scale = 0.0
    raw = insp.grouped_scores(groups)
    insp.cal.reconstruction = false_alarm_threshold(raw.recon_scores, cfg.false_alarm_rate)
    cells = insp.latent.cell_distances(raw.latent_mu)  # whitened once for both thresholds
    insp.cal.latent_distance = false_alarm_threshold(cells.max(1), cfg.false_alarm_rate)
    # the map grid's cells come last (with one grid they are all the cells: latent_distance)
    insp.cal.map_distance = false_alarm_threshold(cells[:, -insp.cfg.map_grid**2:].max(1),
                                                  cfg.false_alarm_rate)
    if insp.cfg.latent_map:
        insp.cal.map_scale = pixel_threshold(raw.maps, cfg.pixel_false_alarm_rate)
        raw.maps = [insp.add_latent_map(m[None], mu[None])[0]
                    for m, mu in zip(raw.maps, raw.latent_mu)]
    insp.cal.pixel = pixel_threshold(raw.maps, cfg.pixel_false_alarm_rate)
    has_defects = labeled is not None and bool(labeled[1].any())
    latent_rule = "the distance alone (no labeled defects)"
    if has_defects:
        imgs, is_defect = labeled
        lraw = insp.grouped_scores(insp.groups(list(imgs)))
        if insp.latent.semi_supervised:
            # the labeled images are graph points, in label-file order (see _spread_labels)
            index = np.flatnonzero(insp.latent.graph_labels >= 0)[-len(imgs):]
            probs = insp.latent.held_out_probabilities(index)
            insp.cal.latent_spread, a = insp.latent.choose_spread_weight(
                index, raw.latent_mu, insp.cal.latent_distance, probs)
            latent_rule = (f"spread weight {insp.cal.latent_spread:g} ranked "
                           f"{int(is_defect.sum())} labeled defects above "
                           f"{len(holdout) + int((~is_defect).sum())} normals best (AUROC {a:.3f},"
                           f" labels hidden {FOLDS} folds at a time)")
            # each scored as if nobody had labeled it
            lscore = insp.latent.held_out_scores(index, insp.cal.latent_distance,
                                                 insp.cal.latent_spread, probs)
        else:
            lscore, _, _ = insp.latent.score(lraw.latent_mu, insp.cal.latent_distance)
    lat, _, _ = insp.latent.score(raw.latent_mu, insp.cal.latent_distance, insp.cal.latent_spread)
    insp.cal.latent = false_alarm_threshold(lat, cfg.false_alarm_rate)
    fusion_rule = "as configured"
    if cfg.fusion == "auto":
        insp.cal.fusion, insp.cal.fusion_weight = "weighted", cfg.fusion_weight
        fusion_rule = f"auto: no labeled defects, the default weight {cfg.fusion_weight:g}"
        if has_defects:
            y = np.concatenate([is_defect, np.zeros(len(holdout), bool)]).astype(int)
            best = -1.0
            for w in (1.0, 0.9, 0.8, 0.7, 0.6, 0.5):  # ties keep the larger weight
                insp.cal.fusion, insp.cal.fusion_weight = "weighted", w
                a = auroc(y, np.concatenate([insp.cal.fuse(lraw.recon_scores, lscore),
                                             insp.cal.fuse(raw.recon_scores, lat)]))
                if a > best + 1e-9:
                    best, chosen = a, w
            insp.cal.fusion_weight = chosen
            fusion_rule = (f"auto: weight {chosen:g} ranked {int(is_defect.sum())} labeled "
                           f"defects above {len(holdout)} held-out normals best "
                           f"(AUROC {best:.3f})")
    fused = insp.cal.fuse(raw.recon_scores, lat)
    insp.cal.image = false_alarm_threshold(fused, cfg.false_alarm_rate)
    rule = f"false-alarm budget {cfg.false_alarm_rate:g} on {len(holdout)} held-out normals"
    if len(holdout) * cfg.false_alarm_rate < 1:
        # e.g. 22 images and 1 %: the empirical quantile sits at the largest score, so the
        # Student-t bound usually sets the threshold, cautiously (magnetic tiles, 15 minutes:
        # 0.917 with the largest held-out normal at 0.812; 94 % of defects missed, 62 % at 5 %)
        need = math.ceil(1 / cfg.false_alarm_rate)
        rule += (f" (fewer than {need}: the threshold is at least the largest held-out score, "
                 "usually a Student-t bound beyond it, cautious; more normal images or a "
                 "larger budget lower it)")
        log.warning("%d held-out normals cannot show a %g false-alarm rate (%d needed): the "
                    "image threshold is a cautious Student-t bound; expect more misses, or add "
                    "normal images or raise --false-alarm-rate", len(holdout),
                    cfg.false_alarm_rate, need)
    if has_defects and cfg.extra.get("threshold_rule") == "f1":
        lf = insp.cal.fuse(lraw.recon_scores, lscore)
        insp.cal.image = f1_threshold(np.concatenate([is_defect, np.zeros(len(fused))]),
                                      np.concatenate([lf, fused]))
        rule = f"F1-optimal on {len(imgs)} labeled + {len(holdout)} held-out images"
    return {"rule": rule, "fusion_rule": fusion_rule, "latent_rule": latent_rule,
            "flips": insp.cal.flips, "flip_rule": flip_rule,
            "holdout_images": len(holdout),
            # full precision: evaluation replays the threshold rule on them
            "holdout_fused_scores": [float(s) for s in fused],
            "holdout_false_alarms": int((fused >= insp.cal.image).sum())}


def flip_names(setting: str) -> list[str] | None:
    """``TrainConfig.flips`` -> the flips it names, or ``None`` for ``auto``.

    Raises:
        DataError: a name that is not ``auto``, ``none`` or a comma list of ``FLIPS`` keys.
    """
    if setting == "auto":
        return None
    names = [] if setting == "none" else [n.strip() for n in setting.split(",") if n.strip()]
    bad = [n for n in names if n not in FLIPS]
    if bad or not (names or setting == "none"):
        raise DataError(f"flips {setting!r}: use auto, none or a comma list of "
                        f"{', '.join(FLIPS)}")
    return list(dict.fromkeys(names))


def choose_flips(insp: Inspector, groups: list[tuple[np.ndarray, torch.Tensor]], setting: str
                 ) -> tuple[list[str], str]:
    """The test-time flips for a bundle, and why. ``auto`` keeps each flip under which the
    held-out normals (``groups``: :meth:`Inspector.groups` of them) still look normal to the
    model (:func:`flip_looks_normal`: their flipped copies do not score higher than
    themselves), so a symmetric part gets the averaged, steadier map and a part lit from one
    side keeps its own orientation."""
    named = flip_names(setting)
    if named is not None:
        return named, f"{', '.join(named) or 'none'} (configured)"
    n = sum(len(idx) for idx, _ in groups)
    if n < MIN_FLIP_IMAGES:
        return [], (f"none: {n} held-out normals cannot show that a flipped part looks "
                    f"normal ({MIN_FLIP_IMAGES} needed)")

    def scores(flip: str | None) -> np.ndarray:  # in group order, the same for every view
        return np.concatenate([insp.view_scores(x, flip) for _, x in groups])

    base = scores(None)
    chosen, said = [], []
    for name in FLIPS:
        ok, p = flip_looks_normal(base, scores(name))
        chosen += [name] if ok else []
        said.append(f"{name} {'kept' if ok else 'refused'} (p {p:.3g})")
    return chosen, (f"auto on {n} held-out normals (a flip is refused when their flipped "
                    "copies score higher, one-sided Wilcoxon p < "
                    f"{FLIP_ALPHA:g}): " + ", ".join(said))


def labels_file(path: str | Path | None) -> Path | None:
    """``--labels``: a CSV file, or a folder holding ``labels.csv`` (what ``kensa serve`` keeps
    in ``KENSA_LABELS_DIR``). A folder without one yet means no labels (logged), so a trainer
    can always be pointed at the labels folder, before any operator has labeled anything."""
    if path is None:
        return None
    path = Path(path)
    if not path.is_dir():
        return path  # read_labels names it if it does not exist
    if (path / LABELS_FILE).is_file():
        return path / LABELS_FILE
    log.warning("no %s in %s yet: training without operator labels", LABELS_FILE, path)
    return None


def match_labels(labels: dict[str, str], ds: Dataset,
                 base: Path | None = None) -> list[tuple[Item, str]]:
    """Pairs label rows with image files: a dataset file by full path or path relative to the
    dataset root; else any existing file, by full path or by path relative to ``base`` (the
    labels file's folder: where ``kensa serve`` stores the images operators label through
    ``POST /v1/labels``) or to the working directory; else a dataset file by its bare name
    when that is unique. (A row naming an existing file outside the dataset is that file, even
    when a dataset file shares its name.)"""
    every = ds.train + ds.test
    by_full = {str(it.path.resolve()): it for it in every}
    by_rel = {str(it.path.relative_to(ds.root)): it for it in every}
    names: dict[str, list[Item]] = {}
    for it in every:
        names.setdefault(it.path.name, []).append(it)
    out, missing = [], []
    for key, lab in labels.items():
        it = by_rel.get(key) or by_full.get(str(Path(key).resolve()))
        if it is None:  # a file outside the dataset, when the row names one that exists
            found = [p for p in ([base / key] if base else []) + [Path(key)] if p.is_file()]
            it = by_full.get(str(found[0].resolve()), Item(found[0], lab)) if found else None
        if it is None and len(names.get(Path(key).name, [])) == 1:
            it = names[Path(key).name][0]
        if it is None:
            missing.append(key)
        else:
            out.append((it, lab))
    if missing:
        log.warning("%d labeled path(s) not found, ignored: %s", len(missing), missing[:5])
    return out


def train(data: str | Path, out: str | Path, model_cfg: ModelConfig | None = None,
          train_cfg: TrainConfig | None = None,
          labels: str | Path | dict[str, str] | None = None,
          device: str = "auto", progress: bool = True, name: str | None = None) -> dict:
    """Trains, calibrates, evaluates and writes a bundle. Returns the bundle's metrics.

    Raises:
        DataError: no usable training image, or a bad labels file.
    """
    mcfg, tcfg = model_cfg or ModelConfig(), train_cfg or TrainConfig()
    if tcfg.fusion not in FUSION_RULES:
        raise DataError(f"unknown fusion rule {tcfg.fusion!r}: use one of {FUSION_RULES}")
    flip_names(tcfg.flips)  # a bad setting fails now, not after training
    torch.manual_seed(tcfg.seed)
    rng = np.random.default_rng(tcfg.seed)
    dev = pick_device(device)
    bar = Progress(progress)
    t0 = time.monotonic()
    ds = open_dataset(data)
    if isinstance(labels, dict):  # already read, e.g. reviewed records (paths -> labels)
        label_rows = match_labels(labels, ds)
    else:
        labels = labels_file(labels)
        label_rows = match_labels(read_labels(labels), ds, labels.parent) if labels else []
    if mcfg.keep_aspect:
        mcfg = replace(mcfg, **training_scale(ds.train, mcfg.image_size))
    images, skipped = read_training_images(ds.train, lambda h, w: model_shape(h, w, mcfg))
    if not images:
        raise DataError(f"none of the {len(ds.train)} training file(s) in {ds.root} decodes as "
                        "an image: use PNG, JPEG, BMP or TIFF files")
    mcfg = replace(mcfg, channels=images[0].shape[2])
    fit_idx, hold_idx = split_holdout(len(images), tcfg, rng)
    # operator-confirmed normals that are not training images already (false alarms labeled
    # `good`) train with the normals, so the retrained model learns they are normal; labeled
    # defects are what calibration and label spreading see
    known = {str(it.path.resolve()) for it in ds.train}
    good_rows = [(it, lab) for it, lab in label_rows
                 if lab == GOOD and str(it.path.resolve()) not in known]
    defect_rows = [(it, lab) for it, lab in label_rows if lab != GOOD]
    fit_imgs = [images[i] for i in fit_idx] + _labeled_images(good_rows, mcfg)
    model, vae = DefectModel(mcfg).to(dev).to(memory_format=torch.channels_last), VAE(mcfg).to(dev)
    budget = tcfg.max_minutes * 60
    ae_hist = fit_defect_model(model, fit_imgs, tcfg, dev, budget * (1 - tcfg.vae_share), bar)
    small = _vae_views(fit_imgs, mcfg)
    small_hold = _vae_views([images[i] for i in hold_idx], mcfg)
    # what the AE left of the budget, but never less than half the VAE's share (0 would mean
    # "no budget" to the loop)
    vae_budget = (max(0.5 * tcfg.vae_share * budget, budget - (time.monotonic() - t0))
                  if budget > 0 else 0.0)
    vae_hist = fit_vae(vae, small, tcfg, dev, vae_budget, bar)
    fit_mu = _latent_means(vae, small, dev)
    latent = LatentClassifier.fit(fit_mu)
    cal = Calibration(fusion=tcfg.fusion, fusion_weight=tcfg.fusion_weight)
    insp = Inspector(mcfg, model, vae, latent, cal, device=dev.type)
    defect_imgs = _labeled_images(defect_rows, mcfg)
    labeled_paths = {str(it.path) for it, _ in label_rows}
    if defect_rows:
        _spread_labels(insp, fit_mu, defect_rows, defect_imgs, ds, mcfg, labeled_paths)
    calib = calibrate(insp, [images[i] for i in hold_idx], tcfg,
                      labeled=(defect_imgs, np.ones(len(defect_rows), bool))
                      if defect_rows else None)
    train_s = time.monotonic() - t0
    summary = ds.summary() | {"used_train_images": len(fit_idx), "holdout_images": len(hold_idx),
                              "skipped_files": skipped, "skipped": len(skipped),
                              "labeled_images": len(label_rows),
                              "labeled_good_trained": len(good_rows)}
    meta = {"name": name or Path(out).name, "train_config": tcfg.to_dict(), "seed": tcfg.seed,
            "threshold_rule": calib["rule"], "fusion_rule": calib["fusion_rule"],
            "data": summary, "device": dev.type,
            "training_seconds": round(train_s, 1)}
    metrics = {"training": {"autoencoder": ae_hist, "vae": vae_hist, "seconds": train_s},
               "calibration": calib, "evaluation": {}}
    # the bundle first: nothing the evaluation meets (a test file, memory) can cost the model
    save_bundle(out, insp, meta, metrics)
    if ds.test:
        metrics["evaluation"] = _evaluate_written(
            insp, out, data, [it for it in ds.test if str(it.path) not in labeled_paths],
            calib["holdout_fused_scores"],
            (fit_mu[:len(fit_idx)], _latent_means(vae, small_hold, dev)))
        write_metrics(out, metrics)
    return metrics


def _evaluate_written(insp: Inspector, out: str | Path, data: str | Path, items: list[Item],
                      holdout_scores: list[float], normals: tuple[np.ndarray, np.ndarray]
                      ) -> dict:
    """The test-split evaluation of a bundle already written to ``out``. A failure is logged
    and recorded as ``{"error": ...}`` instead of raised: the bundle is sound and serves, and
    ``kensa eval`` can evaluate it again once the cause is fixed."""
    try:
        return evaluate(insp, items, holdout_scores, normals=normals)
    except Exception as exc:  # noqa: BLE001 - reported; the trained bundle stays
        msg = f"{type(exc).__name__}: {exc}"
        log.error("bundle %s is written, but evaluating it on the test split failed (%s); "
                  "retry with 'kensa eval --model %s --data %s'", out, msg, out, data)
        return {"error": msg}


def _labeled_images(rows: list[tuple[Item, str]], mcfg: ModelConfig) -> list[np.ndarray]:
    """The labeled files, prepared as the training images are."""
    if not rows:
        return []
    imgs, _kept, skipped = read_items([it for it, _ in rows], _preparer(mcfg))
    if skipped:
        raise DataError(f"labeled file(s) do not decode as images: {skipped[:5]}")
    return imgs


def _preparer(mcfg: ModelConfig) -> Callable[[np.ndarray], np.ndarray]:
    return lambda im: prepare_for(im, mcfg)


def _spread_labels(insp: Inspector, train_mu: np.ndarray, rows: list[tuple[Item, str]],
                   labeled_imgs: list[np.ndarray], ds: Dataset, mcfg: ModelConfig,
                   labeled_paths: set[str]) -> None:
    """Graph of latent points: training normals (known good, operator-confirmed ones
    included; ``train_mu`` their latent means), operator-labeled defects ``rows``, and the
    dataset's test images that nobody labeled (``labeled_paths`` are left out: production
    images nobody labeled). Only the VAE runs here, on the images not seen yet."""
    unlabeled, _, _ = read_items([it for it in ds.test if str(it.path) not in labeled_paths],
                                 _preparer(mcfg))
    mus = [train_mu, insp.latent_means(labeled_imgs, prepared=True),
           insp.latent_means(unlabeled, prepared=True)]
    names = [GOOD] * len(train_mu) + [lab for _, lab in rows] + [None] * len(unlabeled)
    insp.latent.spread(np.concatenate(mus), names)
