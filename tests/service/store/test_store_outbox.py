"""The outbox: queued in the records' transaction, read in order per sink, pruned when every
sink is past; on SQLite and PostgreSQL."""

from sqlalchemy import delete

from service.store.database import current_revision, upgrade
from service.store.outbox import Outbox
from service.store.records import Records
from service.store.tables import inspections

from .store_helpers import engine_at, row


def ids_after(box: Outbox, seq: int) -> list[str]:
    return [record["id"] for _, record in box.after(seq)]


def test_records_are_queued_once_in_order_only_when_sinks_are_configured(engine):
    box = Outbox(engine)
    Records(engine).add([row()])  # no sinks: nothing queued
    assert box.last_seq() == 0
    first, second = [row(), row()], [row("abnormal")]
    queued = Records(engine, outbox=True)
    queued.add(first)
    queued.add(second)
    queued.add(first + second)  # a journal replay: nothing twice
    assert ids_after(box, 0) == [r["id"] for r in first + second]
    assert box.count_after(0) == 3


def test_a_new_sink_starts_at_the_end_and_resumes_where_it_stood(engine):
    box, records = Outbox(engine), Records(engine, outbox=True)
    records.add([row(), row()])
    start = box.position("mes")
    assert start == box.last_seq() and box.after(start) == []
    later = [row(), row("abnormal")]
    records.add(later)
    seq, record = box.after(start)[0]
    assert record["id"] == later[0]["id"] and record["label"] == "normal"
    box.advance("mes", seq)
    assert box.position("mes") == seq  # as a restarted server finds it
    assert ids_after(box, box.position("mes")) == [later[1]["id"]]


def test_prune_deletes_only_what_every_sink_is_past(engine):
    box, records = Outbox(engine), Records(engine, outbox=True)
    box.position("a"), box.position("b")
    records.add([row() for _ in range(5)])
    entries = box.after(0)
    box.advance("a", entries[3][0])
    box.advance("b", entries[1][0])
    assert box.prune(["a", "b"]) == 2
    assert box.count_after(0) == 3
    assert box.prune(["a", "b", "never-started"]) == 0  # a sink without a position holds all
    assert box.seq_before_last(2) == entries[2][0]
    assert box.seq_before_last(10) == 0


def test_a_record_deleted_by_retention_comes_out_as_none(engine):
    records, box = Records(engine, outbox=True), Outbox(engine)
    gone, kept = row(), row()
    records.add([gone, kept])
    with engine.begin() as conn:
        conn.execute(delete(inspections).where(inspections.c.id == gone["id"]))
    assert [r and r["id"] for _, r in box.after(0)] == [None, kept["id"]]


def test_a_database_at_0002_upgrades_to_the_outbox_and_keeps_its_records(db_url):
    eng = engine_at(db_url, "0002")
    kept = row()
    Records(eng).add([kept])
    upgrade(eng)
    assert current_revision(eng) == "0005"
    assert Records(eng).get(kept["id"])["id"] == kept["id"]
    Records(eng, outbox=True).add([row()])
    assert Outbox(eng).count_after(0) == 1
    eng.dispose()


def test_one_holder_at_a_time_and_a_lapsed_lease_passes_on_with_its_position(engine):
    import time

    box, records = Outbox(engine), Records(engine, outbox=True)
    box.position("mes")
    records.add([row(), row(), row()])
    entries = box.after(0)
    assert box.claim("mes", "a", 0.5) == 0
    assert box.claim("mes", "b", 0.5) is None  # a holds it
    assert box.holder("mes")[0] == "a"
    assert box.advance("mes", entries[0][0], "a", 0.5)
    assert not box.advance("mes", entries[1][0], "b", 0.5)  # b cannot move a's sink
    time.sleep(0.7)  # a stops renewing: its lease runs out
    assert box.claim("mes", "b", 30) == entries[0][0]  # b goes on where a stood
    assert not box.advance("mes", entries[2][0], "a", 0.5)  # a learns it lost the sink
    assert box.claim("mes", "a", 30) is None
    box.release("mes", "a")  # not a's to give up
    assert box.holder("mes")[0] == "b"
    box.release("mes", "b")
    assert box.holder("mes") == (None, None)
    assert box.claim("mes", "a", 30) == entries[0][0]


def test_a_database_at_0003_takes_the_lease_columns_and_keeps_positions(db_url):
    from sqlalchemy import insert

    from service.store.tables import sink_positions, utcnow

    eng = engine_at(db_url, "0003")
    with eng.begin() as conn:
        conn.execute(insert(sink_positions).values(sink="mes", position=7, updated_at=utcnow()))
    upgrade(eng)
    assert Outbox(eng).claim("mes", "a", 30) == 7
    eng.dispose()


def test_with_a_local_sink_prune_also_keeps_what_is_young(engine):
    box, records = Outbox(engine), Records(engine, outbox=True)
    box.position("mes")
    records.add([row(), row()])
    box.advance("mes", box.last_seq())
    assert box.prune(["mes"], local=True, keep_s=600) == 0  # an OPC UA sink may still read it
    assert box.prune([], local=True, keep_s=600) == 0
    assert box.prune(["mes"], local=True, keep_s=0) == 2
