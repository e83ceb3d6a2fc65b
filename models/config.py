"""Frozen configuration: the single source of truth for model shapes and training.

A bundle stores both dataclasses as JSON and rebuilds the networks from them (no pickles).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

DEVICES = ("auto", "cpu", "cuda")  # the --device choices of every command; auto: CUDA when present

FUSION_RULES = ("auto", "reconstruction", "max", "weighted")

SYNTH_KINDS = ("procedural", "learned")  # TrainConfig.synth


@dataclass(frozen=True)
class ModelConfig:
    """Shapes of the networks and how images are prepared for them.

    Attributes:
        image_size: side of the square the reconstruction model sees (inputs are resized).
        channels: 1 (gray) or 3 (RGB), taken from the training images.
        width: channels of the first conv stage; later stages double it.
        depth: number of stride-2 stages in the reconstruction encoder.
        seg_width: channels of the first stage of the segmentation head.
        seg_depth: stride-2 stages of the segmentation head (its context grows with it).
        vae_image_size: side of the square the VAE sees.
        vae_width: channels of the VAE's first conv stage.
        latent_dim: size of each VAE latent code.
        latent_grid: the VAE's latent is a ``latent_grid x latent_grid`` grid of codes, one per
            part of the image (``vae_image_size`` must be it times a power of two).
        map_grid: the grid of the latent cells drawn into the anomaly map; when it differs
            from ``latent_grid`` a second VAE with this grid trains beside the first (see
            :mod:`models.vae`) and the verdict takes the most unusual cell of both grids.
            16 and 8 by default: against one 8 x 8 grid for both, latent AUROC rose on both
            data sets while image and pixel AUROC moved little (``benchmarks/HISTORY.md``).
        map_sigma: Gaussian smoothing of the anomaly map, in pixels at ``image_size``.
        map_mode: ``segmentation`` (the head's probability), ``residual`` (input minus
            reconstruction, normalised) or ``combined`` (their mean).
        min_region_area: defect regions smaller than this (at ``image_size``) are specks and are
            dropped from the mask.
        coarse_scale: when in ``(0, 1)``, the model also looks at the whole image shrunk by
            this factor and the two maps are averaged: large defects whose inside looks
            locally normal (a discoloured area, a worn patch) fit in its view there. Training
            then shows it such shrunk images too (half the windows). 0 = one scale. 0.5 by
            default: it lifted magnetic tiles' image AUROC far more than it cost the demo
            washers (``benchmarks/HISTORY.md``).
        latent_map: the anomaly map also shows the VAE's latent cells: each pixel the larger
            of the reconstruction map and its cell's latent distance (in units of the latent
            threshold), so a large defect that the reconstruction model rebuilds as it is still
            lights up (see ``Inspector.add_latent_map``).
        keep_aspect: the reconstruction model sees each image at its own aspect ratio, scaled
            by ``pixel_scale``, instead of squashed to ``image_size`` square (see
            ``models.preprocess.model_shape``); the VAE's view stays square. Images that all
            have one size (one camera) get the same square as without it, bit for bit. On by
            default: magnetic tiles come in crops of many shapes, squashing stretched their
            texture by up to 6x between images, and keeping the aspect raised their image
            AUROC and AUPRO on every seed (``benchmarks/HISTORY.md``).
        pixel_scale: model pixels per image pixel under ``keep_aspect``: ``image_size`` over
            the training images' median geometric side (``sqrt(h * w)``), set by the trainer.
        train_sides: the smallest and largest geometric side of the training images, set by
            the trainer: an image outside this range is scaled as if it had the nearest one
            (``models.preprocess.model_shape``). ``(0, 0)``: no range (bundles from before it).
    """

    image_size: int = 128
    channels: int = 1
    width: int = 24
    depth: int = 4
    seg_width: int = 16
    seg_depth: int = 3
    vae_image_size: int = 64
    vae_width: int = 16
    latent_dim: int = 32
    latent_grid: int = 16
    map_grid: int = 8
    map_sigma: float = 2.0
    map_mode: str = "combined"
    min_region_area: int = 4
    coarse_scale: float = 0.5
    latent_map: bool = True
    keep_aspect: bool = True
    pixel_scale: float = 0.0
    train_sides: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        # bundles written before the coarse view existed were trained and calibrated without
        # it, and those written before keep_aspect squashed every image
        d = {"coarse_scale": 0.0, "keep_aspect": False, **d}
        # ... and before the map grid, with one grid for the verdict and the map
        d.setdefault("map_grid", d.get("latent_grid", cls.latent_grid))
        d = {**d, "train_sides": tuple(d.get("train_sides", (0.0, 0.0)))}
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """How a bundle is trained and calibrated.

    Attributes:
        epochs: upper bound on passes over the training images (the time budget may stop
            training earlier).
        max_minutes: wall-clock budget for the whole of training (both models); calibration
            and writing the bundle come after it.
        batch_size: images per optimisation step.
        lr: Adam learning rate (peak of a cosine schedule). 5e-4: against 1e-3, AUPRO and
            pixel AUROC rose on both data sets; 2e-3 lost image AUROC on the tiles (``benchmarks/HISTORY.md``).
        seed: seeds every random choice; CPU training is deterministic for a given seed.
        holdout_fraction: share of normal training images kept out of training to calibrate
            thresholds (at least ``min_holdout`` images).
        false_alarm_rate: share of held-out normal images allowed over the image threshold.
        pixel_false_alarm_rate: share of held-out normal pixels allowed over the pixel
            threshold.
        vae_share: share of the time budget given to the VAE.
        beta: weight of the KL term in the VAE loss.
        fusion: how the reconstruction and latent verdicts combine (``FUSION_RULES``).
            ``auto`` decides at calibration: with operator-labeled defects, the weight of
            ``weighted`` (1.0 down to 0.5) that ranks the labeled defects above the held-out
            normals best; without them, ``weighted`` at ``fusion_weight``, which ranked
            defects better than the reconstruction score alone on both data sets
            (``benchmarks/HISTORY.md``).
        fusion_weight: weight of the reconstruction score under the ``weighted`` rule.
        anomaly_prob: share of training images that get a synthetic defect.
        crop: the reconstruction model trains on random ``crop`` x ``crop`` windows of the
            resized images (0 = whole images; with ``keep_aspect``, ``image_size`` windows,
            sides shorter than the window mirrored out). The networks are fully
            convolutional, so this buys several times more optimisation steps per CPU-minute.
            64: 96 took half the steps and lost accuracy, and 48's gains stayed within the
            run-to-run spread (``benchmarks/HISTORY.md``).
        border_windows: share of window positions, per axis, placed on an image border (half
            at each side) instead of anywhere, so the networks learn the image's real rim (see
            ``models.fit.window_origins``). 0.5 by default: on average image AUROC, pixel
            AUROC and AUPRO rose on both data sets (``benchmarks/HISTORY.md``).
        flips: test-time flips (``h``, ``v``, ``hv``): ``auto`` keeps those under which the
            held-out normals still look normal (``models.calibrate.choose_flips``), ``none``
            or a comma list sets them. Each kept flip costs one more forward pass per image.
            ``none`` by default: ``auto`` gave better verdicts, not better maps, for 2-4x the
            inference time (``benchmarks/HISTORY.md``).
        adversarial: VAEGAN's learned similarity (:mod:`models.vaegan`): a patch
            discriminator trains against the reconstructions and its features join L1 + SSIM
            in the autoencoder's loss, after a warm-up. Training only: the bundle's networks
            and the inference path are the same. Off by default (not yet measured to help).
        synth: what the synthetic defects the segmentation head trains on are: ``procedural``
            (:mod:`models.synth`) or ``learned``: half of them come from a conditional
            generator trained first on the labeled defects' regions (:mod:`models.generator`;
            needs labeled defects with masks or boxes), the rest procedural.
        generator: train the conditional defect generator on the labeled defects and ship it
            in the bundle for ``kensa generate`` (``synth == "learned"`` implies it).
    """

    epochs: int = 1000
    max_minutes: float = 15.0
    batch_size: int = 16
    lr: float = 5e-4
    seed: int = 0
    holdout_fraction: float = 0.15
    min_holdout: int = 4
    false_alarm_rate: float = 0.01
    pixel_false_alarm_rate: float = 0.001
    vae_share: float = 0.12
    beta: float = 1.0
    fusion: str = "auto"
    fusion_weight: float = 0.8
    anomaly_prob: float = 0.6
    crop: int = 64
    border_windows: float = 0.5
    flips: str = "none"
    adversarial: bool = False
    synth: str = "procedural"
    generator: bool = False
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, dict] = {
    # finishes in about 5 minutes on a 2-core CPU, for `make demo`
    "demo": {"model": {}, "train": {"max_minutes": 4.0}},
    # the default: a 15-minute budget, what the accuracy table in README.md uses
    "default": {"model": {}, "train": {}},
    # for a GPU: twice the resolution (thin scratches survive resizing), wider networks, larger
    # windows and batches, and the test-time flips the held-out normals allow (a GPU pays
    # little for the extra passes); far too slow for a CPU's 15 minutes. Not yet measured on a
    # GPU: benchmarks/gpu-run.sh compares it with the default there.
    "large": {"model": {"image_size": 256, "width": 32, "seg_width": 24},
              "train": {"crop": 128, "batch_size": 32, "flips": "auto"}},
    # seconds: for tests and smoke checks
    "tiny": {"model": {"image_size": 32, "width": 8, "depth": 3, "seg_width": 8,
                       "vae_image_size": 32, "vae_width": 8, "latent_dim": 8},
             "train": {"max_minutes": 0.2, "epochs": 30, "batch_size": 8}},
}
