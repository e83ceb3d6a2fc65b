"""The one inference path: images in, verdicts, maps, masks and regions out.

The server, ``kensa eval``, the trainer's calibration and the benchmarks all call
:class:`Inspector`, so a score seen in one place is the score seen everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .autoencoder import DefectModel
from .bundle import load_bundle, read_info
from .config import ModelConfig
from .data import GOOD
from .device import pick_device, to_device
from .exports import graph_paths, has_graphs
from .latent import ANOMALY, LatentClassifier
from .maps import pool_map, smoothed_map, two_view_map
from .networks import OnnxNetworks, TorchNetworks, onnxruntime_installed
from .preprocess import coarse_view, model_shape, prepare_for, same_shape_groups, vae_input
from .results import ABNORMAL, NORMAL, LatentVerdict, ReconstructionVerdict, Region, Result
from .thresholds import Calibration
from .vae import VAE, grid_cells

# test-time flips: the tensor dimensions each one reverses in (B, C, H, W)
FLIPS: dict[str, tuple[int, ...]] = {"h": (3,), "v": (2,), "hv": (2, 3)}


@dataclass
class RawScores:
    """What one forward pass gives, at model resolution.

    Attributes:
        maps: ``(B, h, w)`` smoothed anomaly maps (CPU float32): the reconstruction map, and
            where the calibration has a ``map_scale``, the latent cells' map over it. A list
            of ``(h_i, w_i)`` maps when the images had different model shapes
            (:meth:`Inspector.scores_of`).
        recon_scores: ``(B,)`` reconstruction image scores (the reconstruction map pooled by
            the calibration's ``image_score``: its maximum unless labels chose otherwise).
        latent_mu: ``(B, P, D)`` VAE latent means, one code per cell of the latent grid.
        recon: ``(B, h, w, C)`` reconstructions (a list like ``maps``), or ``None``.
    """

    maps: np.ndarray | list[np.ndarray]
    recon_scores: np.ndarray
    latent_mu: np.ndarray
    recon: np.ndarray | list[np.ndarray] | None = None


def auto_runtime(graphs: bool, onnxruntime: bool, device: str) -> str:
    """What ``auto`` runs the networks on: onnxruntime on a CPU, where the bundle has graphs
    and it is installed (measured faster than torch, same answers); torch on CUDA, where
    onnxruntime's CUDA provider has not been measured against torch's bfloat16."""
    return "onnx" if graphs and onnxruntime and device == "cpu" else "torch"


class Inspector:
    """Scores images with a trained reconstruction model, VAE and latent classifier.

    Build with :meth:`load` (from a bundle) or directly from in-memory models (the trainer
    does, to calibrate). The networks run on torch, or with ``networks`` on another runtime
    (:mod:`models.networks`); ``model`` and ``vae`` stay the torch modules either way.
    """

    def __init__(self, cfg: ModelConfig, model: DefectModel, vae: VAE,
                 latent: LatentClassifier, calibration: Calibration, device: str = "auto",
                 info: dict | None = None, max_batch: int | None = None,
                 networks: OnnxNetworks | None = None):
        self.cfg = cfg
        self.torch_device = pick_device(device)
        self.device = self.torch_device.type
        torch_networks = TorchNetworks(model, vae, self.torch_device)
        self.model, self.vae = torch_networks.model, torch_networks.vae
        self.networks = networks or torch_networks
        self.latent = latent
        self.cal = calibration
        self.info = info or {}
        # on a CPU, batches of 8 ran faster than 32 and peaked 340 MB lower (kensa bench);
        # a GPU wants large batches
        self.max_batch = max_batch or (64 if self.device == "cuda" else 8)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", key: bytes | None = None,
             runtime: str = "torch") -> Inspector:
        """Loads a bundle directory written by ``kensa train`` (see :mod:`models.bundle`);
        with ``key``, only a bundle signed with it. ``runtime`` ``onnx`` runs the networks'
        graphs that ``kensa export`` added to it (:mod:`models.exports`); ``auto`` does so
        on a CPU when the bundle has graphs and onnxruntime is installed, else runs torch."""
        networks = None
        if runtime == "auto":
            runtime = auto_runtime(has_graphs(path), onnxruntime_installed(),
                                   pick_device(device).type)
        if runtime == "onnx":  # the graphs are checked before the weights are read
            graphs = graph_paths(path, read_info(path, key), key)
            networks = OnnxNetworks(graphs, pick_device(device))
        elif runtime != "torch":
            raise ValueError(f"unknown runtime {runtime!r}: torch, onnx or auto")
        bundle = load_bundle(path, key)
        return cls(bundle.cfg, bundle.model, bundle.vae, bundle.latent, bundle.cal,
                   device=device, info=bundle.info, networks=networks)

    @property
    def runtime(self) -> str:
        """What runs the networks: ``torch`` or ``onnx``."""
        return self.networks.runtime

    @property
    def image_threshold(self) -> float:
        return self.cal.image

    # -- scoring at model resolution -------------------------------------------------------
    def groups(self, prepared: Sequence[np.ndarray]) -> list[tuple[np.ndarray, torch.Tensor]]:
        """Prepared images ``(h, w, C)`` -> ``(indices, (B, C, h, w) tensor)`` per shape."""
        return [(idx, to_device(batch, self.torch_device))
                for idx, batch in same_shape_groups(prepared)]

    def scores_of(self, images: Sequence[np.ndarray],
                  with_reconstruction: bool = False) -> RawScores:
        """:meth:`raw_scores` of images of any sizes, each at its own model shape, in input
        order (``maps`` and ``recon`` are then lists: the shapes may differ)."""
        return self.grouped_scores(self.groups([prepare_for(im, self.cfg) for im in images]),
                                   with_reconstruction)

    def grouped_scores(self, groups: Sequence[tuple[np.ndarray, torch.Tensor]],
                       with_reconstruction: bool = False) -> RawScores:
        """:meth:`raw_scores` of each same-shape group of :meth:`groups`, back in input order."""
        n = sum(len(idx) for idx, _ in groups)
        maps: list = [None] * n
        recon: list | None = [None] * n if with_reconstruction else None
        scores = np.zeros(n, np.float32)
        mu = np.zeros((n, sum(grid_cells(self.cfg)), self.cfg.latent_dim), np.float32)
        for idx, x in groups:
            raw = self.raw_scores(x, with_reconstruction)
            scores[idx], mu[idx] = raw.recon_scores, raw.latent_mu
            for j, i in enumerate(idx):
                maps[i] = raw.maps[j]
                if recon is not None:
                    recon[i] = raw.recon[j]
        return RawScores(maps, scores, mu, recon)

    @torch.inference_mode()
    def raw_scores(self, x: torch.Tensor, with_reconstruction: bool = False) -> RawScores:
        """Forward pass on prepared inputs ``(B, C, h, w)`` (one shape) in chunks of
        ``max_batch``."""
        out = [self._raw_chunk(x[i:i + self.max_batch], with_reconstruction)
               for i in range(0, len(x), self.max_batch)]
        recon = np.concatenate([o.recon for o in out]) if with_reconstruction else None
        return RawScores(np.concatenate([o.maps for o in out]),
                         np.concatenate([o.recon_scores for o in out]),
                         np.concatenate([o.latent_mu for o in out]), recon)

    def _raw_chunk(self, x: torch.Tensor, with_reconstruction: bool) -> RawScores:
        if self.networks.fused and not self.cal.flips:
            return self._fused_chunk(x, with_reconstruction)
        amap, recon = self.reconstruction_map(x)
        for name in self.cal.flips:  # each flipped copy's map, flipped back over the image's
            amap = amap + self.reconstruction_map(x, name)[0]
        maps, scores = self.smoothed(amap / (1 + len(self.cal.flips)))
        mu = self._latent_means(x)
        rec = recon.permute(0, 2, 3, 1).cpu().numpy() if with_reconstruction else None
        return RawScores(self.add_latent_map(maps.cpu().numpy(), mu), scores.cpu().numpy(),
                         mu, rec)

    def smoothed(self, amap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reconstruction map ``(B, 1, h, w)`` -> the smoothed map ``(B, h, w)`` and the
        reconstruction score ``(B,)``, the map pooled by ``cal.image_score`` (its maximum by
        default, :func:`models.maps.pool_map`): the one rule for both the served score and the
        single views calibration compares (:meth:`view_scores`)."""
        return smoothed_map(amap, self.cfg.map_sigma, self.cal.image_score)

    def _fused_chunk(self, x: torch.Tensor, with_reconstruction: bool) -> RawScores:
        """:meth:`_raw_chunk` in one call of the exported ``maps`` graph
        (:class:`models.exports.MapGraph`, through ``OnnxNetworks.maps``): the same maths,
        with no torch between and after the networks."""
        maps, scores, mu, recon = self.networks.maps(
            x, coarse_view(x, self.cfg), vae_input(x, self.cfg.vae_image_size),
            self.cal.residual_scale)
        if self.cal.image_score != "max":  # the graph's score is the maximum
            scores = pool_map(torch.from_numpy(maps), self.cal.image_score).numpy()
        rec = recon.transpose(0, 2, 3, 1) if with_reconstruction else None
        return RawScores(self.add_latent_map(maps, mu), scores, mu, rec)

    def reconstruction_map(self, x: torch.Tensor, flip: str | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """The reconstruction model's map ``(B, 1, h, w)`` of prepared inputs, before
        smoothing (both views averaged when there is a coarse view), and the reconstruction
        ``(B, C, h, w)``. With ``flip`` (a key of ``FLIPS``) the model sees the flipped copy
        and both come back flipped, so they lie over ``x``."""
        if flip is not None:
            x = torch.flip(x, FLIPS[flip]).contiguous(memory_format=torch.channels_last)
        amap, recon = two_view_map(self.networks.defect, x, coarse_view(x, self.cfg),
                                   self.cfg.map_mode, self.cal.residual_scale)
        if flip is not None:
            amap, recon = torch.flip(amap, FLIPS[flip]), torch.flip(recon, FLIPS[flip])
        return amap, recon

    @torch.inference_mode()
    def view_scores(self, x: torch.Tensor, flip: str | None = None) -> np.ndarray:
        """``(B,)`` reconstruction image scores of one view (the image, or its ``flip``ped
        copy) alone: what calibration compares to decide which flips look normal."""
        out = []
        for i in range(0, len(x), self.max_batch):
            amap = self.reconstruction_map(x[i:i + self.max_batch], flip)[0]
            out.append(self.smoothed(amap)[1].cpu().numpy())
        return np.concatenate(out)

    def add_latent_map(self, maps: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """Reconstruction maps ``(B, h, w)`` -> anomaly maps: each pixel the larger of its
        reconstruction map and its latent cell's Mahalanobis distance (``mu``: ``(B, P, D)``),
        the cell grid stretched over the image. The distance is divided by the latent
        threshold and times ``map_scale``, so a cell at the latent verdict's threshold counts
        as much as a pixel at the reconstruction map's normal level.

        Why: the reconstruction model sees 64-pixel windows and a half-size view; a large
        defect whose inside is smooth (a dark stain, a worn patch) gets rebuilt as it is and
        only its edges light up, while the VAE's cell for that part of the image falls far
        from the normal cluster. It raised magnetic tiles' pixel AUROC and left AUPRO and the
        demo level (``benchmarks/HISTORY.md``).
        """
        if self.cal.map_scale <= 0:  # calibration leaves it 0 when cfg.latent_map is off
            return maps
        g = self.cfg.map_grid
        cells = self.latent.cell_distances(mu)[:, -g * g:]  # the map grid's cells come last
        cells = cells.reshape(-1, 1, g, g) / (self.cal.map_distance or self.cal.latent_distance)
        up = F.interpolate(torch.from_numpy(cells.astype(np.float32)), size=maps.shape[-2:],
                           mode="bilinear", align_corners=False)[:, 0].numpy()
        return np.maximum(maps, up * self.cal.map_scale)

    def _latent_means(self, x: torch.Tensor) -> np.ndarray:
        """``(B, C, h, w)`` prepared inputs (one shape) -> ``(B, P, D)`` VAE latent means."""
        views = vae_input(x, self.cfg.vae_image_size)
        return np.concatenate([self.networks.encode(views[i:i + self.max_batch])
                               for i in range(0, len(views), self.max_batch)])

    @torch.inference_mode()
    def latent_means(self, images: Sequence[np.ndarray], prepared: bool = False) -> np.ndarray:
        """``(N, P, D)`` latent means of images of any sizes (the VAE alone: what the latent
        classifier needs, without the reconstruction model's cost); ``prepared``: the images
        are already at their model shapes (:func:`prepare_for`, as the trainer keeps them)."""
        out = np.zeros((len(images), sum(grid_cells(self.cfg)), self.cfg.latent_dim), np.float32)
        for i in range(0, len(images), self.max_batch):
            chunk = [im if prepared else prepare_for(im, self.cfg)
                     for im in images[i:i + self.max_batch]]
            for idx, x in self.groups(chunk):
                out[i + idx] = self._latent_means(x)
        return out

    # -- full results ------------------------------------------------------------------------
    def inspect(self, images: Sequence[np.ndarray], threshold: float | None = None,
                with_reconstruction: bool = False) -> list[Result]:
        """Inspects a batch of images of any sizes.

        Args:
            images: ``float32 (H, W, C)`` arrays in ``[0, 1]``, ``C`` 1 or 3.
            threshold: overrides the image threshold on the fused score for this call.
            with_reconstruction: also return the cleaned image at the input's size.
        """
        return self.inspect_raw(images, threshold, with_reconstruction)[0]

    def inspect_raw(self, images: Sequence[np.ndarray], threshold: float | None = None,
                    with_reconstruction: bool = False) -> tuple[list[Result], RawScores | None]:
        """:meth:`inspect`, also returning the model-resolution scores it was built from
        (evaluation needs the latent means; this saves it a second forward pass)."""
        if not images:
            return [], None
        raw = self.scores_of(images, with_reconstruction)
        fused, latent_scores, distances, clusters = self.fused_scores(raw)
        applied = self.cal.image if threshold is None else float(threshold)
        results = [self._result(im, raw, i, float(fused[i]), applied,
                                self.latent_verdict(float(latent_scores[i]), float(distances[i]),
                                                    clusters[i]))
                   for i, im in enumerate(images)]
        return results, raw

    def fused_scores(self, raw: RawScores) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                    list[str]]:
        """The fused image scores of ``raw`` (the score a verdict compares with the image
        threshold), with the latent scores, distances and cluster names they came from."""
        latent_scores, distances, clusters = self.latent.score(
            raw.latent_mu, self.cal.latent_distance, self.cal.latent_spread,
            self.cal.latent_score)
        return (self.cal.fuse(raw.recon_scores, latent_scores), latent_scores, distances,
                clusters)

    def _result(self, image: np.ndarray, raw: RawScores, i: int, score: float,
                threshold: float, latent: LatentVerdict) -> Result:
        """The :class:`Result` of image ``i`` of ``raw``, its maps stretched to the image."""
        h, w = image.shape[:2]
        amap = cv2.resize(raw.maps[i], (w, h), interpolation=cv2.INTER_LINEAR)
        mask, regions = self.regions(amap)
        recon_score = float(raw.recon_scores[i])
        recon_label = ABNORMAL if recon_score >= self.cal.reconstruction else NORMAL
        cleaned = None
        if raw.recon is not None:
            cleaned = cv2.resize(raw.recon[i], (w, h), interpolation=cv2.INTER_LINEAR)
            cleaned = cleaned.reshape(h, w, -1)
        return Result(
            label=ABNORMAL if score >= threshold else NORMAL, score=score, threshold=threshold,
            pixel_threshold=self.cal.pixel, width=w, height=h,
            reconstruction=ReconstructionVerdict(recon_score, self.cal.reconstruction,
                                                 recon_label),
            latent=latent, anomaly_map=amap, mask=mask, regions=regions,
            reconstruction_image=cleaned)

    def latent_verdict(self, score: float, distance: float, cluster: str) -> LatentVerdict:
        threshold = self.cal.latent
        abnormal = score >= threshold
        if not self.latent.semi_supervised or not cluster:  # no label names this image
            cluster = ANOMALY if abnormal else GOOD
        # confidence: how far the score sits from the threshold, in units of the threshold
        margin = abs(score - threshold) / max(threshold, 1e-12)
        confidence = float(1 - math.exp(-3 * margin)) * 0.5 + 0.5
        return LatentVerdict(ABNORMAL if abnormal else NORMAL, distance, threshold, cluster,
                             confidence, score)

    def regions(self, amap: np.ndarray) -> tuple[np.ndarray, list[Region]]:
        """Mask ``bool (H, W)`` and its regions; specks smaller than ``min_region_area`` (in
        model pixels) are dropped."""
        binary = (amap >= self.cal.pixel).astype(np.uint8)
        if not binary.any():
            return binary.astype(bool), []
        h, w = amap.shape
        mh, mw = model_shape(h, w, self.cfg)
        min_area = self.cfg.min_region_area * (h * w) / (mh * mw)
        count, components, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        keep = np.zeros(count, bool)
        regions = []
        for j in range(1, count):
            x, y, bw, bh, area = (int(v) for v in stats[j])
            if area < min_area:
                continue
            keep[j] = True
            inside = components[y:y + bh, x:x + bw] == j
            regions.append(Region(x, y, bw, bh, area, float(amap[y:y + bh, x:x + bw][inside].max())))
        regions.sort(key=lambda r: -r.score)
        return keep[components], regions
