"""/docs and /redoc load their JavaScript and CSS from this server, never from a CDN."""

import re

import pytest

from service.ui import STATIC

ASSET = re.compile(r'(?:src|href)="([^"]+)"')


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_every_asset_from_this_server(client, page):
    r = client.get(page)
    assert r.status_code == 200
    html = r.text
    assert "cdn.jsdelivr" not in html and "fonts.googleapis" not in html
    assets = ASSET.findall(html)
    assert assets, html  # a script and a favicon at least
    for url in assets:
        assert url.startswith("/ui/static/vendor/"), url
        got = client.get(url)
        assert got.status_code == 200, url
        assert len(got.content) > 500, url
    assert "/openapi.json" in html


def test_vendored_assets_keep_their_licences():
    vendor = STATIC / "vendor"
    for folder in ("swagger-ui", "redoc"):
        assert (vendor / folder / "LICENSE").read_text().strip()
    assert "Apache License" in (vendor / "swagger-ui" / "LICENSE").read_text()
