"""What the speed benchmarks send: rendered demo washers as JPEG, the way a line camera does."""

from __future__ import annotations

import cv2
import numpy as np

UPLOADS = 16  # distinct rendered parts per size, cycled
JPEG_QUALITY = 90


def rendered_uploads(size: int, n: int = UPLOADS) -> list[bytes]:
    """``n`` rendered demo washers at ``size`` x ``size``, every fourth with a defect, as JPEG
    quality 90 (what a line camera sends)."""
    from models.synth_demo import DEFECT_KINDS, render_washer

    rng = np.random.default_rng(1234 + size)
    out = []
    for i in range(n):
        defect = DEFECT_KINDS[(i // 4) % len(DEFECT_KINDS)] if i % 4 == 3 else None
        rgb, _ = render_washer(size, rng, defect)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        assert ok
        out.append(buf.tobytes())
    return out


def decoded(jpegs: list[bytes]) -> list[np.ndarray]:
    """The uploads as the server sees them: :func:`models.data.decode_image` of each."""
    from models.data import decode_image

    return [decode_image(j) for j in jpegs]
