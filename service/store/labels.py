"""Operator labels in the records store: what ``POST /v1/labels`` keeps when recording is on.

The same interface as the folder store (:class:`service.labels.LabelStore`): ``add`` and
``counts``. The image goes to the content-addressed image folder, the label to the ``labels``
table; the last label of an image wins. A labels folder of the old kind (``labels.csv`` and
``images/``, KENSA_LABELS_DIR) is imported once (:meth:`StoreLabels.import_folder`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from models.data import GOOD, LABELS_FILE, read_labels

from ..labels import Stored
from .images import ImageFolder, content_type, sha256
from .tables import label_imports, labels, utcnow

log = logging.getLogger("kensa.store")


class StoreLabels:
    def __init__(self, engine: Engine, images: ImageFolder) -> None:
        self.engine, self.images = engine, images
        self.csv = engine.url.render_as_string(hide_password=True)  # where labels_file points

    def add(self, data: bytes, label: str, origin: str = "api") -> Stored:
        """Stores an (already decoded) upload under ``label`` (``good`` or a defect name)."""
        if label.lower() == GOOD:
            label = GOOD
        digest = sha256(data)
        new = self.images.get(digest) is None
        self.images.put(data, digest)
        with self.engine.begin() as conn:
            conn.execute(labels.insert().values(
                sha256=digest, label=label, image_type=content_type(data),
                image_bytes=len(data), origin=origin, created_at=utcnow()))
        return Stored(self._rel(digest), label, digest, new)

    def _rel(self, digest: str) -> str:
        return str(self.images.path(digest).relative_to(self.images.root.parent))

    def latest(self) -> dict[str, str]:
        """``{sha256: label}``, the last label of every labeled image."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(labels.c.sha256, labels.c.label).order_by(labels.c.id))
            return {digest: label for digest, label in rows}

    def counts(self) -> dict[str, int]:
        """Labeled images per label (the last label of each image), ``good`` first."""
        out: dict[str, int] = {}
        for label in self.latest().values():
            out[label] = out.get(label, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: (kv[0] != GOOD, kv[0])))

    def import_folder(self, folder: str | Path) -> int | None:
        """Imports a labels folder (its ``labels.csv`` rows and their images) once; None when
        it was imported before or holds no labels.csv. Returns the rows imported."""
        folder = Path(folder).resolve()
        csv = folder / LABELS_FILE
        if not csv.is_file() or csv.read_text().strip().lower() in ("", "path,label"):
            return None
        with self.engine.connect() as conn:
            if conn.execute(select(label_imports.c.folder).where(
                    label_imports.c.folder == str(folder))).first() is not None:
                return None
        n = 0
        for rel, label in read_labels(csv).items():
            path = Path(rel) if Path(rel).is_absolute() else folder / rel
            try:
                self.add(path.read_bytes(), label, origin=str(csv))
                n += 1
            except OSError as exc:
                log.warning("labels import: skipping %s: %s", path, exc)
        try:
            with self.engine.begin() as conn:
                conn.execute(label_imports.insert().values(folder=str(folder), rows=n,
                                                           imported_at=utcnow()))
        except IntegrityError:  # another server imported it at the same moment
            return None
        log.info("imported %d label(s) from %s", n, csv)
        return n
