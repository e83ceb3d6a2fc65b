"""API keys: with KENSA_API_KEYS set, /v1/* and /metrics need X-API-Key; health stays open,
the API description too unless KENSA_PUBLIC_DOCS=false."""

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


def test_health_and_the_api_description_stay_open(keyed):
    for path in ("/health/live", "/health/ready", "/openapi.json", "/docs", "/redoc"):
        assert keyed.get(path).status_code == 200, path


def test_metrics_need_the_key_when_keys_are_set(keyed):
    # /metrics counts verdicts by label: not for whoever reaches the port
    r = keyed.get("/metrics")
    assert (r.status_code, r.json()) == (401, {"detail": MISSING})
    assert keyed.get("/metrics", headers={"X-API-Key": "beta-key"}).status_code == 200


def test_public_metrics_opens_them_again(make_client):
    client = make_client(api_keys="alpha-key", public_metrics=True)
    assert client.get("/metrics").status_code == 200


def test_without_public_docs_the_api_description_is_not_served(make_client):
    client = make_client(api_keys="alpha-key", public_docs=False)
    for path in ("/openapi.json", "/docs", "/redoc"):
        r = client.get(path, headers={"X-API-Key": "alpha-key"})
        assert r.status_code == 404, path
        assert r.json()["detail"].startswith(f"no such endpoint: {path}")
    assert client.get("/health/live").status_code == 200


def test_no_keys_configured_means_open(client):
    assert client.get("/v1/model").status_code == 200
