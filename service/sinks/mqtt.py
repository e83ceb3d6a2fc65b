"""The MQTT sink (paho-mqtt): publishes each record as JSON to a topic made from a template.

QoS 1 by default: a delivery counts once the broker acknowledged it (PUBACK) within the sink's
timeout; otherwise the connection is dropped and the dispatcher publishes the same record
again (at least once: a receiver may see one twice across a broker restart, never none).
``retain`` keeps the last message per topic on the broker, so with ``{source}`` in the topic a
PLC that connects later reads each source's last verdict at once.
"""

from __future__ import annotations

import ssl
import threading
import uuid

import paho.mqtt.client as mqtt

from .config import MqttSink, Tls
from .delivery import DeliveryFailed


def topic_of(template: str, record: dict) -> str:
    """The topic of ``record``; MQTT wildcards in the values become ``_``, missing values
    ``none``."""
    def clean(value) -> str:
        text = str(value) if value not in (None, "") else "none"
        return text.replace("+", "_").replace("#", "_")

    return template.format(part=clean(record.get("model_name")),
                           source=clean(record.get("source")),
                           part_id=clean(record.get("part_id")),
                           label=clean(record.get("label")),
                           model_version=clean(record.get("model_version")))


class Mqtt:
    def __init__(self, config: MqttSink) -> None:
        self.config = config
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()

    def _connect(self) -> mqtt.Client:
        c = self.config
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=c.client_id or f"kensa-{c.name}-{uuid.uuid4().hex[:8]}",
                             protocol=mqtt.MQTTv311, clean_session=True)
        if c.username is not None:
            client.username_pw_set(c.username, c.password and c.password.get_secret_value())
        if c.tls:
            tls = c.tls if isinstance(c.tls, Tls) else Tls()
            client.tls_set(ca_certs=_str(tls.ca_file), certfile=_str(tls.cert_file),
                           keyfile=_str(tls.key_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self._connected.clear()
        client.on_connect = lambda cl, ud, flags, rc, props: (
            self._connected.set() if not rc.is_failure else None)
        client.on_disconnect = lambda *args: self._connected.clear()
        try:
            client.connect_async(c.host, c.port, keepalive=c.keepalive_s)
            client.loop_start()
        except (OSError, ValueError) as exc:
            raise DeliveryFailed(f"cannot reach {c.host}:{c.port} ({exc})") from None
        return client

    def send(self, ident: str, body: bytes, record: dict) -> None:
        c = self.config
        if self._client is None:
            self._client = self._connect()
        try:
            if not self._connected.wait(c.timeout_s):
                raise DeliveryFailed(f"no connection to {c.host}:{c.port} "
                                     f"within {c.timeout_s} s")
            info = self._client.publish(topic_of(c.topic, record), body, qos=c.qos,
                                        retain=c.retain)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise DeliveryFailed(f"publish refused: {mqtt.error_string(info.rc)}")
            info.wait_for_publish(c.timeout_s)
            if not info.is_published():
                raise DeliveryFailed(f"no acknowledgement from {c.host}:{c.port} "
                                     f"within {c.timeout_s} s")
        except (DeliveryFailed, RuntimeError, ValueError, OSError) as exc:
            # a fresh connection next time: paho must not resend this one on its own as well
            self.close()
            if isinstance(exc, DeliveryFailed):
                raise
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()


def _str(path) -> str | None:
    return str(path) if path is not None else None
