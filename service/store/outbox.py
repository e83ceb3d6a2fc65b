"""The outbox: which records the sinks (webhook, MQTT) still have to deliver, in order.

Every record written while sinks are configured gets one ``outbox`` row *in the same
transaction* as the record (:meth:`Records.add <.records.Records.add>`), so a record that was
answered is also queued for the sinks: a ``kill -9`` loses neither. The rows form one ordered
log (``seq``); each sink keeps its own position in ``sink_positions`` (the last ``seq`` it is
done with) and reads on from there, so a sink that is down delays no other and, once back,
gets what it missed in order. Rows every configured sink is past are deleted.

On PostgreSQL, writers serialize their outbox inserts on an advisory lock, so ``seq`` order is
commit order and a reader never skips a row that commits late.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from .tables import inspections, outbox, sink_positions, utcnow

# pg_advisory_xact_lock key of the outbox writers ("kensa-ob")
LOCK_KEY = 0x6B656E73612D6F62


def enqueue(conn: Connection, ids: list[str]) -> None:
    """Queues the records ``ids`` for the sinks, inside the caller's transaction; ids queued
    before (a journal replay) are skipped."""
    if not ids:
        return
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
    insert = postgresql.insert if postgres else sqlite.insert
    now = utcnow()
    conn.execute(insert(outbox).on_conflict_do_nothing(index_elements=["inspection_id"]),
                 [{"inspection_id": i, "created_at": now} for i in ids])


class Outbox:
    """The sinks' side of the outbox: positions, pages of records, pruning."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def last_seq(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(outbox.c.seq))).scalar() or 0

    def position(self, sink: str) -> int:
        """Where ``sink`` is; a sink seen for the first time starts at the end of the log
        (it gets records from now on, not the history)."""
        with self.engine.begin() as conn:
            found = conn.execute(select(sink_positions.c.position)
                                 .where(sink_positions.c.sink == sink)).scalar()
            if found is not None:
                return found
            end = conn.execute(select(func.max(outbox.c.seq))).scalar() or 0
            conn.execute(sink_positions.insert().values(sink=sink, position=end,
                                                        updated_at=utcnow()))
            return end

    def advance(self, sink: str, seq: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(sink_positions).where(sink_positions.c.sink == sink)
                         .values(position=seq, updated_at=utcnow()))

    def after(self, seq: int, limit: int = 100) -> list[tuple[int, dict | None]]:
        """The next ``limit`` entries after ``seq``, in order: ``(seq, record)``; the record
        is None where retention already deleted it."""
        query = (select(outbox.c.seq, inspections).select_from(
                     outbox.outerjoin(inspections, inspections.c.id == outbox.c.inspection_id))
                 .where(outbox.c.seq > seq).order_by(outbox.c.seq).limit(limit))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        out = []
        for r in rows:
            m = dict(r._mapping)
            out.append((m.pop("seq"), m if m.get("id") is not None else None))
        return out

    def count_after(self, seq: int) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(outbox)
                                .where(outbox.c.seq > seq)).scalar() or 0

    def seq_before_last(self, n: int) -> int:
        """The ``seq`` after which exactly the newest ``n`` entries lie (0: all of them)."""
        with self.engine.connect() as conn:
            found = conn.execute(select(outbox.c.seq).order_by(outbox.c.seq.desc())
                                 .offset(n).limit(1)).scalar()
        return found or 0

    def prune(self, sinks: list[str]) -> int:
        """Deletes the entries every one of ``sinks`` is past; returns how many."""
        if not sinks:
            return 0
        with self.engine.begin() as conn:
            done = conn.execute(select(func.min(sink_positions.c.position))
                                .where(sink_positions.c.sink.in_(sinks))).scalar()
            known = conn.execute(select(func.count()).select_from(sink_positions)
                                 .where(sink_positions.c.sink.in_(sinks))).scalar()
            if done is None or known < len(set(sinks)):
                return 0
            return conn.execute(delete(outbox).where(outbox.c.seq <= done)).rowcount
