"""The only image reader in Kensa: uploads, training folders and evaluation sets all pass here.

An *image* inside Kensa is a ``float32`` array ``(H, W, C)`` with values in ``[0, 1]`` and
``C`` either 1 (gray) or 3 (RGB). 8- and 16-bit files, palettes and alpha are folded into that
one form here, so nothing downstream cares what the camera wrote.
"""

from __future__ import annotations

import csv
import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from .errors import (
    DataError,
    ImageError,
    ImageShapeError,
    ImageTooLargeError,
    UnsupportedImageError,
)

if TYPE_CHECKING:
    from .config import TrainConfig

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
PIL_FORMATS = ("PNG", "JPEG", "BMP", "TIFF")  # the formats of IMAGE_SUFFIXES, by PIL's names
FORMATS_TEXT = "PNG, JPEG, BMP or TIFF (8- or 16-bit; gray, RGB or RGBA)"
DEFAULT_MAX_PIXELS = 40_000_000
GOOD = "good"
LABELS_FILE = "labels.csv"  # the labels CSV in a labels folder (kensa serve's KENSA_LABELS_DIR)

# We enforce our own pixel limit before decoding; PIL's warning would only add noise.
Image.MAX_IMAGE_PIXELS = None


JPEG_MAX_SIDE = 65_500  # OpenCV's JPEG encoder (the overlay) stops here


@dataclass(frozen=True)
class ImageLimits:
    """The image geometry :func:`decode_image` accepts, checked on the header before any
    pixel is decoded; ``None`` for no limit.

    Attributes:
        max_pixels: width x height (decompression bombs).
        max_side: the longer side.
        min_side: the shorter side (a 1 x 1 crop got a confident verdict once).
        max_aspect: longer side / shorter side.
    """

    max_pixels: int | None = DEFAULT_MAX_PIXELS
    max_side: int | None = None
    min_side: int | None = None
    max_aspect: float | None = None

    def check(self, width: int, height: int) -> None:
        """Raises :class:`ImageTooLargeError` or :class:`ImageShapeError` for a
        ``width`` x ``height`` image outside these limits."""
        if width < 1 or height < 1:
            raise ImageError(f"the image has no pixels ({width}x{height})")
        size, long, short = f"{width}x{height}", max(width, height), min(width, height)
        if self.max_pixels is not None and width * height > self.max_pixels:
            raise ImageTooLargeError(
                f"the image is {size} = {width * height:,} pixels, over the limit of "
                f"{self.max_pixels:,}: resize it before upload or raise KENSA_MAX_PIXELS")
        if self.max_side is not None and long > self.max_side:
            raise ImageTooLargeError(
                f"the image is {size}: its longer side, {long:,} pixels, is over the limit of "
                f"{self.max_side:,}: resize it before upload or raise KENSA_MAX_SIDE (at most "
                f"{JPEG_MAX_SIDE:,})")
        if self.min_side is not None and short < self.min_side:
            raise ImageShapeError(
                f"the image is {size}: its shorter side, {short} pixel{'s' * (short > 1)}, is "
                f"under the minimum of {self.min_side}: send the whole part, not a crop of it, "
                "or lower KENSA_MIN_SIDE")
        if self.max_aspect is not None and long > self.max_aspect * short:
            raise ImageShapeError(
                f"the image is {size}, {long / short:.0f} times as long as wide, over the limit "
                f"of {self.max_aspect:g}: cut it into pieces at most {self.max_aspect:g} times "
                "as long as wide, or raise KENSA_MAX_ASPECT")


DEFAULT_LIMITS = ImageLimits()


def decode_image(data: bytes, limits: ImageLimits | None = DEFAULT_LIMITS) -> np.ndarray:
    """Decodes image bytes into Kensa's image form.

    Args:
        data: the encoded file (PNG, JPEG, BMP, TIFF).
        limits: the geometry to accept, checked before decoding (decompression bombs,
            slivers); ``None`` for no limit. The default checks pixels only.

    Returns:
        ``float32`` array ``(H, W, C)`` in ``[0, 1]``, ``C`` 1 or 3.

    Raises:
        ImageError: empty, truncated or non-image bytes.
        ImageTooLargeError: more pixels, or a longer side, than ``limits`` allow.
        ImageShapeError: a shorter side or an aspect ratio ``limits`` do not allow.
    """
    if not data:
        raise ImageError(f"the upload is empty (0 bytes): send the bytes of a {FORMATS_TEXT} file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data), formats=PIL_FORMATS)
    except Exception as exc:  # PIL raises several types for unknown bytes
        other = _other_format(data)
        if other:
            raise UnsupportedImageError(f"the image is a {other} file: Kensa reads "
                                        f"{FORMATS_TEXT}; convert it to one of those") from exc
        raise ImageError(
            f"the bytes are not a readable image ({len(data)} bytes, {type(exc).__name__}): "
            f"send a {FORMATS_TEXT} file"
        ) from exc
    with im:
        _check_samples(im)
        (limits or ImageLimits(max_pixels=None)).check(*im.size)
        try:
            im.load()
            return pil_to_array(upright(im))
        except ImageError:
            raise
        except Exception as exc:
            raise ImageError(
                f"the {im.format or 'image'} data is truncated or corrupt ({exc}): "
                "send the complete file"
            ) from exc


def _other_format(data: bytes) -> str | None:
    """The name of a format PIL reads but Kensa does not (GIF, WEBP...), else None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                return im.format or None
    except Exception:  # noqa: BLE001 - not an image at all: the caller says so
        return None


# 32-bit samples: a float TIFF may hold 0-1 intensities, raw counts or a depth in millimetres,
# and nothing in the file says which. They were divided by each image's own maximum (every
# image on its own scale) or by 65535 and clipped; refusing beats guessing a verdict.
WIDE_SAMPLES = {"F": "floating-point", "I": "32-bit integer"}


def _check_samples(im: Image.Image) -> None:
    kind = WIDE_SAMPLES.get(im.mode)
    if kind and (im.mode == "F" or im.format == "TIFF"):  # old Pillows opened 16-bit PNGs as I
        raise UnsupportedImageError(
            f"the image is a {im.format or 'file'} of {kind} samples, whose value range (0-1, "
            "raw counts, millimetres...) the file does not say: convert it to 8- or 16-bit, "
            "scaled as the training images are")


EXIF_ORIENTATION = 0x0112


def upright(im: Image.Image) -> Image.Image:
    """``im`` turned as its EXIF orientation tag says (phones and some cameras store the pixels
    sideways and set the tag), so maps, masks and boxes are in the orientation every image
    viewer shows. Images without the tag, or with orientation 1, come back as they are."""
    if im.getexif().get(EXIF_ORIENTATION, 1) in (2, 3, 4, 5, 6, 7, 8):
        return ImageOps.exif_transpose(im)
    return im


def pil_to_array(im: Image.Image) -> np.ndarray:
    """Converts a loaded PIL image to ``float32 (H, W, C)`` in ``[0, 1]``."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):  # "I": a 16-bit PNG in old Pillows
        arr = np.asarray(im, dtype=np.float32) / 65535.0
    elif mode in ("1", "L"):
        arr = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    elif mode in ("LA", "La"):
        arr = np.asarray(im.getchannel(0), dtype=np.float32) / 255.0
    elif mode == "P":
        rgb = im.convert("RGB")
        arr = np.asarray(rgb, dtype=np.float32) / 255.0
        if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2]):
            arr = arr[..., 0]
    else:  # RGB, RGBA, CMYK, YCbCr, LAB, HSV...: alpha is dropped, colour kept
        arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    arr = np.clip(arr, 0.0, 1.0)
    if arr.ndim == 2:
        arr = arr[..., None]
    return np.ascontiguousarray(arr)


def image_shape(path: str | Path) -> tuple[int, int] | None:
    """``(height, width)`` of an image file as :func:`read_image` will return it (EXIF turns
    included), from its header alone; ``None`` when the header does not read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                w, h = im.size
                turned = im.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
    except Exception:  # noqa: BLE001 - read_items names the file when it fails to decode
        return None
    return (w, h) if turned else (h, w)


def read_image(path: str | Path, limits: ImageLimits | None = None) -> np.ndarray:
    """Reads one image file (see :func:`decode_image`); no limits unless given."""
    return decode_image(Path(path).read_bytes(), limits)


def read_mask(path: str | Path) -> np.ndarray:
    """Reads a ground-truth mask as ``bool (H, W)``; gray levels above 127 count as defect."""
    img = read_image(path)
    return img.max(axis=2) > (127.5 / 255.0)


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


@dataclass(frozen=True)
class Item:
    """One image of a dataset: where it is, what it is, where its mask is (if any)."""

    path: Path
    defect: str = GOOD
    mask_path: Path | None = None

    @property
    def is_good(self) -> bool:
        return self.defect == GOOD


@dataclass
class Dataset:
    """A dataset laid out as MVTec AD (``train/good``, ``test/<defect>``, ``ground_truth``)
    or a plain folder of normal images (all of it is training data)."""

    root: Path
    train: list[Item]
    test: list[Item] = field(default_factory=list)
    layout: str = "mvtec"

    def summary(self) -> dict:
        defects: dict[str, int] = {}
        for it in self.test:
            defects[it.defect] = defects.get(it.defect, 0) + 1
        return {"root": str(self.root), "layout": self.layout, "train_images": len(self.train),
                "test_images": len(self.test), "test_by_type": defects}


def open_dataset(root: str | Path) -> Dataset:
    """Lists a dataset's images without decoding them.

    Raises:
        DataError: the folder does not exist or holds no image file.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist or is not a folder")
    train_dir = root / "train" / GOOD
    if train_dir.is_dir():
        train = [Item(p) for p in list_images(train_dir)]
        test = _test_items(root)
        layout = "mvtec"
        where = train_dir
    else:
        train = [Item(p) for p in list_images(root)]
        test, layout, where = [], "folder", root
    if not train:
        raise DataError(
            f"no training image in {where}: put normal (defect-free) images there as "
            f"{', '.join(IMAGE_SUFFIXES)} files ({FORMATS_TEXT}), or use the MVTec AD layout "
            "DIR/train/good/*.png"
        )
    return Dataset(root=root, train=train, test=test, layout=layout)


def _test_items(root: Path) -> list[Item]:
    test_dir = root / "test"
    if not test_dir.is_dir():
        return []
    items = []
    for sub in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        for path in list_images(sub):
            mask = None
            if sub.name != GOOD:
                cand = [root / "ground_truth" / sub.name / f"{path.stem}_mask{ext}"
                        for ext in (".png", path.suffix)]
                mask = next((c for c in cand if c.is_file()), None)
            items.append(Item(path, sub.name, mask))
    return items


def read_items(items: list[Item], transform: Callable[[np.ndarray], np.ndarray] | None = None
               ) -> tuple[list[np.ndarray], list[Item], list[str]]:
    """Decodes a list of items, skipping (with a warning) files that do not decode.

    Args:
        transform: applied to each decoded image before the next is read (the trainer
            shrinks each to model size here, so only one full-size photograph is in memory
            at a time, not the whole training set).

    Returns:
        (images, the items that decoded, the paths skipped).
    """
    images, kept, skipped = [], [], []
    for it in items:
        try:
            im = read_image(it.path)
            images.append(transform(im) if transform else im)
            kept.append(it)
        except (ImageError, OSError) as exc:
            log.warning("skipping %s: %s", it.path, exc)
            skipped.append(str(it.path))
    return images, kept, skipped


def read_labels(path: str | Path) -> dict[str, str]:
    """Reads an operator labels file: CSV rows ``path,label`` (label ``good`` or a defect name).

    A header row ``path,label`` is allowed. Paths are kept as written and matched against
    dataset files by full path, by path relative to the dataset, or by file name.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"labels file {path} does not exist")
    labels: dict[str, str] = {}
    with path.open(newline="") as fh:
        for n, row in enumerate(csv.reader(fh), start=1):
            if not row or row[0].strip().startswith("#"):
                continue
            if n == 1 and [c.strip().lower() for c in row[:2]] == ["path", "label"]:
                continue
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise DataError(f"{path} line {n}: expected 'path,label', got {row!r}")
            labels[row[0].strip()] = row[1].strip()
    if not labels:
        raise DataError(f"labels file {path} has no 'path,label' rows")
    return labels


def split_holdout(n: int, cfg: TrainConfig,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, holdout): ``holdout_fraction`` of the images, at least ``min_holdout``,
    and never more than half."""
    k = max(cfg.min_holdout, round(cfg.holdout_fraction * n))
    k = min(k, n // 2)
    if k < 1:
        raise DataError(f"only {n} usable training image(s): at least 2 are needed, one to "
                        "learn from and one to calibrate the thresholds on")
    perm = rng.permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])
