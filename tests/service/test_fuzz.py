"""Property-based fuzzing of the real app (Hypothesis): uploads, query parameters and
multipart structure. Whatever a client sends, the answer is never a 5xx and never a hang, and
every 4xx carries a JSON ``detail`` that says what to fix.

Bounded for the default run (a fixed number of derandomized examples per property, each
under a deadline); raise ``KENSA_FUZZ_EXAMPLES`` for a longer hunt.
"""

from __future__ import annotations

import io
import os
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from service_helpers import TestClient

from service.app import create_app
from service.config import Settings

EXAMPLES = int(os.environ.get("KENSA_FUZZ_EXAMPLES", "120"))
FUZZ = settings(max_examples=EXAMPLES, deadline=5000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ENDPOINTS = ("/v1/inspect", "/v1/inspect/overlay", "/v1/inspect/batch", "/v1/labels")


@pytest.fixture(scope="module")
def client(tiny_bundle, tmp_path_factory):
    """One started app for every example (the bundle loads once)."""
    app = create_app(Settings(model=tiny_bundle, device="cpu", max_upload_mb=1,
                              data_dir=tmp_path_factory.mktemp("fuzz") / "kensa-data"))
    with TestClient(app) as started:
        yield started


def assert_sound(r) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code >= 400:
        body = r.json()
        assert isinstance(body.get("detail"), str) and body["detail"], body


@st.composite
def images(draw) -> bytes:
    """A small real image in one of the formats and modes the decoder meets."""
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "I;16", "P", "1", "F", "CMYK", "LA"]))
    fmt = draw(st.sampled_from(["PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP"]))
    seed = draw(st.integers(0, 2**16))
    arr = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    im = Image.fromarray(arr).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        im = Image.fromarray(arr[..., 0].astype(np.uint16) * 257)
    buf = io.BytesIO()
    try:
        im.save(buf, format=fmt)
    except (OSError, ValueError, KeyError):  # a mode the format cannot hold: send PNG
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


@st.composite
def damaged(draw) -> bytes:
    """An image cut short, with bytes flipped, or with garbage added."""
    data = bytearray(draw(images()))
    how = draw(st.sampled_from(["cut", "flip", "append", "header"]))
    if how == "cut":
        return bytes(data[:draw(st.integers(0, len(data)))])
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    if how == "append":
        return bytes(data) + draw(st.binary(max_size=200))
    return bytes(data[:8]) + draw(st.binary(max_size=300))


uploads = st.one_of(images(), damaged(), st.binary(max_size=500))
content_types = st.one_of(st.none(), st.sampled_from(
    ["image/png", "image/jpeg", "application/octet-stream", "text/plain", "image/",
     "application/json", "multipart/mixed", "image/png; charset=utf-8", ""]))
texts = st.text(alphabet=string.printable, max_size=40)
queries = st.dictionaries(st.sampled_from(["include", "threshold", "limit", "x"]),
                          st.one_of(texts, st.sampled_from(
                              ["mask", "heatmap,overlay", "reconstruction", "nan", "-1", "inf",
                               "1e309", "0.5", "mask,,mask", ""])), max_size=3)


@FUZZ
@given(endpoint=st.sampled_from(ENDPOINTS), data=uploads, kind=content_types,
       name=st.one_of(st.none(), texts), query=queries, label=st.one_of(st.none(), texts))
def test_any_upload_and_query_gets_a_sound_answer(client, endpoint, data, kind, name, query,
                                                  label):
    field = "files" if endpoint.endswith("batch") else "file"
    part = (name or "", data) if kind is None else (name or "", data, kind)
    form = {"label": label} if label is not None else None
    assert_sound(client.post(endpoint, params=query, files=[(field, part)], data=form))


@FUZZ
@given(endpoint=st.sampled_from(ENDPOINTS),
       parts=st.lists(st.tuples(st.sampled_from(["file", "files", "label", "x", ""]),
                                st.booleans(), uploads), max_size=5))
def test_any_multipart_structure_gets_a_sound_answer(client, endpoint, parts):
    files = [(field, ("p.png", data, "image/png")) if as_file else (field, (None, data))
             for field, as_file, data in parts]
    assert_sound(client.post(endpoint, files=files) if files else client.post(endpoint))


@FUZZ
@given(endpoint=st.sampled_from(ENDPOINTS), body=st.binary(max_size=600),
       boundary=st.one_of(st.none(), st.text(alphabet=string.ascii_letters + "-=",
                                             max_size=20)),
       kind=st.sampled_from(["multipart/form-data", "application/json",
                             "application/x-www-form-urlencoded", "text/plain", ""]))
def test_any_raw_body_gets_a_sound_answer(client, endpoint, body, boundary, kind):
    header = kind if boundary is None else f"{kind}; boundary={boundary}"
    assert_sound(client.post(endpoint, content=body, headers={"Content-Type": header}))
