"""Kept images: ``KENSA_DATA_DIR/images/<sha[:2]>/<sha256>``, named by their content, so the
same bytes are stored once however often they are inspected."""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

from PIL import Image

CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "BMP": "image/bmp",
                 "TIFF": "image/tiff"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_type(data: bytes) -> str:
    """The image type of bytes that already decoded (reads the header only)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return CONTENT_TYPES.get(im.format or "", "application/octet-stream")
    except Exception:  # noqa: BLE001 - decoded moments ago; only the header is at stake
        return "application/octet-stream"


class ImageFolder:
    """The content-addressed image folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def put(self, data: bytes, digest: str) -> None:
        """Stores ``data`` once (temporary name, then rename: never a torn file); refreshes the
        time of a file already there, so a prune pass that is deciding about it keeps it.

        Not fsynced, like the SQLite database (``synchronous=NORMAL``): a killed process loses
        nothing, a power cut may lose the last images; an fsync per kept image put the disk's
        flush time into the answer's latency (``python -m benchmarks.records_overhead``)."""
        target = self.path(digest)
        if target.exists():
            os.utime(target)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{digest}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)

    def get(self, digest: str) -> bytes | None:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            return None

    def delete_unused(self, in_use: set[str], older_than_s: float = 60.0) -> int:
        """Deletes stored images whose digest is not in ``in_use`` (and that were not touched
        in the last ``older_than_s``, which protects an image being kept right now)."""
        if not self.root.is_dir():
            return 0
        now, gone = time.time(), 0
        for sub in self.root.iterdir():
            if not sub.is_dir():
                continue
            for f in sub.iterdir():
                if f.name.startswith(".") or f.name in in_use:
                    continue
                try:
                    if now - f.stat().st_mtime >= older_than_s:
                        f.unlink()
                        gone += 1
                except FileNotFoundError:
                    pass
        return gone
