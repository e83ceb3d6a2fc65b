"""Recording inspections from the routes: where an image came from (``source``, ``part_id``),
the record of each answer, and the store's life in the app.

Every inspection route awaits :func:`record` after its answers are built and before they go
out, so an answered image is recorded (committed, or fsynced to the journal while the database
is away). Without ``KENSA_RECORDS`` (``off``) it does nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Form, Header, Request
from prometheus_client import Counter, Gauge

from .config import Settings
from .errors import InvalidParameter
from .schemas import InspectionResult
from .store.recorder import Pending
from .store.retention import Retention
from .store.store import Store, StoreConfig
from .store.tables import utcnow

TAG = re.compile(r"^[\x20-\x7e]{1,64}$")


@dataclass(frozen=True)
class Origin:
    """Where an inspected image came from, as the client said (both optional)."""

    source: str | None = None
    part_id: str | None = None


def _tag(name: str, form: str | None, header: str | None, header_name: str) -> str | None:
    value = form if form not in (None, "") else header
    if value in (None, ""):
        return None
    if not TAG.match(value):
        raise InvalidParameter(
            f"'{name}' (multipart field '{name}' or header {header_name}) is {value!r}: send at "
            "most 64 printable ASCII characters (letters, digits, spaces, punctuation)")
    return value


def origin(source: Annotated[str | None, Form(
               description="Where the image came from (camera, line, station): at most 64 "
                           "printable characters; or header X-Kensa-Source.")] = None,
           part_id: Annotated[str | None, Form(
               description="The part's own id (serial, barcode): at most 64 printable "
                           "characters; or header X-Kensa-Part-Id.")] = None,
           x_kensa_source: Annotated[str | None, Header(include_in_schema=False)] = None,
           x_kensa_part_id: Annotated[str | None, Header(include_in_schema=False)] = None,
           ) -> Origin:
    return Origin(_tag("source", source, x_kensa_source, "X-Kensa-Source"),
                  _tag("part_id", part_id, x_kensa_part_id, "X-Kensa-Part-Id"))


OriginDep = Annotated[Origin, Depends(origin)]


def row_of(body: InspectionResult, origin: Origin, info: dict) -> dict:
    """The record columns of one answer (the writer adds the image's hash and kept state)."""
    return {
        "id": str(body.id), "created_at": utcnow(), "source": origin.source,
        "part_id": origin.part_id, "model_name": str(info.get("name", "")),
        "model_version": body.model_version, "model": body.model,
        "label": body.label, "score": body.score,
        "threshold": body.threshold, "reconstruction": body.reconstruction.model_dump(),
        "latent": body.latent.model_dump(),
        "defects": [d.model_dump() for d in body.defects], "width": body.width,
        "height": body.height, "elapsed_ms": body.elapsed_ms}


async def record(request: Request, answers: list[tuple[InspectionResult, bytes]],
                 origin: Origin, served) -> None:
    """Records ``answers`` (answer, uploaded bytes) of the version ``served``
    (:class:`service.serving.Served`) and returns once they are durable."""
    store: Store | None = getattr(request.app.state, "store", None)
    if store is None or not answers:
        return
    await store.recorder.record([Pending(row_of(body, origin, served.info), data)
                                 for body, data in answers])


def open_store(settings: Settings, registry, sinks: tuple[str, ...] = (),
               on_written=None, local_sinks: tuple[str, ...] = (),
               on_pruned=None) -> Store | None:
    """The store the settings describe, with its metrics in ``registry`` (not yet opened);
    None when recording is off. ``sinks``: the names of the sinks records are queued for
    (``local_sinks`` of them keep their position in the server); ``on_written``: called
    after records reach the database; ``on_pruned``: before and after each pruning pass."""
    if not settings.records:
        return None
    pending = Gauge("kensa_records_pending",
                    "Inspection records waiting in the journal for the database.",
                    registry=registry)
    failures = Counter("kensa_record_failures",
                       "Attempts to write records that the database refused.",
                       registry=registry)
    config = StoreConfig(
        data_dir=settings.data_dir, database_url=settings.database_url,
        keep_images=settings.keep_images,
        retention=Retention(settings.image_retention_days, settings.record_retention_days,
                            settings.image_store_max_gb), sinks=tuple(sinks),
        local_sinks=tuple(local_sinks))
    return Store(config, on_pending=pending.set, on_failure=failures.inc,
                 on_written=on_written, on_pruned=on_pruned)


def records_state(request: Request) -> str:
    """``ok``, ``degraded`` (records wait in the journal) or ``off``."""
    store: Store | None = getattr(request.app.state, "store", None)
    if store is None:
        return "off"
    return "degraded" if store.recorder.degraded else "ok"
