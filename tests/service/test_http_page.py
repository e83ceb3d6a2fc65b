"""The operator page over HTTP: the key login and its cookie, the cross-site guard, and
client-sent text escaped in the server-rendered page. The browser tests drive the script."""

import re

import pytest
from service_helpers import upload, washer_png

from service.deps import PAGE_HEADER, SESSION_COOKIE

HOSTILE = {"source": "<script>window.pwned=1</script>",
           "part_id": '"><img src=x onerror=alert(1)>'}
PAGE = {PAGE_HEADER: "1"}


@pytest.fixture
def keyed(make_client):
    return make_client(api_keys="alpha-key", keep_images="all")


def inspect(client, headers=None, **origin) -> dict:
    r = client.post("/v1/inspect", files=upload(washer_png(2)), data=origin, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_the_page_is_served_and_the_root_leads_there(client):
    r = client.get("/", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (307, "/ui/")
    page = client.get("/ui/")
    assert page.status_code == 200
    assert 'id="live"' in page.text and 'id="review"' in page.text and 'id="inspect"' in page.text
    for asset in re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', page.text):
        assert client.get(asset).status_code == 200, asset


def test_with_keys_the_page_asks_for_one_and_keeps_it_in_a_strict_httponly_cookie(keyed):
    login = keyed.get("/ui/")
    assert login.status_code == 401 and 'id="login"' in login.text
    assert keyed.get("/v1/inspections").status_code == 401
    # a cross-site form cannot send the page header: no sign-in without it
    assert keyed.post("/ui/session", json={"key": "alpha-key"}).status_code == 403
    assert keyed.post("/ui/session", json={"key": "wrong"}, headers=PAGE).status_code == 401
    assert SESSION_COOKIE not in keyed.cookies
    r = keyed.post("/ui/session", json={"key": "alpha-key"}, headers=PAGE)
    assert r.status_code == 204
    cookie = r.headers["set-cookie"].lower()
    assert f"{SESSION_COOKIE}=alpha-key" in cookie
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert keyed.get("/ui/").status_code == 200
    assert keyed.get("/v1/inspections").status_code == 200
    assert keyed.delete("/ui/session").status_code == 204
    assert keyed.get("/ui/").status_code == 401


def test_a_state_changing_call_on_the_cookie_needs_the_page_header(keyed):
    record = inspect(keyed, headers={"X-API-Key": "alpha-key"})
    keyed.post("/ui/session", json={"key": "alpha-key"}, headers=PAGE)
    review = f"/v1/inspections/{record['id']}/review"
    refused = keyed.put(review, json={"label": "good"})
    assert refused.status_code == 403 and PAGE_HEADER in refused.json()["detail"]
    assert keyed.post("/v1/inspect", files=upload(washer_png(2))).status_code == 403
    assert keyed.get(f"/v1/inspections/{record['id']}").json()["review"] is None
    assert keyed.put(review, json={"label": "good"}, headers=PAGE).status_code == 200
    # a client with its own key header needs no page header
    keyed.cookies.clear()
    assert keyed.put(review, json={"label": "scratch"},
                     headers={"X-API-Key": "alpha-key"}).status_code == 200


def test_client_sent_text_is_escaped_in_the_page(client):
    record = inspect(client, **HOSTILE)
    assert client.put(f"/v1/inspections/{record['id']}/review",
                      json={"label": "<script>"}).status_code == 422  # labels are names only
    assert client.put(f"/v1/inspections/{record['id']}/review",
                      json={"label": "scratch", "note": "<script>alert(2)</script>"}
                      ).status_code == 200
    html = client.get("/ui/").text
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in html  # the source, as text
    assert "<script>window.pwned" not in html  # part ids and notes: the browser test
    assert "scratch" in html  # a defect name known from the review
