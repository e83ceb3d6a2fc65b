"""The error answers each endpoint documents in OpenAPI, with an example ``detail``."""

from __future__ import annotations

from ..schemas import ErrorBody


def error_response(description: str, example: str) -> dict:
    """One documented error answer: the :class:`ErrorBody` model and an example of it."""
    return {"model": ErrorBody, "description": description,
            "content": {"application/json": {"example": {"detail": example}}}}


E400 = {400: error_response(
    "The bytes are not a readable image (truncated, random, empty).",
    "the upload is empty (0 bytes): send the bytes of a PNG, JPEG, BMP or TIFF "
    "file (8- or 16-bit; gray, RGB or RGBA)")}
E401 = {401: error_response(
    "KENSA_API_KEYS is set and X-API-Key is missing or wrong.",
    "missing X-API-Key header: this server needs an API key on /v1/*; ask its "
    "operator for one")}
E404 = {404: error_response(
    "No such record, model part or version.",
    "no model part 'bolts' in /models; known parts: screws, washers")}
E409 = {409: error_response(
    "The version is not a valid bundle, or this server cannot switch versions.",
    "version '864194d272d7097b' of 'screws' is not a valid bundle: /models/screws/"
    "864194d272d7097b is incomplete: vae.safetensors is missing")}
E413 = {413: error_response(
    "The file is over KENSA_MAX_UPLOAD_MB, the image over KENSA_MAX_PIXELS, "
    "or the batch over KENSA_MAX_BATCH files.",
    "the image is 9000x9000 = 81,000,000 pixels, over the limit of 40,000,000: "
    "resize it before upload or raise KENSA_MAX_PIXELS")}
E415 = {415: error_response(
    "The upload's content type is not an image type.",
    "the upload of 'notes.txt' has content type text/plain, not an image: send a "
    "PNG, JPEG, BMP or TIFF file as image/* (or application/octet-stream)")}
E422 = {422: error_response(
    "A field or parameter is missing or invalid.",
    "missing multipart field 'file': send the image as multipart/form-data field "
    "'file' (for example: curl -F file=@part.png URL)")}
E503 = {503: error_response(
    "No model loaded yet, or the queue is full (then with a Retry-After header, in seconds).",
    "the model is not loaded yet: retry when /health/ready answers 200")}
INSPECT_ERRORS = E400 | E401 | E404 | E413 | E415 | E422 | E503
