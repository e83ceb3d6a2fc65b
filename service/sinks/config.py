"""The sinks file (``KENSA_SINKS_FILE``): YAML, read and checked once at start-up.

.. code-block:: yaml

    sinks:
      - name: mes                       # unique; letters, digits, . _ -
        type: webhook
        url: http://mes.local/kensa/verdicts
        secret: ${KENSA_MES_SECRET}     # HMAC-SHA256 key of X-Kensa-Signature (optional)
        timeout_s: 5
        filter: all                     # all | abnormal
      - name: reject-gate
        type: mqtt
        host: broker.local
        port: 1883
        topic: kensa/{part}/{source}/verdict
        filter: abnormal
        source: [line-2/cam-1]          # only these sources (optional)
      - name: plc
        type: opcua                     # Kensa serves an OPC UA server (see .opcua)
        host: 0.0.0.0
        port: 4840
        namespace: urn:kensa:line-2
        username: plc                   # optional; then anonymous clients are refused
        password: ${KENSA_OPCUA_PASSWORD}

``${NAME}`` anywhere in a value is replaced by the environment variable ``NAME`` (secrets
stay out of the file); a variable that is not set stops the server naming it. Secrets
(``secret``, ``password``) are kept as ``SecretStr``: no log line, error or API answer shows
them, and a start-up error shows ``${NAME}`` where a value came from the environment.

Anything wrong stops the server at start with a message naming the file and the field.
"""

from __future__ import annotations

import os
import re
import string
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from models.errors import KensaError

TOPIC_FIELDS = ("part", "source", "part_id", "label", "model_version")
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
TYPES = ("webhook", "mqtt", "opcua")


class SinksConfigError(KensaError):
    """The sinks file is missing, not YAML, or says something that cannot work."""


class _Sink(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$",
                      description="Unique name (metrics label, outbox position).")
    filter: Literal["all", "abnormal"] = Field(
        "all", description="all: every verdict; abnormal: abnormal verdicts only.")
    source: list[str] | None = Field(
        None, description="Only verdicts from these sources (one name or a list).")
    max_backlog: int = Field(
        100_000, ge=1, description="Most undelivered records kept for this sink; beyond it "
                                   "the oldest are dropped (and counted).")
    retry_initial_s: float = Field(1.0, gt=0, description="First wait after a failure.")
    retry_max_s: float = Field(60.0, gt=0, description="Longest wait between retries.")
    timeout_s: float = Field(5.0, gt=0, description="How long one delivery may take.")

    @field_validator("source", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    def wants(self, record: dict) -> bool:
        """Whether this sink delivers ``record`` (a records row)."""
        if self.filter == "abnormal" and record["label"] != "abnormal":
            return False
        return self.source is None or record["source"] in self.source


class WebhookSink(_Sink):
    type: Literal["webhook"]
    url: str = Field(description="http(s) URL to POST to.")
    secret: SecretStr | None = Field(None, min_length=1,
                                     description="Key of the X-Kensa-Signature HMAC-SHA256.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value


class Tls(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


class MqttSink(_Sink):
    type: Literal["mqtt"]
    host: str = Field(min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    topic: str = Field("kensa/{part}/{source}/verdict",
                       description="Topic template; fields: " + ", ".join(TOPIC_FIELDS))
    qos: Literal[0, 1, 2] = 1
    retain: bool = Field(True, description="The broker keeps the last message per topic.")
    username: str | None = None
    password: SecretStr | None = None
    tls: Tls | bool = False
    client_id: str | None = None
    keepalive_s: int = Field(30, ge=5)

    @field_validator("topic")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            names = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
        except ValueError as exc:
            raise ValueError(f"not a topic template ({exc})") from None
        unknown = [n for n in names if n not in TOPIC_FIELDS]
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}; use {', '.join(TOPIC_FIELDS)}")
        if "+" in value or "#" in value:
            raise ValueError("wildcards + and # cannot be published to")
        return value


class OpcUaSink(_Sink):
    type: Literal["opcua"]
    host: str = Field("0.0.0.0", min_length=1, description="Address the server listens on.")
    port: int = Field(4840, ge=1, le=65535)
    namespace: str = Field("urn:kensa", min_length=1,
                           description="Namespace URI of the nodes (a PLC finds its index).")
    security: list[Literal["none", "sign", "sign_and_encrypt"]] = Field(
        default_factory=lambda: ["none"], min_length=1,
        description="Security modes offered: none, and Basic256Sha256 sign / "
                    "sign_and_encrypt (these need certificate and private_key).")
    certificate: Path | None = Field(None, description="Server certificate (DER or PEM).")
    private_key: Path | None = Field(None, description="Its private key (PEM).")
    username: str | None = Field(None, min_length=1,
                                 description="The one user let in; unset: anonymous.")
    password: SecretStr | None = Field(None, min_length=1)

    @field_validator("security", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _complete(self) -> OpcUaSink:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("certificate and private_key go together")
        if set(self.security) - {"none"} and self.certificate is None:
            raise ValueError("security sign / sign_and_encrypt need certificate and "
                             "private_key")
        for path in (self.certificate, self.private_key):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} is not a file")
        return self


Sink = Annotated[WebhookSink | MqttSink | OpcUaSink, Field(discriminator="type")]


class SinksFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sinks: list[Sink] = Field(min_length=1)

    @field_validator("sinks")
    @classmethod
    def _unique(cls, value: list) -> list:
        names = [s.name for s in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"sink names must be unique; {twice} used more than once")
        return value


def load_sinks(path: Path | str) -> SinksFile:
    """Reads and checks the sinks file.

    Raises:
        SinksConfigError: naming the file and each wrong field (``sinks[1].url: ...``).
    """
    import yaml

    where = f"KENSA_SINKS_FILE {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SinksConfigError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SinksConfigError(f"{where}: not valid YAML ({exc})") from None
    used: dict[str, str] = {}
    data = _from_environment(data, used, where, "")
    try:
        return SinksFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors())
        for name, value in used.items():  # an error shows the reference, never the value
            if len(value) >= 3:
                problems = problems.replace(value, f"${{{name}}}")
        raise SinksConfigError(f"{where}: {problems}") from None


def _from_environment(data, used: dict[str, str], where: str, at: str):
    """``data`` with every ``${NAME}`` in its strings replaced by the variable's value
    (``used`` gets each name and value).

    Raises:
        SinksConfigError: a variable is not set (naming it and where it is used).
    """
    if isinstance(data, dict):
        return {k: _from_environment(v, used, where, f"{at}.{k}" if at else str(k))
                for k, v in data.items()}
    if isinstance(data, list):
        return [_from_environment(v, used, where, f"{at}[{i}]") for i, v in enumerate(data)]
    if not isinstance(data, str):
        return data

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise SinksConfigError(f"{where}: {at}: the environment variable {name} is not "
                                   "set (the file says ${" + name + "})")
        used[name] = os.environ[name]
        return os.environ[name]

    return ENV_REFERENCE.sub(value, data)


def _problem(error: dict) -> str:
    loc = list(error["loc"])
    # the discriminated union puts the type's tag in the path: sinks.0.webhook.url
    if len(loc) >= 3 and loc[0] == "sinks" and loc[2] in TYPES:
        del loc[2]
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "union_tag_invalid":
        message = "'type' must be webhook, mqtt or opcua"
    elif error["type"] == "model_type" and not loc:
        message = "must be a mapping with a 'sinks' list"
    elif error["type"] == "union_tag_not_found":
        message = "each sink needs a 'type': webhook, mqtt or opcua"
    return f"{text or 'the file'}: {message}"
