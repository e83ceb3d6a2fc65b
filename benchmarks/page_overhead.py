"""What open operator pages cost: ``kensa serve`` (records on) under C concurrent clients on
``/v1/inspect`` for S seconds, alone and with P pages' Live views polling beside them, the
settings alternated ``--rounds`` times so a busy machine hurts all alike.

    python -m benchmarks.page_overhead --model tests/fixtures/golden/bundle --size 256 \\
        [--server-cpus 0,1 --client-cpus 2-7]

A page is emulated as its script (service/ui/static/kensa.js) behaves: every 1.5 s one
``GET /v1/inspections/live?limit=24`` with the page's header (the server shares one answer
among the pages for up to KENSA_LIVE_MAX_AGE_S and holds the thumbnails of kept answers while
a page is open), sending the last answer's ETag as a browser does (304: nothing new), then
``GET /v1/inspections/{id}/overlay?size=thumb`` for each new card whose thumbnail was not
inline, without the header (an ``<img>``: the browser sends the cookie only). A card is built
once and kept while its record is in the list, so, like the browser, a page asks for each
picture once. ``--page-style`` emulates earlier page scripts for before/after runs:
``thumbnails`` (2026-12-04 evening: ``GET /v1/inspections?limit=24``, then one
``GET /v1/inspections/thumbnails?id=..`` for the new cards), ``full`` (before 2026-12-04T19:00Z:
full overlays, the page header on every call; the HISTORY figures before then).

The pages run in a process of their own beside the load generator (both on ``--client-cpus``).
``--server-cpus``/``--client-cpus`` pin the server and the clients (load generator and
pages) apart, as in a plant, where pages are browsers on other machines; without them both
share whatever this runs on (the 2-core figures in HISTORY). ``--compare-root DIR`` also
runs the server of another checkout (e.g. ``git worktree add /tmp/before HEAD~3``) with pages
as ``--compare-style`` emulates them, alternated with this one, for before/after in one run.

Prints requests/s and median latency per setting and the ratio (issue 29's target: ten pages
cost less than 5 % of throughput). ``--paired N`` measures within each round's one server
instead: N pairs of back-to-back segments without and with the pages (which goes first
alternates), so a server's start-to-start variation (a whole round's rate moves by 20 % on two
cores) cancels in each pair's ratio; it prints every pair's ratios and their median and mean.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from service.deps import PAGE_HEADER

from .records_overhead import (
    REPO_ROOT,
    load,
    one_round,
    pin_clients,
    process_cpu_s,
    side_by_side_arguments,
    warm_server,
    washers,
)

REFRESH_S = 1.5  # the page's Live refresh (service/ui/static/kensa.js)


STYLES = ("live", "thumbnails", "full")  # the page scripts emulated, newest first


@dataclass(frozen=True)
class Setup:
    """One side of the comparison."""

    name: str
    pages: int
    header: bool = True  # the page header on the list queries (drawing ahead on)
    style: str = "live"  # which page script the pages emulate (STYLES)
    root: Path = REPO_ROOT  # the checkout the server runs from


async def page(base: str, seconds: float, counts: list[int], setup: Setup) -> None:
    """One Live view; ``counts``: refresh requests, picture requests, thumbnails inline."""
    seen: set[str] = set()
    deadline = time.perf_counter() + seconds
    listing = {PAGE_HEADER: "1"} if setup.header else {}
    etag: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        while time.perf_counter() < deadline:
            counts[0] += 1
            if setup.style == "live":
                r = await c.get("/v1/inspections/live", params={"limit": 24},
                                headers=listing | etag)
                if r.status_code != 304:
                    body = r.raise_for_status().json()
                    etag = {"If-None-Match": r.headers["etag"]}
                    fresh = [i["id"] for i in body["items"] if i["id"] not in seen]
                    seen.update(fresh)
                    counts[2] += sum(1 for i in fresh if i in body["thumbnails"])
                    await pictures(c, [i for i in fresh if i in body["missing"]], counts,
                                   {"size": "thumb"}, {})
            else:
                await older_page(c, seen, counts, setup.style, listing)
            await asyncio.sleep(REFRESH_S)


async def older_page(c: httpx.AsyncClient, seen: set[str], counts: list[int], style: str,
                     listing: dict[str, str]) -> None:
    """One refresh of the page scripts before the Live feed (``thumbnails``, ``full``)."""
    items = (await c.get("/v1/inspections", params={"limit": 24},
                         headers=listing)).json()["items"]
    fresh = [r["id"] for r in items if r["image_kept"] and r["id"] not in seen]
    seen.update(fresh)
    if style == "full":  # full overlays, the page header on every call
        await pictures(c, fresh, counts, {}, listing)
        return
    if fresh:  # fillThumbs: one request, the rest by URL
        r = await c.get("/v1/inspections/thumbnails", params={"id": fresh}, headers=listing)
        got = r.raise_for_status().json()
        counts[1] += 1
        counts[2] += len(got["thumbnails"])
        fresh = got["missing"]
    await pictures(c, fresh, counts, {"size": "thumb"}, {})


async def pictures(c: httpx.AsyncClient, ids: list[str], counts: list[int],
                   params: dict[str, str], headers: dict[str, str]) -> None:
    for ident in ids:
        (await c.get(f"/v1/inspections/{ident}/overlay", params=params,
                     headers=headers)).raise_for_status()
        counts[1] += 1


async def with_pages(base: str, bodies: list[bytes], clients: int, seconds: float,
                     setup: Setup, counts: list[int]) -> list[float]:
    """The load for ``seconds`` with ``setup.pages`` pages polling beside it. The pages run in
    a process of their own (on the same CPUs as this one), as browsers are apart from the
    line's cameras: in the load generator's event loop, parsing a page's answer held back the
    cameras' next requests, and the server idled for it."""
    if not setup.pages:
        return await load(base, bodies, clients, seconds)
    pages = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.page_overhead", EMULATE, base, str(seconds),
        json.dumps(dataclasses.asdict(setup) | {"root": str(setup.root)}),
        stdout=asyncio.subprocess.PIPE, cwd=REPO_ROOT)
    if await pages.stdout.readline() != b"ready\n":
        raise SystemExit("the emulated pages did not start")
    latencies = await load(base, bodies, clients, seconds)
    out, _ = await pages.communicate()
    if pages.returncode != 0:
        raise SystemExit(f"the emulated pages failed (exit {pages.returncode})")
    for k, n in enumerate(json.loads(out)):
        counts[k] += n
    return latencies


EMULATE = "--emulate-pages"  # internal: this module run as the pages' process


def emulate_pages(base: str, seconds: float, setup: Setup) -> None:
    """The pages' process: ``setup.pages`` Live views for ``seconds``; prints their counts."""
    async def run() -> list[int]:
        counts = [0, 0, 0]
        print("ready", flush=True)
        await asyncio.gather(*(page(base, seconds, counts, setup) for _ in range(setup.pages)))
        return counts

    print(json.dumps(asyncio.run(run())))


def setups(a) -> list[Setup]:
    out = [Setup("0 pages", 0), Setup(f"{a.pages} pages", a.pages, style=a.page_style)]
    if a.compare_plain:
        out.append(Setup(f"{a.pages} pages without the page header", a.pages, header=False,
                         style=a.page_style))
    if a.compare_root:
        root = Path(a.compare_root).resolve()
        out += [Setup(f"0 pages, server of {root}", 0, root=root),
                Setup(f"{a.pages} pages ({a.compare_style}), server of {root}", a.pages,
                      style=a.compare_style, root=root)]
    return out


def paired(a, bodies: list[bytes], data_dir: str, root: Path, style: str
           ) -> list[tuple[float, float]]:
    """One server of the checkout ``root``; ``a.paired`` pairs of segments without and with
    ``a.pages`` pages emulated as ``style``; per pair (throughput ratio,
    server-CPU-per-inspection ratio), with / without."""
    out = []
    with warm_server(a.model, {"KENSA_DATA_DIR": data_dir}, bodies, a.clients, a.server_cpus,
                     root) as (proc, base):
        for n in range(a.paired):
            got = {}  # pages -> (req/s, server CPU s per inspection, load generator's CPU share)
            for pages in ((0, a.pages) if n % 2 == 0 else (a.pages, 0)):
                before, mine = process_cpu_s(proc.pid), process_cpu_s(os.getpid())
                lat = asyncio.run(with_pages(base, bodies, a.clients, a.seconds,
                                             Setup("pages", pages, style=style), [0, 0, 0]))
                got[pages] = (len(lat) / a.seconds,
                              (process_cpu_s(proc.pid) - before) / max(1, len(lat)),
                              (process_cpu_s(os.getpid()) - mine) / a.seconds)
            (rate, cpu, busy), (rate0, cpu0, busy0) = got[a.pages], got[0]
            out.append((rate / rate0, cpu / cpu0))
            print(f"{root.name} pair {n + 1}: {rate0:.1f} -> {rate:.1f} req/s, throughput "
                  f"{out[-1][0]:.3f}, server CPU per inspection {out[-1][1]:.3f}; load "
                  f"generator's CPU busy {busy0:.0%} -> {busy:.0%}", flush=True)
    return out


def report_paired(pairs: dict[str, list[tuple[float, float]]], a) -> None:
    for side, got in pairs.items():
        for k, name in enumerate(("throughput", "server CPU per inspection")):
            values = [p[k] for p in got]
            print(f"{side}: {a.pages} pages / none, {len(values)} pairs: {name} median "
                  f"{statistics.median(values):.3f}, mean {statistics.fmean(values):.3f} "
                  f"(range {min(values):.3f}-{max(values):.3f})")
    print(f"({a.clients} clients, {a.size}px PNG, {a.seconds:g} s per segment)")


def main() -> None:
    if sys.argv[1:2] == [EMULATE]:
        fields = json.loads(sys.argv[4])
        emulate_pages(sys.argv[2], float(sys.argv[3]),
                      Setup(**fields | {"root": Path(fields["root"])}))
        return
    p = side_by_side_arguments(__doc__.split("\n\n")[0])
    p.add_argument("--pages", type=int, default=10)
    p.add_argument("--compare-plain", action="store_true",
                   help="also run pages that do not send the page header (the server then "
                        "draws no overlay ahead: each is rendered, with a model pass, when "
                        "first asked)")
    p.add_argument("--page-style", choices=STYLES, default="live",
                   help="the page script the pages emulate: live (now), thumbnails or full "
                        "(earlier ones; full made the HISTORY figures before 2026-12-04T19:00Z)")
    p.add_argument("--compare-root", metavar="DIR",
                   help="also run the server of this checkout, its pages as --compare-style")
    p.add_argument("--compare-style", choices=STYLES, default="thumbnails",
                   help="the page script emulated against --compare-root's server")
    p.add_argument("--paired", type=int, metavar="N",
                   help="N pairs of segments without and with the pages inside each round's "
                        "one server (of this checkout, and of --compare-root's in turn), "
                        "instead of a server per setting")
    a = p.parse_args()
    pin_clients(a)
    bodies = washers(a.size, 32)
    if a.paired:  # rounds alternate between this checkout and --compare-root's
        sides = {f"this checkout, pages as {a.page_style}": (REPO_ROOT, a.page_style)}
        if a.compare_root:
            sides[f"{a.compare_root}, pages as {a.compare_style}"] = (
                Path(a.compare_root).resolve(), a.compare_style)
        pairs: dict[str, list[tuple[float, float]]] = {side: [] for side in sides}
        with tempfile.TemporaryDirectory() as tmp:
            for n in range(a.rounds):
                for k, (side, (root, style)) in enumerate(sides.items()):
                    pairs[side] += paired(a, bodies, f"{tmp}/{n}-{k}", root, style)
        report_paired(pairs, a)
        return
    runs: dict[Setup, list[list[float]]] = {s: [] for s in setups(a)}
    counts = {s: [0, 0, 0] for s in runs}  # refreshes, picture requests, inline
    cpu: dict[Setup, list[float]] = {s: [] for s in runs}  # the server's CPU seconds
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(a.rounds):
            for k, (setup, results) in enumerate(runs.items()):
                results.append(one_round(
                    a.model, {"KENSA_DATA_DIR": f"{tmp}/{n}-{k}"}, bodies, a.clients,
                    lambda base, setup=setup: with_pages(
                        base, bodies, a.clients, a.seconds, setup, counts[setup]),
                    a.server_cpus, setup.root, cpu[setup]))
                # as it goes, so a run cut short by a time limit still leaves its figures
                print(f"round {n + 1} {setup.name}: {len(results[-1]) / a.seconds:.1f} req/s, "
                      f"server CPU {cpu[setup][-1] / max(1, len(results[-1])) * 1000:.2f} ms "
                      "per inspection", flush=True)
    report(a, runs, counts, cpu)


def report(a, runs: dict[Setup, list[list[float]]], counts: dict[Setup, list[int]],
           cpu: dict[Setup, list[float]]) -> None:
    """Per setting: req/s, latency and the server's CPU milliseconds per inspection (what
    the pages cost the server, apart from what they cost the machine's other work)."""
    rate, per = {}, {}
    for setup, rounds in runs.items():
        rates = [len(lat) / a.seconds for lat in rounds]
        rate[setup] = statistics.median(rates)
        per[setup] = sum(cpu[setup]) / max(1, sum(len(lat) for lat in rounds)) * 1000
        every = [x for lat in rounds for x in lat]
        made = (f"; {counts[setup][0]} refreshes, {counts[setup][1]} picture requests, "
                f"{counts[setup][2]} thumbnails inline" if setup.pages else "")
        print(f"{setup.name}: {rate[setup]:7.1f} req/s (median of {a.rounds} rounds: "
              f"{', '.join(f'{r:.1f}' for r in rates)}), latency median "
              f"{statistics.median(every) * 1000:.2f} ms, server CPU {per[setup]:.2f} ms per "
              f"inspection{made}")
    for setup in runs:
        if setup.pages:
            alone = next(s for s in runs if not s.pages and s.root == setup.root)
            print(f"ratio {setup.name} / none: throughput {rate[setup] / rate[alone]:.3f}, "
                  f"server CPU per inspection {per[setup] / per[alone]:.3f}")
    print(f"({a.clients} clients, {a.size}px PNG, {a.seconds:g} s per round)")


if __name__ == "__main__":
    main()
