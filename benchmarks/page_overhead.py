"""What open operator pages cost: ``kensa serve`` (records on) under C concurrent clients on
``/v1/inspect`` for S seconds, alone and with P pages' Live views polling beside them, the two
settings alternated ``--rounds`` times so a busy machine hurts both alike.

    python -m benchmarks.page_overhead --model tests/fixtures/golden/bundle --size 256

A page is emulated as its script behaves: every 1.5 s ``GET /v1/inspections?limit=24``, and the
overlay of each kept record it has not shown yet, every call with the page's header (so the
server draws kept overlays ahead, as it does for a real page). Prints requests/s and median latency per
setting and the ratio (issue 29's target: ten pages cost less than 5 % of throughput).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time

import httpx

from service.deps import PAGE_HEADER

from .records_overhead import load, one_round, side_by_side_arguments, washers

REFRESH_S = 1.5  # the page's Live refresh (service/ui/static/kensa.js)


async def page(base: str, seconds: float, counts: list[int]) -> None:
    seen: set[str] = set()
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=base, timeout=60, headers={PAGE_HEADER: "1"}) as c:
        while time.perf_counter() < deadline:
            items = (await c.get("/v1/inspections", params={"limit": 24})).json()["items"]
            counts[0] += 1
            for rec in items:
                if rec["image_kept"] and rec["id"] not in seen:
                    seen.add(rec["id"])
                    (await c.get(f"/v1/inspections/{rec['id']}/overlay")).raise_for_status()
                    counts[1] += 1
            await asyncio.sleep(REFRESH_S)


async def with_pages(base: str, bodies: list[bytes], clients: int, seconds: float,
                     pages: int, counts: list[int]) -> list[float]:
    polling = [asyncio.create_task(page(base, seconds, counts)) for _ in range(pages)]
    latencies = await load(base, bodies, clients, seconds)
    await asyncio.gather(*polling)
    return latencies


def main() -> None:
    p = side_by_side_arguments(__doc__.split("\n\n")[0])
    p.add_argument("--pages", type=int, default=10)
    a = p.parse_args()
    bodies = washers(a.size, 32)
    runs: dict[int, list[list[float]]] = {0: [], a.pages: []}
    counts = [0, 0]  # list queries, overlays
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(a.rounds):
            for pages, results in runs.items():
                results.append(one_round(
                    a.model, {"KENSA_DATA_DIR": f"{tmp}/{n}-{pages}"}, bodies, a.clients,
                    lambda base, pages=pages: with_pages(base, bodies, a.clients, a.seconds,
                                                         pages, counts)))
    rate = {}
    for pages, rounds in runs.items():
        rates = [len(lat) / a.seconds for lat in rounds]
        rate[pages] = statistics.median(rates)
        every = [x for lat in rounds for x in lat]
        print(f"{pages:2} pages: {rate[pages]:7.1f} req/s (median of {a.rounds} rounds: "
              f"{', '.join(f'{r:.1f}' for r in rates)}), latency median "
              f"{statistics.median(every) * 1000:.2f} ms")
    print(f"{a.pages} pages / none throughput {rate[a.pages] / rate[0]:.3f} ({a.clients} "
          f"clients, {a.size}px PNG; the pages made {counts[0]} list queries and fetched "
          f"{counts[1]} overlays)")


if __name__ == "__main__":
    main()
