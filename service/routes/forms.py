"""The multipart form fields that carry uploaded images, and the rule that a single-image
route's fields come once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import File, Request, UploadFile

from ..errors import InvalidParameter

UploadField = Annotated[UploadFile, File(
    description="One image: PNG, JPEG, BMP or TIFF; 8- or 16-bit; gray, RGB or RGBA; sides "
                "from KENSA_MIN_SIDE (16) to KENSA_MAX_SIDE (32768), at most KENSA_MAX_ASPECT "
                "(20) times as long as wide, up to KENSA_MAX_PIXELS and KENSA_MAX_UPLOAD_MB.")]
UploadsField = Annotated[list[UploadFile], File(
    description="The images, repeated field `files`, at most KENSA_MAX_BATCH (default 64).")]

ONCE_ADVICE = {"file": "send one image per request (several go to /v1/inspect/batch, each as a "
                       "'files' field)",
               "label": "send one label per image"}


def sent_once(*names: str) -> Callable[[Request], Awaitable[None]]:
    """A route dependency refusing a form that repeats one of ``names`` (FastAPI would take
    the last one silently). The form is the one FastAPI parsed already (Starlette caches it).

    Raises:
        InvalidParameter: a field came more than once (422).
    """
    async def check(request: Request) -> None:
        form = await request.form()
        for name in names:
            if (count := len(form.getlist(name))) > 1:
                raise InvalidParameter(f"multipart field '{name}' was sent {count} times: "
                                       f"{ONCE_ADVICE[name]}")
    return check
