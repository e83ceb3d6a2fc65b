"""service.uploads: content types and bounded reads."""

import asyncio
import io

import pytest
from fastapi import UploadFile
from starlette.datastructures import Headers

from service import uploads
from service.errors import FileTooLarge, UnsupportedMediaType


@pytest.mark.parametrize("kind", [None, "", "image/png", "image/jpeg", "IMAGE/TIFF",
                                  "application/octet-stream", "image/png; charset=binary"])
def test_image_and_octet_types_pass(kind):
    uploads.check_content_type(kind, "part.png")


@pytest.mark.parametrize("kind", ["text/plain", "application/json", "video/mp4"])
def test_other_types_are_415(kind):
    with pytest.raises(UnsupportedMediaType) as err:
        uploads.check_content_type(kind, "notes.txt")
    assert str(err.value) == (
        f"the upload of 'notes.txt' has content type {kind}, not an image: send a PNG, JPEG, "
        "BMP or TIFF file as image/* (or application/octet-stream)")


def _upload(data: bytes, size_known: bool) -> UploadFile:
    return UploadFile(io.BytesIO(data), size=len(data) if size_known else None,
                      filename="a.png", headers=Headers({"content-type": "image/png"}))


@pytest.mark.parametrize("size_known", [True, False])
def test_read_upload_stops_past_the_limit(size_known):
    with pytest.raises(FileTooLarge):
        asyncio.run(uploads.read_upload(_upload(b"x" * 1001, size_known), 1000))


def test_read_upload_takes_a_file_at_the_limit():
    assert asyncio.run(uploads.read_upload(_upload(b"x" * 1000, False), 1000)) == b"x" * 1000
