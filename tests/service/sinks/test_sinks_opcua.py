"""The OPC UA sink: a real asyncua client on loopback reads and subscribes to the nodes the
real app writes after inspections; users, and the start-up errors of a server that cannot
start."""

import asyncio
import socket
import subprocess
import sys
from datetime import datetime

import pytest
from asyncua import Client, ua
from service_helpers import upload, washer_png

from service.app import create_app
from service.sinks import SinksConfigError

from .sink_helpers import free_port, sinks_file

NS = "urn:kensa:test-line"


def opcua_sink(port: int, **extra) -> dict:
    return {"name": "plc", "type": "opcua", "host": "127.0.0.1", "port": port,
            "namespace": NS} | extra


def inspect(client, seed: int, source: str, **headers_and_params) -> dict:
    params = {k: v for k, v in headers_and_params.items() if k == "threshold"}
    headers = {"X-Kensa-Source": source} | {
        k: v for k, v in headers_and_params.items() if k.startswith("X-")}
    r = client.post("/v1/inspect", files=upload(washer_png(seed)), headers=headers,
                    params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def read_source(opc: Client, source: str) -> dict:
    ns = await opc.get_namespace_index(NS)
    names = ("Label", "Score", "Threshold", "Part", "PartId", "InspectionId", "Timestamp",
             "Count")
    values = [await opc.get_node(ua.NodeId(f"kensa/{source}/{n}", ns)).read_value()
              for n in names]
    return dict(zip(names, values, strict=True))


class Changes:
    """An asyncua subscription handler: keeps every Count it is told of."""

    def __init__(self) -> None:
        self.counts: list[int] = []

    def datachange_notification(self, node, value, data) -> None:
        self.counts.append(value)


def test_a_plc_reads_and_subscribes_to_each_sources_last_verdict(make_client, tmp_path):
    port = free_port()
    client = make_client(sinks_file=sinks_file(tmp_path, opcua_sink(port)))
    endpoint = f"opc.tcp://127.0.0.1:{port}/kensa"

    async def scenario():
        first = await asyncio.to_thread(inspect, client, 0, "line-1/cam-1")
        async with Client(endpoint, timeout=5) as opc:
            ns = await opc.get_namespace_index(NS)
            count = opc.get_node(ua.NodeId("kensa/line-1/cam-1/Count", ns))

            async def value_of_count():
                try:
                    return await count.read_value()
                except ua.UaStatusCodeError:  # the node is not there yet
                    return 0
            for _ in range(100):
                if await value_of_count() == 1:
                    break
                await asyncio.sleep(0.1)
            assert (await read_source(opc, "line-1/cam-1"))["InspectionId"] == first["id"]
            changes = Changes()
            subscription = await opc.create_subscription(50, changes)
            await subscription.subscribe_data_change(count)
            later = [await asyncio.to_thread(inspect, client, 1, "line-1/cam-1",
                                             threshold=0.001, **{"X-Kensa-Part-Id": "SN-7"}),
                     await asyncio.to_thread(inspect, client, 2, "line-2/cam-1")]
            for _ in range(100):
                if changes.counts[-1:] == [2] and await _exists(opc, "line-2/cam-1"):
                    break
                await asyncio.sleep(0.1)
            one, two = (await read_source(opc, "line-1/cam-1"),
                        await read_source(opc, "line-2/cam-1"))
            with pytest.raises(ua.UaStatusCodeError):  # the PLC reads, never writes
                await count.write_value(ua.Variant(99, ua.VariantType.UInt32))
            return later, changes.counts, one, two

    (abnormal, other), counts, one, two = asyncio.run(scenario())
    assert counts == [1, 2]  # the value at subscription, then the new verdict's
    record = client.get(f"/v1/inspections/{abnormal['id']}").json()
    assert abnormal["label"] == "abnormal"
    assert one["Label"] == "abnormal" and one["Count"] == 2
    assert one["InspectionId"] == abnormal["id"] and one["PartId"] == "SN-7"
    assert one["Score"] == pytest.approx(abnormal["score"])
    assert one["Threshold"] == pytest.approx(0.001)
    assert one["Part"] == record["model_name"]
    assert abs((one["Timestamp"] - datetime.fromisoformat(record["created_at"])
        ).total_seconds()) < 0.01
    assert (two["Count"], two["InspectionId"], two["Label"], two["PartId"]) == (
        1, other["id"], other["label"], "")


async def _exists(opc: Client, source: str) -> bool:
    try:
        await read_source(opc, source)
        return True
    except ua.UaStatusCodeError:
        return False


def test_only_the_configured_user_gets_in(make_client, tmp_path, monkeypatch):
    monkeypatch.setenv("KENSA_TEST_OPCUA_PASSWORD", "pa55-w0rd-from-env")
    port = free_port()
    client = make_client(sinks_file=sinks_file(tmp_path, opcua_sink(
        port, username="plc", password="${KENSA_TEST_OPCUA_PASSWORD}")))
    answer = inspect(client, 0, "cam-1")
    endpoint = f"opc.tcp://127.0.0.1:{port}/kensa"

    async def connect(user: str | None, password: str | None):
        opc = Client(endpoint, timeout=5)
        if user is not None:
            opc.set_user(user)
            opc.set_password(password)
        async with opc:
            await asyncio.sleep(0)
            for _ in range(100):
                if await _exists(opc, "cam-1"):
                    break
                await asyncio.sleep(0.1)
            return (await read_source(opc, "cam-1"))["InspectionId"]

    assert asyncio.run(connect("plc", "pa55-w0rd-from-env")) == answer["id"]
    for user, password in ((None, None), ("plc", "wrong"), ("admin", "pa55-w0rd-from-env")):
        with pytest.raises(ua.UaStatusCodeError, match="Bad"):
            asyncio.run(connect(user, password))


def test_a_taken_port_stops_the_app_naming_the_endpoint(make_settings, tmp_path):
    from service_helpers import TestClient

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = create_app(make_settings(sinks_file=sinks_file(tmp_path, opcua_sink(port))))
        with pytest.raises(SinksConfigError) as err, TestClient(app):
            pass
    assert (f"sink 'plc': the OPC UA server cannot start on opc.tcp://127.0.0.1:{port}"
            f"/kensa (OSError") in str(err.value)


@pytest.mark.slow
def test_kensa_serve_with_a_taken_port_exits_2_naming_it(tiny_bundle, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"KENSA_SINKS_FILE": str(sinks_file(tmp_path, opcua_sink(port))),
               "KENSA_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
        done = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--model",
                               str(tiny_bundle), "--port", str(free_port())], env=env,
                              capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"the OPC UA server cannot start on opc.tcp://127.0.0.1:{port}/kensa" in done.stderr


def certificate(folder, name: str, uri: str):
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key, cert = folder / f"{name}.pem", folder / f"{name}.der"
    asyncio.run(setup_self_signed_certificate(
        key, cert, uri, "127.0.0.1",
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": name}))
    return cert, key


def test_sign_and_encrypt_offers_only_encrypted_endpoints_and_serves_an_encrypted_client(
        make_client, tmp_path):
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

    server_cert, server_key = certificate(tmp_path, "server", "urn:kensa:test:server")
    client_cert, client_key = certificate(tmp_path, "client", "urn:kensa:test:client")
    port = free_port()
    client = make_client(sinks_file=sinks_file(tmp_path, opcua_sink(
        port, security="sign_and_encrypt", certificate=str(server_cert),
        private_key=str(server_key), username="plc", password="pw-1234")))
    answer = inspect(client, 0, "cam-1")
    endpoint = f"opc.tcp://127.0.0.1:{port}/kensa"

    async def read(secure: bool):
        opc = Client(endpoint, timeout=5)
        opc.set_user("plc")
        opc.set_password("pw-1234")
        if secure:
            await opc.set_security(SecurityPolicyBasic256Sha256, str(client_cert),
                                   str(client_key), server_certificate=str(server_cert),
                                   mode=ua.MessageSecurityMode.SignAndEncrypt)
        async with opc:
            for _ in range(100):
                if await _exists(opc, "cam-1"):
                    break
                await asyncio.sleep(0.1)
            return (await read_source(opc, "cam-1"))["InspectionId"]

    assert asyncio.run(read(secure=True)) == answer["id"]
    offered = asyncio.run(Client(endpoint, timeout=5).connect_and_get_server_endpoints())
    assert {(e.SecurityMode, e.SecurityPolicyUri.rsplit("#", 1)[-1]) for e in offered} == {
        (ua.MessageSecurityMode.SignAndEncrypt, "Basic256Sha256")}
    assert {e.Server.ApplicationUri for e in offered} == {"urn:kensa:test:server"}
    # a client keeping to the offered endpoints cannot go without encryption (asyncua's
    # server itself would still open a plain channel to one that insists: see
    # docs/line-integration.md)
    with pytest.raises(ua.UaError, match="No matching endpoints"):
        asyncio.run(read(secure=False))
