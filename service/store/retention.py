"""Retention: old records go, old and surplus images go (unreviewed first).

* records older than ``KENSA_RECORD_RETENTION_DAYS`` are deleted with their review history;
* images of unreviewed records older than ``KENSA_IMAGE_RETENTION_DAYS`` stop being kept;
* while the image folder holds more than ``KENSA_IMAGE_STORE_MAX_GB``, the images of the
  oldest unreviewed records stop being kept; a reviewed record keeps its image until the
  record itself goes (reviews are the next training run's data);
* image files no kept record and no operator label names any more are deleted.

Runs in the background (a thread of its own), never in an inspection's path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine, and_, delete, select, update

from .images import ImageFolder
from .tables import inspections, labels, utcnow

GB = 1024 ** 3
CHUNK = 500  # records per pruning transaction
log = logging.getLogger("kensa.store")


@dataclass(frozen=True)
class Retention:
    image_days: float = 30.0
    record_days: float = 365.0
    image_store_max_gb: float | None = None


def prune(engine: Engine, images: ImageFolder, rules: Retention) -> dict[str, int]:
    """One pass; returns what it removed (records, images un-kept, files deleted)."""
    c = inspections.c
    now = utcnow()
    records = _in_chunks(engine, c.created_at < now - timedelta(days=rules.record_days),
                         lambda ids: delete(inspections).where(c.id.in_(ids)))
    unkept = _in_chunks(engine, and_(c.image_kept.is_(True), c.reviewed_at.is_(None),
                                     c.created_at < now - timedelta(days=rules.image_days)),
                        lambda ids: update(inspections).where(c.id.in_(ids))
                        .values(image_kept=False))
    if rules.image_store_max_gb is not None:
        unkept += _fit_size(engine, int(rules.image_store_max_gb * GB))
    with engine.connect() as conn:
        in_use = set(conn.execute(select(c.sha256).where(c.image_kept.is_(True)).distinct())
                     .scalars())
        in_use |= set(conn.execute(select(labels.c.sha256).distinct()).scalars())
    files = images.delete_unused(in_use)
    result = {"records": records, "images_unkept": unkept, "files": files}
    if any(result.values()):
        log.info("pruned", extra={"fields": result})
    return result


def _in_chunks(engine: Engine, condition, statement) -> int:
    """Applies ``statement(ids)`` to the records matching ``condition``, ``chunk`` records per
    transaction, so the database's write lock is never held long (on SQLite the recorder
    waits for it, and with it the answers)."""
    c, done, chunk = inspections.c, 0, CHUNK
    while True:
        with engine.begin() as conn:
            ids = list(conn.execute(select(c.id).where(condition).limit(chunk)).scalars())
            if not ids:
                return done
            conn.execute(statement(ids))
        done += len(ids)
        if len(ids) < chunk:
            return done


def _fit_size(engine: Engine, max_bytes: int) -> int:
    """Un-keeps the images of the oldest unreviewed records until the kept images (each
    distinct image counted once) fit in ``max_bytes``."""
    c = inspections.c
    with engine.connect() as conn:
        sizes = dict(conn.execute(select(c.sha256, c.image_bytes)
                                  .where(c.image_kept.is_(True)).distinct()).all())
        excess = sum(v or 0 for v in sizes.values()) - max_bytes
        if excess <= 0:
            return 0
        oldest = conn.execute(select(c.id, c.sha256).where(
            c.image_kept.is_(True), c.reviewed_at.is_(None))
            .order_by(c.created_at, c.id).execution_options(yield_per=1000))
        ids, freed = [], set()
        for ident, digest in oldest:
            ids.append(ident)
            if digest not in freed:
                freed.add(digest)
                excess -= sizes.get(digest) or 0
            if excess <= 0:
                break
    for start in range(0, len(ids), CHUNK):
        with engine.begin() as conn:
            conn.execute(update(inspections).where(c.id.in_(ids[start:start + CHUNK]))
                         .values(image_kept=False))
    return len(ids)
