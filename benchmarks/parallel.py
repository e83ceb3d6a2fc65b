"""Training runs of a protocol in parallel processes, each result kept as soon as it ends.

Used by the GPU protocols (benchmarks.labeled_defects, benchmarks.gan): every run is one
training and evaluation in a spawned process; the results JSON is rewritten after each one, so
a call cut short at its time limit still returns what finished.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

JOB_KEYS = ("name", "seed", "k", "variant")  # what names a run in "failed"


def add_run_arguments(p: argparse.ArgumentParser, work_dir: str) -> None:
    """The options both protocols take after their own: seeds, each run's budget, device and
    threads, how many at once, where they work (``work_dir`` by default) and the results file."""
    p.add_argument("--seeds", default="0,1,2", help="comma list (default 0,1,2)")
    p.add_argument("--preset", default="default", help="a models.config preset")
    p.add_argument("--max-minutes", type=float, help="training budget of every run")
    p.add_argument("--epochs", type=int, help="epoch bound of every run")
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", type=int, default=1, help="trainings at once")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training")
    p.add_argument("--work-dir", type=Path, default=Path(work_dir))
    p.add_argument("--json", type=Path, required=True, help="results file (rewritten as runs "
                   "end)")


def run_all(jobs: list[dict], run_one: Callable[[dict], dict], workers: int, result: dict,
            json_path: Path, tag: str, describe: Callable[[dict], str],
            summarize: Callable[[list[dict]], dict]) -> int:
    """Runs ``run_one(job)`` for every job, ``workers`` at once; appends each run to
    ``result["runs"]`` (or the job and its error to ``result["failed"]``), prints
    ``[tag] describe(run)``, adds ``summarize(runs)`` to ``result`` and rewrites ``json_path``.
    Returns 1 when a run failed, else 0."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"[{tag}] {len(jobs)} runs, {workers} at once", flush=True)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_one, job): job for job in jobs}
        for fut in as_completed(futures):
            job = futures[fut]
            try:
                run = fut.result()
                result["runs"].append(run)
                print(f"[{tag}] {describe(run)}", flush=True)
            except Exception as exc:  # noqa: BLE001 - recorded; the other runs go on
                result["failed"].append({k: job[k] for k in JOB_KEYS}
                                        | {"error": f"{type(exc).__name__}: {exc}"})
                print(f"[{tag}] FAILED {job['name']} {job['seed']} {job['variant']} k "
                      f"{job['k']}: {exc}", flush=True)
            result |= summarize(result["runs"])
            json_path.write_text(json.dumps(result, indent=1) + "\n")
    return 1 if result["failed"] else 0
