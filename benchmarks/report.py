"""The printed tables and the JSON file of a benchmark run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .workload import JPEG_QUALITY

ACC_COLUMNS = (("image AUROC", "image_auroc"), ("pixel AUROC", "pixel_auroc"),
               ("AUPRO", "aupro"), ("F1", "f1"), ("false alarms", "false_alarm_rate"),
               ("misses", "miss_rate"), ("train s", "training_seconds"))
SPEED_HEAD = ["device", "runtime", "size", "what", "batch/clients", "images/s", "p50 ms", "p99 ms",
              "CPU ms/img", "model batch"]
STAGES = ["decode", "prepare", "forward", "post", "answer", "heatmap_png", "mask_png"]


def write_json(path: Path, out: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, sort_keys=True, default=json_default))


def json_default(v):
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def accuracy_table(rows: list[dict]) -> str:
    head = ["dataset", "model"] + [c for c, _ in ACC_COLUMNS]
    body = []
    for row in rows:
        for model in ("kensa", "baseline"):
            report = row[model]
            cells = [cell(report.get(k), 1 if k == "training_seconds" else 3)
                     for _, k in ACC_COLUMNS]
            ci = report.get("image_auroc_ci95")
            if ci and None not in ci:  # the 95 % bootstrap interval beside the figure
                cells[0] += f" ({ci[0]:.2f}-{ci[1]:.2f})"
            body.append([row["name"], "Kensa" if model == "kensa" else "AE-L2"] + cells)
    return "Accuracy (each model at its own calibrated threshold)\n" + table(head, body)


def speed_tables(speed: dict) -> str:
    runs = speed["runs"]
    return "\n".join([
        (f"Speed: bundle {speed['bundle']} (model input {speed['image_size']}x"
         f"{speed['image_size']}, {speed['channels']} channel(s)); uploads are JPEG "
         f"q{JPEG_QUALITY} at the size shown"),
        table(SPEED_HEAD, [line for run in runs
                           for line in _speed_rows(run, speed["http_batch_files"])]),
        ("(CPU ms/img: the bench process for (a) and (b), the server process for (c); "
         "p50/p99 are per call: one batch, or one request)"),
        "\nRatios of images/s (each at its best batch / concurrency)",
        _per_run_table(runs, "ratios", sorted({k for r in runs for k in r["ratios"]}), 3),
        "\nWhere the time goes (ms per image, in-process, at the best batch)",
        _per_run_table(runs, "stages_ms_per_image", STAGES, 3),
        "\nMemory (MiB)",
        _per_run_table(runs, "memory", sorted({k for r in runs for k in r["memory"]}), 1),
        *runtime_table(speed.get("runtime_ratios") or []),
    ])


def runtime_table(rows: list[dict]) -> list[str]:
    """The runtimes' ratios (``benchmarks.speed.runtime_ratios``), one line per figure."""
    if not rows:
        return []
    head = [f"{r['runtime']}/{r['over']} {r['device']} {r['size']}" for r in rows]
    names = [k for k in rows[0] if k not in ("device", "size", "runtime", "over")]
    names = [n for n in names if any(r[n] is not None for r in rows)]  # levels not run
    return [("\nRuntimes side by side (ratio of each figure; images/s: >1 is faster, p50/p99 "
             "and RSS: <1 is less)"),
            table(["figure"] + head, [[n] + [cell(r[n], 3) for r in rows] for n in names])]


def _speed_row(device, size, label, key, m: dict) -> list:
    cpu = m.get("cpu_ms_per_image", m.get("server_cpu_ms_per_image"))
    return [*device, size, label, key, cell(m["images_per_s"], 1), cell(m["p50_ms"], 2),
            cell(m["p99_ms"], 2), cell(cpu, 2), cell(m.get("mean_model_batch"), 1)]


def _speed_rows(run: dict, http_batch_files: int) -> list[list]:
    """One device x size: (a), (b) at each batch, (c) at each concurrency."""
    device, size = (run["device"], run.get("runtime", "torch")), run["size"]
    rows = [_speed_row(device, size, "(a) raw forward", run["raw"]["best_batch"], run["raw"])]
    for name, label in (("verdict", "(b) pipeline"), ("pictures", "(b) +heatmap+mask")):
        for key, m in run["pipeline"][name].items():
            if key != "best":
                rows.append(_speed_row(device, size, label, key.split("_")[1], m))
    for name, label in (("inspect", "(c) /v1/inspect"),
                        ("batch", f"(c) /v1/inspect/batch x{http_batch_files}")):
        for key, m in (run.get("http") or {}).get(name, {}).items():
            if key != "best":
                rows.append(_speed_row(device, size, label, key, m) if "images_per_s" in m
                            else [*device, size, label, key, "skipped", "", "", "", ""])
    return rows


def _per_run_table(runs: list[dict], part: str, keys: list[str], digits: int) -> str:
    return table(["device", "runtime", "size"] + keys,
                 [[r["device"], r.get("runtime", "torch"), r["size"]]
                  + [cell(r[part].get(k), digits) for k in keys] for r in runs])


def cell(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def table(head: list, rows: list[list]) -> str:
    cells = [[str(c) for c in head]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.rjust(w) if i > 1 else c.ljust(w)
                              for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(cells[0]), "  ".join("-" * w for w in widths)]
                     + [fmt(r) for r in cells[1:]])
