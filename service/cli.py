"""``kensa``: make demo data, train, evaluate, recalibrate, serve (and ``kensa bench``, an alias of
``python -m benchmarks`` in a checkout of the repository)."""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import sys
from dataclasses import fields
from pathlib import Path

# Before torch loads: busy-waiting OpenMP threads slow a forward pass many times over when
# another process holds a core; passive waiting costs nothing measurable (benchmarks/HISTORY.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from models.config import DEVICES
from models.errors import KensaError

# "auto" and models.maps.IMAGE_SCORES, without importing torch here
IMAGE_SCORES = ("auto", "max", "top0.1", "top1", "top5")
RUNTIMES = ("torch", "onnx", "auto")  # models.networks.CHOICES, without importing torch here
EXPORT_FORMATS = ("onnx",)

M_ARENA_MAX = -8  # glibc's mallopt parameter number
NO_BENCHMARKS = ("kensa bench: the benchmarks are not installed here (the image ships only the "
                 "server and the trainer): run them from a checkout of the repository, "
                 "`python -m benchmarks --help`, or `kensa bench` after `make install`")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kensa",
        description="Kensa: visual anomaly inspection that learns from defect-free parts.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_make_demo_data(commands)
    add_train(commands)
    add_eval(commands)
    add_generate(commands)
    add_recalibrate(commands)
    add_serve(commands)
    add_export(commands)
    add_db(commands)
    add_watch(commands)
    add_models(commands)
    add_bench(commands)
    return parser


def add_make_demo_data(commands) -> None:
    demo = commands.add_parser("make-demo-data",
                               help="render the demo part dataset (MVTec AD layout)")
    demo.add_argument("out", type=Path, help="folder to write (reused if already complete)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def add_train(commands) -> None:
    train = commands.add_parser("train", help="train a bundle on normal images")
    _add_training_options(train)
    _add_calibration_options(train)
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--export", choices=EXPORT_FORMATS,
                       help="also add the networks' ONNX graphs to the new bundle or version "
                            "before it is published, as 'kensa export' does (needs the onnx "
                            "extra): KENSA_RUNTIME=auto then serves it through onnxruntime on "
                            "a CPU")


def _add_training_options(train: argparse.ArgumentParser) -> None:
    train.add_argument("--data", type=Path, required=True,
                       help="MVTec AD layout folder (DIR/train/good, optional DIR/test) or a "
                            "plain folder of normal images")
    train.add_argument("--out", type=Path, required=True,
                       help="bundle directory to write, or a part of a models root "
                            "(KENSA_MODELS_DIR/PART, or a folder holding versions already): "
                            "then a new version folder PART/VERSION is written beside the "
                            "others, and the part's first version becomes active")
    train.add_argument("--preset", choices=("default", "demo", "large", "tiny"),
                       default="default",
                       help="starting settings: default (15-minute budget), demo (about 5 "
                            "minutes in all on a 2-core CPU), large (for a GPU: 256-pixel "
                            "input, wider networks), tiny (seconds; smoke tests)")
    train.add_argument("--epochs", type=int, help="upper bound on passes over the images")
    train.add_argument("--max-minutes", type=float,
                       help="training time budget in minutes (0 = no budget); training stops "
                            "cleanly, then calibrates and writes the bundle")
    train.add_argument("--image-size", type=int,
                       help="side of the square a typical training image becomes for the "
                            "model (default 128)")
    train.add_argument("--aspect", choices=("keep", "squash"),
                       help="keep (default): each image keeps its aspect ratio, at the "
                            "training images' scale; squash: every image is resized to the "
                            "square")
    train.add_argument("--batch-size", type=int, help="images per training step")
    train.add_argument("--seed", type=int, help="random seed (CPU training is deterministic "
                                                "for a seed when the time budget does not bind)")
    train.add_argument("--device", choices=DEVICES, default="auto", help="default auto")
    train.add_argument("--networks-from", type=Path, metavar="BUNDLE",
                       help="train nothing: take the networks of BUNDLE (a bundle or version "
                            "folder trained on the same --data) and apply --labels and the "
                            "calibration options to them, in about the time of an evaluation; "
                            "the model and training settings and the held-out split are "
                            "BUNDLE's. Refused with options that train (--labeled-defects "
                            "head|paste|generator, --generator, --synth, --adversarial)")


def _add_calibration_options(train: argparse.ArgumentParser) -> None:
    train.add_argument("--labels",
                       help="CSV of operator labels, rows 'path,label[,regions]' (label "
                            "'good' or a defect name; regions: JSON boxes [[x,y,w,h],...] in "
                            "image pixels or a mask file; masks at "
                            "ground_truth/LABEL/STEM_mask.png beside the CSV also count), or a "
                            "folder holding labels.csv (KENSA_LABELS_DIR of kensa serve; none "
                            "there yet = no labels), or the records store: the data folder "
                            "(KENSA_DATA_DIR) or a database URL, whose reviewed records with "
                            "kept images are the labels (with the regions reviews drew): "
                            "images labeled good train with the normals, labeled defects "
                            "sharpen the latent classifier by label spreading (and, with "
                            "--labeled-defects head, train the segmentation head)")
    train.add_argument("--data-dir", type=Path,
                       help="with --labels DATABASE_URL: where the kept images are (default "
                            "KENSA_DATA_DIR, else ./kensa-data)")
    train.add_argument("--false-alarm-rate", type=float,
                       help="share of normal images allowed over the image threshold "
                            "(default 0.01)")
    train.add_argument("--threshold-rule", choices=("false-alarm", "f1"), default="false-alarm",
                       help="f1: with --labels that include defects, use the F1-optimal "
                            "threshold (not with --labeled-defects head: defects the head "
                            "trained on cannot judge it, and the held-out normals set it)")
    train.add_argument("--labeled-defects", choices=("latent", "head", "paste", "generator"),
                       default="latent",
                       help="what defects among --labels train: latent (default: label "
                            "spreading, the fusion weight, the f1 rule), head (the "
                            "segmentation head too, as real positives: image labels by "
                            "multiple-instance learning, regions as full supervision; measured "
                            "to lower image AUROC at the same budget, see "
                            "benchmarks/HISTORY.md) or paste (their defects, by mask or the "
                            "top of the model's map, pasted onto training normals in place of "
                            "some synthetic defects) or generator (only the defect generator "
                            "learns from them; implies --generator)")
    train.add_argument("--positive-step", choices=("extra", "mixed"), default="extra",
                       help="with --labeled-defects head: extra (default: a forward pass of "
                            "labeled defects every second step) or mixed (two windows of every "
                            "training batch are labeled defects: no extra pass)")
    train.add_argument("--latent-labels", choices=("spread", "classifier"), default="spread",
                       help="how labeled defects name and score latent codes: spread (default: "
                            "label spreading) or classifier (a nearest-centre classifier per "
                            "type); either earns a share of the latent score only when it "
                            "ranks the labeled defects, labels hidden, better than the distance")
    train.add_argument("--image-score", choices=IMAGE_SCORES, default="max",
                       help="how the smoothed anomaly map becomes the reconstruction score: "
                            "max (default: its largest pixel), top0.1, top1, top5 (the mean "
                            "of its largest 0.1, 1, 5 %% of pixels) or auto (with labeled "
                            "defects among --labels, the one that ranks them above the "
                            "held-out normals better than max by more than luck; measured "
                            "not better on magnetic tiles); the thresholds are set under it "
                            "and ship with the bundle")
    train.add_argument("--fusion", choices=("auto", "reconstruction", "max", "weighted"),
                       help="how the reconstruction and latent scores combine (default auto: "
                            "weighted at --fusion-weight, or with labeled defects the weight "
                            "that ranks them best)")
    train.add_argument("--fusion-weight", type=float,
                       help="weight of the reconstruction score under 'weighted' (default 0.8)")
    train.add_argument("--flips",
                       help="test-time flips: none (default), auto (those under which the "
                            "held-out normals still look normal), or a comma list of h, v, hv; "
                            "each one costs another forward pass per image")
    _add_gan_options(train)


def _add_gan_options(train: argparse.ArgumentParser) -> None:
    train.add_argument("--adversarial", action="store_true", default=None,
                       help="VAEGAN: a patch discriminator's features also judge the "
                            "reconstruction (after a warm-up), for sharper texture; training "
                            "only, the bundle serves as without it (not yet measured to help)")
    train.add_argument("--generator", action="store_true", default=None,
                       help="also train a conditional defect generator on the labeled defects "
                            "of --labels (their masks or boxes; image-level labels are cut out "
                            "by local contrast) and ship it in the bundle for 'kensa generate'")
    train.add_argument("--synth", choices=("procedural", "learned"),
                       help="synthetic defects the segmentation head trains on: procedural "
                            "(default) or learned (half from the defect generator, which it "
                            "implies)")


def add_generate(commands) -> None:
    gen = commands.add_parser("generate", help="paste generated defects of a type onto "
                                               "held-out normal images (MVTec layout)")
    gen.add_argument("--model", type=Path, required=True,
                     help="bundle trained with --generator (or --synth learned)")
    gen.add_argument("--data", type=Path, required=True,
                     help="the training data folder (its held-out normals are used) or "
                          "another folder of normal images")
    gen.add_argument("--type", required=True, dest="label", help="defect type to generate")
    gen.add_argument("--n", type=int, default=16, help="images to write (default 16)")
    gen.add_argument("--out", type=Path, required=True,
                     help="folder to write (replaced): test/TYPE, ground_truth/TYPE, "
                          "test/good and train/good")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def add_eval(commands) -> None:
    evaluate = commands.add_parser("eval", help="evaluate a bundle on a dataset's test split")
    evaluate.add_argument("--model", type=Path, required=True, help="bundle directory")
    evaluate.add_argument("--data", type=Path, required=True,
                          help="MVTec AD layout folder with test/")
    evaluate.add_argument("--json", type=Path, help="also write the report as JSON here")
    evaluate.add_argument("--device", choices=DEVICES, default="auto", help="default auto")
    evaluate.add_argument("--runtime", choices=RUNTIMES,
                          help="what runs the networks (env KENSA_RUNTIME, default auto: onnx "
                               "on a CPU when the bundle has exported graphs and onnxruntime is "
                               "installed)")


def add_recalibrate(commands) -> None:
    recal = commands.add_parser(
        "recalibrate", help="write a new bundle with the same weights and its image threshold "
                            "set again from the held-out normals plus reviewed records")
    recal.add_argument("--model", type=Path, required=True,
                       help="bundle directory, or a part of the models root (MODELS_DIR/PART: "
                            "its active version)")
    recal.add_argument("--from-records", required=True, metavar="DATABASE_URL",
                       help="the records store: a database URL, or the data folder "
                            "(KENSA_DATA_DIR) holding kensa.db; its records of this part "
                            "reviewed good (and, with --threshold-rule f1, as a defect) join "
                            "the held-out normals")
    recal.add_argument("--out", type=Path,
                       help="the new bundle's directory, or a part of the models root "
                            "(MODELS_DIR/PART: a new version there, not activated); default: "
                            "the part --model names")
    recal.add_argument("--since", help="only records inspected at or after this ISO 8601 time "
                                       "(e.g. 2026-12-01 or 2026-12-01T06:00:00+00:00)")
    recal.add_argument("--threshold-rule", choices=("false-alarm", "f1"),
                       help="default: the rule the bundle was trained with")
    recal.add_argument("--data-dir", type=Path,
                       help="where the kept images are, to score again the records another "
                            "version judged (default KENSA_DATA_DIR, else ./kensa-data)")
    recal.add_argument("--device", choices=DEVICES, default="cpu",
                       help="for the records scored again (default cpu)")


def add_serve(commands) -> None:
    serve = commands.add_parser("serve", help="serve a bundle over HTTP (Swagger UI at /docs)")
    serve.add_argument("--model", help="bundle directory (env KENSA_MODEL)")
    serve.add_argument("--host", help="bind address (env KENSA_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (env KENSA_PORT, default 8000)")
    serve.add_argument("--device", choices=DEVICES, help="env KENSA_DEVICE, default auto")
    serve.add_argument("--runtime", choices=RUNTIMES,
                       help="what runs the networks: torch, onnx (the graphs of "
                            "'kensa export'), or auto (onnx on a CPU where a bundle has them "
                            "and onnxruntime is installed, else torch); env KENSA_RUNTIME, "
                            "default auto")


def add_export(commands) -> None:
    export = commands.add_parser("export", help="add ONNX graphs of a bundle's networks to it "
                                                "(for --runtime onnx)")
    export.add_argument("--model", type=Path, required=True, help="bundle directory")
    export.add_argument("--format", choices=EXPORT_FORMATS, default="onnx",
                        help="default onnx")


def add_db(commands) -> None:
    db = commands.add_parser("db", help="the inspection records database")
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = actions.add_parser("upgrade", help="bring the records schema up to date "
                                                 "(kensa serve does it at start)")
    upgrade.add_argument("--database-url", help="default KENSA_DATABASE_URL, else the SQLite "
                                                "file in the data folder")
    upgrade.add_argument("--data-dir", type=Path,
                         help="default KENSA_DATA_DIR, else ./kensa-data")


def add_watch(commands) -> None:
    watch = commands.add_parser("watch", help="inspect the images dropped into a folder "
                                              "(cameras writing over FTP or SMB)")
    watch.add_argument("folder", type=Path, metavar="DIR", help="the folder cameras write to")
    watch.add_argument("--url", required=True, help="the Kensa server, http://host:8000")
    watch.add_argument("--source", help="source name sent with every image (camera, station)")
    watch.add_argument("--model", metavar="PART",
                       help="the part of the server's models root that judges these images "
                            "(default: the server's default part)")
    watch.add_argument("--done", type=Path, help="where inspected images and their verdict "
                                                 "JSON go (default DIR/done)")
    watch.add_argument("--failed", type=Path, help="where refused files and their error go "
                                                   "(default DIR/failed)")
    watch.add_argument("--api-key", default=os.environ.get("KENSA_API_KEY"),
                       help="X-API-Key (default env KENSA_API_KEY)")
    watch.add_argument("--settle", type=float, default=1.0, metavar="S",
                       help="a file whose size stood still this long is complete (default 1)")
    watch.add_argument("--once", action="store_true",
                       help="inspect what is there, then stop (default: watch until Ctrl-C)")


def add_models(commands) -> None:
    models = commands.add_parser("models", help="the models root: list, activate, roll back, "
                                                "prune versions (servers follow within "
                                                "KENSA_MODEL_POLL_S)")
    models.add_argument("--models-dir", type=Path,
                        help="the models root (default env KENSA_MODELS_DIR)")
    actions = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    actions.add_parser("list", help="parts, their versions, which is active")
    activate = actions.add_parser("activate", help="make VERSION the active version of PART")
    activate.add_argument("part")
    activate.add_argument("version")
    rollback = actions.add_parser("rollback", help="activate the version that was active "
                                                   "before the current one")
    rollback.add_argument("part")
    prune = actions.add_parser("prune", help="delete old versions (never the active one or "
                                             "the one rollback returns to)")
    prune.add_argument("part")
    prune.add_argument("--keep", type=int, required=True, metavar="N",
                       help="newest versions to keep")


def add_bench(commands) -> None:
    """Listed in ``kensa --help`` only: :func:`main` hands ``kensa bench ...`` to
    ``benchmarks.cli`` before this parser sees it."""
    commands.add_parser("bench", add_help=False,
                        help="accuracy and speed benchmarks (prints tables, writes JSON)")


def cmd_make_demo_data(args: argparse.Namespace) -> int:
    from models.synth_demo import make_demo_dataset

    summary = make_demo_dataset(args.out, seed=args.seed)
    state = "reused" if summary.get("reused") else "wrote"
    print(f"{state} demo dataset in {args.out}: {json.dumps(summary['counts'])}")
    return 0


TRAIN_OPTIONS = ("epochs", "max_minutes", "batch_size", "seed", "false_alarm_rate", "fusion",
                 "fusion_weight", "flips", "adversarial", "generator", "synth")  # given on the command line -> TrainConfig field


def cmd_train(args: argparse.Namespace) -> int:
    from models.train import train
    from service.registry import is_part_folder

    model_config, train_config = training_configs(args)
    if args.export and (missing := _missing_export_packages()):
        print(f"kensa train: error: --export onnx needs {' and '.join(missing)}: pip install "
              "'kensa[onnx]' (or leave --export out and serve on torch)", file=sys.stderr)
        return 2
    labels, regions = _labels(args.labels, args.data_dir)
    settings = server_settings()
    key = settings.bundle_key_bytes

    def run(out: Path, **named) -> dict:
        metrics = train(args.data, out, model_config, train_config, labels=labels,
                        device=args.device, progress=not args.quiet, regions=regions, key=key,
                        networks_from=args.networks_from, **named)
        if args.export:
            export_graphs(out, key)
        return metrics

    if not is_part_folder(args.out, settings.models_dir):
        print_training_summary(args, args.out, run(args.out))
        return 0
    written, metrics = train_version(args, lambda staged: run(staged, name=args.out.name))
    print_training_summary(args, written, metrics)
    return 0


def _missing_export_packages() -> list[str]:
    """What ``--export onnx`` needs that is not installed (checked before training)."""
    import importlib.util

    return [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]


def train_version(args: argparse.Namespace, run) -> tuple[Path, dict]:
    """Trains a new version of the part at ``args.out``: ``run(staged)`` writes the bundle
    and its evaluation into a hidden folder, renamed to the version id once complete (a
    server never sees half a version). The part's first version becomes active."""
    import shutil

    from service.registry import ModelsRoot, publish, staging_folder

    staged = staging_folder(args.out)
    try:
        metrics = run(staged)
        written = publish(staged)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    root, part = ModelsRoot(args.out.parent), args.out.name
    if root.active(part) is None:
        root.set_active(part, written.name)
        print(f"version {written.name} is the active version of {part}")
    else:
        print(f"new version {written.name} of {part} (active: {root.active(part)}); "
              f"activate it with 'kensa models activate {part} {written.name}'")
    return written, metrics


def cmd_generate(args: argparse.Namespace) -> int:
    from models.generate import generate_dataset

    summary = generate_dataset(args.model, args.data, args.label, args.n, args.out,
                               seed=args.seed, key=bundle_key())
    print(f"wrote {summary['n']} image(s) with a generated {summary['type']!r} defect to "
          f"{args.out} (test/{summary['type']}, ground_truth/{summary['type']}, test/good); "
          f"check a model with 'kensa eval --model MODEL --data {args.out}'")
    return 0


def bundle_key() -> bytes | None:
    """``KENSA_BUNDLE_KEY``: ``kensa train`` signs with it, ``kensa eval`` checks it."""
    return server_settings().bundle_key_bytes


def runtime_setting() -> str:
    """``KENSA_RUNTIME``: what ``kensa eval`` runs the networks on without --runtime."""
    return server_settings().runtime


def server_settings():
    """The KENSA_* settings the commands share with the server (bundle key, models root)."""
    from pydantic import ValidationError

    from service.config import Settings

    try:
        return Settings()
    except ValidationError as exc:
        raise KensaError("; ".join(str(e["msg"]) for e in exc.errors())) from None


def _labels(value: str | None, data_dir: Path | None
            ) -> tuple[str | dict[str, str] | None, dict[str, tuple[str, list]] | None]:
    """``--labels`` as the trainer takes it: a path, or, for the records store, the reviewed
    records read here and handed over as ``{image path: label}``, with the regions reviews
    drew (``{image path: (record, boxes)}``)."""
    from service.store.training import is_store, reviewed_labels, reviewed_regions

    if value is None or not is_store(value):
        return value, None
    if data_dir is None:
        from service.config import Settings

        data_dir = Settings().data_dir
    labels = reviewed_labels(value, data_dir)
    regions = reviewed_regions(value, data_dir)
    print(f"labels: {len(labels)} reviewed record(s) with kept images in the records store"
          f" ({len(regions)} with regions)")
    return labels, regions


def training_configs(args: argparse.Namespace):
    """The preset's ModelConfig and TrainConfig, with the options given on the command line."""
    from models.config import PRESETS, ModelConfig, TrainConfig

    preset = PRESETS[args.preset]
    model_kw = dict(preset["model"])
    train_kw = dict(preset["train"])
    if args.image_size is not None:
        model_kw["image_size"] = args.image_size
    if args.aspect is not None:
        model_kw["keep_aspect"] = args.aspect == "keep"
    for option in TRAIN_OPTIONS:
        if getattr(args, option) is not None:
            train_kw[option] = getattr(args, option)
    train_kw["extra"] = {"threshold_rule": "f1" if args.threshold_rule == "f1" else "false-alarm",
                         "preset": args.preset}
    if args.labeled_defects != "latent":  # absent by default: bundle.json as before
        train_kw["extra"]["labeled_defects"] = args.labeled_defects
    if args.positive_step != "extra":
        train_kw["extra"]["positive_step"] = args.positive_step
    if args.latent_labels != "spread":
        train_kw["extra"]["latent_labels"] = args.latent_labels
    if args.image_score != "max":
        train_kw["extra"]["image_score"] = args.image_score
    _check_fields(ModelConfig, model_kw)
    return ModelConfig(**model_kw), TrainConfig(**train_kw)


def print_training_summary(args: argparse.Namespace, written: Path, metrics: dict) -> None:
    from models.evaluate import format_table

    calibration = metrics["calibration"]
    print(f"wrote bundle {written} (calibration: {calibration['rule']}; test-time flips: "
          f"{calibration['flip_rule']})")
    report = metrics["evaluation"]
    if "error" in report:
        print(f"evaluation on the test split failed ({report['error']}); the bundle is sound: "
              f"retry with 'kensa eval --model {written} --data {args.data}'")
    elif report:
        print(format_table(report))


def _check_fields(cls, kw: dict) -> None:
    names = {f.name for f in fields(cls)}
    bad = set(kw) - names
    if bad:
        raise KensaError(f"unknown {cls.__name__} fields {sorted(bad)}")


def cmd_eval(args: argparse.Namespace) -> int:
    from models.data import open_dataset
    from models.evaluate import bundle_normals, evaluate, format_table
    from models.inference import Inspector

    inspector = Inspector.load(args.model, args.device, key=bundle_key(),
                               runtime=args.runtime or runtime_setting())
    dataset = open_dataset(args.data)
    if not dataset.test:
        raise KensaError(f"{args.data} has no test split: evaluation needs DIR/test/<type>/ "
                         "images (and DIR/ground_truth/<type>/<stem>_mask.png for pixel "
                         "metrics)")
    normals = bundle_normals(inspector, dataset.train)
    if normals is None:
        print("note: these training images are not the ones the bundle was trained on, so the "
              "with-labels check uses the test images alone")
    report = evaluate(inspector, dataset.test, normals=normals)
    print(f"model {args.model} (version {inspector.info.get('version')}) on {args.data}")
    print(format_table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, sort_keys=True))
        print(f"wrote {args.json}")
    return 0


def cmd_recalibrate(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from service.config import Settings
    from service.recalibrate import recalibrate
    from service.registry import complete_info, is_part_folder

    records, data_dir = args.from_records, args.data_dir
    if "://" not in records:  # the data folder itself
        records, data_dir = None, Path(args.from_records)
    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since)
        except ValueError:
            raise KensaError(f"--since {args.since!r} is not an ISO 8601 time: use e.g. "
                             "2026-12-01 or 2026-12-01T06:00:00+00:00") from None
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
    settings = Settings()
    done = recalibrate(args.model, records, args.out, data_dir or settings.data_dir, since,
                       args.threshold_rule, bundle_key(), args.device, settings.models_dir)
    print(f"recalibrated {args.model} (version {done['version']}) with "
          f"{done['reviewed_good']} reviewed good and {done['reviewed_defects']} reviewed "
          f"defect record(s) ({done['stored_scores']} stored scores, {done['rescored']} scored "
          f"again, {done['skipped']} skipped: judged by another version, image not kept): "
          f"image threshold {done['image_threshold_before']:.6g} -> "
          f"{done['image_threshold']:.6g}; wrote {done['out']} (version "
          f"{done['version_written']})")
    written = Path(done["out"])
    if complete_info(written) is not None and is_part_folder(written.parent,
                                                             settings.models_dir):
        part = written.parent.name
        print(f"new version {written.name} of {part}, not active: try it as a challenger "
              f"(POST /v1/models/{part}/challenger) or activate it with 'kensa models activate "
              f"{part} {written.name}'")
    return 0


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Caps glibc's malloc arenas before the server starts its threads (``mallopt``, the
    runtime twin of ``MALLOC_ARENA_MAX``). Each thread that decodes or encodes an image
    otherwise gets an arena of its own that keeps freed memory, which raises the server's
    peak RSS with large uploads for no measurable gain in speed (benchmarks/HISTORY.md). A
    ``MALLOC_ARENA_MAX`` in the environment wins; on a C library without ``mallopt`` nothing
    happens. Returns whether the cap was set."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    limit_malloc_arenas()
    from service.app import run

    run(model=args.model, host=args.host, port=args.port, device=args.device,
        runtime=args.runtime)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``kensa export``: ONNX graphs into the bundle, checked against torch (models.exports)."""
    export_graphs(args.model, bundle_key(),
                  f"; serve them with 'kensa serve --model {args.model} --runtime onnx'")
    return 0


def export_graphs(path: Path, key: bytes | None, then: str = "") -> None:
    """The networks' ONNX graphs into the bundle at ``path`` (:func:`models.exports.
    export_onnx`), and a line saying what was written, how close to torch, and ``then``."""
    from models.exports import export_onnx

    record = export_onnx(path, key=key)
    print(f"exported {', '.join(record['files'])} into {path} (for version "
          f"{record['for_version']}; largest difference from torch "
          f"{max(record['parity'].values()):.2g} of the outputs' scale){then}")


def cmd_watch(args: argparse.Namespace) -> int:
    import signal

    from service.watch import WatchConfig, Watcher

    folder = args.folder
    if not folder.is_dir():
        print(f"kensa watch: error: {folder} is not a folder", file=sys.stderr)
        return 2
    watcher = Watcher(WatchConfig(
        folder=folder, url=args.url, done=args.done or folder / "done",
        failed=args.failed or folder / "failed", source=args.source, model=args.model,
        api_key=args.api_key,
        settle_s=args.settle))
    signal.signal(signal.SIGTERM, lambda *_: watcher.stop())
    counts = watcher.run(once=args.once)
    print(f"kensa watch: {counts['done']} inspected, {counts['failed']} refused")
    return 0


def cmd_bench(argv: list[str]) -> int:
    """``kensa bench ARGS`` is ``python -m benchmarks ARGS``; 2 where benchmarks/ is absent."""
    try:
        from benchmarks.cli import main as bench_main
    except ModuleNotFoundError as exc:
        if exc.name != "benchmarks" and not (exc.name or "").startswith("benchmarks."):
            raise
        print(NO_BENCHMARKS, file=sys.stderr)
        return 2
    return bench_main(argv, prog="kensa bench")


def cmd_db(args: argparse.Namespace) -> int:
    """``kensa db upgrade``: the records schema to the newest migration."""
    from sqlalchemy.exc import SQLAlchemyError

    from service.config import Settings
    from service.store.database import current_revision, database_url, make_engine, upgrade

    settings = Settings()
    engine = make_engine(database_url(args.data_dir or settings.data_dir,
                                      args.database_url or settings.database_url))
    try:
        upgrade(engine)
        revision = current_revision(engine)
    except SQLAlchemyError as exc:
        raise KensaError(f"cannot upgrade {engine.url.render_as_string()}: {exc}") from None
    finally:
        engine.dispose()
    print(f"records database {engine.url.render_as_string()} is at revision {revision}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """``kensa models list|activate|rollback|prune``, on the models root's files."""
    from service.registry import ModelsRoot

    folder = args.models_dir or server_settings().models_dir
    if folder is None:
        raise KensaError("no models root: pass --models-dir DIR or set KENSA_MODELS_DIR")
    root = ModelsRoot(folder)
    root.check()
    action = args.models_command
    if action == "list":
        for part in root.parts():
            active = root.active(part)
            print(part)
            for v in root.versions(part):
                auroc = v.metrics.get("image_auroc")
                shown = f"  image AUROC {auroc:.3f}" if isinstance(auroc, float) else ""
                print(f"  {'*' if v.name == active else ' '} {v.name}  {v.created}{shown}")
        return 0
    if action == "prune":
        gone = root.prune(args.part, args.keep)
        print(f"deleted {len(gone)} version(s) of {args.part}: {', '.join(gone) or 'none'}")
        return 0
    version = args.version if action == "activate" else root.previous(args.part)
    if version is None:
        raise KensaError(f"{args.part} has no earlier active version to roll back to")
    root.verify(args.part, version, key=server_settings().bundle_key_bytes)
    root.set_active(args.part, version)
    print(f"{version} is the active version of {args.part}")
    return 0


COMMANDS = {"make-demo-data": cmd_make_demo_data, "train": cmd_train, "eval": cmd_eval,
            "generate": cmd_generate, "recalibrate": cmd_recalibrate, "serve": cmd_serve,
            "export": cmd_export, "db": cmd_db, "watch": cmd_watch, "models": cmd_models}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        return cmd_bench(argv[1:])
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
