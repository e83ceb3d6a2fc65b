"""The multipart form fields that carry uploaded images."""

from __future__ import annotations

from typing import Annotated

from fastapi import File, UploadFile

UploadField = Annotated[UploadFile, File(
    description="One image: PNG, JPEG, BMP or TIFF; 8- or 16-bit; gray, RGB or RGBA; sides "
                "from KENSA_MIN_SIDE (16) to KENSA_MAX_SIDE (32768), at most KENSA_MAX_ASPECT "
                "(20) times as long as wide, up to KENSA_MAX_PIXELS and KENSA_MAX_UPLOAD_MB.")]
UploadsField = Annotated[list[UploadFile], File(
    description="The images, repeated field `files`, at most KENSA_MAX_BATCH (default 64).")]
