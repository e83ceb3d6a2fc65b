"""service.client against a real `kensa serve` process: typed answers, API errors as
exceptions, sync and async."""

import asyncio

import httpx
import pytest
from service_helpers import washer_png

from service.client import (
    AsyncClient,
    BadRequest,
    Client,
    Invalid,
    NotFound,
    Unauthorized,
    Unavailable,
    error_of,
)
from service.schemas import InspectionResult

KEY = "line-key"


def test_the_client_walks_the_records_api(live_server, tmp_path):
    part = tmp_path / "part.png"
    part.write_bytes(washer_png(7))
    with Client(live_server, api_key=KEY) as kensa:
        assert kensa.ready().status == "ready"
        verdict = kensa.inspect(part, source="client/cam", part_id="SN-7", include=["mask"])
        assert isinstance(verdict, InspectionResult) and verdict.mask is not None
        record = kensa.inspection(str(verdict.id))
        assert (record.source, record.part_id, record.score) == ("client/cam", "SN-7",
                                                                  verdict.score)
        reviewed = kensa.review(str(verdict.id), "scratch", note="rim", user="op-1")
        assert (reviewed.review.label, reviewed.review.by) == ("scratch", "op-1")
        page = kensa.inspections(source="client/cam", reviewed=True, limit=5)
        assert [str(i.id) for i in page.items] == [str(verdict.id)]
        assert str(verdict.id) in kensa.export_csv(source="client/cam")
        assert sum(b.total for b in kensa.stats(source="client/cam").items) == 1
        batch = kensa.inspect_batch([washer_png(8), b"junk"], source="client/cam")
        assert [getattr(r, "status", 200) for r in batch.results] == [200, 400]
        assert kensa.overlay(washer_png(9))[:2] == b"\xff\xd8"
        assert kensa.model().name == "tiny"


def test_api_errors_are_exceptions_with_the_servers_detail(live_server):
    with Client(live_server, api_key=KEY) as kensa:
        with pytest.raises(BadRequest) as bad:
            kensa.inspect(b"not an image", filename="x.png")
        assert bad.value.status == 400 and "not a readable image" in bad.value.detail
        with pytest.raises(NotFound):
            kensa.inspection("00000000-0000-0000-0000-000000000000")
        with pytest.raises(Invalid, match="label"):
            kensa.inspections(label="weird")
    with Client(live_server, api_key="wrong") as kensa, pytest.raises(Unauthorized):
        kensa.inspections()


def test_a_503_carries_retry_after():
    answer = httpx.Response(503, json={"detail": "queue full"}, headers={"Retry-After": "2"})
    error = error_of(answer)
    assert isinstance(error, Unavailable) and (error.detail, error.retry_after) == (
        "queue full", 2.0)


def test_the_async_client_has_the_same_calls(live_server):
    async def walk():
        async with AsyncClient(live_server, api_key=KEY) as kensa:
            verdict = await kensa.inspect(washer_png(10), source="client/async")
            record = await kensa.inspection(str(verdict.id))
            with pytest.raises(NotFound):
                await kensa.image("00000000-0000-0000-0000-000000000000")
            return verdict, record

    verdict, record = asyncio.run(walk())
    assert (record.id, record.source) == (verdict.id, "client/async")
