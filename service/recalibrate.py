"""``kensa recalibrate``: a new bundle with the same weights and its image threshold set again
from the held-out normals plus the records operators reviewed (:mod:`models.recalibrate`).

A reviewed record's score counts as it was stored when the record was judged by this very
bundle version (same weights, same thresholds: the same score, and no forward pass). A record
judged by another version is scored again from its kept image; one without a kept image is
skipped and counted, never guessed.

With a models root, ``--model MODELS_DIR/<part>`` means the part's active version, and the
reviewed records are the part's (the records' ``model`` column), whichever version judged them.
``--out MODELS_DIR/<part>`` (the default when ``--model`` is a part) writes a new version of
the part the way ``kensa train`` does (:func:`service.registry.publish`); it is not activated:
it goes through ``kensa models activate`` (or a challenger first) like any version, unless the
servers run with KENSA_AUTO_ACTIVATE.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import and_, or_, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from models.bundle import Bundle, load_bundle, read_info, save_bundle
from models.data import decode_image
from models.errors import KensaError
from models.inference import Inspector
from models.recalibrate import Confirmed, recalibrated, train_config

from .registry import ModelsRoot, complete_info, is_part_folder, publish, staging_folder
from .store.database import SQLITE_FILE, database_url, make_engine
from .store.images import ImageFolder
from .store.records import GOOD
from .store.tables import inspections

log = logging.getLogger("kensa.recalibrate")

RESCORE_CHUNK = 16  # kept images decoded and scored at a time
# bundle.json fields the writer computes (models.bundle._bundle_json, models.fingerprint) or
# the reader adds (models.bundle.load_bundle): not carried over as metadata
COMPUTED = {"format_version", "created", "image_size", "channels", "normalization",
            "model_config", "calibration", "thresholds", "fusion", "latent", "packages", "files",
            "digests", "version", "signature", "metrics", "holdout_scores", "path"}


@dataclass
class Reviewed:
    """The reviewed records' scores under the bundle, and where each came from."""

    good: list[float]
    defects: list[float]
    stored: int = 0
    rescored: int = 0
    skipped: int = 0

    def add(self, review: str, score: float) -> None:
        (self.good if review == GOOD else self.defects).append(score)


def reviewed_rows(url: str, name: str, since: datetime | None,
                  part: str | None = None) -> list[dict]:
    """Every reviewed record of the part inspected at or after ``since``, by any version:
    its review, score, version and kept image. The part is the records' ``model`` column
    when the bundle is a version of a models-root ``part``; records without it (a server
    started on one bundle, KENSA_MODEL) count by ``model_name``, the bundle's ``name``."""
    c = inspections.c
    by_name = and_(c.model.is_(None), c.model_name == name)
    query = select(c.id, c.review_label, c.score, c.model_version, c.sha256, c.image_kept).where(
        c.reviewed_at.is_not(None), or_(c.model == part, by_name) if part else by_name,
        *([c.created_at >= since] if since else []))
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query.order_by(c.created_at))]
    except SQLAlchemyError as exc:
        raise KensaError(f"cannot read the records at "
                         f"{make_url(url).render_as_string(hide_password=True)} "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0]}): check "
                         "--from-records, and that `kensa db upgrade` has run there") from None
    finally:
        engine.dispose()


def reviewed_scores(inspector: Inspector, rows: list[dict], images: ImageFolder) -> Reviewed:
    """The fused score of each reviewed record under ``inspector``'s bundle (see the module
    docstring for which are stored, scored again or skipped)."""
    version = str(inspector.info.get("version", ""))
    out, again = Reviewed([], []), []
    for row in rows:
        if row["model_version"] == version:
            out.add(row["review_label"], float(row["score"]))
            out.stored += 1
        elif row["image_kept"] and images.path(row["sha256"]).is_file():
            again.append(row)
        else:
            out.skipped += 1
    for start in range(0, len(again), RESCORE_CHUNK):
        chunk = again[start:start + RESCORE_CHUNK]
        results = inspector.inspect([decode_image(images.get(r["sha256"])) for r in chunk])
        for row, result in zip(chunk, results):
            out.add(row["review_label"], float(result.score))
        out.rescored += len(chunk)
    return out


def source_bundle(model: Path, models_dir: Path | None) -> tuple[Path, str | None]:
    """The bundle folder ``--model`` names and the models-root part it is a version of (None
    for a plain bundle). A part folder means its active version.

    Raises:
        KensaError: the part has no active version.
    """
    model = Path(model)
    if is_part_folder(model, models_dir):
        active = ModelsRoot(model.parent).active(model.name)
        if active is None:
            raise KensaError(f"{model} has no active version: name one (--model "
                             f"{model}/VERSION) or activate one (kensa models activate "
                             f"{model.name} VERSION)")
        return model / active, model.name
    if complete_info(model) is not None and is_part_folder(model.parent, models_dir):
        return model, model.parent.name
    return model, None


def write_version(out: Path, bundle: Bundle, meta: dict, metrics: dict,
                  key: bytes | None, models_dir: Path | None) -> Path:
    """Writes the recalibrated bundle (atomically) and returns where: a plain bundle folder
    is written in place; a part of a models root gets a new version beside the others,
    renamed to its version id once complete (as ``kensa train`` writes one), not activated."""
    if not is_part_folder(out, models_dir):
        return save_bundle(out, bundle, meta, metrics, key)
    staged = staging_folder(out)
    try:
        save_bundle(staged, bundle, meta, metrics, key)
        return publish(staged)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def target(named: Path, model: Path, out: Path | None) -> Path:
    """Where the new bundle goes: ``out``, else the part ``--model`` named.

    Raises:
        KensaError: no ``out`` and ``--model`` is no part, or ``out`` is the bundle itself.
    """
    if out is None:
        if model == named:
            raise KensaError(f"--out is needed: {named} is a bundle, not a part of a models "
                             "root; name the new bundle's directory (or MODELS_DIR/PART)")
        out = named
    if Path(out).resolve() == Path(model).resolve():
        raise KensaError(f"--out {out} is the bundle being recalibrated: write the new "
                         "version to another directory (or MODELS_DIR/PART)")
    return Path(out)


def recalibrate(model: Path, records: str, out: Path | None, data_dir: Path,
                since: datetime | None = None, rule: str | None = None,
                key: bytes | None = None, device: str = "cpu",
                models_dir: Path | None = None) -> dict:
    """Recalibrates the bundle at ``model`` (a bundle, or a part of the models root: its
    active version) from the reviewed records in ``records`` (a database URL, or None for
    the SQLite file in ``data_dir``) and writes it to ``out`` (a bundle folder, or a part:
    a new version; default: the part ``model`` names). Returns what ``bundle.json`` records
    under ``recalibrated_from``, with the new ``version`` and ``image_threshold``.

    Raises:
        KensaError: ``out`` is ``model`` or missing, or the records cannot be read.
        DataError: the rule cannot be applied (see :func:`models.recalibrate.recalibrated`).
        BundleError: ``model`` is not a bundle that loads (or not signed with ``key``).
    """
    named, (model, part) = model, source_bundle(model, models_dir)
    out = target(Path(named), model, out)
    if records is None and not (Path(data_dir) / SQLITE_FILE).is_file():
        raise KensaError(f"{data_dir} holds no records database ({SQLITE_FILE}): name the "
                         "data folder of a server that recorded (KENSA_DATA_DIR) or a "
                         "database URL")
    bundle = load_bundle(model, key)
    info = bundle.info
    tcfg = train_config(info)
    rule = rule or tcfg.extra.get("threshold_rule", "false-alarm")
    url = database_url(data_dir, records)
    inspector = Inspector(bundle.cfg, bundle.model, bundle.vae, bundle.latent, bundle.cal,
                          device=device, info=info)
    rows = reviewed_rows(url, str(info.get("name", "")), since, part)
    scores = reviewed_scores(inspector, rows, ImageFolder(Path(data_dir) / "images"))
    cal, rule_text = recalibrated(bundle.cal, info["holdout_scores"],
                                  Confirmed(np.array(scores.good), np.array(scores.defects)),
                                  tcfg, rule)
    source = {"version": info.get("version"), "path": str(model), "part": part,
              "records": make_url(url).render_as_string(hide_password=True),
              "since": since.isoformat() if since else None, "rule": rule,
              "image_threshold_before": bundle.cal.image, "reviewed_good": len(scores.good),
              "reviewed_defects": len(scores.defects), "stored_scores": scores.stored,
              "rescored": scores.rescored, "skipped": scores.skipped}
    meta = new_meta(info, rule_text, source)
    written = write_version(out, replace(bundle, cal=cal, info={}), meta,
                            new_metrics(model, info, cal, scores), key, models_dir)
    log.info("recalibrated %s into %s: image threshold %.6g -> %.6g (%s)", model, written,
             bundle.cal.image, cal.image, rule_text)
    return {**source, "image_threshold": cal.image,
            "version_written": read_info(written, key)["version"], "out": str(written)}


def new_meta(info: dict, rule_text: str, source: dict) -> dict:
    """The new ``bundle.json``'s metadata: the old one's (name, training config, data...),
    the new threshold rule, and what it was recalibrated from."""
    meta = {k: v for k, v in info.items() if k not in COMPUTED}
    meta["fusion_rule"] = info.get("fusion", {}).get("chosen_by", "as configured")
    return meta | {"threshold_rule": rule_text, "recalibrated_from": source}


def new_metrics(model: Path, info: dict, cal, scores: Reviewed) -> dict:
    """The new ``metrics.json``: the old training record and held-out scores (the same weights
    and sub-thresholds give the same scores), the reviewed scores used, and no evaluation:
    the old one was measured at the old threshold (``kensa eval`` measures it again)."""
    path = Path(model) / "metrics.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    calibration = dict(old.get("calibration", {}))
    holdout = np.asarray(info["holdout_scores"], np.float64)
    calibration["holdout_false_alarms"] = int((holdout >= cal.image).sum())
    calibration["recalibration"] = {"reviewed_good_scores": scores.good,
                                    "reviewed_defect_scores": scores.defects}
    return {"training": old.get("training", {}), "calibration": calibration, "evaluation": {}}
