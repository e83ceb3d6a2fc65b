"""The pictures of issue 32's GANs for docs/gans.md, made from bundles that
``python -m benchmarks.gan`` trained (its ``--work-dir``):

- ``docs/gan-reconstruction.png``: a defective test image, what today's model gives back
  (``include=reconstruction``), and what the ``--adversarial`` model gives back;
- ``docs/gan-generated.png``: generated defects of one type pasted onto held-out normals
  (``kensa generate``), each cropped around its mask, above the same crops' masks.

    python -m benchmarks.gan_pictures --runs /tmp/kensa-gan/kensa-demo/seed0 \\
        --image DIR/test/scratch/003.png --type scratch --data DIR
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

from models.data import open_dataset, read_image, read_mask
from models.generate import generate_dataset
from models.inference import Inspector

SIDE = 72  # pixels per tile of a strip
COLOURS = 32


def tile(image: np.ndarray) -> np.ndarray:
    """An image ``(H, W, C)`` in ``[0, 1]`` as an 8-bit RGB ``SIDE`` square."""
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return (np.clip(cv2.resize(image, (SIDE, SIDE), interpolation=cv2.INTER_AREA), 0, 1)
            * 255).astype(np.uint8)


def write(path: Path, rows: list[list[np.ndarray]]) -> None:
    """The tiles as a grid, a 32-colour PNG (a few KB: it lives in the repository)."""
    from PIL import Image

    strip = np.vstack([np.hstack([tile(t) for t in row]) for row in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip).quantize(COLOURS).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KB)")


def reconstructions(runs: Path, image_path: Path, out: Path) -> None:
    image = read_image(image_path)
    row = [image]
    for variant in ("base", "adversarial"):
        insp = Inspector.load(runs / variant, "cpu")
        row.append(insp.inspect([image], with_reconstruction=True)[0].reconstruction_image)
    write(out, [row])


def generated(bundle: Path, data: Path, kind: str, out: Path, n: int = 6) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        generate_dataset(bundle, data, kind, n, Path(tmp) / "made", seed=0)
        images, masks = [], []
        for it in [it for it in open_dataset(Path(tmp) / "made").test if it.defect == kind]:
            image, mask = read_image(it.path), read_mask(it.mask_path)
            ys, xs = np.nonzero(mask) if mask.any() else (np.array([0]), np.array([0]))
            half = max(16, int(max(np.ptp(ys), np.ptp(xs))))
            cy, cx = int(ys.mean()), int(xs.mean())
            y0, x0 = max(0, cy - half), max(0, cx - half)
            images.append(image[y0:cy + half, x0:cx + half])
            masks.append(mask[y0:cy + half, x0:cx + half].astype(np.float32))
    write(out, [images, masks])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gan_pictures",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=Path, required=True, help="one seed's folder of bundles")
    p.add_argument("--image", type=Path, required=True, help="a defective test image")
    p.add_argument("--data", type=Path, required=True, help="the data set the runs trained on")
    p.add_argument("--type", required=True, help="defect type to generate")
    p.add_argument("--learned", default="learned-k5", help="the bundle with the generator")
    p.add_argument("--out", type=Path, default=Path("docs"))
    args = p.parse_args(argv)
    reconstructions(args.runs, args.image, args.out / "gan-reconstruction.png")
    generated(args.runs / args.learned, args.data, args.type, args.out / "gan-generated.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
