"""32 concurrent requests, all answered correctly, gathered into shared model batches."""

import asyncio

import httpx
import numpy as np
from service_helpers import decoded, upload, washer_png

from service.app import create_app

N = 32


def test_32_concurrent_requests(make_settings, inspector):
    # a 50 ms gathering window makes the batching visible even on a busy CPU
    app = create_app(make_settings(batch_max_size=16, batch_wait_ms=50))
    uploads = [washer_png(seed, "scratch" if seed % 3 == 0 else None) for seed in range(N)]
    thresholds = [None if seed % 2 else 0.5 for seed in range(N)]  # two groups in one batch

    async def one(c, data, threshold):
        params = {} if threshold is None else {"threshold": threshold}
        return await c.post("/v1/inspect", files=upload(data), params=params)

    async def scenario():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://kensa") as c:
                answers = await asyncio.gather(
                    *(one(c, d, t) for d, t in zip(uploads, thresholds)))
                return answers, (await c.get("/metrics")).text

    answers, metrics = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert [r.status_code for r in answers] == [200] * N
    want = inspector.inspect([decoded(d) for d in uploads])
    default = inspector.image_threshold
    for r, w, t in zip(answers, want, thresholds):
        body = r.json()
        # batch composition moves CPU float sums by ~1e-7; the verdict itself must not move
        np.testing.assert_allclose(body["score"], w.score, rtol=1e-5)
        assert body["threshold"] == (default if t is None else t)
        assert body["label"] == ("abnormal" if body["score"] >= body["threshold"] else "normal")
        assert len({r.json()["id"] for r in answers}) == N
    count = next(float(line.split()[-1]) for line in metrics.splitlines()
                 if line.startswith("kensa_batch_size_count"))
    assert count < N  # some requests shared a model call


def test_a_tiny_inflight_budget_makes_requests_take_turns_and_answers_all(make_settings,
                                                                           inspector):
    # 100 KiB: every upload (about 80 KiB when served) fits alone, no two together, so each
    # runs alone, in turn, and the batch is cut into runs of one image
    app = create_app(make_settings(max_inflight_mb=100 / 1024, batch_wait_ms=20))
    uploads = [washer_png(seed) for seed in range(8)]

    async def scenario():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://kensa") as c:
                single = [c.post("/v1/inspect", files=upload(d)) for d in uploads[:4]]
                batch = c.post("/v1/inspect/batch",
                               files=[("files", (f"{i}.png", d, "image/png"))
                                      for i, d in enumerate(uploads[4:])])
                answers = await asyncio.gather(*single, batch)
                return answers, (await c.get("/metrics")).text

    answers, metrics = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert [r.status_code for r in answers] == [200] * 5
    got = [r.json()["score"] for r in answers[:4]] + [
        e["score"] for e in answers[4].json()["results"]]
    want = [w.score for w in inspector.inspect([decoded(d) for d in uploads])]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    sizes = dict(line.split() for line in metrics.splitlines()
                 if line.startswith(("kensa_batch_size_sum ", "kensa_batch_size_count ")))
    # never two images in one model call: 8 images in 8 calls
    assert (float(sizes["kensa_batch_size_sum"]), float(sizes["kensa_batch_size_count"])) == (8, 8)
