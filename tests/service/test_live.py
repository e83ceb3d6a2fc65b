"""The Live feed (GET /v1/inspections/live): one answer shared by every open page for at most
KENSA_LIVE_MAX_AGE_S, thumbnails inline, ETag/304, the list's filters; service/live.py."""

import asyncio
import base64

import pytest
from service_helpers import drawn_ahead, upload, washer_png

from service.deps import PAGE_HEADER
from service.live import LiveFeed


def test_callers_in_the_window_share_one_build_and_a_later_one_builds_again():
    async def go():
        feed, made = LiveFeed(max_age_s=0.2), []

        async def build() -> bytes:
            made.append(1)
            await asyncio.sleep(0.05)  # callers arrive while it runs
            return f"answer {len(made)}".encode()

        first = await asyncio.gather(*(feed.answer("q", build) for _ in range(10)))
        assert {s.body for s in first} == {b"answer 1"} and len(made) == 1
        assert (await feed.answer("q", build)).body == b"answer 1"  # still young
        assert (await feed.answer("other", build)).body == b"answer 2"  # another question
        await asyncio.sleep(0.25)
        again = await feed.answer("q", build)
        assert again.body == b"answer 3" and again.etag != first[0].etag
        assert feed.builds == 3

    asyncio.run(go())


def test_a_failed_build_reaches_its_waiters_and_the_next_call_builds_again():
    async def go():
        feed, calls = LiveFeed(max_age_s=60), []

        async def build() -> bytes:
            calls.append(1)
            await asyncio.sleep(0.02)
            if len(calls) == 1:
                raise RuntimeError("database went away")
            return b"ok"

        got = await asyncio.gather(*(feed.answer("q", build) for _ in range(3)),
                                   return_exceptions=True)
        assert all(isinstance(g, RuntimeError) for g in got) and len(calls) == 1
        assert (await feed.answer("q", build)).body == b"ok"

    asyncio.run(go())


def test_only_the_newest_questions_are_kept():
    async def go():
        feed = LiveFeed(max_age_s=60, max_questions=2)

        async def build() -> bytes:
            return b"x"

        for q in ("a", "b", "c"):
            await feed.answer(q, build)
        await feed.answer("a", build)  # "a" was dropped: built again
        assert feed.builds == 4

    asyncio.run(go())


def test_live_lists_what_the_list_does_with_the_thumbnails_inline(make_client):
    client = make_client(keep_images="all", live_max_age_s=0)
    before_page = client.post("/v1/inspect", files=upload(washer_png(4))).json()["id"]
    r = client.get("/v1/inspections/live", headers={PAGE_HEADER: "1"})  # a page opens
    assert r.status_code == 200 and r.json()["missing"] == [before_page]
    drawn = [client.post("/v1/inspect", files=upload(washer_png(n))).json()["id"]
             for n in (5, 6)]
    drawn_ahead(client)
    body = client.get("/v1/inspections/live", params={"limit": 3}).json()
    listed = client.get("/v1/inspections", params={"limit": 3}).json()["items"]
    assert body["items"] == listed and [i["id"] for i in listed] == [*drawn[::-1], before_page]
    assert body["missing"] == [before_page]  # answered before a page was open: not drawn
    for ident in drawn:
        by_url = client.get(f"/v1/inspections/{ident}/overlay?size=thumb").content
        assert base64.b64decode(body["thumbnails"][ident]) == by_url
    assert client.get("/v1/inspections/live", params={"limit": 1}).json()["items"] == listed[:1]


def test_pages_in_the_window_get_the_same_answer_and_a_new_filter_its_own(make_client):
    client = make_client(keep_images="none", live_max_age_s=60)
    client.post("/v1/inspect", files=upload(washer_png(1)), data={"source": "cam-1"})
    first = client.get("/v1/inspections/live")
    client.post("/v1/inspect", files=upload(washer_png(2)), data={"source": "cam-2"})
    shared = client.get("/v1/inspections/live")
    assert shared.content == first.content and len(shared.json()["items"]) == 1
    # another question is built now, with the filter applied
    cam2 = client.get("/v1/inspections/live", params={"source": "cam-2"}).json()["items"]
    assert [i["source"] for i in cam2] == ["cam-2"]
    # the list is never shared
    assert len(client.get("/v1/inspections").json()["items"]) == 2


def test_an_unchanged_answer_is_a_304_without_a_body(make_client):
    client = make_client(keep_images="none", live_max_age_s=0)
    client.post("/v1/inspect", files=upload(washer_png(1)))
    first = client.get("/v1/inspections/live")
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "private, no-cache"
    same = client.get("/v1/inspections/live", headers={"If-None-Match": etag})
    assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == etag
    client.post("/v1/inspect", files=upload(washer_png(2)))
    changed = client.get("/v1/inspections/live", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and len(changed.json()["items"]) == 2


@pytest.mark.parametrize(("params", "says"), [
    ({"limit": 49}, "less than or equal to 48"),
    ({"limit": 0}, "greater than or equal to 1"),
    ({"label": "broken"}, "'normal' or 'abnormal'"),
    ({"since": "yesterday"}, "ISO 8601"),
])
def test_bad_questions_are_422_saying_what_to_fix(client, params, says):
    r = client.get("/v1/inspections/live", params=params)
    assert r.status_code == 422 and says in str(r.json()["detail"])


def test_without_records_it_is_503_saying_how_to_turn_them_on(make_client):
    r = make_client(records=False).get("/v1/inspections/live")
    assert r.status_code == 503 and "KENSA_RECORDS" in r.json()["detail"]
