"""Operator labels and reviewed records as training labels: what ``kensa train --labels
<data folder | database URL>`` hands the trainer (as a plain ``{image path: label}`` dict, so ``models/`` never sees
the database)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from .database import SQLITE_FILE, database_url, make_engine
from .images import ImageFolder
from .tables import inspections, labels

IMAGES = "images"


def is_store(value: str | Path) -> bool:
    """Whether ``--labels`` names the store: a database URL, or a data folder (KENSA_DATA_DIR)
    holding the SQLite file."""
    text = str(value)
    return "://" in text or (Path(text).is_dir() and (Path(text) / SQLITE_FILE).is_file())


def reviewed_labels(value: str | Path, data_dir: str | Path) -> dict[str, str]:
    """``{kept image path: label}`` of every operator label (``POST /v1/labels``) and every
    reviewed record whose image is kept; the latest word on an image wins.

    Args:
        value: a database URL, or the data folder holding ``kensa.db``.
        data_dir: where the kept images are (the data folder itself when ``value`` is one).
    """
    return {path: label for path, (label, _regions, _ident) in _latest(value, data_dir).items()}


def reviewed_regions(value: str | Path, data_dir: str | Path) -> dict[str, tuple[str, list]]:
    """``{kept image path: (the record's id, its review's regions [[x, y, w, h], ...])}`` of
    the images whose latest word is a review that drew regions (the trainer checks them
    against the image and names the record when one does not fit)."""
    return {path: (ident, regions) for path, (_label, regions, ident)
            in _latest(value, data_dir).items() if regions}


def _latest(value: str | Path, data_dir: str | Path) -> dict[str, tuple[str, list | None, str]]:
    """``{kept image path: (label, regions or None, where it was said)}``: the latest word on
    each kept image that exists."""
    text = str(value)
    if "://" not in text:
        data_dir = text
    images = ImageFolder(Path(data_dir) / IMAGES)
    engine = make_engine(database_url(Path(data_dir), text if "://" in text else None))
    c = inspections.c
    try:
        with engine.connect() as conn:
            said = [(when, digest, label, regions, f"inspection record {ident}")
                    for when, digest, label, regions, ident in conn.execute(
                        select(c.reviewed_at, c.sha256, c.review_label, c.review_regions, c.id)
                        .where(c.reviewed_at.is_not(None), c.image_kept.is_(True)))]
            said += [(when, digest, label, None, f"label {ident}")
                     for when, digest, label, ident in conn.execute(
                         select(labels.c.created_at, labels.c.sha256, labels.c.label,
                                labels.c.id))]
    finally:
        engine.dispose()
    out = {str(images.path(digest).resolve()): (label, regions, where)
           for _when, digest, label, regions, where in sorted(said, key=lambda r: r[0])}
    return {path: v for path, v in out.items() if Path(path).is_file()}
