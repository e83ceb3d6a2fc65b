"""Errors to HTTP answers, in one place.

Every error body is ``{"detail": "<what is wrong and how to fix it>"}``::

    KensaError (models.errors)
    ├── ImageError ................ 400  bytes that do not decode as an image
    │   ├── ImageTooLargeError .... 413  more than KENSA_MAX_PIXELS, a side over KENSA_MAX_SIDE
    │   ├── ImageShapeError ....... 422  a side under KENSA_MIN_SIDE, aspect over KENSA_MAX_ASPECT
    │   └── UnsupportedImageError . 415  GIF, WebP...; float or 32-bit TIFF samples
    ├── BundleError ............... 503  (at start-up it stops the server instead)
    ├── BadCursor (store) ......... 422  a pagination cursor we never handed out
    ├── RecordingFailed (store) ... 503  neither the records database nor the journal took it
    └── ServiceError (here)
        ├── UnsupportedMediaType .. 415  the part's Content-Type is not an image type
        ├── FileTooLarge .......... 413  a file over KENSA_MAX_UPLOAD_MB
        ├── OverBudget ............ 413  an image that needs more memory than the whole
        │                                KENSA_MAX_INFLIGHT_MB budget
        ├── PictureTooLarge ....... 413  a picture (overlay, mask...) the encoder refuses
        ├── InvalidParameter ...... 422  a query parameter we could not use
        ├── NotReady .............. 503  no model loaded yet
        ├── Overloaded ............ 503  the inference queue is full (with Retry-After)
        ├── LabelingOff ........... 503  POST /v1/labels without KENSA_LABELS_DIR
        ├── RecordsOff ............ 503  /v1/inspections on a server with KENSA_RECORDS=off
        ├── NotFound .............. 404  no such record, or its image was not kept; no such
        │                                model part or version (service.registry)
        ├── Conflict .............. 409  a version that is not a valid bundle, or one this
        │                                server cannot switch to
        └── Unauthorized .......... 401  missing or wrong X-API-Key
    UploadTooLarge (HTTPException)  413  a request body over its endpoint's cap
    BodyTimeout (HTTPException) ... 408  a request body slower than KENSA_BODY_TIMEOUT_S
    RequestValidationError ........ 422  missing field, wrong type (one readable sentence)
    HTTPException ................. its own status (404, 405, ...), detail kept or explained
    sqlalchemy OperationalError ... 503  the records database is unreachable (reads, reviews)
    anything else ................. 500  logged with its traceback; never a bare crash
"""

from __future__ import annotations

import logging
from typing import ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from models.errors import (
    BundleError,
    ImageError,
    ImageShapeError,
    ImageTooLargeError,
    KensaError,
    UnsupportedImageError,
)

from .store.recorder import RecordingFailed
from .store.records import BadCursor

log = logging.getLogger("kensa.service")

FORMATS = "PNG, JPEG, BMP or TIFF"


class ServiceError(KensaError):
    """An error of the HTTP layer; ``status`` and ``headers`` say how to answer it."""

    status = 500
    headers: dict[str, str] | None = None


class UnsupportedMediaType(ServiceError):
    status = 415


class FileTooLarge(ServiceError):
    status = 413


class OverBudget(ServiceError):
    status = 413


class PictureTooLarge(ServiceError):
    status = 413


class InvalidParameter(ServiceError):
    status = 422


class NotReady(ServiceError):
    status = 503


class LabelingOff(ServiceError):
    status = 503


class RecordsOff(ServiceError):
    status = 503


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class Unauthorized(ServiceError):
    status = 401
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "APIKey"}


class Forbidden(ServiceError):
    status = 403


class Overloaded(ServiceError):
    status = 503

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after_s)}


class UploadTooLarge(HTTPException):
    """A request body over the limits.

    An ``HTTPException`` (not a ``ServiceError``) because it is raised while FastAPI parses
    the multipart body, where only ``HTTPException`` passes through unchanged; any other
    error there would become a vague 400.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=413, detail=detail)


class BodyTimeout(HTTPException):
    """A request body that did not arrive in time; the connection is closed after the answer
    (an ``HTTPException`` for the same reason as :class:`UploadTooLarge`)."""

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=408, detail=detail, headers={"Connection": "close"})


def status_of(exc: KensaError) -> int:
    """The HTTP status a Kensa error answers with (also used for per-item batch errors)."""
    if isinstance(exc, ServiceError):
        return exc.status
    if isinstance(exc, ImageTooLargeError):
        return 413
    if isinstance(exc, ImageShapeError):
        return 422
    if isinstance(exc, UnsupportedImageError):
        return 415
    if isinstance(exc, ImageError):
        return 400
    if isinstance(exc, BundleError):
        return 503
    if isinstance(exc, BadCursor):
        return 422
    if isinstance(exc, RecordingFailed):
        return 503
    return 500


def error_response(status: int, detail: str, headers: dict[str, str] | None = None
                   ) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def kensa_error_handler(request: Request, exc: KensaError) -> JSONResponse:
    status = status_of(exc)
    if status >= 500 and status != 503:
        log.error("unexpected %s on %s: %s", type(exc).__name__, request.url.path, exc)
    return error_response(status, str(exc), getattr(exc, "headers", None))


async def validation_error_handler(request: Request, exc: RequestValidationError
                                   ) -> JSONResponse:
    detail = describe_validation_errors(exc.errors())
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method == "POST" and kind != "multipart/form-data":
        detail = f"the request body is {kind or 'untyped'}, not multipart/form-data; {detail}"
    return error_response(422, detail)


async def http_error_handler(request: Request, exc: HTTPException) -> JSONResponse:
    status, detail = explain_http_error(request, exc)
    return error_response(status, detail, getattr(exc, "headers", None))


async def unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    log.exception("internal error on %s %s", request.method, request.url.path)
    return error_response(
        500, f"internal error ({type(exc).__name__}); the server log has the details")


def register(app: FastAPI) -> None:
    """Installs every handler on ``app`` (once, from ``create_app``)."""
    app.add_exception_handler(KensaError, kensa_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(HTTPException, http_error_handler)
    app.add_exception_handler(OperationalError, records_database_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)


async def records_database_error_handler(request: Request, exc: Exception) -> JSONResponse:
    log.warning("records database unreachable on %s: %s", request.url.path, exc)
    return error_response(
        503, "the records database is unreachable: inspections are still answered and "
             "recorded (they wait in the journal); retry this call later",
        {"Retry-After": "5"})


def describe_validation_errors(errors: list[dict]) -> str:
    """One readable sentence per pydantic error, joined with '; '."""
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        where, name = (loc[0], ".".join(loc[1:])) if loc else ("request", "")
        if err.get("type") == "missing" and where == "body" and name not in ("file", "files"):
            parts.append(f"missing (or empty) multipart field '{name}': send it as a form "
                         f"field (for example: curl -F {name}=VALUE URL)")
        elif err.get("type") == "missing" and where == "body":
            parts.append(
                f"missing multipart field '{name}': send the image as multipart/form-data "
                f"field '{name}' (for example: curl -F {name}=@part.png URL)")
        elif err.get("type") == "missing":
            parts.append(f"missing {where} parameter '{name}'")
        elif where == "body" and "UploadFile" in str(err.get("msg", "")):
            parts.append(f"field '{name}' must be a file (a multipart part with a filename), "
                         "not a text value")
        else:
            what = {"query": "query parameter", "body": "field", "header": "header",
                    "path": "path parameter"}.get(where, where)
            got = err.get("input")
            shown = f" (got {got!r})" if isinstance(got, (str, int, float)) else ""
            parts.append(f"{what} '{name}': {err.get('msg', 'invalid value')}{shown}")
    return "; ".join(parts) or "the request is invalid"


def explain_http_error(request: Request, exc: HTTPException) -> tuple[int, str]:
    """Keeps our own details; replaces the framework's terse ones with advice.

    Returns:
        (status, detail); Starlette's "Too many files" (a 400 from the multipart parser,
        which stops parsing at our file limit) becomes a 413 like every other size limit.
    """
    status = exc.status_code
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if status == 404 and detail == "Not Found":
        listed = "the API is listed at /docs" if request.app.openapi_url else "see the README"
        return status, f"no such endpoint: {request.url.path}; {listed}"
    if status == 405:
        return status, (f"{request.method} is not allowed on {request.url.path}; "
                        "the allowed methods are listed at /docs")
    if status == 400 and detail.startswith("Too many files"):
        limit = getattr(request.app.state, "settings", None)
        most = limit.max_batch if limit is not None else "KENSA_MAX_BATCH"
        if request.url.path.endswith("/batch"):
            return 413, (f"too many files: a batch takes at most {most} images "
                         "(KENSA_MAX_BATCH); split it into several requests")
        return 413, ("too many files: this endpoint takes one image in field 'file'; "
                     "use /v1/inspect/batch for several")
    if status == 400 and detail.startswith(
            ("There was an error parsing", "Missing boundary", "Invalid multipart")):
        return status, ("the request body is not valid multipart/form-data: send the image as "
                        "multipart field 'file' (or 'files' for a batch)")
    return status, detail
