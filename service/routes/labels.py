"""``/v1/labels``: operator feedback, images labeled for the next ``kensa train --labels``."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from starlette.concurrency import run_in_threadpool

from .. import uploads
from ..deps import LABELS_OFF, LabelStoreDep, SettingsDep, require_api_key
from ..errors import InvalidParameter
from ..labels import LABEL_PATTERN
from ..monitoring import LOG_KEY
from ..schemas import LabelCounts, LabelStored
from .forms import UploadField, sent_once
from .responses import E400, E401, E413, E415, E422, error_response

router = APIRouter(prefix="/v1", tags=["labels"], dependencies=[Depends(require_api_key)])

LabelField = Annotated[str, Form(
    description="What the part really is: `good` (a false alarm) or a defect name (letters, "
                "digits, `_`, `-`, `.`; at most 64 characters, starting with a letter or "
                "digit).", examples=["scratch"])]
E503_LABELS = {503: error_response("The server was started without KENSA_LABELS_DIR.",
                                   LABELS_OFF)}


@router.post("/labels", response_model=LabelStored, status_code=201,
             dependencies=[Depends(sent_once("file", "label"))],
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
    data = await uploads.read_upload(file, settings.max_upload_bytes)
    # stored only when it decodes: a label on a file the trainer cannot read would be lost
    await run_in_threadpool(uploads.decode, data, settings.image_limits)
    stored = await run_in_threadpool(store.add, data, label)
    counts = await run_in_threadpool(store.counts)
    request.scope[LOG_KEY] = {"label": label, "path": stored.path}
    return LabelStored(labels_file=str(store.csv), total=sum(counts.values()), counts=counts,
                       path=stored.path, label=stored.label, sha256=stored.sha256,
                       new_image=stored.new_image)


@router.get("/labels", response_model=LabelCounts, summary="What has been labeled",
            responses=E401 | E503_LABELS,
            description="How many images operators have labeled, per label.")
async def label_counts(store: LabelStoreDep) -> LabelCounts:
    counts = await run_in_threadpool(store.counts)
    return LabelCounts(labels_file=str(store.csv), total=sum(counts.values()), counts=counts)
