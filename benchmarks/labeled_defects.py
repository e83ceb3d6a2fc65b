"""The labeled-defects protocol (issue 26): does training with a few reviewed defects make the
next model better?

For each data set (MVTec layout) and seed: draw ``max(k)`` defects of every type from the
test split (seeded), then train

- ``none``: without labels (the paired reference),
- ``image``: with the first ``k`` drawn of each type as image-level labels (a CSV of
  ``path,label``: what an operator says without drawing),
- ``boxes``: the same images with boxes taken from their ground-truth masks (the bounding box
  of each connected region),
- ``mask`` (only when asked): the same images with their masks,
- ``latent`` (only when asked): image-level labels that do not train the head (``kensa
  train --labels`` without ``--labeled-defects head``: label spreading, the fusion weight),
- ``paste`` / ``paste-boxes`` / ``paste-mask`` (when asked): image-level labels (boxes,
  masks) whose defects are pasted onto training normals (``--labeled-defects paste``),
- ``mixed`` (when asked): image-level labels training the head in two windows of every batch
  (``--labeled-defects head --positive-step mixed``),
- ``classifier`` (when asked): image-level labels in the latent classifier's nearest-centre
  classifier instead of label spreading (``--latent-labels classifier``),

- ``labels`` (when asked): image-level labels used as ``kensa train --labels`` uses them by
  default (label spreading, the fusion weight; no network trains on them),
- ``f1`` (when asked): the same with ``--threshold-rule f1`` (the labeled defects set the
  threshold with the held-out normals),

``image``, ``boxes``, ``mask`` with ``--labeled-defects head``, all at the same budget, and
evaluate each on the test images that were never drawn (the same images for every variant
and k of a seed): image and pixel AUROC, AUPRO, false alarms and misses at the bundle's own
threshold and at a 5 % false-alarm budget; and, to see where a change comes from, the image
AUROC of the head's map alone and of the residual alone (each image's maximum) and the head's
mean maximum on the normal and on the defective test images. The test split is seen through a
folder of links without the drawn images, so ``kensa train``'s own evaluation is that one;
nothing is copied. A variant runs at every ``--k``, or at the ones it names:
``paste@2,paste@5,mixed@5``.

The variants whose labels train no network (``labels``, ``latent``, ``classifier``) take the
``none`` run's networks of their seed (``kensa train --networks-from``, :mod:`models.reuse`)
once it has ended, so they differ from it by what the labels do and nothing else: the same
weights, the same held-out normals, the same test images (``--retrain`` trains them anew at the
budget, as before). ``--resume`` keeps the work folder and takes every run that already wrote
its evaluation as it stands, so a long protocol cut short goes on where it stopped, and new
variants can be added to finished ``none`` runs.

    python -m benchmarks.labeled_defects --data ../shared/data/magnetic_tile --k 5 \\
        --seeds 0,1,2 --max-minutes 15 --json benchmarks/results/labeled-defects-X.json
    python -m benchmarks.labeled_defects report benchmarks/results/labeled-defects-X.json

Runs go in parallel with ``--jobs`` (one thread each); the JSON is rewritten as each run
ends, with the paired differences (variant minus ``none``, same seed) so far.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from pathlib import Path

from benchmarks.parallel import add_run_arguments, run_all

# variant: (regions in the labels file, TrainConfig.extra); "none" trains without labels
VARIANTS = {
    "none": (None, {}),
    "image": ("image", {"labeled_defects": "head"}),
    "boxes": ("boxes", {"labeled_defects": "head"}),
    "mask": ("mask", {"labeled_defects": "head"}),
    "latent": ("image", {"image_score": "auto"}),  # labels choose the pooling too
    "paste": ("image", {"labeled_defects": "paste"}),
    "paste-boxes": ("boxes", {"labeled_defects": "paste"}),
    "paste-mask": ("mask", {"labeled_defects": "paste"}),
    "mixed": ("image", {"labeled_defects": "head", "positive_step": "mixed"}),
    "classifier": ("image", {"latent_labels": "classifier"}),
    "labels": ("image", {}),  # what kensa train --labels does by default
    "f1": ("image", {"threshold_rule": "f1"}),  # ... with --threshold-rule f1
}
# variants whose labels train no network: they reuse the none run's networks (--networks-from)
REUSE = ("labels", "f1", "latent", "classifier")
METRICS = ("image_auroc", "pixel_auroc", "aupro", "false_alarm_rate", "miss_rate",
           "head_auroc", "residual_auroc", "head_top_normal", "head_top_defect")


def draw(test_items: list, k: int, seed: int) -> dict[str, list]:
    """``k`` defective test items of every type, drawn at random (seeded), in drawn order
    (so the first ``j`` of them are the draw for any ``j <= k``).

    Raises:
        ValueError: a type with no more than ``k`` images (none would be left to judge).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    out: dict[str, list] = {}
    for kind in sorted({it.defect for it in test_items if not it.is_good}):
        items = [it for it in test_items if it.defect == kind]
        if len(items) <= k:
            raise ValueError(f"type {kind!r} has {len(items)} test images: cannot draw {k} "
                             "and keep some to judge")
        out[kind] = [items[i] for i in rng.choice(len(items), k, replace=False)]
    return out


def data_view(root: Path, drawn: dict[str, list], folder: Path) -> Path:
    """A dataset folder of links: ``root``'s training images and ground truth, and its test
    split without the ``drawn`` images."""
    from models.data import open_dataset

    ds = open_dataset(root)
    if folder.exists():  # --resume: the same links again (the draw is seeded)
        import shutil

        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "train").mkdir(exist_ok=True)
    (folder / "train" / "good").symlink_to((root / "train" / "good").resolve())
    if (root / "ground_truth").is_dir():
        (folder / "ground_truth").symlink_to((root / "ground_truth").resolve())
    taken = {str(it.path) for items in drawn.values() for it in items}
    for it in ds.test:
        if str(it.path) not in taken:
            target = folder / "test" / it.path.parent.name / it.path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(it.path.resolve())
    return folder


def mask_boxes(mask_path: Path | None) -> list[list[int]]:
    """The bounding boxes ``[x, y, w, h]`` of a mask's connected regions."""
    import cv2

    from models.data import read_mask

    if mask_path is None:
        return []
    m = read_mask(mask_path).astype("uint8")
    n, _, stats, _ = cv2.connectedComponentsWithStats(m)
    return [[int(v) for v in stats[i, :4]] for i in range(1, n)]


def write_labels(drawn: dict[str, list], k: int, variant: str, path: Path) -> Path:
    """The labels CSV of a variant: the first ``k`` drawn of each type, with regions as the
    variant says (image-level: none)."""
    regions_of = VARIANTS[variant][0]
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["path", "label", "regions"])
        for kind, items in drawn.items():
            for it in items[:k]:
                if regions_of == "boxes":
                    regions = json.dumps(mask_boxes(it.mask_path)) if it.mask_path else ""
                elif regions_of == "mask":
                    regions = str(it.mask_path.resolve()) if it.mask_path else ""
                else:
                    regions = ""
                out.writerow([str(it.path.resolve()), kind, regions])
    return path


def run_one(job: dict) -> dict:
    """One training and its evaluation (in a worker process)."""
    import torch

    torch.set_num_threads(job["threads"])
    from models.config import PRESETS, ModelConfig, TrainConfig
    from models.train import train

    preset = PRESETS[job["preset"]]
    extra = {"preset": job["preset"]} | VARIANTS[job["variant"]][1]
    train_kw = dict(preset["train"]) | {"seed": job["seed"], "extra": extra}
    if job["max_minutes"] is not None:
        train_kw["max_minutes"] = job["max_minutes"]
    if job["epochs"] is not None:
        train_kw["epochs"] = job["epochs"]
    started = time.monotonic()
    metrics = finished(job["out"]) if job.get("resume") else None
    if metrics is None:
        metrics = train(job["view"], job["out"], ModelConfig(**preset["model"]),
                        TrainConfig(**train_kw), labels=job["labels"], device=job["device"],
                        progress=False, name=f"{job['name']}-{job['variant']}-k{job['k']}",
                        networks_from=job.get("networks_from"))
    ev = metrics.get("evaluation") or {}
    at5 = next((p for p in ev.get("operating_points") or [] if p["budget"] == 0.05), {})
    info = json.loads((Path(job["out"]) / "bundle.json").read_text())
    return {key: job[key] for key in ("data", "name", "seed", "k", "variant")} | {
        "evaluated_images": ev.get("images"),
        "defective_images": ev.get("defective_images"),
        **{m: ev.get(m) for m in METRICS},
        "threshold": ev.get("threshold"),
        "at_5pct_budget": {"false_alarm_rate": at5.get("false_alarm_rate"),
                           "miss_rate": at5.get("miss_rate")},
        "per_type_auroc": ev.get("per_type_auroc"),
        "reconstruction_auroc": ev.get("reconstruction_auroc"),
        "latent_auroc": ev.get("latent_auroc"),
        **head_and_residual(job["out"], job["view"], job["device"]),
        "labeled_defects": info.get("data", {}).get("labeled_defects", {}),
        "labeled_defects_used_by": info.get("data", {}).get("labeled_defects_used_by"),
        "positive_step": info.get("data", {}).get("positive_step"),
        "latent_labels": info.get("data", {}).get("latent_labels"),
        "calibration_rule": metrics["calibration"]["rule"],
        "fusion_rule": metrics["calibration"]["fusion_rule"],
        "autoencoder_steps": metrics["training"]["autoencoder"]["steps"],
        "networks_from": (metrics["training"].get("networks_from") or {}).get("version"),
        "training_seconds": round(float(metrics["training"]["seconds"]), 1),
        "wall_seconds": round(time.monotonic() - started, 1),
        "error": ev.get("error"),
        **({"pooling": pooling_comparison(job, TrainConfig(**train_kw))}
           if labels_judge(job["variant"]) and not ev.get("error") else {}),
    }


def finished(out: str) -> dict | None:
    """The metrics of a run that already wrote its bundle and evaluation (``--resume``)."""
    path = Path(out) / "metrics.json"
    if not (Path(out) / "bundle.json").is_file() or not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    return metrics if metrics.get("evaluation") else None


def labels_judge(variant: str) -> bool:
    """Whether a variant's labeled defects choose the image score's pooling (``image_score``
    ``auto``, which also needs labels that did not train the networks: head, paste)."""
    extra = VARIANTS[variant][1]
    return (variant != "none" and extra.get("image_score") == "auto"
            and extra.get("labeled_defects", "latent") == "latent")


def pooling_comparison(job: dict, tcfg) -> dict:
    """The written bundle (``auto``: the pooling its labels chose) and its weights calibrated
    again under each pooling of the image score forced (``max`` as before the choice, every
    candidate; the chosen one must give back the bundle's own calibration), each judged on the
    same evaluated test images: image AUROC of the fused and of the reconstruction score,
    misses and false alarms at that calibration's threshold and at a 5 % budget (from its
    held-out normals), AUROC per defect type. Paired on the same weights, so training noise
    cancels. The labeled images are the run's own (never among the evaluated ones); the
    held-out split is the trainer's (the same seed)."""
    from dataclasses import asdict, replace

    import numpy as np

    from models.calibrate import calibrate
    from models.data import open_dataset, read_image
    from models.inference import Inspector
    from models.labels import labeled_images
    from models.maps import IMAGE_SCORES
    from models.preprocess import prepare_for
    from models.train import read_run_data

    began = time.monotonic()
    insp = Inspector.load(job["out"], job["device"])
    stored, chosen = replace(insp.cal), insp.info["image_score"]
    ds = open_dataset(job["view"])
    run = read_run_data(ds, job["labels"], insp.cfg, tcfg)
    defects = labeled_images(run.defect_rows, insp.cfg)
    test = (insp.groups([prepare_for(read_image(it.path), insp.cfg) for it in ds.test]),
            [it.defect for it in ds.test], np.array([not it.is_good for it in ds.test], int))
    out = {"chosen": chosen["pooling"], "chosen_by": chosen["chosen_by"],
           "labels_ranking": chosen.get("ranking", {}),
           "gain_over_max_low": chosen.get("gain_over_max_low", {}),
           "by_rule": {"auto": _judged(insp, test, insp.info["holdout_scores"])}}
    for rule in IMAGE_SCORES:
        calib = calibrate(insp, run.holdout, replace(tcfg, extra=tcfg.extra | {"image_score":
                                                                              rule}),
                          labeled=(defects, np.ones(len(defects), bool)))
        out["by_rule"][rule] = _judged(insp, test, calib["holdout_fused_scores"])
        if rule == chosen["pooling"]:  # the trainer's calibration, calibrated again
            out["reproduces_bundle"] = _same(asdict(insp.cal), asdict(stored))
    out["by_rule"]["labels_best"] = dict(out["by_rule"][_labels_best(out["labels_ranking"])])
    return out | {"seconds": round(time.monotonic() - began, 1)}


def _judged(insp, test: tuple, holdout_scores: list[float]) -> dict:
    """One calibration of a bundle judged on the test images (``test``: their
    :meth:`Inspector.groups`, types and truth), as :func:`models.evaluate.evaluate` judges the
    image verdicts; ``holdout_scores``: the held-out normals' fused scores it was set from."""
    import numpy as np

    from models.evaluate import operating_points
    from models.metrics import auroc, f1_at, per_type_auroc

    groups, types, truth = test
    raw = insp.grouped_scores(groups)
    fused = insp.fused_scores(raw)[0]
    at = f1_at(truth, fused, insp.cal.image)
    at5 = operating_points(truth, fused, np.asarray(holdout_scores), (0.05,))
    return {"pooling": insp.cal.image_score, "image_auroc": auroc(truth, fused),
            "reconstruction_auroc": auroc(truth, raw.recon_scores),
            "miss_rate": at["miss_rate"], "false_alarm_rate": at["false_alarm_rate"],
            "at_5pct_budget": {k: at5[0][k] for k in ("false_alarm_rate", "miss_rate")}
            if at5 else {}, "threshold": insp.cal.image, "fusion_weight": insp.cal.fusion_weight,
            "per_type_auroc": per_type_auroc(types, fused)}


def _labels_best(ranking: dict) -> str:
    """The pooling the labels ranked best, luck or not (ties: the earlier); ``max`` without a
    ranking: what choosing without the bootstrap's guard would have taken."""
    return max(ranking, key=lambda r: (ranking[r], -list(ranking).index(r))) if ranking else "max"


def _same(a: dict, b: dict) -> bool:
    return all(math.isclose(v, b[k], rel_tol=1e-5) if isinstance(v, float) else v == b[k]
               for k, v in a.items())


def head_and_residual(bundle: str, view: str, device: str) -> dict:
    """Where a change comes from: the image AUROC of each evaluated image's largest head
    probability and largest residual (over the bundle's residual scale), both at the full
    view, and the head's mean largest probability on the normal and the defective images."""
    import numpy as np
    import torch

    from models.data import open_dataset, read_image
    from models.inference import Inspector
    from models.maps import residual_map
    from models.metrics import auroc
    from models.preprocess import prepare_for

    insp = Inspector.load(bundle, device)
    head, residual, bad = [], [], []
    with torch.inference_mode():
        for it in open_dataset(view).test:
            x = insp.groups([prepare_for(read_image(it.path), insp.cfg)])[0][1]
            recon, logits = insp.model(x)
            head.append(float(torch.sigmoid(logits.float()).max()))
            residual.append(float(residual_map(x, recon.float()).max()) / insp.cal.residual_scale)
            bad.append(int(not it.is_good))
    bad_, head_ = np.array(bad), np.array(head)
    return {"head_auroc": auroc(bad_, head_), "residual_auroc": auroc(bad_, residual),
            "head_top_normal": round(float(head_[bad_ == 0].mean()), 4),
            "head_top_defect": round(float(head_[bad_ == 1].mean()), 4)}


def paired(runs: list[dict]) -> list[dict]:
    """Each labeled run minus the ``none`` run of its data set and seed (same test images)."""
    base = {(r["name"], r["seed"]): r for r in runs if r["variant"] == "none"}
    out = []
    for r in runs:
        ref = base.get((r["name"], r["seed"]))
        if r["variant"] == "none" or ref is None:
            continue
        out.append({"name": r["name"], "seed": r["seed"], "k": r["k"], "variant": r["variant"],
                    **{m: _diff(r.get(m), ref.get(m)) for m in METRICS},
                    "miss_rate_at_5pct": _diff(r["at_5pct_budget"]["miss_rate"],
                                               ref["at_5pct_budget"]["miss_rate"])})
    return sorted(out, key=lambda d: (d["name"], d["variant"], d["k"], d["seed"]))


def pooling_paired(runs: list[dict]) -> list[dict]:
    """Per labeled run whose labels judged the calibration: each pooling (the labels' choice
    ``auto``, the best-ranked ``labels_best``, every candidate) minus ``max`` on the same
    weights and test images, and ``oracle``, the best candidate on the test images (what a
    perfect choice would reach)."""
    out = []
    for r in runs:
        by = (r.get("pooling") or {}).get("by_rule")
        if not by:
            continue
        base = by["max"]
        row = {"name": r["name"], "seed": r["seed"], "k": r["k"], "variant": r["variant"],
               "chosen": r["pooling"]["chosen"], "reproduces_bundle":
               r["pooling"]["reproduces_bundle"]}
        for rule, got in by.items():
            if rule != "max":
                row[rule] = _pool_diff(got, base)
        oracle = max((v for k, v in by.items() if k not in ("auto", "labels_best")),
                     key=lambda v: v["image_auroc"])
        row["oracle"] = _pool_diff(oracle, base) | {"pooling": oracle["pooling"]}
        out.append(row)
    return sorted(out, key=lambda d: (d["name"], d["variant"], d["k"], d["seed"]))


def _pool_diff(got: dict, base: dict) -> dict:
    return {"image_auroc": _diff(got["image_auroc"], base["image_auroc"]),
            "miss_rate": _diff(got["miss_rate"], base["miss_rate"]),
            "false_alarm_rate": _diff(got["false_alarm_rate"], base["false_alarm_rate"]),
            "miss_rate_at_5pct": _diff(got["at_5pct_budget"].get("miss_rate"),
                                       base["at_5pct_budget"].get("miss_rate"))}


def means(runs: list[dict]) -> list[dict]:
    """Mean of each figure over the seeds, per data set, variant and k."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["name"], r["variant"], r["k"]), []).append(r)
    out = []
    for (name, variant, k), rs in sorted(groups.items()):
        row = {"name": name, "variant": variant, "k": k, "seeds": sorted(r["seed"] for r in rs)}
        for m in METRICS:
            row[m] = _mean([r.get(m) for r in rs])
        row["miss_rate_at_5pct"] = _mean([r["at_5pct_budget"]["miss_rate"] for r in rs])
        row["false_alarm_rate_at_5pct"] = _mean(
            [r["at_5pct_budget"]["false_alarm_rate"] for r in rs])
        out.append(row)
    return out


def table(result: dict) -> str:
    """The results as the README's accuracy table shows them (markdown): per data set, variant
    and k, the mean over the seeds of image AUROC, pixel AUROC, AUPRO, misses and false alarms
    at the bundle's own threshold and at a 5 % budget, and each seed's paired change of image
    AUROC against the run without labels (same test images)."""
    changes: dict[tuple, list[str]] = {}
    for d in result.get("paired", []):
        changes.setdefault((d["name"], d["variant"], d["k"]), []).append(
            f"{d['image_auroc']:+.3f}" if d["image_auroc"] is not None else "?")
    lines = [("| data | labels | k | seeds | image AUROC | paired change, each seed | pixel AUROC "
             "| AUPRO | misses (false alarms) at the bundle's threshold | misses (false "
             "alarms) at 5 % |"),
             "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
    order = list(VARIANTS)
    for m in sorted(result.get("means", []), key=lambda m: (m["name"], order.index(m["variant"])
                                                           if m["variant"] in order else 99,
                                                           m["k"])):
        paired_change = " / ".join(changes.get((m["name"], m["variant"], m["k"]), [])) or "-"
        lines.append(
            f"| {m['name']} | {m['variant']} | {m['k']} | {len(m['seeds'])} | "
            f"{_f(m['image_auroc'])} | {paired_change} | {_f(m['pixel_auroc'])} | "
            f"{_f(m['aupro'])} | "
            f"{_f(m['miss_rate'], 2)} ({_f(m['false_alarm_rate'], 2)}) | "
            f"{_f(m['miss_rate_at_5pct'], 2)} ({_f(m['false_alarm_rate_at_5pct'], 2)}) |")
    return "\n".join(lines)


def _f(value, digits: int = 3) -> str:
    return "?" if value is None else f"{value:.{digits}f}"


def _diff(a, b):
    return None if a is None or b is None else round(a - b, 4)


def _mean(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return round(sum(values) / len(values), 4) if values else None


def jobs_for(args: argparse.Namespace, work: Path) -> list[dict]:
    """Every training of the protocol, with its data view and labels file made."""
    from models.data import open_dataset

    jobs = []
    k_max = max((k for _, k in args.plan), default=max(args.k))
    for data in args.data:
        ds = open_dataset(data)
        name = Path(data).resolve().name
        for seed in args.seeds:
            drawn = draw(ds.test, k_max, seed)
            view = data_view(Path(data), drawn, work / name / f"seed{seed}" / "data")
            common = {"data": str(data), "name": name, "seed": seed, "view": str(view),
                      "preset": args.preset, "max_minutes": args.max_minutes,
                      "epochs": args.epochs, "device": args.device, "threads": args.threads,
                      "resume": args.resume}
            none = str(work / name / f"seed{seed}" / "none")
            jobs.append(common | {"k": 0, "variant": "none", "labels": None, "out": none})
            for variant, k in args.plan:
                labels = write_labels(drawn, k, variant,
                                      work / name / f"seed{seed}" / f"{variant}-k{k}.csv")
                reuse = variant in REUSE and not args.retrain
                jobs.append(common | {"k": k, "variant": variant, "labels": str(labels),
                                      "out": str(work / name / f"seed{seed}" /
                                                 f"{variant}-k{k}"),
                                      "networks_from": none if reuse else None})
    return jobs


def plan(variants: str, ks: list[int]) -> list[tuple[str, int]]:
    """``--variants`` -> ``[(variant, k), ...]``: a plain name at every k > 0 of ``ks``, a
    ``name@k`` at that k.

    Raises:
        ValueError: an unknown variant or a k below 1.
    """
    out = []
    for entry in (v.strip() for v in variants.split(",") if v.strip()):
        name, _, k = entry.partition("@")
        if name not in VARIANTS or name == "none":
            raise ValueError(f"unknown variant {name!r}: use {', '.join(list(VARIANTS)[1:])}")
        for value in [int(k)] if k else [v for v in ks if v > 0]:
            if value < 1:
                raise ValueError(f"{entry}: k must be 1 or more")
            out.append((name, value))
    return list(dict.fromkeys(out))


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line, its lists read and the plan of variants and k made."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.labeled_defects",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--data", action="append", required=True, type=Path,
                   help="an MVTec-layout data set (repeat for several)")
    p.add_argument("--k", default="5", help="labeled defects per type, a comma list (0 "
                   "always runs as the reference; default 5)")
    p.add_argument("--variants", default="image,boxes",
                   help=f"comma list of {', '.join(list(VARIANTS)[1:])}, each at every --k or "
                   "at its own as name@k (default image,boxes)")
    p.add_argument("--retrain", action="store_true",
                   help=f"train {', '.join(REUSE)} anew at the budget instead of taking the "
                   "none run's networks")
    p.add_argument("--resume", action="store_true",
                   help="keep --work-dir and take the runs that already wrote their evaluation")
    add_run_arguments(p, "/tmp/kensa-labeled")
    args = p.parse_args(argv)
    args.k = sorted({int(v) for v in args.k.split(",")})
    args.seeds = [int(v) for v in args.seeds.split(",")]
    try:
        args.plan = plan(args.variants, args.k)
    except ValueError as exc:
        p.error(str(exc))
    args.variants = [v for v in args.variants.split(",") if v]
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["report"]:  # the table of a finished results file
        if len(argv) != 2:
            print("usage: python -m benchmarks.labeled_defects report RESULTS.json",
                  file=sys.stderr)
            return 2
        print(table(json.loads(Path(argv[1]).read_text())))
        return 0
    args = parse(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.work_dir.exists() and not args.resume:
        import shutil

        shutil.rmtree(args.work_dir)
    jobs = jobs_for(args, args.work_dir)
    from benchmarks.machine import machine_info

    result = {"protocol": {"k": args.k, "variants": args.variants,
                           "plan": [f"{v}@{k}" for v, k in args.plan], "seeds": args.seeds,
                           "preset": args.preset, "max_minutes": args.max_minutes,
                           "epochs": args.epochs, "device": args.device, "jobs": args.jobs,
                           "threads_per_job": args.threads,
                           "networks": "retrained" if args.retrain else
                           f"{', '.join(REUSE)} take the none run's", "resume": args.resume,
                           "data": [str(d) for d in args.data],
                           "command": "python -m benchmarks.labeled_defects " +
                           " ".join(argv)},
              "machine": machine_info(), "runs": [], "failed": []}
    # the trainings first; then the runs that take a none run's networks
    phases = ([j for j in jobs if not j.get("networks_from")],
              [j for j in jobs if j.get("networks_from")])
    code = max(run_all(phase, run_one, args.jobs, result, args.json, "labeled", describe,
                       summary) for phase in phases if phase)
    print(table(result))
    return code


def summary(runs: list[dict]) -> dict:
    """What the results file adds to the runs."""
    return {"means": means(runs), "paired": paired(runs), "pooling_paired": pooling_paired(runs)}


def describe(run: dict) -> str:
    line = (f"{run['name']} seed {run['seed']} {run['variant']} k {run['k']}: image "
            f"{run['image_auroc']} pixel {run['pixel_auroc']} aupro {run['aupro']} misses "
            f"{run['miss_rate']} false alarms {run['false_alarm_rate']} "
            f"({run['autoencoder_steps']} steps)")
    by = (run.get("pooling") or {}).get("by_rule")
    if by:
        line += (f"; pooling {run['pooling']['chosen']} (same weights, image AUROC / misses: "
                 + ", ".join(f"{rule} {v['image_auroc']:.3f} / {v['miss_rate']:.2f}"
                             for rule, v in by.items() if rule != "labels_best") + ")")
    return line


if __name__ == "__main__":
    raise SystemExit(main())
