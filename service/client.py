"""A typed Python client for the Kensa API (httpx): :class:`Client` (sync) and
:class:`AsyncClient` (the same methods, awaited).

.. code-block:: python

    from service.client import Client, Unavailable

    with Client("http://127.0.0.1:8000", api_key="key1") as kensa:
        verdict = kensa.inspect("part.png", source="line-2/cam-1", part_id="SN-0042")
        if verdict.label == "abnormal":
            kensa.review(verdict.id, "scratch", note="rim")
        page = kensa.inspections(label="abnormal", limit=20)

Answers are the server's own pydantic models (:mod:`service.schemas`). An error answer raises
the :class:`ApiError` subclass of its status, carrying the server's ``detail`` (and, for 503,
``retry_after``); a server that cannot be reached raises httpx's ``TransportError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx

from models.errors import KensaError

from .schemas import (
    BatchResponse,
    Health,
    InspectionPage,
    InspectionRecord,
    InspectionResult,
    LabelCounts,
    LabelStored,
    ModelInfo,
    ModelPart,
    ModelsList,
    Stats,
)


class ApiError(KensaError):
    """An error answer: ``status`` and the server's ``detail``."""

    status = 0

    def __init__(self, status: int, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail, self.retry_after = status, detail, retry_after


class BadRequest(ApiError):
    """400: bytes that do not decode as an image."""


class Unauthorized(ApiError):
    """401: a missing or wrong X-API-Key."""


class NotFound(ApiError):
    """404: no such record, image or endpoint."""


class Conflict(ApiError):
    """409: a version that is not a valid bundle, or a server that cannot switch versions."""


class TooLarge(ApiError):
    """413: a file, image or batch over the server's limits."""


class UnsupportedMediaType(ApiError):
    """415: a content type that is not an image."""


class Invalid(ApiError):
    """422: a missing or invalid field or parameter."""


class Unavailable(ApiError):
    """503: no model yet, a full queue, records or labeling off; ``retry_after`` in seconds
    when the server said."""


ERRORS: dict[int, type[ApiError]] = {400: BadRequest, 401: Unauthorized, 404: NotFound,
                                     409: Conflict, 413: TooLarge, 415: UnsupportedMediaType,
                                     422: Invalid, 503: Unavailable}

Image = str | Path | bytes


@dataclass
class Call:
    """One request and how to read its answer (``parse``: a model, ``bytes`` or ``str``)."""

    method: str
    path: str
    parse: Any
    params: dict = field(default_factory=dict)
    files: Any = None
    data: dict | None = None
    json: Any = None
    headers: dict = field(default_factory=dict)


def error_of(answer: httpx.Response) -> ApiError:
    try:
        detail = str(answer.json().get("detail", answer.text))
    except (ValueError, AttributeError):
        detail = answer.text or answer.reason_phrase
    retry = answer.headers.get("Retry-After")
    try:
        retry_after = float(retry) if retry is not None else None
    except ValueError:
        retry_after = None
    return ERRORS.get(answer.status_code, ApiError)(answer.status_code, detail, retry_after)


def read(call: Call, answer: httpx.Response):
    if not answer.is_success:
        raise error_of(answer)
    if call.parse is bytes:
        return answer.content
    if call.parse is str:
        return answer.text
    return call.parse.model_validate(answer.json())


def _file(image: Image, filename: str | None) -> tuple[str, bytes]:
    if isinstance(image, bytes):
        return filename or "image", image
    path = Path(image)
    return filename or path.name, path.read_bytes()


def _drop_none(values: dict) -> dict:
    return {k: v for k, v in values.items() if v is not None}


class _Api:
    """The API's calls; ``_send`` (sync or async) carries them out."""

    def _send(self, call: Call):
        raise NotImplementedError

    # ------------------------------------------------------------ inspection

    def inspect(self, image: Image, *, source: str | None = None, part_id: str | None = None,
                include: list[str] | None = None, threshold: float | None = None,
                filename: str | None = None, model: str | None = None) -> InspectionResult:
        """``POST /v1/inspect``: one image (a path or its bytes); ``model``: the part of the
        server's models root to judge it (default: the server's default part)."""
        return self._send(Call(
            "POST", "/v1/inspect", InspectionResult, files={"file": _file(image, filename)},
            data=_drop_none({"source": source, "part_id": part_id}),
            params=_drop_none({"include": ",".join(include) if include else None,
                               "threshold": threshold, "model": model})))

    def inspect_batch(self, images: list[Image], *, source: str | None = None,
                      part_id: str | None = None, threshold: float | None = None,
                      model: str | None = None) -> BatchResponse:
        """``POST /v1/inspect/batch``: several images, answered in order."""
        return self._send(Call(
            "POST", "/v1/inspect/batch", BatchResponse,
            files=[("files", _file(i, None)) for i in images],
            data=_drop_none({"source": source, "part_id": part_id}),
            params=_drop_none({"threshold": threshold, "model": model})))

    def overlay(self, image: Image, *, source: str | None = None,
                part_id: str | None = None, model: str | None = None) -> bytes:
        """``POST /v1/inspect/overlay``: the JPEG overlay of one image."""
        return self._send(Call("POST", "/v1/inspect/overlay", bytes,
                               files={"file": _file(image, None)},
                               data=_drop_none({"source": source, "part_id": part_id}),
                               params=_drop_none({"model": model})))

    # ------------------------------------------------------------ records

    def inspections(self, *, cursor: str | None = None, limit: int | None = None,
                    **filters: Any) -> InspectionPage:
        """``GET /v1/inspections``: newest first; ``filters`` as the API names them
        (label, source, part_id, model_version, reviewed, review_label, since, until,
        min_score, max_score)."""
        params = _drop_none({**filters, "cursor": cursor, "limit": limit})
        params = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items()}
        return self._send(Call("GET", "/v1/inspections", InspectionPage, params=params))

    def inspection(self, ident: str) -> InspectionRecord:
        return self._send(Call("GET", f"/v1/inspections/{ident}", InspectionRecord))

    def image(self, ident: str) -> bytes:
        return self._send(Call("GET", f"/v1/inspections/{ident}/image", bytes))

    def record_overlay(self, ident: str) -> bytes:
        return self._send(Call("GET", f"/v1/inspections/{ident}/overlay", bytes))

    def review(self, ident: str, label: str, *, note: str | None = None,
               regions: list[list[int]] | None = None, user: str | None = None
               ) -> InspectionRecord:
        """``PUT /v1/inspections/{id}/review``: ``good`` or a defect name."""
        return self._send(Call(
            "PUT", f"/v1/inspections/{ident}/review", InspectionRecord,
            json=_drop_none({"label": label, "note": note, "regions": regions}),
            headers=_drop_none({"X-Kensa-User": user})))

    def stats(self, *, since: str | None = None, until: str | None = None,
              bucket: str = "hour", source: str | None = None) -> Stats:
        return self._send(Call("GET", "/v1/stats", Stats, params=_drop_none(
            {"since": since, "until": until, "bucket": bucket, "source": source})))

    def export_csv(self, **filters: Any) -> str:
        return self._send(Call("GET", "/v1/inspections/export", str,
                               params={"format": "csv", **_drop_none(filters)}))

    # ------------------------------------------------------------ labels, model, health

    def label(self, image: Image, label: str) -> LabelStored:
        return self._send(Call("POST", "/v1/labels", LabelStored,
                               files={"file": _file(image, None)}, data={"label": label}))

    def labels(self) -> LabelCounts:
        return self._send(Call("GET", "/v1/labels", LabelCounts))

    def model(self, model: str | None = None) -> ModelInfo:
        return self._send(Call("GET", "/v1/model", ModelInfo,
                               params=_drop_none({"model": model})))

    def models(self) -> ModelsList:
        """``GET /v1/models``: the parts, their versions, which is active."""
        return self._send(Call("GET", "/v1/models", ModelsList))

    def activate(self, model: str, version: str) -> ModelPart:
        """``POST /v1/models/{model}/activate``: hot-swaps to ``version``."""
        return self._send(Call("POST", f"/v1/models/{model}/activate", ModelPart,
                               json={"version": version}))

    def ready(self) -> Health:
        """``GET /health/ready`` (raises :class:`Unavailable` while not ready)."""
        return self._send(Call("GET", "/health/ready", Health))


def _headers(api_key: str | None) -> dict:
    return {"X-API-Key": api_key} if api_key else {}


class Client(_Api):
    """Args:
        url: the server, e.g. ``http://127.0.0.1:8000``.
        api_key: sent as ``X-API-Key`` when given.
        timeout_s: per request.
        transport: an httpx transport (tests, proxies).
    """

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=_headers(api_key),
                                 timeout=timeout_s, transport=transport)

    def _send(self, call: Call):
        answer = self.http.request(call.method, call.path, params=call.params, files=call.files,
                                   data=call.data, json=call.json, headers=call.headers)
        return read(call, answer)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncClient(_Api):
    """:class:`Client`'s methods as coroutines (``await kensa.inspect(...)``)."""

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.http = httpx.AsyncClient(base_url=url.rstrip("/"), headers=_headers(api_key),
                                      timeout=timeout_s, transport=transport)

    async def _send(self, call: Call):
        answer = await self.http.request(call.method, call.path, params=call.params,
                                         files=call.files, data=call.data, json=call.json,
                                         headers=call.headers)
        return read(call, answer)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()


__all__ = ["ApiError", "AsyncClient", "BadRequest", "Client", "Conflict", "Invalid",
           "NotFound", "TooLarge", "Unauthorized", "Unavailable", "UnsupportedMediaType"]
