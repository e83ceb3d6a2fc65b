"""The MQTT sink against a real Mosquitto broker on loopback (skipped where Debian's
``mosquitto`` is not installed, unless KENSA_REQUIRE_MOSQUITTO=1): QoS 1, each verdict once and
in order, the last verdict per source retained, a broker restart mid-run loses nothing."""

import json

import pytest

from .sink_helpers import Broker, Subscriber, need_mosquitto, sinks_file, wait_for
from .test_sinks_webhook import inspect, metric


@pytest.fixture
def broker():
    need_mosquitto()
    b = Broker().start()
    yield b
    b.destroy()


@pytest.fixture
def subscriber(broker):
    made = []

    def make(**kwargs) -> Subscriber:
        made.append(Subscriber(broker.port, **kwargs))
        return made[-1]

    yield make
    for s in made:
        s.close()


def mqtt_sink(broker, **extra) -> dict:
    return {"name": "gate", "type": "mqtt", "host": "127.0.0.1", "port": broker.port} | extra


def ids(messages) -> list[str]:
    return [json.loads(payload)["id"] for _, payload, _ in messages]


def test_every_verdict_arrives_once_in_order_and_the_last_per_source_is_retained(
        make_client, broker, subscriber, tmp_path):
    live = subscriber()
    client = make_client(sinks_file=sinks_file(tmp_path, mqtt_sink(broker)))
    answers = []
    for i in range(4):
        answers += inspect(client, 2, f"cam-{i % 2 + 1}", first_seed=2 * i)
    assert wait_for(lambda: len(live.received()) >= 8)
    got = live.received()
    assert ids(got) == [a["id"] for a in answers]
    assert [t for t, _, _ in got[:2]] == ["kensa/tiny/cam-1/verdict"] * 2
    assert wait_for(lambda: metric(client, "kensa_sink_delivered_total", "gate") == 8)
    # a PLC that connects now reads each source's last verdict at once
    late = subscriber(client_id="kensa-test-late")
    assert wait_for(lambda: len(late.received()) == 2)
    retained = {t: json.loads(p)["id"] for t, p, flag in late.received() if flag}
    assert retained == {"kensa/tiny/cam-1/verdict": answers[5]["id"],
                        "kensa/tiny/cam-2/verdict": answers[7]["id"]}


def test_a_broker_restart_mid_run_loses_nothing(make_client, broker, subscriber, tmp_path):
    live = subscriber()
    client = make_client(sinks_file=sinks_file(tmp_path, mqtt_sink(broker, filter="all")))
    before = inspect(client, 4)
    assert wait_for(lambda: len(live.received()) == 4)
    broker.stop()
    during = inspect(client, 4, first_seed=4)  # answered and recorded; the sink waits
    assert wait_for(lambda: metric(client, "kensa_sink_retried_total", "gate") >= 1)
    broker.start()
    after = inspect(client, 4, first_seed=8)
    assert wait_for(lambda: len(live.received()) >= 12, timeout_s=60), len(live.received())
    assert ids(live.received()) == [a["id"] for a in before + during + after]
    assert metric(client, "kensa_sink_dropped_total", "gate") == 0
