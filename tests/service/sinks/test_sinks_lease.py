"""Several servers on one records database (SQLite file or a real PostgreSQL): each sink is
delivered by one of them at a time (the lease), every record exactly once to a real webhook
receiver while all is well, and again from where the holder stood once a holder is killed
mid-delivery."""

import json
import signal
from collections import Counter

import httpx
import pytest
from service_helpers import upload, washer_png
from store.postgres_cluster import REQUIRE, Cluster, available
from store.store_helpers import serve, wait_ready

from service.store.database import make_engine
from service.store.outbox import Outbox

from .sink_helpers import Receiver, free_port, sinks_file, wait_for


@pytest.fixture(scope="module")
def cluster():
    if not available():
        if REQUIRE:
            pytest.fail("PostgreSQL is required here (KENSA_REQUIRE_POSTGRES=1) but not "
                        "installed: apt-get install postgresql")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    made = Cluster()
    made.start()
    yield made
    made.destroy()


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_url(request, tmp_path) -> str:
    """One records database for several servers."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared' / 'records.sqlite'}"
    return request.getfixturevalue("cluster").new_database()


@pytest.fixture
def receiver():
    made = Receiver().start()
    yield made
    made.release.set()
    made.stop()


def delivered(hook: Receiver) -> list[str]:
    return [json.loads(body)["id"] for _, body in hook.accepted()]


def in_outbox_order(url: str, ids: list[str]) -> list[str]:
    engine = make_engine(url)
    order = [r["id"] for _, r in Outbox(engine).after(0, 1000) if r is not None]
    engine.dispose()
    return [i for i in order if i in set(ids)]


def lease_gauge(client) -> float:
    line = next(x for x in client.get("/metrics").text.splitlines()
                if x.startswith('kensa_sink_lease{sink="mes"}'))
    return float(line.split()[-1])


def test_two_servers_deliver_each_record_once_in_order(make_client, receiver, shared_url,
                                                       tmp_path):
    hook = sinks_file(tmp_path, {"name": "mes", "type": "webhook", "url": receiver.url})
    servers = [make_client(sinks_file=hook, database_url=shared_url,
                           data_dir=tmp_path / name) for name in ("a", "b")]
    ids = []
    for n in range(12):  # the two servers take turns recording
        r = servers[n % 2].post("/v1/inspect", files=upload(washer_png(n)))
        assert r.status_code == 200
        ids.append(r.json()["id"])
    assert wait_for(lambda: len(delivered(receiver)) >= 12), len(delivered(receiver))
    assert sorted(lease_gauge(s) for s in servers) == [0, 1]  # one of them delivers
    holder = next(s for s in servers if lease_gauge(s) == 1)
    holder.__exit__(None, None, None)  # a clean stop gives the lease up at once
    other = next(s for s in servers if s is not holder)
    for n in range(12, 16):
        r = other.post("/v1/inspect", files=upload(washer_png(n)))
        ids.append(r.json()["id"])
    assert wait_for(lambda: len(delivered(receiver)) >= 16, timeout_s=15)
    wait_for(lambda: False, timeout_s=1.5)  # room for a second delivery, if there were one
    assert delivered(receiver) == in_outbox_order(shared_url, ids)
    assert sorted(delivered(receiver)) == sorted(ids)  # each once
    assert lease_gauge(other) == 1


@pytest.mark.slow
def test_a_holder_killed_mid_delivery_is_taken_over_after_its_lease(tiny_bundle, shared_url,
                                                                    tmp_path):
    hook = Receiver(hold_at=3).start()  # the third delivery hangs until released
    file = sinks_file(tmp_path, {"name": "mes", "type": "webhook", "url": hook.url,
                                 "timeout_s": 3})
    ports = [free_port(), free_port()]
    procs = [serve(tiny_bundle, port, {
        "KENSA_DATA_DIR": str(tmp_path / f"data-{port}"), "KENSA_DATABASE_URL": shared_url,
        "KENSA_SINKS_FILE": str(file), "KENSA_SINKS_LEASE_S": "9"}, tmp_path / f"{port}.log")
        for port in ports]
    bases = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        for base, proc in zip(bases, procs, strict=True):
            wait_ready(base, proc)
        ids = []
        for n in range(6):
            r = httpx.post(f"{bases[n % 2]}/v1/inspect", files=upload(washer_png(n)),
                           timeout=60)
            assert r.status_code == 200
            ids.append(r.json()["id"])
        assert wait_for(lambda: len(hook.posts) == 3)  # the holder is mid-delivery
        engine = make_engine(shared_url)
        holder, _ = Outbox(engine).holder("mes")
        engine.dispose()
        killed = next(p for p in procs if f":{p.pid}:" in holder)
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        hook.release.set()  # the answer goes to a dead server: it never saved this one
        survivor = bases[procs.index(next(p for p in procs if p is not killed))]
        r = httpx.post(f"{survivor}/v1/inspect", files=upload(washer_png(6)), timeout=60)
        ids.append(r.json()["id"])
        assert wait_for(lambda: set(delivered(hook)) == set(ids), timeout_s=30), (
            len(delivered(hook)))
        wait_for(lambda: False, timeout_s=1.5)
        got = delivered(hook)
        in_flight = in_outbox_order(shared_url, ids)[2]
        # at least once: only the record in flight when the holder died came twice, and
        # the first arrivals are in outbox order
        assert {i: n for i, n in Counter(got).items() if n > 1} == {in_flight: 2}
        assert list(dict.fromkeys(got)) == in_outbox_order(shared_url, ids)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(30)
        hook.release.set()
        hook.stop()
