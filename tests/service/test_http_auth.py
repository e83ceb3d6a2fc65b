"""API keys: with KENSA_API_KEYS set, /v1/* needs X-API-Key; health and /metrics stay open."""

import pytest
from service_helpers import upload, washer_png

MISSING = ("missing X-API-Key header: this server needs an API key on /v1/*; ask its "
           "operator for one")
WRONG = "the X-API-Key header is not a valid key for this server"


@pytest.fixture
def keyed(make_client):
    return make_client(api_keys="alpha-key,beta-key")


def calls(client, headers):
    return [
        client.get("/v1/model", headers=headers),
        client.post("/v1/inspect", files=upload(washer_png()), headers=headers),
        client.post("/v1/inspect/overlay", files=upload(washer_png()), headers=headers),
        client.post("/v1/inspect/batch", files=[("files", ("a.png", washer_png(), "image/png"))],
                    headers=headers),
    ]


def test_v1_without_a_key_is_401(keyed):
    for r in calls(keyed, {}):
        assert (r.status_code, r.json()) == (401, {"detail": MISSING})
        assert r.headers["www-authenticate"] == "APIKey"


def test_v1_with_a_wrong_key_is_401(keyed):
    for r in calls(keyed, {"X-API-Key": "alpha-key-but-longer"}):
        assert (r.status_code, r.json()) == (401, {"detail": WRONG})


@pytest.mark.parametrize("key", ["alpha-key", "beta-key"])
def test_v1_with_any_valid_key_is_200(keyed, key):
    assert [r.status_code for r in calls(keyed, {"X-API-Key": key})] == [200] * 4


def test_health_and_metrics_stay_open(keyed):
    for path in ("/health/live", "/health/ready", "/metrics", "/openapi.json"):
        assert keyed.get(path).status_code == 200, path


def test_no_keys_configured_means_open(client):
    assert client.get("/v1/model").status_code == 200
