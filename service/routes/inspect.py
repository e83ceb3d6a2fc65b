"""``/v1/inspect``, ``/v1/inspect/batch`` and ``/v1/inspect/overlay``: verdicts on uploads.

Every inspection takes the same path: bounded read -> ``decode_image`` (off the loop) ->
the batcher (off the loop) -> encode only what was asked (off the loop).
"""

from __future__ import annotations

import time
from functools import partial
from uuid import uuid4

import numpy as np
from fastapi import APIRouter, Depends, Request, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from models.errors import KensaError
from models.results import Result

from .. import pictures, recording, uploads
from ..deps import (
    BatcherDep,
    IncludeDep,
    MetricsDep,
    ServedDep,
    SettingsDep,
    ThresholdDep,
    require_api_key,
)
from ..errors import FileTooLarge, status_of
from ..monitoring import LOG_KEY
from ..overlays import Overlay
from ..recording import OriginDep
from ..schemas import (
    BatchItemError,
    BatchItemResult,
    BatchResponse,
    Defect,
    InspectionResult,
    LatentOpinion,
    ReconstructionOpinion,
)
from ..serving import Served
from ..store.images import sha256
from .forms import UploadField, UploadsField, sent_once
from .responses import INSPECT_ERRORS

router = APIRouter(prefix="/v1", tags=["inspection"], dependencies=[Depends(require_api_key)])


@router.post("/inspect", response_model=InspectionResult, response_model_exclude_none=True,
             dependencies=[Depends(sent_once("file"))], summary="Inspect one image", responses=INSPECT_ERRORS,
             response_description="The verdict, scores, defect regions and the asked pictures.",
             description="Upload one image as multipart field `file`; get its verdict, scores "
                         "and defect regions, plus the pictures named in `include`.")
async def inspect(request: Request, file: UploadField, batcher: BatcherDep,
                  served: ServedDep, settings: SettingsDep, metrics: MetricsDep,
                  include: IncludeDep, threshold: ThresholdDep,
                  origin: OriginDep) -> InspectionResult:
    started = time.perf_counter()
    async with batcher.gate.hold(await _footprint(file, include, settings)):
        data = await uploads.read_upload(file, settings.max_upload_bytes)
        image = await run_in_threadpool(uploads.decode, data, settings.image_limits)
        [result] = await batcher.inspect([image], _threshold(threshold, settings),
                                         "reconstruction" in include, served.inspector)
        body = await run_in_threadpool(
            build_result, InspectionResult, image, result, include, served, started)
        await recording.record(request, [(body, data)], origin, served)
    _draw_ahead(request, served, [(image, result, body, data)])
    _challenge(request, served, [(image, body)])
    metrics.inspections.labels(body.label).inc()
    request.scope[LOG_KEY] = {"id": str(body.id), "label": body.label, "score": body.score}
    return body


@router.post("/inspect/batch", response_model=BatchResponse, response_model_exclude_none=True,
             summary="Inspect several images", responses=INSPECT_ERRORS,
             response_description="One entry per file in upload order: a verdict or an error.",
             description="Upload up to KENSA_MAX_BATCH images as repeated multipart field "
                         "`files`; the answer lists them in upload order. A file that cannot "
                         "be read gets an `error` entry and does not fail the others.")
async def inspect_batch(request: Request, files: UploadsField, batcher: BatcherDep,
                        served: ServedDep, settings: SettingsDep, metrics: MetricsDep,
                        include: IncludeDep, threshold: ThresholdDep,
                        origin: OriginDep) -> BatchResponse:
    if len(files) > settings.max_batch:
        raise FileTooLarge(f"too many files: a batch takes at most {settings.max_batch} images "
                           "(KENSA_MAX_BATCH); split it into several requests")
    entries: list = [None] * len(files)
    prints = await run_in_threadpool(_footprints, files, include, settings, entries)
    pixels = sum(fp.pixels for fp in prints)
    if pixels > settings.max_batch_pixels:
        raise FileTooLarge(f"the batch's images have {pixels:,} pixels in all, over the limit "
                           f"of {settings.max_batch_pixels:,} (KENSA_MAX_BATCH_PIXELS); split "
                           "it into several requests")
    # in runs of at most one model batch that fit the in-flight budget, so a big batch never
    # holds every decoded image at once
    for run in uploads.chunks(prints, settings.batch_max_size, batcher.gate.max_bytes):
        run = [n for n in run if entries[n] is None]
        nbytes = sum(prints[n].nbytes for n in run)
        if len(run) == 1 and nbytes > batcher.gate.max_bytes:
            entries[run[0]] = _item_error(files[run[0]], batcher.gate.refusal(nbytes))
        elif run:
            await _inspect_chunk(request, files, run, nbytes, entries, batcher, served,
                                 settings, include, threshold, origin)
    for entry in entries:
        metrics.inspections.labels(getattr(entry, "label", "error")).inc()
    request.scope[LOG_KEY] = {
        "ids": [str(e.id) for e in entries if isinstance(e, BatchItemResult)],
        "labels": [getattr(e, "label", "error") for e in entries],
        "scores": [getattr(e, "score", None) for e in entries]}
    return BatchResponse(results=entries)


async def _footprint(file: UploadFile, include: frozenset[str], settings) -> int:
    """Bytes one upload will hold while served, from its header; refuses a wrong content
    type or an oversized file first (415, 413)."""
    uploads.check_upload(file, settings.max_upload_bytes)
    fp = await run_in_threadpool(uploads.footprint, file.file, file.size or 0, include,
                                 settings.image_limits)
    return fp.nbytes


def _footprints(files: list[UploadFile], include: frozenset[str], settings,
                entries: list) -> list[uploads.Footprint]:
    """Every file's footprint (worker thread); a file refused outright gets its error entry."""
    prints = []
    for n, file in enumerate(files):
        try:
            uploads.check_upload(file, settings.max_upload_bytes)
            prints.append(uploads.footprint(file.file, file.size or 0, include,
                                            settings.image_limits))
        except KensaError as exc:
            entries[n] = _item_error(file, exc)
            prints.append(uploads.Footprint(0, 0))
    return prints


async def _inspect_chunk(request: Request, files: list[UploadFile], run: list[int],
                         nbytes: int, entries: list, batcher, served: Served, settings,
                         include, threshold, origin) -> None:
    """Inspects ``files[n]`` for ``n`` in ``run`` and fills in their ``entries``, holding
    ``nbytes`` of the in-flight budget from reading to answer."""
    started = time.perf_counter()
    async with batcher.gate.hold(nbytes):
        images, slots, kept = [], [], []
        for n in run:
            try:
                data = await uploads.read_upload(files[n], settings.max_upload_bytes)
                images.append(await run_in_threadpool(uploads.decode, data, settings.image_limits))
                slots.append(n)
                kept.append(data)
            except KensaError as exc:
                entries[n] = _item_error(files[n], exc)
        results = await batcher.inspect(images, _threshold(threshold, settings),
                                        "reconstruction" in include, served.inspector)

        def encode_all() -> None:
            for n, image, result in zip(slots, images, results):
                entries[n] = build_result(BatchItemResult, image, result, include, served,
                                          started, filename=files[n].filename)

        await run_in_threadpool(encode_all)
        await recording.record(request, [(entries[n], data) for n, data in zip(slots, kept)],
                               origin, served)
        _draw_ahead(request, served, [(image, result, entries[n], data) for n, image, result, data
                                      in zip(slots, images, results, kept)])
    _challenge(request, served, [(image, entries[n]) for n, image in zip(slots, images)])


def _item_error(file: UploadFile, exc: KensaError) -> BatchItemError:
    return BatchItemError(filename=file.filename, status=status_of(exc), error=str(exc))


@router.post("/inspect/overlay", response_class=Response,
             dependencies=[Depends(sent_once("file"))], summary="Inspect one image, get a picture",
             description="Upload one image as multipart field `file`; the answer is a JPEG of "
                         "the upload with the anomaly heatmap in colour and defect contours in "
                         "red, so Swagger UI's *Try it out* shows it. The verdict travels in "
                         "the headers X-Kensa-Id, X-Kensa-Label, X-Kensa-Score and "
                         "X-Kensa-Threshold.",
             responses={200: {"content": {"image/jpeg": {}},
                              "description": "JPEG of the upload with heatmap and defect "
                                             "contours."}} | INSPECT_ERRORS)
async def inspect_overlay(request: Request, file: UploadField, batcher: BatcherDep,
                          served: ServedDep, settings: SettingsDep, metrics: MetricsDep,
                          threshold: ThresholdDep, origin: OriginDep) -> Response:
    started = time.perf_counter()
    async with batcher.gate.hold(await _footprint(file, uploads.OVERLAY, settings)):
        data = await uploads.read_upload(file, settings.max_upload_bytes)
        image = await run_in_threadpool(uploads.decode, data, settings.image_limits)
        [result] = await batcher.inspect([image], _threshold(threshold, settings),
                                         inspector=served.inspector)
        jpeg = await run_in_threadpool(pictures.overlay_jpeg, image, result.anomaly_map,
                                       result.pixel_threshold, result.mask)
        body = build_result(InspectionResult, image, result, frozenset(), served, started)
        await recording.record(request, [(body, data)], origin, served)
    if _kept(request, body.label):
        cache, overlay = request.app.state.overlays, overlay_of(data, body, served)
        cache.put(overlay, "full", jpeg)
        cache.remember(str(body.id), overlay, cache.generation)
    _challenge(request, served, [(image, body)])
    ident = str(body.id)
    metrics.inspections.labels(result.label).inc()
    request.scope[LOG_KEY] = {"id": ident, "label": result.label, "score": float(result.score)}
    headers = {"X-Kensa-Id": ident, "X-Kensa-Label": result.label,
               "X-Kensa-Score": repr(float(result.score)),
               "X-Kensa-Threshold": repr(float(result.threshold))}
    if body.model is not None:
        headers |= {"X-Kensa-Model": body.model, "X-Kensa-Model-Version": body.model_version}
    return Response(jpeg, media_type="image/jpeg", headers=headers)


def _kept(request: Request, label: str) -> bool:
    """Whether the records store keeps the image of an answer with ``label``."""
    keep = request.app.state.settings.keep_images
    return (request.app.state.store is not None
            and (keep == "all" or (keep == "abnormal" and label == "abnormal")))


def overlay_of(data: bytes, body, served: Served) -> Overlay:
    """What determines a recorded answer's overlay, as GET /v1/inspections/{id}/overlay
    knows it (the kept image's SHA-256, the record's threshold, the judging part and version)."""
    return Overlay(sha256(data), float(body.threshold), served.part, served.version)


def _draw_ahead(request: Request, served: Served, answered: list) -> None:
    """While an operator page is open, the thumbnails of the answered images that are kept
    (``(image, result, body, bytes)`` each) can be had without a second model pass or a
    records query: a small image's drawn from its arrays when first asked for, a large
    image's right after the answer, off its path (:meth:`OverlayCache.draw_ahead`). Full
    overlays (Review, History: one operator, one part at a time) are rendered when asked."""
    cache = request.app.state.overlays
    if not cache.page_open:
        return
    for image, result, body, data in answered:
        if _kept(request, body.label):
            cache.draw_ahead(str(body.id), overlay_of(data, body, served), "thumb", partial(
                pictures.overlay_thumb_jpeg, image, result.anomaly_map,
                result.pixel_threshold, result.mask),
                now=max(image.shape[:2]) > 2 * pictures.THUMB_SIDE)


def _challenge(request: Request, served: Served, answered: list) -> None:
    """Offers the answered images to the part's challenger, if one runs (never waits)."""
    challengers = request.app.state.challengers
    if served.part in challengers.running:
        for image, body in answered:
            challengers.offer(served.part, image, str(body.id), body.label)


def _threshold(requested: float | None, settings) -> float | None:
    return requested if requested is not None else settings.threshold


def build_result(cls: type[InspectionResult], image: np.ndarray, result: Result,
                 include: frozenset[str], served: Served, started: float, **extra
                 ) -> InspectionResult:
    """The API's answer for one image; encodes only the pictures in ``include``.

    Args:
        image: the decoded upload ``float32 (H, W, C)`` (for the overlay).
        result: the verdict of ``served`` (the version that judged) on it.
        started: ``time.perf_counter()`` when the request's work began.
    """
    encoded = pictures.requested(include, image, result)  # before elapsed_ms: it counts
    reconstruction, latent = result.reconstruction, result.latent
    return cls(
        id=uuid4(), model_version=str(served.info.get("version", "")),
        model=served.part if served.from_root else None, label=result.label,
        score=float(result.score), threshold=float(result.threshold),
        width=int(image.shape[1]), height=int(image.shape[0]),
        elapsed_ms=round((time.perf_counter() - started) * 1000.0, 3),
        reconstruction=ReconstructionOpinion(score=float(reconstruction.score),
                                             threshold=float(reconstruction.threshold),
                                             label=reconstruction.label),
        latent=LatentOpinion(label=latent.label, distance=float(latent.distance),
                             threshold=float(latent.threshold), score=float(latent.score),
                             cluster=str(latent.cluster), confidence=float(latent.confidence)),
        defects=[Defect(bbox=[int(v) for v in r.bbox], area=int(r.area), score=float(r.score))
                 for r in result.regions],
        **encoded, **extra)
