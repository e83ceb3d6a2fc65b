"""One running task per key: callers that come while it runs wait for that one.

The operator page's screens ask the server for the same thing at the same moment (ten pages
opened at once want the same overlay; ten Live views the same answer), so what answers them is
computed once per key at a time (:func:`once`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

T = TypeVar("T")


async def once(running: dict[Hashable, asyncio.Task], key: Hashable,
               make: Callable[[], Awaitable[T]]) -> T:
    """``make()``'s result, computed once for every caller with ``key`` while it runs
    (``running`` holds the tasks under way; a key leaves it when its task ends). A failure
    reaches all of them; a caller that goes away does not stop it for the others."""
    task = running.get(key)
    if task is None:
        async def run() -> T:
            try:
                return await make()
            finally:
                running.pop(key, None)

        task = running[key] = asyncio.get_running_loop().create_task(run())
    return await asyncio.shield(task)
