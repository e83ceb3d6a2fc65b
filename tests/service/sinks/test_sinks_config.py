"""KENSA_SINKS_FILE: a good file loads, every bad one stops the server naming the field."""

import subprocess
import sys

import pytest

from service.app import create_app
from service.sinks import SinksConfigError, sinks_of
from service.sinks.config import load_sinks
from service.sinks.mqtt import topic_of

from .sink_helpers import free_port


def write(tmp_path, text: str):
    path = tmp_path / "sinks.yaml"
    path.write_text(text)
    return path


def test_a_good_file_loads_with_its_defaults(tmp_path):
    sinks = load_sinks(write(tmp_path, """
sinks:
  - {name: mes, type: webhook, url: "https://mes.local/kensa", secret: k}
  - {name: gate, type: mqtt, host: broker, filter: abnormal, source: line-2/cam-1,
     tls: {ca_file: /etc/ca.pem}, username: kensa, password: pw}
"""))
    mes, gate = sinks.sinks
    assert (mes.type, mes.timeout_s, mes.filter, mes.max_backlog) == ("webhook", 5.0, "all",
                                                                     100_000)
    assert (gate.port, gate.qos, gate.retain, gate.source) == (1883, 1, True, ["line-2/cam-1"])
    assert gate.topic == "kensa/{part}/{source}/verdict"
    row = {"label": "abnormal", "source": "line-2/cam-1", "model_name": "screws"}
    assert gate.wants(row) and not gate.wants(row | {"label": "normal"})
    assert not gate.wants(row | {"source": "cam-9"})
    assert topic_of(gate.topic, row) == "kensa/screws/line-2/cam-1/verdict"
    assert topic_of(gate.topic, row | {"source": None}) == "kensa/screws/none/verdict"
    assert topic_of("k/{source}", {"source": "a+b#"}) == "k/a_b_"


@pytest.mark.parametrize(("text", "message"), [
    ("sinks: [{name: a, type: webhook, url: 'ftp://x'}]",
     "sinks[0].url: 'ftp://x' is not an http:// or https:// URL"),
    ("sinks: [{name: a, type: plc}]", "sinks[0]: 'type' must be webhook, mqtt or opcua"),
    ("sinks: [{name: a, type: opcua, port: 0}]", "sinks[0].port: Input should be greater"),
    ("sinks: [{name: a, type: opcua, security: encrypt}]",
     "sinks[0].security[0]: Input should be 'none', 'sign' or 'sign_and_encrypt'"),
    ("sinks: [{name: a, type: opcua, security: sign}]",
     "sinks[0]: security sign / sign_and_encrypt need certificate and private_key"),
    ("sinks: [{name: a, type: opcua, username: plc}]",
     "sinks[0]: username and password go together"),
    ("sinks: [{name: a, type: opcua, certificate: /nope.der, private_key: /nope.pem}]",
     "sinks[0]: /nope.der is not a file"),
    ("sinks: [{name: a, type: opcua, namespace: ''}]", "sinks[0].namespace: String should"),
    ("sinks: [{name: a, url: 'http://x'}]", "sinks[0]: each sink needs a 'type'"),
    ("sinks: [{name: a, type: mqtt, host: h, topic: 'k/{serial}'}]",
     "sinks[0].topic: unknown field(s) ['serial']"),
    ("sinks: [{name: a, type: mqtt, host: h, qos: 3}]", "sinks[0].qos"),
    ("sinks: [{name: a, type: webhook, url: 'http://x', filter: normal}]", "sinks[0].filter"),
    ("sinks: [{name: a, type: webhook, url: 'http://x', secrets: k}]",
     "sinks[0].secrets: Extra inputs are not permitted"),
    ("sinks: [{name: a, type: webhook, url: 'http://x'}, {name: a, type: mqtt, host: h}]",
     "sink names must be unique; ['a']"),
    ("sinks: []", "sinks: List should have at least 1 item"),
    ("- a\n- b", "the file: must be a mapping with a 'sinks' list"),
    ("sinks: [", "not valid YAML"),
])
def test_a_bad_file_is_refused_naming_the_field(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(SinksConfigError) as err:
        load_sinks(path)
    assert str(err.value).startswith(f"KENSA_SINKS_FILE {path}: ")
    assert message in str(err.value)


def test_a_missing_file_and_recording_off_are_refused(make_settings, tmp_path):
    with pytest.raises(SinksConfigError, match="cannot read it"):
        sinks_of(make_settings(sinks_file=tmp_path / "nope.yaml"))
    path = write(tmp_path, "sinks: [{name: a, type: webhook, url: 'http://x'}]")
    with pytest.raises(SinksConfigError, match="needs recording on"):
        sinks_of(make_settings(sinks_file=path, records=False))
    assert sinks_of(make_settings()) is None


def test_the_app_does_not_start_with_a_bad_file(make_settings, tmp_path):
    from service_helpers import TestClient

    app = create_app(make_settings(sinks_file=write(tmp_path, "sinks: [{name: a}]")))
    with pytest.raises(SinksConfigError), TestClient(app):
        pass


def serve_with_sinks(path, bundle, tmp_path) -> subprocess.CompletedProcess:
    """A real ``kensa serve`` with the sinks file ``path``, run until it exits (a bad file
    stops it at start)."""
    env = {"KENSA_SINKS_FILE": str(path), "KENSA_DATA_DIR": str(tmp_path / "data"),
           "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "service.cli", "serve", "--model",
                           str(bundle), "--port", str(free_port())], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_kensa_serve_stops_at_once_naming_the_field(tiny_bundle, tmp_path):
    path = write(tmp_path, "sinks: [{name: gate, type: mqtt}]")
    done = serve_with_sinks(path, tiny_bundle, tmp_path)
    assert done.returncode == 2
    assert f"KENSA_SINKS_FILE {path}: sinks[0].host: Field required" in done.stderr


def test_secrets_come_from_the_environment_and_are_never_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("KENSA_TEST_SECRET", "hmac-key-from-env")
    monkeypatch.setenv("KENSA_TEST_PW", "broker-pw-from-env")
    sinks = load_sinks(write(tmp_path, """
sinks:
  - {name: mes, type: webhook, url: "http://mes.local/k", secret: "${KENSA_TEST_SECRET}"}
  - {name: gate, type: mqtt, host: broker, username: k, password: "${KENSA_TEST_PW}"}
  - {name: plc, type: opcua, username: plc, password: "pre-${KENSA_TEST_PW}"}
"""))
    mes, gate, plc = sinks.sinks
    assert mes.secret.get_secret_value() == "hmac-key-from-env"
    assert gate.password.get_secret_value() == "broker-pw-from-env"
    assert plc.password.get_secret_value() == "pre-broker-pw-from-env"
    for shown in (repr(sinks), str(sinks), sinks.model_dump_json()):
        assert "from-env" not in shown


def test_a_missing_variable_is_named_and_a_bad_value_from_the_environment_is_not_shown(
        tmp_path, monkeypatch):
    monkeypatch.delenv("KENSA_TEST_UNSET", raising=False)
    path = write(tmp_path, 'sinks: [{name: mes, type: webhook, url: "http://x",\n'
                           '         secret: "${KENSA_TEST_UNSET}"}]')
    with pytest.raises(SinksConfigError) as err:
        load_sinks(path)
    assert str(err.value) == (f"KENSA_SINKS_FILE {path}: sinks[0].secret: the environment "
                              "variable KENSA_TEST_UNSET is not set (the file says "
                              "${KENSA_TEST_UNSET})")
    monkeypatch.setenv("KENSA_TEST_URL", "ftp://user:token-123@mes.local/k")
    with pytest.raises(SinksConfigError) as err:
        load_sinks(write(tmp_path, 'sinks: [{name: mes, type: webhook, url: "${KENSA_TEST_URL}"}]'))
    assert "sinks[0].url: '${KENSA_TEST_URL}' is not an http:// or https:// URL" in str(err.value)
    assert "token-123" not in str(err.value)


def test_kensa_serve_names_the_missing_variable(tiny_bundle, tmp_path):
    path = write(tmp_path, "sinks: [{name: plc, type: opcua, username: plc,\n"
                           "         password: '${KENSA_OPCUA_PASSWORD}'}]")
    done = serve_with_sinks(path, tiny_bundle, tmp_path)
    assert done.returncode == 2
    assert ("sinks[0].password: the environment variable KENSA_OPCUA_PASSWORD is not set"
            in done.stderr)


def test_a_delivery_timeout_too_long_for_the_lease_is_refused(make_settings, tmp_path):
    path = write(tmp_path, "sinks: [{name: mes, type: webhook, url: 'http://x', timeout_s: 11},"
                           " {name: plc, type: opcua, timeout_s: 60}]")
    with pytest.raises(SinksConfigError) as err:
        sinks_of(make_settings(sinks_file=path))
    assert str(err.value) == (f"KENSA_SINKS_FILE {path}: sinks[0].timeout_s 11 is too long "
                              "for KENSA_SINKS_LEASE_S 30: make it at most a third of the lease")
    assert sinks_of(make_settings(sinks_file=path, sinks_lease_s=33)).sinks[0].timeout_s == 11
