"""``kensa generate``: generated defects of one type pasted onto held-out normal images,
written as an MVTec-layout data set that ``kensa eval`` reads::

    OUT/train/good/NNN.png               the held-out normals used (so OUT opens as a data set)
    OUT/test/good/NNN.png                the same normals, untouched
    OUT/test/TYPE/NNN.png                normal NNN with a generated defect of TYPE
    OUT/ground_truth/TYPE/NNN_mask.png   where it is (255)

The normals are the training folder's held-out images of the bundle's own split (its seed and
holdout share), which the networks never trained on; a folder that is not the bundle's
training set is used whole.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from .bundle import load_generator, read_info
from .config import ModelConfig, TrainConfig
from .data import Item, open_dataset, read_items, split_holdout
from .errors import DataError
from .generator import paste, sample
from .preprocess import model_shape

PNG = [cv2.IMWRITE_PNG_COMPRESSION, 3]


def held_out_normals(info: dict, data: str | Path) -> list[Item]:
    """The normal images to paste onto: the bundle's held-out split of ``data`` when ``data``
    has as many training images as the bundle trained on, else all of them."""
    ds = open_dataset(data)
    summary = info.get("data", {})
    if len(ds.train) != summary.get("train_images"):
        return ds.train
    fields = TrainConfig.__dataclass_fields__
    tcfg = TrainConfig(**{k: v for k, v in info.get("train_config", {}).items() if k in fields})
    _, hold = split_holdout(len(ds.train), tcfg, np.random.default_rng(tcfg.seed))
    return [ds.train[i] for i in hold]


def write_png(path: Path, image: np.ndarray) -> None:
    """A ``[0, 1]`` image ``(H, W, C)`` (RGB or gray) or mask ``(H, W)`` as an 8-bit PNG."""
    arr = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[..., ::-1]  # OpenCV writes BGR
    elif arr.ndim == 3:
        arr = arr[..., 0]
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(arr), PNG):
        raise OSError(f"could not write {path}")


def generate_dataset(bundle: str | Path, data: str | Path, label: str, n: int,
                     out: str | Path, seed: int = 0, key: bytes | None = None) -> dict:
    """Writes ``n`` images with a generated ``label`` defect (module docstring) -> a summary.

    Raises:
        BundleError: the bundle does not verify or ships no generator.
        DataError: an unknown type, ``n < 1``, or no normal image that decodes.
    """
    gen = load_generator(bundle, key)
    info = read_info(bundle, key)
    if label not in gen.cfg.types:
        raise DataError(f"the generator of {bundle} knows the types {list(gen.cfg.types)}, not "
                        f"{label!r}: train it with labeled defects of that type")
    if n < 1:
        raise DataError(f"--n must be at least 1, got {n}")
    cfg = ModelConfig.from_dict(info["model_config"])
    normals, items, _ = read_items(held_out_normals(info, data))
    if not normals:
        raise DataError(f"no normal image in {data} decodes")
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    patches, alphas, sizes = sample(gen, label, n, seed)
    rng = np.random.default_rng(seed)
    for i in range(n):
        k = i % len(normals)
        image = normals[k]
        (H, W), (h, w) = image.shape[:2], model_shape(*image.shape[:2], cfg)
        size = (sizes[i][0] * H / h, sizes[i][1] * W / w)  # model pixels -> image pixels
        made, mask = paste(rng, image, patches[i], alphas[i], size)
        write_png(out / "test" / label / f"{i:03d}.png", made)
        write_png(out / "ground_truth" / label / f"{i:03d}_mask.png", mask)
    for k, image in enumerate(normals[:n]):
        for split in ("train", "test"):
            write_png(out / split / "good" / f"{k:03d}.png", image)
    summary = {"bundle": str(bundle), "version": info.get("version"), "type": label, "n": n,
               "seed": seed, "normals": [str(it.path) for it in items[:n]],
               "generator": info["generator"]["config"]["types"]}
    (out / "generated.json").write_text(json.dumps(summary, indent=2))
    return summary
