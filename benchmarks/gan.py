"""The two GANs of issue 32, measured side by side: VAEGAN's learned similarity (``kensa
train --adversarial``) against today's model, and learned synthetic defects (``--synth
learned``, the conditional generator trained on ``k`` labeled defects per type) against the
procedural ones.

For each data set (MVTec layout) and seed: draw ``max(k)`` defects of every type from the
test split (seeded, as :mod:`benchmarks.labeled_defects` does) and hide them from the
evaluation of every variant of that seed (a folder of links), then train at one budget

- ``base``: today's model, no labels (the paired reference of every other variant);
- ``adversarial``: the same with ``--adversarial``;
- ``learned-kK``: ``--synth learned`` with the first ``K`` drawn of each type as labels with
  their masks, ``--labeled-defects generator`` (the labels train only the generator, so the
  only difference from ``base`` is what the head trained on and the generator's share of the
  budget);

and evaluate each on the same remaining test images: image and pixel AUROC, AUPRO, per-type
image AUROC, and the mean absolute residual (input minus reconstruction, model pixels) of the
normal test images and inside the defects' masks.

    python -m benchmarks.gan --data ../shared/data/magnetic_tile --seeds 0,1,2 --k 2,5,10 \\
        --max-minutes 15 --json benchmarks/results/gan-X.json

Runs go in parallel with ``--jobs`` (one thread each); the JSON is rewritten as each run ends,
with the paired differences (variant minus ``base``, same seed) so far.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from benchmarks.labeled_defects import _diff, _mean, data_view, draw, write_labels
from benchmarks.parallel import add_run_arguments, run_all

METRICS = ("image_auroc", "pixel_auroc", "aupro", "normal_residual", "defect_residual")


def residuals(bundle: Path, view: Path, device: str) -> dict:
    """Mean absolute residual of the normal test images (every pixel) and of the defective
    ones inside their masks, at the model's resolution."""
    import cv2
    import numpy as np

    from models.data import open_dataset, read_image, read_mask
    from models.inference import Inspector
    from models.preprocess import prepare_for

    insp = Inspector.load(bundle, device)
    normal, defect = [], []
    for it in open_dataset(view).test:
        x = prepare_for(read_image(it.path), insp.cfg)
        rec = insp.grouped_scores(insp.groups([x]), with_reconstruction=True).recon[0]
        res = np.abs(x - rec).mean(axis=2)
        if it.is_good:  # every pixel of a normal image is normal
            normal.append(float(res.mean()))
        elif it.mask_path is not None:
            m = cv2.resize(read_mask(it.mask_path).astype(np.float32), res.shape[::-1]) > 0.5
            if m.any():
                defect.append(float(res[m].mean()))
    return {"normal_residual": _mean(normal), "defect_residual": _mean(defect)}


def run_one(job: dict) -> dict:
    """One training, its evaluation and residuals (in a worker process)."""
    import torch

    torch.set_num_threads(job["threads"])
    from models.config import PRESETS, ModelConfig, TrainConfig
    from models.train import train

    preset = PRESETS[job["preset"]]
    extra = {"preset": job["preset"]}
    train_kw = dict(preset["train"]) | {"seed": job["seed"]}
    if job["variant"] == "adversarial":
        train_kw["adversarial"] = True
    if job["variant"] == "learned":
        train_kw["synth"] = "learned"
        extra["labeled_defects"] = "generator"
    for key in ("max_minutes", "epochs"):
        if job[key] is not None:
            train_kw[key] = job[key]
    started = time.monotonic()
    metrics = train(job["view"], job["out"], ModelConfig(**preset["model"]),
                    TrainConfig(**train_kw | {"extra": extra}), labels=job["labels"],
                    device=job["device"], progress=False,
                    name=f"{job['name']}-{job['variant']}-k{job['k']}")
    ev = metrics.get("evaluation") or {}
    training = metrics["training"]
    return {key: job[key] for key in ("data", "name", "seed", "k", "variant")} | {
        "evaluated_images": ev.get("images"),
        **{m: ev.get(m) for m in METRICS[:3]},
        **residuals(Path(job["out"]), Path(job["view"]), job["device"]),
        "per_type_auroc": ev.get("per_type_auroc"),
        "per_type_pixel_auroc": ev.get("per_type_pixel_auroc"),
        "autoencoder_steps": training["autoencoder"]["steps"],
        "adversarial": training["autoencoder"].get("adversarial"),
        "generator": {k: training["generator"][k] for k in ("steps", "cutouts", "seconds")}
        if "generator" in training else None,
        "training_seconds": round(float(training["seconds"]), 1),
        "wall_seconds": round(time.monotonic() - started, 1),
        "error": ev.get("error"),
    }


def label(run: dict) -> str:
    return run["variant"] if run["variant"] != "learned" else f"learned-k{run['k']}"


def paired(runs: list[dict]) -> list[dict]:
    """Each variant's run minus the ``base`` run of its data set and seed."""
    base = {(r["name"], r["seed"]): r for r in runs if r["variant"] == "base"}
    out = []
    for r in runs:
        ref = base.get((r["name"], r["seed"]))
        if r["variant"] == "base" or ref is None:
            continue
        types = sorted(set(r.get("per_type_auroc") or {}) & set(ref.get("per_type_auroc") or {}))
        out.append({"name": r["name"], "seed": r["seed"], "variant": label(r),
                    **{m: _diff(r.get(m), ref.get(m)) for m in METRICS},
                    "per_type_auroc": {t: _diff(r["per_type_auroc"][t],
                                                ref["per_type_auroc"][t]) for t in types}})
    return sorted(out, key=lambda d: (d["name"], d["variant"], d["seed"]))


def means(runs: list[dict]) -> list[dict]:
    """Mean of each figure over the seeds, per data set and variant."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["name"], label(r)), []).append(r)
    return [{"name": name, "variant": variant, "seeds": sorted(r["seed"] for r in rs),
             **{m: _mean([r.get(m) for r in rs]) for m in METRICS}}
            for (name, variant), rs in sorted(groups.items())]


def jobs_for(args: argparse.Namespace, work: Path) -> list[dict]:
    """Every training of the protocol, with its data view and labels files made."""
    from models.data import open_dataset

    jobs = []
    for data in args.data:
        ds = open_dataset(data)
        name = Path(data).resolve().name
        for seed in args.seeds:
            drawn = draw(ds.test, max(args.k), seed)
            here = work / name / f"seed{seed}"
            view = data_view(Path(data), drawn, here / "data")
            common = {"data": str(data), "name": name, "seed": seed, "view": str(view),
                      "preset": args.preset, "max_minutes": args.max_minutes,
                      "epochs": args.epochs, "device": args.device, "threads": args.threads}
            for variant in [v for v in args.variants if v != "learned"]:
                jobs.append(common | {"k": 0, "variant": variant, "labels": None,
                                      "out": str(here / variant)})
            if "learned" in args.variants:
                for k in args.k:
                    labels = write_labels(drawn, k, "mask", here / f"mask-k{k}.csv")
                    jobs.append(common | {"k": k, "variant": "learned", "labels": str(labels),
                                          "out": str(here / f"learned-k{k}")})
    return jobs


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gan",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--data", action="append", required=True, type=Path,
                   help="an MVTec-layout data set with masks (repeat for several)")
    p.add_argument("--variants", default="base,adversarial,learned",
                   help="comma list of base, adversarial, learned (default all three)")
    p.add_argument("--k", default="2,5,10", help="labeled defects per type for learned runs")
    add_run_arguments(p, "/tmp/kensa-gan")
    args = p.parse_args(argv)
    args.k = sorted({int(v) for v in args.k.split(",") if int(v) > 0})
    args.seeds = [int(v) for v in args.seeds.split(",")]
    args.variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in args.variants if v not in ("base", "adversarial", "learned")]
    if bad or "base" not in args.variants:
        p.error(f"variants must include base and be among base, adversarial, learned: {bad}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.work_dir.exists():
        import shutil

        shutil.rmtree(args.work_dir)
    jobs = jobs_for(args, args.work_dir)
    from benchmarks.machine import machine_info

    result = {"protocol": {"variants": args.variants, "k": args.k, "seeds": args.seeds,
                           "preset": args.preset, "max_minutes": args.max_minutes,
                           "epochs": args.epochs, "device": args.device, "jobs": args.jobs,
                           "threads_per_job": args.threads, "data": [str(d) for d in args.data],
                           "command": "python -m benchmarks.gan " +
                           " ".join(argv if argv is not None else sys.argv[1:])},
              "machine": machine_info(), "runs": [], "failed": []}
    return run_all(jobs, run_one, args.jobs, result, args.json, "gan", describe,
                   lambda runs: {"means": means(runs), "paired": paired(runs)})


def describe(run: dict) -> str:
    return (f"{run['name']} seed {run['seed']} {label(run)}: image {run['image_auroc']} pixel "
            f"{run['pixel_auroc']} aupro {run['aupro']} normal residual "
            f"{run['normal_residual']} defect residual {run['defect_residual']} "
            f"({run['autoencoder_steps']} steps)")


if __name__ == "__main__":
    raise SystemExit(main())
