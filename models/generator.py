"""The conditional defect generator (``kensa train --generator``, ``--synth learned``,
``kensa generate``): a small conditional GAN that makes a defect of a requested type.

It learns from the labeled defects' cut-outs (:mod:`models.cutouts`): each a ``PATCH``-pixel
square of a defect with its context and its alpha (where the defect is). The generator maps
noise and the type's embedding to such a square and alpha; the discriminator judges
``(patch, alpha)`` pairs with a projection of the type (Miyato and Koyama 2018), so it learns
what each type looks like, not only "a defect". With a handful of examples per type it would
memorise them at once; the reals are augmented (flips, quarter turns, brightness) every
time they are drawn, and both reals and fakes get the same random brightness and flips before
the discriminator sees them (differentiable augmentation, Zhao et al. 2020); a mode-seeking
term keeps different noise making different defects.

What it can do with a few examples: variations of the shapes, sizes and contrasts it saw, in
the plausible range of that type. What it cannot: a defect it has not seen (a new type, or a
crack shape far from the examples), or the texture of a part it has not seen at the defect's
place (the context is pasted away, only the alpha-weighted defect stays).

A defect is pasted (:func:`paste`) with its brightness matched to the place it lands: the
patch's context (outside the alpha) is shifted to the local mean, so a dark scratch stays a
dark scratch on a brighter or darker part.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .config import TrainConfig
from .cutouts import Cutout
from .errors import DataError
from .fit import Progress, run_loop
from .synth import MIN_VISIBLE

PATCH = 32  # side of a generated patch
Z_DIM = 32
WIDTH = 32
BATCH = 16
LR = 2e-4
BANK = 64  # generated defects per type kept for --synth learned
MODE_SEEKING = 1.0  # weight of mode_seeking in the generator's loss
ALPHA_FLOOR = 0.25  # a generated alpha under this is context, never pasted (see sharpened)


@dataclass(frozen=True)
class GeneratorConfig:
    """The generator's shape and what it was trained on (stored in ``bundle.json``).

    Attributes:
        types: the defect names, in index order.
        channels: image channels.
        sizes: per type, the ``[h, w]`` (model pixels) of the regions it learned from.
    """

    types: tuple[str, ...]
    channels: int
    sizes: dict[str, list[list[int]]]
    patch: int = PATCH
    z_dim: int = Z_DIM
    width: int = WIDTH

    def to_dict(self) -> dict:
        return {"types": list(self.types), "channels": self.channels, "sizes": self.sizes,
                "patch": self.patch, "z_dim": self.z_dim, "width": self.width}

    @classmethod
    def from_dict(cls, d: dict) -> GeneratorConfig:
        return cls(tuple(d["types"]), int(d["channels"]), d["sizes"], int(d["patch"]),
                   int(d["z_dim"]), int(d["width"]))


class ConditionalGenerator(nn.Module):
    """``(z (B, z_dim), type (B,)) -> (B, C + 1, P, P)`` in ``[0, 1]``: the patch and, last,
    its alpha."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        w, self.stages = cfg.width, int(np.log2(cfg.patch // 4))
        self.embed = nn.Embedding(len(cfg.types), cfg.z_dim)
        self.fc = nn.Linear(2 * cfg.z_dim, 2 * w * 16)
        ups = []
        for i in range(self.stages):
            c_in = 2 * w if i == 0 else w
            ups += [nn.Upsample(scale_factor=2), nn.Conv2d(c_in, w, 3, padding=1),
                    nn.GroupNorm(8, w), nn.SiLU()]
        self.ups = nn.Sequential(*ups)
        self.head = nn.Conv2d(w, cfg.channels + 1, 3, padding=1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.embed(labels)], 1)).view(len(z), -1, 4, 4)
        return torch.sigmoid(self.head(self.ups(F.silu(h))))


class ProjectionDiscriminator(nn.Module):
    """``((B, C + 1, P, P), type (B,)) -> (B,)`` logits: real pairs high, generated low."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        layers, c = [], cfg.channels + 1
        for i in range(int(np.log2(cfg.patch // 4))):
            out = cfg.width * min(2**i, 4)
            layers += [spectral_norm(nn.Conv2d(c, out, 4, 2, 1)), nn.LeakyReLU(0.2)]
            c = out
        self.body = nn.Sequential(*layers)
        self.out = spectral_norm(nn.Linear(c, 1))
        self.embed = spectral_norm(nn.Embedding(len(cfg.types), c))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.body(x).sum(dim=(2, 3))
        return self.out(h)[:, 0] + (self.embed(labels) * h).sum(1)


def augment_real(rng: np.random.Generator, c: Cutout) -> np.ndarray:
    """``(C + 1, P, P)``: a cut-out and its alpha turned, flipped and brightened at random."""
    x = np.concatenate([c.image, c.alpha[..., None]], axis=2)
    x = np.rot90(x, int(rng.integers(0, 4)))
    if rng.random() < 0.5:
        x = x[:, ::-1]
    x = np.ascontiguousarray(x.transpose(2, 0, 1)).astype(np.float32)
    x[:-1] = np.clip(x[:-1] * rng.uniform(0.85, 1.15) + rng.uniform(-0.05, 0.05), 0, 1)
    return x


def diff_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The same kind of random brightness and flips on real and generated batches, before the
    discriminator (differentiable: the generator learns through it)."""
    b = len(x)
    gain = 1 + (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.3
    shift = (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.1
    gain, shift = gain.to(x.device), shift.to(x.device)
    img = x[:, :-1] * gain + shift
    x = torch.cat([img, x[:, -1:]], 1)
    flip = (torch.rand(b, generator=gen) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def mode_seeking(fake: torch.Tensor, z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mode-seeking regulariser (Mao et al. 2019): the batch's two halves, made from different
    noise, must differ in proportion; the inverse of that ratio is minimised. Without it the
    generator gave one defect per type whatever the noise (mode collapse, seen on the demo)."""
    half = len(fake) // 2
    ratio = ((fake[:half] - fake[half:2 * half]).abs().mean()
             / (z[:half] - z[half:2 * half]).abs().mean())
    return 1 / (ratio + eps)


def fit_generator(cuts: list[Cutout], tcfg: TrainConfig, device: torch.device,
                  budget_s: float, progress: Progress) -> tuple[ConditionalGenerator, dict]:
    """Trains the conditional GAN (hinge loss) on ``cuts`` within ``budget_s`` (and
    ``tcfg.epochs`` passes) -> ``(generator in eval mode, history)``.

    Raises:
        DataError: no cut-out (no labeled defect region could be found).
    """
    if not cuts:
        raise DataError("the defect generator found no defect region in the labeled defects: "
                        "give masks or boxes with --labels (path,label,regions)")
    types = tuple(sorted({c.label for c in cuts}))
    sizes = {t: [list(c.size) for c in cuts if c.label == t] for t in types}
    cfg = GeneratorConfig(types, cuts[0].image.shape[2], sizes)
    with torch.random.fork_rng(devices=[]):  # the global stream stays the trainer's
        torch.manual_seed(tcfg.seed + 5)
        gen, disc = ConditionalGenerator(cfg).to(device), ProjectionDiscriminator(cfg).to(device)
    opt_g = torch.optim.Adam(gen.parameters(), lr=LR, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=LR, betas=(0.5, 0.999))
    rng, aug = np.random.default_rng(tcfg.seed + 5), torch.Generator().manual_seed(tcfg.seed)
    labels = np.array([types.index(c.label) for c in cuts])

    def step(i: int, frac: float) -> float:
        idx = rng.integers(0, len(cuts), BATCH)
        real = torch.from_numpy(np.stack([augment_real(rng, cuts[k]) for k in idx])).to(device)
        y = torch.from_numpy(labels[idx]).to(device)
        z = torch.randn(BATCH, cfg.z_dim, generator=aug).to(device)
        fake = gen(z, y)
        d_loss = (F.relu(1 - disc(diff_augment(real, aug), y)).mean()
                  + F.relu(1 + disc(diff_augment(fake.detach(), aug), y)).mean())
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        g_loss = -disc(diff_augment(fake, aug), y).mean() + MODE_SEEKING * mode_seeking(fake, z)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        return float(d_loss.detach())

    history = run_loop("GAN", step, tcfg, len(cuts), budget_s, progress)
    history |= {"cutouts": {t: len(s) for t, s in sizes.items()}}
    return gen.eval(), history


@torch.no_grad()
def sample(gen: ConditionalGenerator, label: str, n: int, seed: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` generated defects of type ``label``: ``(patches (n, P, P, C), alphas (n, P, P),
    sizes (n, 2))`` (sizes drawn from the type's learned regions)."""
    cfg = gen.cfg
    g = torch.Generator().manual_seed(seed)
    dev = next(gen.parameters()).device
    z = torch.randn(n, cfg.z_dim, generator=g).to(dev)
    y = torch.full((n,), cfg.types.index(label), dtype=torch.long, device=dev)
    out = gen(z, y).permute(0, 2, 3, 1).cpu().numpy()
    known = np.array(cfg.sizes[label])
    pick = np.random.default_rng(seed).integers(0, len(known), n)
    return out[..., :-1], out[..., -1], known[pick]


def sharpened(alpha: np.ndarray) -> np.ndarray:
    """The alpha a paste blends by: 0 up to ``ALPHA_FLOOR``, 1 from ``1 - ALPHA_FLOOR``,
    linear between. A generator early in training (or unsure) gives a haze of middling alpha
    over the whole patch; pasted as it is, that haze would carry the patch's context (another
    part's surface) into the image as a faint square."""
    return np.clip((alpha - ALPHA_FLOOR) / (1 - 2 * ALPHA_FLOOR), 0, 1).astype(np.float32)


def paste(rng: np.random.Generator, image: np.ndarray, patch: np.ndarray, alpha: np.ndarray,
          size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One generated defect pasted into ``image (H, W, C)`` at a random place, at ``size``
    (clipped to the image), its context's brightness matched to the place, blended by its
    :func:`sharpened` alpha -> ``(image, mask float32 (H, W))``; the mask is where the alpha
    is over a half and the image visibly changed (as :func:`models.synth.add_defect`)."""
    H, W, C = image.shape
    h, w = (max(2, min(int(s), d)) for s, d in zip(size, (H, W)))
    p = cv2.resize(patch, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
    a = cv2.resize(sharpened(alpha), (w, h), interpolation=cv2.INTER_LINEAR)[..., None]
    if p.shape[2] != C:
        p = np.repeat(p.mean(axis=2, keepdims=True), C, axis=2)
    y, x = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
    under = image[y:y + h, x:x + w]
    context = np.clip(1 - a, 1e-3, None)
    offset = ((under - p) * context).sum((0, 1)) / context.sum((0, 1))
    out = image.copy()
    out[y:y + h, x:x + w] = under * (1 - a) + np.clip(p + offset, 0, 1) * a
    mask = np.zeros((H, W), np.float32)
    changed = np.abs(out[y:y + h, x:x + w] - under).max(axis=2) >= MIN_VISIBLE
    mask[y:y + h, x:x + w] = (changed & (a[..., 0] > 0.5)).astype(np.float32)
    return out.astype(np.float32), mask


class DefectBank:
    """Generated defects held ready for training (``--synth learned``): ``BANK`` per type,
    sampled once after the generator trained, so each training step only pastes."""

    def __init__(self, gen: ConditionalGenerator, seed: int, per_type: int = BANK):
        self.items = []
        for i, t in enumerate(gen.cfg.types):
            patches, alphas, sizes = sample(gen, t, per_type, seed + i)
            self.items += list(zip(patches, alphas, sizes))

    def add(self, rng: np.random.Generator, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A random generated defect pasted into a training window ``(h, w, C)``."""
        patch, alpha, size = self.items[int(rng.integers(0, len(self.items)))]
        return paste(rng, window, patch, alpha, tuple(size))
