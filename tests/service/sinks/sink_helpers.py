"""Real counterparts for the sink tests: a webhook receiver (an HTTP server on loopback), a
Mosquitto broker (Debian's ``mosquitto``, started on a free loopback port with a throwaway
config) and an MQTT subscriber (paho), and a sinks file writer."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml
from store.store_helpers import wait_for  # noqa: F401  (re-exported for the sink tests)

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
REQUIRE_MOSQUITTO = os.environ.get("KENSA_REQUIRE_MOSQUITTO") == "1"
FAST = {"retry_initial_s": 0.05, "retry_max_s": 0.2, "timeout_s": 2}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sinks_file(folder: Path, *sinks: dict) -> Path:
    path = Path(folder) / "sinks.yaml"
    path.write_text(yaml.safe_dump({"sinks": [FAST | s for s in sinks]}))
    return path


class Receiver:
    """A webhook receiver on 127.0.0.1: keeps every POST (headers, body); answers 500 to the
    first ``fail_first`` of them, 200 after. The POST numbered ``hold_at`` (1 = the first) is
    kept but answered only once ``release`` is set: its sender is caught mid-delivery."""

    def __init__(self, port: int | None = None, fail_first: int = 0,
                 hold_at: int | None = None) -> None:
        self.port = port or free_port()
        self.fail_left = fail_first
        self.hold_at = hold_at
        self.release = threading.Event()
        self.posts: list[tuple[dict, bytes]] = []
        self.statuses: list[int] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    status = 500 if receiver.fail_left > 0 else 200
                    receiver.fail_left -= status == 500
                    receiver.posts.append(({k.lower(): v for k, v in self.headers.items()}
                                           | {":path": self.path}, body))
                    receiver.statuses.append(status)
                    held = len(receiver.posts) == receiver.hold_at
                if held:
                    receiver.release.wait(60)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def accepted(self) -> list[tuple[dict, bytes]]:
        with self._lock:
            return [p for p, s in zip(self.posts, self.statuses, strict=True) if s == 200]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def need_mosquitto() -> None:
    import pytest

    if Path(MOSQUITTO).exists():
        return
    if REQUIRE_MOSQUITTO:
        pytest.fail("Mosquitto is required here (KENSA_REQUIRE_MOSQUITTO=1) but not installed: "
                    "apt-get install mosquitto")
    pytest.skip("Mosquitto is not installed (apt-get install mosquitto)")


class Broker:
    """A Mosquitto broker on 127.0.0.1:<free port>, persistence on (sessions and queued QoS 1
    messages survive a restart), in a temporary folder."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="kensa-mqtt-"))
        self.port = free_port()
        self.conf = self.root / "mosquitto.conf"
        user = pwd.getpwuid(os.getuid()).pw_name
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nuser {user}\n"
            f"persistence true\npersistence_location {self.root}/\n"
            f"log_dest file {self.root}/broker.log\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> Broker:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto never listened")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: it saves its persistence file
            self.proc.wait(10)
        self.proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class Subscriber:
    """A paho subscriber with a persistent session (QoS 1): messages published while it is
    away, or while the broker restarts, reach it when it is back."""

    def __init__(self, port: int, topic: str = "kensa/#", client_id: str = "kensa-test-sub"
                 ) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             clean_session=False, protocol=mqtt.MQTTv311)
        client.reconnect_delay_set(0.05, 0.5)
        # subscribing again on a kept session would replay the retained messages
        client.on_connect = lambda c, u, flags, rc, p: (
            self.subscribed.set() if flags.session_present else c.subscribe(topic, qos=1))
        client.on_subscribe = lambda *a: self.subscribed.set()
        client.on_message = self._keep
        client.connect("127.0.0.1", port)
        client.loop_start()
        self.client = client
        assert self.subscribed.wait(10), "the subscriber never subscribed"

    def _keep(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def received(self) -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
