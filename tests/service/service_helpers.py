"""Upload factories for the service tests (imported by the test modules)."""

from __future__ import annotations

import io
import time
import warnings

import numpy as np
from PIL import Image
from starlette.exceptions import StarletteDeprecationWarning

from models.data import decode_image
from models.synth_demo import render_washer

with warnings.catch_warnings():
    # Starlette asks for the httpx2 package; httpx (a declared test dependency) still works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient  # noqa: F401  (re-exported for the tests)


def png(arr: np.ndarray) -> bytes:
    """PNG bytes of a ``uint8``/``uint16`` array ``(H, W)`` or ``(H, W, C)``."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def washer(seed: int = 1, defect: str | None = None, size: int = 48) -> np.ndarray:
    """A rendered demo part, ``uint8 (S, S, 3)`` RGB."""
    image, _ = render_washer(size, np.random.default_rng(seed), defect)
    return image


def washer_png(seed: int = 1, defect: str | None = None, size: int = 48) -> bytes:
    return png(washer(seed, defect, size))


def upload(data: bytes, name: str = "part.png", kind: str = "image/png") -> dict:
    return {"file": (name, data, kind)}


def decoded(data: bytes) -> np.ndarray:
    """The array the server must see for these bytes (the one decoder)."""
    return decode_image(data)


def drawn_ahead(client) -> None:
    """Waits (up to 20 s) until the app has no overlay being drawn (drawn ahead or asked)."""
    deadline = time.monotonic() + 20
    while client.app.state.overlays.drawing and time.monotonic() < deadline:
        time.sleep(0.05)
