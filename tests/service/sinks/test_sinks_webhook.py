"""The webhook sink against a real HTTP receiver on loopback: signed, retried with backoff,
in order, filtered; and across a kill -9 of a real `kensa serve`."""

import hashlib
import hmac
import json
import signal

import httpx
import pytest
from service_helpers import upload, washer_png

from .sink_helpers import Receiver, free_port, sinks_file, wait_for

SECRET = "s3cret"


@pytest.fixture
def receiver():
    made = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs).start())
        return made[-1]

    yield make
    for r in made:
        r.stop()


def inspect(client, n: int, source: str = "cam-1", first_seed: int = 0, **params) -> list:
    answers = []
    for seed in range(first_seed, first_seed + n):
        r = client.post("/v1/inspect", files=upload(washer_png(seed)),
                        headers={"X-Kensa-Source": source}, params=params)
        assert r.status_code == 200, r.text
        answers.append(r.json())
    return answers


def metric(client, name: str, sink: str) -> float:
    text = client.get("/metrics").text
    line = next(x for x in text.splitlines() if x.startswith(f'{name}{{sink="{sink}"}}'))
    return float(line.split()[-1])


def test_a_receiver_that_fails_three_times_then_recovers_gets_everything_in_order(
        make_client, receiver, tmp_path):
    hook = receiver(fail_first=3)
    client = make_client(sinks_file=sinks_file(tmp_path, {
        "name": "mes", "type": "webhook", "url": hook.url, "secret": SECRET}))
    answers = inspect(client, 6)
    assert wait_for(lambda: len(hook.accepted()) == 6), hook.statuses
    got = [json.loads(body) for _, body in hook.accepted()]
    assert [g["id"] for g in got] == [a["id"] for a in answers]
    # the three failures were retries of the first record: nothing went past it
    assert [h["x-kensa-delivery"] for h, _ in hook.posts[:4]] == [answers[0]["id"]] * 4
    for headers, body in hook.posts:
        expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["x-kensa-signature"] == f"sha256={expected}"
    first = got[0]
    assert (first["source"], first["label"], first["score"]) == (
        "cam-1", answers[0]["label"], answers[0]["score"])
    assert first == client.get(f"/v1/inspections/{first['id']}").json()
    assert wait_for(lambda: metric(client, "kensa_sink_backlog", "mes") == 0)
    assert metric(client, "kensa_sink_delivered_total", "mes") == 6
    assert metric(client, "kensa_sink_retried_total", "mes") == 3
    assert metric(client, "kensa_sink_dropped_total", "mes") == 0


def test_each_sink_gets_what_its_filter_asks_for(make_client, receiver, tmp_path):
    every, abnormal, cam2 = receiver(), receiver(), receiver()
    client = make_client(sinks_file=sinks_file(
        tmp_path,
        {"name": "every", "type": "webhook", "url": every.url},
        {"name": "abnormal", "type": "webhook", "url": abnormal.url, "filter": "abnormal"},
        {"name": "cam2", "type": "webhook", "url": cam2.url, "source": "cam-2"}))
    answers = (inspect(client, 2, "cam-1") + inspect(client, 2, "cam-2", 2, threshold=0.001)
               + inspect(client, 2, "cam-1", 4, threshold=1e9))
    assert wait_for(lambda: len(every.accepted()) == 6)

    def ids(r: Receiver) -> list[str]:
        return [json.loads(body)["id"] for _, body in r.accepted()]

    wanted = [a["id"] for a in answers if a["label"] == "abnormal"]
    assert 2 <= len(wanted) <= 4  # threshold 0 makes two abnormal, 1e9 two normal
    assert wait_for(lambda: ids(abnormal) == wanted), ids(abnormal)
    assert wait_for(lambda: ids(cam2) == [a["id"] for a in answers[2:4]])
    assert ids(every) == [a["id"] for a in answers]


def test_nothing_answered_is_lost_to_the_sink_by_a_kill_9(tiny_bundle, receiver, tmp_path):
    from store.store_helpers import serve, wait_ready

    hook_port = free_port()  # nobody listens there yet: the receiver is down
    env = {"KENSA_DATA_DIR": str(tmp_path / "data"), "KENSA_SINKS_FILE": str(sinks_file(
        tmp_path, {"name": "mes", "type": "webhook",
                   "url": f"http://127.0.0.1:{hook_port}/hook", "secret": SECRET}))}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = serve(tiny_bundle, port, env, tmp_path / "server.log")
    try:
        wait_ready(base, proc)
        ids = []
        for seed in range(5):
            r = httpx.post(f"{base}/v1/inspect", files=upload(washer_png(seed)), timeout=30)
            assert r.status_code == 200
            ids.append(r.json()["id"])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    hook = receiver(port=hook_port)
    proc = serve(tiny_bundle, port, env, tmp_path / "server.log")
    try:
        wait_ready(base, proc)
        assert wait_for(lambda: len(hook.accepted()) >= 5), hook.statuses
        assert [json.loads(b)["id"] for _, b in hook.accepted()] == ids
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def test_beyond_its_backlog_a_sink_that_is_down_drops_the_oldest_and_counts_them(
        make_client, receiver, tmp_path):
    port = free_port()  # the receiver is down
    client = make_client(sinks_file=sinks_file(tmp_path, {
        "name": "mes", "type": "webhook", "url": f"http://127.0.0.1:{port}/hook",
        "max_backlog": 3}))
    answers = inspect(client, 6)
    assert wait_for(lambda: metric(client, "kensa_sink_dropped_total", "mes") >= 2)
    hook = receiver(port=port)
    assert wait_for(lambda: len(hook.accepted()) >= 3)
    assert wait_for(lambda: metric(client, "kensa_sink_backlog", "mes") == 0)
    got = [json.loads(b)["id"] for _, b in hook.accepted()]
    # the oldest went as the backlog overflowed (how many depends on when the receiver came
    # back); the newest three always arrive, and every record is either delivered or counted
    assert got[-3:] == [a["id"] for a in answers[-3:]]
    dropped = metric(client, "kensa_sink_dropped_total", "mes")
    assert len(got) + dropped == 6


def test_secrets_from_the_environment_sign_and_stay_out_of_logs_and_answers(
        make_client, receiver, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("KENSA_TEST_HOOK_SECRET", "hook-secret-from-env")
    monkeypatch.setenv("KENSA_TEST_HOOK_TOKEN", "url-token-from-env")
    hook = receiver(fail_first=2)  # failures are logged: with neither secret in them
    caplog.set_level("DEBUG")
    client = make_client(sinks_file=sinks_file(tmp_path, {
        "name": "mes", "type": "webhook", "url": hook.url + "?token=${KENSA_TEST_HOOK_TOKEN}",
        "secret": "${KENSA_TEST_HOOK_SECRET}"}))
    answers = inspect(client, 2)
    assert wait_for(lambda: len(hook.accepted()) == 2)
    for headers, body in hook.accepted():
        expected = hmac.new(b"hook-secret-from-env", body, hashlib.sha256).hexdigest()
        assert headers["x-kensa-signature"] == f"sha256={expected}"
        assert headers[":path"] == "/hook?token=url-token-from-env"
    assert "failed (HTTP 500 from http://127.0.0.1" in caplog.text
    shown = caplog.text + "".join(client.get(p).text for p in (
        "/health/ready", "/metrics", "/v1/inspections", "/openapi.json",
        f"/v1/inspections/{answers[0]['id']}"))
    for secret in ("hook-secret-from-env", "url-token-from-env"):
        assert secret not in shown
