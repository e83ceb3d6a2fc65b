"""Records: idempotent writes, filters, keyset pages while records arrive, reviews, counts."""

import pytest

from service.store.records import BadCursor, Filters, Records

from .store_helpers import ago, row


@pytest.fixture
def records(engine) -> Records:
    return Records(engine)


def test_a_record_written_twice_is_stored_once(records):
    r = row()
    records.add([r])
    records.add([r, row()])
    assert records.count() == 2
    got = records.get(r["id"])
    assert got["created_at"] == r["created_at"]
    assert got["reconstruction"] == {"label": "normal"}


def test_filters_select_what_they_name(records):
    records.add([
        row("abnormal", ago(hours=3), source="cam1", part_id="P1", score=0.9),
        row("normal", ago(hours=2), source="cam2", part_id="P2", score=0.2),
        row("abnormal", ago(hours=1), source="cam2", model_version="v2", score=0.7),
    ])
    def ids(**kw):
        return [r["source"] for r in records.page(Filters(**kw))[0]]
    assert ids() == ["cam2", "cam2", "cam1"]
    assert ids(label="abnormal") == ["cam2", "cam1"]
    assert ids(source="cam1") == ["cam1"]
    assert ids(part_id="P2") == ["cam2"]
    assert ids(model_version="v2") == ["cam2"]
    assert ids(since=ago(hours=2, minutes=30)) == ["cam2", "cam2"]
    assert ids(until=ago(hours=2, minutes=30)) == ["cam1"]
    assert ids(min_score=0.5, max_score=0.8) == ["cam2"]
    assert ids(reviewed=True) == []
    assert len(ids(reviewed=False)) == 3


def test_pages_stay_stable_while_new_records_arrive(records):
    old = [row(when=ago(minutes=60 - n)) for n in range(25)]
    records.add(old)
    seen, cursor, pages = [], None, 0
    while True:
        items, cursor = records.page(Filters(), limit=10, cursor=cursor)
        seen += [r["id"] for r in items]
        pages += 1
        records.add([row(), row()])  # newer ones arrive between pages
        if cursor is None:
            break
    assert pages == 3
    assert seen == [r["id"] for r in reversed(old)]


def test_records_of_the_same_instant_page_in_id_order(records):
    when = ago(minutes=1)
    same = [row(when=when) for _ in range(7)]
    records.add(same)
    first, cursor = records.page(Filters(), limit=4)
    second, last = records.page(Filters(), limit=4, cursor=cursor)
    assert last is None
    assert [r["id"] for r in first + second] == sorted((r["id"] for r in same), reverse=True)


def test_a_cursor_we_never_handed_out_is_refused(records):
    with pytest.raises(BadCursor, match="is not a cursor this server handed out"):
        records.page(Filters(), cursor="nonsense")


def test_the_last_review_wins_and_every_one_is_kept(records):
    r = row("abnormal")
    records.add([r])
    records.review(r["id"], "scratch", "first look", [[1, 2, 3, 4]], "ann")
    got = records.review(r["id"], "good", None, None, "bob")
    assert (got["review_label"], got["reviewed_by"], got["review_regions"]) == ("good", "bob",
                                                                               None)
    assert [h["label"] for h in records.history(r["id"])] == ["scratch", "good"]
    assert records.review("no-such-id", "good", None, None, None) is None
    assert [x["id"] for x in records.page(Filters(reviewed=True))[0]] == [r["id"]]
    assert [x["id"] for x in records.page(Filters(review_label="good"))[0]] == [r["id"]]


def test_stats_count_per_bucket_and_source(records):
    a, b, c, d = (row("abnormal", source="cam1"), row("normal", source="cam1"),
                  row("normal", source="cam1"), row("abnormal", source="cam2"))
    records.add([a, b, c, d])
    records.review(a["id"], "good", None, None, None)   # a confirmed false alarm
    records.review(b["id"], "dent", None, None, None)   # a confirmed miss
    records.review(d["id"], "dent", None, None, None)   # a confirmed defect
    stats = records.stats(ago(hours=1), None, "day", None)
    by_source = {s["source"]: s for s in stats}
    cam1 = by_source["cam1"]
    assert (cam1["total"], cam1["normal"], cam1["abnormal"], cam1["reviewed"],
            cam1["false_alarms"], cam1["misses"]) == (3, 2, 1, 2, 1, 1)
    assert cam1["yield"] == pytest.approx(2 / 3, abs=1e-6)
    assert by_source["cam2"]["false_alarms"] == 0
    assert [s["source"] for s in records.stats(None, None, "hour", "cam2")] == ["cam2"]


def test_recent_reads_the_newest_records_of_one_version(records):
    records.add([row("normal", ago(hours=n), score=float(n), source=f"cam{n % 2}")
                 for n in range(1, 6)] + [row("normal", ago(minutes=1), model_version="v2")])
    records.review(records.page(Filters(model_version="v1"), 1)[0][0]["id"], "good", None, None,
                   None)
    got = records.recent("v1", 3)
    assert [r["score"] for r in got] == [1.0, 2.0, 3.0]
    assert set(got[0]) == {"source", "label", "score", "threshold", "review_label"}
    assert [r["review_label"] for r in got] == ["good", None, None]
    assert [r["source"] for r in got] == ["cam1", "cam0", "cam1"]
