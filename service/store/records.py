"""Reading and writing inspection records: one row per inspected image, newest first.

Pages are keyset pages on ``(created_at, id)``: a cursor names the last row seen, so pages
stay stable while new records arrive (they are newer, so they never shift a later page).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from models.errors import KensaError

from .outbox import enqueue
from .tables import inspections, reviews, utcnow

MAX_LIMIT = 500
GOOD = "good"


class BadCursor(KensaError):
    """A ``cursor`` that no page of ours handed out."""


@dataclass(frozen=True)
class Filters:
    """What ``GET /v1/inspections`` and the CSV export select (None: no condition)."""

    label: str | None = None
    source: str | None = None
    part_id: str | None = None
    model_version: str | None = None
    model: str | None = None
    reviewed: bool | None = None
    review_label: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_score: float | None = None
    max_score: float | None = None

    def where(self) -> list:
        c = inspections.c
        conds = []
        for name in ("label", "source", "part_id", "model_version", "model", "review_label"):
            value = getattr(self, name)
            if value is not None:
                conds.append(getattr(c, name) == value)
        if self.reviewed is not None:
            conds.append(c.reviewed_at.is_not(None) if self.reviewed else c.reviewed_at.is_(None))
        if self.since is not None:
            conds.append(c.created_at >= self.since)
        if self.until is not None:
            conds.append(c.created_at < self.until)
        if self.min_score is not None:
            conds.append(c.score >= self.min_score)
        if self.max_score is not None:
            conds.append(c.score <= self.max_score)
        return conds

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


def encode_cursor(created_at: datetime, ident: str) -> str:
    raw = json.dumps([created_at.astimezone(UTC).isoformat(), ident]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        when, ident = json.loads(raw)
        return datetime.fromisoformat(when), str(ident)
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise BadCursor(f"query parameter 'cursor': {cursor!r} is not a cursor this server "
                        "handed out; pass the 'next' value of the previous page as it is, or "
                        "leave it out for the first page") from None


class Records:
    """The records tables on one engine. Every method is one short transaction; safe to use
    from several threads and several processes.

    Args:
        outbox: also queue every new record for the sinks, in the same transaction.
    """

    def __init__(self, engine: Engine, outbox: bool = False) -> None:
        self.engine = engine
        self.outbox = outbox
        dialect = engine.dialect.name
        self._insert = postgresql.insert if dialect == "postgresql" else sqlite.insert

    def add(self, rows: list[dict]) -> None:
        """Writes ``rows`` in one transaction (with their outbox rows when sinks are
        configured); ids already present are skipped (journal replays and retries write
        nothing twice)."""
        if not rows:
            return
        if any("model" in r for r in rows):  # rows journaled before the column existed lack it
            rows = [{"model": None, **r} for r in rows]
        stmt = self._insert(inspections).on_conflict_do_nothing(index_elements=["id"])
        with self.engine.begin() as conn:
            conn.execute(stmt, rows)
            if self.outbox:
                enqueue(conn, [r["id"] for r in rows])

    def get(self, ident: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(inspections).where(inspections.c.id == ident)).first()
        return dict(row._mapping) if row is not None else None

    def page(self, filters: Filters, limit: int = 50, cursor: str | None = None
             ) -> tuple[list[dict], str | None]:
        """One page, newest first, and the cursor of the next (None on the last page)."""
        c = inspections.c
        conds = filters.where()
        if cursor:
            when, ident = decode_cursor(cursor)
            conds.append(or_(c.created_at < when, and_(c.created_at == when, c.id < ident)))
        query = (select(inspections).where(*conds)
                 .order_by(c.created_at.desc(), c.id.desc()).limit(limit + 1))
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None
        return rows, nxt

    def iterate(self, filters: Filters, chunk: int = 1000) -> Iterator[dict]:
        """Every selected record, newest first, read a page at a time (for the export)."""
        cursor = None
        while True:
            rows, cursor = self.page(filters, chunk, cursor)
            yield from rows
            if cursor is None:
                return

    def review(self, ident: str, label: str, note: str | None, regions: list | None,
               by: str | None) -> dict | None:
        """Stores a review: the record shows the last one; every one stays in ``reviews``.
        Returns the updated record, None when there is no such record."""
        now = utcnow()
        with self.engine.begin() as conn:
            done = conn.execute(
                update(inspections).where(inspections.c.id == ident).values(
                    review_label=label, review_note=note, review_regions=regions,
                    reviewed_by=by, reviewed_at=now))
            if done.rowcount == 0:
                return None
            conn.execute(reviews.insert().values(
                inspection_id=ident, label=label, note=note, regions=regions,
                reviewed_by=by, reviewed_at=now))
        return self.get(ident)

    def review_labels(self, idents: list[str], chunk: int = 500) -> dict[str, str]:
        """``{record id: last review label}`` for those of ``idents`` that were reviewed."""
        c = inspections.c
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(idents), chunk):
                rows = conn.execute(select(c.id, c.review_label).where(
                    c.id.in_(idents[start:start + chunk]), c.review_label.is_not(None)))
                out.update({r.id: r.review_label for r in rows})
        return out

    def history(self, ident: str) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(reviews).where(reviews.c.inspection_id == ident)
                                .order_by(reviews.c.id))
            return [dict(r._mapping) for r in rows]

    def stats(self, since: datetime | None, until: datetime | None, bucket: str,
              source: str | None) -> list[dict]:
        """Counts per time bucket (``hour`` or ``day``, UTC) and source."""
        c = inspections.c
        query = select(c.created_at, c.source, c.label, c.review_label).where(
            *Filters(since=since, until=until, source=source).where())
        out: dict[tuple, dict] = {}
        with self.engine.connect() as conn:
            for when, src, label, review in conn.execute(query.execution_options(
                    yield_per=5000)):
                start = when.replace(minute=0, second=0, microsecond=0)
                if bucket == "day":
                    start = start.replace(hour=0)
                key = (start, src)
                s = out.get(key)
                if s is None:
                    s = out[key] = {"bucket": start, "source": src, "total": 0, "normal": 0,
                                    "abnormal": 0, "reviewed": 0, "false_alarms": 0,
                                    "misses": 0}
                s["total"] += 1
                s[label] = s.get(label, 0) + 1
                if review is not None:
                    s["reviewed"] += 1
                    if label == "abnormal" and review == GOOD:
                        s["false_alarms"] += 1
                    elif label == "normal" and review != GOOD:
                        s["misses"] += 1
        step = timedelta(hours=1 if bucket == "hour" else 24)
        result = []
        for s in sorted(out.values(), key=lambda s: (s["bucket"], s["source"] or "")):
            s["yield"] = round(s["normal"] / s["total"], 6) if s["total"] else None
            s["bucket_end"] = s["bucket"] + step
            result.append(s)
        return result

    def recent(self, model_version: str, limit: int) -> list[dict]:
        """The newest ``limit`` records judged by ``model_version``, newest first: their
        ``source``, ``label``, ``score``, ``threshold`` and ``review_label`` (score drift)."""
        c = inspections.c
        query = (select(c.source, c.label, c.score, c.threshold, c.review_label)
                 .where(c.model_version == model_version)
                 .order_by(c.created_at.desc(), c.id.desc()).limit(limit))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(inspections)).scalar_one()
