"""The outbox: which records the sinks (webhook, MQTT) still have to deliver, in order.

Every record written while sinks are configured gets one ``outbox`` row *in the same
transaction* as the record (:meth:`Records.add <.records.Records.add>`), so a record that was
answered is also queued for the sinks: a ``kill -9`` loses neither. The rows form one ordered
log (``seq``); each sink keeps its own position in ``sink_positions`` (the last ``seq`` it is
done with) and reads on from there, so a sink that is down delays no other and, once back,
gets what it missed in order. Rows every configured sink is past are deleted.

On PostgreSQL, writers serialize their outbox inserts on an advisory lock, so ``seq`` order is
commit order and a reader never skips a row that commits late.

Several servers on one database share each sink's position, so one of them at a time delivers
a sink: the one holding its *lease* (``holder``, ``lease_until`` in ``sink_positions``). A
server takes a lease that is free or expired with one conditional ``UPDATE`` (atomic on SQLite,
whose writers take the database lock, and on PostgreSQL, which re-checks the ``WHERE`` of a row
another transaction just changed), renews it with every position it saves, and can save a
position only while it is still the holder. Lease times come from the database's clock, so
the servers' own clocks do not matter. A holder that dies stops renewing; after ``lease_until``
another server takes the sink over from the last saved position: the entry that was in flight
is delivered again (at least once), none is skipped, and order per sink is kept because only
one server reads a sink's log at a time.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, Engine, Float, cast, delete, func, or_, select, text, update
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
            insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)
            conn.execute(insert(sink_positions).on_conflict_do_nothing(index_elements=["sink"])
                         .values(sink=sink, position=end, updated_at=utcnow()))
            # another server may have written the row first: its position stands
            return conn.execute(select(sink_positions.c.position)
                                .where(sink_positions.c.sink == sink)).scalar()

    def claim(self, sink: str, holder: str, lease_s: float) -> int | None:
        """Takes or renews ``holder``'s lease on ``sink`` for ``lease_s`` seconds; the sink's
        position when it holds the lease, None while another server does."""
        self.position(sink)
        now = _db_now(self.engine)
        mine = sink_positions.c.holder == holder
        free = or_(sink_positions.c.holder.is_(None), sink_positions.c.lease_until < now)
        with self.engine.begin() as conn:
            got = conn.execute(update(sink_positions)
                               .where(sink_positions.c.sink == sink, or_(mine, free))
                               .values(holder=holder, lease_until=now + lease_s)).rowcount
            if not got:
                return None
            return conn.execute(select(sink_positions.c.position)
                                .where(sink_positions.c.sink == sink)).scalar()

    def advance(self, sink: str, seq: int, holder: str | None = None,
                lease_s: float = 0.0) -> bool:
        """Saves ``sink``'s position. With ``holder``: only while it holds the lease, which
        is renewed for ``lease_s``; False when it lost it (nothing saved)."""
        where = [sink_positions.c.sink == sink]
        values = {"position": seq, "updated_at": utcnow()}
        if holder is not None:
            where.append(sink_positions.c.holder == holder)
            values["lease_until"] = _db_now(self.engine) + lease_s
        with self.engine.begin() as conn:
            return bool(conn.execute(update(sink_positions).where(*where).values(**values))
                        .rowcount)

    def release(self, sink: str, holder: str) -> None:
        """Gives ``sink``'s lease up at once (a server stopping cleanly)."""
        with self.engine.begin() as conn:
            conn.execute(update(sink_positions).where(sink_positions.c.sink == sink,
                                                      sink_positions.c.holder == holder)
                         .values(holder=None, lease_until=None))

    def holder(self, sink: str) -> tuple[str | None, float | None]:
        """Who holds ``sink``'s lease, and until when (database clock, epoch seconds)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(sink_positions.c.holder, sink_positions.c.lease_until)
                               .where(sink_positions.c.sink == sink)).first()
        return (row[0], row[1]) if row else (None, None)

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

    def count_after(self, seq: int, upto: int | None = None) -> int:
        """How many entries follow ``seq`` (up to and with ``upto``, when given)."""
        query = select(func.count()).select_from(outbox).where(outbox.c.seq > seq)
        if upto is not None:
            query = query.where(outbox.c.seq <= upto)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar() or 0

    def seq_before_last(self, n: int) -> int:
        """The ``seq`` after which exactly the newest ``n`` entries lie (0: all of them)."""
        with self.engine.connect() as conn:
            found = conn.execute(select(outbox.c.seq).order_by(outbox.c.seq.desc())
                                 .offset(n).limit(1)).scalar()
        return found or 0

    def prune(self, sinks: list[str], local: bool = False, keep_s: float = 600.0) -> int:
        """Deletes the entries every one of ``sinks`` is past; returns how many. ``local``:
        sinks that keep their position in the server (OPC UA) also read the log, so entries
        younger than ``keep_s`` stay for them (with no other sink, the age alone decides)."""
        if not sinks and not local:
            return 0
        where = []
        if local:
            where.append(outbox.c.created_at < utcnow() - timedelta(seconds=keep_s))
        with self.engine.begin() as conn:
            if sinks:
                done = conn.execute(select(func.min(sink_positions.c.position))
                                    .where(sink_positions.c.sink.in_(sinks))).scalar()
                known = conn.execute(select(func.count()).select_from(sink_positions)
                                     .where(sink_positions.c.sink.in_(sinks))).scalar()
                if done is None or known < len(set(sinks)):
                    return 0
                where.append(outbox.c.seq <= done)
            return conn.execute(delete(outbox).where(*where)).rowcount


def _db_now(engine: Engine) -> float:
    """The database's clock, in epoch seconds (the same for every server on it)."""
    if engine.dialect.name == "postgresql":
        query = select(cast(func.extract("epoch", func.clock_timestamp()), Float))
    else:
        query = select((func.julianday("now") - 2440587.5) * 86400.0)
    with engine.connect() as conn:
        return float(conn.execute(query).scalar())
