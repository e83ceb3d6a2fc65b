"""Uploaded files: content type, bounded read, memory estimate, decoding.

Every upload is bounded twice: :class:`service.middleware.BodyLimitMiddleware` refuses a
request body over its endpoint's cap while it streams in (before FastAPI spools it), and
:func:`read_upload` refuses a single file over ``KENSA_MAX_UPLOAD_MB``. The bytes then go
through :func:`models.data.decode_image`, the one decoder that training and ``kensa eval`` use
too, so the server sees exactly the array that evaluation sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

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
    check_upload(file, max_bytes)
    parts, total = [], 0
    while part := await file.read(min(CHUNK, max_bytes + 1 - total) or 1):
        total += len(part)
        if total > max_bytes:
            raise FileTooLarge(too_large_detail(None, max_bytes, file.filename))
        parts.append(part)
    return b"".join(parts)


def check_upload(file: UploadFile, max_bytes: int) -> None:
    """What :func:`read_upload` can refuse before reading: the content type, the size.

    Raises:
        UnsupportedMediaType: the part's content type is not an image type.
        FileTooLarge: the file has more than ``max_bytes`` bytes (413).
    """
    check_content_type(file.content_type, file.filename)
    if file.size is not None and file.size > max_bytes:
        raise FileTooLarge(too_large_detail(file.size, max_bytes, file.filename))


def too_large_detail(size: int | None, max_bytes: int, filename: str | None = None) -> str:
    name = f"'{filename}' " if filename else ""
    was = f"is {human_size(size)}" if size is not None else "is larger"
    return (f"the upload {name}{was}, over the limit of {human_size(max_bytes)}: compress or "
            "resize the image, or raise KENSA_MAX_UPLOAD_MB")


def human_size(n: int) -> str:
    return f"{n / MB:.1f} MiB" if n >= MB else f"{n:,} bytes"


# Bytes per pixel while an image is served, measured with /proc's peak RSS on a 3000 x 3000
# upload (benchmarks/HISTORY.md, "Memory, limits and soak"): the decoded float32 image, its
# anomaly map, mask and regions; then the one picture being encoded at a time adds its own.
BYTES_PER_PIXEL = {1: 24, 3: 32}
PICTURE_BYTES_PER_PIXEL = {"mask": 0, "heatmap": 16, "reconstruction": 24, "overlay": 72}
OVERLAY = frozenset({"overlay"})


@dataclass(frozen=True)
class Footprint:
    """What one upload will cost while it is served, from its header alone."""

    pixels: int  # 0 when the header does not parse or the decoder will refuse the image
    nbytes: int


def footprint(stream: BinaryIO, size: int, include: frozenset[str] = frozenset(),
              limits: ImageLimits | None = None) -> Footprint:
    """Estimates one upload's memory (its ``size`` bytes, plus ``BYTES_PER_PIXEL`` and the
    costliest picture in ``include`` per pixel) from the header in ``stream`` (an upload's
    spooled file, rewound after), before a byte of it is read into memory or decoded. An
    image the decoder will refuse (no image, outside ``limits``) costs only its bytes, so
    the decoder's own message reaches the client. Blocking: call it off the event loop."""
    try:
        with Image.open(stream) as im:
            w, h = im.size
            channels = 1 if im.mode in ("1", "L", "I", "I;16", "F", "P") else 3
        if limits is not None:
            limits.check(w, h)
    except Exception:  # noqa: BLE001 - the decoder reports what is wrong
        return Footprint(0, size)
    finally:
        stream.seek(0)
    pixels = w * h
    picture = max((PICTURE_BYTES_PER_PIXEL.get(p, 0) for p in include), default=0)
    return Footprint(pixels, size + pixels * (BYTES_PER_PIXEL[channels] + picture))


def chunks(prints: list[Footprint], max_images: int, max_bytes: int) -> list[list[int]]:
    """Indices of a batch's uploads in upload order, cut into runs of at most ``max_images``
    whose bytes fit ``max_bytes`` together. An upload over ``max_bytes`` alone gets a run of
    its own (the gate refuses it)."""
    runs: list[list[int]] = []
    run: list[int] = []
    held = 0
    for n, fp in enumerate(prints):
        if run and (len(run) >= max_images or held + fp.nbytes > max_bytes):
            runs.append(run)
            run, held = [], 0
        run.append(n)
        held += fp.nbytes
    if run:
        runs.append(run)
    return runs


def decode(data: bytes, limits: ImageLimits) -> np.ndarray:
    """Bytes to Kensa's image form ``float32 (H, W, C)``; see :func:`decode_image`."""
    return decode_image(data, limits)
