"""What the golden fixture pins: the Inspector's results and the server's answers for a few
fixed uploads (shared by ``tests/test_golden.py`` and ``tests/fixtures/make_golden.py``)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from models.synth_demo import render_washer

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "golden"
# (seed, defect, size): normal and defective parts, one larger than the bundle's images
CASES = [(1, None, 48), (2, "scratch", 48), (3, "dent", 48), (4, "stain", 64), (5, None, 40)]
# fields of an HTTP answer that differ on every call
VOLATILE = {"id", "elapsed_ms"}


def case_png(seed: int, defect: str | None, size: int) -> bytes:
    image, _ = render_washer(size, np.random.default_rng(seed), defect)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _digest_png(b64: str) -> dict:
    import base64

    arr = np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))
    return {"shape": list(arr.shape), "sum": int(arr.astype(np.int64).sum())}


def http_answers(client) -> list[dict]:
    out = []
    for seed, defect, size in CASES:
        files = {"file": ("part.png", case_png(seed, defect, size), "image/png")}
        r = client.post("/v1/inspect?include=mask,heatmap", files=files)
        body = r.json()
        body = {k: v for k, v in body.items() if k not in VOLATILE}
        body["mask"] = _digest_png(body["mask"])
        body["heatmap"] = _digest_png(body["heatmap"])
        out.append({"status": r.status_code, "body": body})
    info = client.get("/v1/model").json()
    return out + [{"model": info}]


def inspector_results(bundle: Path) -> list[dict]:
    from models.data import decode_image
    from models.inference import Inspector

    insp = Inspector.load(bundle, device="cpu")
    images = [decode_image(case_png(*c)) for c in CASES]
    out = []
    for r in insp.inspect(images):
        amap = r.anomaly_map.astype(np.float64)
        out.append({
            "label": r.label, "score": r.score, "threshold": r.threshold,
            "pixel_threshold": r.pixel_threshold, "width": r.width, "height": r.height,
            "reconstruction": vars(r.reconstruction), "latent": vars(r.latent),
            "map_sum": float(amap.sum()), "map_max": float(amap.max()),
            "map_rows": [float(v) for v in amap.mean(axis=1)],
            "mask_pixels": int(r.mask.sum()),
            "regions": [vars(g) for g in r.regions],
        })
    return out


def answers(bundle: Path) -> dict:
    from service.app import create_app
    from service.config import Settings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    # recording changes no answer; off, so the golden run leaves no records folder behind
    with TestClient(create_app(Settings(model=bundle, device="cpu", records=False))) as client:
        http = http_answers(client)
    return {"inspector": inspector_results(bundle), "http": http}
