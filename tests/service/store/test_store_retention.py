"""Retention: old records, old unreviewed images and surplus images go; reviewed images stay."""

from pathlib import Path

from service.store.images import ImageFolder, sha256
from service.store.records import Records
from service.store.retention import GB, Retention, prune

from .store_helpers import ago, row


def kept(images: ImageFolder, data: bytes, label="abnormal", **extra) -> dict:
    digest = sha256(data)
    images.put(data, digest)
    return row(label, sha256=digest, image_kept=True, image_type="image/png",
               image_bytes=len(data), **extra)


def age_files(folder: Path) -> None:
    import os
    for f in folder.rglob("*"):
        if f.is_file():
            os.utime(f, (0, 0))


def test_old_records_and_old_unreviewed_images_go(engine, tmp_path):
    images, records = ImageFolder(tmp_path / "images"), Records(engine)
    ancient = kept(images, b"a" * 10, when=ago(days=400))
    old = kept(images, b"b" * 10, when=ago(days=40))
    old_reviewed = kept(images, b"c" * 10, when=ago(days=40))
    fresh = kept(images, b"d" * 10, when=ago(days=1))
    records.add([ancient, old, old_reviewed, fresh])
    records.review(old_reviewed["id"], "scratch", None, None, None)
    age_files(tmp_path / "images")
    done = prune(engine, images, Retention(image_days=30, record_days=365))
    assert done == {"records": 1, "images_unkept": 1, "files": 2}
    assert records.get(ancient["id"]) is None
    assert records.get(old["id"])["image_kept"] is False
    assert records.get(old_reviewed["id"])["image_kept"] is True
    assert images.get(old_reviewed["sha256"]) == b"c" * 10
    assert images.get(fresh["sha256"]) == b"d" * 10
    assert images.get(old["sha256"]) is None


def test_over_the_size_cap_the_oldest_unreviewed_images_go_first(engine, tmp_path):
    images, records = ImageFolder(tmp_path / "images"), Records(engine)
    size = 1000
    rows = [kept(images, bytes([n]) * size, when=ago(hours=10 - n)) for n in range(6)]
    records.add(rows)
    records.review(rows[0]["id"], "good", None, None, None)  # the oldest, but reviewed
    age_files(tmp_path / "images")
    prune(engine, images, Retention(image_store_max_gb=3.5 * size / GB))
    keeps = [records.get(r["id"])["image_kept"] for r in rows]
    assert keeps == [True, False, False, False, True, True]
    assert sorted(p.name for p in (tmp_path / "images").rglob("*") if p.is_file()) == sorted(
        r["sha256"] for r, k in zip(rows, keeps) if k)


def test_the_same_bytes_are_stored_once(tmp_path):
    images = ImageFolder(tmp_path / "images")
    images.put(b"x" * 5, sha256(b"x" * 5))
    images.put(b"x" * 5, sha256(b"x" * 5))
    assert len([p for p in (tmp_path / "images").rglob("*") if p.is_file()]) == 1


def test_pruning_many_records_goes_in_chunks_and_removes_them_all(engine, tmp_path):
    from service.store import retention

    records = Records(engine)
    old_ones = [row(when=ago(days=400)) for _ in range(23)]
    records.add(old_ones + [row()])
    records.review(old_ones[0]["id"], "good", None, None, None)  # its history goes with it
    old, retention.CHUNK = retention.CHUNK, 5
    try:
        done = prune(engine, ImageFolder(tmp_path / "images"), Retention())
    finally:
        retention.CHUNK = old
    assert done["records"] == 23 and records.count() == 1
    assert records.history(old_ones[0]["id"]) == []
