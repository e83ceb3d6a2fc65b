"""benchmarks.page_overhead: emulated pages drive a real ``kensa serve`` the way the page script
does (the Live feed, then pictures not inline), and the paired mode reports its ratios."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

from benchmarks.page_overhead import Setup, page
from benchmarks.records_overhead import load, start, washers

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "fixtures" / "golden" / "bundle"


def test_an_emulated_page_asks_the_live_feed_and_fetches_what_was_not_inline(tmp_path):
    proc, base = start(str(GOLDEN), {"KENSA_DATA_DIR": str(tmp_path), "KENSA_KEEP_IMAGES": "all"})
    try:
        bodies = washers(64, 4)
        asyncio.run(load(base, bodies, 2, 0.5))  # records from before any page was open
        counts = [0, 0, 0]
        asyncio.run(page(base, 0.1, counts, Setup("one", 1)))  # one refresh
        assert counts[0] == 1
        # nothing was drawn for the page yet: every kept card's thumbnail came by URL
        assert counts[1] > 0 and counts[2] == 0
    finally:
        proc.terminate()
        proc.wait(30)


def test_paired_mode_prints_each_pair_and_the_ratios():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.page_overhead", "--model", str(GOLDEN), "--size",
         "64", "--clients", "2", "--pages", "2", "--seconds", "1", "--rounds", "1",
         "--paired", "2"], check=False, cwd=ROOT, capture_output=True, text=True,
        timeout=300,
        env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert len(re.findall(r"pair \d: .* throughput \d\.\d{3}", out.stdout)) == 2
    for name in ("throughput", "server CPU per inspection"):
        assert re.search(rf"2 pages / none, 2 pairs: {name} median \d\.\d{{3}}", out.stdout)
