"""Real `kensa serve` processes: nothing answered is lost (kill -9, database down), and two
servers on one PostgreSQL share one history."""

import concurrent.futures
import signal

import httpx
import pytest
from service_helpers import upload, washer_png
from sqlalchemy import func, select

from service.store.database import database_url, make_engine
from service.store.records import Records
from service.store.tables import inspections

from .store_helpers import free_port, serve, wait_for, wait_ready

pytestmark = pytest.mark.slow


def test_a_server_killed_right_after_answering_lost_no_record(tiny_bundle, tmp_path):
    port, data_dir = free_port(), tmp_path / "data"
    proc = serve(tiny_bundle, port, {"KENSA_DATA_DIR": str(data_dir)}, tmp_path / "log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)

        def one(n):
            if n % 4 == 0:
                r = httpx.post(f"{base}/v1/inspect/batch", timeout=60, files=[
                    ("files", (f"{n}-{k}.png", washer_png(n * 10 + k), "image/png"))
                    for k in range(3)])
                return [e["id"] for e in r.json()["results"]]
            r = httpx.post(f"{base}/v1/inspect", files=upload(washer_png(n)), timeout=60)
            assert r.status_code == 200
            return [r.json()["id"]]

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answered = [i for ids in pool.map(one, range(24)) for i in ids]
    finally:
        proc.send_signal(signal.SIGKILL)  # no shutdown, no flush: whatever is on disk is all
        proc.wait(30)
    engine = make_engine(database_url(data_dir))
    with engine.connect() as conn:
        stored = set(conn.execute(select(inspections.c.id)).scalars())
    engine.dispose()
    assert len(answered) == 36
    assert set(answered) <= stored


def test_database_down_records_wait_in_the_journal_and_arrive_once(tiny_bundle, tmp_path,
                                                                   fresh_cluster):
    url = fresh_cluster.new_database()
    port = free_port()
    proc = serve(tiny_bundle, port, {"KENSA_DATA_DIR": str(tmp_path / "data"),
                                     "KENSA_DATABASE_URL": url}, tmp_path / "log")
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_ready(base, proc)["records"] == "ok"
        fresh_cluster.stop()
        answered = []
        for n in range(50):
            r = httpx.post(f"{base}/v1/inspect", files=upload(washer_png(n)), timeout=60)
            assert r.status_code == 200
            answered.append(r.json()["id"])
        ready = httpx.get(f"{base}/health/ready", timeout=10)
        assert (ready.status_code, ready.json()["records"]) == (200, "degraded")
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        assert "kensa_records_pending 50.0" in metrics
        assert "kensa_record_failures_total 0.0" not in metrics
        listed = httpx.get(f"{base}/v1/inspections", timeout=30)
        assert (listed.status_code, listed.json()["detail"]) == (503, (
            "the records database is unreachable: inspections are still answered and recorded "
            "(they wait in the journal); retry this call later"))
        fresh_cluster.start()
        assert wait_for(lambda: httpx.get(f"{base}/health/ready", timeout=10).json()[
            "records"] == "ok", timeout_s=60)
        assert "kensa_records_pending 0.0" in httpx.get(f"{base}/metrics", timeout=10).text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    engine = make_engine(url)
    with engine.connect() as conn:
        ids = list(conn.execute(select(inspections.c.id)).scalars())
        total = conn.execute(select(func.count()).select_from(inspections)).scalar_one()
    engine.dispose()
    assert total == 50 and sorted(ids) == sorted(answered)


def test_two_servers_on_one_postgresql_share_one_history(tiny_bundle, tmp_path, pg_cluster):
    url = pg_cluster.new_database()
    procs, bases = [], []
    try:
        for name in ("a", "b"):
            port = free_port()
            procs.append(serve(tiny_bundle, port, {
                "KENSA_DATA_DIR": str(tmp_path / "shared-data"), "KENSA_DATABASE_URL": url,
                "KENSA_KEEP_IMAGES": "all"}, tmp_path / f"log-{name}"))
            bases.append(f"http://127.0.0.1:{port}")
        for base, proc in zip(bases, procs):
            wait_ready(base, proc)
        a, b = bases
        via_a = httpx.post(f"{a}/v1/inspect", files=upload(washer_png(1)), timeout=60).json()
        via_b = httpx.post(f"{b}/v1/inspect", files=upload(washer_png(2)), timeout=60).json()
        for base in bases:
            items = httpx.get(f"{base}/v1/inspections", timeout=10).json()["items"]
            assert [i["id"] for i in items] == [via_b["id"], via_a["id"]]
        r = httpx.put(f"{b}/v1/inspections/{via_a['id']}/review", json={"label": "dent"},
                      timeout=10)
        assert r.status_code == 200
        seen = httpx.get(f"{a}/v1/inspections/{via_a['id']}", timeout=10).json()
        assert seen["review"]["label"] == "dent"
        image = httpx.get(f"{a}/v1/inspections/{via_b['id']}/image", timeout=10)
        assert image.content == washer_png(2)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)
    assert Records(make_engine(url)).count() == 2
