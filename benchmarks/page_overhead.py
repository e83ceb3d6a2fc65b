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


async def page(base: str, seconds: float, counts: list[int], header: bool = True) -> None:
    seen: set[str] = set()
    deadline = time.perf_counter() + seconds
    headers = {PAGE_HEADER: "1"} if header else {}
    async with httpx.AsyncClient(base_url=base, timeout=60, headers=headers) as c:
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
                     pages: int, counts: list[int], header: bool = True) -> list[float]:
    polling = [asyncio.create_task(page(base, seconds, counts, header)) for _ in range(pages)]
    latencies = await load(base, bodies, clients, seconds)
    await asyncio.gather(*polling)
    return latencies


def main() -> None:
    p = side_by_side_arguments(__doc__.split("\n\n")[0])
    p.add_argument("--pages", type=int, default=10)
    p.add_argument("--compare-plain", action="store_true",
                   help="also run pages that do not send the page header (the server then "
                        "draws no overlay ahead: each is rendered, with a model pass, when "
                        "first asked)")
    a = p.parse_args()
    bodies = washers(a.size, 32)
    settings = [(0, True), (a.pages, True)] + ([(a.pages, False)] if a.compare_plain else [])
    runs: dict[tuple[int, bool], list[list[float]]] = {k: [] for k in settings}
    counts = [0, 0]  # list queries, overlays
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(a.rounds):
            for (pages, header), results in runs.items():
                results.append(one_round(
                    a.model, {"KENSA_DATA_DIR": f"{tmp}/{n}-{pages}-{header}"}, bodies,
                    a.clients, lambda base, pages=pages, header=header: with_pages(
                        base, bodies, a.clients, a.seconds, pages, counts, header)))
    rate = {}
    for (pages, header), rounds in runs.items():
        rates = [len(lat) / a.seconds for lat in rounds]
        rate[pages, header] = statistics.median(rates)
        every = [x for lat in rounds for x in lat]
        name = f"{pages:2} pages" + ("" if header or not pages else " (no page header)")
        print(f"{name}: {rate[pages, header]:7.1f} req/s (median of {a.rounds} rounds: "
              f"{', '.join(f'{r:.1f}' for r in rates)}), latency median "
              f"{statistics.median(every) * 1000:.2f} ms")
    print(f"{a.pages} pages / none throughput {rate[a.pages, True] / rate[0, True]:.3f} "
          f"({a.clients} clients, {a.size}px PNG; the pages made {counts[0]} list queries and "
          f"fetched {counts[1]} overlays)")
    if a.compare_plain:
        print(f"{a.pages} pages without the header / none throughput "
              f"{rate[a.pages, False] / rate[0, True]:.3f}")


if __name__ == "__main__":
    main()
