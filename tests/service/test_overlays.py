"""Overlays of recorded inspections are rendered once: the page's screens ask again and again."""

import re

from service_helpers import upload, washer_png

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
