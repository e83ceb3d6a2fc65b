"""The records API through the real app: every inspection recorded, listed, filtered, paged,
reviewed, exported, counted; on SQLite and PostgreSQL."""

import asyncio
import csv
import io

import httpx
import pytest
from service_helpers import upload, washer_png

from service.app import create_app


def test_every_inspection_kind_is_recorded_with_its_answer(records_client):
    c = records_client()
    single = c.post("/v1/inspect", files=upload(washer_png(1)),
                    data={"source": "line-2/cam-1", "part_id": "SN-1"}).json()
    batch = c.post("/v1/inspect/batch", headers={"X-Kensa-Source": "cam-9"},
                   files=[("files", ("a.png", washer_png(2), "image/png")),
                          ("files", ("b.png", b"not an image", "image/png")),
                          ("files", ("c.png", washer_png(3), "image/png"))]).json()
    overlay = c.post("/v1/inspect/overlay", files=upload(washer_png(4)),
                     headers={"X-Kensa-Part-Id": "SN-4"})
    assert overlay.status_code == 200
    page = c.get("/v1/inspections").json()
    assert page["next"] is None
    by_id = {r["id"]: r for r in page["items"]}
    assert len(by_id) == 4  # the unreadable file was answered with an error, not recorded
    rec = by_id[single["id"]]
    for key in ("label", "score", "threshold", "width", "height", "elapsed_ms",
                "model_version", "reconstruction", "latent", "defects"):
        assert rec[key] == single[key], key
    assert (rec["source"], rec["part_id"], rec["model_name"]) == ("line-2/cam-1", "SN-1", "tiny")
    assert rec["created_at"].endswith("Z") and rec["review"] is None
    assert "mask" not in rec
    items = [e for e in batch["results"] if "id" in e]
    assert [by_id[e["id"]]["source"] for e in items] == ["cam-9", "cam-9"]
    assert by_id[overlay.headers["X-Kensa-Id"]]["part_id"] == "SN-4"
    assert c.get(f"/v1/inspections/{single['id']}").json() == rec


def test_a_source_over_64_characters_is_refused(records_client):
    c = records_client()
    r = c.post("/v1/inspect", files=upload(washer_png(1)), data={"source": "x" * 65})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("'source' (multipart field 'source' or header "
                                         "X-Kensa-Source) is 'xxx")
    assert c.get("/v1/inspections").json()["items"] == []


def test_filters_and_pages_through_the_api(records_client):
    c = records_client()
    ids = [c.post("/v1/inspect", files=upload(washer_png(n)),
                  data={"source": f"cam{n % 2}"}).json()["id"] for n in range(5)]
    seen, cursor = [], None
    while True:
        page = c.get("/v1/inspections", params={"limit": 2} | (
            {"cursor": cursor} if cursor else {})).json()
        seen += [r["id"] for r in page["items"]]
        cursor = page["next"]
        if not cursor:
            break
    assert seen == list(reversed(ids))
    cam0 = c.get("/v1/inspections", params={"source": "cam0"}).json()["items"]
    assert [r["id"] for r in cam0] == [ids[4], ids[2], ids[0]]
    assert c.get("/v1/inspections", params={"since": "2999-01-01T00:00:00Z"}).json()[
        "items"] == []


@pytest.mark.parametrize("params, detail", [
    ({"label": "broken"}, ("query parameter 'label': Input should be 'normal' or 'abnormal' "
                           "(got 'broken')")),
    ({"since": "yesterday"}, ("query parameter 'since': 'yesterday' is not an ISO 8601 time; "
                              "send e.g. 2026-12-04T10:00:00Z")),
    ({"limit": 501}, ("query parameter 'limit': Input should be less than or equal to 500 "
                      "(got '501')")),
    ({"cursor": "zzz"}, ("query parameter 'cursor': 'zzz' is not a cursor this server handed "
                         "out; pass the 'next' value of the previous page as it is, or leave "
                         "it out for the first page")),
])
def test_bad_filters_are_refused_with_what_to_fix(records_client, params, detail):
    r = records_client().get("/v1/inspections", params=params)
    assert (r.status_code, r.json()) == (422, {"detail": detail})


def test_an_unknown_id_is_404(records_client):
    r = records_client().get("/v1/inspections/nope")
    assert (r.status_code, r.json()) == (404, {
        "detail": "no inspection record with id 'nope': list them with GET /v1/inspections"})


def test_kept_images_come_back_byte_for_byte_and_as_an_overlay(records_client):
    c = records_client(keep_images="all")
    data = washer_png(5)
    ident = c.post("/v1/inspect", files=upload(data)).json()["id"]
    assert c.get(f"/v1/inspections/{ident}").json()["image_kept"] is True
    image = c.get(f"/v1/inspections/{ident}/image")
    assert (image.status_code, image.headers["content-type"], image.content) == (
        200, "image/png", data)
    overlay = c.get(f"/v1/inspections/{ident}/overlay")
    assert overlay.status_code == 200 and overlay.content[:2] == b"\xff\xd8"


def test_an_image_not_kept_is_404_saying_why(records_client):
    c = records_client(keep_images="none")
    ident = c.post("/v1/inspect", files=upload(washer_png(5))).json()["id"]
    for what in ("image", "overlay"):
        r = c.get(f"/v1/inspections/{ident}/{what}")
        assert r.status_code == 404
        assert r.json()["detail"].startswith(f"the image of inspection '{ident}' was not kept")


def test_a_review_is_stored_and_shown(records_client):
    c = records_client()
    ident = c.post("/v1/inspect", files=upload(washer_png(6))).json()["id"]
    r = c.put(f"/v1/inspections/{ident}/review", headers={"X-Kensa-User": "ann"},
              json={"label": "scratch", "note": "rim", "regions": [[1, 2, 10, 10]]})
    assert r.status_code == 200
    review = r.json()["review"]
    assert (review["label"], review["note"], review["regions"], review["by"]) == (
        "scratch", "rim", [[1, 2, 10, 10]], "ann")
    c.put(f"/v1/inspections/{ident}/review", json={"label": "Good"})
    assert c.get(f"/v1/inspections/{ident}").json()["review"]["label"] == "good"
    assert [x["id"] for x in c.get("/v1/inspections", params={
        "reviewed": "true", "review_label": "good"}).json()["items"]] == [ident]


@pytest.mark.parametrize("body, detail", [
    ({"label": "bad label!"}, ("field 'label' is 'bad label!': send 'good' or a defect name "
                               "made of letters, digits, '_', '-' and '.', at most 64 "
                               "characters, starting with a letter or digit")),
    ({"label": "dent", "regions": [[40, 40, 10, 10]]},
     ("field 'regions'[0] = [40, 40, 10, 10] is not inside the 48x48 image: x, y >= 0, "
      "w, h > 0, x + w <= 48, y + h <= 48")),
    ({"label": "dent", "regions": [[1, 2, 3]]},
     "field 'regions'[0] has 3 numbers: send [x, y, w, h] in pixels"),
])
def test_a_bad_review_is_refused(records_client, body, detail):
    c = records_client()
    ident = c.post("/v1/inspect", files=upload(washer_png(6))).json()["id"]
    r = c.put(f"/v1/inspections/{ident}/review", json=body)
    assert (r.status_code, r.json()) == (422, {"detail": detail})
    assert c.put("/v1/inspections/nope/review", json={"label": "good"}).status_code == 404


def test_stats_and_csv_export(records_client):
    c = records_client()
    answers = [c.post("/v1/inspect", files=upload(washer_png(n)),
                      data={"source": "cam1"}).json() for n in range(3)]
    c.put(f"/v1/inspections/{answers[0]['id']}/review", json={"label": "dent"})
    stats = c.get("/v1/stats", params={"bucket": "day"}).json()
    [bucket] = stats["items"]
    labels = [a["label"] for a in answers]
    assert (bucket["source"], bucket["total"], bucket["normal"], bucket["reviewed"]) == (
        "cam1", 3, labels.count("normal"), 1)
    assert bucket["yield"] == pytest.approx(labels.count("normal") / 3, abs=1e-6)
    r = c.get("/v1/inspections/export", params={"format": "csv", "source": "cam1"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["id"] for row in rows] == [a["id"] for a in reversed(answers)]
    assert rows[-1]["review_label"] == "dent"
    assert c.get("/v1/inspections/export", params={"format": "xml"}).status_code == 422


def test_32_concurrent_inspections_are_all_recorded(make_settings, db_url):
    url = db_url if db_url.startswith("postgresql") else None
    app = create_app(make_settings(database_url=url, batch_max_size=16, batch_wait_ms=50))
    uploads = [washer_png(seed) for seed in range(32)]

    async def scenario():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://kensa") as c:
                answers = await asyncio.gather(*(c.post("/v1/inspect", files=upload(d))
                                                 for d in uploads))
                page = await c.get("/v1/inspections", params={"limit": 100})
                return answers, page.json()

    answers, page = asyncio.run(asyncio.wait_for(scenario(), 90))
    assert [r.status_code for r in answers] == [200] * 32
    assert sorted(r["id"] for r in page["items"]) == sorted(a.json()["id"] for a in answers)


def test_with_recording_off_nothing_is_recorded_and_the_api_says_so(make_client, data_dir):
    c = make_client(records=False)
    assert c.post("/v1/inspect", files=upload(washer_png(1))).status_code == 200
    assert c.get("/health/ready").json()["records"] == "off"
    r = c.get("/v1/inspections")
    assert (r.status_code, r.json()["detail"]) == (503, (
        "recording is off on this server (KENSA_RECORDS=off): start it without it to record "
        "inspections"))
    assert not data_dir.exists()


def test_the_records_api_needs_the_api_key(records_client):
    c = records_client(api_keys="k1")
    assert c.get("/v1/inspections").status_code == 401
    assert c.get("/v1/stats", headers={"X-API-Key": "k1"}).status_code == 200
