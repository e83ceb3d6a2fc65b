"""Overlays of recorded inspections are rendered once: the page's screens ask again and again;
browsers keep them (ETag, 304), Live gets thumbnails, a swap or a pruned record is noticed."""

import asyncio
import base64
import io
import re

import numpy as np
from models_root_helpers import make_root
from PIL import Image
from service_helpers import TestClient, drawn_ahead, png, upload, washer, washer_png

from service.app import create_app
from service.config import Settings
from service.deps import PAGE_HEADER
from service.overlays import MAX_PENDING, Overlay, OverlayCache


def model_calls(client) -> float:
    metrics = client.get("/metrics").text
    return float(re.search(r"^kensa_batch_size_count (\S+)$", metrics, re.MULTILINE).group(1))


def test_the_cache_drops_the_least_recently_used():
    cache = OverlayCache(max_items=2)
    a, b, c = (Overlay(x, 1.0, "p", "v") for x in "abc")
    cache.put(a, "full", b"A")
    cache.put(b, "full", b"B")
    assert cache.get(a, "full") == b"A"  # now b is the oldest
    cache.put(c, "full", b"C")
    assert [cache.get(o, "full") for o in (a, b, c)] == [b"A", None, b"C"]
    assert cache.get(a, "thumb") is None  # sizes are kept apart


def test_requests_that_come_while_an_overlay_renders_wait_for_that_one():
    cache, calls = OverlayCache(), []
    overlay = Overlay("a", 1.0, "p", "v")

    async def render() -> bytes:
        calls.append(1)
        await asyncio.sleep(0.05)
        return b"JPEG"

    async def five_pages() -> list:
        return await asyncio.gather(*(cache.render_once(overlay, "thumb", render)
                                      for _ in range(5)))

    assert asyncio.run(five_pages()) == [b"JPEG"] * 5 and len(calls) == 1
    assert cache.get(overlay, "thumb") == b"JPEG" and cache.drawing == 0


def test_a_second_overlay_of_a_record_needs_no_model_call(make_client):
    client = make_client(keep_images="all")
    ident = client.post("/v1/inspect", files=upload(washer_png(5))).json()["id"]
    before = model_calls(client)
    first = client.get(f"/v1/inspections/{ident}/overlay")
    assert model_calls(client) == before + 1
    again = client.get(f"/v1/inspections/{ident}/overlay")
    assert model_calls(client) == before + 1
    assert first.status_code == again.status_code == 200
    assert first.content == again.content and first.content[:2] == b"\xff\xd8"


def test_while_a_page_is_open_kept_overlays_are_drawn_ahead_without_a_model_pass(make_client):
    client = make_client(keep_images="abnormal")
    assert client.get("/v1/inspections", headers={PAGE_HEADER: "1"}).status_code == 200
    image = washer_png(5, size=240)
    ident = client.post("/v1/inspect?threshold=0.001", files=upload(image)).json()["id"]
    drawn_ahead(client)
    before = model_calls(client)
    drawn = client.get(f"/v1/inspections/{ident}/overlay?size=thumb")
    assert drawn.status_code == 200 and model_calls(client) == before
    # the very picture a model pass draws for that image at that threshold: a fresh server
    # renders it from the kept image
    fresh = make_client(keep_images="abnormal", data_dir=client.app.state.settings.data_dir)
    again = fresh.get(f"/v1/inspections/{ident}/overlay?size=thumb")
    assert again.status_code == 200 and again.content == drawn.content
    assert again.headers["etag"] == drawn.headers["etag"]
    # the full overlay (Review) is rendered when asked, with a model pass
    assert client.get(f"/v1/inspections/{ident}/overlay").status_code == 200
    assert model_calls(client) == before + 1


def test_a_small_images_thumbnail_is_drawn_when_asked_a_large_ones_at_once(make_client):
    """A page shows 24 of the ~150 records a fast line makes between two refreshes: a small
    image's thumbnail waits, as its arrays, until a page asks (no model pass then either);
    a large image's is drawn right after the answer (shrinking it is most of the work)."""
    client = make_client(keep_images="all")
    cache = client.app.state.overlays
    assert client.get("/v1/inspections", headers={PAGE_HEADER: "1"}).status_code == 200
    small = client.post("/v1/inspect", files=upload(washer_png(5, size=240))).json()["id"]
    drawn_ahead(client)
    assert (cache.pending, cache.drawing) == (1, 0)
    before = model_calls(client)
    listed = client.get("/v1/inspections/thumbnails", params={"id": small}).json()
    assert list(listed["thumbnails"]) == [small] and listed["missing"] == []
    assert cache.pending == 0 and model_calls(client) == before
    large = client.post("/v1/inspect", files=upload(washer_png(6, size=400))).json()["id"]
    drawn_ahead(client)
    assert cache.pending == 0
    before = model_calls(client)
    assert client.get(f"/v1/inspections/{large}/overlay?size=thumb").status_code == 200
    assert model_calls(client) == before


def test_only_the_newest_thumbnails_wait_to_be_drawn():
    async def keep() -> OverlayCache:
        cache = OverlayCache()
        for n in range(MAX_PENDING + 5):
            cache.draw_ahead(str(n), Overlay(str(n), 1.0, "p", "v"), "thumb",
                             lambda n=n: f"JPEG{n}".encode(), now=False)
        return cache

    cache = asyncio.run(keep())
    assert cache.pending == MAX_PENDING
    newest, oldest = Overlay(str(MAX_PENDING + 4), 1.0, "p", "v"), Overlay("0", 1.0, "p", "v")
    assert asyncio.run(cache.drawn(newest, "thumb")) == f"JPEG{MAX_PENDING + 4}".encode()
    assert asyncio.run(cache.drawn(oldest, "thumb")) is None  # dropped: read and rendered


def test_without_a_page_nothing_is_drawn_ahead(make_client):
    client = make_client(keep_images="all")
    client.get("/v1/inspections")  # a client that is not the page
    ident = client.post("/v1/inspect", files=upload(washer_png(5))).json()["id"]
    assert client.app.state.overlays.drawing == client.app.state.overlays.pending == 0
    before = model_calls(client)
    assert client.get(f"/v1/inspections/{ident}/overlay").status_code == 200
    assert model_calls(client) == before + 1


def jpeg_size(data: bytes) -> tuple[int, int]:
    assert data[:2] == b"\xff\xd8"
    return Image.open(io.BytesIO(data)).size


def test_a_browser_keeps_an_overlay_and_its_etag_gives_a_304_without_a_body(make_client):
    client = make_client(keep_images="all")
    ident = client.post("/v1/inspect", files=upload(washer_png(5))).json()["id"]
    first = client.get(f"/v1/inspections/{ident}/overlay")
    etag = first.headers["etag"]
    assert first.status_code == 200 and re.fullmatch(r'"[0-9a-f]{32}"', etag)
    assert first.headers["cache-control"] == "private, no-cache"
    for sent in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        same = client.get(f"/v1/inspections/{ident}/overlay", headers={"If-None-Match": sent})
        assert (same.status_code, same.content, same.headers["etag"]) == (304, b"", etag)
        assert same.headers["cache-control"] == "private, no-cache"
    other = client.get(f"/v1/inspections/{ident}/overlay", headers={"If-None-Match": '"x"'})
    assert other.status_code == 200 and other.content == first.content
    thumb = client.get(f"/v1/inspections/{ident}/overlay?size=thumb",
                       headers={"If-None-Match": etag})  # another picture, another tag
    assert thumb.status_code == 200 and thumb.headers["etag"] != etag


def test_a_thumbnail_is_at_most_192_pixels_and_keeps_the_shape(make_client):
    client = make_client(keep_images="all")
    ident = client.post("/v1/inspect", files=upload(wide_png(400, 260))).json()["id"]
    full = client.get(f"/v1/inspections/{ident}/overlay")
    thumb = client.get(f"/v1/inspections/{ident}/overlay?size=thumb")
    assert jpeg_size(full.content) == (400, 260)
    assert jpeg_size(thumb.content) == (192, 125)
    small = client.post("/v1/inspect", files=upload(washer_png(5))).json()["id"]
    assert jpeg_size(client.get(f"/v1/inspections/{small}/overlay?size=thumb").content) == (
        48, 48)  # never enlarged


def wide_png(width: int, height: int) -> bytes:
    """A washer in the middle of a wider dark picture."""
    canvas = np.full((height, width, 3), 40, np.uint8)
    left = (width - height) // 2
    canvas[:, left:left + height] = washer(5, size=height)
    return png(canvas)


def test_a_size_the_server_does_not_draw_is_422_naming_the_choices(make_client):
    client = make_client(keep_images="all")
    ident = client.post("/v1/inspect", files=upload(washer_png(5))).json()["id"]
    r = client.get(f"/v1/inspections/{ident}/overlay?size=huge")
    assert r.status_code == 422
    assert "query parameter 'size'" in r.json()["detail"]
    assert "'full' or 'thumb'" in r.json()["detail"] and "huge" in r.json()["detail"]


def test_a_record_pruned_by_retention_has_no_overlay_any_more(make_client):
    client = make_client(keep_images="all", record_retention_days=1e-9)  # 86 microseconds
    assert client.get("/v1/inspections", headers={PAGE_HEADER: "1"}).status_code == 200
    ident = client.post("/v1/inspect", files=upload(washer_png(5))).json()["id"]
    drawn_ahead(client)
    first = client.get(f"/v1/inspections/{ident}/overlay?size=thumb")
    assert first.status_code == 200  # answered from the index: drawn ahead
    assert client.app.state.store.prune()["records"] == 1
    listed = client.get("/v1/inspections/thumbnails", params={"id": ident}).json()
    assert listed == {"thumbnails": {}, "missing": [ident]}
    for headers in ({}, {"If-None-Match": first.headers["etag"]}):
        gone = client.get(f"/v1/inspections/{ident}/overlay?size=thumb", headers=headers)
        assert gone.status_code == 404 and "no inspection record" in gone.json()["detail"]


def test_a_hot_swap_gives_a_new_etag_and_a_fresh_render(tmp_path, data_dir):
    models = tmp_path / "models"
    _, b = make_root(models)
    settings = Settings(models_dir=models, device="cpu", data_dir=data_dir, keep_images="all")
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/inspections", headers={PAGE_HEADER: "1"}).status_code == 200
        ident = client.post("/v1/inspect", files=upload(washer_png(5, size=64))).json()["id"]
        drawn_ahead(client)
        url = f"/v1/inspections/{ident}/overlay?size=thumb"
        old = client.get(url)
        assert old.status_code == 200
        assert client.get(url, headers={"If-None-Match": old.headers["etag"]}).status_code == 304
        assert client.post("/v1/models/washer/activate", json={"version": b}).status_code == 200
        before = model_calls(client)
        new = client.get(url, headers={"If-None-Match": old.headers["etag"]})
        assert new.status_code == 200 and new.headers["etag"] != old.headers["etag"]
        assert model_calls(client) == before + 1  # rendered by version b
        assert client.get(url, headers={"If-None-Match": new.headers["etag"]}).status_code == 304


def test_live_gets_the_thumbnails_in_memory_inline_with_one_request(make_client):
    client = make_client(keep_images="all")
    before_page = client.post("/v1/inspect", files=upload(washer_png(4))).json()["id"]
    assert client.get("/v1/inspections", headers={PAGE_HEADER: "1"}).status_code == 200
    drawn = [client.post("/v1/inspect", files=upload(washer_png(n))).json()["id"]
             for n in (5, 6)]
    drawn_ahead(client)
    r = client.get("/v1/inspections/thumbnails",
                   params={"id": [*drawn, before_page, "nope", drawn[0]]})
    assert r.status_code == 200
    assert r.json()["missing"] == [before_page, "nope"]  # not drawn, unknown: by URL
    for ident in drawn:
        by_url = client.get(f"/v1/inspections/{ident}/overlay?size=thumb").content
        assert base64.b64decode(r.json()["thumbnails"][ident]) == by_url
    too_many = client.get("/v1/inspections/thumbnails", params={"id": ["x"] * 49})
    assert too_many.status_code == 422 and "at most 48" in too_many.json()["detail"]
