"""Uploaded files: content type, bounded read, memory estimate, decoding.

Every upload is bounded twice: :class:`service.middleware.BodyLimitMiddleware` refuses a
request body over its endpoint's cap while it streams in (before FastAPI spools it), and
:func:`read_upload` refuses a single file over ``KENSA_MAX_UPLOAD_MB``. The bytes then go
through :func:`models.data.decode_image`, the one decoder that training and ``kensa eval`` use
too, so the server sees exactly the array that evaluation sees.
"""

from __future__ import annotations

import io

import numpy as np
from fastapi import UploadFile
from PIL import Image

from models.data import ImageLimits, decode_image

from .config import MB
from .errors import FileTooLarge, UnsupportedMediaType

CHUNK = 1 * MB
OCTET_TYPES = ("application/octet-stream", "binary/octet-stream")


def check_content_type(content_type: str | None, filename: str | None = None) -> None:
    """Refuses a part whose declared type is not an image.

    ``image/*``, ``application/octet-stream`` and a missing type are accepted; their bytes
    are judged by the decoder (a 400 if they are no image). Anything else (``text/plain``,
    ``application/json``, ...) was declared as something else by the client: 415.
    """
    kind = (content_type or "").split(";")[0].strip().lower()
    if not kind or kind.startswith("image/") or kind in OCTET_TYPES:
        return
    name = f" of '{filename}'" if filename else ""
    raise UnsupportedMediaType(
        f"the upload{name} has content type {kind}, not an image: send a PNG, JPEG, BMP or "
        "TIFF file as image/* (or application/octet-stream)")


async def read_upload(file: UploadFile, max_bytes: int) -> bytes:
    """Reads one uploaded file, at most ``max_bytes`` of it.

    Raises:
        UnsupportedMediaType: the part's content type is not an image type.
        FileTooLarge: the file has more than ``max_bytes`` bytes (413).
    """
    check_content_type(file.content_type, file.filename)
    if file.size is not None and file.size > max_bytes:
        raise FileTooLarge(too_large_detail(file.size, max_bytes, file.filename))
    chunks, total = [], 0
    while chunk := await file.read(min(CHUNK, max_bytes + 1 - total) or 1):
        total += len(chunk)
        if total > max_bytes:
            raise FileTooLarge(too_large_detail(None, max_bytes, file.filename))
        chunks.append(chunk)
    return b"".join(chunks)


def too_large_detail(size: int | None, max_bytes: int, filename: str | None = None) -> str:
    name = f"'{filename}' " if filename else ""
    was = f"is {human_size(size)}" if size is not None else "is larger"
    return (f"the upload {name}{was}, over the limit of {human_size(max_bytes)}: compress or "
            "resize the image, or raise KENSA_MAX_UPLOAD_MB")


def human_size(n: int) -> str:
    return f"{n / MB:.1f} MiB" if n >= MB else f"{n:,} bytes"


def inflight_bytes(data: bytes) -> int:
    """Memory one upload will take while it is served, estimated from its header alone:
    the decoded ``float32`` image (4 bytes per channel), its anomaly map (4), mask and
    encoded pictures (about 16 more) per pixel. 0 when the header does not parse (the decoder
    then refuses the bytes with a 400)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            channels = 1 if im.mode in ("1", "L", "I", "I;16", "F", "P") else 3
    except Exception:  # noqa: BLE001 - the decoder reports what is wrong
        return 0
    return w * h * (4 * channels + 20)


def decode(data: bytes, limits: ImageLimits) -> np.ndarray:
    """Bytes to Kensa's image form ``float32 (H, W, C)``; see :func:`decode_image`."""
    return decode_image(data, limits)
