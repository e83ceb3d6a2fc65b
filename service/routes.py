"""The HTTP API: health, model info, inspection (single, batch, overlay picture), operator
labels, metrics.

Every inspection takes the same path: bounded read -> ``decode_image`` (off the loop) ->
the batcher (off the loop) -> encode only what was asked (off the loop).
"""

from __future__ import annotations

import re
import time
from typing import Annotated
from uuid import uuid4

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from models.errors import KensaError
from models.results import Result

from . import imaging, recording
from .deps import (
    LABELS_OFF,
    BatcherDep,
    IncludeDep,
    InspectorDep,
    LabelStoreDep,
    MetricsDep,
    SettingsDep,
    ThresholdDep,
    require_api_key,
)
from .errors import FileTooLarge, InvalidParameter, status_of
from .labels import LABEL_PATTERN
from .metrics import LOG_KEY
from .recording import OriginDep, records_state
from .schemas import (
    BatchItemError,
    BatchItemResult,
    BatchResponse,
    Defect,
    ErrorBody,
    Health,
    InspectionResult,
    LabelCounts,
    LabelStored,
    LatentVerdict,
    ModelInfo,
    ReconstructionVerdict,
    Thresholds,
)


def _err(description: str, example: str) -> dict:
    return {"model": ErrorBody, "description": description,
            "content": {"application/json": {"example": {"detail": example}}}}


E400 = {400: _err("The bytes are not a readable image (truncated, random, empty).",
                  "the upload is empty (0 bytes): send the bytes of a PNG, JPEG, BMP or TIFF "
                  "file (8- or 16-bit; gray, RGB or RGBA)")}
E401 = {401: _err("KENSA_API_KEYS is set and X-API-Key is missing or wrong.",
                  "missing X-API-Key header: this server needs an API key on /v1/*; ask its "
                  "operator for one")}
E413 = {413: _err("The file is over KENSA_MAX_UPLOAD_MB, the image over KENSA_MAX_PIXELS, "
                  "or the batch over KENSA_MAX_BATCH files.",
                  "the image is 9000x9000 = 81,000,000 pixels, over the limit of 40,000,000: "
                  "resize it before upload or raise KENSA_MAX_PIXELS")}
E415 = {415: _err("The upload's content type is not an image type.",
                  "the upload of 'notes.txt' has content type text/plain, not an image: send a "
                  "PNG, JPEG, BMP or TIFF file as image/* (or application/octet-stream)")}
E422 = {422: _err("A field or parameter is missing or invalid.",
                  "missing multipart field 'file': send the image as multipart/form-data field "
                  "'file' (for example: curl -F file=@part.png URL)")}
E503 = {503: _err("No model loaded yet, or the queue is full (then with a Retry-After header, "
                  "in seconds).",
                  "the model is not loaded yet: retry when /health/ready answers 200")}
INSPECT_ERRORS = E400 | E401 | E413 | E415 | E422 | E503

health = APIRouter(tags=["health"])
v1 = APIRouter(prefix="/v1", tags=["inspection"], dependencies=[Depends(require_api_key)])
labeling = APIRouter(prefix="/v1", tags=["labels"], dependencies=[Depends(require_api_key)])
ops = APIRouter(tags=["operations"])

UploadField = Annotated[UploadFile, File(
    description="One image: PNG, JPEG, BMP or TIFF; 8- or 16-bit; gray, RGB or RGBA; any size "
                "up to KENSA_MAX_PIXELS and KENSA_MAX_UPLOAD_MB.")]
UploadsField = Annotated[list[UploadFile], File(
    description="The images, repeated field `files`, at most KENSA_MAX_BATCH (default 64).")]


# ------------------------------------------------------------------------- health


@health.get("/health/live", response_model=Health, response_model_exclude_none=True,
            summary="Liveness",
            description="200 while the process runs.")
async def live() -> Health:
    return Health(status="alive")


@health.get("/health/ready", response_model=Health, summary="Readiness",
            description="200 once a model is loaded and the batcher runs, else 503.",
            responses=E503)
async def ready(request: Request, inspector: InspectorDep, batcher: BatcherDep) -> Health:
    return Health(status="ready", model_version=str(inspector.info.get("version", "")),
                  records=records_state(request))


# -------------------------------------------------------------------------- model


@v1.get("/model", response_model=ModelInfo, summary="The loaded model",
        response_description="Name, version, thresholds, fusion rule, device, evaluation.",
        responses=E401 | E503)
async def model_info(inspector: InspectorDep, settings: SettingsDep) -> ModelInfo:
    info = inspector.info
    default = settings.threshold if settings.threshold is not None else inspector.image_threshold
    return ModelInfo(
        name=str(info.get("name", "")), version=str(info.get("version", "")),
        created=str(info.get("created", "")), image_size=int(info["image_size"]),
        channels=int(info["channels"]), thresholds=Thresholds(**info["thresholds"]),
        default_threshold=float(default), fusion=dict(info.get("fusion", {})),
        keep_aspect=inspector.cfg.keep_aspect,
        device=str(inspector.device), flips=list(inspector.cal.flips),
        metrics=dict(info.get("metrics") or {}),
        data=dict(info.get("data") or {}))


# --------------------------------------------------------------------- inspection


@v1.post("/inspect", response_model=InspectionResult, response_model_exclude_none=True,
         summary="Inspect one image", responses=INSPECT_ERRORS,
         response_description="The verdict, scores, defect regions and the asked pictures.",
         description="Upload one image as multipart field `file`; get its verdict, scores and "
                     "defect regions, plus the pictures named in `include`.")
async def inspect(request: Request, file: UploadField, batcher: BatcherDep,
                  inspector: InspectorDep, settings: SettingsDep, metrics: MetricsDep,
                  include: IncludeDep, threshold: ThresholdDep,
                  origin: OriginDep) -> InspectionResult:
    started = time.perf_counter()
    data = await imaging.read_upload(file, settings.max_upload_bytes)
    async with batcher.gate.hold(imaging.inflight_bytes(data)):
        image = await run_in_threadpool(imaging.decode, data, settings.max_pixels)
        [result] = await batcher.inspect([image], _threshold(threshold, settings),
                                         "reconstruction" in include)
        body = await run_in_threadpool(
            build_result, InspectionResult, image, result, include, inspector, started)
        await recording.record(request, [(body, data)], origin, inspector.info)
    metrics.inspections.labels(body.label).inc()
    request.scope[LOG_KEY] = {"id": str(body.id), "label": body.label, "score": body.score}
    return body


@v1.post("/inspect/batch", response_model=BatchResponse, response_model_exclude_none=True,
         summary="Inspect several images", responses=INSPECT_ERRORS,
         response_description="One entry per file in upload order: a verdict or an error.",
         description="Upload up to KENSA_MAX_BATCH images as repeated multipart field `files`; "
                     "the answer lists them in upload order. A file that cannot be read gets "
                     "an `error` entry and does not fail the others.")
async def inspect_batch(request: Request, files: UploadsField, batcher: BatcherDep,
                        inspector: InspectorDep, settings: SettingsDep, metrics: MetricsDep,
                        include: IncludeDep, threshold: ThresholdDep,
                        origin: OriginDep) -> BatchResponse:
    if len(files) > settings.max_batch:
        raise FileTooLarge(f"too many files: a batch takes at most {settings.max_batch} images "
                           "(KENSA_MAX_BATCH); split it into several requests")
    entries: list[BatchItemResult | BatchItemError] = []
    # in chunks of one model batch, so a big batch never holds every decoded image at once
    for start in range(0, len(files), settings.batch_max_size):
        chunk = files[start:start + settings.batch_max_size]
        entries.extend(await _inspect_chunk(request, chunk, batcher, inspector, settings,
                                            include, threshold, origin))
    for entry in entries:
        metrics.inspections.labels(getattr(entry, "label", "error")).inc()
    request.scope[LOG_KEY] = {
        "ids": [str(e.id) for e in entries if isinstance(e, BatchItemResult)],
        "labels": [getattr(e, "label", "error") for e in entries],
        "scores": [getattr(e, "score", None) for e in entries]}
    return BatchResponse(results=entries)


async def _inspect_chunk(request: Request, files: list[UploadFile], batcher, inspector,
                         settings, include, threshold, origin
                         ) -> list[BatchItemResult | BatchItemError]:
    started = time.perf_counter()
    entries: list = [None] * len(files)
    uploads: list[tuple[int, bytes]] = []
    for n, file in enumerate(files):
        try:
            uploads.append((n, await imaging.read_upload(file, settings.max_upload_bytes)))
        except KensaError as exc:
            entries[n] = _item_error(file, exc)
    async with batcher.gate.hold(sum(imaging.inflight_bytes(d) for _, d in uploads)):
        images, slots, kept = [], [], []
        for n, data in uploads:
            try:
                images.append(await run_in_threadpool(imaging.decode, data, settings.max_pixels))
                slots.append(n)
                kept.append(data)
            except KensaError as exc:
                entries[n] = _item_error(files[n], exc)
        del uploads
        results = await batcher.inspect(images, _threshold(threshold, settings),
                                        "reconstruction" in include)

        def encode_all() -> None:
            for n, image, result in zip(slots, images, results):
                entries[n] = build_result(BatchItemResult, image, result, include, inspector,
                                          started, filename=files[n].filename)

        await run_in_threadpool(encode_all)
        await recording.record(request, [(entries[n], data) for n, data in zip(slots, kept)],
                               origin, inspector.info)
    return entries


def _item_error(file: UploadFile, exc: KensaError) -> BatchItemError:
    return BatchItemError(filename=file.filename, status=status_of(exc), error=str(exc))


@v1.post("/inspect/overlay", response_class=Response, summary="Inspect one image, get a picture",
         description="Upload one image as multipart field `file`; the answer is a JPEG of the "
                     "upload with the anomaly heatmap in colour and defect contours in red, so "
                     "Swagger UI's *Try it out* shows it. The verdict travels in the headers "
                     "X-Kensa-Id, X-Kensa-Label, X-Kensa-Score and X-Kensa-Threshold.",
         responses={200: {"content": {"image/jpeg": {}},
                          "description": "JPEG of the upload with heatmap and defect contours."}}
         | INSPECT_ERRORS)
async def inspect_overlay(request: Request, file: UploadField, batcher: BatcherDep,
                          inspector: InspectorDep, settings: SettingsDep, metrics: MetricsDep,
                          threshold: ThresholdDep, origin: OriginDep) -> Response:
    started = time.perf_counter()
    data = await imaging.read_upload(file, settings.max_upload_bytes)
    async with batcher.gate.hold(imaging.inflight_bytes(data)):
        image = await run_in_threadpool(imaging.decode, data, settings.max_pixels)
        [result] = await batcher.inspect([image], _threshold(threshold, settings))
        jpeg = await run_in_threadpool(imaging.overlay_jpeg, image, result.anomaly_map,
                                       result.pixel_threshold, result.mask)
        body = build_result(InspectionResult, image, result, frozenset(), inspector, started)
        await recording.record(request, [(body, data)], origin, inspector.info)
    ident = str(body.id)
    metrics.inspections.labels(result.label).inc()
    request.scope[LOG_KEY] = {"id": ident, "label": result.label, "score": float(result.score)}
    return Response(jpeg, media_type="image/jpeg", headers={
        "X-Kensa-Id": ident, "X-Kensa-Label": result.label,
        "X-Kensa-Score": repr(float(result.score)),
        "X-Kensa-Threshold": repr(float(result.threshold))})


def _threshold(requested: float | None, settings) -> float | None:
    return requested if requested is not None else settings.threshold


def build_result(cls: type[InspectionResult], image: np.ndarray, result: Result,
                 include: frozenset[str], inspector, started: float, **extra
                 ) -> InspectionResult:
    """The API's answer for one image; encodes only the pictures in ``include``.

    Args:
        image: the decoded upload ``float32 (H, W, C)`` (for the overlay).
        result: the inspector's verdict on it.
        started: ``time.perf_counter()`` when the request's work began.
    """
    pictures = {}
    if "mask" in include:
        pictures["mask"] = imaging.b64(imaging.mask_png(result.mask))
    if "heatmap" in include:
        pictures["heatmap"] = imaging.b64(
            imaging.heatmap_png(result.anomaly_map, result.pixel_threshold))
    if "overlay" in include:
        pictures["overlay"] = imaging.b64(imaging.overlay_jpeg(
            image, result.anomaly_map, result.pixel_threshold, result.mask))
    if "reconstruction" in include and result.reconstruction_image is not None:
        pictures["reconstruction_image"] = imaging.b64(
            imaging.reconstruction_png(result.reconstruction_image))
    rec, lat = result.reconstruction, result.latent
    return cls(
        id=uuid4(), model_version=str(inspector.info.get("version", "")), label=result.label,
        score=float(result.score), threshold=float(result.threshold),
        width=int(image.shape[1]), height=int(image.shape[0]),
        elapsed_ms=round((time.perf_counter() - started) * 1000.0, 3),
        reconstruction=ReconstructionVerdict(score=float(rec.score),
                                             threshold=float(rec.threshold), label=rec.label),
        latent=LatentVerdict(label=lat.label, distance=float(lat.distance),
                             threshold=float(lat.threshold), score=float(lat.score),
                             cluster=str(lat.cluster), confidence=float(lat.confidence)),
        defects=[Defect(bbox=[int(v) for v in r.bbox], area=int(r.area), score=float(r.score))
                 for r in result.regions],
        **pictures, **extra)


# ------------------------------------------------------------------------- labels

LabelField = Annotated[str, Form(
    description="What the part really is: `good` (a false alarm) or a defect name (letters, "
                "digits, `_`, `-`, `.`; at most 64 characters, starting with a letter or "
                "digit).", examples=["scratch"])]
E503_LABELS = {503: _err("The server was started without KENSA_LABELS_DIR.", LABELS_OFF)}


@labeling.post("/labels", response_model=LabelStored, status_code=201,
               summary="Label an image (operator feedback)",
               responses=E400 | E401 | E413 | E415 | E422 | E503_LABELS,
               response_description="Where the image was stored and what the folder holds.",
               description="Upload an image as multipart field `file` with field `label`: "
                           "`good` for a false alarm, or the defect's name. The file is kept, "
                           "byte for byte, in KENSA_LABELS_DIR/images/ and a row is added to "
                           "KENSA_LABELS_DIR/labels.csv; the next "
                           "`kensa train --labels KENSA_LABELS_DIR/labels.csv` uses it. Labeling "
                           "the same image again replaces its label. Needs no model.")
async def add_label(request: Request, file: UploadField, label: LabelField,
                    store: LabelStoreDep, settings: SettingsDep) -> LabelStored:
    if not re.match(LABEL_PATTERN, label):
        raise InvalidParameter(
            f"field 'label' is {label!r}: send 'good' or a defect name made of letters, digits, "
            "'_', '-' and '.', at most 64 characters, starting with a letter or digit")
    data = await imaging.read_upload(file, settings.max_upload_bytes)
    # stored only when it decodes: a label on a file the trainer cannot read would be lost
    await run_in_threadpool(imaging.decode, data, settings.max_pixels)
    stored = await run_in_threadpool(store.add, data, label)
    counts = await run_in_threadpool(store.counts)
    request.scope[LOG_KEY] = {"label": label, "path": stored.path}
    return LabelStored(labels_file=str(store.csv), total=sum(counts.values()), counts=counts,
                       path=stored.path, label=stored.label, sha256=stored.sha256,
                       new_image=stored.new_image)


@labeling.get("/labels", response_model=LabelCounts, summary="What has been labeled",
              responses=E401 | E503_LABELS,
              description="How many images operators have labeled, per label.")
async def label_counts(store: LabelStoreDep) -> LabelCounts:
    counts = await run_in_threadpool(store.counts)
    return LabelCounts(labels_file=str(store.csv), total=sum(counts.values()), counts=counts)


# --------------------------------------------------------------------- operations


@ops.get("/metrics", summary="Prometheus metrics", response_class=Response,
         description="Requests by endpoint and status, inspections by label, latency "
                     "histogram, batch sizes, queue depth (Prometheus text format). Open like "
                     "the health endpoints: it carries counts, never images.",
         responses={200: {"content": {"text/plain": {}},
                          "description": "Prometheus exposition format."}})
async def prometheus_metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.render(), media_type=metrics.content_type)


router = APIRouter()
router.include_router(health)
router.include_router(v1)
router.include_router(labeling)
router.include_router(ops)
