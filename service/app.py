"""The FastAPI application: :func:`create_app` for tests and ASGI servers, :func:`run` for
``kensa serve``.

The bundle (KENSA_MODEL), or the models root's start-up part (KENSA_MODELS_DIR), is loaded
in the lifespan into ``app.state`` (``fleet``: the served parts, ``service.serving``; the
start-up part's ``inspector``; ``batcher``); routes reach them through ``service.deps``. A
missing or corrupt bundle or models root stops start-up with a message that names the path
and the problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from models import __version__ as VERSION
from models.errors import BundleError, KensaError

from . import errors, ui
from .batcher import Batcher
from .challenger import Challengers
from .config import Settings, get_settings
from .connection import header_deadline_protocol
from .labels import LabelStore
from .live import LiveFeed
from .middleware import AdmissionMiddleware, BodyLimitMiddleware, RequestMetricsMiddleware
from .monitoring import Metrics, configure_logging
from .overlays import OverlayCache
from .recording import open_store
from .registry import ModelsRoot, ModelsRootError
from .routes import router
from .serving import Fleet, Served, open_root, startup_part
from .sinks import SinksConfigError, local_names, names, sinks_of, start_dispatcher

log = logging.getLogger("kensa.service")

DESCRIPTION = """\
Kensa inspects images of manufactured parts and says whether each looks **normal** or
**abnormal**, with a fused anomaly score, the threshold applied, the defect regions and,
on request, a mask, a 16-bit heatmap, an overlay picture and the model's cleaned image.

* **Coordinates** are pixels of the uploaded image (origin top-left).
* **Scores** are unitless; each comes with the threshold it is compared with;
  `label` is `"abnormal"` exactly when `score >= threshold`.
* **Errors** are JSON `{"detail": "..."}` saying what is wrong and how to fix it.
* **API keys**: when the server has `KENSA_API_KEYS`, send `X-API-Key` on every `/v1/*` call
  and on `/metrics` (health and this description stay open).
* Try `POST /v1/inspect/overlay` below with one of your images to see the heatmap.
* **Operators**: when a verdict is wrong, send the image to `POST /v1/labels` with what the part
  really is (`good` or a defect name); the next `kensa train --labels` learns from it
  (the server needs `KENSA_LABELS_DIR`).
"""
TAGS = [
    {"name": "inspection", "description": "Verdicts on uploaded images."},
    {"name": "labels", "description": "Operator feedback: labeled images for the next "
                                      "`kensa train --labels`."},
    {"name": "records", "description": "Every inspected image's record, its kept image and "
                                       "its review; counts per hour or day."},
    {"name": "models", "description": "The models root: parts, versions, activation (hot "
                                      "swap, rollback), challenger scoring, score drift "
                                      "against the held-out normals."},
    {"name": "health", "description": "Liveness and readiness for orchestrators."},
    {"name": "operations", "description": "Prometheus metrics."},
]


def load_inspector(settings: Settings) -> Any:
    """Loads the bundle that ``settings.model`` names.

    Raises:
        BundleError: no bundle named, or the bundle is missing or corrupt.
    """
    if settings.model is None:
        raise BundleError("no model bundle given: pass --model BUNDLE_DIR or set KENSA_MODEL")
    return bundle_loader(settings)(settings.model)


def bundle_loader(settings: Settings) -> Callable[[Any], Any]:
    """Loads a bundle folder into an inspector on the settings' device, checking the key."""
    from models.inference import Inspector  # torch and the networks load here, not on import

    return lambda path: Inspector.load(path, device=settings.device,
                                       key=settings.bundle_key_bytes,
                                       runtime=settings.runtime)


def load_models(settings: Settings) -> Any:
    """What ``kensa serve`` serves: the models root (a :class:`Fleet` with its start-up part
    loaded) when KENSA_MODELS_DIR is set, else the one bundle of KENSA_MODEL.

    Raises:
        ModelsRootError, BundleError: as :func:`open_root` and :func:`load_inspector`.
    """
    if settings.models_dir is not None:
        return open_root(settings, bundle_loader(settings))
    return load_inspector(settings)


def lifespan(settings: Settings, metrics: Metrics, inspector: Any = None,
             load: Callable[[Settings], Any] | None = None):
    """The app's lifespan: loads the bundle (unless ``inspector`` is given), opens the records
    store (bringing its schema up to date), starts the sinks' dispatcher and the batcher and
    puts them on ``app.state``; stops the batcher, the dispatcher, then the store, at shutdown.

    With ``load`` (``kensa serve``), all that happens in the background after the server has
    bound its port: ``/health/live`` answers at once, ``/health/ready`` and the API answer
    503 until the bundle is loaded, and a failure calls ``app.state.on_start_failure``.
    """

    @asynccontextmanager
    async def span(app: FastAPI):
        if load is None:
            try:
                loaded = inspector or await run_in_threadpool(load_models, settings)
                await start(app, settings, metrics, loaded)
            except (BundleError, ModelsRootError, SinksConfigError) as exc:
                log.error("cannot start: %s", exc)
                raise
            starting = None
        else:
            starting = asyncio.create_task(start_in_background(app, settings, metrics, load))
        try:
            yield
        finally:
            if starting is not None:
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
            await stop(app, settings)

    return span


async def start_in_background(app: FastAPI, settings: Settings, metrics: Metrics,
                              load: Callable[[Settings], Any]) -> None:
    try:
        await start(app, settings, metrics, await run_in_threadpool(load, settings))
    except Exception as exc:  # noqa: BLE001 - any failure ends the server, with its message
        log.error("cannot start: %s", exc)
        app.state.start_error = exc
        app.state.on_start_failure(exc)


async def start(app: FastAPI, settings: Settings, metrics: Metrics, loaded: Any) -> None:
    """Opens the records store, starts the sinks' dispatcher, the batcher, the models root's
    polling and a KENSA_CHALLENGER on ``loaded`` (a :class:`Fleet`, or one inspector), and
    says ready.

    Raises:
        SinksConfigError: the sinks file (KENSA_SINKS_FILE) is wrong.
        ModelsRootError: the KENSA_CHALLENGER version cannot be loaded.
    """
    sinks = sinks_of(settings)
    dispatcher = None
    store = open_store(settings, metrics.registry, names(sinks),
                       on_written=lambda: dispatcher and dispatcher.notify(),
                       local_sinks=local_names(sinks), on_pruned=app.state.overlays.pruned)
    if store is not None:
        await run_in_threadpool(store.open)
        await run_in_threadpool(adopt_labels, store, settings)
        app.state.labels = store.labels
    app.state.store = store
    dispatcher = await run_in_threadpool(start_dispatcher, sinks, store, metrics.registry,
                                         settings.sinks_lease_s)
    app.state.dispatcher = dispatcher
    fleet = loaded if isinstance(loaded, Fleet) else single_fleet(settings, loaded)
    primary = fleet.loaded[fleet.primary].inspector
    batcher = Batcher(primary, max_size=settings.batch_max_size,
                      wait_ms=settings.batch_wait_ms, queue_size=settings.queue_size,
                      max_inflight_bytes=settings.max_inflight_bytes,
                      on_batch=metrics.batch_size.observe, on_queue=metrics.queue_depth.set)
    await batcher.start()
    fleet.metrics = metrics
    fleet.on_swap = lambda new, old: swapped(app, new, old)
    app.state.fleet, app.state.inspector, app.state.batcher = fleet, primary, batcher
    swapped(app, fleet.loaded[fleet.primary], None)
    if fleet.root is not None:
        app.state.follower = asyncio.create_task(fleet.follow(), name="kensa-models-root")
    await start_challenger(app, settings, fleet)
    info = primary.info
    log.info("ready", extra={"fields": {
        "model": str(settings.models_dir or settings.model), "part": fleet.primary,
        "version": info.get("version"), "device": primary.device,
        "runtime": primary.runtime,
        "image_threshold": primary.image_threshold, "threshold_override": settings.threshold}})


def single_fleet(settings: Settings, inspector: Any) -> Fleet:
    """One bundle (KENSA_MODEL) as the only part, named by the bundle's name."""
    info = inspector.info
    part = str(info.get("name") or "default")
    return Fleet(settings, bundle_loader(settings),
                 single=Served(part, str(info.get("version", "")), inspector, from_root=False))


def swapped(app: FastAPI, new: Served, old: Served | None) -> None:
    """After a version is swapped in: the start-up part's inspector on ``app.state`` (health,
    the page) and the ``kensa_model_info`` gauge follow it."""
    fleet, gauge = app.state.fleet, app.state.metrics.model_info
    if new.part != fleet.primary:
        return
    app.state.inspector = new.inspector
    if old is not None:
        with contextlib.suppress(KeyError):
            gauge.remove(str(old.info.get("name", "")), old.version, str(old.inspector.device))
    gauge.labels(str(new.info.get("name", "")), str(new.info.get("version", "")),
                 str(new.inspector.device)).set(1)


async def start_challenger(app: FastAPI, settings: Settings, fleet: Fleet) -> None:
    """Starts the challenger KENSA_CHALLENGER names (PART=VERSION), if any."""
    if not settings.challenger:
        return
    part, _, version = settings.challenger.partition("=")
    try:
        if fleet.root is None:
            raise ModelsRootError("it needs KENSA_MODELS_DIR")
        fleet.resolve(part.strip())
        served = await fleet.load(part.strip(), version.strip())
    except KensaError as exc:
        raise ModelsRootError(f"KENSA_CHALLENGER={settings.challenger}: {exc}") from None
    app.state.challengers.start(served)


async def stop(app: FastAPI, settings: Settings) -> None:
    """Stops the batcher, then the sinks' dispatcher, then closes the store, whatever of them
    had started."""
    inspector, batcher, store = app.state.inspector, app.state.batcher, app.state.store
    dispatcher, follower = app.state.dispatcher, app.state.follower
    app.state.inspector = app.state.batcher = app.state.dispatcher = None
    app.state.fleet = app.state.follower = None
    if follower is not None:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    app.state.challengers.stop_all()
    if batcher is not None:
        await batcher.stop()
    if dispatcher is not None:
        await run_in_threadpool(dispatcher.stop)
    if store is not None:
        app.state.store = None
        app.state.labels = folder_labels(settings)
        await run_in_threadpool(store.close)
    if inspector is not None:
        log.info("stopped", extra={"fields": {"version": inspector.info.get("version")}})


def folder_labels(settings: Settings) -> LabelStore | None:
    """Where POST /v1/labels keeps labels without a records store: KENSA_LABELS_DIR."""
    return LabelStore(settings.labels_dir) if settings.labels_dir else None


def adopt_labels(store, settings: Settings) -> None:
    """With a records store, labels live there; a KENSA_LABELS_DIR of labels kept before
    is imported once."""
    if settings.labels_dir is None:
        return
    try:
        store.labels.import_folder(settings.labels_dir)
    except Exception:
        log.exception("could not import the labels folder %s", settings.labels_dir)


def create_app(settings: Settings | None = None, *, inspector: Any = None,
               load: Callable[[Settings], Any] | None = None) -> FastAPI:
    """Builds the app; the bundle loads when the lifespan starts.

    Args:
        settings: defaults to :func:`get_settings` (the environment).
        inspector: an already loaded inspector to serve instead of loading
            ``settings.model``.
        load: load the inspector with this, in the background once the server runs
            (``run`` passes :func:`load_inspector`); see :func:`lifespan`.
    """
    settings = settings or get_settings()
    metrics = Metrics()
    docs = settings.public_docs
    app = FastAPI(title="Kensa inspection service", version=VERSION, description=DESCRIPTION,
                  openapi_tags=TAGS, lifespan=lifespan(settings, metrics, inspector, load),
                  # /docs and /redoc are self-hosted (routes/docs.py), served while docs is on
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json" if docs else None,
                  form_limits={"max_files": settings.max_batch, "max_fields": 16})
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.inspector = None
    app.state.fleet = None
    app.state.follower = None
    # images waiting for a challenger are outside the in-flight gate: an eighth of its budget
    app.state.challengers = Challengers(metrics, max_bytes=settings.max_inflight_bytes // 8)
    app.state.batcher = None
    app.state.store = None
    app.state.dispatcher = None
    app.state.labels = folder_labels(settings)
    app.state.overlays = OverlayCache()  # the page asks for the same overlays again and again
    app.state.live = LiveFeed(settings.live_max_age_s)  # every open page asks the same
    app.state.start_error = None
    app.state.on_start_failure = lambda exc: None
    errors.register(app)
    app.include_router(router)
    app.mount(ui.STATIC_URL, StaticFiles(directory=ui.STATIC), name="ui-static")
    # the last added is the outermost: metrics see the body limiter's 413s too
    app.add_middleware(BodyLimitMiddleware, max_upload_bytes=settings.max_upload_bytes,
                       max_batch=settings.max_batch, body_timeout_s=settings.body_timeout_s)
    app.add_middleware(AdmissionMiddleware)  # before the body limiter reads a byte
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    return app


def run(model: str | None = None, host: str | None = None, port: int | None = None,
        device: str | None = None, runtime: str | None = None) -> None:
    """``kensa serve``: settings from the environment, these arguments win (None keeps them).

    Checks the settings, the folders and the bundle's files before binding the port, so a
    missing or corrupt bundle (or a labels folder it cannot write) ends the process at once
    with a message naming the path and the problem (exit status 2). The port then opens and
    the bundle loads in the background: orchestrators see ``/health/live`` at once and
    ``/health/ready`` 503 until it is loaded; a load that fails still ends the process with
    status 2 and its message.
    """
    given = {"model": model, "host": host, "port": port, "device": device, "runtime": runtime}
    try:
        settings = Settings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
                             for e in exc.errors())
        _fail(f"invalid settings: {problems}")
    configure_logging(settings.log_level)
    check_folders(settings)
    try:
        sinks_of(settings)
    except SinksConfigError as exc:
        _fail(str(exc))
    try:
        check_bundle(settings)
    except ModelsRootError as exc:
        _fail(f"cannot serve the models root: {exc}")
    except BundleError as exc:
        _fail(f"cannot load the model bundle: {exc}")
    app = create_app(settings, load=load_models)
    server = uvicorn.Server(server_config(app, settings))
    app.state.on_start_failure = lambda exc: setattr(server, "should_exit", True)
    server.run()
    failure = app.state.start_error
    if isinstance(failure, ModelsRootError):
        _fail(f"cannot serve the models root: {failure}")
    if isinstance(failure, SinksConfigError):  # e.g. an OPC UA port that is taken
        _fail(str(failure))
    if isinstance(failure, BundleError):
        _fail(f"cannot load the model bundle: {failure}")
    if failure is not None:  # e.g. --device cuda on a machine without CUDA
        _fail(f"cannot load the model bundle {settings.model}: {failure}")


def check_folders(settings: Settings) -> None:
    """Ends the process (status 2) when the records or labels folder is not writable."""
    if settings.records:
        try:
            writable_folder(settings.data_dir)
        except OSError as exc:
            _fail(f"KENSA_DATA_DIR {settings.data_dir} is not a writable folder "
                  f"({exc.strerror or exc}): kept images and the records journal go there; "
                  "fix its permissions or mount, point KENSA_DATA_DIR elsewhere, or set "
                  "KENSA_RECORDS=off")
    if settings.labels_dir is not None and not settings.records:
        try:
            LabelStore(settings.labels_dir).check()
        except OSError as exc:
            _fail(f"KENSA_LABELS_DIR {settings.labels_dir} is not a writable folder "
                  f"({exc.strerror or exc}): fix its permissions or mount, or unset it")


def check_bundle(settings: Settings) -> None:
    """The bundle's files, version id and signature, before the port opens (the weights load
    after it), with ``KENSA_RUNTIME=onnx`` its ONNX graphs too; with a models root, those of
    its start-up part's active version.

    Raises:
        BundleError: none named, or missing, incomplete, edited or not signed with the key;
            on onnx, graphs missing (the message says how to export them) or changed.
        ModelsRootError: the models root is missing or unreadable, or its start-up part has
            no valid active version; or both KENSA_MODEL and KENSA_MODELS_DIR are set.
    """
    if settings.models_dir is not None:
        check_models_root(settings)
        return
    if settings.model is None:
        raise BundleError("no model bundle given: pass --model BUNDLE_DIR or set KENSA_MODEL")
    from models.bundle import read_info

    info = read_info(settings.model, key=settings.bundle_key_bytes)
    if settings.runtime == "onnx":
        from models.exports import graph_paths

        graph_paths(settings.model, info, key=settings.bundle_key_bytes)


def check_models_root(settings: Settings) -> None:
    if settings.model is not None:
        raise ModelsRootError(f"both KENSA_MODEL ({settings.model}) and KENSA_MODELS_DIR "
                              f"({settings.models_dir}) are set: serve one bundle or a models "
                              "root, not both")
    root = ModelsRoot(settings.models_dir)
    root.check()
    part = startup_part(Fleet(settings, bundle_loader(settings), root))
    try:
        root.verify(part, root.active(part), key=settings.bundle_key_bytes)
    except KensaError as exc:
        raise ModelsRootError(f"the active version of {part!r} cannot be served: {exc}") from None


def server_config(app: FastAPI, settings: Settings):
    """uvicorn's settings: the connection deadlines and caps of issue 27 (a stalled client
    holds nothing for long, and a stop never waits on one)."""
    return uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=settings.log_level,
        access_log=False, workers=1, http=header_deadline_protocol(settings.header_timeout_s),
        timeout_keep_alive=max(1, round(settings.header_timeout_s)),
        limit_concurrency=settings.max_connections,
        timeout_graceful_shutdown=max(0, round(settings.shutdown_timeout_s)))


def writable_folder(folder) -> None:
    """Creates ``folder`` if needed and proves it writable.

    Raises:
        OSError: it cannot be created or written.
    """
    import os
    from pathlib import Path

    Path(folder).mkdir(parents=True, exist_ok=True)
    probe = Path(folder) / f".write-test.{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()


def _fail(message: str) -> None:
    print(f"kensa serve: {message}", file=sys.stderr)
    raise SystemExit(2)
