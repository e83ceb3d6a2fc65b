"""Operator labels in training: the labels file, its rows matched to image files, and the
labeled images handed to calibration and label spreading.

Labels reach the trainer as data (``--labels``: a CSV, or the folder ``kensa serve`` keeps);
:func:`models.data.read_labels` reads the file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .config import ModelConfig
from .data import GOOD, LABELS_FILE, Dataset, Item, read_items
from .errors import DataError
from .inference import Inspector
from .preprocess import prepare_for

log = logging.getLogger(__name__)

LabelRows = list[tuple[Item, str]]


def labels_file(path: str | Path | None) -> Path | None:
    """``--labels``: a CSV file, or a folder holding ``labels.csv`` (what ``kensa serve`` keeps
    in ``KENSA_LABELS_DIR``). A folder without one yet means no labels (logged), so a trainer
    can always be pointed at the labels folder, before any operator has labeled anything."""
    if path is None:
        return None
    path = Path(path)
    if not path.is_dir():
        return path  # read_labels names it if it does not exist
    if (path / LABELS_FILE).is_file():
        return path / LABELS_FILE
    log.warning("no %s in %s yet: training without operator labels", LABELS_FILE, path)
    return None


def match_labels(labels: dict[str, str], ds: Dataset, base: Path | None = None) -> LabelRows:
    """Pairs label rows with image files: a dataset file by full path or path relative to the
    dataset root; else any existing file, by full path or by path relative to ``base`` (the
    labels file's folder: where ``kensa serve`` stores the images operators label through
    ``POST /v1/labels``) or to the working directory; else a dataset file by its bare name
    when that is unique. (A row naming an existing file outside the dataset is that file, even
    when a dataset file shares its name.)"""
    return [(it, label) for _key, it, label in match_label_keys(labels, ds, base)]


def match_label_keys(labels: dict[str, str], ds: Dataset, base: Path | None = None
                     ) -> list[tuple[str, Item, str]]:
    """:func:`match_labels`, each row with the key it was labeled under."""
    every = ds.train + ds.test
    by_full = {str(it.path.resolve()): it for it in every}
    by_rel = {str(it.path.relative_to(ds.root)): it for it in every}
    names: dict[str, list[Item]] = {}
    for it in every:
        names.setdefault(it.path.name, []).append(it)
    out, missing = [], []
    for key, label in labels.items():
        it = by_rel.get(key) or by_full.get(str(Path(key).resolve()))
        if it is None:  # a file outside the dataset, when the row names one that exists
            found = [p for p in ([base / key] if base else []) + [Path(key)] if p.is_file()]
            it = by_full.get(str(found[0].resolve()), Item(found[0], label)) if found else None
        if it is None and len(names.get(Path(key).name, [])) == 1:
            it = names[Path(key).name][0]
        if it is None:
            missing.append(key)
        else:
            out.append((key, it, label))
    if missing:
        log.warning("%d labeled path(s) not found, ignored: %s", len(missing), missing[:5])
    return out


def split_rows(rows: LabelRows, train_items: list[Item]) -> tuple[LabelRows, LabelRows]:
    """``(good rows, defect rows)``: operator-confirmed normals that are not training images
    already (false alarms labeled ``good``) train with the normals, so the retrained model
    learns they are normal; labeled defects are what calibration and label spreading see."""
    known = {str(it.path.resolve()) for it in train_items}
    good = [(it, label) for it, label in rows
            if label == GOOD and str(it.path.resolve()) not in known]
    return good, [(it, label) for it, label in rows if label != GOOD]


def labeled_images(rows: LabelRows, cfg: ModelConfig) -> list[np.ndarray]:
    """The labeled files, prepared as the training images are.

    Raises:
        DataError: a labeled file that does not decode as an image.
    """
    if not rows:
        return []
    images, _kept, skipped = read_items([it for it, _ in rows], lambda im: prepare_for(im, cfg))
    if skipped:
        raise DataError(f"labeled file(s) do not decode as images: {skipped[:5]}")
    return images


def spread_labels(insp: Inspector, train_mu: np.ndarray, rows: LabelRows,
                  images: list[np.ndarray], ds: Dataset, labeled_paths: set[str],
                  method: str = "spread") -> None:
    """Spreads the labels over a graph of latent points: training normals (known good,
    operator-confirmed ones included; ``train_mu`` their latent means), operator-labeled
    defects ``rows`` (``images``: prepared), and the dataset's test images that nobody
    labeled (``labeled_paths`` are left out: production images nobody labeled). Only the VAE
    runs here, on the images not seen yet. ``method``: ``spread``, or ``classifier`` (a
    nearest-centre classifier instead, :meth:`models.latent.LatentClassifier.spread`)."""
    unlabeled, _, _ = read_items([it for it in ds.test if str(it.path) not in labeled_paths],
                                 lambda im: prepare_for(im, insp.cfg))
    mus = [train_mu, insp.latent_means(images, prepared=True),
           insp.latent_means(unlabeled, prepared=True)]
    names = [GOOD] * len(train_mu) + [label for _, label in rows] + [None] * len(unlabeled)
    insp.latent.spread(np.concatenate(mus), names, method)
