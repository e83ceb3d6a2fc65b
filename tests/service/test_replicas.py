"""Replicas behind a load balancer: two real ``kensa serve`` processes sharing one bundle (or
one models root), one records folder and one records database, behind a real nginx running the
repository's config (deploy/nginx/kensa.conf.template)."""

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx
import pytest
from models_root_helpers import make_root
from nginx_server import free_port, running_nginx
from service_helpers import upload, washer_png
from store.postgres_cluster import Cluster, available
from test_server_process import running_server

pytestmark = pytest.mark.slow

REQUESTS = 200
CLIENTS = 8
POLL_S = 0.5  # KENSA_MODEL_POLL_S of the activation test
SWAP_MARGIN_S = 15.0  # loading and warming a version on a loaded 2-core machine


@pytest.fixture(scope="module")
def records_database(tmp_path_factory):
    """One records database for both replicas: PostgreSQL where it is installed (as a plant
    runs replicas), else the SQLite file in the shared data folder."""
    if not available():
        yield None
        return
    cluster = Cluster()
    cluster.start()
    yield cluster.new_database()
    cluster.destroy()


def test_two_replicas_behind_nginx_answer_every_request_and_share_the_records(
        tiny_bundle, records_database, tmp_path):
    env = {"KENSA_DATA_DIR": str(tmp_path / "records"), "KENSA_MAX_UPLOAD_MB": "1"}
    if records_database:
        env["KENSA_DATABASE_URL"] = records_database
    with ExitStack() as stack:
        replicas = [stack.enter_context(running_server(tiny_bundle, env, tmp_path / f"r{n}.log"))
                    for n in range(2)]
        base = stack.enter_context(running_nginx(
            tmp_path / "nginx", [r.removeprefix("http://") for r in replicas]))
        images = [washer_png(n) for n in range(8)]
        with httpx.Client(base_url=base, timeout=60) as client:
            def inspect(n: int) -> httpx.Response:
                return client.post("/v1/inspect", files=upload(images[n % len(images)]),
                                   data={"source": f"cam-{n % 2}"})

            with ThreadPoolExecutor(CLIENTS) as pool:
                answers = list(pool.map(inspect, range(REQUESTS)))
            assert Counter(a.status_code for a in answers) == {200: REQUESTS}
            served = Counter(a.headers["X-Kensa-Upstream"] for a in answers)
            assert set(served) == {r.removeprefix("http://") for r in replicas}
            assert min(served.values()) >= REQUESTS // 5, served  # round robin spreads them
            ids = {a.json()["id"] for a in answers}
            assert len(ids) == REQUESTS
            # one history: every replica lists every record, whoever judged it
            for replica in replicas:
                page = httpx.get(f"{replica}/v1/inspections", params={"limit": 500},
                                 timeout=30).json()
                assert {r["id"] for r in page["items"]} == ids
            # Kensa's own refusals pass through nginx unchanged: JSON with the fix
            big = client.post("/v1/inspect", files=upload(b"\0" * (1024 * 1024 + 1)))
            assert big.status_code == 413
            detail = big.json()["detail"]
            assert detail.startswith("the upload 'part.png' is") and "KENSA_MAX_UPLOAD_MB" in detail


def test_with_no_replica_up_nginx_answers_503_in_kensa_form(tmp_path):
    with running_nginx(tmp_path / "nginx", [f"127.0.0.1:{free_port()}"]) as base:
        r = httpx.get(f"{base}/health/ready", timeout=30)
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "5"
    assert r.json()["detail"].startswith("no Kensa inspector answered")


def test_an_activation_is_seen_by_both_replicas(tmp_path):
    """Two replicas on one models root (issue 28): a version activated through one replica's
    API is what both answer with, through nginx, once the other has read the part's
    ``active`` file (every KENSA_MODEL_POLL_S); no restart."""
    a, b = make_root(tmp_path / "models")
    env = {"KENSA_MODELS_DIR": str(tmp_path / "models"), "KENSA_MODEL_POLL_S": str(POLL_S),
           "KENSA_RECORDS": "off"}
    image = washer_png(size=32)
    with ExitStack() as stack:
        replicas = [stack.enter_context(running_server(None, env, tmp_path / f"r{n}.log"))
                    for n in range(2)]
        upstreams = {r.removeprefix("http://") for r in replicas}
        base = stack.enter_context(running_nginx(tmp_path / "nginx", sorted(upstreams)))
        with httpx.Client(base_url=base, timeout=60) as client:
            def versions_by_replica(n: int) -> dict[str, set[str]]:
                seen: dict[str, set[str]] = {}
                for _ in range(n):
                    r = client.post("/v1/inspect", files=upload(image))
                    assert r.status_code == 200, r.text
                    assert r.json()["model"] == "washer"
                    seen.setdefault(r.headers["X-Kensa-Upstream"], set()).add(
                        r.json()["model_version"])
                return seen

            assert versions_by_replica(6) == {u: {a} for u in upstreams}
            r = httpx.post(f"{replicas[0]}/v1/models/washer/activate", json={"version": b},
                           timeout=60)
            assert r.status_code == 200, r.text
            assert r.json()["serving"] == b
            # the asked replica swapped at once; the other follows within the poll interval
            # (plus the load; the bound only stops a broken swap from hanging the test)
            deadline = time.monotonic() + POLL_S + SWAP_MARGIN_S
            while versions_by_replica(4) != {u: {b} for u in upstreams}:
                assert time.monotonic() < deadline, "the other replica kept the old version"
                time.sleep(POLL_S / 4)
            assert versions_by_replica(10) == {u: {b} for u in upstreams}  # and it stays
        for replica in replicas:
            listed = httpx.get(f"{replica}/v1/models", timeout=30).json()["models"]
            assert [(p["model"], p["active"], p["serving"]) for p in listed] == \
                [("washer", b, b)]
            metrics = httpx.get(f"{replica}/metrics", timeout=30).text
            assert 'kensa_model_swaps_total{part="washer"} 1.0' in metrics
