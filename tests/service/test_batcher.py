"""service.batcher with the real tiny inspector: grouping, order, overload, shutdown."""

import asyncio
import threading

import pytest
from service_helpers import decoded, washer_png

from service.batcher import Batcher, InflightGate
from service.config import MB
from service.errors import NotReady, OverBudget, Overloaded


def images(*seeds):
    return [decoded(washer_png(s)) for s in seeds]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))  # a hang fails the test, not the suite


async def held_batcher(inspector, **kwargs):
    """A started one-image-per-batch batcher whose worker thread is held until ``gate`` is
    set: job ``first`` has been taken and runs (blocked), job ``second`` waits in the queue."""
    b = Batcher(inspector, max_size=1, wait_ms=0, **kwargs)
    await b.start()
    gate = threading.Event()
    b.executor.submit(gate.wait)
    first = asyncio.create_task(b.inspect(images(1)))
    while b.running_images == 0:
        await asyncio.sleep(0.005)
    second = asyncio.create_task(b.inspect(images(2)))
    await asyncio.sleep(0)
    return b, gate, first, second


def test_jobs_with_different_thresholds_share_a_batch_but_keep_their_threshold(inspector):
    sizes = []

    async def scenario():
        b = Batcher(inspector, max_size=8, wait_ms=100, on_batch=sizes.append)
        await b.start()
        try:
            return await asyncio.gather(
                b.inspect(images(1, 2), threshold=0.0),
                b.inspect(images(3), threshold=1e9),
                b.inspect(images(4), threshold=0.0, with_reconstruction=True),
                b.inspect(images(5)))
        finally:
            await b.stop()

    low, high, recon, default = run(scenario())
    assert [r.threshold for r in low] == [0.0, 0.0] and low[0].label == "abnormal"
    assert (high[0].threshold, high[0].label) == (1e9, "normal")
    assert recon[0].reconstruction_image is not None and low[0].reconstruction_image is None
    assert default[0].threshold == inspector.image_threshold
    assert sum(sizes) == 5 and len(sizes) == 4  # one gathering, four (threshold, recon) groups


def test_the_wait_window_is_skipped_when_no_other_admitted_request_could_join(inspector):
    """One admitted request runs at once; with two admitted, the batcher waits (up to
    wait_ms) for the second, which joins the first's batch."""
    async def scenario(admitted: int) -> list[int]:
        sizes: list[int] = []
        b = Batcher(inspector, max_size=8, wait_ms=1000, on_batch=sizes.append)
        await b.start()
        for _ in range(admitted):
            b.admit()
        try:
            first = asyncio.create_task(b.inspect(images(1)))
            await asyncio.sleep(0.2)
            await asyncio.gather(first, b.inspect(images(2)))
        finally:
            await b.stop()
        return sizes

    assert run(scenario(1)) == [1, 1]
    assert run(scenario(2)) == [2]


def test_results_come_back_in_order(inspector):
    async def scenario():
        b = Batcher(inspector, max_size=4, wait_ms=1)
        await b.start()
        try:
            return await b.inspect(images(1, 2, 3, 4, 5, 6))
        finally:
            await b.stop()

    got = run(scenario())
    want = inspector.inspect(images(1, 2, 3, 4, 5, 6))
    assert [r.score for r in got] == [r.score for r in want]


def test_full_queue_raises_overloaded(inspector):
    async def scenario():
        b, gate, first, second = await held_batcher(inspector, queue_size=1)
        with pytest.raises(Overloaded) as err:
            await b.inspect(images(3))
        gate.set()
        await first, await second
        await b.stop()
        return err.value

    err = run(scenario())
    assert err.headers == {"Retry-After": "1"}


def test_not_started_and_stopped_batchers_refuse_work(inspector):
    async def scenario():
        b = Batcher(inspector)
        with pytest.raises(NotReady):
            await b.inspect(images(1))
        await b.start()
        await b.stop()
        with pytest.raises(NotReady):
            await b.inspect(images(1))
        assert await b.inspect([]) == []

    run(scenario())


def test_a_failing_job_fails_alone(inspector):
    import numpy as np

    async def scenario():
        b = Batcher(inspector, max_size=8, wait_ms=100)
        await b.start()
        try:
            return await asyncio.gather(
                b.inspect(images(1)), b.inspect([np.zeros((4, 4, 2), np.float32)]),
                return_exceptions=True)
        finally:
            await b.stop()

    good, bad = run(scenario())
    assert isinstance(bad, Exception)
    assert good[0].score == inspector.inspect(images(1))[0].score


def test_stop_fails_running_and_waiting_jobs(inspector):
    async def scenario():
        b, gate, running, waiting = await held_batcher(inspector)
        await b.stop()
        gate.set()
        return await asyncio.gather(running, waiting, return_exceptions=True)

    for outcome in run(scenario()):
        assert isinstance(outcome, NotReady)
        assert str(outcome) == "the server is shutting down; retry shortly"


def test_inflight_gate_makes_a_request_over_the_budget_wait_for_the_others():
    order = []

    async def scenario():
        gate = InflightGate(100)

        async def holder(name, nbytes, hold_s):
            async with gate.hold(nbytes):
                order.append((name, "in", gate.used))
                await asyncio.sleep(hold_s)
            order.append((name, "out"))

        first = asyncio.create_task(holder("a", 70, 0.2))
        await asyncio.sleep(0.05)
        await asyncio.gather(first, holder("b", 50, 0), holder("c", 20, 0))
        return gate.used

    assert run(scenario()) == 0
    # c fits beside a at once; b (70 + 50 > 100) only gets in after a has left
    assert order.index(("c", "in", 90)) < order.index(("a", "out")) < order.index(("b", "in", 50))


def test_inflight_gate_refuses_a_request_over_the_whole_budget_and_times_out_the_rest():
    async def scenario():
        gate = InflightGate(100 * MB, wait_s=0.1)
        with pytest.raises(OverBudget, match="about 200.0 MiB .* budget of 100.0 MiB"):
            async with gate.hold(200 * MB):  # could never run within the budget
                pass
        assert gate.used == 0
        async with gate.hold(100 * MB):
            with pytest.raises(Overloaded, match="KENSA_MAX_INFLIGHT_MB"):
                async with gate.hold(1):
                    pass
        async with gate.hold(1):
            return gate.used

    assert run(scenario()) == 1
