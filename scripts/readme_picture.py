"""Makes docs/overlay.jpg for README.md: real overlays of defects the demo model found.

Usage: python scripts/readme_picture.py [--model bundles/demo] [--data data/demo]
       [--out docs/overlay.jpg]

For each demo defect type it takes the test image the model scored highest (so the picture
shows what the model found, not a hand-picked frame) and puts the upload, the model's cleaned
reconstruction and the overlay (heatmap + red defect contours) side by side.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from models.data import open_dataset, read_image
from models.inference import Inspector
from service.pictures import overlay_image, to_bgr8


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=Path("bundles/demo"))
    p.add_argument("--data", type=Path, default=Path("data/demo"))
    p.add_argument("--out", type=Path, default=Path("docs/overlay.jpg"))
    a = p.parse_args()
    insp = Inspector.load(a.model, "cpu")
    ds = open_dataset(a.data)
    rows = []
    for defect in sorted({it.defect for it in ds.test} - {"good"}):
        items = [it for it in ds.test if it.defect == defect]
        images = [read_image(it.path) for it in items]
        results = insp.inspect(images, with_reconstruction=True)
        best = int(np.argmax([r.score for r in results]))
        img, res = images[best], results[best]
        tiles = [to_bgr8(img), to_bgr8(res.reconstruction_image),
                 overlay_image(img, res.anomaly_map, res.pixel_threshold, res.mask)]
        row = np.hstack([cv2.resize(t, (256, 256)) for t in tiles])
        cv2.putText(row, f"{defect}: {res.label} (score {res.score:.2f}, threshold "
                         f"{res.threshold:.2f})", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (255, 255, 255), 1, cv2.LINE_AA)
        rows.append(row)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(a.out), np.vstack(rows), [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"wrote {a.out}: upload | reconstruction | overlay, one row per defect type")


if __name__ == "__main__":
    main()
