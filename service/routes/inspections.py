"""``/v1/inspections`` and ``/v1/stats``: list, read, review and export recorded inspections;
their kept images, overlays and counts. Every route is behind the API keys like the rest of /v1.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from .. import pictures, uploads
from ..deps import PAGE_HEADER, BatcherDep, loaded_fleet, require_api_key
from ..errors import InvalidParameter, NotFound, RecordsOff
from ..labels import LABEL_PATTERN
from ..overlays import Overlay
from ..schemas import (
    ErrorBody,
    InspectionPage,
    InspectionRecord,
    LivePage,
    Review,
    ReviewRequest,
    Stats,
    StatsBucket,
    Thumbnails,
)
from ..store.records import GOOD, MAX_LIMIT, Filters
from ..store.store import Store

RECORDS_OFF = ("recording is off on this server (KENSA_RECORDS=off): start it without it to "
               "record inspections")
CSV_FIELDS = ("id", "created_at", "source", "part_id", "model_name", "model_version", "label",
              "score", "threshold", "reconstruction_label", "latent_label", "defects", "width",
              "height", "elapsed_ms", "sha256", "image_kept", "review_label", "review_note",
              "reviewed_by", "reviewed_at")


def _err(description: str, example: str) -> dict:
    return {"model": ErrorBody, "description": description,
            "content": {"application/json": {"example": {"detail": example}}}}


E404 = {404: _err("No record with this id (or its image was not kept).",
                  "no inspection record with id '3f...': list them with GET /v1/inspections")}
E422 = {422: _err("A filter, cursor or review is invalid.",
                  "query parameter 'label': 'bad' is not 'normal' or 'abnormal'")}
E503 = {503: _err("Recording is off on this server.", RECORDS_OFF)}

router = APIRouter(prefix="/v1", tags=["records"], dependencies=[Depends(require_api_key)])


def the_store(request: Request) -> Store:
    store = getattr(request.app.state, "store", None)
    if store is None:
        raise RecordsOff(RECORDS_OFF)
    return store


StoreDep = Annotated[Store, Depends(the_store)]


def _when(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidParameter(f"query parameter '{name}': {value!r} is not an ISO 8601 time; "
                               "send e.g. 2026-12-04T10:00:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def filters(label: Annotated[Literal["normal", "abnormal"] | None, Query(
                description="The verdict.")] = None,
            source: Annotated[str | None, Query(description="Exact source.")] = None,
            part_id: Annotated[str | None, Query(description="Exact part id.")] = None,
            model_version: Annotated[str | None, Query(description="Bundle version.")] = None,
            model: Annotated[str | None, Query(
                description="The models root's part that judged.")] = None,
            reviewed: Annotated[bool | None, Query(
                description="true: reviewed ones only; false: unreviewed only.")] = None,
            review_label: Annotated[str | None, Query(
                description="The last review's label (`good` or a defect name).")] = None,
            since: Annotated[str | None, Query(
                description="From this time on (ISO 8601; UTC when no zone).")] = None,
            until: Annotated[str | None, Query(
                description="Before this time (ISO 8601; UTC when no zone).")] = None,
            min_score: Annotated[float | None, Query(allow_inf_nan=False)] = None,
            max_score: Annotated[float | None, Query(allow_inf_nan=False)] = None) -> Filters:
    return Filters(label=label, source=source, part_id=part_id, model_version=model_version,
                   model=model,
                   reviewed=reviewed, review_label=review_label, since=_when("since", since),
                   until=_when("until", until), min_score=min_score, max_score=max_score)


FiltersDep = Annotated[Filters, Depends(filters)]


def _iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z") if when else None


def record_body(row: dict) -> InspectionRecord:
    review = None
    if row.get("reviewed_at") is not None:
        review = Review(label=row["review_label"], note=row["review_note"],
                        regions=row["review_regions"], by=row["reviewed_by"],
                        at=_iso(row["reviewed_at"]))
    return InspectionRecord(
        id=row["id"], model_version=row["model_version"], model_name=row["model_name"],
        model=row.get("model"),
        label=row["label"], score=row["score"], threshold=row["threshold"], width=row["width"],
        height=row["height"], elapsed_ms=row["elapsed_ms"],
        reconstruction=row["reconstruction"], latent=row["latent"], defects=row["defects"],
        source=row["source"], part_id=row["part_id"], created_at=_iso(row["created_at"]),
        image_kept=bool(row["image_kept"]), sha256=row["sha256"], review=review)


async def _row(store: Store, ident: str) -> dict:
    row = await run_in_threadpool(store.records.get, ident)
    if row is None:
        raise NotFound(f"no inspection record with id {ident!r}: list them with "
                       "GET /v1/inspections")
    return row


@router.get("/inspections", response_model=InspectionPage, response_model_exclude_none=False,
            summary="Recorded inspections, newest first", responses=E404 | E422 | E503,
            description="Filters combine with AND. Pass the answer's `next` as `cursor` for "
                        "the next page; pages stay stable while new records arrive.")
async def list_inspections(request: Request, store: StoreDep, where: FiltersDep,
                           limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
                           cursor: Annotated[str | None, Query(
                               description="The `next` of the previous page.")] = None
                           ) -> InspectionPage:
    if PAGE_HEADER in request.headers:  # an operator page polls: overlays are drawn ahead
        request.app.state.overlays.page_called()
    rows, nxt = await run_in_threadpool(store.records.page, where, limit, cursor)
    return InspectionPage(items=[record_body(r) for r in rows], next=nxt)


@router.get("/inspections/export", summary="Recorded inspections as CSV",
            responses={200: {"content": {"text/csv": {}}}} | E422 | E503,
            description="The same filters as GET /v1/inspections; all matching records, "
                        "newest first, streamed.")
async def export_inspections(store: StoreDep, where: FiltersDep,
                             format: Annotated[Literal["csv"], Query()] = "csv"
                             ) -> StreamingResponse:
    def lines() -> Iterator[str]:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(CSV_FIELDS)
        for n, row in enumerate(store.records.iterate(where), 1):
            w.writerow(_csv_row(row))
            if n % 200 == 0:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()

    return StreamingResponse(iterate_in_threadpool(lines()), media_type="text/csv",
                             headers={"Content-Disposition":
                                      'attachment; filename="inspections.csv"'})


def _csv_row(row: dict) -> list:
    return [row["id"], _iso(row["created_at"]), row["source"] or "", row["part_id"] or "",
            row["model_name"], row["model_version"], row["label"], repr(row["score"]),
            repr(row["threshold"]), row["reconstruction"].get("label", ""),
            row["latent"].get("label", ""), len(row["defects"]), row["width"], row["height"],
            row["elapsed_ms"], row["sha256"], int(bool(row["image_kept"])),
            row["review_label"] or "", row["review_note"] or "", row["reviewed_by"] or "",
            _iso(row["reviewed_at"]) or ""]


MAX_THUMBNAILS = 48  # two Live pages of cards


@router.get("/inspections/thumbnails", response_model=Thumbnails,
            summary="Overlay thumbnails from memory, several at once",
            responses=E422 | E503,
            description="The thumbnails of the named records that the server has in memory "
                        "(kept for drawing while a page is open, or asked for lately), "
                        "base64, in one answer; the others are listed in `missing`. Never "
                        "reads the records and makes no model pass: the page's Live view asks "
                        "for its new cards' pictures with one request instead of one each.")
async def thumbnails(request: Request, store: StoreDep, ids: Annotated[list[str], Query(
        alias="id", description=f"A record id; repeat it, at most {MAX_THUMBNAILS}.")]
                     ) -> Thumbnails:
    if len(ids) > MAX_THUMBNAILS:
        raise InvalidParameter(f"query parameter 'id' is given {len(ids)} times: ask for at "
                               f"most {MAX_THUMBNAILS} thumbnails at once")
    found, missing = await _in_memory(request, ids)
    return Thumbnails(thumbnails=found, missing=missing)


async def _in_memory(request: Request, ids: list[str]) -> tuple[dict[str, str], list[str]]:
    """The thumbnails of ``ids`` the server holds (base64), and the ids it does not."""
    cache, loaded = request.app.state.overlays, loaded_fleet(request).loaded
    found, missing = {}, []
    for ident in dict.fromkeys(ids):
        overlay = cache.recall(ident, loaded)
        jpeg = await cache.drawn(overlay, "thumb") if overlay is not None else None
        if jpeg is None:
            missing.append(ident)
        else:
            found[ident] = pictures.b64(jpeg)
    return found, missing


@router.get("/inspections/live", response_model=LivePage,
            summary="The newest records with their thumbnails, shared by every caller",
            responses={304: {"description": "Unchanged since the ETag sent."}} | E422 | E503,
            description="What the operator page's Live view shows: the newest records "
                        "(the filters of GET /v1/inspections, no cursor) with the thumbnails "
                        "the server holds inline. One answer per filter is built at most "
                        "every KENSA_LIVE_MAX_AGE_S seconds and given to every caller in that "
                        "time, so ten open pages cost about what one does; it is never "
                        "older than that. Send its ETag as If-None-Match for a 304 while "
                        "nothing changed. To read what you have just written, use GET "
                        "/v1/inspections.")
async def live(request: Request, store: StoreDep, where: FiltersDep,
               limit: Annotated[int, Query(ge=1, le=MAX_THUMBNAILS)] = 24,
               if_none_match: Annotated[str | None, Header()] = None) -> Response:
    if PAGE_HEADER in request.headers:  # an operator page polls: overlays are drawn ahead
        request.app.state.overlays.page_called()

    async def build() -> bytes:
        rows, _ = await run_in_threadpool(store.records.page, where, limit, None)
        items = [record_body(r) for r in rows]
        found, missing = await _in_memory(request, [str(r.id) for r in items if r.image_kept])
        return LivePage(items=items, thumbnails=found, missing=missing).model_dump_json(
        ).encode()

    snapshot = await request.app.state.live.answer((where, limit), build)
    headers = {"ETag": snapshot.etag, "Cache-Control": OVERLAY_CACHING}
    if _matches(if_none_match, snapshot.etag):
        return Response(status_code=304, headers=headers)
    return Response(snapshot.body, media_type="application/json", headers=headers)


@router.get("/inspections/{ident}", response_model=InspectionRecord,
            summary="One recorded inspection", responses=E404 | E503)
async def get_inspection(store: StoreDep, ident: str) -> InspectionRecord:
    return record_body(await _row(store, ident))


def _not_kept(ident: str) -> NotFound:
    return NotFound(f"the image of inspection {ident!r} was not kept (KENSA_KEEP_IMAGES keeps "
                    "abnormal ones by default; retention removes old unreviewed ones)")


async def _kept_row(store: Store, ident: str) -> dict:
    """The record, if its image is kept (retention clears ``image_kept`` before it deletes)."""
    row = await _row(store, ident)
    if not row["image_kept"]:
        raise _not_kept(ident)
    return row


async def _image_of(store: Store, row: dict) -> bytes:
    data = await run_in_threadpool(store.images.get, row["sha256"])
    if data is None:
        raise _not_kept(row["id"])
    return data


async def _kept_image(store: Store, ident: str) -> tuple[dict, bytes]:
    row = await _kept_row(store, ident)
    return row, await _image_of(store, row)


@router.get("/inspections/{ident}/image", response_class=Response,
            summary="The kept image, byte for byte", responses={
                200: {"content": {"image/png": {}, "image/jpeg": {}}}} | E404 | E503)
async def get_image(store: StoreDep, ident: str) -> Response:
    row, data = await _kept_image(store, ident)
    return Response(data, media_type=row["image_type"] or "application/octet-stream")


OVERLAY_CACHING = "private, no-cache"  # a browser keeps it and asks (If-None-Match) each use


@router.get("/inspections/{ident}/overlay", response_class=Response,
            summary="Overlay of the kept image",
            description="A JPEG of the kept image with the anomaly heatmap and defect "
                        "contours, rendered by the loaded model with the record's threshold "
                        "(once: the server keeps the latest few hundred). `size=thumb` gives "
                        f"one at most {pictures.THUMB_SIDE} pixels on its longer side (the "
                        "page's Live view). The answer has an ETag and `Cache-Control: "
                        "private, no-cache`: send the ETag back as If-None-Match and an "
                        "unchanged overlay is 304 without a body; a hot swap changes it.",
            responses={200: {"content": {"image/jpeg": {}}},
                       304: {"description": "Unchanged since the ETag sent as If-None-Match."}}
            | E404 | E422 | E503)
async def get_overlay(store: StoreDep, batcher: BatcherDep, request: Request, ident: str,
                      size: Annotated[Literal["full", "thumb"], Query(
                          description="`full`: the kept image's size; `thumb`: at most "
                                      f"{pictures.THUMB_SIDE} px on the longer side.")] = "full",
                      if_none_match: Annotated[str | None, Header(
                          description="ETags of overlays the client has.")] = None
                      ) -> Response:
    cache = request.app.state.overlays
    overlay = cache.recall(ident, loaded_fleet(request).loaded)
    if overlay is not None:  # drawn ahead or read lately, for the loaded version: no query
        if _matches(if_none_match, overlay.etag(size)):
            return _overlay_response(overlay, size, None)
        jpeg = await cache.drawn(overlay, size)
        if jpeg is not None:
            return _overlay_response(overlay, size, jpeg)
    generation = cache.generation  # before the query: a pruning pass from now on voids it
    row = await _kept_row(store, ident)
    served = await _judge(request, row)
    overlay = Overlay(row["sha256"], row["threshold"], served.part, served.version)
    cache.remember(ident, overlay, generation)
    if _matches(if_none_match, overlay.etag(size)):
        return _overlay_response(overlay, size, None)
    jpeg = await cache.drawn(overlay, size) or await cache.render_once(
        overlay, size, partial(_render, store, batcher, request, row, served, size))
    return _overlay_response(overlay, size, jpeg)


def _matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match's weak comparison (RFC 9110 13.1.2): ``*`` or any listed tag."""
    if if_none_match is None:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


def _overlay_response(overlay: Overlay, size: str, jpeg: bytes | None) -> Response:
    """200 with the JPEG, or 304 when ``jpeg`` is None (the client has it)."""
    headers = {"ETag": overlay.etag(size), "Cache-Control": OVERLAY_CACHING}
    if jpeg is None:
        return Response(status_code=304, headers=headers)
    return Response(jpeg, media_type="image/jpeg", headers=headers)


async def _render(store: Store, batcher, request: Request, row: dict, served, size: str
                  ) -> bytes:
    """The record's overlay at ``size``, with a model pass of ``served`` on the kept image
    (read only now, to render)."""
    settings = request.app.state.settings
    data = await _image_of(store, row)
    fp = uploads.footprint(io.BytesIO(data), len(data), uploads.OVERLAY, settings.image_limits)
    draw = pictures.overlay_thumb_jpeg if size == "thumb" else pictures.overlay_jpeg
    async with batcher.gate.hold(fp.nbytes):
        image = await run_in_threadpool(uploads.decode, data, settings.image_limits)
        [result] = await batcher.inspect([image], row["threshold"], inspector=served.inspector)
        return await run_in_threadpool(draw, image, result.anomaly_map, result.pixel_threshold,
                                       result.mask)


async def _judge(request: Request, row: dict):
    """The loaded version of the record's part (models root), else of the default part."""
    fleet = loaded_fleet(request)
    try:
        return await fleet.get(row.get("model"))
    except NotFound:  # the part is gone from the models root
        return await fleet.get(None)


@router.put("/inspections/{ident}/review", response_model=InspectionRecord,
            summary="Review an inspection", responses=E404 | E422 | E503,
            description="Say what the part really is: `good` or a defect name, with an "
                        "optional note and defect boxes. The last review wins; every review "
                        "is kept. Reviewed records with kept images feed "
                        "`kensa train --labels`.")
async def review_inspection(store: StoreDep, ident: str, body: ReviewRequest,
                            x_kensa_user: Annotated[str | None, Header(
                                description="Who reviews (at most 64 characters).")] = None
                            ) -> InspectionRecord:
    label = body.label
    if not re.match(LABEL_PATTERN, label):
        raise InvalidParameter(
            f"field 'label' is {label!r}: send 'good' or a defect name made of letters, digits, "
            "'_', '-' and '.', at most 64 characters, starting with a letter or digit")
    if label.lower() == GOOD:
        label = GOOD
    row = await _row(store, ident)
    for n, region in enumerate(body.regions or []):
        _check_region(n, region, row["width"], row["height"])
    by = (x_kensa_user or "")[:64] or None
    updated = await run_in_threadpool(store.records.review, ident, label, body.note,
                                      body.regions, by)
    if updated is None:  # deleted by retention in between
        raise NotFound(f"no inspection record with id {ident!r}")
    return record_body(updated)


def _check_region(n: int, region: list[int], width: int, height: int) -> None:
    if len(region) != 4:
        raise InvalidParameter(f"field 'regions'[{n}] has {len(region)} numbers: send "
                               "[x, y, w, h] in pixels")
    x, y, w, h = region
    if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > width or y + h > height:
        raise InvalidParameter(
            f"field 'regions'[{n}] = {region} is not inside the {width}x{height} image: x, y "
            f">= 0, w, h > 0, x + w <= {width}, y + h <= {height}")


@router.get("/stats", response_model=Stats, summary="Counts per hour or day and source",
            responses=E422 | E503,
            description="Per bucket and source: total, normal, abnormal, reviewed, confirmed "
                        "false alarms (abnormal reviewed good), confirmed misses (normal "
                        "reviewed as a defect) and yield (normal / total).")
async def stats(store: StoreDep, since: str | None = None, until: str | None = None,
                bucket: Literal["hour", "day"] = "hour", source: str | None = None) -> Stats:
    rows = await run_in_threadpool(store.records.stats, _when("since", since),
                                   _when("until", until), bucket, source)
    items = [StatsBucket(**{**r, "bucket": _iso(r["bucket"]),
                            "bucket_end": _iso(r["bucket_end"])}) for r in rows]
    return Stats(bucket=bucket, items=items)
