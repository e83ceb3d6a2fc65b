"""Overlays of recorded inspections are rendered once: the page's screens ask again and again."""

import re
import time

from service_helpers import upload, washer_png

from service.deps import PAGE_HEADER
from service.overlays import OverlayCache


def model_calls(client) -> float:
    metrics = client.get("/metrics").text
    return float(re.search(r"^kensa_batch_size_count (\S+)$", metrics, re.MULTILINE).group(1))


def test_the_cache_drops_the_least_recently_used():
    cache = OverlayCache(max_items=2)
    cache.put(("a",), b"A")
    cache.put(("b",), b"B")
    assert cache.get(("a",)) == b"A"  # now b is the oldest
    cache.put(("c",), b"C")
    assert (cache.get(("a",)), cache.get(("b",)), cache.get(("c",))) == (b"A", None, b"C")


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
    ident = client.post("/v1/inspect?threshold=0.001", files=upload(washer_png(5))).json()["id"]
    deadline = time.monotonic() + 20
    while client.app.state.overlays.drawing and time.monotonic() < deadline:
        time.sleep(0.05)
    before = model_calls(client)
    drawn = client.get(f"/v1/inspections/{ident}/overlay")
    assert drawn.status_code == 200 and model_calls(client) == before
    # the very picture a model pass draws for that image at that threshold
    fresh = client.post("/v1/inspect/overlay?threshold=0.001", files=upload(washer_png(5)))
    assert fresh.status_code == 200 and drawn.content == fresh.content


def test_without_a_page_nothing_is_drawn_ahead(make_client):
    client = make_client(keep_images="all")
    client.get("/v1/inspections")  # a client that is not the page
    ident = client.post("/v1/inspect", files=upload(washer_png(5))).json()["id"]
    assert client.app.state.overlays.drawing == 0
    before = model_calls(client)
    assert client.get(f"/v1/inspections/{ident}/overlay").status_code == 200
    assert model_calls(client) == before + 1
