"""service.once: one running task per key, shared by every caller that comes while it runs."""

import asyncio

import pytest

from service.once import once


def test_callers_of_one_key_share_one_run_and_the_key_leaves_when_it_ends():
    async def go():
        running, calls = {}, []

        async def make() -> int:
            calls.append(1)
            await asyncio.sleep(0.02)
            return len(calls)

        got = await asyncio.gather(*(once(running, "k", make) for _ in range(5)),
                                   once(running, "other", make))
        assert got[:5] == [got[0]] * 5 and len(calls) == 2 and not running
        assert await once(running, "k", make) == 3  # ended: the next call runs again

    asyncio.run(go())


def test_a_failure_reaches_every_caller_and_a_caller_that_leaves_stops_nothing():
    async def go():
        running = {}

        async def fail() -> None:
            await asyncio.sleep(0.02)
            raise RuntimeError("gone")

        got = await asyncio.gather(once(running, "k", fail), once(running, "k", fail),
                                   return_exceptions=True)
        assert [type(g) for g in got] == [RuntimeError, RuntimeError] and not running

        async def slow() -> str:
            await asyncio.sleep(0.05)
            return "done"

        leaving = asyncio.create_task(once(running, "k", slow))
        staying = asyncio.create_task(once(running, "k", slow))
        await asyncio.sleep(0.01)
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        assert await staying == "done"

    asyncio.run(go())
