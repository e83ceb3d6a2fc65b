"""The OPC UA sink (asyncua): Kensa serves an OPC UA server whose nodes hold each source's
last verdict, for a PLC to read or subscribe to.

Node layout, in the namespace the sinks file names (``namespace``)::

    Objects/Kensa                            folder            ns=<i>;s=kensa
      <source>                               object            ns=<i>;s=kensa/<source>
        Label         String                 normal | abnormal
        Score         Double                 the image's anomaly score
        Threshold     Double                 the score at and above which it is abnormal
        Part          String                 the model (part) that judged it
        PartId        String                 X-Kensa-Part-Id of the request ("" when none)
        InspectionId  String                 the record's id (GET /v1/inspections/{id})
        Timestamp     DateTime               when it was inspected (UTC)
        Count         UInt32                 verdicts delivered for this source since start

A source's object appears with its first verdict (a record without a source is ``none``). The
values of one verdict are written in that order, ``Count`` last: a PLC that subscribes to
``Count`` reads the other values of the same verdict once it changes. The variables are
read-only for clients.

Each server serves its own nodes, fed from the shared outbox (every server sees every record),
so this sink holds no lease: its position lives in the process and starts at the end of the
log; after a restart a source's nodes return with its next verdict and ``Count`` restarts at 0.

Security: the endpoints offered are the sink's ``security`` list (None, Basic256Sha256 Sign,
SignAndEncrypt with the given certificate, whose URI becomes the server's application URI).
With ``username`` only that user gets a session (anonymous is refused); client certificates
are not checked against a trust list. asyncua 2.1 opens an unsecured channel for a client that
asks for one even when None is not offered, so the offer alone is no guarantee of encryption.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
from datetime import UTC, datetime

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager

from .config import OpcUaSink, SinksConfigError
from .delivery import DeliveryFailed

# name, OPC UA type, how to take it from a records row; Count comes last, apart
FIELDS = (
    ("Label", ua.VariantType.String, lambda r: r["label"]),
    ("Score", ua.VariantType.Double, lambda r: float(r["score"])),
    ("Threshold", ua.VariantType.Double, lambda r: float(r["threshold"])),
    ("Part", ua.VariantType.String, lambda r: r.get("model_name") or ""),
    ("PartId", ua.VariantType.String, lambda r: r.get("part_id") or ""),
    ("InspectionId", ua.VariantType.String, lambda r: r["id"]),
    ("Timestamp", ua.VariantType.DateTime, lambda r: _utc(r["created_at"])),
)
POLICIES = {
    "none": ua.SecurityPolicyType.NoSecurity,
    "sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "sign_and_encrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
}
logging.getLogger("asyncua").setLevel(logging.WARNING)  # it logs every session at INFO


def _certificate_uri(certificate) -> str | None:
    """The application URI in a certificate's subject alternative names, if any."""
    from cryptography import x509

    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = names.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class _OneUser(UserManager):
    """Lets in the one configured user (any other, and anonymous, are refused)."""

    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username, password

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username == self.username and hmac.compare_digest(
                (password or "").encode(), self.password.encode()):
            return User(role=UserRole.User)
        return None


class OpcUa:
    """One OPC UA server, run on an event loop of its own thread; ``send`` writes a verdict's
    values from the dispatcher's thread."""

    local = True  # its position is this process's: no shared position, no lease

    def __init__(self, config: OpcUaSink) -> None:
        self.config = config
        self.endpoint = f"opc.tcp://{config.host}:{config.port}/kensa"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._sources: dict[str, tuple[dict, int]] = {}

    def open(self) -> None:
        """Starts the server; raises SinksConfigError when it cannot (port taken, bad key)."""
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, name=f"kensa-opcua-{self.config.name}",
                         daemon=True).start()
        self._loop = loop
        try:
            self._call(self._start(), 30)
        except Exception as exc:  # noqa: BLE001 - whatever stops it is a start-up error
            self.close()
            raise SinksConfigError(f"sink {self.config.name!r}: the OPC UA server cannot "
                                   f"start on {self.endpoint} ({type(exc).__name__}: {exc})"
                                   ) from None

    async def _start(self) -> None:
        c = self.config
        users = (_OneUser(c.username, c.password.get_secret_value())
                 if c.username is not None else None)
        server = Server(user_manager=users)
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name(f"Kensa ({c.name})")
        server.set_security_policy([POLICIES[p] for p in c.security])
        uri = f"urn:kensa:opcua:{c.name}"
        if c.certificate is not None:
            await server.load_certificate(str(c.certificate))
            await server.load_private_key(str(c.private_key))
            uri = _certificate_uri(server.iserver.certificate) or uri
        await server.set_application_uri(uri)  # clients check it against the certificate
        server.set_identity_tokens([ua.UserNameIdentityToken] if users
                                   else [ua.AnonymousIdentityToken])
        self.namespace = await server.register_namespace(c.namespace)
        self.folder = await server.nodes.objects.add_folder(
            ua.NodeId("kensa", self.namespace), ua.QualifiedName("Kensa", self.namespace))
        await server.start()
        self._server = server

    def _call(self, coroutine, timeout_s: float):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def send(self, ident: str, body: bytes, record: dict) -> None:
        try:
            self._call(self._write(record), self.config.timeout_s)
        except Exception as exc:  # noqa: BLE001 - a failed write is retried by the dispatcher
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None

    async def _write(self, record: dict) -> None:
        source = record.get("source") or "none"
        if source not in self._sources:
            self._sources[source] = (await self._add_source(source), 0)
        variables, count = self._sources[source]
        for name, kind, value in FIELDS:
            await variables[name].write_value(ua.Variant(value(record), kind))
        await variables["Count"].write_value(ua.Variant(count + 1, ua.VariantType.UInt32))
        self._sources[source] = (variables, count + 1)

    async def _add_source(self, source: str) -> dict:
        ns = self.namespace
        node = await self.folder.add_object(ua.NodeId(f"kensa/{source}", ns),
                                            ua.QualifiedName(source, ns))
        variables = {}
        for name, kind, _ in (*FIELDS, ("Count", ua.VariantType.UInt32, None)):
            initial = {ua.VariantType.String: "", ua.VariantType.Double: 0.0,
                       ua.VariantType.UInt32: 0,
                       ua.VariantType.DateTime: datetime(1970, 1, 1, tzinfo=UTC)}[kind]
            variables[name] = await node.add_variable(
                ua.NodeId(f"kensa/{source}/{name}", ns), ua.QualifiedName(name, ns),
                initial, varianttype=kind)
        return variables

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        server, self._server = self._server, None
        if server is not None:
            try:
                asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
            except Exception as exc:  # noqa: BLE001 - stopping anyway
                logging.getLogger("kensa.sinks").debug("OPC UA stop: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
