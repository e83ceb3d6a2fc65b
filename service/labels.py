"""Operator labels: images an operator has judged, kept where ``kensa train --labels`` reads them.

An operator who sees a flagged part in Swagger UI (or a line's HMI) says what it really is:
``good`` (a false alarm) or a defect name. ``POST /v1/labels`` stores the upload, byte for
byte, in ``KENSA_LABELS_DIR/images/`` under its SHA-256 and appends ``images/<file>,<label>``
to ``KENSA_LABELS_DIR/labels.csv``; the next ``kensa train --labels KENSA_LABELS_DIR`` uses them
(images labeled ``good`` join the training normals; defect labels go to label spreading in the
latent space, the fusion weight and ``--threshold-rule f1``).

Nothing is ever overwritten or lost: an image file is written to a temporary name, flushed and
renamed into place; a row is appended and flushed to disk before the answer goes out. Labeling
the same image again appends a new row, and the last row wins (as :func:`read_labels` reads it).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from models.data import GOOD, LABELS_FILE, read_labels

IMAGES = "images"
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "MPO": ".jpg", "BMP": ".bmp", "TIFF": ".tif"}


@dataclass(frozen=True)
class Stored:
    """One stored label: the image's path relative to the labels folder, its label, its
    SHA-256, and whether the image file was new (False: the same bytes were labeled before)."""

    path: str
    label: str
    sha256: str
    new_image: bool


class LabelStore:
    """The labels folder. Safe to share between threads of one process (one lock around
    every write); one server process per folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.csv = self.folder / LABELS_FILE
        self._lock = threading.Lock()

    def check(self) -> None:
        """Creates the folder if needed and proves it writable (at start-up, so a read-only
        mount fails the server at once, not the first operator's label).

        Raises:
            OSError: the folder cannot be created or written.
        """
        (self.folder / IMAGES).mkdir(parents=True, exist_ok=True)
        probe = self.folder / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()

    def add(self, data: bytes, label: str) -> Stored:
        """Stores ``data`` (an already-decoded upload's bytes) under ``label``."""
        if not re.match(LABEL_PATTERN, label):
            raise ValueError(f"bad label {label!r}")  # the route validates first
        if label.lower() == GOOD:  # "Good" must not become a defect class of its own
            label = GOOD
        digest = hashlib.sha256(data).hexdigest()
        rel = f"{IMAGES}/{digest[:32]}{_suffix(data)}"
        with self._lock:
            target = self.folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            new = not target.exists()
            if new:
                tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            header = not self.csv.exists() or self.csv.stat().st_size == 0
            with open(self.csv, "a", newline="") as fh:
                writer = csv.writer(fh)
                if header:
                    writer.writerow(["path", "label"])
                writer.writerow([rel, label])
                fh.flush()
                os.fsync(fh.fileno())
        return Stored(rel, label, digest, new)

    def counts(self) -> dict[str, int]:
        """Labeled images per label (the last label of each image), ``good`` included."""
        with self._lock:
            if not self.csv.exists() or self.csv.read_text().strip().lower() in ("", "path,label"):
                return {}
            labels = read_labels(self.csv)
        out: dict[str, int] = {}
        for lab in labels.values():
            out[lab] = out.get(lab, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: (kv[0] != GOOD, kv[0])))


def _suffix(data: bytes) -> str:
    """The file suffix of the image format (the bytes decoded already, so PIL can tell)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format or ""
    except Exception:  # noqa: BLE001 - decoded moments ago; a name is all that is at stake
        fmt = ""
    return SUFFIXES.get(fmt, f".{fmt.lower()}" if fmt.isalnum() else ".img")
