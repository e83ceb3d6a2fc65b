"""``kensa``: make demo data, train, evaluate, serve and benchmark."""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import sys
from dataclasses import fields
from pathlib import Path

# Before torch loads: OpenMP threads that busy-wait made a forward pass 20-30x slower when
# another process held a core (kensa bench); passive waiting cost nothing measurable.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from models.errors import KensaError

DEVICES = ("auto", "cpu", "cuda")
M_ARENA_MAX = -8  # glibc's mallopt parameter number


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kensa",
        description="Kensa: visual anomaly inspection that learns from defect-free parts.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("make-demo-data", help="render the demo part dataset (MVTec AD layout)")
    d.add_argument("out", type=Path, help="folder to write (reused if already complete)")
    d.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    t = sub.add_parser("train", help="train a bundle on normal images")
    t.add_argument("--data", type=Path, required=True,
                   help="MVTec AD layout folder (DIR/train/good, optional DIR/test) or a plain "
                        "folder of normal images")
    t.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    t.add_argument("--preset", choices=("default", "demo", "large", "tiny"), default="default",
                   help="starting settings: default (15-minute budget), demo (about 5 minutes "
                        "in all on a 2-core CPU), large (for a GPU: 256-pixel input, wider "
                        "networks), tiny (seconds; smoke tests)")
    t.add_argument("--epochs", type=int, help="upper bound on passes over the images")
    t.add_argument("--max-minutes", type=float,
                   help="training time budget in minutes (0 = no budget); training stops "
                        "cleanly, then calibrates and writes the bundle")
    t.add_argument("--image-size", type=int,
                   help="side of the square a typical training image becomes for the model "
                        "(default 128)")
    t.add_argument("--aspect", choices=("keep", "squash"),
                   help="keep (default): each image keeps its aspect ratio, at the training "
                        "images' scale; squash: every image is resized to the square")
    t.add_argument("--batch-size", type=int, help="images per training step")
    t.add_argument("--seed", type=int, help="random seed (CPU training is deterministic for a "
                                            "seed when the time budget does not bind)")
    t.add_argument("--device", choices=DEVICES, default="auto", help="default auto")
    t.add_argument("--labels",
                   help="CSV of operator labels, rows 'path,label' (label 'good' or a defect "
                        "name), or a folder holding labels.csv (KENSA_LABELS_DIR of kensa "
                        "serve; none there yet = no labels), or the records store: the data "
                        "folder (KENSA_DATA_DIR) or a database URL, whose reviewed records "
                        "with kept images are the labels: images labeled good train with "
                        "the normals, defect labels sharpen the latent classifier by label "
                        "spreading")
    t.add_argument("--data-dir", type=Path,
                   help="with --labels DATABASE_URL: where the kept images are (default "
                        "KENSA_DATA_DIR, else ./kensa-data)")
    t.add_argument("--false-alarm-rate", type=float,
                   help="share of normal images allowed over the image threshold (default 0.01)")
    t.add_argument("--threshold-rule", choices=("false-alarm", "f1"), default="false-alarm",
                   help="f1: with --labels that include defects, use the F1-optimal threshold")
    t.add_argument("--fusion", choices=("auto", "reconstruction", "max", "weighted"),
                   help="how the reconstruction and latent scores combine (default auto: "
                        "weighted at --fusion-weight, or with labeled defects the weight "
                        "that ranks them best)")
    t.add_argument("--fusion-weight", type=float,
                   help="weight of the reconstruction score under 'weighted' (default 0.8)")
    t.add_argument("--flips",
                   help="test-time flips: none (default), auto (those under which the "
                        "held-out normals still look normal), or a comma list of h, v, hv; "
                        "each one costs another forward pass per image")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser("eval", help="evaluate a bundle on a dataset's test split")
    e.add_argument("--model", type=Path, required=True, help="bundle directory")
    e.add_argument("--data", type=Path, required=True, help="MVTec AD layout folder with test/")
    e.add_argument("--json", type=Path, help="also write the report as JSON here")
    e.add_argument("--device", choices=DEVICES, default="auto", help="default auto")

    s = sub.add_parser("serve", help="serve a bundle over HTTP (Swagger UI at /docs)")
    s.add_argument("--model", help="bundle directory (env KENSA_MODEL)")
    s.add_argument("--host", help="bind address (env KENSA_HOST, default 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (env KENSA_PORT, default 8000)")
    s.add_argument("--device", choices=DEVICES, help="env KENSA_DEVICE, default auto")

    db = sub.add_parser("db", help="the inspection records database")
    dbsub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = dbsub.add_parser("upgrade", help="bring the records schema up to date (kensa serve "
                                          "does it at start)")
    up.add_argument("--database-url",
                    help="default KENSA_DATABASE_URL, else the SQLite file in the data folder")
    up.add_argument("--data-dir", type=Path, help="default KENSA_DATA_DIR, else ./kensa-data")

    b = sub.add_parser("bench", help="accuracy and speed benchmarks (prints tables, writes JSON)")
    b.add_argument("--data", type=Path, action="append", default=[],
                   help="dataset for the accuracy half (repeatable); none = speed only")
    b.add_argument("--max-minutes", type=float, default=15.0,
                   help="training budget per model for the accuracy half (default 15)")
    b.add_argument("--sizes", default="256,512", help="image sides for the speed half")
    b.add_argument("--skip-speed", action="store_true", help="accuracy half only")
    b.add_argument("--skip-http", action="store_true", help="no end-to-end HTTP runs")
    b.add_argument("--seconds", type=float, default=5.0, help="time per speed measurement")
    b.add_argument("--device", choices=DEVICES, default="auto", help="default auto")
    b.add_argument("--json", type=Path, default=Path("benchmarks/results/latest.json"),
                   help="where to write the results")
    b.add_argument("--model", type=Path,
                   help="bundle for the speed half (default: train a default-architecture "
                        "bundle on demo data for a few seconds)")
    b.add_argument("--epochs", type=int,
                   help="upper bound on passes over the images for every model trained "
                        "(default: the trainer's; the time budget usually binds first)")
    b.add_argument("--skip-accuracy", action="store_true", help="speed half only")
    b.add_argument("--concurrency", default="1,8,64",
                   help="concurrent HTTP clients to try (default 1,8,64)")
    b.add_argument("--http-batch", type=int, default=32,
                   help="images per /v1/inspect/batch request (default 32)")
    b.add_argument("--work-dir", type=Path, default=Path("runs/bench"),
                   help="where trained bundles and demo data go (default runs/bench)")
    return p


def cmd_make_demo_data(a: argparse.Namespace) -> int:
    from models.synth_demo import make_demo_dataset

    summary = make_demo_dataset(a.out, seed=a.seed)
    state = "reused" if summary.get("reused") else "wrote"
    print(f"{state} demo dataset in {a.out}: {json.dumps(summary['counts'])}")
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from models.config import ModelConfig, TrainConfig
    from models.evaluate import format_table
    from models.train import PRESETS, train

    preset = PRESETS[a.preset]
    mkw = dict(preset["model"])
    tkw = dict(preset["train"])
    if a.image_size is not None:
        mkw["image_size"] = a.image_size
    if a.aspect is not None:
        mkw["keep_aspect"] = a.aspect == "keep"
    for opt, key in (("epochs", "epochs"), ("max_minutes", "max_minutes"),
                     ("batch_size", "batch_size"), ("seed", "seed"),
                     ("false_alarm_rate", "false_alarm_rate"), ("fusion", "fusion"),
                     ("fusion_weight", "fusion_weight"), ("flips", "flips")):
        if getattr(a, opt) is not None:
            tkw[key] = getattr(a, opt)
    tkw["extra"] = {"threshold_rule": "f1" if a.threshold_rule == "f1" else "false-alarm",
                    "preset": a.preset}
    _check_fields(ModelConfig, mkw)
    metrics = train(a.data, a.out, ModelConfig(**mkw), TrainConfig(**tkw),
                    labels=_labels(a.labels, a.data_dir), device=a.device,
                    progress=not a.quiet)
    cal = metrics["calibration"]
    print(f"wrote bundle {a.out} (calibration: {cal['rule']}; test-time flips: "
          f"{cal['flip_rule']})")
    report = metrics["evaluation"]
    if "error" in report:
        print(f"evaluation on the test split failed ({report['error']}); the bundle is sound: "
              f"retry with 'kensa eval --model {a.out} --data {a.data}'")
    elif report:
        print(format_table(report))
    return 0


def _labels(value: str | None, data_dir: Path | None) -> str | dict[str, str] | None:
    """``--labels`` as the trainer takes it: a path, or, for the records store, the reviewed
    records read here and handed over as ``{image path: label}``."""
    from service.store.training import is_store, reviewed_labels

    if value is None or not is_store(value):
        return value
    if data_dir is None:
        from service.config import Settings

        data_dir = Settings().data_dir
    labels = reviewed_labels(value, data_dir)
    print(f"labels: {len(labels)} reviewed record(s) with kept images in the records store")
    return labels


def _check_fields(cls, kw: dict) -> None:
    names = {f.name for f in fields(cls)}
    bad = set(kw) - names
    if bad:
        raise KensaError(f"unknown {cls.__name__} fields {sorted(bad)}")


def cmd_eval(a: argparse.Namespace) -> int:
    from models.data import open_dataset
    from models.evaluate import bundle_normals, evaluate, format_table
    from models.inference import Inspector

    insp = Inspector.load(a.model, a.device)
    ds = open_dataset(a.data)
    if not ds.test:
        raise KensaError(f"{a.data} has no test split: evaluation needs DIR/test/<type>/ images "
                         "(and DIR/ground_truth/<type>/<stem>_mask.png for pixel metrics)")
    normals = bundle_normals(insp, ds.train)
    if normals is None:
        print("note: these training images are not the ones the bundle was trained on, so the "
              "with-labels check uses the test images alone")
    report = evaluate(insp, ds.test, normals=normals)
    print(f"model {a.model} (version {insp.info.get('version')}) on {a.data}")
    print(format_table(report))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(report, indent=2, sort_keys=True))
        print(f"wrote {a.json}")
    return 0


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Caps glibc's malloc arenas before the server starts its threads (``mallopt``, the
    runtime twin of ``MALLOC_ARENA_MAX``). Each thread that decodes or encodes an image
    otherwise gets an arena of its own that keeps freed memory: at 512x512 uploads the
    server's peak RSS was 1,433 MiB with them and 946 MiB with 2 (kensa bench, 2-core CPU),
    for no measurable loss of speed. A ``MALLOC_ARENA_MAX`` in the environment wins; on a
    C library without ``mallopt`` nothing happens. Returns whether the cap was set."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


def cmd_serve(a: argparse.Namespace) -> int:
    limit_malloc_arenas()
    from service.app import run

    run(model=a.model, host=a.host, port=a.port, device=a.device)
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    from service.bench import run_bench

    return run_bench(a)


def cmd_db(a: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from service.config import Settings
    from service.store.database import current_revision, database_url, make_engine, upgrade

    settings = Settings()
    url = database_url(a.data_dir or settings.data_dir, a.database_url or settings.database_url)
    engine = make_engine(url)
    try:
        upgrade(engine)
        revision = current_revision(engine)
    except SQLAlchemyError as exc:
        raise KensaError(f"cannot upgrade {engine.url.render_as_string()}: {exc}") from None
    finally:
        engine.dispose()
    print(f"records database {engine.url.render_as_string()} is at revision {revision}")
    return 0


COMMANDS = {"make-demo-data": cmd_make_demo_data, "train": cmd_train, "eval": cmd_eval,
            "serve": cmd_serve, "db": cmd_db, "bench": cmd_bench}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except KensaError as exc:
        print(f"kensa {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
